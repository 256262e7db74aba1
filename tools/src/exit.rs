//! Exit codes of `finkfs` and the one-line error report.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | the command succeeded |
//! | 1 | the command ran and found a problem: an object missing, a checksum mismatch, uploads that failed, an unhealthy node, a demo check that failed |
//! | 2 | usage error, or an I/O error that stopped the command (cluster unreachable, local file unreadable) |

use std::process::ExitCode;

/// Exit code: the command ran and found a problem.
pub const EXIT_PROBLEM: u8 = 1;
/// Exit code: bad usage, or an error that stopped the command.
pub const EXIT_ERROR: u8 = 2;

/// The exit codes as `--help` shows them.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  the command succeeded
  1  the command ran and found a problem: an object missing, a checksum
     mismatch, uploads that failed, an unhealthy node, a failed demo check
  2  usage error, or an error that stopped the command (cluster unreachable,
     local file unreadable)";

/// What a command that ran to its end found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything as asked.
    Clean,
    /// It ran, and reported problems on stderr.
    Problems,
}

impl Outcome {
    /// `Problems` when `found` is true.
    pub fn problems_if(found: bool) -> Outcome {
        if found {
            Outcome::Problems
        } else {
            Outcome::Clean
        }
    }
}

/// The exit code of a command's result; an error is printed as one line.
pub fn code(result: anyhow::Result<Outcome>) -> ExitCode {
    match result {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Problems) => ExitCode::from(EXIT_PROBLEM),
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("finkfs: {}", one_line(&format!("{error:#}")));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Prints a clap error: help and version go to stdout with code 0, a
/// usage error is one `finkfs:` line with code 2.
pub fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // Printing help can only fail on a closed stdout: nothing to say.
            let _ = error.print();
            if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(EXIT_ERROR)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            eprintln!("finkfs: {} (see 'finkfs --help')", clap_message(error));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The first paragraph of a clap error (its message, with any list of
/// missing arguments), without the `error:` prefix, and the tip that
/// follows it when there is one ("a similar subcommand exists").
fn clap_message(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let mut paragraphs = rendered.split("\n\n").map(|p| {
        p.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    });
    let first = paragraphs.next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(&first).to_string();
    match paragraphs.find(|p| p.starts_with("tip:")) {
        Some(tip) => format!("{first}; {}", tip.trim_start_matches("tip: ")),
        None => first,
    }
}

/// Joins the lines of a message so the report stays one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A reader that closed our stdout (`finkfs ls | head`) is not an error.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_errors_become_one_line() {
        assert_eq!(one_line("a\n\n  b\n"), "a; b");
    }

    #[test]
    fn broken_pipe_is_found_under_context() {
        let io = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let error = anyhow::Error::new(io).context("writing the listing");
        assert!(is_broken_pipe(&error));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }
}
