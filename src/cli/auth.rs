//! `sheaf auth`: make the secrets an `--auth` file refers to. Only hashes go
//! into the file; the token itself is printed once.

use super::Report;
use super::args::AuthCommand;
use serde::Serialize;
use sheaf::{Error, Result};
use std::fmt;
use std::io::Read;

/// What an `auth` command made.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Secret {
    /// A password's argon2id hash (a PHC string).
    Password {
        /// The PHC string.
        password: String,
    },
    /// A new API token and what identifies it in the `--auth` file.
    Token {
        /// The token, shown only now.
        token: String,
        /// Its name in grants and logs.
        name: String,
        /// The SHA-256 the file keeps instead of the token.
        sha256: String,
    },
}

/// Runs an `auth` command.
pub fn run(command: &AuthCommand) -> Result<Secret> {
    match command {
        AuthCommand::HashPassword => {
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input).map_err(|e| Error::io("standard input", e))?;
            let password = input.strip_suffix('\n').map(|p| p.strip_suffix('\r').unwrap_or(p)).unwrap_or(&input);
            if password.is_empty() {
                return Err(Error::Invalid("hash-password: no password on standard input".into()));
            }
            let password = sheaf::auth::config::hash_password(password.as_bytes()).map_err(Error::Invalid)?;
            Ok(Secret::Password { password })
        }
        AuthCommand::NewToken { name } => {
            let (token, sha256) = sheaf::auth::keys::new_api_token();
            Ok(Secret::Token { token, name: name.clone(), sha256 })
        }
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Password { password } => f.write_str(password),
            // The token, then the entry to paste into the file.
            Secret::Token { token, name, sha256 } => {
                write!(f, "{token}\n\n[[token]]\nname = {}\nsha256 = \"{sha256}\"\ngroups = []", toml_string(name))
            }
        }
    }
}

impl Report for Secret {}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_comes_with_its_entry() {
        let s = Secret::Token { token: "tok".into(), name: "ci \"bot\"".into(), sha256: "00ff".into() };
        assert_eq!(s.to_string(), "tok\n\n[[token]]\nname = \"ci \\\"bot\\\"\"\nsha256 = \"00ff\"\ngroups = []");
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"token":"tok","name":"ci \"bot\"","sha256":"00ff"}"#);
        let p = Secret::Password { password: "$argon2id$x".into() };
        assert_eq!(
            (p.to_string(), serde_json::to_string(&p).unwrap()),
            ("$argon2id$x".into(), r#"{"password":"$argon2id$x"}"#.into())
        );
    }
}
