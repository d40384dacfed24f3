//! The initial schema: every table of Castellan, its keys and its indexes.
//!
//! Written with SeaQuery only (plus one partial index in plain SQL that both
//! databases accept verbatim), so it runs unchanged on SQLite and PostgreSQL.
//! Index and constraint names are fixed (`uq_<table>_<columns>`,
//! `idx_<table>_<columns>`, `fk_<table>_<column>`) so that an error mentioning
//! one can be mapped back to the field it guards.
//!
//! Timestamps have no server-side default on purpose: the application always
//! writes them, so SQLite stores them in one text format and `(created_at, id)`
//! orders rows the same way on both databases.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates (and, going down, drops) the whole initial schema.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// In a transaction on SQLite too (sea-orm-migration wraps only
    /// PostgreSQL's by default): a migration that fails part-way, or a
    /// process killed during one, leaves the schema as it was, and the next
    /// start applies the migration whole.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_tenants_and_users(manager).await?;
        create_roles_and_groups(manager).await?;
        create_devices_and_credentials(manager).await?;
        create_service_tables(manager).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Children before parents, so that PostgreSQL never refuses a drop
        // because of a foreign key. Indexes go with their tables.
        let tables: [DynIden; 17] = [
            AuditEvents::Table.into_iden(),
            IdempotencyKeys::Table.into_iden(),
            RegisteredPermissions::Table.into_iden(),
            Invitations::Table.into_iden(),
            LoginFailures::Table.into_iden(),
            Credentials::Table.into_iden(),
            Devices::Table.into_iden(),
            UserPermissions::Table.into_iden(),
            GroupMembers::Table.into_iden(),
            GroupRoles::Table.into_iden(),
            Groups::Table.into_iden(),
            UserRoles::Table.into_iden(),
            RolePermissions::Table.into_iden(),
            Roles::Table.into_iden(),
            TenantMemberships::Table.into_iden(),
            Users::Table.into_iden(),
            Tenants::Table.into_iden(),
        ];
        for table in tables {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

async fn create_tenants_and_users(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Tenants::Table)
                .col(pk_uuid(Tenants::Id))
                .col(string(Tenants::Name))
                .col(string(Tenants::Slug))
                .col(string(Tenants::Status))
                .col(big_integer(Tenants::UserCount).default(0))
                .col(timestamp_with_time_zone(Tenants::CreatedAt))
                .col(timestamp_with_time_zone(Tenants::UpdatedAt))
                .to_owned(),
        )
        .await?;
    manager
        .create_index(unique_index(Tenants::Table, &[Tenants::Slug]))
        .await?;
    manager
        .create_index(index(Tenants::Table, &[Tenants::CreatedAt, Tenants::Id]))
        .await?;

    manager
        .create_table(
            Table::create()
                .table(Users::Table)
                .col(pk_uuid(Users::Id))
                .col(string(Users::Email))
                .col(string(Users::Username))
                .col(string(Users::FirstName))
                .col(string(Users::LastName))
                .col(string_null(Users::Image))
                .col(string(Users::Status))
                .col(integer_null(Users::MaxDevices))
                .col(boolean(Users::PasswordChangeRequired).default(false))
                .col(timestamp_with_time_zone_null(Users::LastConnection))
                .col(timestamp_with_time_zone(Users::CreatedAt))
                .col(timestamp_with_time_zone(Users::UpdatedAt))
                .to_owned(),
        )
        .await?;
    for statement in [
        unique_index(Users::Table, &[Users::Email]),
        unique_index(Users::Table, &[Users::Username]),
        index(Users::Table, &[Users::CreatedAt, Users::Id]),
        index(Users::Table, &[Users::Status]),
        index(Users::Table, &[Users::FirstName, Users::Id]),
        index(Users::Table, &[Users::LastName, Users::Id]),
        index(Users::Table, &[Users::UpdatedAt, Users::Id]),
    ] {
        manager.create_index(statement).await?;
    }

    manager
        .create_table(
            Table::create()
                .table(TenantMemberships::Table)
                .col(uuid(TenantMemberships::TenantId))
                .col(uuid(TenantMemberships::UserId))
                .col(boolean(TenantMemberships::IsOwner).default(false))
                .col(timestamp_with_time_zone(TenantMemberships::CreatedAt))
                .primary_key(&mut primary_key(&[
                    TenantMemberships::TenantId,
                    TenantMemberships::UserId,
                ]))
                .foreign_key(&mut cascade(
                    TenantMemberships::Table,
                    TenantMemberships::TenantId,
                    Tenants::Table,
                    Tenants::Id,
                ))
                .foreign_key(&mut cascade(
                    TenantMemberships::Table,
                    TenantMemberships::UserId,
                    Users::Table,
                    Users::Id,
                ))
                .to_owned(),
        )
        .await?;
    manager
        .create_index(index(TenantMemberships::Table, &[TenantMemberships::UserId]))
        .await?;
    manager
        .create_index(index(
            TenantMemberships::Table,
            &[TenantMemberships::TenantId, TenantMemberships::IsOwner],
        ))
        .await?;
    Ok(())
}

