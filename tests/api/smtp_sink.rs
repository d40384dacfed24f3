//! A local SMTP sink for tests: speaks enough SMTP for lettre, records each
//! message, and can refuse the first N deliveries with a temporary error to
//! exercise the outbox's retries.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};

#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    messages: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    /// Starts the sink; the first `refuse_first` deliveries get `451`.
    pub async fn start(refuse_first: usize) -> Self {
        Self::start_slow(refuse_first, Duration::ZERO).await
    }

    /// Starts a sink that takes `delay` to accept each message (after its
    /// final `.`), like a slow server.
    pub async fn start_slow(refuse_first: usize, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind SMTP sink");
        let port = listener.local_addr().expect("addr").port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let refusals = Arc::new(AtomicUsize::new(refuse_first));
        let recorded = messages.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let recorded = recorded.clone();
                let refusals = refusals.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                    let mut in_data = false;
                    let mut message = String::new();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if in_data {
                            if line == "." {
                                in_data = false;
                                tokio::time::sleep(delay).await;
                                recorded.lock().expect("lock").push(std::mem::take(&mut message));
                                let _ = write.write_all(b"250 OK queued\r\n").await;
                            } else {
                                message.push_str(&line);
                                message.push('\n');
                            }
                            continue;
                        }
                        let verb = line.split(' ').next().unwrap_or_default().to_ascii_uppercase();
                        let reply: &[u8] = match verb.as_str() {
                            "EHLO" | "HELO" => b"250-sink\r\n250 8BITMIME\r\n",
                            "MAIL" => {
                                let refused = refusals
                                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                                    .is_ok();
                                if refused {
                                    b"451 try again later\r\n"
                                } else {
                                    b"250 OK\r\n"
                                }
                            }
                            "RCPT" | "RSET" | "NOOP" => b"250 OK\r\n",
                            "DATA" => {
                                in_data = true;
                                b"354 go ahead\r\n"
                            }
                            "QUIT" => {
                                let _ = write.write_all(b"221 bye\r\n").await;
                                break;
                            }
                            _ => b"502 not implemented\r\n",
                        };
                        let _ = write.write_all(reply).await;
                    }
                });
            }
        });
        Self { port, messages }
    }

    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().expect("lock").clone()
    }

    /// Waits (up to 15 s) until `count` messages arrived.
    pub async fn wait_for(&self, count: usize) -> Vec<String> {
        for _ in 0..150 {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("expected {count} mails, got {:?}", self.messages());
    }
}

/// The invitation token in a mail's link (quoted-printable soft breaks undone).
pub fn invitation_token(message: &str) -> String {
    let unfolded = message.replace("=\n", "").replace("=3D", "=");
    let start = unfolded.find("token=").expect("a link with a token") + "token=".len();
    unfolded[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}
