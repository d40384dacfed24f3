//! Access tokens: the Ed25519 signing key (loaded, or generated into the data
//! dir on first start), issuing JWTs, verifying them (RFC 8725: algorithm
//! pinned to EdDSA, `kid` checked, `iss`/`aud`/`exp`/`nbf` with 60 s leeway),
//! and the JWKS document that lets other services verify them offline.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{
    SigningKey, VerifyingKey,
    pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, spki::der::pem::LineEnding},
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    auth::PermissionSet,
    cache::Cache,
    error::{AuthFailure, Error, Result},
};

/// Allowed clock skew when checking `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 60;

/// Verified tokens remembered at most (a token is about 400 bytes).
const VERIFIED_CAPACITY: usize = 10_000;
/// How long a verified token is remembered at most (its expiry bounds it too).
const VERIFIED_TTL: Duration = Duration::from_secs(300);

/// Whether a token speaks for a user (authorized with the user's live
/// effective permissions) or for a service (authorized with its claimed ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    User,
    Service,
}

/// The claims of a Castellan access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// User id, or the service's name.
    pub sub: String,
    /// Tenant id the token was issued for.
    pub tid: String,
    pub exp: u64,
    pub iat: u64,
    pub nbf: u64,
    pub jti: String,
    pub kind: SubjectKind,
    /// Service tokens only: the permissions they carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub perms: Vec<String>,
    /// Service tokens only: may name another tenant with `x-tenant-id`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub global: bool,
    /// User tokens only: the user's token generation when it was issued
    /// (absent for 0). The auth layer refuses the token once the user's
    /// generation has moved on (a password reset, a deactivation).
    #[serde(rename = "gen", default, skip_serializing_if = "is_zero")]
    pub generation: i32,
}

fn is_zero(generation: &i32) -> bool {
    *generation == 0
}

/// What a new token is for.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub kind: SubjectKind,
    pub subject: String,
    pub tenant_id: Uuid,
    pub permissions: Vec<String>,
    pub global: bool,
    /// User tokens: the user's current token generation; 0 for services.
    pub generation: i32,
    pub ttl: Duration,
}

/// A public key that verifies tokens, with its key id (RFC 7638 thumbprint).
struct PublicKey {
    kid: String,
    x: String,
    decoding: DecodingKey,
}

impl PublicKey {
    fn new(key: &VerifyingKey) -> Result<Self> {
        let x = URL_SAFE_NO_PAD.encode(key.as_bytes());
        // RFC 7638 thumbprint: members in lexicographic order, no whitespace.
        let thumbprint_input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint_input.as_bytes()));
        let decoding = DecodingKey::from_ed_components(&x).map_err(Error::internal)?;
        Ok(Self { kid, x, decoding })
    }
}

/// A token whose signature and claims were verified, with the permission
/// set a service token claims (empty for user tokens), built once.
#[derive(Debug)]
pub struct VerifiedToken {
    pub claims: Claims,
    pub permissions: Arc<PermissionSet>,
}

/// Signs access tokens with the current Ed25519 key and verifies them with it
/// or with an earlier key still configured for verification (rotation).
pub struct TokenKeys {
    encoding: EncodingKey,
    /// The signing key's public half first, then earlier keys.
    public: Vec<PublicKey>,
    validation: Validation,
    issuer: String,
    audience: String,
    /// Tokens verified recently, by the SHA-256 of the token (the token
    /// itself is never kept): a warm call skips the signature check and the
    /// decoding. The keys never change while the process runs, so a
    /// verification stays true; only expiry is checked again on every use.
    verified: Cache<[u8; 32], Arc<VerifiedToken>>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.public.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("TokenKeys").field("kids", &kids).finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// Loads the PKCS#8 PEM key at `path`, generating it (mode 0600) when the
    /// file does not exist.
    pub fn load_or_generate(path: &Path, issuer: &str, audience: &str) -> Result<Self> {
        if path.exists() {
            return Self::load(path, issuer, audience);
        }
        let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        write_private_key(path, &key)?;
        tracing::info!(path = %path.display(), "generated a new token signing key");
        Self::from_signing_key(&key, issuer, audience)
    }

