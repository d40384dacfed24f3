//! A PostgreSQL server that the test owns and stops: health turns NOT_SERVING
//! and RPCs UNAVAILABLE while it is down, and both recover when it returns,
//! without restarting Castellan.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use castellan::pb::ListUsersRequest;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::helpers::{TestApp, authed, expect_code};

/// A private PostgreSQL cluster in a temp dir (initdb, trust auth, no fsync),
/// stopped and removed when dropped.
struct OwnedPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl OwnedPostgres {
    /// None when the PostgreSQL server binaries are not installed.
    fn init() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
            .find(|bin| bin.join("initdb").exists())?;
        let dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let cluster = Self { bin, dir, port };
        if running_as_root() {
            // initdb refuses to run as root: the cluster belongs to `postgres`.
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(cluster.dir.path()));
        }
        run(cluster
            .command("initdb")
            .args(["--auth=trust", "--username=postgres", "--no-sync", "--pgdata"])
            .arg(cluster.data()));
        cluster.start();
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A command for one of the server binaries, as `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn start(&self) {
        let options = format!(
            "-p {} -h 127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        run(self
            .command("pg_ctl")
            .args(["start", "--wait", "--silent", "-D"])
            .arg(self.data())
            .args(["-l"])
            .arg(self.dir.path().join("server.log"))
            .args(["-o", &options]));
    }

    fn stop(&self) {
        run(self
            .command("pg_ctl")
            .args(["stop", "--wait", "--silent", "-m", "immediate", "-D"])
            .arg(self.data()));
    }
}

impl Drop for OwnedPostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["stop", "--silent", "-m", "immediate", "-D"])
            .arg(self.data())
            .status();
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

#[track_caller]
fn run(command: &mut Command) {
    let output = command.output().expect("run a PostgreSQL tool");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn overall_health(app: &TestApp) -> i32 {
    HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .expect("health answers even without a database")
        .into_inner()
        .status
}

/// Polls the overall health until it reports `want` (the probe runs every 2 s).
async fn wait_for_health(app: &TestApp, want: ServingStatus) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while overall_health(app).await != want as i32 {
        assert!(Instant::now() < deadline, "health never became {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn readyz(app: &TestApp) -> u16 {
    reqwest::get(format!("http://{}/readyz", app.http_addr))
        .await
        .expect("readyz")
        .status()
        .as_u16()
}

#[tokio::test]
async fn stopping_the_database_turns_health_not_serving_and_rpcs_unavailable_until_it_returns() {
    let Some(postgres) = OwnedPostgres::init() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the database outage test: install the PostgreSQL server (apt-get install postgresql)"
        );
        eprintln!("SKIPPED: PostgreSQL server binaries not found under /usr/lib/postgresql");
        return;
    };
    let app = TestApp::spawn_on_database(&postgres.url(), &["--database-acquire-timeout", "1s"]).await;
    let token = app.token(&["users:list"]);
    let list = || {
        let mut users = app.users();
        let request = authed(ListUsersRequest::default(), &token);
        async move { users.list_users(request).await }
    };
    list().await.expect("list users while the database is up");
    assert_eq!(overall_health(&app).await, ServingStatus::Serving as i32);

    postgres.stop();
    expect_code(list().await, Code::Unavailable);
    wait_for_health(&app, ServingStatus::NotServing).await;
    assert_eq!(readyz(&app).await, 503);
    let liveness = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: "liveness".into(),
        })
        .await
        .expect("liveness")
        .into_inner()
        .status;
    assert_eq!(
        liveness,
        ServingStatus::Serving as i32,
        "liveness must not follow the database"
    );

    postgres.start();
    wait_for_health(&app, ServingStatus::Serving).await;
    assert_eq!(readyz(&app).await, 200);
    list().await.expect("list users after the database returned");
}

/// What the proxy in front of PostgreSQL does with its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Open,
    /// Closes every connection and refuses new ones.
    Cut,
    /// Keeps every connection open and carries nothing (a partition, or a
    /// NAT that forgot the connection without a word).
    Silent,
}

/// A TCP proxy to `upstream` that the test can cut or silence.
struct Proxy {
    addr: std::net::SocketAddr,
    link: tokio::sync::watch::Sender<Link>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (link, watch) = tokio::sync::watch::channel(Link::Open);
        let mut accepting = watch.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = accepting.wait_for(|link| *link == Link::Cut) => return,
                };
                let Ok((mut client, _)) = accepted else { return };
                let upstream = upstream.clone();
                let mut link = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
                        _ = link.wait_for(|link| *link != Link::Open) => {}
                    }
                    if *link.borrow() == Link::Silent {
                        // Holds both ends open, carrying nothing.
                        let _ = link.wait_for(|link| *link == Link::Cut).await;
                    }
                });
            }
        });
        Self { addr, link }
    }
}

/// The invalidation listener reports its connection lost at once, so that a
/// replica stops trusting its caches: when the connection closes and the
/// server cannot be reached again (sqlx would otherwise retry inside its
/// read without end, reporting nothing), and when it goes silent without
/// closing (it proves the connection answers after a quiet spell).
#[tokio::test]
async fn the_invalidation_listener_reports_a_cut_or_silent_connection_lost() {
    use castellan::store::invalidation::{ListenerEvent, listen};
    let Some(server_url) = std::env::var("CASTELLAN_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        return;
    };
    let after_host = server_url.find('@').map_or("postgres://".len(), |at| at + 1);
    let host_end = server_url[after_host..]
        .find('/')
        .map_or(server_url.len(), |slash| after_host + slash);
    for failure in [Link::Cut, Link::Silent] {
        let proxy = Proxy::start(server_url[after_host..host_end].to_owned()).await;
        let url = format!("{}{}{}", &server_url[..after_host], proxy.addr, &server_url[host_end..]);
        let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
        let listener = tokio::spawn(listen(
            url,
            uuid::Uuid::now_v7(),
            Duration::from_secs(1),
            move |event| {
                let _ = events.send(event);
            },
        ));
        assert_eq!(
            next_event(&mut received).await,
            Some(ListenerEvent::Listening),
            "{failure:?}"
        );
        // Quiet spells with an answering connection are no loss.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(received.is_empty(), "{failure:?}: {:?}", received.try_recv());
        proxy.link.send_replace(failure);
        assert_eq!(
            next_event(&mut received).await,
            Some(ListenerEvent::Lost),
            "{failure:?}"
        );
        listener.abort();
        proxy.link.send_replace(Link::Cut);
    }
}

/// The listener's next event, if it comes within 5 s.
async fn next_event(
    received: &mut tokio::sync::mpsc::UnboundedReceiver<castellan::store::invalidation::ListenerEvent>,
) -> Option<castellan::store::invalidation::ListenerEvent> {
    tokio::time::timeout(Duration::from_secs(5), received.recv())
        .await
        .ok()
        .flatten()
}

/// On PostgreSQL a write answers once its own change notice has come back
/// to its replica (the other replicas have theirs then): once the listener
/// is up, every write hears its notice, and none waits in vain.
#[tokio::test]
async fn a_write_answers_once_its_change_notice_came_back() {
    use castellan::store::invalidation::{Change, ECHO_WAIT};
    use sea_orm::TransactionTrait;
    if std::env::var("CASTELLAN_TEST_DATABASE_URL").map_or(true, |url| url.is_empty()) {
        return;
    }
    // Writes made before the listener is up wait for nothing: on an app
    // whose listener never started, a commit (its notice sent in its
    // transaction) answers at once, awaiting no notice.
    let dir = tempfile::tempdir().expect("temp dir");
    let (unlistened, _database) = crate::helpers::build_app(dir.path(), &[]).await;
    let started = Instant::now();
    let txn = unlistened.writer.begin().await.expect("begin");
    unlistened.commit(txn, Change::Directory).await.expect("commit");
    assert!(started.elapsed() < ECHO_WAIT, "waited {:?}", started.elapsed());
    assert_eq!(unlistened.echoes.heard(), (0, 0), "no notice was waited for");

    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let mut tenants = app.tenants();
    let rename = |name: String| {
        authed(
            castellan::pb::UpdateTenantRequest {
                id: app.tenant_id.to_string(),
                name,
                ..Default::default()
            },
            &admin,
        )
    };
    // Here too the writes made before the listener is up wait for nothing,
    // and the first one made after it hears its notice.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut n = 0;
    while app.app.echoes.heard().0 == 0 {
        assert!(Instant::now() < deadline, "no write heard its notice");
        n += 1;
        tenants
            .update_tenant(rename(format!("Default {n}")))
            .await
            .expect("rename");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The writes before the listener was up waited for nothing (one racing
    // its LISTEN may count as unheard), the first after it heard its notice.
    let (heard, unheard) = app.app.echoes.heard();
    assert!(heard == 1 && unheard <= 1, "of {n} writes: ({heard}, {unheard})");
    // Every next write waits for its notice, and hears it: within the 1 s
    // bound all but one on a loaded machine, say.
    const WRITES: u64 = 10;
    for i in 0..WRITES {
        tenants
            .update_tenant(rename(format!("Again {i}")))
            .await
            .expect("rename");
    }
    let (now_heard, now_unheard) = app.app.echoes.heard();
    assert_eq!(
        now_heard + now_unheard,
        heard + unheard + WRITES,
        "each write waited for its notice"
    );
    assert!(
        now_heard >= heard + WRITES - 1,
        "the writes heard their notices: ({now_heard}, {now_unheard})"
    );
}
