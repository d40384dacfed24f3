//! The `invitations` table.

use sea_orm::entity::prelude::*;

/// An invitation for a user to set a password and join a tenant. Only the
/// hash of its token is stored.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invitations")]
pub struct Model {
    /// The primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The invited user.
    pub user_id: Uuid,
    /// The tenant the user is invited to.
    pub tenant_id: Uuid,
    /// Unique (`uq_invitations_token_hash`).
    #[sea_orm(unique)]
    pub token_hash: String,
    /// After this, the invitation no longer works.
    pub expires_at: DateTimeUtc,
    /// When the invitation was used, if it was.
    pub accepted_at: Option<DateTimeUtc>,
    /// When the row was created.
    pub created_at: DateTimeUtc,
}

/// Whom the invitation is for and where to.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The invited user; deleting it deletes the invitation.
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::UserId",
        to = "super::user::Column::Id",
        on_delete = "Cascade"
    )]
    User,
    /// The tenant; deleting it deletes the invitation.
    #[sea_orm(
        belongs_to = "super::tenant::Entity",
        from = "Column::TenantId",
        to = "super::tenant::Column::Id",
        on_delete = "Cascade"
    )]
    Tenant,
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl Related<super::tenant::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Tenant.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
