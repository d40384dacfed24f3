//! The database URL as logs may show it: its secrets (the password of its
//! user info, a `password` query parameter) masked. A connection error can
//! quote the whole URL (sea-orm does for one it cannot parse or has no
//! driver for), so what is logged about connecting goes through here.

/// What a secret is replaced with.
const MASK: &str = "***";

/// `url` with its secrets masked: `postgres://user:***@host/db`, and
/// `?password=***`. The user info runs up to the URL's last `@`, so that a
/// password with an unescaped `/`, `?`, `#` or `@` (a URL that does not
/// parse) is masked whole.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let (user_info, location) = match rest.rsplit_once('@') {
        Some((user_info, location)) => (redact_user_info(user_info), location),
        None => (String::new(), rest),
    };
    let location = match location.split_once('?') {
        Some((path, query)) => format!("{path}?{}", redact_query(query)),
        None => location.to_owned(),
    };
    format!("{scheme}{user_info}{location}")
}

/// `text` (what went wrong connecting to `url`) with the secrets of `url`
/// masked wherever it quotes them, the URL whole or only its password.
pub fn scrub(text: &str, url: &str) -> String {
    secrets(url)
        .into_iter()
        .fold(text.replace(url, &redact(url)), |text, secret| {
            text.replace(secret, MASK)
        })
}

/// `user:password` as `user:***`, followed by the `@`.
fn redact_user_info(user_info: &str) -> String {
    match user_info.split_once(':') {
        Some((user, _)) => format!("{user}:{MASK}@"),
        None => format!("{user_info}@"),
    }
}

/// A query string with the value of each parameter whose name holds
/// `password` (`password`, `sslpassword`) masked.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_password(name) => format!("{name}={MASK}"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn is_password(name: &str) -> bool {
    name.to_ascii_lowercase().contains("password")
}

/// The secrets `url` holds, as written in it (none empty).
fn secrets(url: &str) -> Vec<&str> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (user_info, location) = rest.rsplit_once('@').unwrap_or(("", rest));
    let password = user_info.split_once(':').map(|(_, password)| password);
    let query = location.split_once('?').map_or("", |(_, query)| query);
    let parameters = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, _)| is_password(name))
        .map(|(_, value)| value);
    password
        .into_iter()
        .chain(parameters)
        .filter(|secret| !secret.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_and_the_rest_kept() {
        let cases = [
            (
                "postgres://castellan:hunter2@db:5432/castellan",
                "postgres://castellan:***@db:5432/castellan",
            ),
            (
                "postgres://castellan:hun/ter?2@db/castellan?sslmode=require",
                "postgres://castellan:***@db/castellan?sslmode=require",
            ),
            (
                "postgres://castellan@db/castellan?password=hunter2&sslpassword=x",
                "postgres://castellan@db/castellan?password=***&sslpassword=***",
            ),
            ("postgres://db/castellan", "postgres://db/castellan"),
            (
                "sqlite://./data/castellan.db?mode=rwc",
                "sqlite://./data/castellan.db?mode=rwc",
            ),
            ("castellan:hunter2@db", "castellan:***@db"),
        ];
        for (url, redacted) in cases {
            assert_eq!(redact(url), redacted, "{url}");
        }
    }

    #[test]
    fn an_error_quoting_the_url_or_its_password_is_scrubbed() {
        let url = "postgres://castellan:hunter2@db host/castellan?password=swordfish";
        let error = format!("The connection string '{url}' cannot be parsed; hunter2 and swordfish");
        let scrubbed = scrub(&error, url);
        assert!(
            !scrubbed.contains("hunter2") && !scrubbed.contains("swordfish"),
            "{scrubbed}"
        );
        assert!(
            scrubbed.contains("postgres://castellan:***@db host/castellan"),
            "{scrubbed}"
        );
    }
}
