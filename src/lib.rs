//! Castellan: a gRPC identity service. See README.md and proto/identity/v1.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)
)]

pub mod allocator;
pub mod app;
pub mod auth;
pub mod cache;
pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod mail;
pub mod pages;
pub mod pb;
pub mod rest;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod token_cli;
