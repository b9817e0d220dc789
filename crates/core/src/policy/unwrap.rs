//! Dispatch-wrapper unwrapping (PO-4) and the "never grant a wrapper" checks (PO-5, PO-6).

/// Why unwrapping failed: an option assent does not know could change what runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot unwrap `{wrapper}`: unknown option `{option}`")]
pub struct UnwrapError {
    /// The wrapper.
    pub wrapper: String,
    /// The option it does not understand.
    pub option: String,
}

const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "mksh", "fish", "pwsh", "powershell", "cmd"];
const PRIVILEGE: &[&str] = &["sudo", "doas", "su", "pkexec", "runuser"];
const WRAPPERS: &[&str] = &[
    "env",
    "nice",
    "nohup",
    "stdbuf",
    "timeout",
    "time",
    "ionice",
    "setsid",
    "chrt",
    "taskset",
    "caffeinate",
    "busybox",
    "toybox",
];
const INTERPRETERS: &[&str] = &[
    "python",
    "python2",
    "python3",
    "node",
    "nodejs",
    "deno",
    "bun",
    "ruby",
    "perl",
    "php",
    "lua",
    "luajit",
    "tclsh",
    "Rscript",
    "osascript",
];
const AWKS: &[&str] = &["awk", "gawk", "mawk", "nawk", "busybox-awk"];

/// The last path component: `/usr/bin/env` → `env`.
pub fn basename(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path).trim_end_matches(".exe")
}

/// A shell (PO-4).
pub fn is_shell(exe: &str) -> bool {
    SHELLS.contains(&basename(exe))
}

/// A dispatch wrapper (PO-4).
pub fn is_wrapper(exe: &str) -> bool {
    WRAPPERS.contains(&basename(exe))
}

/// A privilege changer (PO-5).
pub fn is_privilege_changer(exe: &str) -> bool {
    PRIVILEGE.contains(&basename(exe))
}

/// True if `argv` runs an interpreter on inline code (`python -c`, `perl -e`, any awk program).
pub fn runs_inline_code(argv: &[String]) -> bool {
    let Some(first) = argv.first() else { return false };
    let exe = basename(first);
    if AWKS.contains(&exe) {
        // An awk program given on the command line is code, unless read from a file with -f.
        return !argv.iter().skip(1).any(|a| a == "-f" || a.starts_with("--file"));
    }
    let interpreter = INTERPRETERS.contains(&exe)
        || exe.strip_prefix("python").is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'));
    interpreter
        && argv.iter().skip(1).any(|a| {
            matches!(a.as_str(), "-c" | "-e" | "-E" | "-r" | "-p" | "--eval" | "--print" | "-x")
                || (a.starts_with("-e") && a.len() > 2 && !a.starts_with("--"))
        })
}

/// `sh -c '<script>'`: returns the script (PO-6: opaque, exact-argv grants only).
pub fn shell_script(argv: &[String]) -> Option<&str> {
    let (first, rest) = argv.split_first()?;
    if !is_shell(first) {
        return None;
    }
    let mut args = rest.iter();
    while let Some(a) = args.next() {
        if a == "-c" || (a.starts_with('-') && !a.starts_with("--") && a.contains('c')) {
            return args.next().map(String::as_str);
        }
        if !a.starts_with('-') {
            break;
        }
    }
    None
}

/// How many option arguments a wrapper option consumes, or an error for unknown options.
fn skip_options<'a>(
    wrapper: &str,
    args: &'a [String],
    with_value: &[&str],
    flags: &[&str],
) -> Result<&'a [String], UnwrapError> {
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if a == "--" {
            return Ok(&args[i + 1..]);
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        let name = a.split('=').next().unwrap_or(a);
        if flags.contains(&a.as_str()) || (a.contains('=') && with_value.contains(&name)) {
            i += 1;
        } else if with_value.contains(&a.as_str()) {
            i += 2;
        } else if with_value.iter().any(|o| o.len() == 2 && a.starts_with(o) && a.len() > 2) {
            // Attached short option value: `-n10`.
            i += 1;
        } else {
            return Err(UnwrapError { wrapper: wrapper.to_owned(), option: a.clone() });
        }
    }
    Ok(args.get(i..).unwrap_or(&[]))
}

/// `env` mixes options and `NAME=VALUE` assignments before the command.
fn unwrap_env(args: &[String]) -> Result<&[String], UnwrapError> {
    let mut i = 0;
    let mut options = true;
    while let Some(a) = args.get(i) {
        if options && a == "--" {
            options = false;
            i += 1;
        } else if options && matches!(a.as_str(), "-i" | "--ignore-environment" | "-") {
            i += 1;
        } else if options && (a == "-u" || a == "--unset") {
            i += 2;
        } else if options && ((a.starts_with("-u") && a.len() > 2) || a.starts_with("--unset=")) {
            i += 1;
        } else if options && a.starts_with('-') {
            return Err(UnwrapError { wrapper: "env".to_owned(), option: a.clone() });
        } else if a.contains('=') && !a.starts_with('=') {
            i += 1;
        } else {
            break;
        }
    }
    Ok(args.get(i..).unwrap_or(&[]))
}

