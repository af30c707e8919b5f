//! `interlock`: the enforcer daemon (`interlock serve`) and the operator commands.

mod cli;
mod cli_discover;
mod cli_kernel;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line: "cannot listen on ...: Address in use".
            eprintln!("interlock: {e:#}");
            ExitCode::FAILURE
        }
    }
}
