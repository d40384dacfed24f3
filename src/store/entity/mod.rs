//! The sea-orm entities: one module a table of the schema that the
//! `migrations` crate creates, with the relations its foreign keys define.
//!
//! The migrations are the source of truth for the schema; these types only
//! mirror it (nothing creates tables from them).

pub mod audit_event;
pub mod credential;
pub mod device;
pub mod group;
pub mod group_member;
pub mod group_role;
pub mod idempotency_key;
pub mod invitation;
pub mod login_failure;
pub mod mail_outbox;
pub mod registered_permission;
pub mod role;
pub mod role_permission;
pub mod tenant;
pub mod tenant_membership;
pub mod user;
pub mod user_permission;
pub mod user_role;
