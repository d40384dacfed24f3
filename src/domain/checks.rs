//! CheckPermission: whether a user, named by id or by the access token it
//! presented to a service, holds a permission in a tenant. Answered from the
//! access cache (the same effective permissions, and the same epoch
//! invalidation, as the auth layer), so a warm check reads no database and a
//! revocation holds from the very next check. A subject that cannot be used
//! is an answer (`allowed: false` and a reason), never an error, so a check
//! reveals nothing about users of other tenants.

use uuid::Uuid;

use crate::{
    app::App,
    auth::{
        Principal,
        access::{KnownTenant, TenantKey},
        token::SubjectKind,
    },
    domain::{permissions::well_formed, validate},
    error::{Error, Result, Violations},
    store::access::GrantSource,
};

/// Most checks a CheckPermissions call answers.
pub const MAX_CHECKS: usize = 100;

/// Whom a check is about, as the caller sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckSubject {
    UserId(String),
    AccessToken(String),
}

/// One check, as the caller sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckRequest {
    pub subject: Option<CheckSubject>,
    pub permission: String,
    /// Empty: the tenant in context.
    pub tenant_id: String,
}

/// Why a check was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenialReason {
    /// A valid, active user of the tenant without the permission.
    NotGranted,
    /// No such user in the tenant (unknown, deleted, or of another tenant).
    UnknownSubject,
    /// The token does not verify, or is not a user token.
    InvalidToken,
    /// The user is not ACTIVE, or must change its temporary password first.
    InactiveSubject,
}

/// The answer to one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// `None` when the token does not verify.
    pub user_id: Option<Uuid>,
    pub tenant_id: Uuid,
    /// When allowed: the sources of every grant covering the permission,
    /// sorted (direct, roles, groups).
    pub sources: Vec<GrantSource>,
    /// `None` when allowed.
    pub denial: Option<DenialReason>,
}

impl CheckOutcome {
    pub fn allowed(&self) -> bool {
        self.denial.is_none()
    }
}

/// A validated check.
struct Check<'a> {
    subject: Subject<'a>,
    permission: &'a str,
    tenant_id: Uuid,
}

enum Subject<'a> {
    User(Uuid),
    Token(&'a str),
}

/// Validates one check, naming fields under `prefix` (`""` or `checks[3].`).
fn parse<'a>(
    violations: &mut Violations,
    prefix: &str,
    caller: &Principal,
    request: &'a CheckRequest,
) -> Option<Check<'a>> {
    let subject = match &request.subject {
        None => {
            violations.add(format!("{prefix}subject"), "user_id or access_token is required");
            None
        }
        // The field's name is spelled out only when there is something to say
        // about it (a check is on a service's hot path).
        Some(CheckSubject::UserId(id)) => id
            .trim()
            .parse()
            .ok()
            .or_else(|| validate::uuid(violations, &format!("{prefix}user_id"), id))
            .map(Subject::User),
        Some(CheckSubject::AccessToken(token)) if token.trim().is_empty() => {
            violations.add(format!("{prefix}access_token"), "is required");
            None
        }
        Some(CheckSubject::AccessToken(token)) => Some(Subject::Token(token.trim())),
    };
    let permission = request.permission.as_str();
    if permission.is_empty() {
        violations.add(format!("{prefix}permission"), "is required");
    } else if !well_formed(permission) || permission.contains('*') {
        violations.add(
            format!("{prefix}permission"),
            "must look like resource:action (a wildcard is granted, never checked)",
        );
    }
    let tenant_id = if request.tenant_id.is_empty() {
        Some(caller.tenant_id)
    } else {
        validate::uuid(violations, &format!("{prefix}tenant_id"), &request.tenant_id)
    };
    Some(Check {
        subject: subject?,
        permission,
        tenant_id: tenant_id?,
    })
}

/// A caller checks in its own tenant; in another only with
/// `permissions:check` through a global role, and only in a tenant that
/// exists.
async fn require_scope(app: &App, caller: &Principal, tenant_id: Uuid) -> Result<()> {
    if tenant_id == caller.tenant_id {
        return Ok(());
    }
    if !caller.holds_globally("permissions:check") {
        return Err(Error::PermissionDenied(
            "only a global caller may check in another tenant".into(),
        ));
    }
    match app.access.tenant(&app.db, TenantKey::Id(tenant_id)).await? {
        Some(_) => Ok(()),
        None => Err(Error::NotFound("tenant")),
    }
}

