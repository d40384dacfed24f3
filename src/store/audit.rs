//! Audit event queries: the insert every mutation runs in its transaction
//! (one statement for one event or a batch of them), and the filtered,
//! paged list (newest first).

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    sea_query::{Condition, Expr},
};
use uuid::Uuid;

use crate::{
    domain::paging::ListParams,
    error::Result,
    store::{self, entity::audit_event, paging},
};

/// Inserts one event (a single INSERT).
pub async fn insert<C: ConnectionTrait>(db: &C, event: audit_event::Model) -> Result<()> {
    insert_many(db, vec![event]).await
}

/// Inserts events with multi-row INSERTs (one for up to 500 events).
pub async fn insert_many<C: ConnectionTrait>(db: &C, events: Vec<audit_event::Model>) -> Result<()> {
    store::insert_rows::<_, _, audit_event::ActiveModel>(db, events).await
}

/// Passes a deleted tenant's events to no tenant: no one can name the
/// tenant any more, and global readers still find them.
pub async fn orphan_tenant_events<C: ConnectionTrait>(db: &C, tenant_id: Uuid) -> Result<()> {
    audit_event::Entity::update_many()
        .col_expr(audit_event::Column::TenantId, Expr::value(Option::<Uuid>::None))
        .filter(audit_event::Column::TenantId.eq(tenant_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Which events a list returns; `None` filters nothing.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub tenant_id: Uuid,
    /// Also the events recorded without a tenant.
    pub with_global: bool,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub action: Option<String>,
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
}

fn condition(filter: &EventFilter) -> Condition {
    let mut tenant = Condition::any().add(audit_event::Column::TenantId.eq(filter.tenant_id));
    if filter.with_global {
        tenant = tenant.add(audit_event::Column::TenantId.is_null());
    }
    let mut all = Condition::all().add(tenant);
    if let Some(actor) = &filter.actor {
        all = all.add(audit_event::Column::Actor.eq(actor.clone()));
    }
    if let Some(target) = &filter.target {
        all = all.add(audit_event::Column::Target.eq(target.clone()));
    }
    if let Some(action) = &filter.action {
        all = all.add(audit_event::Column::Action.eq(action.clone()));
    }
    if let Some(from) = filter.from {
        all = all.add(audit_event::Column::OccurredAt.gte(from));
    }
    if let Some(to) = filter.to {
        all = all.add(audit_event::Column::OccurredAt.lt(to));
    }
    all
}

/// One page (up to `limit + 1` rows) of the matching events, and their total.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    filter: &EventFilter,
    params: &ListParams,
) -> Result<(Vec<audit_event::Model>, u64)> {
    let select = audit_event::Entity::find().filter(condition(filter));
    let total = select.clone().count(db).await?;
    let rows = paging::apply(
        select,
        params,
        |_| audit_event::Column::OccurredAt,
        audit_event::Column::Id,
    )
    .all(db)
    .await?;
    Ok((rows, total))
}
