//! Castellan: a gRPC identity service. See README.md and proto/identity/v1.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)
)]

/// Implements `Debug` showing only the fields named: the others (a
/// password, a token) never reach a log line or an error through it.
macro_rules! debug_without_secrets {
    ($type:ident { $($field:ident),* $(,)? }) => {
        impl std::fmt::Debug for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($type))
                    $(.field(stringify!($field), &self.$field))*
                    .finish_non_exhaustive()
            }
        }
    };
}

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
