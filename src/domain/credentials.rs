//! Passwords: the policy (NIST 800-63B: length only, no composition rules,
//! no truncation, a blocklist) and argon2id hashing with OWASP parameters on
//! the blocking pool, so a burst of hashing never stalls the async workers.

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version, password_hash::SaltString,
};

use crate::error::{Error, Result, Violations};

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted (well above NIST's 64).
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// Common passwords refused whatever their length.
const BLOCKLIST: &[&str] = &[
    "password",
    "password1",
    "password123",
    "12345678",
    "123456789",
    "1234567890",
    "qwertyuiop",
    "qwerty123",
    "iloveyou",
    "11111111",
    "00000000",
    "abc12345",
    "letmein1",
    "welcome1",
    "admin123",
    "passw0rd",
    "sunshine",
    "football",
    "baseball",
    "princess",
    "trustno1",
    "superman",
    "starwars",
    "whatever",
    "changeme",
];

/// Checks the policy, adding a violation to `field` when it is not met.
pub fn check_policy(violations: &mut Violations, field: &str, password: &str) {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        violations.add(field, format!("must be at least {MIN_PASSWORD_CHARS} characters"));
    } else if chars > MAX_PASSWORD_CHARS {
        violations.add(field, format!("must be at most {MAX_PASSWORD_CHARS} characters"));
    } else if BLOCKLIST.contains(&password.to_lowercase().as_str()) {
        violations.add(field, "is too common; choose another");
    }
}

fn argon2() -> Result<Argon2<'static>> {
    // OWASP: m = 19 MiB, t = 2, p = 1.
    let params = Params::new(19 * 1024, 2, 1, None).map_err(Error::internal)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password into a PHC string, on the blocking pool.
pub async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(Error::internal)?;
        argon2()?
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(Error::internal)
    })
    .await
    .map_err(Error::internal)?
}

/// Verifies a password against a PHC string (constant time), on the blocking pool.
pub async fn verify_password(password: String, phc: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let hash = PasswordHash::new(&phc).map_err(Error::internal)?;
        Ok(argon2()?.verify_password(password.as_bytes(), &hash).is_ok())
    })
    .await
    .map_err(Error::internal)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_checks_length_and_blocklist_only() {
        for (password, ok) in [
            ("short", false),
            ("password", false),
            ("correct horse", true),
            ("ÄÖÜäöüßé", true),
        ] {
            let mut v = Violations::new();
            check_policy(&mut v, "password", password);
            assert_eq!(v.is_empty(), ok, "{password}");
        }
    }

    #[tokio::test]
    async fn hashes_verify_and_differ() {
        let a = hash_password("correct horse".into()).await.unwrap();
        let b = hash_password("correct horse".into()).await.unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password("correct horse".into(), a.clone()).await.unwrap());
        assert!(!verify_password("wrong horse".into(), a).await.unwrap());
    }
}
