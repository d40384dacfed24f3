//! The OpenAPI 3.1 document of the gateway, generated with utoipa from the
//! handlers' `#[utoipa::path]` and the request and response types; served at
//! `GET /openapi.json`. Every operation needs the bearer token and may
//! answer the errors of API.md's table, added here once.

use utoipa::{
    Modify, OpenApi,
    openapi::{
        ContentBuilder, Ref, ResponseBuilder,
        header::{Header, HeaderBuilder},
        path::{Operation, PathItem},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::rest::error::{ErrorBody, FieldViolationBody};

/// Name of the security scheme.
pub const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Castellan REST gateway",
        description = "Both seed dialects over Castellan's identity domain: seed 002 under /auth and \
                       Cipherscale under /tenants. Same permissions as the gRPC API; send \
                       `Authorization: Bearer <token>`, and `x-tenant-id` to act in another tenant \
                       with a global role.",
    ),
    components(schemas(ErrorBody, FieldViolationBody)),
    security(("bearer" = [])),
    modifiers(&Security),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The error statuses every route may answer.
const ERRORS: &[(&str, &str)] = &[
    ("400", "Malformed input; `details` names the fields"),
    ("401", "Missing, invalid or expired token; see WWW-Authenticate"),
    ("403", "Permission missing"),
    ("404", "Unknown id, or a resource of another tenant"),
    ("409", "Duplicate (e-mail, user name...)"),
    ("412", "A rule refuses the change"),
    ("413", "Request body larger than 1 MiB"),
    ("429", "Throttled; see Retry-After"),
    ("500", "Internal error"),
    ("503", "Storage unavailable"),
];

/// The error of an operation with a body whose `Content-Type` is not JSON.
const NOT_JSON: (&str, &str) = (
    "415",
    "The body is not JSON by its Content-Type (application/json or a +json type)",
);

/// Adds the error answers to every operation (415 to those with a body);
/// called once the routes are merged in (a modifier of [`ApiDoc`] would run
/// before there are any).
pub fn add_error_responses(openapi: &mut utoipa::openapi::OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        for operation in operations(item) {
            let with_body = operation.request_body.is_some().then_some(&NOT_JSON);
            for (status, description) in ERRORS.iter().chain(with_body) {
                let mut response = ResponseBuilder::new().description(*description).content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                );
                if *status == "401" {
                    response = response.header("WWW-Authenticate", challenge_header());
                }
                operation
                    .responses
                    .responses
                    .entry((*status).to_owned())
                    .or_insert_with(|| response.into());
            }
        }
    }
}

/// The `WWW-Authenticate` header of a 401.
fn challenge_header() -> Header {
    HeaderBuilder::new()
        .description(Some(
            "`Bearer`, with `error=\"invalid_token\"` when the token sent was refused (RFC 6750)",
        ))
        .build()
}

/// The operations of a path, with their HTTP methods.
pub fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}
