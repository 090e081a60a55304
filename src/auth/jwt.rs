//! Tokens from an identity provider: the `[jwt]` section of the `--auth`
//! file.
//!
//! ```toml
//! [jwt]
//! issuer = "https://idp.example"   # the `iss` every token must carry
//! audience = "sheaf"               # an `aud` every token must carry
//! jwks_file = "jwks.json"          # RS256/384/512, ES256/384 public keys (a JWKS document)
//! # hs256_secret_file = "secret"   # or a shared HS256 secret, not both
//! groups_claim = "groups"          # default "groups": a list of strings, or one string
//! name_claim = "sub"               # default "sub": names the caller, `jwt:NAME` in grants
//! leeway = "60s"                   # clock skew allowed on exp and nbf
//! ```
//!
//! A token must carry `exp`, `iss`, `aud` and the name claim, be signed by a
//! configured key with that key's algorithm (a token cannot choose a weaker
//! one: `alg` must match the key), and be within its `nbf`/`exp` window.
//! Verification is jsonwebtoken's (on ring).

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// The `[jwt]` section as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Section {
    issuer: String,
    audience: String,
    jwks_file: Option<String>,
    hs256_secret_file: Option<String>,
    groups_claim: Option<String>,
    name_claim: Option<String>,
    leeway: Option<String>,
}

impl Section {
    /// The files the section names.
    pub(crate) fn files(&self) -> impl Iterator<Item = &str> {
        self.jwks_file.iter().chain(&self.hs256_secret_file).map(String::as_str)
    }
}

/// One key tokens may be signed with.
#[derive(Clone)]
struct Key {
    id: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Checks JWTs against the configured issuer, audience and keys.
#[derive(Clone)]
pub struct JwtVerifier {
    issuer: String,
    audience: String,
    keys: Vec<Key>,
    groups_claim: String,
    name_claim: String,
    leeway: Duration,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("id", &self.id).field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("keys", &self.keys)
            .finish()
    }
}

/// Who a valid JWT names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The name claim's value.
    pub name: String,
    /// The groups claim's values.
    pub groups: Vec<String>,
}

/// Smallest HS256 secret accepted, in bytes (RFC 7518 3.2: at least the
/// hash's size).
const MIN_SECRET_BYTES: usize = 32;

impl JwtVerifier {
    /// Checks the section; relative files are relative to `dir`. Errors
    /// name the key at fault.
    pub(crate) fn from_section(s: Section, dir: Option<&Path>) -> Result<Self, String> {
        let resolve = |f: &str| dir.map_or_else(|| Path::new(f).to_path_buf(), |d| d.join(f));
        if s.issuer.is_empty() {
            return Err("[jwt] issuer: must not be empty".into());
        }
        if s.audience.is_empty() {
            return Err("[jwt] audience: must not be empty".into());
        }
        let keys = match (&s.jwks_file, &s.hs256_secret_file) {
            (Some(_), Some(_)) => return Err("[jwt]: give jwks_file or hs256_secret_file, not both".into()),
            (None, None) => return Err("[jwt] jwks_file: missing: give jwks_file (or hs256_secret_file)".into()),
            (Some(f), None) => {
                let path = resolve(f);
                let text =
                    std::fs::read_to_string(&path).map_err(|e| format!("[jwt] jwks_file {}: {e}", path.display()))?;
                parse_jwks(&text).map_err(|e| format!("[jwt] jwks_file {}: {e}", path.display()))?
            }
            (None, Some(f)) => {
                let path = resolve(f);
                let bytes =
                    std::fs::read(&path).map_err(|e| format!("[jwt] hs256_secret_file {}: {e}", path.display()))?;
                let secret = bytes.trim_ascii();
                if secret.len() < MIN_SECRET_BYTES {
                    return Err(format!(
                        "[jwt] hs256_secret_file {}: {} bytes; at least {MIN_SECRET_BYTES} are needed",
                        path.display(),
                        secret.len()
                    ));
                }
                vec![Key { id: None, algorithm: Algorithm::HS256, key: DecodingKey::from_secret(secret) }]
            }
        };
        let leeway = match &s.leeway {
            None => Duration::from_secs(60),
            Some(t) => humantime::parse_duration(t).map_err(|e| format!("[jwt] leeway {t:?}: {e}"))?,
        };
        Ok(JwtVerifier {
            issuer: s.issuer,
            audience: s.audience,
            keys,
            groups_claim: s.groups_claim.unwrap_or_else(|| "groups".into()),
            name_claim: s.name_claim.unwrap_or_else(|| "sub".into()),
            leeway,
        })
    }

