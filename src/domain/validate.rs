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
/// holds one (see [`may_be_username`]). What is checked is the address as
/// stored, lowercased: lowercasing may lengthen one (`İ`, 2 bytes, is `i̇`,
/// 3) or shorten it (the Kelvin sign, 3 bytes, is `k`).
pub fn email(violations: &mut Violations, field: &str, value: &str) -> Option<String> {
    let value = value.trim();
    if value.is_empty() {
        violations.add(field, "is required");
        return None;
    }
    let lowered = (value.len() <= MAX_LOWERCASE_INPUT)
        .then(|| value.to_lowercase())
        .filter(|lowered| {
            lowered.len() <= MAX_EMAIL
                && !lowered.chars().any(char::is_control)
                && deliverable(lowered)
                && lowered.contains('.')
        });
    if lowered.is_none() {
        violations.add(field, "must be a valid e-mail address");
    }
    lowered
}

/// Whether `address` is one a mail can be sent to: a bare address, neither
/// `Name <address>` (whose mail would go to the address inside, another
/// account's) nor a domain literal (`a@[10.0.0.1]`), that the mailer's own
/// address parser takes too (else its invitations would never leave).
fn deliverable(address: &str) -> bool {
    use email_address::{EmailAddress, Options};
    let bare = Options::default().without_display_text().without_domain_literal();
    EmailAddress::parse_with_options(address, bare).is_ok() && address.parse::<lettre::Address>().is_ok()
}

/// Longest input whose lowercase may still be [`MAX_EMAIL`] bytes: no
/// character's lowercase is shorter than a third of it.
const MAX_LOWERCASE_INPUT: usize = 3 * MAX_EMAIL;

/// Whether `value` may be a username: at most [`MAX_EMAIL`] bytes as given
/// (as every username stored before the bound applied to the lowercase) or
/// lowercased, without control characters, as [`email`] accepts them. A
/// lookup by anything else finds nobody, so it is answered without a query
/// (and a NUL, which PostgreSQL refuses in text, never reaches one).
pub fn may_be_username(value: &str) -> bool {
    let value = value.trim();
    let bounded =
        value.len() <= MAX_EMAIL || (value.len() <= MAX_LOWERCASE_INPUT && value.to_lowercase().len() <= MAX_EMAIL);
    bounded && !value.chars().any(char::is_control)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `local@`, then labels of `unit` repeated (at most 42 bytes each, so
    /// that a label of `İ` is within 63 bytes lowercased too), then `.com`:
    /// an address of `n` bytes, give or take a unit.
    fn address(local: &str, unit: &str, n: usize) -> String {
        let mut address = format!("{local}@");
        while address.len() + 4 + unit.len() <= n {
            let room = (n - address.len() - 4 - 1).min(42) / unit.len();
            address.push_str(&unit.repeat(room.max(1)));
            address.push('.');
        }
        address.push_str("com");
        address
    }

    #[test]
    fn an_email_is_a_bare_address_a_mail_can_be_sent_to() {
        let mut violations = Violations::new();
        for accepted in [
            "jane@example.com",
            "Jane.Smith+tag@Example.COM",
            "jöhn@exämple.com",
            "o'neil@example.co.uk",
            "\"a b\"@example.com",
        ] {
            assert_eq!(
                email(&mut violations, "email", accepted),
                Some(accepted.to_lowercase()),
                "{accepted}"
            );
        }
        for refused in ["x <alice@corp.com>", "alice@[10.0.0.1]", "alice@localhost", "alice"] {
            assert_eq!(email(&mut violations, "email", refused), None, "{refused}");
        }
    }

    #[test]
    fn an_email_is_bounded_as_it_is_stored_lowercased() {
        let mut violations = Violations::new();
        // Within 254 bytes, but not once lowercased (each `İ` a byte longer).
        let lengthened = address("jane", "İ", 254);
        assert!(lengthened.len() <= MAX_EMAIL, "{}", lengthened.len());
        assert!(lengthened.to_lowercase().len() > MAX_EMAIL);
        assert_eq!(email(&mut violations, "email", &lengthened), None);
        // The same address with `I`, which lowercases to one byte, is valid.
        let plain = lengthened.replace('İ', "I");
        assert_eq!(email(&mut violations, "email", &plain), Some(plain.to_lowercase()));
        // Over 254 bytes, but not once lowercased (each Kelvin sign a `k`).
        let shortened = address(&"\u{212A}".repeat(21), "\u{212A}", 300);
        assert!(shortened.len() > MAX_EMAIL, "{}", shortened.len());
        let stored = email(&mut violations, "email", &shortened).expect("its lowercase fits");
        assert_eq!(stored, shortened.to_lowercase());
        assert!(stored.len() <= MAX_EMAIL);
        // Looked up by its uppercase; and a username stored lowercased past
        // 254 bytes before the bound still by the address it was given as.
        assert!(may_be_username(&shortened));
        assert!(may_be_username(&lengthened));
        assert!(may_be_username(&"a".repeat(MAX_EMAIL)));
        assert!(!may_be_username(&"a".repeat(MAX_EMAIL + 1)));
        assert!(!may_be_username(&"\u{212A}".repeat(20_000)));
        assert!(!may_be_username("jane\u{0}@example.com"));
    }
}