async fn create_roles_and_groups(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Roles::Table)
                .col(pk_uuid(Roles::Id))
                .col(uuid_null(Roles::TenantId))
                .col(string(Roles::Name))
                .col(string(Roles::Description).default(""))
                .col(integer(Roles::Version).default(1))
                .col(uuid_null(Roles::CreatedBy))
                .col(timestamp_with_time_zone(Roles::CreatedAt))
                .col(timestamp_with_time_zone(Roles::UpdatedAt))
                .foreign_key(&mut cascade(Roles::Table, Roles::TenantId, Tenants::Table, Tenants::Id))
                .to_owned(),
        )
        .await?;
    manager
        .create_index(unique_index(Roles::Table, &[Roles::TenantId, Roles::Name]))
        .await?;
    // NULLs are distinct in a unique index on both databases, so the index
    // above does not stop two global roles (tenant_id IS NULL) sharing a name.
    // SeaQuery has no portable partial index; this statement is valid verbatim
    // on SQLite and PostgreSQL.
    manager
        .get_connection()
        .execute_unprepared("CREATE UNIQUE INDEX idx_roles_global_name ON roles (name) WHERE tenant_id IS NULL")
        .await?;
    manager
        .create_index(index(Roles::Table, &[Roles::TenantId, Roles::CreatedAt, Roles::Id]))
        .await?;

    manager
        .create_table(
            Table::create()
                .table(RolePermissions::Table)
                .col(uuid(RolePermissions::RoleId))
                .col(string(RolePermissions::Permission))
                .primary_key(&mut primary_key(&[
                    RolePermissions::RoleId,
                    RolePermissions::Permission,
                ]))
                .foreign_key(&mut cascade(
                    RolePermissions::Table,
                    RolePermissions::RoleId,
                    Roles::Table,
                    Roles::Id,
                ))
                .to_owned(),
        )
        .await?;
    manager
        .create_index(index(RolePermissions::Table, &[RolePermissions::Permission]))
        .await?;

    manager
        .create_table(
            Table::create()
                .table(UserRoles::Table)
                .col(uuid(UserRoles::UserId))
                .col(uuid(UserRoles::RoleId))
                .col(timestamp_with_time_zone(UserRoles::CreatedAt))
                .primary_key(&mut primary_key(&[UserRoles::UserId, UserRoles::RoleId]))
                .foreign_key(&mut cascade(
                    UserRoles::Table,
                    UserRoles::UserId,
                    Users::Table,
                    Users::Id,
                ))
                .foreign_key(&mut cascade(
                    UserRoles::Table,
                    UserRoles::RoleId,
                    Roles::Table,
                    Roles::Id,
                ))
                .to_owned(),
        )
        .await?;
    manager
        .create_index(index(UserRoles::Table, &[UserRoles::RoleId]))
        .await?;

    manager
        .create_table(
            Table::create()
                .table(Groups::Table)
                .col(pk_uuid(Groups::Id))
                .col(uuid(Groups::TenantId))
                .col(string(Groups::Name))
                .col(string(Groups::Description).default(""))
                .col(timestamp_with_time_zone(Groups::CreatedAt))
                .col(timestamp_with_time_zone(Groups::UpdatedAt))
                .foreign_key(&mut cascade(
                    Groups::Table,
                    Groups::TenantId,
                    Tenants::Table,
                    Tenants::Id,
                ))
                .to_owned(),
        )
        .await?;
    manager
        .create_index(unique_index(Groups::Table, &[Groups::TenantId, Groups::Name]))
        .await?;
    manager
        .create_index(index(Groups::Table, &[Groups::TenantId, Groups::CreatedAt, Groups::Id]))
        .await?;

    manager
        .create_table(
            Table::create()
                .table(GroupRoles::Table)
                .col(uuid(GroupRoles::GroupId))
                .col(uuid(GroupRoles::RoleId))
                .primary_key(&mut primary_key(&[GroupRoles::GroupId, GroupRoles::RoleId]))
                .foreign_key(&mut cascade(
                    GroupRoles::Table,
                    GroupRoles::GroupId,
                    Groups::Table,
                    Groups::Id,
                ))
                .foreign_key(&mut cascade(
                    GroupRoles::Table,
                    GroupRoles::RoleId,
                    Roles::Table,
                    Roles::Id,
                ))
                .to_owned(),
        )
        .await?;
    manager
        .create_index(index(GroupRoles::Table, &[GroupRoles::RoleId]))
        .await?;

    manager
        .create_table(
            Table::create()
                .table(GroupMembers::Table)
                .col(uuid(GroupMembers::GroupId))
                .col(uuid(GroupMembers::UserId))
                .col(timestamp_with_time_zone(GroupMembers::CreatedAt))
                .primary_key(&mut primary_key(&[GroupMembers::GroupId, GroupMembers::UserId]))
                .foreign_key(&mut cascade(
                    GroupMembers::Table,
                    GroupMembers::GroupId,
                    Groups::Table,
                    Groups::Id,
                ))
                .foreign_key(&mut cascade(
                    GroupMembers::Table,
                    GroupMembers::UserId,
                    Users::Table,
                    Users::Id,
                ))
                .to_owned(),
        )
        .await?;
    manager
        .create_index(index(GroupMembers::Table, &[GroupMembers::UserId]))
        .await?;

    manager
        .create_table(
            Table::create()
                .table(UserPermissions::Table)
                .col(uuid(UserPermissions::UserId))
                .col(uuid(UserPermissions::TenantId))
                .col(string(UserPermissions::Permission))
                .primary_key(&mut primary_key(&[
                    UserPermissions::UserId,
                    UserPermissions::TenantId,
                    UserPermissions::Permission,
                ]))
                .foreign_key(&mut cascade(
                    UserPermissions::Table,
                    UserPermissions::UserId,
                    Users::Table,
                    Users::Id,
                ))
                .foreign_key(&mut cascade(
                    UserPermissions::Table,
                    UserPermissions::TenantId,
                    Tenants::Table,
                    Tenants::Id,
                ))
                .to_owned(),
        )
        .await?;
    // Not in the primary key's leading column: without it, deleting a tenant
    // would scan the whole table on PostgreSQL to cascade.
    manager
        .create_index(index(UserPermissions::Table, &[UserPermissions::TenantId]))
        .await?;
    Ok(())
}

