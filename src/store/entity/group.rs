//! The `groups` table.

use sea_orm::entity::prelude::*;

/// A group of users in one tenant; its members inherit its roles.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "groups")]
pub struct Model {
    /// The primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The tenant the group belongs to.
    pub tenant_id: Uuid,
    /// Unique per tenant (`uq_groups_tenant_id_name`).
    pub name: String,
    /// Free text; empty when not given.
    pub description: String,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// What a group belongs to and what points at it.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The tenant; deleting it deletes the group.
    #[sea_orm(
        belongs_to = "super::tenant::Entity",
        from = "Column::TenantId",
        to = "super::tenant::Column::Id",
        on_delete = "Cascade"
    )]
    Tenant,
    /// Its role assignments.
    #[sea_orm(has_many = "super::group_role::Entity")]
    GroupRole,
    /// Its memberships.
    #[sea_orm(has_many = "super::group_member::Entity")]
    GroupMember,
}

impl Related<super::tenant::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Tenant.def()
    }
}

impl Related<super::group_role::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::GroupRole.def()
    }
}

impl Related<super::group_member::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::GroupMember.def()
    }
}

/// A group's roles, through `group_roles`.
impl Related<super::role::Entity> for Entity {
    fn to() -> RelationDef {
        super::group_role::Relation::Role.def()
    }

    fn via() -> Option<RelationDef> {
        Some(super::group_role::Relation::Group.def().rev())
    }
}

/// A group's members, through `group_members`.
impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        super::group_member::Relation::User.def()
    }

    fn via() -> Option<RelationDef> {
        Some(super::group_member::Relation::Group.def().rev())
    }
}

impl ActiveModelBehavior for ActiveModel {}
