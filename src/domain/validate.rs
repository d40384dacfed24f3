//! Field checks shared by the aggregates. Each pushes a violation naming the
//! field instead of failing, so a request reports every problem at once.

use std::str::FromStr;

use uuid::Uuid;

use crate::error::Violations;

/// Longest name, description or image reference accepted.
pub const MAX_TEXT: usize = 200;
pub const MAX_IMAGE: usize = 2048;
/// Longest role or group name.
pub const MAX_NAME: usize = 100;
/// Longest role or group description.
pub const MAX_DESCRIPTION: usize = 1000;
/// Longest e-mail address, and so username, in bytes.
pub const MAX_EMAIL: usize = 254;

/// A valid e-mail address, lowercased; `None` (with a violation) otherwise.
/// Control characters are refused, also where the address parser lets them
/// in (a tab in a quoted local part, a C1 control), so a username never
/// holds one (see [`may_be_username`]).
pub fn email(violations: &mut Violations, field: &str, value: &str) -> Option<String> {
    let value = value.trim();
    if value.is_empty() {
        violations.add(field, "is required");
        return None;
    }
    if value.len() > MAX_EMAIL
        || value.chars().any(char::is_control)
        || !email_address::EmailAddress::is_valid(value)
        || !value.contains('.')
    {
        violations.add(field, "must be a valid e-mail address");
        return None;
    }
    Some(value.to_lowercase())
}

/// Whether `value` may be a username: one of at most [`MAX_EMAIL`] bytes
/// without control characters, as [`email`] accepts them. A lookup by
/// anything else finds nobody, so it is answered without a query (and a
/// NUL, which PostgreSQL refuses in text, never reaches one).
pub fn may_be_username(value: &str) -> bool {
    let value = value.trim();
    value.len() <= MAX_EMAIL && !value.chars().any(char::is_control)
}

/// Optional free text up to `max` characters.
pub fn text(violations: &mut Violations, field: &str, value: &str, max: usize) -> String {
    let value = value.trim();
    if value.chars().count() > max {
        violations.add(field, format!("must be at most {max} characters"));
    }
    if value.chars().any(char::is_control) {
        violations.add(field, "must not contain control characters");
    }
    value.to_owned()
}

/// Required text of 1..=max characters.
pub fn required_text(violations: &mut Violations, field: &str, value: &str, max: usize) -> String {
    if value.trim().is_empty() {
        violations.add(field, "is required");
    }
    text(violations, field, value, max)
}

/// A UUID in its canonical form.
pub fn uuid(violations: &mut Violations, field: &str, value: &str) -> Option<Uuid> {
    match Uuid::from_str(value.trim()) {
        Ok(id) => Some(id),
        Err(_) if value.trim().is_empty() => {
            violations.add(field, "is required");
            None
        }
        Err(_) => {
            violations.add(field, "must be a UUID");
            None
        }
    }
}

/// A list of UUIDs, each named `field[i]`, without duplicates.
pub fn uuids(violations: &mut Violations, field: &str, values: &[String]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| uuid(violations, &format!("{field}[{i}]"), v))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Like [`uuids`], for a list of at most `max` ids: a longer one is one
/// violation naming the list (each id unchecked), and no ids, so nothing
/// goes on to the database (whose statements bind a bounded number of
/// parameters: some 32,000 on SQLite, 65,535 on PostgreSQL).
pub fn bounded_uuids(violations: &mut Violations, field: &str, values: &[String], max: usize) -> Vec<Uuid> {
    if values.len() > max {
        violations.add(field, format!("at most {max} ids"));
        return Vec::new();
    }
    uuids(violations, field, values)
}

/// An id that must be a UUID; anything else is treated as unknown by callers
/// that answer NOT_FOUND, but a malformed id is INVALID_ARGUMENT.
pub fn id(field: &str, value: &str) -> crate::error::Result<Uuid> {
    let mut violations = Violations::new();
    let id = uuid(&mut violations, field, value);
    violations.finish()?;
    id.ok_or_else(|| crate::error::Error::invalid(field, "must be a UUID"))
}
