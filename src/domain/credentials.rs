//! Passwords: the policy (NIST 800-63B: length only, no composition rules,
//! no truncation, a blocklist) and argon2id hashing with OWASP parameters on
//! threads of its own, so a burst of hashing never stalls the async workers.

use std::{
    collections::HashSet,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Arc, LazyLock, Mutex,
        mpsc::{self, Sender},
    },
};

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version, password_hash::SaltString,
};

use crate::error::{Error, Result, Violations};

/// Shortest password accepted by default (configurable, never below 8).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted (well above NIST's 64).
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// Common passwords refused whatever their length, shipped with the binary.
static BLOCKLIST: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
});

/// The shortest password accepted given the configured minimum (never below
/// [`MIN_PASSWORD_CHARS`]).
pub fn min_password_chars(configured: usize) -> usize {
    configured.max(MIN_PASSWORD_CHARS)
}

/// Checks the policy, adding a violation to `field` when it is not met.
/// `min_chars` is the configured minimum (raised to 8 if lower).
pub fn check_policy(violations: &mut Violations, field: &str, password: &str, min_chars: usize) {
    let chars = password.chars().count();
    let min_chars = min_password_chars(min_chars);
    if chars < min_chars {
        violations.add(field, format!("must be at least {min_chars} characters"));
    } else if chars > MAX_PASSWORD_CHARS {
        violations.add(field, format!("must be at most {MAX_PASSWORD_CHARS} characters"));
    } else if BLOCKLIST.contains(password.to_lowercase().as_str()) {
        violations.add(field, "is too common; choose another");
    }
}

/// Stands in for the hash of an unknown user (or one without a password), so
/// that such a login costs one verification like any other. The password
/// behind it was random and thrown away; only its parameters matter, and a
/// test holds them equal to [`argon2`]'s. (Hashing a fresh one at start-up
/// added a full hash time to every boot.)
pub const DUMMY_PASSWORD_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$osL4KBUEqfubn998CU9TaA$pVP4vC8WlgeaST+4q1yUcFhyswit+D+U8kl8ZN3zhU4";

fn argon2() -> Result<Argon2<'static>> {
    // OWASP: m = 19 MiB, t = 2, p = 1.
    let params = Params::new(19 * 1024, 2, 1, None).map_err(Error::internal)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads, one a core, started on first use. They run at a
/// lower scheduling priority than the rest of the process: with spare CPU a
/// login flood uses every core, and when the async workers need a core they
/// preempt the hashing at once, so a flood barely moves the latency of other
/// calls. Queued hashes wait in the channel (each holds 19 MiB only while it
/// runs).
static HASHING_THREADS: LazyLock<std::io::Result<Sender<Job>>> = LazyLock::new(start_hashing_threads);

/// Niceness of the hashing threads (0 is the default, 19 the lowest).
const HASHING_NICENESS: i32 = 10;

fn start_hashing_threads() -> std::io::Result<Sender<Job>> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (sender, receiver) = mpsc::channel::<Job>();
    let receiver = Arc::new(Mutex::new(receiver));
    for i in 0..cores {
        let receiver = receiver.clone();
        std::thread::Builder::new()
            .name(format!("castellan-hash-{i}"))
            .spawn(move || {
                lower_priority();
                loop {
                    // The lock is held while waiting for a job, not while running it.
                    let Ok(Ok(job)) = receiver.lock().map(|jobs| jobs.recv()) else {
                        return;
                    };
                    // A panicking job drops its reply (the caller sees an
                    // internal error); the thread goes on.
                    let _ = catch_unwind(AssertUnwindSafe(job));
                }
            })?;
    }
    Ok(sender)
}

/// Lowers the calling thread's priority (Linux sets niceness per thread).
#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: two system calls on the calling thread, no memory involved.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, HASHING_NICENESS) };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the hashing threads' priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// Runs argon2 work on the hashing threads.
async fn on_hashing_pool<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let jobs = HASHING_THREADS
        .as_ref()
        .map_err(|error| Error::internal(format!("hashing threads: {error}")))?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    jobs.send(Box::new(move || {
        let _ = reply.send(work());
    }))
    .map_err(|_| Error::internal("hashing threads stopped"))?;
    answer.await.map_err(|_| Error::internal("a hashing job failed"))?
}

/// Hashes a password into a PHC string, on the hashing threads.
pub async fn hash_password(password: String) -> Result<String> {
    on_hashing_pool(move || {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(Error::internal)?;
        argon2()?
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(Error::internal)
    })
    .await
}

/// Verifies a password against a PHC string (constant time), on the hashing threads.
pub async fn verify_password(password: String, phc: String) -> Result<bool> {
    on_hashing_pool(move || {
        let hash = PasswordHash::new(&phc).map_err(Error::internal)?;
        Ok(argon2()?.verify_password(password.as_bytes(), &hash).is_ok())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        let dummy = PasswordHash::new(DUMMY_PASSWORD_HASH).expect("a PHC string");
        let real = argon2().expect("params");
        assert_eq!(dummy.algorithm, Algorithm::Argon2id.ident());
        let params = Params::try_from(&dummy).expect("params");
        let expected = real.params();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (expected.m_cost(), expected.t_cost(), expected.p_cost())
        );
        assert_eq!(dummy.hash.map(|h| h.len()), Some(Params::DEFAULT_OUTPUT_LEN));
        assert_eq!(dummy.version, Some(Version::V0x13 as u32));
    }

    #[test]
    fn policy_checks_length_and_blocklist_only() {
        for (password, ok) in [
            ("short", false),
            ("password", false),
            ("correct horse", true),
            ("ÄÖÜäöüßé", true),
        ] {
            let mut v = Violations::new();
            check_policy(&mut v, "password", password, MIN_PASSWORD_CHARS);
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
