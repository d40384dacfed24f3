//! Queries behind authorization: a user's state in a tenant and its
//! effective grants (direct ∪ roles ∪ group roles), each with its source.

use sea_orm::ColumnTrait;
use sea_orm::{
    ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter,
    sea_query::{Condition, Expr, ExprTrait, Query, SelectStatement},
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

#[derive(Debug, FromQueryResult)]
struct RoleGrantRow {
    permission: String,
    role_id: Uuid,
}

#[derive(Debug, FromQueryResult)]
struct GroupGrantRow {
    permission: String,
    role_id: Uuid,
    group_id: Uuid,
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
pub async fn effective_grants<C: ConnectionTrait>(db: &C, user_id: Uuid, tenant_id: Uuid) -> Result<Vec<Grant>> {
    let backend = db.get_database_backend();
    let mut grants: Vec<Grant> = user_permission::Entity::find()
        .filter(user_permission::Column::UserId.eq(user_id))
        .filter(user_permission::Column::TenantId.eq(tenant_id))
        .all(db)
        .await?
        .into_iter()
        .map(|row| Grant {
            permission: row.permission,
            source: GrantSource::Direct,
        })
        .collect();

    let by_role = role_permissions_query()
        .inner_join(
            user_role::Entity,
            Expr::col((user_role::Entity, user_role::Column::RoleId))
                .equals((role_permission::Entity, role_permission::Column::RoleId)),
        )
        .and_where(Expr::col((user_role::Entity, user_role::Column::UserId)).eq(user_id))
        .cond_where(role_valid_in(tenant_id))
        .to_owned();
    for row in RoleGrantRow::find_by_statement(backend.build(&by_role)).all(db).await? {
        grants.push(Grant {
            permission: row.permission,
            source: GrantSource::Role(row.role_id),
        });
    }

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
    for row in GroupGrantRow::find_by_statement(backend.build(&by_group))
        .all(db)
        .await?
    {
        grants.push(Grant {
            permission: row.permission,
            source: GrantSource::Group {
                group_id: row.group_id,
                role_id: row.role_id,
            },
        });
    }
    Ok(grants)
}
