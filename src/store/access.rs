//! Queries behind authorization: a user's state in a tenant and its
//! effective grants (direct ∪ roles ∪ group roles), each with its source.

use sea_orm::{
    ConnectionTrait, FromQueryResult,
    sea_query::{Condition, Expr, ExprTrait, Query, SelectStatement, UnionType},
};
use uuid::Uuid;

use crate::{
    error::Result,
    store::entity::{
        group, group_member, group_role, role, role_permission, tenant_membership, user, user_permission, user_role,
    },
};

/// Where a grant comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GrantSource {
    Direct,
    Role(Uuid),
    Group { group_id: Uuid, role_id: Uuid },
}

/// One permission granted to a user in a tenant, with its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub permission: String,
    pub source: GrantSource,
}

/// A user's standing in one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserState {
    pub active: bool,
    pub member: bool,
    pub has_global_role: bool,
    pub password_change_required: bool,
}

#[derive(Debug, FromQueryResult)]
struct UserStateRow {
    status: String,
    password_change_required: bool,
    member: bool,
    has_global_role: bool,
}

/// `None` when the user does not exist. One statement: the user's row with
/// its membership of the tenant and whether it holds a global role, as
/// `EXISTS` subqueries (a read of a user's access on PostgreSQL is a round
/// trip a statement).
pub async fn user_state<C: ConnectionTrait>(db: &C, user_id: Uuid, tenant_id: Uuid) -> Result<Option<UserState>> {
    let member = Query::select()
        .expr(Expr::val(1))
        .from(tenant_membership::Entity)
        .and_where(Expr::col((tenant_membership::Entity, tenant_membership::Column::TenantId)).eq(tenant_id))
        .and_where(
            Expr::col((tenant_membership::Entity, tenant_membership::Column::UserId))
                .equals((user::Entity, user::Column::Id)),
        )
        .to_owned();
    let global_role = Query::select()
        .expr(Expr::val(1))
        .from(user_role::Entity)
        .inner_join(
            role::Entity,
            Expr::col((role::Entity, role::Column::Id)).equals((user_role::Entity, user_role::Column::RoleId)),
        )
        .and_where(Expr::col((user_role::Entity, user_role::Column::UserId)).equals((user::Entity, user::Column::Id)))
        .and_where(Expr::col((role::Entity, role::Column::TenantId)).is_null())
        .to_owned();
    let state = Query::select()
        .column((user::Entity, user::Column::Status))
        .column((user::Entity, user::Column::PasswordChangeRequired))
        .expr_as(Expr::exists(member), "member")
        .expr_as(Expr::exists(global_role), "has_global_role")
        .from(user::Entity)
        .and_where(Expr::col((user::Entity, user::Column::Id)).eq(user_id))
        .to_owned();
    let backend = db.get_database_backend();
    let row = UserStateRow::find_by_statement(backend.build(&state)).one(db).await?;
    Ok(row.map(|row| UserState {
        active: row.status == crate::domain::users::STATUS_ACTIVE,
        member: row.member,
        has_global_role: row.has_global_role,
        password_change_required: row.password_change_required,
    }))
}

/// One row of [`effective_grants`]' union: no role for a direct grant, a
/// group for a grant through a group's role.
#[derive(Debug, FromQueryResult)]
struct GrantRow {
    permission: String,
    role_id: Option<Uuid>,
    group_id: Option<Uuid>,
}

impl GrantRow {
    fn into_grant(self) -> Grant {
        let source = match (self.role_id, self.group_id) {
            (Some(role_id), Some(group_id)) => GrantSource::Group { group_id, role_id },
            (Some(role_id), None) => GrantSource::Role(role_id),
            (None, _) => GrantSource::Direct,
        };
        Grant {
            permission: self.permission,
            source,
        }
    }
}

/// Roles valid in `tenant_id`: its own and global ones.
pub(crate) fn role_valid_in(tenant_id: Uuid) -> Condition {
    Condition::any()
        .add(Expr::col((role::Entity, role::Column::TenantId)).eq(tenant_id))
        .add(Expr::col((role::Entity, role::Column::TenantId)).is_null())
}

fn role_permissions_query() -> SelectStatement {
    Query::select()
        .column((role_permission::Entity, role_permission::Column::Permission))
        .column((role_permission::Entity, role_permission::Column::RoleId))
        .from(role_permission::Entity)
        .inner_join(
            role::Entity,
            Expr::col((role::Entity, role::Column::Id))
                .equals((role_permission::Entity, role_permission::Column::RoleId)),
        )
        .to_owned()
}

/// Every grant of the user in the tenant: direct grants, the permissions of
/// its roles valid in the tenant, and those of the roles of its groups there.
/// One statement, a `UNION ALL` of the three (the NULLs are typed
/// parameters, so PostgreSQL matches them to the other branches' UUIDs).
pub async fn effective_grants<C: ConnectionTrait>(db: &C, user_id: Uuid, tenant_id: Uuid) -> Result<Vec<Grant>> {
    let no_id = || Expr::val(Option::<Uuid>::None);
    let mut grants = Query::select()
        .column((user_permission::Entity, user_permission::Column::Permission))
        .expr_as(no_id(), "role_id")
        .expr_as(no_id(), "group_id")
        .from(user_permission::Entity)
        .and_where(Expr::col((user_permission::Entity, user_permission::Column::UserId)).eq(user_id))
        .and_where(Expr::col((user_permission::Entity, user_permission::Column::TenantId)).eq(tenant_id))
        .to_owned();

    let by_role = role_permissions_query()
        .expr_as(no_id(), "group_id")
        .inner_join(
            user_role::Entity,
            Expr::col((user_role::Entity, user_role::Column::RoleId))
                .equals((role_permission::Entity, role_permission::Column::RoleId)),
        )
        .and_where(Expr::col((user_role::Entity, user_role::Column::UserId)).eq(user_id))
        .cond_where(role_valid_in(tenant_id))
        .to_owned();

    let by_group = role_permissions_query()
        .column((group_role::Entity, group_role::Column::GroupId))
        .inner_join(
            group_role::Entity,
            Expr::col((group_role::Entity, group_role::Column::RoleId))
                .equals((role_permission::Entity, role_permission::Column::RoleId)),
        )
        .inner_join(
            group_member::Entity,
            Expr::col((group_member::Entity, group_member::Column::GroupId))
                .equals((group_role::Entity, group_role::Column::GroupId)),
        )
        .inner_join(
            group::Entity,
            Expr::col((group::Entity, group::Column::Id)).equals((group_role::Entity, group_role::Column::GroupId)),
        )
        .and_where(Expr::col((group_member::Entity, group_member::Column::UserId)).eq(user_id))
        .and_where(Expr::col((group::Entity, group::Column::TenantId)).eq(tenant_id))
        .cond_where(role_valid_in(tenant_id))
        .to_owned();

    grants.unions([(UnionType::All, by_role), (UnionType::All, by_group)]);
    let rows = GrantRow::find_by_statement(db.get_database_backend().build(&grants))
        .all(db)
        .await?;
    Ok(rows.into_iter().map(GrantRow::into_grant).collect())
}
