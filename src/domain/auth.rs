//! Logging in, changing one's password, accepting an invitation, and the
//! throttling that guards them (Keycloak's brute-force detection as the model,
//! without its permanent-lockout trap: lockouts are temporary and grow).

use std::{
    net::{IpAddr, Ipv6Addr},
    sync::Arc,
    time::Duration,
};

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, EntityTrait, TransactionTrait};
use uuid::Uuid;

use crate::{
    app::App,
    auth::{
        Call, Principal,
        access::TenantKey,
        token::{SubjectKind, TokenRequest},
    },
    domain::{
        audit::{self, Origin, Target},
        credentials, invitations, now,
        users::{self, STATUS_ACTIVE, STATUS_PENDING, UserRecord},
        validate::{self, MAX_TEXT},
    },
    error::{Error, Result, Violations},
    store::{
        self,
        credentials::ThrottleLimits,
        entity::{tenant, user},
        invalidation::Change,
    },
};

/// A Login request.
#[derive(Clone)]
pub struct LoginCommand {
    pub username: String,
    pub password: String,
    /// Tenant id or slug; empty = the user's first tenant.
    pub tenant: String,
    /// The client's address, for per-address throttling.
    pub client: Option<IpAddr>,
    /// The call, for the audit trail.
    pub call: Call,
}

debug_without_secrets!(LoginCommand {
    username,
    tenant,
    client,
    call
});

/// A successful login.
#[derive(Clone)]
pub struct LoginGrant {
    pub access_token: String,
    pub expires_in: Duration,
    pub password_change_required: bool,
}

debug_without_secrets!(LoginGrant {
    expires_in,
    password_change_required
});

fn chrono_duration(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

fn limits(app: &App, max_failures: i32) -> ThrottleLimits {
    let config = &app.config;
    ThrottleLimits {
        max_failures: max_failures.max(1),
        window: chrono_duration(config.login_failure_window.into()),
        lockout: chrono_duration(config.login_lockout.into()),
        max_lockout: chrono_duration(config.login_max_lockout.into()),
    }
}

fn account_key(username: &str) -> String {
    format!("user:{}", username.trim().to_lowercase())
}

/// The per-address counter's key: an IPv4 address (also one an IPv6
/// socket sees as IPv4-mapped), or an IPv6 address's /64, the block one
/// subscriber is usually given and could otherwise rotate through.
fn address_key(address: IpAddr) -> String {
    match address.to_canonical() {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & (u128::MAX << 64);
            format!("ip:{}/64", Ipv6Addr::from(network))
        }
    }
}

/// Counts one attempt against the account and the client address before the
/// password is evaluated (one statement, unless one of them is locked or used
/// up); refuses with the wait when either is locked.
async fn reserve_attempt(app: &App, username: &str, client: Option<IpAddr>) -> Result<()> {
    let now = now();
    let account = account_key(username);
    let address = client.map(address_key);
    let mut counters = vec![(account.as_str(), limits(app, app.config.login_max_failures))];
    if let Some(address) = &address {
        counters.push((address.as_str(), limits(app, app.config.login_max_failures_per_address)));
    }
    let locked_until = store::credentials::reserve_attempts(&app.writer, &counters, now).await?;
    let Some(until) = locked_until else {
        return Ok(());
    };
    ::metrics::counter!("castellan_login_throttled_total").increment(1);
    Err(Error::Throttled {
        retry_after: (until - now)
            .to_std()
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_secs(1)),
    })
}

/// The counters after an attempt whose password was right (a login, a
/// password change): the account's failures are forgiven, and the client's
/// address gets back the attempt this one reserved, so that successes never
/// add up to its lockout (many users behind one address).
async fn forgive_attempt<C: ConnectionTrait>(db: &C, username: &str, client: Option<IpAddr>) -> Result<()> {
    store::credentials::clear_attempts(db, &account_key(username)).await?;
    if let Some(address) = client {
        store::credentials::release_attempt(db, &address_key(address), now()).await?;
    }
    Ok(())
}

