//! The server key: HMAC-SHA256 over session tokens and tickets.
//!
//! A session token (`sheaf1.<payload>.<tag>`, base64url) names the user and
//! its expiry; the tag makes it unforgeable, and servers that share the key
//! (replicas) accept each other's. A signed ticket carries the tag of its
//! own bytes, so an edited ticket is refused. API tokens are random strings
//! of which only the SHA-256 is stored ([`new_api_token`]).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Prefix of session tokens.
const SESSION_PREFIX: &str = "sheaf1.";
/// Prefix of API tokens made by `sheaf auth new-token`.
pub const API_TOKEN_PREFIX: &str = "sheaf_";

/// The key that signs session tokens and tickets.
pub struct Keys {
    key: hmac::Key,
    session_ttl: Duration,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("session_ttl", &self.session_ttl).finish_non_exhaustive()
    }
}

/// What a valid session token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The user's name.
    #[serde(rename = "u")]
    pub user: String,
    /// Expiry, in seconds since the Unix epoch.
    #[serde(rename = "e")]
    pub expires: u64,
    /// A fingerprint of the credential the user logged in with
    /// ([`credential_fingerprint`]): a session ends when it changes.
    #[serde(rename = "c", default)]
    pub credential: String,
    /// When it was issued, in seconds since the Unix epoch: a server whose
    /// `session_ttl` is shorter than the issuer's ends it sooner (absent in
    /// tokens of older servers, which then end at `expires` only).
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub issued: Option<u64>,
}

/// A fingerprint of a user's stored credential (its password's PHC string):
/// 16 hex digits of its SHA-256, which tell a changed password from the one
/// a session was opened with and reveal nothing of either.
pub fn credential_fingerprint(phc: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(phc.as_bytes())[..8])
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Keys {
    /// Keys from `secret`, or a random key (valid for this process only)
    /// when `None`.
    pub fn new(secret: Option<&[u8]>, session_ttl: Duration) -> Self {
        let key = match secret {
            Some(s) => hmac::Key::new(hmac::HMAC_SHA256, s),
            None => hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new()).expect("the OS gives randomness"),
        };
        Keys { key, session_ttl }
    }

    /// A session token for `user`, who logged in with `credential` (the
    /// stored PHC string), valid for the session lifetime.
    pub fn issue_session(&self, user: &str, credential: &str) -> String {
        let issued = now();
        let session = Session {
            user: user.to_owned(),
            expires: issued + self.session_ttl.as_secs(),
            credential: credential_fingerprint(credential),
            issued: Some(issued),
        };
        let payload = B64.encode(serde_json::to_vec(&session).expect("serializable"));
        let tag = hmac::sign(&self.key, payload.as_bytes());
        format!("{SESSION_PREFIX}{payload}.{}", B64.encode(tag.as_ref()))
    }

    /// Whether `token` looks like a session token (as opposed to an API token).
    pub fn is_session_token(token: &str) -> bool {
        token.starts_with(SESSION_PREFIX)
    }

    /// The session a token proves, if it was signed with this key and has not
    /// expired.
    pub fn check_session(&self, token: &str) -> Result<Session, &'static str> {
        let rest = token.strip_prefix(SESSION_PREFIX).ok_or("not a session token")?;
        let (payload, tag) = rest.split_once('.').ok_or("malformed session token")?;
        let tag = B64.decode(tag).map_err(|_| "malformed session token")?;
        hmac::verify(&self.key, payload.as_bytes(), &tag).map_err(|_| "session token not issued by this service")?;
        let bytes = B64.decode(payload).map_err(|_| "malformed session token")?;
        let session: Session = serde_json::from_slice(&bytes).map_err(|_| "malformed session token")?;
        // The shorter of the issuer's and this server's lifetimes: lowering
        // `session_ttl` shortens the sessions already open.
        let ends = session.issued.map_or(session.expires, |i| session.expires.min(i + self.session_ttl.as_secs()));
        if ends <= now() {
            return Err("session expired: log in again");
        }
        Ok(session)
    }

    /// The tag of `bytes` (a ticket's encoding with no tag).
    pub fn sign(&self, bytes: &[u8]) -> Vec<u8> {
        hmac::sign(&self.key, bytes).as_ref().to_vec()
    }

    /// Whether `tag` is the tag of `bytes` (constant time).
    pub fn verify(&self, bytes: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.key, bytes, tag).is_ok()
    }
}

/// A fresh random API token and the SHA-256 (hex) to put in the auth file.
pub fn new_api_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).expect("the OS gives randomness");
    let token = format!("{API_TOKEN_PREFIX}{}", B64.encode(bytes));
    let digest = token_digest(&token);
    (token, hex::encode(digest))
}

/// SHA-256 of an API token, as stored in the auth file.
pub fn token_digest(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    d.as_ref().try_into().expect("32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_signed_and_expire() {
        let keys = Keys::new(Some(b"0123456789abcdef0123456789abcdef"), Duration::from_secs(60));
        let token = keys.issue_session("alice", "$argon2id$phc");
        let session = keys.check_session(&token).unwrap();
        assert_eq!(session.user, "alice");
        assert_eq!(session.credential, credential_fingerprint("$argon2id$phc"));
        assert_ne!(session.credential, credential_fingerprint("$argon2id$another"));
        let other = Keys::new(Some(b"another key another key another k"), Duration::from_secs(60));
        assert!(other.check_session(&token).is_err());
        // Editing the payload breaks the tag.
        let forged = token.replacen("sheaf1.e", "sheaf1.f", 1);
        assert!(keys.check_session(&forged).is_err());
        let expired = Keys::new(Some(b"0123456789abcdef0123456789abcdef"), Duration::ZERO).issue_session("alice", "x");
        assert_eq!(keys.check_session(&expired).unwrap_err(), "session expired: log in again");
        // A server with a shorter session_ttl ends a session its peer issued for longer.
        let long = Keys::new(Some(b"0123456789abcdef0123456789abcdef"), Duration::from_secs(3600));
        let short = Keys::new(Some(b"0123456789abcdef0123456789abcdef"), Duration::ZERO);
        let token = long.issue_session("alice", "x");
        assert!(long.check_session(&token).is_ok());
        assert_eq!(short.check_session(&token).unwrap_err(), "session expired: log in again");
    }

    #[test]
    fn api_tokens_hash_to_what_the_file_stores() {
        let (token, hex_digest) = new_api_token();
        assert!(token.starts_with(API_TOKEN_PREFIX));
        assert_eq!(hex::encode(token_digest(&token)), hex_digest);
        let tag = Keys::new(None, Duration::ZERO).sign(b"ticket");
        assert_eq!(tag.len(), 32);
    }
}
