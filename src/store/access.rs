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
    pub token_generation: i32,
}

#[derive(Debug, FromQueryResult)]
struct UserStateRow {
    status: String,
    password_change_required: bool,
    token_generation: i32,
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
        .column((user::Entity, user::Column::TokenGeneration))
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
        token_generation: row.token_generation,
    }))
}

/// One row of [`effective_grants`]' union: a direct grant (no role, no
/// group), a grant through a role or a group's role, or a role or group
/// that grants nothing (no permission).
#[derive(Debug, FromQueryResult)]
struct GrantRow {
    permission: Option<String>,
    role_id: Option<Uuid>,
    group_id: Option<Uuid>,
    /// Granted by a global role the user holds itself (not through a group).
    by_global_role: bool,
}

/// A user's grants in a tenant, and what they were read from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserGrants {
    pub grants: Vec<Grant>,
    /// The permissions of the global roles the user holds itself: what it
    /// may do beyond the tenant (a tenant's roles, and a global role reached
    /// through a tenant's group, reach no further than the tenant).
    pub global: Vec<String>,
    /// Every role and group of the user in the tenant (sorted), including
    /// those that grant nothing today (a role without permissions, a group
    /// without roles): a change to any of them can change the grants.
    pub read_from: Vec<Uuid>,
}

impl UserGrants {
    fn from_rows(rows: Vec<GrantRow>) -> Self {
        let mut read = Self::default();
        for row in rows {
            read.read_from.extend(row.role_id.into_iter().chain(row.group_id));
            let source = match (row.role_id, row.group_id) {
                (Some(role_id), Some(group_id)) => GrantSource::Group { group_id, role_id },
                (Some(role_id), None) => GrantSource::Role(role_id),
                (None, None) => GrantSource::Direct,
                // A group without a role valid here grants nothing.
                (None, Some(_)) => continue,
            };
            if let Some(permission) = row.permission {
                if row.by_global_role {
                    read.global.push(permission.clone());
                }
                read.grants.push(Grant { permission, source });
            }
        }
        read.read_from.sort_unstable();
        read.read_from.dedup();
        read
    }
}

/// Roles valid in `tenant_id`: its own and global ones.
pub(crate) fn role_valid_in(tenant_id: Uuid) -> Condition {
    Condition::any()
        .add(Expr::col((role::Entity, role::Column::TenantId)).eq(tenant_id))
        .add(Expr::col((role::Entity, role::Column::TenantId)).is_null())
}

/// The permissions of the role joined before (none: one row of NULL).
fn left_join_permissions(query: &mut SelectStatement) -> &mut SelectStatement {
    query.left_join(
        role_permission::Entity,
        Expr::col((role_permission::Entity, role_permission::Column::RoleId)).equals((role::Entity, role::Column::Id)),
    )
}

/// Every grant of the user in the tenant: direct grants, the permissions of
/// its roles valid in the tenant, and those of the roles of its groups
/// there; with every such role and group, granting or not. One statement, a
/// `UNION ALL` of the three, outer-joined so that a role without
/// permissions and a group without roles still give a row (the NULLs are
/// typed parameters, so PostgreSQL matches them to the other branches'
/// UUIDs).
pub async fn effective_grants<C: ConnectionTrait>(db: &C, user_id: Uuid, tenant_id: Uuid) -> Result<UserGrants> {
    let no_id = || Expr::val(Option::<Uuid>::None);
    let role_id = || Expr::col((role::Entity, role::Column::Id));
    let mut grants = Query::select()
        .column((user_permission::Entity, user_permission::Column::Permission))
        .expr_as(no_id(), "role_id")
        .expr_as(no_id(), "group_id")
        .expr_as(Expr::val(false), "by_global_role")
        .from(user_permission::Entity)
        .and_where(Expr::col((user_permission::Entity, user_permission::Column::UserId)).eq(user_id))
        .and_where(Expr::col((user_permission::Entity, user_permission::Column::TenantId)).eq(tenant_id))
        .to_owned();

    let by_role = left_join_permissions(
        Query::select()
            .column((role_permission::Entity, role_permission::Column::Permission))
            .expr_as(role_id(), "role_id")
            .expr_as(no_id(), "group_id")
            .expr_as(
                Expr::col((role::Entity, role::Column::TenantId)).is_null(),
                "by_global_role",
            )
            .from(user_role::Entity)
            .inner_join(
                role::Entity,
                role_id().equals((user_role::Entity, user_role::Column::RoleId)),
            ),
    )
    .and_where(Expr::col((user_role::Entity, user_role::Column::UserId)).eq(user_id))
    .cond_where(role_valid_in(tenant_id))
    .to_owned();

    let by_group = left_join_permissions(
        Query::select()
            .column((role_permission::Entity, role_permission::Column::Permission))
            .expr_as(role_id(), "role_id")
            .expr_as(Expr::col((group::Entity, group::Column::Id)), "group_id")
            .expr_as(Expr::val(false), "by_global_role")
            .from(group_member::Entity)
            .inner_join(
                group::Entity,
                Expr::col((group::Entity, group::Column::Id))
                    .equals((group_member::Entity, group_member::Column::GroupId)),
            )
            .left_join(
                group_role::Entity,
                Expr::col((group_role::Entity, group_role::Column::GroupId)).equals((group::Entity, group::Column::Id)),
            )
            .left_join(
                role::Entity,
                Condition::all()
                    .add(role_id().equals((group_role::Entity, group_role::Column::RoleId)))
                    .add(role_valid_in(tenant_id)),
            ),
    )
    .and_where(Expr::col((group_member::Entity, group_member::Column::UserId)).eq(user_id))
    .and_where(Expr::col((group::Entity, group::Column::TenantId)).eq(tenant_id))
    .to_owned();

    grants.unions([(UnionType::All, by_role), (UnionType::All, by_group)]);
    let rows = GrantRow::find_by_statement(db.get_database_backend().build(&grants))
        .all(db)
        .await?;
    Ok(UserGrants::from_rows(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(permission: Option<&str>, role_id: Option<Uuid>, group_id: Option<Uuid>) -> GrantRow {
        GrantRow {
            permission: permission.map(str::to_owned),
            role_id,
            group_id,
            by_global_role: false,
        }
    }

    #[test]
    fn grants_keep_their_sources_and_every_role_and_group_counts_as_read() {
        let (granting, empty_role, group_role) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let (group, empty_group) = (Uuid::now_v7(), Uuid::now_v7());
        let read = UserGrants::from_rows(vec![
            row(Some("users:read"), None, None),
            row(Some("users:list"), Some(granting), None),
            row(None, Some(empty_role), None),
            row(Some("roles:read"), Some(group_role), Some(group)),
            row(None, None, Some(empty_group)),
            row(Some("users:read"), Some(granting), None),
        ]);
        let grant = |permission: &str, source| Grant {
            permission: permission.to_owned(),
            source,
        };
        assert_eq!(
            read.grants,
            vec![
                grant("users:read", GrantSource::Direct),
                grant("users:list", GrantSource::Role(granting)),
                grant(
                    "roles:read",
                    GrantSource::Group {
                        group_id: group,
                        role_id: group_role
                    }
                ),
                grant("users:read", GrantSource::Role(granting)),
            ]
        );
        let mut expected = vec![granting, empty_role, group_role, group, empty_group];
        expected.sort_unstable();
        assert_eq!(read.read_from, expected, "sorted, once each, granting or not");
    }
}
