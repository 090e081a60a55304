//! Authentication, a tower layer in front of every route (the hand-framed
//! DoGet included): it works out who the caller is and puts the
//! [`Principal`] in the request's extensions, where the handlers check it
//! against each package ([`require`]).
//!
//! - Handshake with `authorization: Basic base64(user:password)` (as
//!   pyarrow's `authenticate_basic_token`, Arrow Java and the Flight SQL
//!   JDBC/ADBC drivers send it) answers with `authorization: Bearer <session
//!   token>` in the response headers.
//! - Every other RPC carries `authorization: Bearer <API token | session
//!   token | JWT>`. Missing (with no grant to `anonymous` and no client
//!   certificate), malformed, expired or revoked credentials answer
//!   UNAUTHENTICATED; gRPC health needs none.
//! - With mutual TLS, a call without an `authorization` header is the
//!   client certificate's subject common name, `cert:NAME`.
//! - Failed logins are limited per peer address and per user name, counting
//!   the attempts still being checked: concurrent guesses wait for earlier
//!   ones to end instead of outrunning the limit. At most
//!   [`MAX_CONCURRENT_LOGINS`] passwords are checked at once (each check
//!   takes argon2's memory and a core); the others wait their turn.
//! - [`Authenticator::reload`] swaps the file in without touching running
//!   streams (on SIGHUP, or when [`Authenticator::watch`] sees one of its
//!   files change).
//!
//! Secrets never reach a log or an error message.

use super::audit::AuditNote;
use crate::auth::{self, Access, AuthConfig, JwtVerifier, Keys, Kind, Principal};
use base64::Engine;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};

/// gRPC path of the Flight handshake.
pub const HANDSHAKE_PATH: &str = "/arrow.flight.protocol.FlightService/Handshake";
/// Failed logins allowed per peer and per name in [`FAILURE_WINDOW`].
const MAX_FAILURES: u32 = 5;
/// The window over which failed logins are counted.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Passwords checked at once: an argon2id check holds about 19 MiB and a
/// core, and logins come before the server's request limits.
pub const MAX_CONCURRENT_LOGINS: usize = 4;

struct State {
    config: AuthConfig,
    keys: Keys,
}

/// Checks credentials for the layer; shared by every connection.
pub struct Authenticator {
    /// `None`: no `--auth`, every caller may do everything.
    state: Option<RwLock<Arc<State>>>,
    path: Option<PathBuf>,
    attempts: Mutex<HashMap<String, Attempts>>,
    /// Permits to check a password ([`MAX_CONCURRENT_LOGINS`]).
    checking: tokio::sync::Semaphore,
}

impl Default for Authenticator {
    fn default() -> Self {
        Self::open()
    }
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("required", &self.required()).field("path", &self.path).finish()
    }
}

impl Authenticator {
    /// No authentication: every caller may do everything (a server without
    /// `--auth`).
    pub fn open() -> Self {
        Authenticator { state: None, path: None, attempts: Mutex::default(), checking: login_permits() }
    }

    /// Authentication under the file at `path`.
    pub fn load(path: PathBuf) -> Result<Self, String> {
        let config = AuthConfig::load(&path)?;
        let state = State { keys: Keys::new(config.key.as_deref(), config.session_ttl), config };
        Ok(Authenticator {
            state: Some(RwLock::new(Arc::new(state))),
            path: Some(path),
            attempts: Mutex::default(),
            checking: login_permits(),
        })
    }

    /// Whether callers are checked (`--auth` given).
    pub fn required(&self) -> bool {
        self.state.is_some()
    }

    /// The caller of a request, as the [`AuthLayer`] put it in the
    /// request's extensions; without `--auth`, anyone may do anything.
    pub fn caller(&self, principal: Option<&Principal>) -> Result<Principal, tonic::Status> {
        match principal {
            Some(p) => Ok(p.clone()),
            None if !self.required() => Ok(Principal::unrestricted()),
            None => Err(tonic::Status::unauthenticated("authentication required")),
        }
    }

    fn current(&self) -> Option<Arc<State>> {
        self.state.as_ref().map(|s| s.read().expect("auth state poisoned").clone())
    }

