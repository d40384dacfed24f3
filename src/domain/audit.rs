//! The audit trail: who did what to which resource, in which call, and how
//! it ended.
//!
//! Every mutation records its event with [`record`] (a batch its events
//! with [`record_many`]) inside its own transaction, so an event with
//! outcome `ok` exists if and only if the change committed. A refused or
//! failed mutation rolls its transaction back; the edge (gRPC, or the REST
//! gateway for its routes' gRPC twins) records it afterwards with
//! [`record_refusal`] (its own insert, best effort), the outcome being the
//! gRPC code name.
//!
//! Events carry field *names* only (`first_name`, `password`), never values,
//! so no secret reaches the trail.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::{
    app::App,
    auth::{Call, Principal, Subject},
    domain::{
        now,
        paging::{ListParams, MAX_LIMIT, Page, PageRequest, SortField},
        validate::{self, MAX_TEXT},
    },
    error::{Result, Violations},
    store::{self, audit::EventFilter, entity::audit_event},
};

/// The outcome of a committed change.
pub const OUTCOME_OK: &str = "ok";

/// The action of the events the bootstrap of an empty database records.
pub const BOOTSTRAP_ACTION: &str = "bootstrap";
/// Their actor.
pub const SYSTEM_ACTOR: &str = "system";

/// Events are listed by time, newest first unless the request sorts.
const SORT_FIELDS: &[SortField] = &[SortField::time("occurredAt")];
const NEWEST_FIRST: &str = "-occurredAt";

/// Who acts, in which tenant and call: what an event carries besides its
/// target, outcome and changed fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `user:<id>`, `service:<name>` or `system`.
    pub actor: String,
    /// The tenant in context; `None` for events outside any tenant.
    pub tenant_id: Option<Uuid>,
    pub call: Call,
}

impl Origin {
    /// A user acting on its own account without a token (Login,
    /// AcceptInvitation) in `tenant_id`.
    pub fn user(user_id: Uuid, tenant_id: Option<Uuid>, call: Call) -> Self {
        Self {
            actor: Subject::User(user_id).actor(),
            tenant_id,
            call,
        }
    }
}

impl Origin {
    /// The same act, recorded in the trail of `tenant_id` (`None`: outside
    /// any tenant, seen by global readers only) rather than the tenant in
    /// context: an act that reaches another tenant (a tenant changed, a user
    /// created there) is that tenant's to read, and no reader of the tenant
    /// in context learns of it.
    pub fn in_tenant(self, tenant_id: Option<Uuid>) -> Self {
        Self { tenant_id, ..self }
    }
}

impl From<&Principal> for Origin {
    fn from(caller: &Principal) -> Self {
        Self {
            actor: caller.actor(),
            tenant_id: Some(caller.tenant_id),
            call: caller.call.clone(),
        }
    }
}

impl From<&Origin> for Origin {
    fn from(origin: &Origin) -> Self {
        origin.clone()
    }
}

/// What an event is about, written `kind:id` (the form of `actor`, so a
/// user's own actions and what was done to it are found the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Tenant(Uuid),
    User(Uuid),
    Role(Uuid),
    Group(Uuid),
    Device(Uuid),
    /// A namespace of registered permissions (`namespace:billing`).
    Namespace(&'a str),
}

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tenant(id) => write!(f, "tenant:{id}"),
            Target::User(id) => write!(f, "user:{id}"),
            Target::Role(id) => write!(f, "role:{id}"),
            Target::Group(id) => write!(f, "group:{id}"),
            Target::Device(id) => write!(f, "device:{id}"),
            Target::Namespace(name) => write!(f, "namespace:{name}"),
        }
    }
}

fn event(origin: Origin, target: String, outcome: &str, changed_fields: &[&str]) -> audit_event::Model {
    audit_event::Model {
        id: Uuid::now_v7(),
        occurred_at: now(),
        tenant_id: origin.tenant_id,
        actor: origin.actor,
        action: origin.call.action.to_owned(),
        target,
        request_id: origin.call.request_id,
        outcome: outcome.to_owned(),
        // Serializing a list of strings cannot fail.
        changed_fields: serde_json::to_string(changed_fields).unwrap_or_else(|_| "[]".to_owned()),
    }
}

/// Records a committed change: call it inside the mutation's transaction,
/// with the names of the fields it changed (never their values).
pub async fn record<C: ConnectionTrait>(
    db: &C,
    origin: impl Into<Origin>,
    target: Target<'_>,
    changed_fields: &[&str],
) -> Result<()> {
    store::audit::insert(db, event(origin.into(), target.to_string(), OUTCOME_OK, changed_fields)).await
}

