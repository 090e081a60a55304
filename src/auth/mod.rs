//! Who may do what: identities, grants, and the signed tokens a server
//! hands out. No I/O and no gRPC here: the Flight server's layer
//! (`flight::auth`) and the CLI (`sheaf auth`) both call into it.
//!
//! - [`config`]: the `--auth` TOML file (users with argon2id password
//!   hashes, API tokens stored as SHA-256, grants), checked with errors that
//!   name the key at fault.
//! - [`cert`]: the name a client certificate proves (`cert:NAME`).
//! - [`jwt`]: tokens from an identity provider (`[jwt]`).
//! - [`keys`]: the server key (HMAC-SHA256): session tokens issued at login
//!   and tickets are signed with it, so servers that share a key accept each
//!   other's.
//! - [`Principal`] and [`Access`]: the caller of a request and what it may do
//!   with a package (default deny).

pub mod cert;
pub mod config;
pub mod jwt;
pub mod keys;

pub use config::{AuthConfig, Grant, Subject};
pub use jwt::JwtVerifier;
pub use keys::{Keys, Session};

use std::sync::Arc;

/// What a request does with a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// See and read it.
    Read,
    /// Read it and commit new revisions (write includes read).
    Write,
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No credentials (grants to `anonymous` apply).
    Anonymous,
    /// A user who logged in with a password (or holds its session token).
    User,
    /// A long-lived API token.
    Token,
    /// A client certificate (mutual TLS).
    Cert,
    /// A JWT from the configured identity provider.
    Jwt,
}

/// The caller of a request, and the grants that apply to it.
#[derive(Debug, Clone)]
pub struct Principal {
    /// How it proved who it is.
    pub kind: Kind,
    /// Its name (empty for anonymous).
    pub name: String,
    /// Its groups.
    pub groups: Vec<String>,
    grants: Arc<Vec<Grant>>,
}

impl Principal {
    /// A caller with no credentials under `config`'s grants.
    pub fn anonymous(config: &AuthConfig) -> Self {
        Principal { kind: Kind::Anonymous, name: String::new(), groups: Vec::new(), grants: config.grants.clone() }
    }

    /// A caller that may do everything: a server without `--auth` (which
    /// serves only on loopback unless told otherwise).
    pub fn unrestricted() -> Self {
        let all = Grant { to: Subject::Anonymous, packages: "*".into(), access: Access::Write };
        Principal { kind: Kind::Anonymous, name: String::new(), groups: Vec::new(), grants: Arc::new(vec![all]) }
    }

    /// An identified caller under `config`'s grants.
    pub fn identified(kind: Kind, name: &str, groups: &[String], config: &AuthConfig) -> Self {
        Principal { kind, name: name.to_owned(), groups: groups.to_vec(), grants: config.grants.clone() }
    }

    /// How the principal is named in grants and logs: `user:alice`,
    /// `token:nightly`, `cert:CN`, or `anonymous`.
    pub fn label(&self) -> String {
        match self.kind {
            Kind::Anonymous => "anonymous".to_owned(),
            Kind::User => format!("user:{}", self.name),
            Kind::Token => format!("token:{}", self.name),
            Kind::Cert => format!("cert:{}", self.name),
            Kind::Jwt => format!("jwt:{}", self.name),
        }
    }

    fn matches(&self, subject: &Subject) -> bool {
        match subject {
            Subject::Anonymous => true,
            Subject::Authenticated => self.kind != Kind::Anonymous,
            Subject::User(n) => self.kind == Kind::User && &self.name == n,
            Subject::Token(n) => self.kind == Kind::Token && &self.name == n,
            Subject::Cert(n) => self.kind == Kind::Cert && &self.name == n,
            Subject::Jwt(n) => self.kind == Kind::Jwt && &self.name == n,
            Subject::Group(g) => self.kind != Kind::Anonymous && self.groups.iter().any(|x| x == g),
        }
    }

    /// The most this caller may do with `package` (`owner/name`), if
    /// anything. Grants to `anonymous` apply to every caller.
    pub fn access(&self, package: &str) -> Option<Access> {
        self.grants.iter().filter(|g| self.matches(&g.to) && glob_match(&g.packages, package)).map(|g| g.access).max()
    }

    /// Whether this caller may do `access` with `package`.
    pub fn may(&self, access: Access, package: &str) -> bool {
        self.access(package).is_some_and(|a| a >= access)
    }
}

/// Glob over package names (the `glob` crate's patterns): `*` matches any
/// run of characters, `/` included; `?` one character; `[ab]` a class.
/// A pattern that is not a valid glob matches only itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    match glob::Pattern::new(pattern) {
        Ok(p) => p.matches(text),
        Err(_) => pattern == text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "a/b"));
        assert!(glob_match("team/*", "team/x"));
        assert!(!glob_match("team/*", "other/x"));
        assert!(glob_match("*/weather", "demo/weather"));
        assert!(glob_match("d*o/w*r", "demo/weather"));
        assert!(!glob_match("demo/weathe", "demo/weather"));
    }

    #[test]
    fn grants_default_deny_and_write_includes_read() {
        let config = AuthConfig::parse(
            r#"
            [server]
            key = "0123456789abcdef0123456789abcdef"
            [[grant]]
            to = "group:ml"
            packages = "team/*"
            access = "write"
            [[grant]]
            to = "authenticated"
            packages = "demo/*"
            access = "read"
            [[grant]]
            to = "anonymous"
            packages = "public/*"
            access = "read"
            "#,
        )
        .unwrap();
        let alice = Principal::identified(Kind::User, "alice", &["ml".into()], &config);
        let job = Principal::identified(Kind::Token, "job", &[], &config);
        let nobody = Principal::anonymous(&config);
        assert!(alice.may(Access::Write, "team/x") && alice.may(Access::Read, "team/x"));
        assert!(alice.may(Access::Read, "demo/weather") && !alice.may(Access::Write, "demo/weather"));
        assert!(job.may(Access::Read, "demo/weather") && !job.may(Access::Read, "team/x"));
        assert!(nobody.may(Access::Read, "public/a") && !nobody.may(Access::Read, "demo/weather"));
        assert!(alice.may(Access::Read, "public/a"));
        assert_eq!(job.access("other/x"), None);
    }
}