    /// Re-reads the auth file; on error the running configuration stays.
    /// Running streams are not affected; new requests see the new file.
    pub fn reload(&self) -> Result<(), String> {
        let (Some(lock), Some(path)) = (&self.state, &self.path) else { return Ok(()) };
        let config = AuthConfig::load(path)?;
        let keys = Keys::new(config.key.as_deref(), config.session_ttl);
        *lock.write().expect("auth state poisoned") = Arc::new(State { config, keys });
        Ok(())
    }

    /// Reloads the auth file whenever it, or a file it names (key, JWKS,
    /// secret), changes: polls their modification times and sizes every
    /// `every`. Runs until dropped.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let Some(path) = self.path.clone() else { return };
        let sources = |auth: &Authenticator| auth.current().map_or_else(Vec::new, |s| s.config.sources.clone());
        let stamp = |files: &[PathBuf]| -> Vec<Option<(std::time::SystemTime, u64)>> {
            files
                .iter()
                .map(|f| {
                    std::fs::metadata(f).ok().map(|m| (m.modified().ok().unwrap_or(std::time::UNIX_EPOCH), m.len()))
                })
                .collect()
        };
        let mut files = sources(&self);
        if files.is_empty() {
            files.push(path);
        }
        let mut seen = stamp(&files);
        loop {
            tokio::time::sleep(every).await;
            let now = stamp(&files);
            if now == seen {
                continue;
            }
            seen = now;
            match self.reload() {
                Ok(()) => {
                    tracing::info!("auth file reloaded: a file it reads changed");
                    files = sources(&self);
                    seen = stamp(&files);
                }
                Err(e) => {
                    tracing::error!(error = %e, "auth file changed but not reloaded; the running configuration stays")
                }
            }
        }
    }

    /// Signs a ticket's bytes (when authentication is on).
    pub fn sign(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        self.current().map(|s| s.keys.sign(bytes))
    }

    /// Whether `tag` signs `bytes`; always true without authentication.
    pub fn verify(&self, bytes: &[u8], tag: &[u8]) -> bool {
        self.current().is_none_or(|s| s.keys.verify(bytes, tag))
    }

    /// Starts a login attempt under `keys` (its peer and its user name):
    /// refused (with how long to wait) while a key has [`MAX_FAILURES`]
    /// failures in the window; waits while the failures plus the attempts
    /// being checked would reach it, so concurrent guesses never get more
    /// checks than the limit, while concurrent right passwords just queue.
    async fn begin_attempt(&self, keys: Vec<String>) -> Result<Attempt<'_>, Duration> {
        loop {
            {
                let mut attempts = self.attempts.lock().expect("attempts poisoned");
                if attempts.len() > 10_000 {
                    attempts.retain(|_, a| a.checking > 0 || a.since.elapsed() < FAILURE_WINDOW);
                }
                let now: Vec<(u32, u32, Duration)> = keys
                    .iter()
                    .map(|k| attempts.get(k).map_or((0, 0, Duration::ZERO), |a| (a.failed(), a.checking, a.left())))
                    .collect();
                if let Some(wait) = now.iter().filter(|(failed, ..)| *failed >= MAX_FAILURES).map(|t| t.2).max() {
                    return Err(wait);
                }
                if now.iter().all(|(failed, checking, _)| failed + checking < MAX_FAILURES) {
                    for k in &keys {
                        attempts.entry(k.clone()).or_insert_with(Attempts::new).checking += 1;
                    }
                    return Ok(Attempt { auth: self, keys, failed: false });
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A password login: a session token for the user, or why not.
    async fn login(&self, user: &str, password: &str, peer: Option<IpAddr>) -> Result<String, Status> {
        let state = self.current().expect("login only with --auth");
        let keys = vec![format!("peer {}", peer.map_or("?".into(), |p| p.to_string())), format!("user {user}")];
        let mut attempt = match self.begin_attempt(keys).await {
            Ok(attempt) => attempt,
            Err(wait) => {
                crate::metrics::LOGINS_FAILED.add(1);
                tracing::warn!(user = ?crate::query::limits::clip(user, 64), peer = ?peer, "login refused: too many failed logins");
                return Err(Status::unauthenticated(format!(
                    "too many failed logins; retry in {} s",
                    wait.as_secs().max(1)
                )));
            }
        };
        let phc = state.config.users.get(user).map(|u| u.password.clone());
        let password = password.as_bytes().to_vec();
        // Never closed, so a permit always comes; a cancelled login gives
        // back its place and its attempt.
        let _permit = self.checking.acquire().await.map_err(|_| Status::unavailable("the server is stopping"))?;
        // Hash even for an unknown user, so timing does not tell names apart.
        let ok = tokio::task::spawn_blocking(move || match phc {
            Some(phc) => auth::config::verify_password(&phc, &password),
            None => {
                let _ = auth::config::verify_password(DUMMY_PHC, &password);
                false
            }
        })
        .await
        .unwrap_or(false);
        if !ok {
            attempt.failed = true;
            crate::metrics::LOGINS_FAILED.add(1);
            // Quoted and escaped: a name is the caller's text (a newline would forge a log line).
            tracing::warn!(user = ?crate::query::limits::clip(user, 64), peer = ?peer, "login failed");
            return Err(Status::unauthenticated("invalid username or password"));
        }
        drop(attempt);
        tracing::info!(user = %user, peer = ?peer, "login");
        let phc = state.config.users.get(user).map(|u| u.password.as_str()).unwrap_or_default();
        Ok(state.keys.issue_session(user, phc))
    }

    /// The caller a bearer token proves.
    fn bearer(&self, token: &str) -> Result<Principal, Status> {
        let state = self.current().expect("bearer only with --auth");
        let invalid = || Status::unauthenticated("invalid or expired credentials: log in again or check the token");
        if let Some(jwt) = &state.config.jwt
            && JwtVerifier::looks_like_jwt(token)
        {
            let claims = jwt.verify(token).map_err(Status::unauthenticated)?;
            return Ok(Principal::identified(Kind::Jwt, &claims.name, &claims.groups, &state.config));
        }
        if Keys::is_session_token(token) {
            let session = state.keys.check_session(token).map_err(|why| Status::unauthenticated(why.to_owned()))?;
            // A user removed from the file is revoked at once, and so is a
            // session opened with a password since changed.
            let user = state.config.users.get(&session.user).ok_or_else(invalid)?;
            if session.credential != auth::keys::credential_fingerprint(&user.password) {
                return Err(Status::unauthenticated("session ended: the password changed since login; log in again"));
            }
            return Ok(Principal::identified(Kind::User, &session.user, &user.groups, &state.config));
        }
        let t = state.config.token_by_digest(&auth::keys::token_digest(token)).ok_or_else(invalid)?;
        Ok(Principal::identified(Kind::Token, &t.name, &t.groups, &state.config))
    }

    /// The caller of a request with these headers, over a connection whose
    /// client certificate (mutual TLS) names `cert`.
    fn principal(&self, headers: &http::HeaderMap, cert: Option<String>) -> Result<Principal, Status> {
        let Some(state) = self.current() else { return Ok(Principal::unrestricted()) };
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            if let Some(name) = cert {
                return Ok(Principal::identified(Kind::Cert, &name, &[], &state.config));
            }
            if state.config.grants.iter().any(|g| g.to == auth::Subject::Anonymous) {
                return Ok(Principal::anonymous(&state.config));
            }
            return Err(Status::unauthenticated(
                "authentication required: log in with the Flight handshake (Basic) or send `authorization: Bearer <token>`",
            ));
        };
        let value = value.to_str().map_err(|_| Status::unauthenticated("malformed authorization header"))?;
        if let Some(token) = bearer_token(headers) {
            return self.bearer(token);
        }
        match value.split_once(' ') {
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("basic") => {
                Err(Status::unauthenticated("log in with the Flight handshake, then send the bearer token it returns"))
            }
            _ => Err(Status::unauthenticated("malformed authorization header: expected `Bearer <token>`")),
        }
    }
}

/// Login attempts under one key (a peer address or a user name).
struct Attempts {
    /// Failed attempts since `since` (counted while within [`FAILURE_WINDOW`]).
    failed: u32,
    since: Instant,
    /// Attempts being checked now.
    checking: u32,
}

impl Attempts {
    fn new() -> Self {
        Attempts { failed: 0, since: Instant::now(), checking: 0 }
    }

    /// Failures in the current window.
    fn failed(&self) -> u32 {
        if self.since.elapsed() < FAILURE_WINDOW { self.failed } else { 0 }
    }

    /// Time left in the current window.
    fn left(&self) -> Duration {
        FAILURE_WINDOW.saturating_sub(self.since.elapsed())
    }
}

/// A login attempt being checked: counted under its keys until dropped,
/// then recorded as a failure if `failed` was set.
struct Attempt<'a> {
    auth: &'a Authenticator,
    keys: Vec<String>,
    failed: bool,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut attempts = self.auth.attempts.lock().expect("attempts poisoned");
        for k in &self.keys {
            let a = attempts.entry(k.clone()).or_insert_with(Attempts::new);
            a.checking = a.checking.saturating_sub(1);
            if self.failed {
                // The window starts at its first failure (the entry may be
                // older: made by an earlier attempt that succeeded).
                if a.failed() == 0 {
                    (a.failed, a.since) = (0, Instant::now());
                }
                a.failed += 1;
            }
        }
    }
}

