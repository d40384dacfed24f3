//! Request ids of the Create RPCs (API.md): a retry with the same
//! `request_id` and body gets the first result and creates nothing twice; the
//! same id with another body is FAILED_PRECONDITION (REQUEST_ID_REUSED).
//!
//! A request id is scoped to the operation, the tenant in context and the
//! caller, so two callers can never replay (or learn about) each other's
//! results. The operation looks the key up and records its result inside its
//! own transaction, after taking whatever lock serializes it, so a retry that
//! races the first attempt waits for it and then replays it.

use sea_orm::ConnectionTrait;
use sha2::{Digest, Sha256};

use crate::{
    auth::Principal,
    domain::validate::{self, MAX_TEXT},
    error::{Error, Result, Violations},
    store,
};

/// A request id with the scope and body it was sent with.
#[derive(Debug, Clone)]
pub struct RequestKey {
    scope: String,
    request_id: String,
    hash: String,
}

/// Validates a request's `request_id` (optional; empty means none).
pub fn request_id(violations: &mut Violations, value: &str) -> String {
    validate::text(violations, "request_id", value, MAX_TEXT)
}

impl RequestKey {
    /// `None` when the request carries no request id. `request_id` is
    /// validated by [`request_id`]; `body` lists the request's fields after
    /// validation (what the result depends on).
    pub fn new(caller: &Principal, operation: &str, request_id: &str, body: &[&[u8]]) -> Option<Self> {
        if request_id.is_empty() {
            return None;
        }
        let mut hasher = Sha256::new();
        for part in body {
            // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        Some(Self {
            scope: format!("{operation}|{}|{}", caller.tenant_id, caller.actor()),
            request_id: request_id.to_owned(),
            hash: hex::encode(hasher.finalize()),
        })
    }

    /// The result recorded by an earlier request with this key, if any.
    pub async fn replay<C: ConnectionTrait>(&self, db: &C) -> Result<Option<Vec<u8>>> {
        match store::idempotency::find(db, &self.scope, &self.request_id).await? {
            None => Ok(None),
            Some(earlier) if earlier.request_hash == self.hash => Ok(Some(earlier.response)),
            Some(_) => Err(Error::RequestIdReused),
        }
    }

    /// Records the result, in the transaction that produced it.
    pub async fn record<C: ConnectionTrait>(
        &self,
        db: &C,
        response: Vec<u8>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        store::idempotency::save(db, &self.scope, &self.request_id, &self.hash, response, now).await
    }
}

/// Runs a Create operation under an optional request key: an earlier result
/// recorded under the key is answered (through `load`) without running
/// `create`; and when `create` loses a race to a concurrent identical request
/// (ALREADY_EXISTS), the winner's result is answered. `create` must record
/// its result with [`RequestKey::record`] in its transaction.
pub async fn once<T, L, C>(
    db: &sea_orm::DatabaseConnection,
    key: Option<&RequestKey>,
    load: impl Fn(Vec<u8>) -> L,
    create: C,
) -> Result<T>
where
    L: std::future::Future<Output = Result<T>>,
    C: std::future::Future<Output = Result<T>>,
{
    if let Some(key) = key
        && let Some(response) = key.replay(db).await?
    {
        return load(response).await;
    }
    replay_on_conflict(db, key, load, create.await).await
}

/// The answer of a Create operation that ran under an optional request key:
/// its own result, unless it lost a race to a concurrent request with the
/// same key (ALREADY_EXISTS, the key's or a unique value's): then that
/// request's result when the bodies match (through `load`), else
/// REQUEST_ID_REUSED. [`once`] ends with it; an operation that looks its key
/// up itself (inside its transaction, after the lock that serializes it)
/// calls it on its result, for the races its lock does not cover.
pub async fn replay_on_conflict<T, L>(
    db: &sea_orm::DatabaseConnection,
    key: Option<&RequestKey>,
    load: impl FnOnce(Vec<u8>) -> L,
    result: Result<T>,
) -> Result<T>
where
    L: std::future::Future<Output = Result<T>>,
{
    match (result, key) {
        (Err(Error::AlreadyExists { field }), Some(key)) => match key.replay(db).await? {
            Some(response) => load(response).await,
            None => Err(Error::AlreadyExists { field }),
        },
        (result, _) => result,
    }
}

/// Ids as a recorded response (16 bytes each).
pub fn ids_to_bytes(ids: &[uuid::Uuid]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.as_bytes().to_vec()).collect()
}

/// The ids of a recorded response.
pub fn ids_from_bytes(bytes: &[u8]) -> Vec<uuid::Uuid> {
    bytes
        .chunks_exact(16)
        .filter_map(|chunk| uuid::Uuid::from_slice(chunk).ok())
        .collect()
}
