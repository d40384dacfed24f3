//! Authentication and authorization: tokens, the caller (`Principal`), the
//! effective-permission cache, and the tower layer that checks every call
//! against the rule generated from its proto option.

pub mod access;
pub mod layer;
pub mod principal;
pub mod token;

pub use principal::{Authorization, Call, PermissionSet, Principal, Subject};
