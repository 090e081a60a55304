//! The `--auth` file: users, API tokens, grants and the server key.
//!
//! ```toml
//! [server]
//! key = "a secret of at least 32 characters"  # or key_file = "path"
//! session_ttl = "12h"
//!
//! [[user]]
//! name = "alice"
//! password = "$argon2id$..."   # `sheaf auth hash-password`
//! groups = ["ml"]
//!
//! [[token]]
//! name = "nightly"
//! sha256 = "<hex>"             # `sheaf auth new-token nightly`
//! groups = ["readers"]
//!
//! [jwt]                        # optional: see `jwt`
//! issuer = "https://idp.example"
//! audience = "sheaf"
//! jwks_file = "jwks.json"
//!
//! [[grant]]
//! to = "group:ml"              # user:NAME, token:NAME, jwt:NAME, cert:NAME, group:NAME, authenticated, anonymous
//! packages = "team/*"
//! access = "write"             # read | write
//! ```
//!
//! Only hashes of secrets are stored. Unknown keys are errors, and every
//! error names the key at fault.

use super::Access;
use super::jwt::JwtVerifier;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Who a grant is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Every caller, with or without credentials.
    Anonymous,
    /// Every identified caller.
    Authenticated,
    /// One password user.
    User(String),
    /// One API token.
    Token(String),
    /// Members of a group.
    Group(String),
    /// A client certificate's common name.
    Cert(String),
    /// A caller named by a JWT's name claim.
    Jwt(String),
}

impl std::str::FromStr for Subject {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let named = |prefix: &str| s.strip_prefix(prefix).filter(|n| !n.is_empty()).map(str::to_owned);
        match s {
            "anonymous" => Ok(Subject::Anonymous),
            "authenticated" => Ok(Subject::Authenticated),
            _ => None
                .or_else(|| named("user:").map(Subject::User))
                .or_else(|| named("token:").map(Subject::Token))
                .or_else(|| named("group:").map(Subject::Group))
                .or_else(|| named("cert:").map(Subject::Cert))
                .or_else(|| named("jwt:").map(Subject::Jwt))
                .ok_or_else(|| {
                    format!(
                        "{s:?} is not a subject: use user:NAME, token:NAME, jwt:NAME, cert:NAME, group:NAME, \
                         authenticated or anonymous"
                    )
                }),
        }
    }
}

/// One grant: `to` may do `access` with packages matching `packages`.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Who.
    pub to: Subject,
    /// A glob over package names (`*` matches any run of characters).
    pub packages: String,
    /// What.
    pub access: Access,
}

/// A password user.
#[derive(Debug, Clone)]
pub struct User {
    /// The argon2 PHC string.
    pub password: String,
    /// Its groups.
    pub groups: Vec<String>,
}

/// An API token (only its SHA-256 is kept).
#[derive(Debug, Clone)]
pub struct Token {
    /// Its name in grants and logs.
    pub name: String,
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
    /// Its groups.
    pub groups: Vec<String>,
}

/// A checked `--auth` file.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The server key's bytes.
    pub key: Option<Vec<u8>>,
    /// How long a session token from a login stays valid.
    pub session_ttl: Duration,
    /// Users by name.
    pub users: HashMap<String, User>,
    /// API tokens.
    pub tokens: Vec<Token>,
    /// Grants, in file order.
    pub grants: Arc<Vec<Grant>>,
    /// Checks tokens from an identity provider (`[jwt]`).
    pub jwt: Option<JwtVerifier>,
    /// The files this configuration was read from (the file itself when
    /// loaded from one, and the key, JWKS or secret files it names): a
    /// change to any of them reloads it.
    pub sources: Vec<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    server: Option<ServerSection>,
    #[serde(default)]
    user: Vec<UserEntry>,
    #[serde(default)]
    token: Vec<TokenEntry>,
    #[serde(default)]
    grant: Vec<GrantEntry>,
    jwt: Option<super::jwt::Section>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    key: Option<String>,
    key_file: Option<String>,
    session_ttl: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    password: String,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    sha256: String,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantEntry {
    to: String,
    packages: String,
    access: String,
}

/// Shortest server key accepted, in bytes.
const MIN_KEY_BYTES: usize = 32;

