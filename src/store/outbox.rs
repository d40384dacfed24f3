//! The mail outbox: mails written in the transaction that causes them, sent
//! later by the worker with retries.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use crate::{error::Result, store::entity::mail_outbox};

pub async fn enqueue<C: ConnectionTrait>(
    db: &C,
    recipient: &str,
    subject: &str,
    body: &str,
    now: DateTime<Utc>,
) -> Result<Uuid> {
    let id = Uuid::now_v7();
    mail_outbox::Entity::insert(mail_outbox::ActiveModel {
        id: Set(id),
        recipient: Set(recipient.to_owned()),
        subject: Set(subject.to_owned()),
        body: Set(body.to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        sent_at: Set(None),
        last_error: Set(None),
        created_at: Set(now),
    })
    .exec_without_returning(db)
    .await?;
    Ok(id)
}

/// Unsent mails due now, oldest first.
pub async fn due<C: ConnectionTrait>(db: &C, now: DateTime<Utc>, limit: u64) -> Result<Vec<mail_outbox::Model>> {
    Ok(mail_outbox::Entity::find()
        .filter(mail_outbox::Column::SentAt.is_null())
        .filter(mail_outbox::Column::NextAttemptAt.lte(now))
        .order_by_asc(mail_outbox::Column::NextAttemptAt)
        .limit(limit)
        .all(db)
        .await?)
}

/// Claims a mail for one attempt by moving its next attempt to `lease_until`;
/// `false` when another worker (replica) claimed it first.
pub async fn claim<C: ConnectionTrait>(db: &C, mail: &mail_outbox::Model, lease_until: DateTime<Utc>) -> Result<bool> {
    let result = mail_outbox::Entity::update_many()
        .col_expr(mail_outbox::Column::NextAttemptAt, Expr::value(lease_until))
        .filter(mail_outbox::Column::Id.eq(mail.id))
        .filter(mail_outbox::Column::NextAttemptAt.eq(mail.next_attempt_at))
        .filter(mail_outbox::Column::SentAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Marks a mail sent and wipes its body (it may hold a one-time link).
pub async fn mark_sent<C: ConnectionTrait>(db: &C, id: Uuid, now: DateTime<Utc>) -> Result<()> {
    mail_outbox::Entity::update_many()
        .col_expr(mail_outbox::Column::SentAt, Expr::value(now))
        .col_expr(mail_outbox::Column::Body, Expr::value(""))
        .col_expr(
            mail_outbox::Column::Attempts,
            Expr::col(mail_outbox::Column::Attempts).add(1),
        )
        .filter(mail_outbox::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Records a failed attempt and when to try again.
pub async fn mark_failed<C: ConnectionTrait>(db: &C, id: Uuid, error: &str, retry_at: DateTime<Utc>) -> Result<()> {
    mail_outbox::Entity::update_many()
        .col_expr(mail_outbox::Column::LastError, Expr::value(error))
        .col_expr(mail_outbox::Column::NextAttemptAt, Expr::value(retry_at))
        .col_expr(
            mail_outbox::Column::Attempts,
            Expr::col(mail_outbox::Column::Attempts).add(1),
        )
        .filter(mail_outbox::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Mails not sent yet.
pub async fn backlog<C: ConnectionTrait>(db: &C) -> Result<u64> {
    Ok(mail_outbox::Entity::find()
        .filter(mail_outbox::Column::SentAt.is_null())
        .count(db)
        .await?)
}
