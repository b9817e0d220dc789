//! The parts of the `assent` binary that are worth testing or fuzzing on their own: the mapping
//! from a Claude Code hook payload to an approval request, and the server log's line escaping.
//!
//! Unit tests belong here rather than in the binary: the binary's test harness would link every
//! channel SDK (about 200 MiB of CI disk) to run them.

pub mod claude_code;
pub mod logging;