async fn create_devices_and_credentials(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Devices::Table)
                .col(pk_uuid(Devices::Id))
                .col(uuid(Devices::UserId))
                .col(string(Devices::Name))
                .col(string(Devices::Platform))
                .col(string(Devices::OsVersion))
                .col(string(Devices::Status))
                .col(boolean(Devices::Connected).default(false))
                .col(timestamp_with_time_zone_null(Devices::LastConnection))
                .col(boolean(Devices::DiskEncrypted).default(false))
                .col(boolean(Devices::FirewallEnabled).default(false))
                .col(boolean(Devices::ScreenLockEnabled).default(false))
                .col(boolean(Devices::OsUpToDate).default(false))
                .col(timestamp_with_time_zone(Devices::RegisteredAt))
                .col(timestamp_with_time_zone(Devices::UpdatedAt))
                .foreign_key(&mut cascade(Devices::Table, Devices::UserId, Users::Table, Users::Id))
                .to_owned(),
        )
        .await?;
    manager
        .create_index(index(
            Devices::Table,
            &[Devices::UserId, Devices::RegisteredAt, Devices::Id],
        ))
        .await?;

    manager
        .create_table(
            Table::create()
                .table(Credentials::Table)
                .col(pk_uuid(Credentials::UserId))
                .col(string(Credentials::PasswordHash))
                .col(timestamp_with_time_zone(Credentials::UpdatedAt))
                .foreign_key(&mut cascade(
                    Credentials::Table,
                    Credentials::UserId,
                    Users::Table,
                    Users::Id,
                ))
                .to_owned(),
        )
        .await?;

    manager
        .create_table(
            Table::create()
                .table(LoginFailures::Table)
                .col(string(LoginFailures::Key).primary_key())
                .col(integer(LoginFailures::Failures))
                .col(timestamp_with_time_zone(LoginFailures::WindowStartedAt))
                .col(timestamp_with_time_zone_null(LoginFailures::LockedUntil))
                .to_owned(),
        )
        .await?;

    manager
        .create_table(
            Table::create()
                .table(Invitations::Table)
                .col(pk_uuid(Invitations::Id))
                .col(uuid(Invitations::UserId))
                .col(uuid(Invitations::TenantId))
                .col(string(Invitations::TokenHash))
                .col(timestamp_with_time_zone(Invitations::ExpiresAt))
                .col(timestamp_with_time_zone_null(Invitations::AcceptedAt))
                .col(timestamp_with_time_zone(Invitations::CreatedAt))
                .foreign_key(&mut cascade(
                    Invitations::Table,
                    Invitations::UserId,
                    Users::Table,
                    Users::Id,
                ))
                .foreign_key(&mut cascade(
                    Invitations::Table,
                    Invitations::TenantId,
                    Tenants::Table,
                    Tenants::Id,
                ))
                .to_owned(),
        )
        .await?;
    for statement in [
        unique_index(Invitations::Table, &[Invitations::TokenHash]),
        index(Invitations::Table, &[Invitations::UserId]),
        // For the cascade when a tenant is deleted (see user_permissions).
        index(Invitations::Table, &[Invitations::TenantId]),
    ] {
        manager.create_index(statement).await?;
    }
    Ok(())
}

