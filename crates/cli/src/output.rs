//! Standard output that never panics. `println!` panics when the reader has gone
//! (`assent approvals list | head -1`); `outln!` ends the output quietly instead, and the command
//! still exits with its own code.

use std::io::{ErrorKind, Write};

/// Writes `args` and a newline to standard output.
pub(crate) fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{args}").and_then(|()| out.flush())
        && e.kind() != ErrorKind::BrokenPipe
    {
        eprintln!("assent: cannot write the output: {e}");
    }
}

/// `println!` that survives a closed pipe.
macro_rules! outln {
    () => { $crate::output::line(format_args!("")) };
    ($($arg:tt)*) => { $crate::output::line(format_args!($($arg)*)) };
}

pub(crate) use outln;
