//! The `devices` table.

use sea_orm::entity::prelude::*;

/// A device registered by a user, with its last reported security posture.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "devices")]
pub struct Model {
    /// The primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The owner.
    pub user_id: Uuid,
    /// The display name.
    pub name: String,
    /// The platform, as reported.
    pub platform: String,
    /// The operating system version as reported.
    pub os_version: String,
    /// `active` or `revoked`.
    pub status: String,
    /// Whether the device is connected now.
    pub connected: bool,
    /// When the device last connected, if ever.
    pub last_connection: Option<DateTimeUtc>,
    /// Posture: the disk is encrypted.
    pub disk_encrypted: bool,
    /// Posture: the firewall is on.
    pub firewall_enabled: bool,
    /// Posture: the screen locks.
    pub screen_lock_enabled: bool,
    /// Posture: the operating system is up to date.
    pub os_up_to_date: bool,
    /// When the device was registered.
    pub registered_at: DateTimeUtc,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// The owner of the device.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The user; deleting it deletes the device.
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::UserId",
        to = "super::user::Column::Id",
        on_delete = "Cascade"
    )]
    User,
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
