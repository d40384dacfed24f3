//! The `users` table.

use sea_orm::{ActiveValue::Set, entity::prelude::*};

/// A user: one identity, which can be a member of several tenants.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// The primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Stored lowercase; unique (`uq_users_email`).
    #[sea_orm(unique)]
    pub email: String,
    /// Unique (`uq_users_username`).
    #[sea_orm(unique)]
    pub username: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// `first_name` lowercased by the application (`str::to_lowercase`,
    /// Unicode), which ListUsers' `search` matches: SQLite folds ASCII only.
    pub first_name_lower: String,
    /// `last_name` lowercased likewise.
    pub last_name_lower: String,
    /// The user's image, if set.
    pub image: Option<String>,
    /// `active`, `inactive`, `pending` or `locked`.
    pub status: String,
    /// `None` means no limit.
    pub max_devices: Option<i32>,
    /// Whether the next sign-in must set a new password (a temporary one was given).
    pub password_change_required: bool,
    /// When the user last signed in, if ever.
    pub last_connection: Option<DateTimeUtc>,
    /// Which of the user's tokens still work: those issued at this
    /// generation (their `gen` claim). ResetUserPassword and DeactivateUser
    /// move it on.
    pub token_generation: i32,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// What points at a user.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// Its tenant memberships.
    #[sea_orm(has_many = "super::tenant_membership::Entity")]
    TenantMembership,
    /// Its direct role assignments.
    #[sea_orm(has_many = "super::user_role::Entity")]
    UserRole,
    /// Its group memberships.
    #[sea_orm(has_many = "super::group_member::Entity")]
    GroupMember,
    /// The permissions granted to it directly, per tenant.
    #[sea_orm(has_many = "super::user_permission::Entity")]
    UserPermission,
    /// Its devices.
    #[sea_orm(has_many = "super::device::Entity")]
    Device,
    /// Its password, if it has one.
    #[sea_orm(has_one = "super::credential::Entity")]
    Credential,
    /// Its invitations.
    #[sea_orm(has_many = "super::invitation::Entity")]
    Invitation,
}

impl Related<super::tenant_membership::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::TenantMembership.def()
    }
}

impl Related<super::user_role::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::UserRole.def()
    }
}

impl Related<super::group_member::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::GroupMember.def()
    }
}

impl Related<super::user_permission::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::UserPermission.def()
    }
}

impl Related<super::device::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Device.def()
    }
}

impl Related<super::credential::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Credential.def()
    }
}

impl Related<super::invitation::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Invitation.def()
    }
}

/// The tenants a user belongs to, through `tenant_memberships`.
impl Related<super::tenant::Entity> for Entity {
    fn to() -> RelationDef {
        super::tenant_membership::Relation::Tenant.def()
    }

    fn via() -> Option<RelationDef> {
        Some(super::tenant_membership::Relation::User.def().rev())
    }
}

/// A user's directly assigned roles, through `user_roles`.
impl Related<super::role::Entity> for Entity {
    fn to() -> RelationDef {
        super::user_role::Relation::Role.def()
    }

    fn via() -> Option<RelationDef> {
        Some(super::user_role::Relation::User.def().rev())
    }
}

/// The groups a user is a member of, through `group_members`.
impl Related<super::group::Entity> for Entity {
    fn to() -> RelationDef {
        super::group_member::Relation::Group.def()
    }

    fn via() -> Option<RelationDef> {
        Some(super::group_member::Relation::User.def().rev())
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl ActiveModel {
    /// Sets the given name and its lowercase copy.
    pub fn set_first_name(&mut self, first_name: String) {
        self.first_name_lower = Set(first_name.to_lowercase());
        self.first_name = Set(first_name);
    }

    /// Sets the family name and its lowercase copy.
    pub fn set_last_name(&mut self, last_name: String) {
        self.last_name_lower = Set(last_name.to_lowercase());
        self.last_name = Set(last_name);
    }
}
