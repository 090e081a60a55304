//! `sheaf serve --config FILE`: settings from a TOML file, merged under the
//! flags and the environment.
//!
//! The file's keys are the long names of `sheaf serve`'s flags (and
//! `registry`); clap stays the one place for their types, defaults, help and
//! environment variables. The file is read after a first parse, each of its
//! values is checked on its own (so an error names the file and the key), and
//! the values of keys that no flag or environment variable set are appended
//! to the command line, which is then parsed again: a flag wins over the
//! environment, which wins over the file, which wins over the default. A list
//! given by a flag or the environment replaces the file's list.

use super::args::Cli;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};
use std::ffi::OsString;
use std::path::Path;

/// Parses the command line, environment and (for `serve --config`) the
/// configuration file into [`Cli`]. Usage errors exit as clap's do; a bad
/// file or key is returned as a message naming it.
pub fn parse_from(argv: Vec<OsString>) -> Result<Cli, String> {
    let matches = Cli::command().try_get_matches_from(&argv).unwrap_or_else(|e| usage_exit(e, &argv));
    let serve = match matches.subcommand() {
        Some(("serve", serve)) => serve,
        _ => return Ok(from_matches(&matches)),
    };
    let Some(path) = serve.get_one::<std::path::PathBuf>("config").cloned() else {
        return Ok(from_matches(&matches));
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read --config {}: {e}", path.display()))?;
    let extra = file_args(&path, &text, &matches, serve)?;
    let all: Vec<OsString> = argv.into_iter().chain(extra).collect();
    let matches = Cli::command().try_get_matches_from(&all).unwrap_or_else(|e| usage_exit(e, &all));
    Ok(from_matches(&matches))
}

/// Ends the process on a usage error as clap does (help and version print
/// as usual), except that with `--json` the error is one JSON line,
/// `{"error": {"kind": "usage", "message": ...}}`, like every other error.
fn usage_exit(e: clap::Error, argv: &[OsString]) -> ! {
    use clap::error::ErrorKind;
    let json = argv.iter().skip(1).any(|a| a == "--json");
    if !json || matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit()
    }
    let message = e.render().to_string();
    let message = message.trim().trim_start_matches("error: ");
    eprintln!("{}", serde_json::json!({"error": {"kind": "usage", "message": message}}));
    std::process::exit(i32::from(super::codes::INVALID))
}

fn from_matches(matches: &ArgMatches) -> Cli {
    Cli::from_arg_matches(matches).unwrap_or_else(|e| e.exit())
}

/// The command-line arguments that the file at `path` adds: one
/// `--key=value` per value of a key that neither a flag nor the environment
/// set.
fn file_args(path: &Path, text: &str, top: &ArgMatches, serve: &ArgMatches) -> Result<Vec<OsString>, String> {
    let at = |key: &str, what: String| format!("{}: key `{key}`: {what}", path.display());
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| format!("{}: {e}", path.display()))?;
    let mut command = Cli::command();
    command.build();
    let serve_command = command.find_subcommand("serve").expect("serve is a subcommand");
    let mut extra = Vec::new();
    for (key, value) in &table {
        let id = key.replace('-', "_");
        let (arg, matches) = match id.as_str() {
            "registry" => (command.get_arguments().find(|a| a.get_id() == "registry"), top),
            "config" | "help" | "json" => (None, serve),
            _ => (serve_command.get_arguments().find(|a| a.get_id() == id.as_str() && a.get_long().is_some()), serve),
        };
        let arg = arg.ok_or_else(|| {
            let known: Vec<_> = serve_command
                .get_arguments()
                .filter_map(|a| a.get_long())
                .filter(|l| !["config", "help", "json"].contains(l))
                .collect();
            at(
                key,
                format!("unknown key; the keys are `registry` and the flags of `sheaf serve`: {}", known.join(", ")),
            )
        })?;
        if key.contains('_') {
            return Err(at(key, format!("keys are spelled as the flags are: `{}`", key.replace('_', "-"))));
        }
        if matches!(matches.value_source(&id), Some(ValueSource::CommandLine | ValueSource::EnvVariable)) {
            continue;
        }
        let long = arg.get_long().expect("found by its long name");
        let takes_values = arg.get_action().takes_values();
        let values = match value {
            toml::Value::Array(items) if matches!(arg.get_action(), ArgAction::Append) => items.clone(),
            toml::Value::Array(_) => return Err(at(key, "takes one value, not a list".into())),
            v => vec![v.clone()],
        };
        for value in values {
            let one = match (&value, takes_values) {
                (toml::Value::Boolean(true), false) => format!("--{long}"),
                (toml::Value::Boolean(false), false) => continue,
                (_, false) => return Err(at(key, format!("expected true or false, got {value}"))),
                (toml::Value::String(s), true) => format!("--{long}={s}"),
                (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_), true) => {
                    format!("--{long}={value}")
                }
                (_, true) => return Err(at(key, format!("expected a string or a number, got {value}"))),
            };
            // Checked alone, so that a bad value names the file and the key.
            // (A flag that needs another, like --tls-cert, is checked whole later.)
            let alone = Cli::command().try_get_matches_from(["sheaf", "serve", one.as_str()]);
            if let Err(e) = alone.as_ref().map(|_| ()).or_else(|e| match e.kind() {
                clap::error::ErrorKind::MissingRequiredArgument => Ok(()),
                _ => Err(e),
            }) {
                let first = e.to_string();
                let first = first.lines().next().unwrap_or_default().trim_start_matches("error: ").to_owned();
                return Err(at(key, first));
            }
            extra.push(one.into());
        }
    }
    Ok(extra)
}

