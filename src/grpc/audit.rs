//! identity.v1.AuditService, and the tower layer that records refused
//! mutations.
//!
//! Committed changes are recorded by the domain in their own transaction
//! (`domain::audit::record`). A refused or failed mutation rolls back, so
//! [`RefusalLayer`], in front of the auth layer, records it after the answer:
//! for every mutating RPC answered with an error to a caller whose bearer
//! token verifies, one event with the gRPC code name as outcome, in the
//! tenant of the caller's token (never one it merely named with
//! `x-tenant-id`, so a refused caller cannot write into another tenant's
//! trail). Unauthenticated calls leave nothing: there is no actor to name.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tonic::{Code, Request, Response, Status};
use tower::{Layer, Service};
use uuid::Uuid;

use crate::{
    app::App,
    auth::{Call, Subject, layer::bearer_token, token::SubjectKind},
    domain::audit::{self, EventQuery, Origin},
    grpc::{
        convert::{self, list_response},
        principal,
        status::to_status,
    },
    pb::{self, audit_service_server::AuditService},
    telemetry::metrics::response_code,
};

pub struct AuditApi {
    pub app: Arc<App>,
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        let query = EventQuery {
            from: convert::time("from", r.from).map_err(to_status)?,
            to: convert::time("to", r.to).map_err(to_status)?,
            actor: r.actor,
            target: r.target,
            action: r.action,
            page: convert::page_request(r.limit, r.offset, r.page_token, r.sort),
        };
        let page = audit::list(&self.app, &caller, query).await.map_err(to_status)?;
        Ok(Response::new(list_response!(
            ListAuditEventsResponse { events },
            page,
            convert::audit_event
        )))
    }
}

/// The `google.rpc.Code` name of a code, as audit outcomes spell it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Who made a refused call: the subject and tenant of its bearer token, if
/// the token verifies. (The REST gateway records its refusals with it too.)
pub(crate) fn refused_origin(app: &App, token: &str, call: Call) -> Option<Origin> {
    let claims = app.keys.verify(token).ok()?;
    let subject = match claims.kind {
        SubjectKind::User => Subject::User(claims.sub.parse().ok()?),
        SubjectKind::Service => Subject::Service(claims.sub.clone()),
    };
    Some(Origin {
        actor: subject.actor(),
        tenant_id: claims.tid.parse::<Uuid>().ok(),
        call,
    })
}

/// Records refused mutations (see the module comment). Goes in front of the
/// auth layer, so refusals of the layer itself are recorded too.
#[derive(Clone)]
pub struct RefusalLayer {
    app: Arc<App>,
}

impl RefusalLayer {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

impl<S> Layer<S> for RefusalLayer {
    type Service = RecordRefusals<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordRefusals {
            inner,
            app: self.app.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RecordRefusals<S> {
    inner: S,
    app: Arc<App>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, R> Service<http::Request<B>> for RecordRefusals<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone that was polled ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let app = self.app.clone();
        let path = request.uri().path();
        let refusal = pb::rule_for(path)
            .filter(|rule| !rule.public && audit::is_mutation(rule.rpc))
            .and_then(|rule| {
                let token = bearer_token(request.headers())?.to_owned();
                Some((token, Call::new(rule.rpc, request.headers())))
            });
        Box::pin(async move {
            let response = inner.call(request).await?;
            let code = response_code(&response);
            if code != Code::Ok
                && let Some((token, call)) = refusal
                && let Some(origin) = refused_origin(&app, &token, call)
            {
                audit::record_refusal(&app, origin, code_name(code)).await;
            }
            Ok(response)
        })
    }
}
