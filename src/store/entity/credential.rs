//! The `credentials` table.

use sea_orm::entity::prelude::*;

/// A user's password, as an argon2id hash; at most one per user.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "credentials")]
pub struct Model {
    /// The user; also the primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// The argon2id password hash.
    pub password_hash: String,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// The owner of the password.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The user; deleting it deletes the password.
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
