//! The REST gateway: both seed dialects (seed 002 under `/auth/...`,
//! Cipherscale under `/tenants/...`) as thin handlers over the same domain
//! operations as gRPC, authorized with the rule of each route's gRPC twin,
//! and the OpenAPI 3.1 document generated from the same types and routes.
//!
//! Every handler decodes (with the helpers here, which name the offending
//! field), calls one domain operation, and encodes; errors go out through
//! [`error::RestError`].
//!
//! A refused or failed mutation is recorded in the audit trail as on the
//! gRPC edge: [`caller`] notes the mutation being authorized, and
//! [`record_refusals`] records it, with its twin's gRPC code as outcome, once
//! the handler has answered an error.

pub mod cipherscale;
pub mod error;
pub mod openapi;
pub mod seed002;

use std::{cell::Cell, convert::Infallible, sync::Arc};

use axum::{
    Router,
    body::Bytes,
    extract::{
        DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State, path::ErrorKind,
        rejection::PathRejection,
    },
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::de::DeserializeOwned;
use tower::ServiceBuilder;
use tower_http::{catch_panic::CatchPanicLayer, set_header::SetResponseHeaderLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::{
    app::App,
    auth::{
        Call, Principal,
        layer::{authorize, bearer_token},
    },
    domain::audit,
    error::{AuthFailure, Error},
    grpc::audit::{code_name, refused_origin},
    pb,
};

use self::error::{ErrorCode, RestError};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The result of a REST handler.
pub type RestResult<T> = Result<T, RestError>;

/// Every documented route, with its OpenAPI description.
fn api() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(seed002::routes())
        .merge(cipherscale::routes())
}

/// The routes and their OpenAPI document.
fn parts() -> (Router<Arc<App>>, utoipa::openapi::OpenApi) {
    let (routes, mut document) = api().split_for_parts();
    openapi::add_error_responses(&mut document);
    (routes, document)
}

/// The OpenAPI document of the gateway.
pub fn openapi() -> utoipa::openapi::OpenApi {
    parts().1
}

/// The gateway's routes, `/openapi.json` included, with the body limit, a
/// panic guard, a JSON 404 for unknown paths and a JSON 405 (with `Allow`)
/// for a method a path does not have. Every answer, errors and panics
/// included, is `Cache-Control: no-store` (users, tokens' subjects and
/// permissions are no cache's business) and `X-Content-Type-Options:
/// nosniff` (JSON is never to be read as anything else).
pub fn router(app: Arc<App>) -> Router {
    let (routes, document) = parts();
    // Serialized once, and the tree dropped: as JSON the document is a tenth
    // of the memory its maps of boxed schemas take.
    let document: Option<Bytes> = serde_json::to_vec(&document)
        .map(Bytes::from)
        .inspect_err(|error| tracing::error!(%error, "the OpenAPI document does not serialize"))
        .ok();
    routes
        .route(
            "/openapi.json",
            get(move || {
                let document = document.clone();
                async move {
                    match document {
                        Some(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
                        None => {
                            RestError::from(Error::internal("the OpenAPI document does not serialize")).into_response()
                        }
                    }
                }
            }),
        )
        // After the last route: it applies to the routes added before it.
        .method_not_allowed_fallback(|| async { RestError::method_not_allowed() })
        .fallback(|| async { RestError::from(Error::NotFound("route")) })
        .layer(middleware::from_fn_with_state(app.clone(), record_refusals))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(
            ServiceBuilder::new()
                .layer(SetResponseHeaderLayer::overriding(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                )),
        )
        .with_state(app)
}

tokio::task_local! {
    /// The mutation the REST call in progress is for, once [`caller`] has
    /// seen it: what [`record_refusals`] records if the call ends in an error.
    static MUTATION: Cell<Option<Call>>;
}

/// Records a refused or failed mutation in the audit trail, as
/// `grpc::audit::RefusalLayer` does for gRPC: the call [`caller`] noted, the
/// gRPC code of the error answered, the actor and tenant of the caller's
/// verified token (a call without a valid token leaves nothing).
async fn record_refusals(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let token = bearer_token(request.headers()).map(str::to_owned);
    let (response, mutation) = MUTATION
        .scope(Cell::new(None), async {
            let response = next.run(request).await;
            (response, MUTATION.with(Cell::take))
        })
        .await;
    if let (Some(&ErrorCode(code)), Some(call), Some(token)) =
        (response.extensions().get::<ErrorCode>(), mutation, token)
        && let Some(origin) = refused_origin(&app, &token, call)
    {
        audit::record_refusal(&app, origin, code_name(code)).await;
    }
    response
}

/// Authenticates and authorizes a REST call with the rule of its gRPC twin
/// (`/identity.v1.UserService/GetUser`), so the permissions come from the
/// proto like everywhere else.
pub async fn caller(app: &App, headers: &HeaderMap, rpc: &str) -> Result<Principal, RestError> {
    let rule = pb::rule_for(rpc).ok_or_else(|| Error::internal(format!("no auth rule for {rpc}")))?;
    if !rule.public && audit::is_mutation(rule.rpc) {
        // Outside the gateway's router there is no call to note.
        let _ = MUTATION.try_with(|mutation| mutation.set(Some(Call::new(rule.rpc, headers))));
    }
    authorize(app, headers, rpc, rule)
        .await?
        .ok_or(RestError::from(Error::Unauthenticated(AuthFailure::Missing)))
}

/// Header carrying a create's idempotency key (the gRPC `request_id`): a
/// retry with the same key and body returns the first result.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The request's idempotency key; empty when absent.
pub fn request_id(headers: &HeaderMap) -> Result<&str, RestError> {
    match headers.get(IDEMPOTENCY_KEY) {
        None => Ok(""),
        Some(value) => value
            .to_str()
            .map_err(|_| Error::invalid(IDEMPOTENCY_KEY, "must be visible ASCII").into()),
    }
}

/// A route's path parameters (`{locator}`, `{id}`, `{groupId}`), decoded as
/// axum's [`Path`] decodes them but answered through [`RestError`], and only
/// when the handler asks, after [`caller`]: an anonymous caller gets 401
/// whatever the path holds, and a refused mutation is audited. A parameter
/// that is not UTF-8 once percent-decoded (`%FF`) is a 400 naming it by its
/// name in the route, which is the dialect's name for it.
pub struct PathParams<T>(Result<T, RestError>);

impl<T, S> FromRequestParts<S> for PathParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = Path::<T>::from_request_parts(parts, state).await;
        Ok(Self(params.map(|Path(params)| params).map_err(path_error)))
    }
}

