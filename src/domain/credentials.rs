//! Passwords: the policy (NIST 800-63B: length only, no composition rules,
//! no truncation, a blocklist) and argon2id hashing with OWASP parameters on
//! threads of its own, so a burst of hashing never stalls the async workers.

use std::{
    collections::HashSet,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Arc, LazyLock, Mutex,
        mpsc::{self, RecvTimeoutError, Sender},
    },
    time::Duration,
};

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::{Output, ParamsString, Salt, SaltString},
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
    "$argon2id$v=19$m=7168,t=5,p=1$BU8mC3MJUXo8zE9KoJ2ZAQ$0E85wsrWtCsNQmN6htNxudBlUOTSoeJdkogRA3XdAbU";

/// argon2id with m = 7 MiB, t = 5, p = 1: one of the settings OWASP's
/// password storage guide lists as equally strong (m × t of 35–38 MiB
/// passes each), and Keycloak's default. Of those settings it has the least
/// memory: under a login flood both cores hash, and 7 MiB hashes gave about
/// a quarter more logins a second than 19 MiB ones (m = 19 MiB, t = 2, this
/// server's parameters until 2026-12-06) and 25 MB less resident memory;
/// see docs/benchmarks-log.md. Hashes stored with other parameters still verify with
/// their own (the PHC string carries them).
fn argon2() -> Result<Argon2<'static>> {
    let params = Params::new(7 * 1024, 5, 1, None).map_err(Error::internal)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Whether a stored hash was made otherwise than [`argon2`] makes them now
/// (other parameters, algorithm or version): a login that verified it stores
/// a fresh one. One that does not parse is left to [`verify_password`].
pub fn is_outdated(phc: &str) -> bool {
    let (Ok(hash), Ok(current)) = (PasswordHash::new(phc), argon2()) else {
        return false;
    };
    let current = current.params();
    let same_params = Params::try_from(&hash).is_ok_and(|params| {
        (params.m_cost(), params.t_cost(), params.p_cost()) == (current.m_cost(), current.t_cost(), current.p_cost())
    });
    let same_kind = Algorithm::try_from(hash.algorithm).is_ok_and(|algorithm| algorithm == Algorithm::Argon2id)
        && hash.version == Some(u32::from(Version::V0x13));
    !(same_params && same_kind)
}

/// The working memory of one argon2 computation (7 MiB with the parameters
/// above). A hashing thread keeps it from one job to the next, and gives it
/// back to the system after a second without work: fresh pages for every
/// hash (a page fault and zeroing each 4 KiB, then the unmapping) cost a
/// fifth of a login flood's CPU, yet an idle server should not hold 7 MiB a
/// core.
type Memory = Vec<Block>;

type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// The hashing threads, one a core, started on first use. They run under
/// Linux's `SCHED_IDLE` policy: with spare CPU a login flood uses every core,
/// and an async worker that wakes preempts the hashing (see also
/// [`YIELD_INTERVAL`]), so a flood barely moves the latency of other calls.
/// (At nice 10 a woken worker could wait out the hashing thread's time
/// slice: the probe's p99 beside a flood was 2.3–3.1 × its value alone,
/// 1.5–1.8 × under `SCHED_IDLE`; see BENCHMARKS.md.) The price: on a machine
/// kept fully busy by other work, hashes get only what is left, so logins
/// slow down first. Queued hashes wait in the channel (each holds 7 MiB only
/// while it runs).
static HASHING_THREADS: LazyLock<std::io::Result<Sender<Job>>> = LazyLock::new(start_hashing_threads);

/// How long a hashing thread keeps its working memory without work: through
/// the gaps of a login flood (allocating 7 MiB anew means 1,792 page faults,
/// and a fault taken at idle priority can hold up the other threads' memory
/// map), not for good.
const MEMORY_KEPT_WHILE_IDLE: Duration = Duration::from_secs(1);

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
                let mut yield_timer = YieldTimer::for_this_thread();
                let mut memory = Memory::new();
                loop {
                    // The lock is held while waiting for a job, not while
                    // running it; the wait ends every second, so each thread
                    // in turn sees an idle queue.
                    match receiver.lock().map(|jobs| jobs.recv_timeout(MEMORY_KEPT_WHILE_IDLE)) {
                        Ok(Ok(job)) => {
                            let _yielding = yield_timer.as_mut().map(YieldTimer::arm);
                            // A panicking job drops its reply (the caller
                            // sees an internal error); the thread goes on.
                            let _ = catch_unwind(AssertUnwindSafe(|| job(&mut memory)));
                        }
                        Ok(Err(RecvTimeoutError::Timeout)) => memory = Memory::new(),
                        Ok(Err(RecvTimeoutError::Disconnected)) | Err(_) => return,
                    }
                }
            })?;
    }
    Ok(sender)
}

