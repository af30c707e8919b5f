//! Demo identity tokens: ES256 JWTs that the demo Envoy's `jwt_authn` accepts.
//!
//! The default key is the committed demo key (`demo-key/`, TEST ONLY: anyone can mint tokens
//! with it). Its public half, `demo-key/jwks.json`, is what Envoy verifies with, so issuer,
//! audience and `kid` here must match `envoy-config/` exactly.

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The committed demo signing key (PKCS#8 PEM, P-256).
pub const DEMO_KEY_PEM: &str = include_str!("../demo-key/demo-es256.pem");
/// `kid` of the demo key in `jwks.json`.
pub const DEMO_KID: &str = "interlock-demo-1";
pub const DEMO_ISSUER: &str = "interlock-demo";
pub const DEMO_AUDIENCE: &str = "interlock-demo";
/// End user when none is given.
pub const DEFAULT_USER: &str = "demo-user";
pub const DEFAULT_TTL_SECS: u64 = 3600;

/// The claims Interlock reads (ARCHITECTURE.md, "Identity"): `azp` is the agent, `sub` the end
/// user, `sid` the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub azp: String,
    pub sub: String,
    pub sid: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
}

/// What to put in a token.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub agent: String,
    pub user: String,
    pub session: String,
    pub ttl_secs: u64,
    /// Seconds since the Unix epoch (`iat` and `nbf`).
    pub now_unix: u64,
}

#[derive(Debug, Error)]
pub enum TokenError {
    #[error("the signing key is not an EC P-256 private key in PEM form: {0}")]
    InvalidKey(#[source] jsonwebtoken::errors::Error),
    #[error("cannot sign the token: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
    #[error("{claim} must not be empty")]
    EmptyClaim { claim: &'static str },
    #[error("ttl must be at least 1 second and keep exp within range")]
    InvalidTtl,
    #[error("cannot read random bytes for a session id: {0}")]
    Random(#[source] std::io::Error),
}

/// Signs the claims of `req` with `key_pem` (ES256, `kid` [`DEMO_KID`]).
pub fn sign(req: &TokenRequest, key_pem: &[u8]) -> Result<String, TokenError> {
    for (claim, value) in [("agent (azp)", &req.agent), ("user (sub)", &req.user), ("session (sid)", &req.session)] {
        if value.is_empty() {
            return Err(TokenError::EmptyClaim { claim });
        }
    }
    if req.ttl_secs == 0 {
        return Err(TokenError::InvalidTtl);
    }
    let exp = req.now_unix.checked_add(req.ttl_secs).ok_or(TokenError::InvalidTtl)?;
    let claims = Claims {
        iss: DEMO_ISSUER.to_owned(),
        aud: DEMO_AUDIENCE.to_owned(),
        azp: req.agent.clone(),
        sub: req.user.clone(),
        sid: req.session.clone(),
        iat: req.now_unix,
        nbf: req.now_unix,
        exp,
    };
    let key = EncodingKey::from_ec_pem(key_pem).map_err(TokenError::InvalidKey)?;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(DEMO_KID.to_owned());
    jsonwebtoken::encode(&header, &claims, &key).map_err(TokenError::Sign)
}

/// A fresh session id: 16 hex digits from the OS's random source. Read straight from
/// `/dev/urandom` (the enforcer is a Linux node daemon) rather than adding a crate for 8 bytes.
pub fn random_session_id() -> Result<String, TokenError> {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).map_err(TokenError::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    // A clock before 1970 makes every token invalid anyway; 0 keeps the error visible at
    // verification rather than here.
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{DecodingKey, Validation};

    const JWKS: &str = include_str!("../demo-key/jwks.json");

    fn request() -> TokenRequest {
        TokenRequest {
            agent: "triage-bot".into(),
            user: "alice".into(),
            session: "0123456789abcdef".into(),
            ttl_secs: 600,
            now_unix: now_unix(),
        }
    }

    fn verify(token: &str) -> Result<jsonwebtoken::TokenData<Claims>, jsonwebtoken::errors::Error> {
        let jwks: JwkSet = serde_json::from_str(JWKS).unwrap();
        let header = jsonwebtoken::decode_header(token)?;
        let kid = header.kid.expect("token names its key");
        let jwk = jwks.find(&kid).expect("kid is in the published JWKS");
        let key = DecodingKey::from_jwk(jwk)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[DEMO_ISSUER]);
        validation.set_audience(&[DEMO_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &key, &validation)
    }

    #[test]
    fn demo_token_verifies_with_the_published_jwks() {
        let req = request();
        let token = sign(&req, DEMO_KEY_PEM.as_bytes()).unwrap();
        let data = verify(&token).unwrap();
        assert_eq!(data.header.alg, Algorithm::ES256);
        assert_eq!(data.header.kid.as_deref(), Some(DEMO_KID));
        assert_eq!(
            data.claims,
            Claims {
                iss: "interlock-demo".into(),
                aud: "interlock-demo".into(),
                azp: "triage-bot".into(),
                sub: "alice".into(),
                sid: "0123456789abcdef".into(),
                iat: req.now_unix,
                nbf: req.now_unix,
                exp: req.now_unix + 600,
            }
        );
    }

    #[test]
    fn a_tampered_or_expired_token_does_not_verify() {
        let token = sign(&request(), DEMO_KEY_PEM.as_bytes()).unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let forged = serde_json::json!({"iss": "interlock-demo", "aud": "interlock-demo", "azp": "billing-agent",
            "sub": "alice", "sid": "x", "iat": 0, "nbf": 0, "exp": u32::MAX});
        parts[1] = base64_url_nopad(forged.to_string().as_bytes());
        assert!(verify(&parts.join(".")).is_err());

        let old = TokenRequest { now_unix: now_unix() - 7200, ttl_secs: 60, ..request() };
        let expired = sign(&old, DEMO_KEY_PEM.as_bytes()).unwrap();
        assert!(verify(&expired).is_err());
    }

    /// Base64url without padding, for the forged payload (a test-only helper beats a dependency).
    fn base64_url_nopad(data: &[u8]) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn bad_inputs_are_errors_not_tokens() {
        assert!(matches!(sign(&request(), b"not a key"), Err(TokenError::InvalidKey(_))));
        let public_only = include_str!("../demo-key/demo-es256.pub.pem");
        assert!(sign(&request(), public_only.as_bytes()).is_err());
        assert!(matches!(
            sign(&TokenRequest { agent: String::new(), ..request() }, DEMO_KEY_PEM.as_bytes()),
            Err(TokenError::EmptyClaim { .. })
        ));
        assert!(matches!(
            sign(&TokenRequest { ttl_secs: 0, ..request() }, DEMO_KEY_PEM.as_bytes()),
            Err(TokenError::InvalidTtl)
        ));
        assert!(matches!(
            sign(&TokenRequest { ttl_secs: u64::MAX, ..request() }, DEMO_KEY_PEM.as_bytes()),
            Err(TokenError::InvalidTtl)
        ));
    }

    #[test]
    fn session_ids_are_16_hex_and_differ() {
        let a = random_session_id().unwrap();
        let b = random_session_id().unwrap();
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