    /// Whether `token` has the shape of a JWT (three base64url parts, the
    /// first a JSON header), so it is checked here and not as an API token.
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3 && raw_header(token).is_some()
    }

    /// The caller a valid token names, or why the token is refused (a
    /// message safe to return: it quotes nothing from the token).
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| match raw_header(token) {
            // `none`, or an algorithm jsonwebtoken does not know.
            Some(h) => match h.get("alg").and_then(|a| a.as_str()) {
                Some(alg) if alg.parse::<jsonwebtoken::Algorithm>().is_ok() => {
                    "malformed JWT: its header does not decode".to_owned()
                }
                Some(alg) => format!("JWT algorithm {:?} is not accepted", crate::query::limits::clip(alg, 20)),
                None => "malformed JWT: its header has no alg".to_owned(),
            },
            None => "malformed JWT".to_owned(),
        })?;
        // RFC 7515 4.1.11: a token naming extensions the recipient must
        // understand (Sheaf understands none) is refused.
        if raw_header(token).is_some_and(|h| h.contains_key("crit")) {
            return Err("JWT header lists critical extensions (crit), which Sheaf does not support".to_owned());
        }
        let candidates: Vec<&Key> = self
            .keys
            .iter()
            .filter(|k| k.algorithm == header.alg)
            .filter(|k| header.kid.is_none() || k.id.is_none() || k.id == header.kid)
            .collect();
        if candidates.is_empty() {
            return Err(match &header.kid {
                Some(_) if self.keys.iter().any(|k| k.algorithm == header.alg) => {
                    "JWT key id (kid) is not among the configured keys".to_owned()
                }
                _ => format!("JWT algorithm {:?} is not accepted: the configured keys are not for it", header.alg),
            });
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let mut last = None;
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key.key, &validation) {
                Ok(data) => return self.claims(&data.claims),
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => last = Some(e),
                Err(e) => return Err(self.reason(e.kind(), token)),
            }
        }
        Err(self.reason(last.as_ref().map_or(&ErrorKind::InvalidSignature, |e| e.kind()), token))
    }

    fn claims(&self, claims: &serde_json::Map<String, serde_json::Value>) -> Result<Claims, String> {
        let name = match claims.get(&self.name_claim) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(format!("JWT has no {:?} claim naming the caller", self.name_claim)),
        };
        let groups = match claims.get(&self.groups_claim) {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(items)) => {
                items.iter().filter_map(|v| v.as_str()).map(str::to_owned).collect()
            }
            Some(_) => return Err(format!("JWT claim {:?} is not a list of strings", self.groups_claim)),
        };
        Ok(Claims { name, groups })
    }

    /// The message for a refused token. `token` is read again only to tell a
    /// claim that is absent from one of the wrong type (a string `exp`, say),
    /// which jsonwebtoken reports alike; its values are never quoted.
    fn reason(&self, kind: &ErrorKind, token: &str) -> String {
        match kind {
            ErrorKind::MissingRequiredClaim(c) if raw_part(token, 1).is_some_and(|p| p.contains_key(c.as_str())) => {
                let wanted = match c.as_str() {
                    "exp" | "nbf" => "a number of seconds since 1970",
                    "aud" => "a string or a list of strings",
                    _ => "a string",
                };
                format!("JWT claim {c:?} is not {wanted}")
            }
            ErrorKind::ExpiredSignature => "JWT expired".into(),
            ErrorKind::ImmatureSignature => "JWT is not valid yet (nbf)".into(),
            ErrorKind::InvalidAudience => format!("JWT audience is not {:?}", self.audience),
            ErrorKind::InvalidIssuer => format!("JWT issuer is not {:?}", self.issuer),
            ErrorKind::MissingRequiredClaim(c) => format!("JWT has no {c:?} claim"),
            ErrorKind::InvalidSignature => "JWT signature does not verify with the configured keys".into(),
            ErrorKind::InvalidAlgorithm => "JWT algorithm does not match its key".into(),
            _ => "malformed JWT".into(),
        }
    }
}

/// The JSON object in a JWT's first part, if it is one.
fn raw_header(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    raw_part(token, 0)
}

