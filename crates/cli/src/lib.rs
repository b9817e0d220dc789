//! The parts of the `assent` binary that do no I/O, as a library so they can be fuzzed and
//! reused: today the mapping from a Claude Code hook payload to an approval request.

pub mod claude_code;
