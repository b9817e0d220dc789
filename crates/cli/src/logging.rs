//! The server log: one event per line, whatever the event's text holds.
//!
//! Log fields carry text that requesters chose (URLs, agent ids, error messages). A CR or LF in
//! one would forge a log line, and an escape sequence would rewrite the operator's terminal, so
//! every control character except each event's final newline is written as `\u{XXXX}`
//! (issue 9, finding 11). Colour codes are escapes too, so the log is plain text.

use std::io::{self, Write};

/// Initializes `tracing` to stderr, filtered by `ASSENT_LOG` (default `info`).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ASSENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(|| EscapingWriter(io::stderr()))
        .try_init();
}

/// Escapes control characters in each write; `tracing` writes one whole event per call.
struct EscapingWriter<W>(W);

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(escape(&String::from_utf8_lossy(buf)).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

fn escape(event: &str) -> String {
    let (body, newline) = match event.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (event, ""),
    };
    let mut out = String::with_capacity(event.len() + 1);
    for c in body.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{{{:04X}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out.push_str(newline);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_11_a_crlf_in_a_field_cannot_forge_a_log_line() {
        let forged = "WARN callback failed url=https://x/\r\nINFO approved by admin\n";
        assert_eq!(
            escape(forged),
            "WARN callback failed url=https://x/\\u{000D}\\u{000A}INFO approved by admin\n"
        );
        assert_eq!(escape("clear \u{1b}[2J\n"), "clear \\u{001B}[2J\n");
    }

    #[test]
    fn writes_report_the_callers_length() {
        let mut w = EscapingWriter(Vec::new());
        assert_eq!(w.write(b"a\rb\n").unwrap(), 4);
        assert_eq!(w.0, b"a\\u{000D}b\n");
    }
}
