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

/// The tenant an `x-tenant-id` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Requested {
    /// No header, or the token's own tenant.
    TokenTenant,
    Other(Uuid),
    /// A key that names no tenant.
    Unknown,
}

/// The caller, and whether it must change its password before anything else.
async fn principal_for(
    app: &App,
    verified: &VerifiedToken,
    tenant_header: Option<&http::HeaderValue>,
) -> Result<(Principal, bool)> {
    let claims = &verified.claims;
    let invalid = || Error::Unauthenticated(AuthFailure::Invalid);
    let token_tenant: Uuid = claims.tid.parse().map_err(|_| invalid())?;
    // A token for a tenant that no longer exists is dead, whoever holds it
    // (a global caller too) and whatever tenant it names.
    if app.access.tenant_id(&app.db, &claims.tid).await?.is_none() {
        return Err(Error::Unauthenticated(AuthFailure::SubjectInactive));
    }
    let requested = match tenant_header {
        None => Requested::TokenTenant,
        Some(value) => {
            let key = value
                .to_str()
                .map_err(|_| Error::invalid(TENANT_HEADER, "must be a tenant id or slug"))?
                .trim();
            match app.access.tenant_id(&app.db, key).await? {
                Some(id) if id == token_tenant => Requested::TokenTenant,
                Some(id) => Requested::Other(id),
                None => Requested::Unknown,
            }
        }
    };
    // An unknown tenant is NOT_FOUND only to a caller who may name tenants
    // and is still valid: to others it answers as a known one does, so no
    // token, dead or alive, tells which tenants exist.
    let tenant_id = match requested {
        Requested::Other(id) => id,
        Requested::TokenTenant | Requested::Unknown => token_tenant,
    };
    let crosses = requested != Requested::TokenTenant;
    match claims.kind {
        SubjectKind::Service => {
            if crosses && !claims.global {
                return Err(Error::PermissionDenied(format!("{TENANT_HEADER} needs a global token")));
            }
            if requested == Requested::Unknown {
                return Err(Error::NotFound("tenant"));
            }
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
            let access = app.access.user_access(&app.db, user_id, tenant_id).await?;
            if !access.active {
                return Err(Error::Unauthenticated(AuthFailure::SubjectInactive));
            }
            if crosses && !access.global {
                return Err(Error::PermissionDenied(format!("{TENANT_HEADER} needs a global role")));
            }
            if requested == Requested::Unknown {
                return Err(Error::NotFound("tenant"));
            }
            if !access.member && !access.global {
                return Err(Error::Unauthenticated(AuthFailure::SubjectInactive));
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
