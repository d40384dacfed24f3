//! `castellan token`: prints a signed access token, for operators and tests:
//! a service token (`--subject`, with the permissions it claims) or a user
//! token (`--user`, the claims Login issues: the user's id as subject, the
//! tenant, no permissions; the server authorizes it with the user's live
//! effective permissions).

use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::{
    auth::token::{SubjectKind, TokenKeys, TokenRequest},
    config::{Config, TokenArgs},
    domain::{permissions::well_formed, users::STATUS_ACTIVE},
    error::{Error, Result},
    store::{self, PoolSettings, entity::user},
};

/// Mints the token. It only reads: it signs with the server's key, which
/// must exist (a key of its own would sign tokens no server accepts), and
/// reads the tenant and user from a database the server (or `castellan
/// migrate`) has migrated, never migrating it itself.
pub async fn run(config: &Config, args: &TokenArgs) -> Result<String> {
    if let Some(subject) = &args.subject {
        check_service_args(subject, args)?;
    }
    let keys = server_keys(config)?;
    let db = store::connect(&config.database_url(), PoolSettings::from(config)).await?;
    check_migrated(&db).await?;
    let tenant = store::tenants::resolve(&db, &args.tenant)
        .await?
        .ok_or_else(|| Error::invalid("--tenant", format!("no tenant {:?}", args.tenant)))?;
    let ttl = args.ttl.map_or_else(|| config.token_ttl(), Into::into);
    let request = match (&args.subject, &args.user) {
        (Some(subject), None) => TokenRequest {
            kind: SubjectKind::Service,
            subject: subject.clone(),
            tenant_id: tenant.id,
            permissions: args.permissions.clone(),
            global: args.global,
            generation: 0,
            ttl,
        },
        (None, Some(user)) => {
            let user = active_member(&db, user, tenant.id).await?;
            TokenRequest {
                kind: SubjectKind::User,
                subject: user.id.to_string(),
                tenant_id: tenant.id,
                permissions: Vec::new(),
                global: false,
                generation: user.token_generation,
                ttl,
            }
        }
        _ => return Err(Error::invalid("--user", "give exactly one of --subject and --user")),
    };
    let (token, _) = keys.issue(&request)?;
    Ok(token)
}

/// The server's signing key; an error naming where it was looked for when
/// there is none (the server generates it on its first start).
fn server_keys(config: &Config) -> Result<TokenKeys> {
    let path = config.signing_key_path();
    if !path.exists() {
        return Err(Error::invalid(
            "--signing-key-file",
            format!(
                "no signing key at {}: start the server first (it generates one), or name its key with \
                 --signing-key-file or --data-dir",
                path.display()
            ),
        ));
    }
    TokenKeys::load(&path, &config.issuer, &config.audience)?.with_verification_keys(&config.verification_key_files)
}

/// Refuses a database with migrations not applied (an empty one among
/// them), without applying them or creating the migrations table.
async fn check_migrated(db: &DatabaseConnection) -> Result<()> {
    match store::pending_migrations(db).await? {
        0 => Ok(()),
        pending => Err(Error::invalid(
            "--database-url",
            format!(
                "the database lacks {pending} migration(s): start the server or run `castellan migrate` on it first"
            ),
        )),
    }
}

fn check_service_args(subject: &str, args: &TokenArgs) -> Result<()> {
    if subject.trim().is_empty() {
        return Err(Error::invalid("--subject", "must not be empty"));
    }
    match args.permissions.iter().find(|p| !well_formed(p)) {
        Some(bad) => Err(Error::invalid(
            "--permission",
            format!("{bad:?} must look like resource:action or *"),
        )),
        None => Ok(()),
    }
}

/// The id of the ACTIVE member of the tenant named by id or username (as
/// Login would accept it).
async fn active_member(db: &DatabaseConnection, key: &str, tenant_id: Uuid) -> Result<user::Model> {
    let key = key.trim();
    let user = match Uuid::parse_str(key) {
        Ok(id) => store::users::find_in_tenant(db, tenant_id, id).await?,
        Err(_) => store::users::find_by_username_in_tenant(db, tenant_id, key).await?,
    }
    .ok_or_else(|| Error::invalid("--user", format!("no user {key:?} in this tenant")))?;
    if user.status != STATUS_ACTIVE {
        return Err(Error::invalid(
            "--user",
            format!("the user is {}; only active users get tokens", user.status),
        ));
    }
    Ok(user)
}