/// The JSON object in part `index` of a JWT (0 header, 1 claims), if it is one.
fn raw_part(token: &str, index: usize) -> Option<serde_json::Map<String, serde_json::Value>> {
    use base64::Engine;
    let part = token.split('.').nth(index)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The verification keys of a JWKS document. Keys for encryption and key
/// types Sheaf cannot verify with are skipped; symmetric keys are refused
/// (use `hs256_secret_file`).
fn parse_jwks(text: &str) -> Result<Vec<Key>, String> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_str(text).map_err(|e| format!("not a JWKS document ({{\"keys\": [...]}}): {e}"))?;
    let mut keys = Vec::new();
    for (i, value) in set.keys.into_iter().enumerate() {
        let kty = value.get("kty").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        if kty == "oct" {
            return Err(format!("keys[{i}]: a symmetric (oct) key; give it as hs256_secret_file instead"));
        }
        if !matches!(kty.as_str(), "RSA" | "EC") {
            tracing::warn!(index = i, kty = %kty, "JWKS key skipped: only RSA and EC keys are supported");
            continue;
        }
        let jwk: Jwk = serde_json::from_value(value).map_err(|e| format!("keys[{i}]: {e}"))?;
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::RSA(_), Some(KeyAlgorithm::RS384)) => Algorithm::RS384,
            (AlgorithmParameters::RSA(_), Some(KeyAlgorithm::RS512)) => Algorithm::RS512,
            (AlgorithmParameters::RSA(_), Some(KeyAlgorithm::PS256)) => Algorithm::PS256,
            (AlgorithmParameters::EllipticCurve(p), a) => match (&p.curve, a) {
                (EllipticCurve::P256, None | Some(KeyAlgorithm::ES256)) => Algorithm::ES256,
                (EllipticCurve::P384, None | Some(KeyAlgorithm::ES384)) => Algorithm::ES384,
                (curve, a) => return Err(format!("keys[{i}]: curve {curve:?} with alg {a:?} is not supported")),
            },
            (_, a) => return Err(format!("keys[{i}]: alg {a:?} is not supported for this key type")),
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("keys[{i}]: {e}"))?;
        keys.push(Key { id: jwk.common.key_id, algorithm, key });
    }
    if keys.is_empty() {
        return Err("no RSA or EC signing keys in it".into());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn verifier() -> JwtVerifier {
        JwtVerifier {
            issuer: "https://idp.test".into(),
            audience: "sheaf".into(),
            keys: vec![Key { id: None, algorithm: Algorithm::HS256, key: DecodingKey::from_secret(SECRET) }],
            groups_claim: "groups".into(),
            name_claim: "sub".into(),
            leeway: Duration::from_secs(0),
        }
    }

    fn token(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn valid_and_invalid_tokens() {
        let v = verifier();
        let good = serde_json::json!({"sub": "ann", "iss": "https://idp.test", "aud": "sheaf", "exp": now() + 60, "groups": ["ml"]});
        let t = token(good.clone());
        assert!(JwtVerifier::looks_like_jwt(&t));
        assert!(!JwtVerifier::looks_like_jwt("sheaf_abc"));
        assert_eq!(v.verify(&t).unwrap(), Claims { name: "ann".into(), groups: vec!["ml".into()] });
        let with = |k: &str, val: serde_json::Value| {
            let mut c = good.clone();
            c[k] = val;
            v.verify(&token(c)).unwrap_err()
        };
        assert_eq!(with("exp", (now() - 10).into()), "JWT expired");
        assert_eq!(with("exp", "tomorrow".into()), "JWT claim \"exp\" is not a number of seconds since 1970");
        let mut no_exp = good.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(v.verify(&token(no_exp)).unwrap_err(), "JWT has no \"exp\" claim");
        assert!(with("aud", "other".into()).contains("audience"));
        assert!(with("iss", "https://evil".into()).contains("issuer"));
        assert!(with("sub", serde_json::Value::Null).contains("\"sub\""));
        let other =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &good, &EncodingKey::from_secret(&[7u8; 32])).unwrap();
        assert!(v.verify(&other).unwrap_err().contains("signature"));
        let hs512 =
            jsonwebtoken::encode(&Header::new(Algorithm::HS512), &good, &EncodingKey::from_secret(SECRET)).unwrap();
        assert!(v.verify(&hs512).unwrap_err().contains("algorithm"));
        // Critical extensions are refused (RFC 7515 4.1.11), before the signature is looked at.
        use base64::Engine;
        let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let crit = format!("{}.{}.c2ln", b64(serde_json::json!({"alg": "HS256", "crit": ["exp-ext"]})), b64(good));
        assert!(v.verify(&crit).unwrap_err().contains("crit"));
        // A known algorithm whose header does not decode is said to be malformed, not refused for its algorithm.
        let broken = format!("{}.e30.c2ln", b64(serde_json::json!({"alg": "RS256", "jwk": {"kty": 7}})));
        assert_eq!(v.verify(&broken).unwrap_err(), "malformed JWT: its header does not decode");
    }

    #[test]
    fn jwks_documents() {
        assert!(parse_jwks("{}").is_err());
        assert!(parse_jwks(r#"{"keys": [{"kty": "oct", "k": "AAAA"}]}"#).unwrap_err().contains("hs256_secret_file"));
        assert!(
            parse_jwks(r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]}"#).unwrap_err().contains("no RSA")
        );
        let ec = r#"{"keys": [{"kty": "EC", "crv": "P-256", "kid": "a", "use": "sig",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
        let keys = parse_jwks(ec).unwrap();
        assert_eq!((keys[0].algorithm, keys[0].id.as_deref()), (Algorithm::ES256, Some("a")));
    }
}