impl<T> PathParams<T> {
    /// The parameters, or the error naming the one that cannot be decoded.
    pub fn get(self) -> Result<T, RestError> {
        self.0
    }
}

/// A path parameter that cannot be decoded: 400 naming it; anything else
/// means a route and its handler disagree, an internal error.
fn path_error(rejection: PathRejection) -> RestError {
    if let PathRejection::FailedToDeserializePathParams(failure) = &rejection
        && let ErrorKind::InvalidUtf8InPathParam { key } = failure.kind()
    {
        return Error::invalid(key.as_str(), "must be UTF-8 once percent-decoded").into();
    }
    Error::internal(format!("path parameters: {}", rejection.body_text())).into()
}

/// A request body, read up to [`MAX_BODY_BYTES`] (413 beyond) and decoded
/// only after the caller is authorized, so an anonymous caller gets 401
/// whatever it sends: a body that is not JSON by its `Content-Type` is
/// refused (415) then too.
pub struct Body {
    bytes: Bytes,
    /// Whether the `Content-Type` says JSON (see [`is_json`]).
    json: bool,
}

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = RestError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(request.headers());
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => RestError::too_large(MAX_BODY_BYTES),
                status => RestError::unreadable_body(status),
            })?;
        Ok(Body { bytes, json })
    }
}

/// Whether a `Content-Type` is JSON: `application/json` whatever its
/// parameters (`; charset=utf-8`), or a `+json` type
/// (`application/merge-patch+json`).
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl Body {
    /// Whether the first non-blank byte is `byte` (`[` for a JSON array).
    pub fn starts_with(&self, byte: u8) -> bool {
        self.bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&byte)
    }

    /// The body as JSON; errors name the offending field (see [`decode_json`]).
    /// A body that is there but not JSON by its `Content-Type` is 415; an
    /// empty one is decoded, so it is the 400 of a missing body whatever its
    /// type.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, RestError> {
        if !self.json && !self.bytes.is_empty() {
            return Err(RestError::unsupported_media_type());
        }
        decode_json(&self.bytes)
    }
}

/// Decodes JSON, naming the path of the first offending value: 400 for
/// malformed JSON, wrong types, missing fields, unknown fields (the request
/// types deny them, so a misspelt field is refused rather than ignored) and
/// unknown enum values.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RestError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        // Missing fields are reported at their parent: name the field itself.
        // An unknown field's path already ends with it (its key is read
        // before serde refuses it).
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match (path.as_str(), missing) {
            (".", Some(name)) => name.to_owned(),
            (".", None) => "body".to_owned(),
            (parent, Some(name)) => format!("{parent}.{name}"),
            (path, None) => path.to_owned(),
        };
        let description = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("malformed JSON: {message}")
            }
            _ => strip_position(&message),
        };
        RestError::from(Error::invalid(field, description))
    })?;
    deserializer
        .end()
        .map_err(|e| RestError::from(Error::invalid("body", format!("malformed JSON: {e}"))))?;
    Ok(value)
}

/// serde_json's "at line 1 column 9" suffix says nothing to an API client.
fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// A query string as (name, value) pairs, so repeated parameters
/// (`sort=a&sort=b`) work and a bad value is reported with its name.
pub struct QueryPairs(Vec<(String, String)>);

impl QueryPairs {
    pub fn parse(query: Option<&str>) -> Result<Self, RestError> {
        serde_urlencoded::from_str(query.unwrap_or_default())
            .map(Self)
            .map_err(|e| RestError::from(Error::invalid("query", e.to_string())))
    }

