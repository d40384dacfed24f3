//! The tower layer in front of every gRPC service. It reads the call's path,
//! finds the rule generated from the RPC's `(identity.v1.auth)` option,
//! authenticates the bearer token, resolves the tenant in context and the
//! caller's permissions, and either refuses the call or inserts a
//! [`Principal`] into the request extensions. Health and reflection are
//! exempt by name.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::HeaderMap;
use tower::{Layer, Service};
use uuid::Uuid;

use crate::{
    app::App,
    auth::{
        Authorization, Call, Principal, Subject,
        access::TenantKey,
        token::{SubjectKind, VerifiedToken},
    },
    error::{AuthFailure, Error, Result},
    grpc::status::to_status,
    pb::{self, RpcRule},
};

/// Paths that never need a token.
const EXEMPT_PREFIXES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.",
    "/grpc.reflection.v1alpha.",
];

/// Metadata naming another tenant (callers holding a global role only).
pub const TENANT_HEADER: &str = "x-tenant-id";

#[derive(Clone)]
pub struct AuthLayer {
    app: Arc<App>,
}

impl AuthLayer {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            app: self.app.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    app: Arc<App>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was polled ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let app = self.app.clone();
        Box::pin(async move {
            let path = request.uri().path();
            if EXEMPT_PREFIXES.iter().any(|prefix| path.starts_with(prefix)) {
                return inner.call(request).await;
            }
            // Unknown paths fall through to the router, which answers UNIMPLEMENTED.
            let Some(rule) = pb::rule_for(path) else {
                return inner.call(request).await;
            };
            match authorize(&app, request.headers(), path, rule).await {
                Ok(Some(principal)) => {
                    request.extensions_mut().insert(principal);
                    inner.call(request).await
                }
                Ok(None) => inner.call(request).await,
                Err(error) => Ok(to_status(error).into_http()),
            }
        })
    }
}

/// RPCs a user whose password must be changed may still call.
const ALLOWED_BEFORE_PASSWORD_CHANGE: &[&str] = &[
    "/identity.v1.AuthService/ChangePassword",
    "/identity.v1.UserService/WhoAmI",
];

/// Authenticates and authorizes one call of `path` against `rule`. `None` for
/// public RPCs.
pub async fn authorize(app: &App, headers: &HeaderMap, path: &str, rule: &RpcRule) -> Result<Option<Principal>> {
    if rule.public {
        return Ok(None);
    }
    let token = bearer_token(headers).ok_or(Error::Unauthenticated(AuthFailure::Missing))?;
    let verified = app.keys.verify_cached(token)?;
    let (mut principal, password_change_required) = principal_for(app, &verified, headers.get(TENANT_HEADER)).await?;
    principal.call = Call::new(rule.rpc, headers);
    if password_change_required && !ALLOWED_BEFORE_PASSWORD_CHANGE.contains(&path) {
        return Err(Error::PasswordChangeRequired);
    }
    if rule.permission.is_empty() || principal.holds(rule.permission) {
        principal.authorization = Authorization::Granted;
    } else if rule.allow_self && principal.user_id().is_some() {
        principal.authorization = Authorization::SelfOnly;
    } else {
        return Err(Error::PermissionDenied(format!(
            "permission {} missing",
            rule.permission
        )));
    }
    Ok(Some(principal))
}

pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The caller, and whether it must change its password before anything else.
///
/// The order is the point. An `x-tenant-id` that cannot name a tenant is
/// refused before anything is looked up, and one naming another tenant is
/// refused to a caller that may not choose its tenant before the header is
/// looked up: only a global caller's header, at most 63 bytes, is ever a
/// cache key or a query. The token's own tenant is read first (from the
/// cache, by the token's `tid`): gone, every token for it is dead, a global
/// one too; suspended, it admits global callers alone (they may reactivate
/// it). An unknown tenant in the header is NOT_FOUND only to a caller who
/// may name tenants and is still valid: to others it answers as a known one
/// does, so no token, dead or alive, tells which tenants exist.
async fn principal_for(
    app: &App,
    verified: &VerifiedToken,
    tenant_header: Option<&http::HeaderValue>,
) -> Result<(Principal, bool)> {
    let claims = &verified.claims;
    let invalid = || Error::Unauthenticated(AuthFailure::Invalid);
    let inactive = || Error::Unauthenticated(AuthFailure::SubjectInactive);
    let token_tenant: Uuid = claims.tid.parse().map_err(|_| invalid())?;
    let requested = tenant_header.map(requested_tenant).transpose()?;
    let home = app
        .access
        .tenant(&app.db, TenantKey::Id(token_tenant))
        .await?
        .ok_or_else(inactive)?;
    // The header, unless it names the token's own tenant.
    let other = requested.filter(|key| !home.is_named_by(*key));
    match claims.kind {
        SubjectKind::Service => {
            if other.is_some() && !claims.global {
                return Err(Error::PermissionDenied(format!("{TENANT_HEADER} needs a global token")));
            }
            if home.suspended && !claims.global {
                return Err(inactive());
            }
            let tenant_id = match other {
                Some(key) => named_tenant(app, key).await?,
                None => token_tenant,
            };
            let principal = Principal {
                subject: Subject::Service(claims.sub.clone()),
                tenant_id,
                permissions: verified.permissions.clone(),
                global: claims.global,
                global_permissions: if claims.global {
                    verified.permissions.clone()
                } else {
                    Arc::default()
                },
                authorization: Authorization::Granted,
                call: Call::default(),
            };
            Ok((principal, false))
        }
        SubjectKind::User => {
            let user_id: Uuid = claims.sub.parse().map_err(|_| invalid())?;
            // Whether the user is active and global does not depend on the
            // tenant: its access in the token's tenant tells, before the
            // header is looked up.
            let mut access = app.access.user_access(&app.db, user_id, token_tenant).await?;
            if claims.generation > access.token_generation {
                access = app.access.reload_user_access(&app.db, user_id, token_tenant).await?;
            }
            if !access.active {
                return Err(inactive());
            }
            if claims.generation != access.token_generation {
                return Err(Error::Unauthenticated(AuthFailure::Revoked));
            }
            if other.is_some() && !access.global {
                return Err(Error::PermissionDenied(format!("{TENANT_HEADER} needs a global role")));
            }
            let tenant_id = match other {
                Some(key) => {
                    let tenant_id = named_tenant(app, key).await?;
                    access = app.access.user_access(&app.db, user_id, tenant_id).await?;
                    tenant_id
                }
                None => token_tenant,
            };
            if !access.global && (!access.member || home.suspended) {
                return Err(inactive());
            }
            let principal = Principal {
                subject: Subject::User(user_id),
                tenant_id,
                permissions: access.permissions.clone(),
                global: access.global,
                global_permissions: access.global_permissions.clone(),
                authorization: Authorization::Granted,
                call: Call::default(),
            };
            Ok((principal, access.password_change_required))
        }
    }
}

/// The id of the tenant a global caller's header names, or NOT_FOUND.
async fn named_tenant(app: &App, key: TenantKey<'_>) -> Result<Uuid> {
    match app.access.tenant(&app.db, key).await? {
        Some(tenant) => Ok(tenant.id),
        None => Err(Error::NotFound("tenant")),
    }
}

/// The tenant an `x-tenant-id` value names: INVALID_ARGUMENT, before any
/// lookup, for a value that is neither a tenant id nor a slug.
fn requested_tenant(value: &http::HeaderValue) -> Result<TenantKey<'_>> {
    value
        .to_str()
        .ok()
        .and_then(|text| TenantKey::parse(text.trim()))
        .ok_or_else(|| Error::invalid(TENANT_HEADER, "must be a tenant id or slug"))
}
