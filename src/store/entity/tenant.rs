//! The `tenants` table.

use sea_orm::entity::prelude::*;

/// A tenant: an organisation whose users, roles and groups are kept apart
/// from every other tenant's.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tenants")]
pub struct Model {
    /// The primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The display name.
    pub name: String,
    /// Unique across tenants (`uq_tenants_slug`).
    #[sea_orm(unique)]
    pub slug: String,
    /// `active` or `suspended`.
    pub status: String,
    /// The number of members, kept exact by the application.
    pub user_count: i64,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// What points at a tenant.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// Its memberships (and through them, its users).
    #[sea_orm(has_many = "super::tenant_membership::Entity")]
    TenantMembership,
    /// Its own roles (global roles have no tenant).
    #[sea_orm(has_many = "super::role::Entity")]
    Role,
    /// Its groups.
    #[sea_orm(has_many = "super::group::Entity")]
    Group,
    /// The permissions granted directly to users in it.
    #[sea_orm(has_many = "super::user_permission::Entity")]
    UserPermission,
    /// The invitations to join it.
    #[sea_orm(has_many = "super::invitation::Entity")]
    Invitation,
}

impl Related<super::tenant_membership::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::TenantMembership.def()
    }
}

impl Related<super::role::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Role.def()
    }
}

impl Related<super::group::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Group.def()
    }
}

impl Related<super::user_permission::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::UserPermission.def()
    }
}

impl Related<super::invitation::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Invitation.def()
    }
}

/// A tenant's members, through `tenant_memberships`.
impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        super::tenant_membership::Relation::User.def()
    }

    fn via() -> Option<RelationDef> {
        Some(super::tenant_membership::Relation::Tenant.def().rev())
    }
}

impl ActiveModelBehavior for ActiveModel {}
