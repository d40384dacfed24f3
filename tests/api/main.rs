//! Castellan's API tests: one binary, the real server per test (see helpers).

mod audit;
mod auth;
mod bench;
mod credentials;
mod devices;
mod groups;
mod grpcurl;
mod health;
mod helpers;
mod outage;
mod pages;
mod paging;
mod permissions;
mod processes;
mod rest;
mod roles;
mod smtp_sink;
mod tenants;
mod users;