/// A username no account can have (see [`validate::may_be_username`]: one
/// too long, or with a control character) is refused as an unknown one is,
/// before anything is counted or looked up: it never becomes a key of the
/// throttling counters (their primary key, which on PostgreSQL a 20 KB one
/// overflowed), nor a query's value.
fn refuse_impossible_username(username: &str) -> Result<()> {
    if validate::may_be_username(username) {
        Ok(())
    } else {
        Err(Error::InvalidCredentials)
    }
}

/// Forgets the throttling counters that hold nothing back any more: those
/// not locked whose window began more than a window and the longest lockout
/// ago (a lockout's end begins a window). An attempt under one would begin
/// a new window anyway; what goes with it is its count of lockouts, which
/// doubles the next wait, kept until nothing was attempted under it for the
/// longest lockout after its window. Returns how many it forgot.
pub async fn forget_idle_attempts(app: &App) -> Result<u64> {
    let config = &app.config;
    let idle = chrono_duration(config.login_failure_window.into())
        .checked_add(&chrono_duration(config.login_max_lockout.into()))
        .unwrap_or(chrono::Duration::MAX);
    let now = now();
    match now.checked_sub_signed(idle) {
        Some(before) => store::credentials::forget_attempts(&app.writer, before, now).await,
        None => Ok(0),
    }
}

/// The shortest wait between two runs of [`forget_idle_attempts`]: a window
/// of zero (or of a few milliseconds, as tests set) must not make it a busy
/// loop on the database's writer.
const MIN_FORGETTING_INTERVAL: Duration = Duration::from_millis(100);

/// Runs until aborted: [`forget_idle_attempts`] at once, then once a login
/// failure window (`login_failure_window`, at least
/// [`MIN_FORGETTING_INTERVAL`]). Every failed login of an unknown username
/// leaves a throttling counter, which nothing else deletes. A run that
/// fails is logged and the next one tries again.
pub async fn forget_idle_attempts_continuously(app: Arc<App>) {
    let every = Duration::from(app.config.login_failure_window).max(MIN_FORGETTING_INTERVAL);
    let mut interval = tokio::time::interval(every);
    // After a run that outlasted the window (a database outage), wait a
    // whole window again rather than run several times in a row.
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(error) = forget_idle_attempts(&app).await {
            tracing::warn!(%error, "forgetting idle login throttling counters failed");
        }
    }
}

/// A user whose password was verified, with the hash it matched.
struct Verified {
    user: user::Model,
    password_hash: String,
}

/// Verifies a password for a username. Unknown users and users without a
/// password cost a dummy hash, so the answer takes the same time.
async fn check_password(app: &App, username: &str, password: &str) -> Result<Option<Verified>> {
    let found = store::credentials::user_with_credential(&app.db, username).await?;
    let (user, hash) = match found {
        Some((user, Some(credential))) => (Some(user), credential.password_hash),
        _ => (None, credentials::DUMMY_PASSWORD_HASH.to_owned()),
    };
    let matches = credentials::verify_password(password.to_owned(), hash.clone()).await?;
    if !matches {
        ::metrics::counter!("castellan_login_failures_total").increment(1);
    }
    Ok(user.filter(|_| matches).map(|user| Verified {
        user,
        password_hash: hash,
    }))
}

