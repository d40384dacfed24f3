//! The mail outbox: mails written in the transaction that causes them, sent
//! later by the worker with retries.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use crate::{
    error::Result,
    store::{self, entity::mail_outbox},
};

/// A mail to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMail {
    pub recipient: String,
    pub subject: String,
    pub body: String,
}

impl NewMail {
    /// The outbox row: unsent, due at `now`.
    fn into_row(self, now: DateTime<Utc>) -> mail_outbox::Model {
        mail_outbox::Model {
            id: Uuid::now_v7(),
            recipient: self.recipient,
            subject: self.subject,
            body: self.body,
            attempts: 0,
            next_attempt_at: now,
            sent_at: None,
            last_error: None,
            created_at: now,
        }
    }
}

/// Queues mails, in the transaction that causes them, with multi-row
/// INSERTs (one for up to 500 mails).
pub async fn enqueue<C: ConnectionTrait>(db: &C, mails: Vec<NewMail>, now: DateTime<Utc>) -> Result<()> {
    let rows = mails.into_iter().map(|mail| mail.into_row(now)).collect();
    store::insert_rows::<_, _, mail_outbox::ActiveModel>(db, rows).await
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

/// A worker's claim on one mail: the lease it wrote into the mail's
/// `next_attempt_at`. Only updates that match that lease record the
/// attempt, so a worker whose claim lapsed (another worker claimed the mail
/// since) cannot mark the other's attempt sent or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub id: Uuid,
    pub lease_until: DateTime<Utc>,
}

/// Claims a mail for one attempt by moving its next attempt to `lease_until`
/// (a time at the precision the databases store, see `domain::now`, so that
/// it reads back equal); `None` when another worker (replica) claimed it
/// first.
pub async fn claim<C: ConnectionTrait>(
    db: &C,
    mail: &mail_outbox::Model,
    lease_until: DateTime<Utc>,
) -> Result<Option<Claim>> {
    let result = mail_outbox::Entity::update_many()
        .col_expr(mail_outbox::Column::NextAttemptAt, Expr::value(lease_until))
        .filter(mail_outbox::Column::Id.eq(mail.id))
        .filter(mail_outbox::Column::NextAttemptAt.eq(mail.next_attempt_at))
        .filter(mail_outbox::Column::SentAt.is_null())
        .exec(db)
        .await?;
    Ok((result.rows_affected == 1).then_some(Claim {
        id: mail.id,
        lease_until,
    }))
}

/// Marks a claimed mail sent and wipes its body (it may hold a one-time
/// link); `false`, and nothing written, when the claim is no longer held.
pub async fn mark_sent<C: ConnectionTrait>(db: &C, claim: &Claim, now: DateTime<Utc>) -> Result<bool> {
    let result = mail_outbox::Entity::update_many()
        .col_expr(mail_outbox::Column::SentAt, Expr::value(now))
        .col_expr(mail_outbox::Column::Body, Expr::value(""))
        .col_expr(
            mail_outbox::Column::Attempts,
            Expr::col(mail_outbox::Column::Attempts).add(1),
        )
        .filter(held(claim))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Records a failed attempt at a claimed mail and when to try again;
/// `false`, and nothing written, when the claim is no longer held.
pub async fn mark_failed<C: ConnectionTrait>(
    db: &C,
    claim: &Claim,
    error: &str,
    retry_at: DateTime<Utc>,
) -> Result<bool> {
    let result = mail_outbox::Entity::update_many()
        .col_expr(mail_outbox::Column::LastError, Expr::value(error))
        .col_expr(mail_outbox::Column::NextAttemptAt, Expr::value(retry_at))
        .col_expr(
            mail_outbox::Column::Attempts,
            Expr::col(mail_outbox::Column::Attempts).add(1),
        )
        .filter(held(claim))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// The mail of `claim`, while still unsent and under that claim's lease.
fn held(claim: &Claim) -> Condition {
    Condition::all()
        .add(mail_outbox::Column::Id.eq(claim.id))
        .add(mail_outbox::Column::NextAttemptAt.eq(claim.lease_until))
        .add(mail_outbox::Column::SentAt.is_null())
}

/// Mails not sent yet.
pub async fn backlog<C: ConnectionTrait>(db: &C) -> Result<u64> {
    Ok(mail_outbox::Entity::find()
        .filter(mail_outbox::Column::SentAt.is_null())
        .count(db)
        .await?)
}