fn login_permits() -> tokio::sync::Semaphore {
    tokio::sync::Semaphore::new(MAX_CONCURRENT_LOGINS)
}

/// A PHC string hashed for unknown users (its password is irrelevant).
const DUMMY_PHC: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2hlYWZzaGVhZnNoZWFm$Wm7Yxcwm4oB6U+Fhm3c2Ws7HPTMxYmc9Xx2m6SDeF7k";

/// The token of `authorization: Bearer <token>` (the scheme in any case).
fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let (scheme, token) = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Decodes `Basic base64(user:password)`.
fn basic(headers: &http::HeaderMap) -> Option<(String, String)> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    // Go's Flight clients (ADBC's driver) send the credentials unpadded.
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let config = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let decoded = GeneralPurpose::new(&base64::alphabet::STANDARD, config).decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The address of the peer that sent `request`.
pub(super) fn peer(request: &http::Request<Body>) -> Option<IpAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let ext = request.extensions();
    ext.get::<TcpConnectInfo>()
        .and_then(|i| i.remote_addr())
        .or_else(|| ext.get::<TlsConnectInfo<TcpConnectInfo>>().and_then(|i| i.get_ref().remote_addr()))
        .map(|a| a.ip())
}

/// The subject common name of the client certificate the TLS layer
/// verified for `request`'s connection (mutual TLS), if any.
fn client_cert_name(request: &http::Request<Body>) -> Option<String> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let certs = request.extensions().get::<TlsConnectInfo<TcpConnectInfo>>()?.peer_certs()?;
    auth::cert::common_name(certs.first()?.as_ref())
}