/// Answers a validated check in scope.
async fn evaluate(app: &App, check: &Check<'_>) -> Result<CheckOutcome> {
    let tenant_id = check.tenant_id;
    let denied = |user_id, reason| CheckOutcome {
        user_id,
        tenant_id,
        sources: Vec::new(),
        denial: Some(reason),
    };
    // The token's user, the tenant it was issued for and its generation.
    let (user_id, token) = match check.subject {
        Subject::User(id) => (id, None),
        Subject::Token(token) => {
            // Through the auth layer's cache of verified tokens.
            let verified = app
                .keys
                .verify_cached(token)
                .ok()
                .filter(|verified| verified.claims.kind == SubjectKind::User);
            let parsed = verified.and_then(|v| {
                let claims = &v.claims;
                Some((
                    claims.sub.parse::<Uuid>().ok()?,
                    claims.tid.parse::<Uuid>().ok()?,
                    claims.generation,
                ))
            });
            match parsed {
                Some((user_id, tid, generation)) => (user_id, Some((tid, generation))),
                None => return Ok(denied(None, DenialReason::InvalidToken)),
            }
        }
    };
    let mut access = app.access.user_access(&app.db, user_id, tenant_id).await?;
    if let Some((_, generation)) = token {
        // A token newer than the cached entry: see the auth layer.
        if generation > access.token_generation {
            access = app.access.reload_user_access(&app.db, user_id, tenant_id).await?;
        }
        // Revoked, as the auth layer refuses it (after an inactive user, and
        // before a temporary password or a suspended tenant).
        if access.active && generation != access.token_generation {
            return Ok(denied(None, DenialReason::InvalidToken));
        }
    }
    let token_tenant = token.map(|(tid, _)| tid);
    // As the auth layer: a user acts in its tenants, and in any tenant with a
    // global role; a token issued for another tenant needs a global role.
    let in_tenant = access.global || (access.member && token_tenant.is_none_or(|t| t == tenant_id));
    if !in_tenant {
        return Ok(denied(Some(user_id), DenialReason::UnknownSubject));
    }
    // As the auth layer again: a SUSPENDED tenant admits global users alone,
    // and a token whose own tenant was deleted is dead.
    let tenant_admits = |tenant: Option<&KnownTenant>| tenant.is_some_and(|t| access.global || !t.suspended);
    let mut admitted = tenant_admits(app.access.tenant(&app.db, TenantKey::Id(tenant_id)).await?.as_deref());
    if let Some(token_tenant) = token_tenant.filter(|t| *t != tenant_id) {
        admitted &= tenant_admits(
            app.access
                .tenant(&app.db, TenantKey::Id(token_tenant))
                .await?
                .as_deref(),
        );
    }
    if !access.active || access.password_change_required || !admitted {
        return Ok(denied(Some(user_id), DenialReason::InactiveSubject));
    }
    let sources = access.grants.sources(check.permission);
    if sources.is_empty() {
        return Ok(denied(Some(user_id), DenialReason::NotGranted));
    }
    Ok(CheckOutcome {
        user_id: Some(user_id),
        tenant_id,
        sources,
        denial: None,
    })
}

/// One check (CheckPermission).
pub async fn check(app: &App, caller: &Principal, request: &CheckRequest) -> Result<CheckOutcome> {
    let mut violations = Violations::new();
    let check = parse(&mut violations, "", caller, request);
    violations.finish()?;
    let check = check.ok_or_else(|| Error::invalid("subject", "is required"))?;
    require_scope(app, caller, check.tenant_id).await?;
    evaluate(app, &check).await
}

/// 1 to [`MAX_CHECKS`] checks (CheckPermissions), answered in order; an
/// invalid or out-of-scope check fails the whole call.
pub async fn check_all(app: &App, caller: &Principal, requests: &[CheckRequest]) -> Result<Vec<CheckOutcome>> {
    if requests.is_empty() {
        return Err(Error::invalid("checks", "at least one check is required"));
    }
    if requests.len() > MAX_CHECKS {
        return Err(Error::invalid("checks", format!("at most {MAX_CHECKS} checks a call")));
    }
    let mut violations = Violations::new();
    let checks: Vec<Option<Check>> = requests
        .iter()
        .enumerate()
        .map(|(i, request)| parse(&mut violations, &format!("checks[{i}]."), caller, request))
        .collect();
    violations.finish()?;
    let checks: Vec<Check> = checks.into_iter().flatten().collect();
    for check in &checks {
        require_scope(app, caller, check.tenant_id).await?;
    }
    let mut outcomes = Vec::with_capacity(checks.len());
    for check in &checks {
        outcomes.push(evaluate(app, check).await?);
    }
    Ok(outcomes)
}
