//! The `sheaf` binary: a thin shell over the `sheaf` library.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    sheaf::flight::tune_allocator();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sheaf: error: cannot start the async runtime: {e}");
            return ExitCode::from(cli::codes::FAILURE);
        }
    };
    runtime.block_on(cli::run(args))
}