/// The status a handler returns when `principal` may not do `access` with
/// `package`: a package it may not read answers exactly like a missing one
/// (`not_found`), a readable one it may not write PERMISSION_DENIED.
pub fn require(
    principal: &Principal,
    access: Access,
    package: &str,
    not_found: impl FnOnce() -> Status,
) -> Result<(), Status> {
    if principal.may(access, package) {
        return Ok(());
    }
    if access == Access::Write && principal.may(Access::Read, package) {
        return Err(Status::permission_denied(format!("{} may read {package} but not write to it", principal.label())));
    }
    Err(not_found())
}

/// The layer.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    /// A layer checking callers with `auth`.
    pub fn new(auth: Arc<Authenticator>) -> Self {
        AuthLayer { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService { inner, auth: self.auth.clone() }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S> Service<http::Request<Body>> for AuthService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The service that was polled ready handles this call; a clone takes
        // its place for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            let path = request.uri().path().to_owned();
            if path.starts_with("/grpc.health.v1.Health/") {
                return inner.call(request).await;
            }
            let note = AuditNote::of(request.extensions());
            let cert = client_cert_name(&request);
            if auth.required() && path == HANDSHAKE_PATH {
                let session = match basic(request.headers()) {
                    Some((user, password)) => {
                        note.principal(&format!("user:{user}"));
                        auth.login(&user, &password, peer(&request)).await
                    }
                    None => match auth.principal(request.headers(), None) {
                        // A valid bearer token is echoed back.
                        Ok(p) if p.kind != Kind::Anonymous => {
                            note.principal(&p.label());
                            Ok(bearer_token(request.headers()).unwrap_or_default().to_owned())
                        }
                        Ok(_) => Err(Status::unauthenticated("the handshake needs `authorization: Basic ...`")),
                        Err(e) => Err(e),
                    },
                };
                let session = match session {
                    Ok(s) => s,
                    Err(status) => return Ok(status.into_http()),
                };
                request.extensions_mut().insert(Principal::unrestricted());
                let mut response = inner.call(request).await?;
                if let Ok(value) = http::HeaderValue::from_str(&format!("Bearer {session}")) {
                    response.headers_mut().insert(http::header::AUTHORIZATION, value);
                }
                return Ok(response);
            }
            match auth.principal(request.headers(), cert) {
                Ok(principal) => {
                    note.principal(&principal.label());
                    request.extensions_mut().insert(principal);
                    inner.call(request).await
                }
                Err(status) => {
                    tracing::info!(rpc = %path, reason = %status.message(), "call refused: not authenticated");
                    Ok(status.into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_decode() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, "Basic YWxpY2U6czNjcjp0".parse().unwrap());
        assert_eq!(basic(&headers), Some(("alice".into(), "s3cr:t".into())));
        // Padded and unpadded (Go's RawStdEncoding) forms of "alice:pw".
        for encoded in ["YWxpY2U6cHc=", "YWxpY2U6cHc"] {
            headers.insert(http::header::AUTHORIZATION, format!("Basic {encoded}").parse().unwrap());
            assert_eq!(basic(&headers), Some(("alice".into(), "pw".into())), "{encoded}");
        }
        headers.insert(http::header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(basic(&headers), None);
    }

    #[test]
    fn the_dummy_hash_is_a_valid_phc() {
        assert!(argon2::verify_encoded(DUMMY_PHC, b"x").is_ok());
    }

    #[tokio::test]
    async fn failed_logins_are_limited_counting_attempts_being_checked() {
        let a = Authenticator::open();
        let keys = || vec!["peer 1.2.3.4".to_owned(), "user alice".to_owned()];
        let soon = Duration::from_millis(100);
        // Five attempts being checked: a sixth waits for one of them to end.
        let mut checking = Vec::new();
        for _ in 0..MAX_FAILURES {
            checking.push(a.begin_attempt(keys()).await.unwrap());
        }
        assert!(tokio::time::timeout(soon, a.begin_attempt(keys())).await.is_err());
        // A right password ends without counting: the sixth may go.
        drop(checking.pop());
        let sixth = tokio::time::timeout(soon, a.begin_attempt(keys())).await.expect("not waiting").unwrap();
        checking.push(sixth);
        // All five fail: the next is refused at once, naming the wait.
        for attempt in &mut checking {
            attempt.failed = true;
        }
        drop(checking);
        let wait = a.begin_attempt(keys()).await.err().expect("refused");
        assert!(wait > Duration::from_secs(50), "{wait:?}");
        // Another peer for another user is not held back.
        assert!(a.begin_attempt(vec!["peer 5.6.7.8".into(), "user bob".into()]).await.is_ok());
        // The window starts at the first failure, not when a key was first seen.
        let key = || vec!["user carol".to_owned()];
        drop(a.begin_attempt(key()).await.unwrap()); // a right password
        a.attempts.lock().unwrap().get_mut("user carol").unwrap().since -= FAILURE_WINDOW / 2;
        for _ in 0..MAX_FAILURES {
            let mut attempt = a.begin_attempt(key()).await.unwrap();
            attempt.failed = true;
            drop(attempt);
        }
        let wait = a.begin_attempt(key()).await.err().expect("refused");
        assert!(wait > FAILURE_WINDOW - Duration::from_secs(10), "{wait:?}");
    }

    #[test]
    fn a_bearer_token_is_read_whatever_the_scheme_case() {
        let mut headers = http::HeaderMap::new();
        for scheme in ["Bearer", "bearer", "BEARER"] {
            headers.insert(http::header::AUTHORIZATION, format!("{scheme}  tok ").parse().unwrap());
            assert_eq!(bearer_token(&headers), Some("tok"), "{scheme}");
        }
        headers.insert(http::header::AUTHORIZATION, "Basic tok".parse().unwrap());
        assert_eq!(bearer_token(&headers), None);
    }
}
