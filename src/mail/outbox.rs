//! The outbox worker: polls due mails, claims each (so two replicas never
//! attempt one at once), sends it, and marks it sent or schedules a retry
//! with exponential backoff. A crash or an SMTP outage loses no mail;
//! delivery is at least once: a send the SMTP server accepted whose outcome
//! could not be recorded (the database lost, the attempt's time limit
//! reached after the data went out) is sent again.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};

use crate::{
    app::App,
    domain::now,
    mail::{Mail, SEND_TIMEOUT},
    store::{self, entity::mail_outbox, outbox::Claim},
};

/// Longest wait between two attempts at one mail.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// How long a claim lasts, from the moment the mail is claimed: a worker
/// that dies mid-send frees the mail after this. Twice the longest a
/// delivery may take ([`SEND_TIMEOUT`]), so that another replica never
/// claims (and sends again) a mail whose attempt may still be under way.
pub const CLAIM_LEASE: Duration = Duration::from_secs(2 * SEND_TIMEOUT.as_secs());

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

/// The time `wait` from now, at the precision the databases store. The
/// waits here (a lease, a backoff of at most [`MAX_BACKOFF`]) are far inside
/// chrono's range; were one not, the answer would be now.
fn after(wait: Duration) -> DateTime<Utc> {
    let start = now();
    chrono::Duration::from_std(wait)
        .ok()
        .and_then(|wait| start.checked_add_signed(wait))
        .unwrap_or(start)
}

/// One pass over the due mails. Each due mail is sent or given a later
/// attempt, so passes in a row never meet the same mail.
pub async fn deliver_due(app: &App, base_backoff: Duration) -> crate::error::Result<Pass> {
    let due = store::outbox::due(&app.db, now(), BATCH).await?;
    let pass = if due.len() as u64 == BATCH {
        Pass::FullBatch
    } else {
        Pass::Drained
    };
    for mail in due {
        // Leased from its own claim, not from the pass's start: the mails
        // before it in the batch may have taken most of a lease to send.
        let lease_until = after(CLAIM_LEASE);
        if let Some(claim) = store::outbox::claim(&app.writer, &mail, lease_until).await? {
            deliver(app, &mail, &claim, base_backoff).await?;
        }
    }
    Ok(pass)
}

/// Sends one claimed mail and records the attempt, if the claim still holds.
async fn deliver(
    app: &App,
    mail: &mail_outbox::Model,
    claim: &Claim,
    base_backoff: Duration,
) -> crate::error::Result<()> {
    let message = Mail {
        to: mail.recipient.clone(),
        subject: mail.subject.clone(),
        body: mail.body.clone(),
    };
    let recorded = match app.mailer.send(&message).await {
        Ok(()) => store::outbox::mark_sent(&app.writer, claim, now()).await?,
        Err(error) => {
            let wait = backoff(base_backoff, mail.attempts);
            tracing::warn!(mail_id = %mail.id, attempts = mail.attempts + 1, %error, "mail delivery failed; will retry");
            let retry_at = after(wait);
            store::outbox::mark_failed(&app.writer, claim, &error, retry_at).await?
        }
    };
    if !recorded {
        tracing::warn!(mail_id = %mail.id, "the claim on this mail lapsed during the attempt; another worker has it");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::SMTP_COMMAND_TIMEOUT;

    /// A claim outlasts any attempt made under it, with room to record the
    /// outcome: another replica never claims a mail still being sent.
    #[test]
    fn a_claim_outlasts_the_longest_delivery() {
        assert!(SEND_TIMEOUT > SMTP_COMMAND_TIMEOUT);
        assert!(CLAIM_LEASE >= 2 * SEND_TIMEOUT, "{CLAIM_LEASE:?} vs {SEND_TIMEOUT:?}");
    }
}