    /// Loads the PKCS#8 PEM key at `path`, which must exist: for those who
    /// sign with the server's key (`castellan token`), where a key of their
    /// own would sign tokens no server accepts.
    pub fn load(path: &Path, issuer: &str, audience: &str) -> Result<Self> {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| Error::internal(format!("reading the signing key {}: {e}", path.display())))?;
        let key = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|_| Error::internal("the signing key file is not a PKCS#8 Ed25519 key"))?;
        Self::from_signing_key(&key, issuer, audience)
    }

    /// Adds earlier keys that still verify (PKCS#8 private or SPKI public PEM files).
    pub fn with_verification_keys(mut self, paths: &[std::path::PathBuf]) -> Result<Self> {
        for path in paths {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| Error::internal(format!("reading verification key {}: {e}", path.display())))?;
            let key = match SigningKey::from_pkcs8_pem(&pem) {
                Ok(private) => private.verifying_key(),
                Err(_) => VerifyingKey::from_public_key_pem(&pem)
                    .map_err(|_| Error::internal(format!("{} is not an Ed25519 PEM key", path.display())))?,
            };
            let key = PublicKey::new(&key)?;
            if !self.public.iter().any(|k| k.kid == key.kid) {
                self.public.push(key);
            }
        }
        Ok(self)
    }

    fn from_signing_key(key: &SigningKey, issuer: &str, audience: &str) -> Result<Self> {
        let der = key.to_pkcs8_der().map_err(Error::internal)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Ok(Self {
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            public: vec![PublicKey::new(&key.verifying_key())?],
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            verified: Cache::new(VERIFIED_CAPACITY, VERIFIED_TTL),
        })
    }

    /// Signs a new token; returns it with its claims.
    pub fn issue(&self, request: &TokenRequest) -> Result<(String, Claims)> {
        let now = unix_now();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: request.subject.clone(),
            tid: request.tenant_id.to_string(),
            exp: now + request.ttl.as_secs(),
            iat: now,
            nbf: now,
            jti: Uuid::now_v7().to_string(),
            kind: request.kind,
            perms: request.permissions.clone(),
            global: request.global,
            generation: request.generation,
        };
        let token = jsonwebtoken::encode(&self.header(), &claims, &self.encoding).map_err(Error::internal)?;
        Ok((token, claims))
    }

    fn header(&self) -> Header {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = self.public.first().map(|k| k.kid.clone());
        header
    }

    /// Verifies a token: signature with the pinned algorithm and key id,
    /// issuer, audience, expiry and not-before.
    pub fn verify(&self, token: &str) -> Result<Claims> {
        let invalid = || Error::Unauthenticated(AuthFailure::Invalid);
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        if header.alg != Algorithm::EdDSA {
            return Err(invalid());
        }
        let key = self
            .public
            .iter()
            .find(|k| header.kid.as_deref() == Some(k.kid.as_str()))
            .ok_or_else(invalid)?;
        jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| invalid())
    }

    /// [`verify`](Self::verify) through the cache of verified tokens. Whether
    /// the subject may still act (status, membership, permissions) is not
    /// part of this: the caller checks that on every call.
    pub fn verify_cached(&self, token: &str) -> Result<Arc<VerifiedToken>> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(verified) = self.verified.get(&digest) {
            // The same expiry bound `verify` applies (`nbf` held when it was
            // first verified and only recedes).
            if unix_now() <= verified.claims.exp.saturating_add(LEEWAY_SECONDS) {
                return Ok(verified);
            }
            self.verified.remove(&digest);
            return Err(Error::Unauthenticated(AuthFailure::Invalid));
        }
        let claims = self.verify(token)?;
        let verified = Arc::new(VerifiedToken {
            permissions: Arc::new(PermissionSet::new(claims.perms.iter().cloned())),
            claims,
        });
        self.verified.insert(digest, verified.clone());
        Ok(verified)
    }

    /// The JWKS document (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .public
            .iter()
            .map(|key| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "alg": "EdDSA",
                    "use": "sig",
                    "kid": key.kid,
                    "x": key.x,
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

fn write_private_key(path: &Path, key: &SigningKey) -> Result<()> {
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(Error::internal)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::internal(format!("creating {}: {e}", parent.display())))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| Error::internal(format!("creating {}: {e}", path.display())))?;
    std::io::Write::write_all(&mut file, pem.as_bytes())
        .map_err(|e| Error::internal(format!("writing signing key: {e}")))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::from_signing_key(&SigningKey::from_bytes(&[7; 32]), "iss", "aud").unwrap()
    }

    fn request() -> TokenRequest {
        TokenRequest {
            kind: SubjectKind::Service,
            subject: "svc".into(),
            tenant_id: Uuid::now_v7(),
            permissions: vec!["users:read".into()],
            global: false,
            generation: 0,
            ttl: Duration::from_secs(60),
        }
    }

    #[test]
    fn issued_tokens_verify() {
        let keys = keys();
        let (token, claims) = keys.issue(&request()).unwrap();
        assert_eq!(keys.verify(&token).unwrap(), claims);
    }

    /// A user's first generation adds nothing to its tokens (the tokens
    /// issued before the claim existed are of it); a later one is carried.
    #[test]
    fn the_generation_is_carried_only_past_zero() {
        let keys = keys();
        let payload = |token: &str| {
            use base64::Engine;
            let part = token.split('.').nth(1).unwrap();
            String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
        };
        let (first, claims) = keys.issue(&request()).unwrap();
        assert!(!payload(&first).contains("\"gen\""), "{}", payload(&first));
        assert_eq!(keys.verify(&first).unwrap().generation, claims.generation);
        let (later, _) = keys
            .issue(&TokenRequest {
                generation: 2,
                ..request()
            })
            .unwrap();
        assert!(payload(&later).contains("\"gen\":2"), "{}", payload(&later));
        assert_eq!(keys.verify(&later).unwrap().generation, 2);
    }

    #[test]
    fn tokens_of_another_key_or_audience_are_refused() {
        let (token, _) = keys().issue(&request()).unwrap();
        let other = TokenKeys::from_signing_key(&SigningKey::from_bytes(&[8; 32]), "iss", "aud").unwrap();
        assert!(other.verify(&token).is_err());
        let other_audience = TokenKeys::from_signing_key(&SigningKey::from_bytes(&[7; 32]), "iss", "other").unwrap();
        assert!(other_audience.verify(&token).is_err());
    }

    #[test]
    fn a_rotated_key_still_verifies_and_is_published() {
        let old_keys = keys();
        let (old_token, _) = old_keys.issue(&request()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let old_path = dir.path().join("old.pem");
        write_private_key(&old_path, &SigningKey::from_bytes(&[7; 32])).unwrap();
        let rotated = TokenKeys::from_signing_key(&SigningKey::from_bytes(&[9; 32]), "iss", "aud")
            .unwrap()
            .with_verification_keys(&[old_path])
            .unwrap();
        assert!(rotated.verify(&old_token).is_ok());
        let (new_token, _) = rotated.issue(&request()).unwrap();
        assert!(rotated.verify(&new_token).is_ok());
        assert!(old_keys.verify(&new_token).is_err());
        assert_eq!(rotated.jwks()["keys"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn cached_verifications_still_check_expiry() {
        let keys = keys();
        let (token, mut claims) = keys.issue(&request()).unwrap();
        assert_eq!(keys.verify_cached(&token).unwrap().claims, claims);
        assert_eq!(keys.verify_cached(&token).unwrap().claims, claims, "from the cache");
        // A token that expires while cached is refused from the cache.
        claims.exp = unix_now() + 1;
        let short = jsonwebtoken::encode(&keys.header(), &claims, &keys.encoding).unwrap();
        assert!(keys.verify_cached(&short).is_ok());
        let digest: [u8; 32] = Sha256::digest(short.as_bytes()).into();
        let mut expired = keys.verified.get(&digest).unwrap().as_ref().claims.clone();
        expired.exp = unix_now().saturating_sub(LEEWAY_SECONDS + 10);
        keys.verified.insert(
            digest,
            Arc::new(VerifiedToken {
                claims: expired,
                permissions: Arc::default(),
            }),
        );
        assert!(keys.verify_cached(&short).is_err());
        assert!(keys.verified.get(&digest).is_none(), "the expired entry is dropped");
        // Tokens that do not verify are never cached.
        assert!(keys.verify_cached("not.a.token").is_err());
        assert!(keys.verify_cached(&format!("{token}x")).is_err());
    }

    #[test]
    fn expired_and_unsigned_tokens_are_refused() {
        let keys = keys();
        let mut expired = request();
        expired.ttl = Duration::ZERO;
        let (token, mut claims) = keys.issue(&expired).unwrap();
        claims.exp = claims.exp.saturating_sub(LEEWAY_SECONDS + 10);
        let stale = jsonwebtoken::encode(&keys.header(), &claims, &keys.encoding).unwrap();
        assert!(keys.verify(&stale).is_err());
        assert!(keys.verify(&token).is_ok(), "within leeway");
        // alg "none": header and payload without a signature.
        let parts: Vec<&str> = token.split('.').collect();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(keys.verify(&format!("{none_header}.{}.", parts[1])).is_err());
        // HS256 signed with the public key as the secret (key confusion).
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = keys.header().kid;
        let confused =
            jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(keys.public[0].x.as_bytes())).unwrap();
        assert!(keys.verify(&confused).is_err());
    }
}