impl AuthConfig {
    /// Reads and checks the file at `path` (a relative `key_file` is
    /// relative to the file's folder).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut config = Self::parse_in(&text, path.parent()).map_err(|e| format!("{}: {e}", path.display()))?;
        config.sources.insert(0, path.to_path_buf());
        Ok(config)
    }

    /// Parses and checks a file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::parse_in(text, None)
    }

    /// Parses and checks `text`; relative file names resolve against `dir`.
    /// Kept as one function (a little over 80 lines) on purpose: it reads as
    /// the file's schema, one section after the other.
    fn parse_in(text: &str, dir: Option<&Path>) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        let resolve = |f: &str| dir.map_or_else(|| Path::new(f).to_path_buf(), |d| d.join(f));
        let mut sources = Vec::new();
        let jwt = match file.jwt {
            None => None,
            Some(section) => {
                sources.extend(section.files().map(resolve));
                Some(JwtVerifier::from_section(section, dir)?)
            }
        };
        let server = file.server.unwrap_or(ServerSection { key: None, key_file: None, session_ttl: None });
        let key = match (server.key, server.key_file) {
            (Some(_), Some(_)) => return Err("[server]: give key or key_file, not both".into()),
            (Some(k), None) => Some(k.into_bytes()),
            (None, Some(f)) => {
                let path = resolve(&f);
                sources.push(path.clone());
                let bytes = std::fs::read(&path).map_err(|e| format!("[server] key_file {}: {e}", path.display()))?;
                Some(bytes.trim_ascii().to_vec())
            }
            (None, None) => {
                return Err("[server] key: missing: set key (or key_file) to a secret of at least 32 bytes; \
                            it signs session tokens and tickets, and servers sharing it accept each other's"
                    .into());
            }
        };
        if let Some(k) = &key
            && k.len() < MIN_KEY_BYTES
        {
            return Err(format!("[server] key: {} bytes; at least {MIN_KEY_BYTES} are needed", k.len()));
        }
        let session_ttl = match server.session_ttl {
            None => Duration::from_secs(12 * 3600),
            Some(t) => humantime::parse_duration(&t).map_err(|e| format!("[server] session_ttl {t:?}: {e}"))?,
        };
        let mut users = HashMap::new();
        for (i, u) in file.user.into_iter().enumerate() {
            let at = format!("user[{i}] ({:?})", u.name);
            if u.name.is_empty() || u.name.contains(':') {
                return Err(format!("{at} name: must be non-empty without ':'"));
            }
            // A wrong password gives Ok(false); a malformed hash an error.
            if !u.password.starts_with("$argon2") || argon2::verify_encoded(&u.password, b"").is_err() {
                return Err(format!(
                    "{at} password: not an argon2 PHC string (make one with `sheaf auth hash-password`)"
                ));
            }
            if users.insert(u.name.clone(), User { password: u.password, groups: u.groups }).is_some() {
                return Err(format!("{at} name: defined twice"));
            }
        }
        let mut tokens = Vec::new();
        for (i, t) in file.token.into_iter().enumerate() {
            let at = format!("token[{i}] ({:?})", t.name);
            let bytes = hex::decode(&t.sha256).ok().and_then(|b| <[u8; 32]>::try_from(b).ok());
            let sha256 = bytes
                .ok_or_else(|| format!("{at} sha256: not 64 hex digits (make one with `sheaf auth new-token`)"))?;
            if t.name.is_empty() || tokens.iter().any(|x: &Token| x.name == t.name) {
                return Err(format!("{at} name: empty or defined twice"));
            }
            tokens.push(Token { name: t.name, sha256, groups: t.groups });
        }
        let mut grants = Vec::new();
        for (i, g) in file.grant.into_iter().enumerate() {
            let at = format!("grant[{i}]");
            let to: Subject = g.to.parse().map_err(|e| format!("{at} to: {e}"))?;
            if g.packages.is_empty() || g.packages.chars().any(|c| c.is_whitespace() || c == '?' || c == '[') {
                return Err(format!(
                    "{at} packages {:?}: a glob over package names, with * as the only wildcard",
                    g.packages
                ));
            }
            // A pattern no package name can match (`team/`, `a/b/c`) is a
            // mistake that would silently grant nothing.
            let could_match =
                |star: &str| g.packages.replace('*', star).parse::<crate::registry::PackageName>().is_ok();
            if !could_match("x") && !could_match("x/x") {
                return Err(format!(
                    "{at} packages {:?}: matches no package name (owner/name), so it would grant nothing",
                    g.packages
                ));
            }
            let access = match g.access.as_str() {
                "read" => Access::Read,
                "write" => Access::Write,
                other => return Err(format!("{at} access {other:?}: must be read or write")),
            };
            grants.push(Grant { to, packages: g.packages, access });
        }
        Ok(AuthConfig { key, session_ttl, users, tokens, grants: Arc::new(grants), jwt, sources })
    }

    /// The API token whose SHA-256 is `digest`, compared in constant time.
    pub fn token_by_digest(&self, digest: &[u8; 32]) -> Option<&Token> {
        let mut found = None;
        for t in &self.tokens {
            // Every byte of every token is compared: no early exit.
            let diff = t.sha256.iter().zip(digest).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if std::hint::black_box(diff) == 0 {
                found = Some(t);
            }
        }
        found
    }
}