    fn last(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// An integer parameter; `None` when absent (or empty).
    pub fn int(&self, name: &str) -> Result<Option<i32>, RestError> {
        match self.last(name) {
            None | Some("") => Ok(None),
            Some(value) => value
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| RestError::from(Error::invalid(name, "must be an integer"))),
        }
    }

    /// An offset parameter: 0 when absent.
    pub fn offset(&self, name: &str) -> Result<i32, RestError> {
        Ok(self.int(name)?.unwrap_or(0))
    }

    /// A page size parameter (`limit`, `count`) for the domain's
    /// [`PageRequest`](crate::domain::paging::PageRequest): absent is 0, the
    /// domain's "default"; 0 sent is out of range (API.md's Paging), said
    /// here because only REST can tell it from absent. The domain checks
    /// the other bounds.
    pub fn limit(&self, name: &str) -> Result<i32, RestError> {
        match self.int(name)? {
            None => Ok(0),
            Some(0) => Err(Error::invalid(name, "must be at least 1 (leave it out for the default)").into()),
            Some(limit) => Ok(limit),
        }
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, RestError> {
        match self.last(name) {
            None | Some("") => Ok(None),
            Some(value) => match value.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(Error::invalid(name, "must be true or false").into()),
            },
        }
    }

    pub fn text(&self, name: &str) -> String {
        self.last(name).unwrap_or_default().to_owned()
    }

    /// Every value of a repeated parameter, each also split at commas.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`)
/// or a value (`Some(Some(v))`): for PATCH fields where `null` clears.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code)]
    struct Draft {
        email: String,
        max_devices: Option<i32>,
    }

    fn field_of(json: &str) -> String {
        match decode_json::<Vec<Draft>>(json.as_bytes()) {
            Err(error) => match error.error() {
                Error::Invalid(violations) => violations[0].field.clone(),
                other => panic!("unexpected {other:?}"),
            },
            Ok(_) => panic!("{json} decoded"),
        }
    }

    #[test]
    fn decoding_errors_name_the_field() {
        for (json, field) in [
            (
                r#"[{"email":"a@b.c"},{"email":"x","maxDevices":"many"}]"#,
                "[1].maxDevices",
            ),
            (r#"[{"maxDevices":1}]"#, "[0].email"),
            (r#"[{"email":"a@b.c"},{"email":"x","maxdevices":1}]"#, "[1].maxdevices"),
            (r#"[{"email":"a@b.c"}"#, "body"),
            (r#"{"email":"a@b.c"}"#, "body"),
            (r#"[] []"#, "body"),
        ] {
            assert_eq!(field_of(json), field, "{json}");
        }
    }

    #[test]
    fn json_content_types() {
        for (content_type, json) in [
            (Some("application/json"), true),
            (Some("application/json; charset=utf-8"), true),
            (Some("Application/JSON ; charset=UTF-8"), true),
            (Some("application/merge-patch+json"), true),
            (Some("application/problem+json; charset=utf-8"), true),
            (Some("text/plain"), false),
            (Some("application/x-www-form-urlencoded"), false),
            (Some("text/json+xml"), false),
            (Some("application/jsonp"), false),
            (None, false),
        ] {
            let mut headers = HeaderMap::new();
            if let Some(value) = content_type {
                headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            }
            assert_eq!(is_json(&headers), json, "{content_type:?}");
        }
    }

    /// A body the client breaks off answers the rejection's own status,
    /// not 413 (which is for bodies over the limit).
    #[tokio::test]
    async fn a_body_broken_off_is_not_too_large() {
        use axum::response::IntoResponse;

        let broken = tokio_stream::once(Err::<Bytes, _>(std::io::Error::other("connection reset")));
        let request = Request::builder()
            .method("POST")
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from_stream(broken))
            .unwrap();
        let Err(error) = Body::from_request(request, &()).await else {
            panic!("a broken body was read");
        };
        assert_eq!(error.into_response().status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn query_lists_split_repeats_and_commas() {
        let query = QueryPairs::parse(Some("sort=-createdAt,email&sort=lastName&limit=5")).unwrap();
        assert_eq!(query.list("sort"), ["-createdAt", "email", "lastName"]);
        assert_eq!(query.int("limit").unwrap(), Some(5));
        assert_eq!(query.int("offset").unwrap(), None);
        let bad = QueryPairs::parse(Some("limit=ten")).unwrap();
        assert!(bad.int("limit").is_err());
    }

    #[test]
    fn a_page_size_of_zero_is_refused_and_absent_is_the_default() {
        let query = QueryPairs::parse(Some("count=0&limit=&offset=0")).unwrap();
        match query.limit("count").map_err(|e| e.error().to_string()) {
            Err(message) => assert!(message.contains("count"), "{message}"),
            Ok(limit) => panic!("count=0 gave {limit}"),
        }
        assert_eq!(query.limit("limit").unwrap(), 0, "empty is absent");
        assert_eq!(query.limit("size").unwrap(), 0, "absent is the domain's default");
        assert_eq!(query.offset("offset").unwrap(), 0);
    }
}
