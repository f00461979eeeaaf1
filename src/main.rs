//! The `strata` binary: parse, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // mount(8) and fstab run `strata STORE MOUNTPOINT -o OPTIONS` (through
    // mount.fuse3): rewritten into `strata mount …` first.
    let argv = match strata::cli::helper::rewrite(std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(msg) => {
            eprintln!("strata: {msg}");
            return ExitCode::from(2);
        }
    };
    let cli = strata::cli::Cli::parse_from(argv);
    let logs_elsewhere = matches!(cli.command, strata::cli::Command::Mount(_));
    if !logs_elsewhere {
        let _ = strata::cli::init_logging(cli.verbose, strata::cli::LogSink::Stderr, false);
    }
    match strata::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("strata: {msg}");
            ExitCode::FAILURE
        }
    }
}
