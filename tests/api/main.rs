//! Castellan's API tests: one binary, the real server per test (see helpers).

mod auth;
mod credentials;
mod grpcurl;
mod health;
mod helpers;
mod paging;
mod rest;
mod smtp_sink;
mod tenants;
mod users;
