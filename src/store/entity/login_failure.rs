//! The `login_failures` table.

use sea_orm::entity::prelude::*;

/// The failed sign-in attempts counted against one key (`user:<id>` or
/// `ip:<addr>`) in the current window, and the lockout they caused.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "login_failures")]
pub struct Model {
    /// What the failures count against: `user:<id>` or `ip:<addr>`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Failures in the current window.
    pub failures: i32,
    /// When the current window began.
    pub window_started_at: DateTimeUtc,
    /// Until when sign-in is refused, if locked.
    pub locked_until: Option<DateTimeUtc>,
    /// Consecutive lockouts; each doubles the next wait. Reset by a success.
    pub lockouts: i32,
}

/// A login failure relates to nothing else.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