/// Puts the calling thread under `SCHED_IDLE` (Linux sets the policy per thread).
#[cfg(target_os = "linux")]
fn lower_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a system call on the calling thread (pid 0) with a valid, live
    // parameter struct.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the hashing threads' priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// How often a hashing thread gives up its CPU while it hashes. A thread
/// woken onto a CPU that a hashing thread holds should preempt it at once
/// (`SCHED_IDLE`), and mostly does; but on the VMs of BENCHMARKS.md it
/// sometimes ran only once that CPU next rescheduled, up to a scheduler tick
/// (4 ms) later, and the get-user probe's p99 beside a login flood was
/// 2.7–6.9 × its value alone. An interrupt alone does not end such a wait
/// (a signal with an empty handler every 500 µs changed nothing); a
/// reschedule does. So a busy hashing thread yields every half millisecond,
/// from a timer's signal: the probe's p99 beside the flood fell to
/// 1.3–2.2 ×, for about 5 % fewer logins a second (the signals' cost).
/// Every quarter millisecond did better for the probe but cost 12 % of the
/// logins (BENCHMARKS.md, "Hashing threads that yield").
#[cfg(target_os = "linux")]
const YIELD_INTERVAL: Duration = Duration::from_micros(500);

/// A timer that makes the calling thread yield its CPU every
/// [`YIELD_INTERVAL`] while armed.
#[cfg(target_os = "linux")]
struct YieldTimer(nix::sys::timer::Timer);

#[cfg(target_os = "linux")]
impl YieldTimer {
    /// SIGURG, the signal Go's runtime preempts goroutines with, for the same
    /// reasons: nothing else in the process uses it, it is ignored by
    /// default, and one more or fewer does no harm.
    const SIGNAL: nix::sys::signal::Signal = nix::sys::signal::Signal::SIGURG;

    /// The calling thread's timer, disarmed; none (logged) where the system
    /// refuses one, and the thread then hashes without yielding.
    fn for_this_thread() -> Option<Self> {
        use nix::sys::signal::{SaFlags, SigAction, SigEvent, SigHandler, SigSet, SigevNotify, sigaction};
        let handler = SigAction::new(SigHandler::Handler(yield_cpu), SaFlags::SA_RESTART, SigSet::empty());
        // SAFETY: the handler is async-signal-safe (see `yield_cpu`), and
        // SA_RESTART resumes the system calls the signal interrupts.
        let created = unsafe { sigaction(Self::SIGNAL, &handler) }.and_then(|_| {
            nix::sys::timer::Timer::new(
                nix::time::ClockId::CLOCK_MONOTONIC,
                SigEvent::new(SigevNotify::SigevThreadId {
                    signal: Self::SIGNAL,
                    thread_id: nix::unistd::gettid().as_raw(),
                    si_value: 0,
                }),
            )
        });
        match created {
            Ok(timer) => Some(Self(timer)),
            Err(error) => {
                tracing::debug!(%error, "the hashing threads will not yield");
                None
            }
        }
    }

    /// Arms the timer until the guard is dropped.
    fn arm(&mut self) -> ArmedYieldTimer<'_> {
        self.set(nix::sys::timer::Expiration::Interval(YIELD_INTERVAL.into()));
        ArmedYieldTimer(self)
    }

    fn set(&mut self, expiration: nix::sys::timer::Expiration) {
        if let Err(error) = self.0.set(expiration, nix::sys::timer::TimerSetTimeFlags::empty()) {
            tracing::debug!(%error, "could not set a hashing thread's yield timer");
        }
    }
}

