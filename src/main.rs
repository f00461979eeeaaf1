//! The `strata` binary: parse, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = strata::cli::Cli::parse();
    let logs_elsewhere = matches!(cli.command, strata::cli::Command::Mount(_));
    if !logs_elsewhere {
        let _ = strata::cli::init_logging(cli.verbose, None, true);
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
