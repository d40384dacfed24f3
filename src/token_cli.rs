//! `castellan token`: prints a signed service token, for operators and tests.

use crate::{
    auth::token::{SubjectKind, TokenKeys, TokenRequest},
    config::{Config, TokenArgs},
    domain::users::valid_permission,
    error::{Error, Result},
    store,
};

pub async fn run(config: &Config, args: &TokenArgs) -> Result<String> {
    if args.subject.trim().is_empty() {
        return Err(Error::invalid("--subject", "is required"));
    }
    if let Some(bad) = args.permissions.iter().find(|p| !valid_permission(p)) {
        return Err(Error::invalid(
            "--permission",
            format!("{bad:?} must look like resource:action or *"),
        ));
    }
    let db = store::connect(&config.database_url()).await?;
    if !config.no_migrate {
        store::migrate(&db).await?;
    }
    let tenant = store::tenants::resolve(&db, &args.tenant)
        .await?
        .ok_or_else(|| Error::invalid("--tenant", format!("no tenant {:?}", args.tenant)))?;
    let keys = TokenKeys::load_or_generate(&config.signing_key_path(), &config.issuer, &config.audience)?
        .with_verification_keys(&config.verification_key_files)?;
    let (token, _) = keys.issue(&TokenRequest {
        kind: SubjectKind::Service,
        subject: args.subject.clone(),
        tenant_id: tenant.id,
        permissions: args.permissions.clone(),
        global: args.global,
        ttl: args.ttl.map_or_else(|| config.token_ttl(), Into::into),
    })?;
    Ok(token)
}