/// The yield timer's signal handler.
#[cfg(target_os = "linux")]
extern "C" fn yield_cpu(_signal: libc::c_int) {
    #[cfg(test)]
    tests::YIELDS.set(tests::YIELDS.get() + 1);
    // SAFETY: sched_yield is a bare system call that takes nothing, holds
    // no lock and always succeeds on Linux (so errno is left as it was).
    unsafe {
        libc::sched_yield();
    }
}

/// Disarms the yield timer when dropped.
#[cfg(target_os = "linux")]
struct ArmedYieldTimer<'a>(&'a mut YieldTimer);

#[cfg(target_os = "linux")]
impl Drop for ArmedYieldTimer<'_> {
    fn drop(&mut self) {
        // A zero expiration disarms a timer.
        self.0.set(nix::sys::timer::Expiration::OneShot(Duration::ZERO.into()));
    }
}

/// Elsewhere the hashing threads do not yield.
#[cfg(not(target_os = "linux"))]
struct YieldTimer;

#[cfg(not(target_os = "linux"))]
impl YieldTimer {
    fn for_this_thread() -> Option<Self> {
        None
    }

    fn arm(&mut self) {}
}

/// Runs argon2 work on the hashing threads.
async fn on_hashing_pool<T: Send + 'static>(work: impl FnOnce(&mut Memory) -> Result<T> + Send + 'static) -> Result<T> {
    let jobs = HASHING_THREADS
        .as_ref()
        .map_err(|error| Error::internal(format!("hashing threads: {error}")))?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    jobs.send(Box::new(move |memory| {
        // A caller that gave up (its deadline passed, it disconnected) no
        // longer waits: its hash would only delay the ones still waited on.
        if !reply.is_closed() {
            let _ = reply.send(work(memory));
        }
    }))
    .map_err(|_| Error::internal("hashing threads stopped"))?;
    answer.await.map_err(|_| Error::internal("a hashing job failed"))?
}

/// Hashes a password into a PHC string, on the hashing threads.
pub async fn hash_password(password: String) -> Result<String> {
    on_hashing_pool(move |memory| {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(Error::internal)?;
        let argon2 = argon2()?;
        let output = compute(
            &argon2,
            password.as_bytes(),
            salt.as_salt(),
            Params::DEFAULT_OUTPUT_LEN,
            memory,
        )?;
        let hash = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(argon2.params()).map_err(Error::internal)?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(hash.to_string())
    })
    .await
}

/// Verifies a password against a PHC string (constant time), on the hashing
/// threads. The stored hash's own algorithm, version and parameters apply.
pub async fn verify_password(password: String, phc: String) -> Result<bool> {
    on_hashing_pool(move |memory| {
        let hash = PasswordHash::new(&phc).map_err(Error::internal)?;
        let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
            return Err(Error::internal("a stored password hash without salt or output"));
        };
        let algorithm = Algorithm::try_from(hash.algorithm).map_err(Error::internal)?;
        let version = match hash.version {
            Some(version) => Version::try_from(version).map_err(Error::internal)?,
            None => Version::default(),
        };
        let params = Params::try_from(&hash).map_err(Error::internal)?;
        let computed = compute(
            &Argon2::new(algorithm, version, params),
            password.as_bytes(),
            salt,
            expected.len(),
            memory,
        )?;
        // `Output` compares in constant time.
        Ok(computed == expected)
    })
    .await
}

