//! One file a proto service: decode the request into a domain command, call
//! the domain, encode the answer. Errors become a `Status` in `status.rs`.

pub mod audit;
pub mod auth;
pub mod codec;
pub mod convert;
pub mod device;
pub mod group;
pub mod permission;
pub mod role;
pub mod status;
pub mod tenant;
pub mod user;

use tonic::{Request, Status};

use crate::{
    auth::Principal,
    error::{AuthFailure, Error},
};

/// The caller the auth layer put into the request.
pub fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| status::to_status(Error::Unauthenticated(AuthFailure::Missing)))
}

/// Field-mask paths of an update: the mask's, or (empty mask, AIP-134) the
/// fields set in the request, given as (path, is set) pairs. Unknown paths are
/// INVALID_ARGUMENT.
pub fn mask_paths(mask: Option<&prost_types::FieldMask>, fields: &[(&str, bool)]) -> Result<Vec<String>, Error> {
    match mask {
        Some(mask) if !mask.paths.is_empty() => {
            let mut violations = crate::error::Violations::new();
            for path in &mask.paths {
                if !fields.iter().any(|(name, _)| name == path) {
                    violations.add("update_mask", format!("unknown field {path:?}"));
                }
            }
            violations.finish()?;
            Ok(mask.paths.clone())
        }
        _ => Ok(fields
            .iter()
            .filter(|(_, set)| *set)
            .map(|(name, _)| (*name).to_owned())
            .collect()),
    }
}