pub async fn login(app: &App, command: LoginCommand) -> Result<LoginGrant> {
    let mut violations = Violations::new();
    if command.username.trim().is_empty() {
        violations.add("username", "is required");
    }
    if command.password.is_empty() {
        violations.add("password", "is required");
    }
    violations.finish()?;
    refuse_impossible_username(&command.username)?;
    reserve_attempt(app, &command.username, command.client).await?;
    let Verified { user, password_hash } = check_password(app, &command.username, &command.password)
        .await?
        .filter(|verified| verified.user.status == STATUS_ACTIVE)
        .ok_or(Error::InvalidCredentials)?;
    let tenant_id = if command.tenant.trim().is_empty() {
        // The first tenant that is not SUSPENDED, else the first (which
        // admits the user only if it holds a global role, below).
        match store::credentials::first_active_tenant(&app.db, user.id).await? {
            Some(tenant_id) => Some(tenant_id),
            None => store::credentials::first_tenant(&app.db, user.id).await?,
        }
    } else {
        // Only a key that may name a tenant is looked up (a NUL in another,
        // which PostgreSQL refuses in text, never reaches a query).
        let key = command.tenant.trim();
        let tenant = match TenantKey::parse(key) {
            Some(_) => store::tenants::resolve(&app.db, key).await?,
            None => None,
        };
        match tenant {
            Some(tenant)
                if store::users::find_in_tenant(&app.db, tenant.id, user.id)
                    .await?
                    .is_some() =>
            {
                Some(tenant.id)
            }
            _ => None,
        }
    }
    .ok_or(Error::InvalidCredentials)?;
    // A suspended tenant admits its global users alone (platform
    // administrators, who must be able to reactivate it) and refuses the
    // others as an inactive user is refused, telling nothing more.
    if let Some(tenant) = app.access.tenant(&app.db, TenantKey::Id(tenant_id)).await?
        && tenant.suspended
        && !app.access.user_access(&app.db, user.id, tenant_id).await?.global
    {
        return Err(Error::InvalidCredentials);
    }

    let password_change_required = user.password_change_required;
    let connected_at = now();
    // The success's bookkeeping, one transaction: the throttling counters
    // forgive this attempt, `lastConnection` and its audit entry.
    let txn = app.writer.begin().await?;
    forgive_attempt(&txn, &command.username, command.client).await?;
    if !store::users::record_login(&txn, user.id, user.token_generation, connected_at).await? {
        // Deleted, deactivated or reset since its password was checked.
        return Err(Error::InvalidCredentials);
    }
    let origin = Origin::user(user.id, Some(tenant_id), command.call);
    audit::record(&txn, origin, Target::User(user.id), &["last_connection"]).await?;
    app.commit_connection(txn, tenant_id, user.id, connected_at).await?;
    // A hash made otherwise than this release makes them is made again now
    // that the password is known: stored hashes follow the parameters, and
    // no account answers at the pace of older, costlier ones. Best effort:
    // the login stands either way.
    if credentials::is_outdated(&password_hash) {
        let rehashed = async {
            let fresh = credentials::hash_password(command.password.clone()).await?;
            store::credentials::rehash_password(&app.writer, user.id, &password_hash, fresh, now()).await
        };
        if let Err(error) = rehashed.await {
            tracing::warn!(%error, "could not store the password's fresh hash");
        }
    }

    let ttl = app.config.token_ttl();
    let (access_token, _) = app.keys.issue(&TokenRequest {
        kind: SubjectKind::User,
        subject: user.id.to_string(),
        tenant_id,
        permissions: Vec::new(),
        global: false,
        // As read before the hash, and still so at `record_login` above.
        generation: user.token_generation,
        ttl,
    })?;
    Ok(LoginGrant {
        access_token,
        expires_in: ttl,
        password_change_required,
    })
}

/// The caller changes its own password; a wrong current password answers and
/// counts exactly like a failed login.
pub async fn change_password(
    app: &App,
    caller: &Principal,
    current: &str,
    new: &str,
    client: Option<IpAddr>,
) -> Result<()> {
    let user_id = caller
        .user_id()
        .ok_or_else(|| Error::FailedPrecondition("ChangePassword needs a user token".into()))?;
    let user = user::Entity::find_by_id(user_id)
        .one(&app.db)
        .await?
        .ok_or(Error::NotFound("user"))?;
    change_password_as(app, ChangedBy::Caller(caller), &user.username, current, new, client).await
}

/// Changes a password given the username and the current password: the HTML
/// page's way in. `call` is the page's, under the RPC's name.
pub async fn change_password_of(
    app: &App,
    username: &str,
    current: &str,
    new: &str,
    client: Option<IpAddr>,
    call: Call,
) -> Result<()> {
    change_password_as(app, ChangedBy::Page(call), username, current, new, client).await
}

/// Who changes a password: a caller with its token, or the HTML page.
enum ChangedBy<'a> {
    Caller(&'a Principal),
    Page(Call),
}