/// One argon2 computation in the hashing thread's working memory.
fn compute(
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: Salt<'_>,
    output_len: usize,
    memory: &mut Memory,
) -> Result<Output> {
    let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
    let salt = salt.decode_b64(&mut salt_bytes).map_err(Error::internal)?;
    // Every block is written before it is read (the first pass overwrites),
    // so what a previous hash left does not matter.
    memory.resize(argon2.params().block_count(), Block::new());
    Output::init_with(output_len, |out| {
        Ok(argon2.hash_password_into_with_memory(password, salt, out, memory.as_mut_slice())?)
    })
    .map_err(Error::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_made_otherwise_than_today_is_outdated() {
        assert!(!is_outdated(DUMMY_PASSWORD_HASH));
        let older = DUMMY_PASSWORD_HASH.replace("m=7168,t=5", "m=19456,t=2");
        assert!(is_outdated(&older));
        let argon2i = DUMMY_PASSWORD_HASH.replace("$argon2id$", "$argon2i$");
        assert!(is_outdated(&argon2i));
        assert!(!is_outdated("not a hash"), "left to verify_password");
    }

    #[cfg(target_os = "linux")]
    thread_local! {
        /// The yield timer's signals each thread took.
        pub(super) static YIELDS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_hashing_thread_yields_while_its_timer_is_armed_and_only_then() {
        fn spin(time: Duration) {
            let start = std::time::Instant::now();
            while start.elapsed() < time {
                std::hint::spin_loop();
            }
        }
        let mut timer = YieldTimer::for_this_thread().expect("a yield timer");
        spin(Duration::from_millis(10));
        assert_eq!(YIELDS.get(), 0, "no yields before the timer is armed");
        {
            let _armed = timer.arm();
            spin(Duration::from_millis(50));
        }
        let armed = YIELDS.get();
        // Every 0.5 ms: about 100, fewer if the thread was kept off its CPU.
        assert!(armed >= 5, "{armed} yields in 50 ms");
        spin(Duration::from_millis(10));
        assert_eq!(YIELDS.get(), armed, "no yields once disarmed");
    }

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
        assert!(a.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"));
        assert!(verify_password("correct horse".into(), a.clone()).await.unwrap());
        assert!(!verify_password("wrong horse".into(), a).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_are_those_of_the_argon2_crate_both_ways() {
        use argon2::{PasswordHasher, PasswordVerifier};
        // Stored by the crate's own API (as before the hashing threads kept
        // their memory), with other parameters: verified by ours.
        let params = Params::new(8 * 1024, 1, 1, None).unwrap();
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        let stored = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password("correct horse".into(), stored.clone()).await.unwrap());
        assert!(!verify_password("wrong horse".into(), stored).await.unwrap());
        // Ours, verified by the crate.
        let ours = hash_password("correct horse".into()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(argon2().unwrap().verify_password(b"correct horse", &parsed).is_ok());
    }

    #[tokio::test]
    async fn hashes_stored_with_the_earlier_parameters_still_verify() {
        // m = 19 MiB, t = 2, p = 1, hashed by argon2-cffi.
        let stored =
            "$argon2id$v=19$m=19456,t=2,p=1$ay+TVFnHKld4Xv2TOBs+ig$7mY8Ujnul3DSVqOvc/pEsXgzEkiVEsWjCFzJJZzuZOY";
        assert!(verify_password("correct horse".into(), stored.into()).await.unwrap());
        assert!(!verify_password("correct horsE".into(), stored.into()).await.unwrap());
    }

    #[tokio::test]
    async fn a_hash_whose_caller_gave_up_is_skipped() {
        use std::sync::atomic::{AtomicBool, Ordering};
        // Hold every hashing thread, so the next job stays queued.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let held = Arc::new(Mutex::new(held));
        let (started, mut holding) = tokio::sync::mpsc::unbounded_channel::<()>();
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let blockers: Vec<_> = (0..cores)
            .map(|_| {
                let (held, started) = (held.clone(), started.clone());
                tokio::spawn(on_hashing_pool(move |_| {
                    let _ = started.send(());
                    let _ = held.lock().map(|h| h.recv());
                    Ok(())
                }))
            })
            .collect();
        for _ in 0..cores {
            holding.recv().await.unwrap();
        }
        let ran = Arc::new(AtomicBool::new(false));
        let abandoned = {
            let ran = ran.clone();
            on_hashing_pool(move |_| {
                ran.store(true, Ordering::SeqCst);
                Ok(())
            })
        };
        // The caller gives up while its job is queued.
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(50), abandoned).await;
        assert!(gave_up.is_err(), "the job must still be queued");
        for _ in 0..cores {
            release.send(()).unwrap();
        }
        for blocker in blockers {
            blocker.await.unwrap().unwrap();
        }
        // A job queued after the abandoned one has run: the abandoned one was dequeued.
        on_hashing_pool(|_| Ok(())).await.unwrap();
        assert!(!ran.load(Ordering::SeqCst), "a job nobody waits for must not run");
    }
}
