//! The `roles` table.

use sea_orm::entity::prelude::*;

/// A role: a named set of permissions, either global (`tenant_id` is `None`,
/// valid in every tenant) or belonging to one tenant.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "roles")]
pub struct Model {
    /// The primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// `None` for a global role.
    pub tenant_id: Option<Uuid>,
    /// Unique per tenant (`uq_roles_tenant_id_name`) and among global roles
    /// (`idx_roles_global_name`).
    pub name: String,
    /// Free text; empty when not given.
    pub description: String,
    /// Starts at 1; +1 on every update.
    pub version: i32,
    /// The user who created the role, if known.
    pub created_by: Option<Uuid>,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// What a role belongs to and what points at it.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The owning tenant, for a tenant role; deleting it deletes the role.
    #[sea_orm(
        belongs_to = "super::tenant::Entity",
        from = "Column::TenantId",
        to = "super::tenant::Column::Id",
        on_delete = "Cascade"
    )]
    Tenant,
    /// Its permissions.
    #[sea_orm(has_many = "super::role_permission::Entity")]
    RolePermission,
    /// Its assignments to users.
    #[sea_orm(has_many = "super::user_role::Entity")]
    UserRole,
    /// Its assignments to groups.
    #[sea_orm(has_many = "super::group_role::Entity")]
    GroupRole,
}

impl Related<super::tenant::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Tenant.def()
    }
}

impl Related<super::role_permission::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::RolePermission.def()
    }
}

impl Related<super::user_role::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::UserRole.def()
    }
}

impl Related<super::group_role::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::GroupRole.def()
    }
}

/// The users holding a role directly, through `user_roles`.
impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        super::user_role::Relation::User.def()
    }

    fn via() -> Option<RelationDef> {
        Some(super::user_role::Relation::Role.def().rev())
    }
}

/// The groups holding a role, through `group_roles`.
impl Related<super::group::Entity> for Entity {
    fn to() -> RelationDef {
        super::group_role::Relation::Group.def()
    }

    fn via() -> Option<RelationDef> {
        Some(super::group_role::Relation::Role.def().rev())
    }
}

impl ActiveModelBehavior for ActiveModel {}
