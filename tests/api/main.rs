//! Castellan's API tests: one binary, the real server per test (see helpers).

mod auth;
mod devices;
mod grpcurl;
mod health;
mod helpers;
mod paging;
mod tenants;
mod users;