/// Changes a password; the audit event names the caller's tenant and call,
/// or for the HTML page the user's first tenant and the page's call. The new
/// password is hashed only once the current one is checked, so a throttled
/// or wrong attempt costs no more than a login.
async fn change_password_as(
    app: &App,
    by: ChangedBy<'_>,
    username: &str,
    current: &str,
    new: &str,
    client: Option<IpAddr>,
) -> Result<()> {
    let mut violations = Violations::new();
    if username.trim().is_empty() {
        violations.add("username", "is required");
    }
    if current.is_empty() {
        violations.add("current_password", "is required");
    }
    credentials::check_policy(&mut violations, "new_password", new, app.config.password_min_length);
    violations.finish()?;
    refuse_impossible_username(username)?;
    reserve_attempt(app, username, client).await?;
    let Verified { user, password_hash } = check_password(app, username, current)
        .await?
        .filter(|verified| verified.user.status == STATUS_ACTIVE)
        .ok_or(Error::InvalidCredentials)?;
    // As Login: a user whose every tenant is SUSPENDED (and who holds no
    // global role) is refused as an inactive one is, on the page too.
    if store::credentials::first_active_tenant(&app.db, user.id)
        .await?
        .is_none()
        && !store::access::user_state(&app.db, user.id, Uuid::nil())
            .await?
            .is_some_and(|state| state.has_global_role)
    {
        return Err(Error::InvalidCredentials);
    }
    forgive_attempt(&app.writer, username, client).await?;
    let hash = credentials::hash_password(new.to_owned()).await?;
    let origin = match by {
        ChangedBy::Caller(caller) => Origin::from(caller),
        ChangedBy::Page(call) => Origin::user(user.id, store::credentials::first_tenant(&app.db, user.id).await?, call),
    };
    let now = now();
    let txn = app.writer.begin().await?;
    // The user's row first (the order of every writer of a user: its
    // credential next), then the user and its password as they are now: one
    // deactivated, deleted, reset or given another password while the new
    // one was hashed keeps what it has now (a change made with a stolen
    // password never undoes an administrator's reset).
    let user_id = user.id;
    if !store::users::lock(&txn, user_id).await? {
        return Err(Error::InvalidCredentials);
    }
    let generation = user.token_generation;
    let user = user::Entity::find_by_id(user_id)
        .one(&txn)
        .await?
        .filter(|user| user.status == STATUS_ACTIVE && user.token_generation == generation)
        .ok_or(Error::InvalidCredentials)?;
    let unchanged = store::credentials::credential_of(&txn, user_id)
        .await?
        .is_some_and(|credential| credential.password_hash == password_hash);
    if !unchanged {
        return Err(Error::InvalidCredentials);
    }
    store::credentials::set_password_hash(&txn, user_id, hash, now).await?;
    let mut active: user::ActiveModel = user.into();
    active.password_change_required = Set(false);
    active.updated_at = Set(now);
    active.update(&txn).await?;
    let fields = ["password", "password_change_required"];
    audit::record(&txn, origin, Target::User(user_id), &fields).await?;
    app.commit(txn, Change::Access(user_id)).await?;
    Ok(())
}

/// What an open invitation is for: shown on the page that accepts it.
#[derive(Debug, Clone)]
pub struct InvitationDetails {
    pub email: String,
    pub tenant_name: String,
    pub first_name: String,
    pub last_name: String,
}

/// Describes the open invitation with this token, without using it. Unknown,
/// used and expired tokens (and an invited user who is no longer PENDING, or
/// no longer a member of the invitation's tenant) all answer the same
/// NOT_FOUND, as [`accept_invitation`] does, so nothing tells which users
/// exist.
pub async fn describe_invitation(app: &App, token: &str) -> Result<InvitationDetails> {
    let token = token.trim();
    if token.is_empty() {
        return Err(Error::NotFound("invitation"));
    }
    let invitation = store::credentials::open_invitation(&app.db, &invitations::token_hash(token), now())
        .await?
        .ok_or(Error::NotFound("invitation"))?;
    refuse_if_suspended(app, invitation.tenant_id).await?;
    let user = store::users::find_in_tenant(&app.db, invitation.tenant_id, invitation.user_id)
        .await?
        .filter(|user| user.status == STATUS_PENDING)
        .ok_or(Error::NotFound("invitation"))?;
    let tenant = tenant::Entity::find_by_id(invitation.tenant_id)
        .one(&app.db)
        .await?
        .ok_or(Error::NotFound("invitation"))?;
    Ok(InvitationDetails {
        email: user.email,
        tenant_name: tenant.name,
        first_name: user.first_name,
        last_name: user.last_name,
    })
}

