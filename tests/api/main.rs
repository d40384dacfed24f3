//! Castellan's API tests: one binary, the real server per test (see helpers).

mod auth;
mod groups;
mod grpcurl;
mod health;
mod helpers;
mod paging;
mod roles;
mod tenants;
mod users;
