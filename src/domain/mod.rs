//! The business rules, one module an aggregate. Nothing here knows whether a
//! call came over gRPC or HTTP: operations take the caller's [`Principal`]
//! and a validated command, check tenant scope and targets, and run in one
//! transaction.
//!
//! [`Principal`]: crate::auth::Principal

pub mod audit;
pub mod auth;
pub mod checks;
pub mod credentials;
pub mod devices;
pub mod grants;
pub mod groups;
pub mod idempotency;
pub mod invitations;
pub mod paging;
pub mod permissions;
pub mod roles;
pub mod tenants;
pub mod users;
pub mod validate;

use chrono::{DateTime, SubsecRound, Utc};

/// The current time at the precision both databases store (microseconds),
/// so values read back compare equal to the ones written (keyset cursors).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
