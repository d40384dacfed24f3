//! Outgoing mail: the mailer chosen by `CASTELLAN_MAILER` (the log mailer for
//! development, SMTP through lettre), and the outbox worker that delivers
//! what the domain wrote to the outbox, with retries and backoff.

pub mod outbox;

use std::time::Duration;

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor, message::Mailbox,
    transport::smtp::authentication::Credentials,
};

use crate::{
    config::{Config, MailerKind, SmtpTls},
    error::{Error, Result},
};

/// How long the SMTP server may take over one step of a delivery
/// (connecting, or answering one command) before the attempt fails. Set
/// explicitly rather than left to lettre's default (60 s a step), since the
/// outbox's claim lease is derived from the whole delivery's bound below.
pub const SMTP_COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// The longest one delivery may take, all its steps together: past it the
/// attempt is abandoned and the mail retried later. A delivery is some ten
/// steps (connect, EHLO, STARTTLS, EHLO, AUTH, MAIL, RCPT, DATA, the
/// message, QUIT), so [`SMTP_COMMAND_TIMEOUT`] alone would not bound it.
/// The outbox's claim lease ([`outbox::CLAIM_LEASE`]) is twice this, so
/// that no other replica claims a mail while an attempt at it may still be
/// under way.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// One mail to deliver.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Delivers mails. An enum rather than a trait object: there are exactly two
/// ways, both chosen from configuration.
pub enum Mailer {
    /// Writes each mail (and so its link) to the log. Development only.
    Log,
    Smtp {
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
        from: Mailbox,
    },
}

impl Mailer {
    pub fn from_config(config: &Config) -> Result<Self> {
        match config.mailer {
            MailerKind::Log => Ok(Mailer::Log),
            MailerKind::Smtp => {
                let host = config.smtp_host.as_str();
                let builder = match config.smtp_tls {
                    SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
                    SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                        .map_err(|e| Error::internal(format!("SMTP relay {host}: {e}")))?,
                    SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                        .map_err(|e| Error::internal(format!("SMTP relay {host}: {e}")))?,
                };
                let mut builder = builder.port(config.smtp_port).timeout(Some(SMTP_COMMAND_TIMEOUT));
                if let (Some(username), Some(password)) = (&config.smtp_username, &config.smtp_password) {
                    builder = builder.credentials(Credentials::new(username.clone(), password.clone()));
                }
                let from = config
                    .smtp_from
                    .parse()
                    .map_err(|_| Error::invalid("CASTELLAN_SMTP_FROM", "must be a mailbox such as Name <a@b.c>"))?;
                Ok(Mailer::Smtp {
                    transport: Box::new(builder.build()),
                    from,
                })
            }
        }
    }

    /// Delivers one mail within [`SEND_TIMEOUT`]; the error text is kept in
    /// the outbox for operators.
    pub async fn send(&self, mail: &Mail) -> std::result::Result<(), String> {
        tokio::time::timeout(SEND_TIMEOUT, self.deliver(mail))
            .await
            .unwrap_or_else(|_| Err(format!("no delivery within {}s", SEND_TIMEOUT.as_secs())))
    }

    /// The delivery itself, with no bound on its whole: [`Self::send`] sets one.
    async fn deliver(&self, mail: &Mail) -> std::result::Result<(), String> {
        match self {
            Mailer::Log => {
                tracing::info!(to = %mail.to, subject = %mail.subject, body = %mail.body, "mail (log mailer)");
                Ok(())
            }
            Mailer::Smtp { transport, from } => {
                // The bare address (a mailbox's parser would read a quoted
                // local part as a display name).
                let to = Mailbox::new(None, mail.to.parse().map_err(|e| format!("recipient: {e}"))?);
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(mail.subject.clone())
                    .body(mail.body.clone())
                    .map_err(|e| format!("building the message: {e}"))?;
                transport.send(message).await.map(|_| ()).map_err(|e| e.to_string())
            }
        }
    }
}
