//! The outbox worker: polls due mails, claims each (so replicas never send
//! one twice), sends it, and marks it sent or schedules a retry with
//! exponential backoff. A crash or an SMTP outage loses no mail.

use std::{sync::Arc, time::Duration};

use chrono::Utc;

use crate::{app::App, domain::now, mail::Mail, store};

/// Longest wait between two attempts at one mail.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How long a claim lasts: a worker that dies mid-send frees the mail after this.
const CLAIM_LEASE: Duration = Duration::from_secs(60);
const BATCH: u64 = 20;

/// Runs until aborted. A pass that found a full batch due is followed by the
/// next one at once, so a backlog (the invitations of a bulk CreateUsers)
/// drains at the mailer's pace rather than a batch an interval.
pub async fn run(app: Arc<App>) {
    let interval: Duration = app.config.outbox_interval.into();
    loop {
        match deliver_due(&app, interval).await {
            Ok(Pass::FullBatch) => continue,
            Ok(Pass::Drained) => {}
            Err(error) => tracing::warn!(%error, "mail outbox pass failed"),
        }
        tokio::time::sleep(interval).await;
    }
}

/// What one pass over the due mails found.
#[derive(Debug)]
pub enum Pass {
    /// A full batch: more may be due.
    FullBatch,
    /// Fewer than a batch: nothing else is due.
    Drained,
}

fn backoff(base: Duration, attempts: i32) -> Duration {
    base.checked_mul(1 << attempts.clamp(0, 20))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// One pass over the due mails. Each due mail is sent or given a later
/// attempt, so passes in a row never meet the same mail.
pub async fn deliver_due(app: &App, base_backoff: Duration) -> crate::error::Result<Pass> {
    let started = now();
    let due = store::outbox::due(&app.db, started, BATCH).await?;
    let pass = if due.len() as u64 == BATCH {
        Pass::FullBatch
    } else {
        Pass::Drained
    };
    for mail in due {
        let lease = started + chrono::Duration::from_std(CLAIM_LEASE).unwrap_or_default();
        if !store::outbox::claim(&app.writer, &mail, lease).await? {
            continue;
        }
        let message = Mail {
            to: mail.recipient.clone(),
            subject: mail.subject.clone(),
            body: mail.body.clone(),
        };
        match app.mailer.send(&message).await {
            Ok(()) => store::outbox::mark_sent(&app.writer, mail.id, now()).await?,
            Err(error) => {
                let wait = backoff(base_backoff, mail.attempts);
                tracing::warn!(mail_id = %mail.id, attempts = mail.attempts + 1, %error, "mail delivery failed; will retry");
                let retry_at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                store::outbox::mark_failed(&app.writer, mail.id, &error, retry_at).await?;
            }
        }
    }
    Ok(pass)
}