/// Records the committed changes of many targets at once (one multi-row
/// INSERT for up to 500 events): each target gets its own event, as from
/// [`record`], in the tenant given beside it (see [`Origin::in_tenant`]),
/// with the names of the fields changed on it.
pub async fn record_many<C: ConnectionTrait>(
    db: &C,
    origin: impl Into<Origin>,
    events: &[(Uuid, Target<'_>, Vec<&str>)],
) -> Result<()> {
    let origin = origin.into();
    let events = events
        .iter()
        .map(|(tenant_id, target, changed_fields)| {
            let origin = origin.clone().in_tenant(Some(*tenant_id));
            event(origin, target.to_string(), OUTCOME_OK, changed_fields)
        })
        .collect();
    store::audit::insert_many(db, events).await
}

/// Records a refused or failed mutation (its own insert, after the call's
/// transaction rolled back). `outcome` is the gRPC code name
/// (`PERMISSION_DENIED`); the target is unknown at the edge, so empty.
/// Best effort: a failure to record is logged, never answered.
pub async fn record_refusal(app: &App, origin: Origin, outcome: &str) {
    if let Err(error) = store::audit::insert(&app.writer, event(origin, String::new(), outcome, &[])).await {
        tracing::warn!(%error, "could not record a refused call in the audit trail");
    }
}

/// Whether an RPC (`identity.v1.UserService/CreateUsers`, with or without
/// the leading slash) belongs in the trail: every RPC but the reads
/// (`Get...`, `List...`, `Check...`, `WhoAmI`) and `ReportConnection`
/// (device telemetry: it changes only connection state, many times a day).
pub fn is_mutation(rpc: &str) -> bool {
    let method = rpc.rsplit('/').next().unwrap_or_default();
    !method.is_empty()
        && method != "ReportConnection"
        && !["Get", "List", "Check", "WhoAmI"]
            .iter()
            .any(|read| method.starts_with(read))
}

/// ListAuditEvents filters, as received; empty strings filter nothing.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub page: PageRequest,
    pub actor: String,
    pub target: String,
    pub action: String,
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
}

/// The events of the tenant in context (a caller holding `audit:read`
/// through a global role also sees those recorded without a tenant), newest
/// first, paged and filtered.
pub async fn list(app: &App, caller: &Principal, query: EventQuery) -> Result<Page<audit_event::Model>> {
    let mut violations = Violations::new();
    let mut filter_text = |field: &str, value: &str| {
        let value = validate::text(&mut violations, field, value, MAX_TEXT);
        (!value.is_empty()).then_some(value)
    };
    let actor = filter_text("actor", &query.actor);
    let target = filter_text("target", &query.target);
    let action = filter_text("action", query.action.trim_start_matches('/'));
    if let (Some(from), Some(to)) = (query.from, query.to)
        && to < from
    {
        violations.add("to", "must not be before from");
    }
    violations.finish()?;
    let filter = EventFilter {
        tenant_id: caller.tenant_id,
        with_global: caller.holds_globally("audit:read"),
        actor,
        target,
        action,
        from: query.from,
        to: query.to,
    };
    let scope = format!("audit|{filter:?}");
    let mut page = query.page;
    if page.sort.is_empty() {
        page.sort = vec![NEWEST_FIRST.to_owned()];
    }
    let params = ListParams::parse(&page, SORT_FIELDS, MAX_LIMIT, &scope)?;
    let (rows, total) = store::audit::list(&app.db, &filter, &params).await?;
    Ok(params.page(rows, total, |event| event.id, |event, _| event.occurred_at.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_not_mutations() {
        for read in [
            "/identity.v1.UserService/GetUser",
            "identity.v1.UserService/ListUsers",
            "identity.v1.UserService/WhoAmI",
            "identity.v1.PermissionService/CheckPermissions",
            "identity.v1.AuditService/ListAuditEvents",
            "identity.v1.DeviceService/ReportConnection",
        ] {
            assert!(!is_mutation(read), "{read}");
        }
        for write in [
            "/identity.v1.UserService/CreateUsers",
            "identity.v1.UserService/DeactivateUser",
            "identity.v1.UserService/AddUserToGroup",
            "identity.v1.DeviceService/RevokeDevice",
            "identity.v1.AuthService/ChangePassword",
        ] {
            assert!(is_mutation(write), "{write}");
        }
    }

    #[test]
    fn events_carry_the_origin_and_field_names() {
        let user = Uuid::now_v7();
        let origin = Origin::user(
            user,
            None,
            Call {
                action: "identity.v1.AuthService/Login",
                request_id: "r-1".into(),
            },
        );
        let event = event(origin, Target::User(user).to_string(), OUTCOME_OK, &["last_connection"]);
        assert_eq!(event.actor, format!("user:{user}"));
        assert_eq!(event.target, format!("user:{user}"));
        assert_eq!(event.action, "identity.v1.AuthService/Login");
        assert_eq!(event.request_id, "r-1");
        assert_eq!(event.changed_fields, r#"["last_connection"]"#);
    }
}