async fn create_service_tables(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(RegisteredPermissions::Table)
                .col(string(RegisteredPermissions::Name).primary_key())
                .col(string(RegisteredPermissions::Namespace))
                .col(string(RegisteredPermissions::Description))
                .col(timestamp_with_time_zone(RegisteredPermissions::CreatedAt))
                .to_owned(),
        )
        .await?;
    manager
        .create_index(index(RegisteredPermissions::Table, &[RegisteredPermissions::Namespace]))
        .await?;

    manager
        .create_table(
            Table::create()
                .table(IdempotencyKeys::Table)
                .col(string(IdempotencyKeys::Scope))
                .col(string(IdempotencyKeys::RequestId))
                .col(string(IdempotencyKeys::RequestHash))
                // BLOB on SQLite, BYTEA on PostgreSQL.
                .col(blob(IdempotencyKeys::Response))
                .col(timestamp_with_time_zone(IdempotencyKeys::CreatedAt))
                .primary_key(&mut primary_key(&[IdempotencyKeys::Scope, IdempotencyKeys::RequestId]))
                .to_owned(),
        )
        .await?;

    // No foreign key to tenants: the audit trail outlives what it describes.
    manager
        .create_table(
            Table::create()
                .table(AuditEvents::Table)
                .col(pk_uuid(AuditEvents::Id))
                .col(timestamp_with_time_zone(AuditEvents::OccurredAt))
                .col(uuid_null(AuditEvents::TenantId))
                .col(string(AuditEvents::Actor))
                .col(string(AuditEvents::Action))
                .col(string(AuditEvents::Target))
                .col(string(AuditEvents::RequestId))
                .col(string(AuditEvents::Outcome))
                .col(text(AuditEvents::ChangedFields))
                .to_owned(),
        )
        .await?;
    for statement in [
        index(
            AuditEvents::Table,
            &[AuditEvents::TenantId, AuditEvents::OccurredAt, AuditEvents::Id],
        ),
        index(AuditEvents::Table, &[AuditEvents::Actor]),
        index(AuditEvents::Table, &[AuditEvents::Target]),
    ] {
        manager.create_index(statement).await?;
    }
    Ok(())
}

