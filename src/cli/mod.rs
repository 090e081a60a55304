//! The `sheaf` command: turns flags into library calls and results into text
//! or JSON. One module per command; each returns a [`Report`], which
//! [`emit`] prints. Exit codes are part of the interface (see [`codes`]).

mod args;
mod auth;
mod bar;
mod browse;
mod cache;
pub mod config;
mod delete;
mod demo;
mod diff;
mod exit;
mod gc;
mod get;
mod hash;
mod install;
mod lineage;
mod list;
mod log;
mod outfile;
mod push;
mod put;
mod serve;
mod tag;
mod text;
mod verify;

pub use args::Cli;
pub use exit::codes;

use args::Command;
use bar::Bar;
use exit::Failure;
use serde::Serialize;
use sheaf::Registry;
use std::fmt::Display;
use std::process::ExitCode;

/// What a command found or did: one line of JSON with `--json`, text
/// otherwise. Both forms are read by scripts and tests, byte for byte.
pub trait Report: Serialize + Display {
    /// The exit code to end with: not OK when the command ran but its answer
    /// is a failure (a `verify` that found differences, say).
    fn exit_code(&self) -> u8 {
        codes::OK
    }

    /// Lines for stderr, printed before the text (never with `--json`):
    /// side messages that would disturb scripts reading stdout.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Prints `report` (JSON with `json`, else its notes and text; empty text
/// prints nothing) and returns its exit code. A closed stdout (as in
/// `sheaf browse x | head -1`) is not an error.
pub fn emit(json: bool, report: &impl Report) -> u8 {
    use std::io::Write;
    let text = if json {
        serde_json::to_string(report).expect("reports serialize")
    } else {
        for note in report.notes() {
            eprintln!("{note}");
        }
        report.to_string()
    };
    if !text.is_empty() {
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }
    report.exit_code()
}

/// Runs a parsed command line to completion.
pub async fn run(cli: Cli) -> ExitCode {
    let json = cli.json;
    match dispatch(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            failure.print(json);
            ExitCode::from(failure.exit_code())
        }
    }
}

/// Runs one command; the registry is opened only by commands that use one.
async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    let json = cli.json;
    let open = || Registry::open(&cli.registry_spec());
    let progress = Bar::new(json);
    Ok(match &cli.command {
        Command::Hash(a) => emit(json, &hash::run(a).await?),
        Command::Cache(a) => emit(json, &cache::run(a).await?),
        Command::Auth(a) => emit(json, &auth::run(&a.command)?),
        Command::Get(a) => emit(json, &get::run(a).await?),
        Command::Put(a) => emit(json, &put::run(a).await?),
        Command::Lineage(a) => emit(json, &lineage::run(&open()?, a).await?),
        Command::Push(a) => emit(json, &push::run(&open()?, a, &progress).await?),
        Command::List => emit(json, &list::run(&open()?).await?),
        Command::Log(a) => emit(json, &log::run(&open()?, a).await?),
        Command::Browse(a) => browse::run(&open()?, a, json).await?,
        Command::Install(a) => emit(json, &install::run(&open()?, a, &progress).await?),
        Command::Verify(a) => emit(json, &verify::run(&open()?, a, &progress).await?),
        Command::Diff(a) => emit(json, &diff::run(&open()?, a).await?),
        Command::Tag(a) => emit(json, &tag::run(&open()?, a).await?),
        Command::Delete(a) => emit(json, &delete::run(&open()?, a).await?),
        Command::Gc(a) => emit(json, &gc::run(&open()?, a).await?),
        Command::Demo => emit(json, &demo::run(&open()?, &progress).await?),
        Command::Serve(a) => {
            let server = serve::prepare(open()?, a).await?;
            // Scripts and tests read this line to learn the port.
            emit(json, server.report());
            server.run().await?
        }
    })
}
