//! `finkfs`: the command-line tool of finkfs.
//!
//! `main` only parses the arguments, runs the command and turns its result
//! into an exit code (documented in `finkfs --help`, see [`exit`]): 0 the
//! command succeeded, 1 it ran and found a problem, 2 usage or I/O error.
//! Errors are one `finkfs: <error>` line on stderr; a reader that closed
//! our stdout (`finkfs ls | head`) is not an error.

/// `println!` that returns the write error instead of panicking, so a
/// reader closing our stdout ends the command quietly (see [`exit`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

mod backup;
mod bench;
mod cli;
mod client;
mod demo;
mod exit;
mod format;
mod fsck;
mod progress;
mod upload;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use exit::Outcome;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return exit::usage_error(&error),
    };
    init_tracing();
    let result = match cli.command {
        Command::Bench(command) => bench::run(command).map(|()| Outcome::Clean),
        Command::Demo(args) => demo::run(args),
        Command::Client(command) => client::run(&cli.cluster, command),
        Command::Fsck(args) => fsck::run(args, &cli.cluster),
        Command::Backup(command) => backup::run(command),
        Command::Restore(args) => backup::run_restore(args),
    };
    exit::code(result)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FINKFS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
