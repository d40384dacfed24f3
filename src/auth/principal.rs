//! Who is calling: the `Principal` the auth layer puts in each request's
//! extensions, and permission matching with `*` and `resource:*` wildcards.

use std::{collections::BTreeSet, sync::Arc};

use uuid::Uuid;

use crate::error::{Error, Result};

/// A set of granted permissions, possibly with wildcards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionSet(BTreeSet<String>);

impl PermissionSet {
    pub fn new<I, S>(grants: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self(grants.into_iter().map(Into::into).collect())
    }

    /// Whether a grant covers `permission`: `*` covers everything, `users:*`
    /// every permission starting with `users:`, anything else only itself.
    pub fn allows(&self, permission: &str) -> bool {
        self.0.contains(permission) || self.0.iter().any(|grant| grant_covers(grant, permission))
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

fn grant_covers(grant: &str, permission: &str) -> bool {
    match grant.strip_suffix('*') {
        Some("") => true,
        Some(prefix) if prefix.ends_with(':') => permission.starts_with(prefix),
        _ => grant == permission,
    }
}

/// The caller's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A user, authorized with its live effective permissions.
    User(Uuid),
    /// A service token, authorized with the permissions it claims.
    Service(String),
}

/// How the RPC's permission was satisfied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorization {
    /// The caller holds the RPC's permission (or the RPC needs none).
    Granted,
    /// The caller lacks it but the RPC has `allow_self`: only valid when the
    /// target user is the caller, which the domain checks.
    SelfOnly,
}

impl Subject {
    /// The subject as written in audit events (`user:<id>`, `service:<name>`).
    pub fn actor(&self) -> String {
        match self {
            Subject::User(id) => format!("user:{id}"),
            Subject::Service(name) => format!("service:{name}"),
        }
    }
}

/// Metadata carrying the id of a call (assigned by the server when absent).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest request id kept in audit events (a client may send its own).
const MAX_REQUEST_ID: usize = 128;

/// The call a caller makes, as the audit trail names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Call {
    /// The RPC without the leading slash (`identity.v1.UserService/CreateUsers`);
    /// a REST route names its gRPC twin.
    pub action: &'static str,
    /// The call's `x-request-id`, to correlate with the logs.
    pub request_id: String,
}

impl Call {
    /// The call of `rpc` (`identity.v1.UserService/CreateUsers`, a leading
    /// slash ignored) with the request id of these headers (truncated to 128
    /// characters).
    pub fn new(rpc: &'static str, headers: &http::HeaderMap) -> Self {
        // A header value that is a `str` is visible ASCII: every byte is a
        // character, so the cut always falls between two.
        let request_id = headers
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|id| id.get(..id.len().min(MAX_REQUEST_ID)))
            .unwrap_or_default();
        Self {
            action: rpc.trim_start_matches('/'),
            request_id: request_id.to_owned(),
        }
    }
}

/// An authenticated caller in the tenant in context.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: Subject,
    /// The tenant in context.
    pub tenant_id: Uuid,
    pub permissions: Arc<PermissionSet>,
    /// May act in other tenants (`x-tenant-id`): a global service token, or a
    /// user holding a global role.
    pub global: bool,
    /// What it may do beyond the tenant in context: a global service token's
    /// permissions, or those of the global roles a user holds; empty for
    /// everyone else. A user's permissions from the tenant's own roles are
    /// not among them, so they cannot be carried to every tenant.
    pub global_permissions: Arc<PermissionSet>,
    pub authorization: Authorization,
    /// The call being authorized (for the audit trail).
    pub call: Call,
}

impl Principal {
    pub fn user_id(&self) -> Option<Uuid> {
        match self.subject {
            Subject::User(id) => Some(id),
            Subject::Service(_) => None,
        }
    }

    /// The subject as written in audit events and `created_by`.
    pub fn actor(&self) -> String {
        self.subject.actor()
    }

    pub fn holds(&self, permission: &str) -> bool {
        self.permissions.allows(permission)
    }

    /// For `allow_self` RPCs: the caller acts on `target` with the RPC's
    /// permission, or on itself. Checked before the target is looked up, so a
    /// refusal reveals nothing about other users.
    pub fn require_target(&self, target: Uuid) -> Result<()> {
        match self.authorization {
            Authorization::Granted => Ok(()),
            Authorization::SelfOnly if self.user_id() == Some(target) => Ok(()),
            Authorization::SelfOnly => Err(Error::PermissionDenied("permission missing".into())),
        }
    }

    /// Whether the caller acts on itself without the RPC's permission.
    pub fn is_self_only(&self) -> bool {
        self.authorization == Authorization::SelfOnly
    }

    /// No escalation: every permission granted must be held by the caller.
    pub fn require_all(&self, permissions: &[String]) -> Result<()> {
        match permissions.iter().find(|p| !self.holds(p)) {
            None => Ok(()),
            Some(p) => Err(Error::PermissionDenied(format!(
                "cannot grant {p}: the caller does not hold it"
            ))),
        }
    }

    /// Whether the caller holds `permission` beyond the tenant in context
    /// (see [`Self::global_permissions`]): what an act that reaches other
    /// tenants (a tenant, a global role, the catalog, an account shared by
    /// tenants) needs.
    pub fn holds_globally(&self, permission: &str) -> bool {
        self.global_permissions.allows(permission)
    }

    /// No escalation across tenants: every permission granted with a global
    /// reach (in a global role) must be held globally.
    pub fn require_all_globally(&self, permissions: &[String]) -> Result<()> {
        match permissions.iter().find(|p| !self.holds_globally(p)) {
            None => Ok(()),
            Some(p) => Err(Error::PermissionDenied(format!(
                "cannot grant {p} in every tenant: the caller does not hold it through a global role"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_documented() {
        let set = PermissionSet::new(["users:*", "roles:read", "billing:invoices:*"]);
        assert!(set.allows("users:read"));
        assert!(set.allows("users:password-reset"));
        assert!(set.allows("roles:read"));
        assert!(!set.allows("roles:update"));
        assert!(set.allows("billing:invoices:read"));
        assert!(!set.allows("billing:payments:read"));
        assert!(!set.allows("usersx:read"));
        assert!(PermissionSet::new(["*"]).allows("anything:at-all"));
        assert!(!PermissionSet::new(["users"]).allows("users:read"));
        assert!(!PermissionSet::default().allows("users:read"));
    }

    #[test]
    fn a_call_names_its_rpc_and_keeps_at_most_128_characters_of_its_request_id() {
        let mut headers = http::HeaderMap::new();
        let call = Call::new("/identity.v1.UserService/CreateUsers", &headers);
        assert_eq!(call.action, "identity.v1.UserService/CreateUsers");
        assert_eq!(call.request_id, "");

        headers.insert(REQUEST_ID_HEADER, http::HeaderValue::from_static("r-1"));
        assert_eq!(Call::new("identity.v1.AuthService/Login", &headers).request_id, "r-1");

        let long = "r".repeat(201);
        headers.insert(REQUEST_ID_HEADER, http::HeaderValue::from_str(&long).unwrap());
        assert_eq!(Call::new("x/Y", &headers).request_id, long[..MAX_REQUEST_ID]);

        // Not visible ASCII: not a request id anyone can correlate.
        headers.insert(REQUEST_ID_HEADER, http::HeaderValue::from_bytes(b"r\xffid").unwrap());
        assert_eq!(Call::new("x/Y", &headers).request_id, "");
    }
}