/// An invitation from a SUSPENDED tenant is shown and accepted no more
/// than an unknown one (Keycloak's disabled realm refuses its e-mailed
/// links likewise); it works again once the tenant is ACTIVE.
async fn refuse_if_suspended(app: &App, tenant_id: Uuid) -> Result<()> {
    match app.access.tenant(&app.db, TenantKey::Id(tenant_id)).await? {
        Some(tenant) if !tenant.suspended => Ok(()),
        _ => Err(Error::NotFound("invitation")),
    }
}

/// An AcceptInvitation request.
#[derive(Clone, Default)]
pub struct AcceptInvitation {
    pub token: String,
    pub password: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// The call, for the audit trail.
    pub call: Call,
}

debug_without_secrets!(AcceptInvitation {
    first_name,
    last_name,
    call
});

/// Completes a PENDING user's account from its invitation: sets the password
/// (and names), makes it ACTIVE. A token works once; unknown, used and
/// expired tokens, and one whose user has left the invitation's tenant, all
/// answer NOT_FOUND.
pub async fn accept_invitation(app: &App, command: AcceptInvitation) -> Result<UserRecord> {
    let mut violations = Violations::new();
    if command.token.trim().is_empty() {
        violations.add("token", "is required");
    }
    credentials::check_policy(
        &mut violations,
        "password",
        &command.password,
        app.config.password_min_length,
    );
    let first_name = command
        .first_name
        .map(|v| validate::text(&mut violations, "first_name", &v, MAX_TEXT));
    let last_name = command
        .last_name
        .map(|v| validate::text(&mut violations, "last_name", &v, MAX_TEXT));
    violations.finish()?;
    let hash = invitations::token_hash(command.token.trim());
    let invitation = store::credentials::open_invitation(&app.db, &hash, now())
        .await?
        .ok_or(Error::NotFound("invitation"))?;
    refuse_if_suspended(app, invitation.tenant_id).await?;
    let password_hash = credentials::hash_password(command.password).await?;

    let txn = app.writer.begin().await?;
    // The user's row first (the order of every writer of a user: its
    // invitations and credential next), then the invitation is used, then
    // the user is read as it is now: a user deactivated (or deleted) while
    // the password was hashed is not made ACTIVE by an invitation read
    // before.
    if !store::users::lock(&txn, invitation.user_id).await? {
        return Err(Error::NotFound("invitation"));
    }
    // The time is read under the lock, and the invitation used only if it
    // is open then: one withdrawn meanwhile (a new e-mail ends it as of the
    // change's own time, which came before the change's commit and so
    // before this lock) takes over no account.
    let now = now();
    if !store::credentials::use_invitation(&txn, invitation.id, now).await? {
        return Err(Error::NotFound("invitation"));
    }
    // The tenant as it is now, held until the commit: one suspended (or
    // deleted) while the password was hashed admits no one, as
    // `refuse_if_suspended` refused it before.
    match store::tenants::hold(&txn, invitation.tenant_id).await? {
        Some(tenant) if tenant.status != crate::domain::tenants::STATUS_SUSPENDED => {}
        _ => return Err(Error::NotFound("invitation")),
    }
    // A member of the invitation's tenant still: one removed from it (its
    // invitations there ended then) is admitted to no tenant it left.
    let user = store::users::find_in_tenant(&txn, invitation.tenant_id, invitation.user_id)
        .await?
        .filter(|user| user.status == STATUS_PENDING)
        .ok_or(Error::NotFound("invitation"))?;
    store::credentials::set_password_hash(&txn, user.id, password_hash, now).await?;
    let mut fields = vec!["password", "status"];
    let mut active: user::ActiveModel = user.into();
    active.status = Set(STATUS_ACTIVE.to_owned());
    active.password_change_required = Set(false);
    if let Some(first_name) = first_name {
        active.set_first_name(first_name);
        fields.push("first_name");
    }
    if let Some(last_name) = last_name {
        active.set_last_name(last_name);
        fields.push("last_name");
    }
    active.updated_at = Set(now);
    active.update(&txn).await?;
    let origin = Origin::user(invitation.user_id, Some(invitation.tenant_id), command.call);
    audit::record(&txn, origin, Target::User(invitation.user_id), &fields).await?;
    let record = users::written_record(app, &txn, invitation.tenant_id, invitation.user_id).await?;
    app.commit(txn, Change::Access(invitation.user_id)).await?;
    Ok(record)
}

