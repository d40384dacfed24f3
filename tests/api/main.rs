//! Castellan's API tests: one binary, the real server per test (see helpers).

mod auth;
mod bench;
mod credentials;
mod devices;
mod groups;
mod grpcurl;
mod health;
mod helpers;
mod paging;
mod processes;
mod rest;
mod roles;
mod smtp_sink;
mod tenants;
mod users;