fn unwrap_once(argv: &[String]) -> Result<Option<&[String]>, UnwrapError> {
    let Some((first, rest)) = argv.split_first() else { return Ok(None) };
    let name = basename(first);
    let inner: &[String] = match name {
        "env" => unwrap_env(rest)?,
        "nice" => {
            skip_options("nice", rest, &["-n", "--adjustment"], &[]).or_else(|e| match rest.first() {
                // `nice -10 cmd`
                Some(a) if a.len() > 1 && a[1..].chars().all(|c| c.is_ascii_digit()) => Ok(&rest[1..]),
                _ => Err(e),
            })?
        }
        "nohup" => skip_options("nohup", rest, &[], &[])?,
        "stdbuf" => skip_options("stdbuf", rest, &["-i", "-o", "-e", "--input", "--output", "--error"], &[])?,
        "timeout" => {
            let r = skip_options(
                "timeout",
                rest,
                &["-s", "--signal", "-k", "--kill-after"],
                &["--preserve-status", "--foreground", "-v", "--verbose"],
            )?;
            r.get(1..).unwrap_or(&[])
        }
        "time" => skip_options(
            "time",
            rest,
            &["-o", "--output", "-f", "--format"],
            &["-p", "-v", "--portability", "--verbose", "-a", "--append"],
        )?,
        "ionice" => {
            skip_options("ionice", rest, &["-c", "--class", "-n", "--classdata"], &["-t", "--ignore"])?
        }
        "setsid" => skip_options("setsid", rest, &[], &["-f", "--fork", "-w", "--wait", "-c", "--ctty"])?,
        "chrt" => {
            let r = skip_options(
                "chrt",
                rest,
                &["-T", "-P", "-D"],
                &[
                    "-b",
                    "--batch",
                    "-d",
                    "--deadline",
                    "-f",
                    "--fifo",
                    "-i",
                    "--idle",
                    "-o",
                    "--other",
                    "-r",
                    "--rr",
                    "-R",
                    "--reset-on-fork",
                    "-m",
                    "-a",
                    "--all-tasks",
                ],
            )?;
            r.get(1..).unwrap_or(&[])
        }
        "taskset" => {
            let r = skip_options("taskset", rest, &[], &["-c", "--cpu-list", "-a", "--all-tasks"])?;
            r.get(1..).unwrap_or(&[])
        }
        "caffeinate" => skip_options("caffeinate", rest, &["-t", "-w"], &["-d", "-i", "-m", "-s", "-u"])?,
        "busybox" | "toybox" => rest,
        _ => return Ok(None),
    };
    Ok(Some(inner))
}

/// Strips dispatch wrappers until a real command (or a shell) is left. An empty result means the
/// wrapper had nothing to run. Unknown wrapper options make unwrapping fail (PO-4).
pub fn unwrap_command(argv: &[String]) -> Result<&[String], UnwrapError> {
    let mut current = argv;
    // Bounded: each step consumes at least the wrapper name.
    while let Some(inner) = unwrap_once(current)? {
        if inner.is_empty() {
            return Ok(inner);
        }
        current = inner;
    }
    Ok(current)
}

/// True if a pattern grant for this executable would be dishonest (PO-5).
pub fn never_grantable(unwrapped: &[String]) -> bool {
    let Some(first) = unwrapped.first() else { return true };
    is_wrapper(first) || is_shell(first) || is_privilege_changer(first) || runs_inline_code(unwrapped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn po_4_dispatch_wrappers_are_unwrapped() {
        let cases = [
            ("env -i FOO=1 -u BAR ls -l", "ls -l"),
            ("/usr/bin/env A=b git status", "git status"),
            ("nice -n 10 make", "make"),
            ("nice -5 make", "make"),
            ("nohup ./server --port 1", "./server --port 1"),
            ("timeout -s KILL 30 curl x", "curl x"),
            ("timeout 5s nice ionice -c 3 rsync a b", "rsync a b"),
            ("stdbuf -o L tail -f log", "tail -f log"),
            ("setsid -f daemon", "daemon"),
            ("chrt -f 10 job", "job"),
            ("taskset -c 0,1 job", "job"),
            ("taskset 0x3 job", "job"),
            ("busybox rm -rf x", "rm -rf x"),
            ("time -p make test", "make test"),
            ("ls -l", "ls -l"),
        ];
        for (input, expected) in cases {
            assert_eq!(unwrap_command(&v(input)).unwrap(), v(expected).as_slice(), "{input}");
        }
    }

    #[test]
    fn po_4_unknown_wrapper_options_fail_unwrapping() {
        let err = unwrap_command(&v("env --chdir=/ ls")).unwrap_err();
        assert_eq!(err.wrapper, "env");
        assert!(unwrap_command(&v("nice --weird make")).is_err());
        assert!(unwrap_command(&v("timeout --mystery 5 x")).is_err());
    }

    #[test]
    fn po_4_shells_are_recognized() {
        assert!(is_shell("/bin/bash") && is_shell("zsh") && is_shell("pwsh"));
        assert!(!is_shell("bashful"));
        assert_eq!(shell_script(&v("sh -c echo")), Some("echo"));
        assert_eq!(shell_script(&["bash".into(), "-lc".into(), "ls | wc".into()]), Some("ls | wc"));
        assert_eq!(shell_script(&v("bash script.sh")), None);
    }

    #[test]
    fn po_5_wrappers_shells_privilege_and_inline_code_are_never_grantable() {
        for bad in [
            "env",
            "bash -x",
            "sudo ls",
            "doas rm",
            "python3 -c print(1)",
            "perl -e x",
            "node --eval x",
            "awk {print}",
            "ruby -eputs",
        ] {
            assert!(never_grantable(&v(bad)), "{bad}");
        }
        for ok in ["ls -l", "python3 safe.py", "awk -f prog.awk data", "git push"] {
            assert!(!never_grantable(&v(ok)), "{ok}");
        }
    }
}