/// An administrator sets a user's password, temporary unless told otherwise.
/// A PENDING user becomes ACTIVE (its invitation is then useless). The
/// user's tokens issued before it stop working (`TOKEN_REVOKED`).
pub async fn reset_password(app: &App, caller: &Principal, id: &str, password: &str, temporary: bool) -> Result<()> {
    let id: Uuid = validate::id("id", id)?;
    let mut violations = Violations::new();
    credentials::check_policy(&mut violations, "password", password, app.config.password_min_length);
    violations.finish()?;
    users::member(app, caller, id).await?;
    // Checked before the hash (a refused reset costs none), and again under
    // the lock below.
    users::require_account_authority(&app.db, caller, "users:password-reset", id, "reset its password").await?;
    let hash = credentials::hash_password(password.to_owned()).await?;
    let now = now();
    let txn = app.writer.begin().await?;
    // The user's row first, then the user is read again: whether it becomes
    // ACTIVE goes by its status as it is now, not as it was before the hash
    // (a user deactivated meanwhile stays INACTIVE, one deleted is gone).
    let user = users::lock_member(&txn, caller.tenant_id, id).await?;
    users::require_account_authority(&txn, caller, "users:password-reset", id, "reset its password").await?;
    store::credentials::set_password_hash(&txn, id, hash, now).await?;
    let mut fields = vec!["password", "password_change_required"];
    let mut active: user::ActiveModel = user.clone().into();
    active.password_change_required = Set(temporary);
    // The tokens issued before the reset stop working.
    active.token_generation = Set(user.token_generation.wrapping_add(1));
    if user.status == STATUS_PENDING {
        active.status = Set(STATUS_ACTIVE.to_owned());
        fields.push("status");
    }
    active.updated_at = Set(now);
    active.update(&txn).await?;
    audit::record(&txn, caller, Target::User(id), &fields).await?;
    app.commit(txn, Change::Access(id)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::users::UserDraft;

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_and_a_mapped_ipv4_one_as_ipv4() {
        let key = |text: &str| address_key(text.parse().expect("an address"));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "ip:2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:bbbb::2"), key("2001:db8:1:2:aaaa::1"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("::ffff:192.0.2.7"), "ip:192.0.2.7");
        assert_eq!(key("192.0.2.7"), "ip:192.0.2.7");
    }

    /// What carries a password or a token prints neither through `Debug`.
    #[test]
    fn commands_with_secrets_print_none_of_them() {
        let login = LoginCommand {
            username: "jane@example.com".into(),
            password: "hunter2-password".into(),
            tenant: String::new(),
            client: None,
            call: Call::default(),
        };
        let grant = LoginGrant {
            access_token: "eyJ.secret.token".into(),
            expires_in: Duration::from_secs(60),
            password_change_required: false,
        };
        let accept = AcceptInvitation {
            token: "invitation-secret".into(),
            password: "hunter2-password".into(),
            ..Default::default()
        };
        let draft = UserDraft {
            email: "jane@example.com".into(),
            password: "hunter2-password".into(),
            ..Default::default()
        };
        let printed = format!("{login:?} {grant:?} {accept:?} {draft:?}");
        assert!(printed.contains("jane@example.com"), "{printed}");
        for secret in ["hunter2-password", "eyJ.secret.token", "invitation-secret"] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }
}
