//! Queries behind authorization: a user's state in a tenant and its
//! effective grants (direct ∪ roles ∪ group roles), each with its source.

use sea_orm::ColumnTrait;
use sea_orm::{
    ConnectionTrait, EntityTrait, FromQueryResult, PaginatorTrait, QueryFilter,
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

/// `None` when the user does not exist.
pub async fn user_state<C: ConnectionTrait>(db: &C, user_id: Uuid, tenant_id: Uuid) -> Result<Option<UserState>> {
    let Some(user) = user::Entity::find_by_id(user_id).one(db).await? else {
        return Ok(None);
    };
    let member = tenant_membership::Entity::find_by_id((tenant_id, user_id))
        .one(db)
        .await?
        .is_some();
    let global_roles = user_role::Entity::find()
        .inner_join(role::Entity)
        .filter(user_role::Column::UserId.eq(user_id))
        .filter(role::Column::TenantId.is_null())
        .count(db)
        .await?;
    Ok(Some(UserState {
        active: user.status == crate::domain::users::STATUS_ACTIVE,
        member,
        has_global_role: global_roles > 0,
        password_change_required: user.password_change_required,
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
