//! `sheaf auth`: make the secrets an `--auth` file refers to. Only hashes go
//! into the file; the token itself is printed once.

use super::args::AuthCommand;
use super::{codes, emit};
use serde_json::json;
use sheaf::Error;
use std::io::Read;

/// Runs an `auth` command.
pub fn run(command: &AuthCommand, json: bool) -> Result<u8, Error> {
    match command {
        AuthCommand::HashPassword => {
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input).map_err(|e| Error::io("standard input", e))?;
            let password = input.strip_suffix('\n').map(|p| p.strip_suffix('\r').unwrap_or(p)).unwrap_or(&input);
            if password.is_empty() {
                return Err(Error::Invalid("hash-password: no password on standard input".into()));
            }
            let phc = sheaf::auth::config::hash_password(password.as_bytes()).map_err(Error::Invalid)?;
            emit(json, &json!({"password": phc}), || phc.clone());
        }
        AuthCommand::NewToken { name } => {
            let (token, sha256) = sheaf::auth::keys::new_api_token();
            let entry = format!("[[token]]\nname = {}\nsha256 = \"{sha256}\"\ngroups = []", toml_string(name));
            emit(json, &json!({"token": token, "name": name, "sha256": sha256}), || format!("{token}\n\n{entry}"));
        }
    }
    Ok(codes::OK)
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}
