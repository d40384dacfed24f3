//! Castellan's API tests: one binary, the real server per test (see helpers).

mod auth;
mod grpcurl;
mod health;
mod helpers;
mod paging;
mod tenants;
mod users;