/// `CREATE INDEX idx_<table>_<columns> ON <table> (<columns>)`.
fn index<T: Iden + Copy + 'static>(table: T, columns: &[T]) -> IndexCreateStatement {
    named_index("idx", table, columns)
}

/// `CREATE UNIQUE INDEX uq_<table>_<columns> ON <table> (<columns>)`.
fn unique_index<T: Iden + Copy + 'static>(table: T, columns: &[T]) -> IndexCreateStatement {
    named_index("uq", table, columns).unique().to_owned()
}

fn named_index<T: Iden + Copy + 'static>(prefix: &str, table: T, columns: &[T]) -> IndexCreateStatement {
    let mut name = format!("{prefix}_{}", table.to_string());
    let mut statement = Index::create();
    statement.table(table);
    for &column in columns {
        name.push('_');
        name.push_str(&column.to_string());
        statement.col(column);
    }
    statement.name(name).to_owned()
}

/// A composite primary key over `columns`, for `Table::create().primary_key(..)`.
fn primary_key<T: Iden + Copy + 'static>(columns: &[T]) -> IndexCreateStatement {
    let mut statement = Index::create();
    for &column in columns {
        statement.col(column);
    }
    statement
}

/// `CONSTRAINT fk_<table>_<column> FOREIGN KEY (<column>) REFERENCES
/// <parent> (<parent_key>) ON DELETE CASCADE`: the row cannot outlive its parent.
fn cascade<T, P>(table: T, column: T, parent: P, parent_key: P) -> ForeignKeyCreateStatement
where
    T: Iden + Copy + 'static,
    P: Iden + Copy + 'static,
{
    ForeignKey::create()
        .name(format!("fk_{}_{}", table.to_string(), column.to_string()))
        .from(table, column)
        .to(parent, parent_key)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[derive(DeriveIden, Clone, Copy)]
enum Tenants {
    Table,
    Id,
    Name,
    Slug,
    Status,
    UserCount,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Users {
    Table,
    Id,
    Email,
    Username,
    FirstName,
    LastName,
    Image,
    Status,
    MaxDevices,
    PasswordChangeRequired,
    LastConnection,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum TenantMemberships {
    Table,
    TenantId,
    UserId,
    IsOwner,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Roles {
    Table,
    Id,
    TenantId,
    Name,
    Description,
    Version,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum RolePermissions {
    Table,
    RoleId,
    Permission,
}

#[derive(DeriveIden, Clone, Copy)]
enum UserRoles {
    Table,
    UserId,
    RoleId,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Groups {
    Table,
    Id,
    TenantId,
    Name,
    Description,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum GroupRoles {
    Table,
    GroupId,
    RoleId,
}

#[derive(DeriveIden, Clone, Copy)]
enum GroupMembers {
    Table,
    GroupId,
    UserId,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum UserPermissions {
    Table,
    UserId,
    TenantId,
    Permission,
}

#[derive(DeriveIden, Clone, Copy)]
enum Devices {
    Table,
    Id,
    UserId,
    Name,
    Platform,
    OsVersion,
    Status,
    Connected,
    LastConnection,
    DiskEncrypted,
    FirewallEnabled,
    ScreenLockEnabled,
    OsUpToDate,
    RegisteredAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Credentials {
    Table,
    UserId,
    PasswordHash,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum LoginFailures {
    Table,
    Key,
    Failures,
    WindowStartedAt,
    LockedUntil,
}

#[derive(DeriveIden, Clone, Copy)]
enum Invitations {
    Table,
    Id,
    UserId,
    TenantId,
    TokenHash,
    ExpiresAt,
    AcceptedAt,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum RegisteredPermissions {
    Table,
    Name,
    Namespace,
    Description,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum IdempotencyKeys {
    Table,
    Scope,
    RequestId,
    RequestHash,
    Response,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum AuditEvents {
    Table,
    Id,
    OccurredAt,
    TenantId,
    Actor,
    Action,
    Target,
    RequestId,
    Outcome,
    ChangedFields,
}