/// An argon2id PHC string for `password`, with a fresh random salt.
pub fn hash_password(password: &[u8]) -> Result<String, String> {
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| "no randomness".to_owned())?;
    // OWASP's recommended minimum for argon2id: 19 MiB, 2 passes, 1 lane.
    let config = argon2::Config::owasp2();
    argon2::hash_encoded(password, &salt, &config).map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `phc`.
pub fn verify_password(phc: &str, password: &[u8]) -> bool {
    argon2::verify_encoded(phc, password).unwrap_or(false)
}

/// A TOML error as one line naming where it is (`line L, column C: ...`),
/// without the file's text: toml's own message quotes the offending line,
/// which may hold the server key or a password hash, and the error is
/// logged. Quoted values in the message (`invalid type: string "..."`) are
/// left out for the same reason; names of keys (in backticks) stay.
fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    let mut message = String::new();
    let mut quoted = false;
    for c in e.message().trim_end().chars() {
        match (c, quoted) {
            ('"', false) => {
                quoted = true;
                message.push_str("\"...");
            }
            ('"', true) => {
                quoted = false;
                message.push('"');
            }
            (_, true) => {}
            ('\n' | '\r', false) => message.push(' '),
            (c, false) => message.push(c),
        }
    }
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_key() {
        let bad = |text: &str, needle: &str| {
            let text = match text.contains("[server]") {
                true => text.to_owned(),
                false => format!("[server]\nkey = '{}'\n{text}", "k".repeat(32)),
            };
            let e = AuthConfig::parse(&text).unwrap_err();
            assert!(e.contains(needle), "{e}");
        };
        bad("[server]\nkee = 'x'", "kee");
        bad("[server]\nkey = 'short'", "[server] key");
        bad("[[user]]\nname = 'a'\npassword = 'plain'", "user[0]");
        bad("[[token]]\nname = 't'\nsha256 = 'zz'", "token[0]");
        bad("[[grant]]\nto = 'group'\npackages = '*'\naccess = 'read'", "grant[0] to");
        bad("[[grant]]\nto = 'anonymous'\npackages = '*'\naccess = 'admin'", "grant[0] access");
        bad("[jwt]\nissuer = 'x'", "audience");
        bad("[jwt]\nissuer = 'x'\naudience = 'y'", "[jwt] jwks_file: missing");
        bad(
            "[jwt]\nissuer = 'x'\naudience = 'y'\njwks_file = '/nonexistent/jwks.json'",
            "[jwt] jwks_file /nonexistent",
        );
        bad("[[grant]]\nto = 'jwt:'\npackages = '*'\naccess = 'read'", "grant[0] to");
        for never in ["team/", "a/b/c", "*/", "/x"] {
            bad(&format!("[[grant]]\nto = 'anonymous'\npackages = '{never}'\naccess = 'read'"), "matches no package");
        }
        for fine in ["*", "team/*", "team*", "a/b", "*/data"] {
            let text = format!(
                "[server]\nkey = '{}'\n[[grant]]\nto = 'anonymous'\npackages = '{fine}'\naccess = 'read'",
                "k".repeat(32)
            );
            assert!(AuthConfig::parse(&text).is_ok(), "{fine}");
        }
        let e = AuthConfig::parse("[[grant]]\nto = 'anonymous'\npackages = '*'\naccess = 'read'").unwrap_err();
        assert!(e.contains("[server] key: missing"), "{e}");
    }

    #[test]
    fn syntax_errors_quote_nothing_of_the_file() {
        let secret = "TOP-SECRET-SERVER-KEY-0123456789abcdef";
        for text in [
            format!("[server]\nkye = \"{secret}\"\n"),
            format!("[server]\nkey = \"{secret}\" x\n"),
            format!("server = \"{secret}\"\n"),
            format!("[server]\nkey = [\"{secret}\"]\n"),
        ] {
            let e = AuthConfig::parse(&text).unwrap_err();
            assert!(!e.contains("SECRET"), "{e}");
            assert!(!e.contains('\n'), "{e}");
            assert!(e.starts_with("line "), "{e}");
        }
        let e = AuthConfig::parse(&format!("[server]\nkye = \"{secret}\"\n")).unwrap_err();
        assert!(e.starts_with("line 2, column 1: ") && e.contains("kye"), "{e}");
    }

    #[test]
    fn passwords_round_trip() {
        let phc = hash_password(b"s3cret").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password(&phc, b"s3cret"));
        assert!(!verify_password(&phc, b"wrong"));
        let text = format!(
            "[server]\nkey = '{}'\n[[user]]\nname = 'alice'\npassword = '{phc}'\ngroups = ['ml']",
            "k".repeat(32)
        );
        let config = AuthConfig::parse(&text).unwrap();
        assert_eq!(config.users["alice"].groups, vec!["ml".to_owned()]);
    }
}