/// The flags of a parsed `serve` command (for tests).
#[cfg(test)]
fn serve_args(cli: Cli) -> super::args::ServeArgs {
    match cli.command {
        super::args::Command::Serve(a) => *a,
        _ => panic!("not serve"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(file: &str, args: &[&str]) -> Result<Cli, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sheaf.toml");
        std::fs::write(&path, file).unwrap();
        let mut argv: Vec<OsString> = vec!["sheaf".into(), "serve".into(), "--config".into(), path.clone().into()];
        argv.extend(args.iter().map(OsString::from));
        parse_from(argv).map_err(|e| e.replace(&path.display().to_string(), "FILE"))
    }

    #[test]
    fn the_file_fills_what_flags_do_not_set() {
        let file = "cache-mib = 12\nlisten = \"127.0.0.1:7000\"\npeer = [\"grpc://a:1\", \"grpc://b:1\"]\n\
                    log-json = true\nstall-timeout = \"5s\"\nregistry = \"memory://\"\n";
        let cli = run(file, &["--cache-mib", "34"]).unwrap();
        assert_eq!(cli.registry.as_deref(), Some("memory://"));
        let a = serve_args(cli);
        assert_eq!(a.cache_mib, 34, "a flag wins over the file");
        assert_eq!(a.listen.port(), 7000);
        assert_eq!(a.peer, ["grpc://a:1", "grpc://b:1"]);
        assert!(a.log_json);
        assert_eq!(a.stall_timeout, std::time::Duration::from_secs(5));
        let a = serve_args(run(file, &["--peer", "grpc://c:1"]).unwrap());
        assert_eq!(a.peer, ["grpc://c:1"], "a list on the command line replaces the file's");
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        let e = run("cache-mb = 1\n", &[]).unwrap_err();
        assert!(e.starts_with("FILE: key `cache-mb`: unknown key; the keys are `registry` and the flags"), "{e}");
        let e = run("cache_mib = 1\n", &[]).unwrap_err();
        assert_eq!(e, "FILE: key `cache_mib`: keys are spelled as the flags are: `cache-mib`");
        let e = run("cache-mib = \"lots\"\n", &[]).unwrap_err();
        assert!(e.starts_with("FILE: key `cache-mib`: invalid value 'lots' for '--cache-mib"), "{e}");
        let e = run("log-json = \"yes\"\n", &[]).unwrap_err();
        assert_eq!(e, "FILE: key `log-json`: expected true or false, got \"yes\"");
        let e = run("listen = [\"a\", \"b\"]\n", &[]).unwrap_err();
        assert_eq!(e, "FILE: key `listen`: takes one value, not a list");
        let e = run("config = \"x\"\n", &[]).unwrap_err();
        assert!(e.starts_with("FILE: key `config`: unknown key"), "{e}");
        let e = run("cache-mib = \n", &[]).unwrap_err();
        assert!(e.starts_with("FILE: TOML parse error at line 1"), "{e}");
    }
}
