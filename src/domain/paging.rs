//! Paging shared by every List operation (see common.proto): limits, sort
//! keys, offset paging, and opaque keyset cursors (`page_token`).
//!
//! A page token is the base64url JSON of the last row's sort values and id,
//! the position of the next page (so `page` stays meaningful) and a
//! fingerprint of the sort and filters it was issued for.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{Error, Result, Violations};

pub const DEFAULT_LIMIT: u64 = 10;
/// Upper bound of `limit` for FULL views.
pub const MAX_LIMIT: u64 = 100;
/// Upper bound of `limit` for BASIC views.
pub const MAX_BASIC_LIMIT: u64 = 1000;

/// A List request's paging fields, as received.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub limit: i32,
    pub offset: i32,
    pub page_token: String,
    pub sort: Vec<String>,
}

/// How a sortable field compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Time,
}

/// A field a List operation may sort by: its camelCase name (snake_case is
/// accepted too) and how it compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortField {
    pub name: &'static str,
    pub kind: FieldKind,
}

impl SortField {
    pub const fn text(name: &'static str) -> Self {
        Self {
            name,
            kind: FieldKind::Text,
        }
    }

    pub const fn time(name: &'static str) -> Self {
        Self {
            name,
            kind: FieldKind::Time,
        }
    }
}

/// One sort key of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    pub field: SortField,
    pub descending: bool,
}

/// A value of the cursor row. Both kinds travel as JSON strings; a token is
/// read back by the kinds of the sort it was issued for, so a name that
/// happens to look like a date stays text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CursorValue {
    Time(DateTime<Utc>),
    Text(String),
}

/// Where a keyset page starts: after the row with these sort values and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cursor {
    #[serde(rename = "v")]
    pub values: Vec<CursorValue>,
    #[serde(rename = "i")]
    pub id: Uuid,
    /// Position of the page this cursor starts.
    #[serde(rename = "p")]
    pub position: u64,
    /// Fingerprint of the sort and filters.
    #[serde(rename = "f")]
    pub fingerprint: String,
}

/// A validated List request.
#[derive(Debug, Clone)]
pub struct ListParams {
    pub limit: u64,
    pub offset: u64,
    pub sort: Vec<SortKey>,
    pub after: Option<Cursor>,
    fingerprint: String,
}

impl ListParams {
    /// Validates the paging fields against the sortable fields; `scope`
    /// describes the filters so a token cannot be replayed under others.
    /// The default order is the first field of `fields` ascending.
    pub fn parse(request: &PageRequest, fields: &[SortField], max_limit: u64, scope: &str) -> Result<Self> {
        let mut violations = Violations::new();
        let limit = match request.limit {
            0 => DEFAULT_LIMIT,
            n if n >= 1 && (n as u64) <= max_limit => n as u64,
            _ => {
                violations.add("limit", format!("must be between 1 and {max_limit}"));
                DEFAULT_LIMIT
            }
        };
        if request.offset < 0 {
            violations.add("offset", "must not be negative");
        }
        let mut sort = Vec::new();
        for (index, raw) in request.sort.iter().enumerate() {
            match parse_sort_key(raw, fields) {
                Some(key) if sort.iter().any(|k: &SortKey| k.field == key.field) => {
                    violations.add(
                        format!("sort[{index}]"),
                        format!("{} is sorted by twice", key.field.name),
                    );
                }
                Some(key) => sort.push(key),
                None => {
                    let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
                    violations.add(
                        format!("sort[{index}]"),
                        format!("unknown sort key {raw:?}; use one of {}", names.join(", ")),
                    );
                }
            }
        }
        if sort.is_empty()
            && let Some(first) = fields.first()
        {
            sort.push(SortKey {
                field: *first,
                descending: false,
            });
        }
        let fingerprint = fingerprint(&sort, scope);
        let after = if request.page_token.is_empty() {
            None
        } else {
            match decode_cursor(&request.page_token, &sort, &fingerprint) {
                Some(cursor) => Some(cursor),
                None => {
                    violations.add("page_token", "invalid or issued for another sort or filter");
                    None
                }
            }
        };
        violations.finish()?;
        Ok(Self {
            limit,
            offset: if after.is_some() {
                0
            } else {
                request.offset.max(0) as u64
            },
            sort,
            after,
            fingerprint,
        })
    }

    /// Position of the first row of this page.
    pub fn position(&self) -> u64 {
        self.after.as_ref().map_or(self.offset, |c| c.position)
    }

    /// Builds the page from up to `limit + 1` fetched rows; `id_of` gives a
    /// row's id and `value_of` its value of a sort field (by name).
    pub fn page<T>(
        &self,
        mut rows: Vec<T>,
        total: u64,
        id_of: impl Fn(&T) -> Uuid,
        value_of: impl Fn(&T, &str) -> CursorValue,
    ) -> Page<T> {
        let has_next = rows.len() as u64 > self.limit;
        rows.truncate(self.limit as usize);
        let position = self.position();
        let next_page_token = match rows.last() {
            Some(last) if has_next => {
                let values = self.sort.iter().map(|key| value_of(last, key.field.name)).collect();
                encode_cursor(&Cursor {
                    values,
                    id: id_of(last),
                    // A forged token may carry any position.
                    position: position.saturating_add(self.limit),
                    fingerprint: self.fingerprint.clone(),
                })
            }
            _ => String::new(),
        };
        Page {
            items: rows,
            total,
            page: position / self.limit,
            limit: self.limit,
            has_next,
            has_previous: position > 0,
            next_page_token,
        }
    }
}

/// One page of a List result.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub page: u64,
    pub limit: u64,
    pub has_next: bool,
    pub has_previous: bool,
    pub next_page_token: String,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            total: self.total,
            page: self.page,
            limit: self.limit,
            has_next: self.has_next,
            has_previous: self.has_previous,
            next_page_token: self.next_page_token,
        }
    }
}

fn parse_sort_key(raw: &str, fields: &[SortField]) -> Option<SortKey> {
    let raw = raw.trim();
    let (name, descending) = if let Some(name) = raw.strip_prefix('-') {
        (name, true)
    } else if let Some((name, direction)) = raw.split_once(':') {
        match direction.to_ascii_lowercase().as_str() {
            "asc" => (name, false),
            "desc" => (name, true),
            _ => return None,
        }
    } else {
        (raw.strip_prefix('+').unwrap_or(raw), false)
    };
    let wanted = name.replace('_', "").to_ascii_lowercase();
    fields
        .iter()
        .find(|field| field.name.to_ascii_lowercase() == wanted)
        .map(|field| SortKey {
            field: *field,
            descending,
        })
}

fn fingerprint(sort: &[SortKey], scope: &str) -> String {
    let mut hasher = Sha256::new();
    for key in sort {
        hasher.update(key.field.name.as_bytes());
        hasher.update(if key.descending { b"-" } else { b"+" });
    }
    hasher.update(scope.as_bytes());
    URL_SAFE_NO_PAD.encode(&hasher.finalize()[..12])
}

fn encode_cursor(cursor: &Cursor) -> String {
    // Serializing plain data cannot fail; an empty token would only end paging.
    serde_json::to_vec(cursor)
        .map(|json| URL_SAFE_NO_PAD.encode(json))
        .unwrap_or_default()
}

/// A [`Cursor`] as a token carries it, before its values are read by kind.
#[derive(Deserialize)]
struct EncodedCursor {
    v: Vec<String>,
    i: Uuid,
    p: u64,
    f: String,
}

fn decode_cursor(token: &str, sort: &[SortKey], fingerprint: &str) -> Option<Cursor> {
    let json = URL_SAFE_NO_PAD.decode(token).ok()?;
    let encoded: EncodedCursor = serde_json::from_slice(&json).ok()?;
    if encoded.f != fingerprint || encoded.v.len() != sort.len() {
        return None;
    }
    let values = encoded
        .v
        .into_iter()
        .zip(sort)
        .map(|(value, key)| match key.field.kind {
            FieldKind::Time => DateTime::parse_from_rfc3339(&value)
                .ok()
                .map(|time| CursorValue::Time(time.with_timezone(&Utc))),
            // No text that is sorted by holds a control character (the
            // validators refuse them), so a token carrying one was forged;
            // a NUL would not even reach the query on PostgreSQL.
            FieldKind::Text if value.chars().any(char::is_control) => None,
            FieldKind::Text => Some(CursorValue::Text(value)),
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Cursor {
        values,
        id: encoded.i,
        position: encoded.p,
        fingerprint: encoded.f,
    })
}

/// Checks `offset`-style input from REST dialects that is not an `i32`.
pub fn checked_i32(field: &str, value: i64) -> Result<i32> {
    i32::try_from(value).map_err(|_| Error::invalid(field, "out of range"))
}

impl From<DateTime<Utc>> for CursorValue {
    fn from(time: DateTime<Utc>) -> Self {
        CursorValue::Time(time)
    }
}

impl From<String> for CursorValue {
    fn from(text: String) -> Self {
        CursorValue::Text(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[SortField] = &[
        SortField::time("createdAt"),
        SortField::text("email"),
        SortField::text("firstName"),
    ];

    fn request(sort: &[&str]) -> PageRequest {
        PageRequest {
            sort: sort.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn sort_keys_accept_every_documented_form() {
        let params = ListParams::parse(
            &request(&["-createdAt", "email:asc", "first_name:DESC"]),
            FIELDS,
            100,
            "",
        )
        .unwrap();
        let keys: Vec<(&str, bool)> = params.sort.iter().map(|k| (k.field.name, k.descending)).collect();
        assert_eq!(keys, [("createdAt", true), ("email", false), ("firstName", true)]);
    }

    #[test]
    fn unknown_sort_keys_and_bad_limits_name_the_field() {
        let Err(Error::Invalid(violations)) = ListParams::parse(&request(&["email", "password"]), FIELDS, 100, "")
        else {
            panic!("expected invalid");
        };
        assert_eq!(violations[0].field, "sort[1]");
        for limit in [-1, 101] {
            let bad = PageRequest {
                limit,
                ..Default::default()
            };
            let Err(Error::Invalid(violations)) = ListParams::parse(&bad, FIELDS, 100, "") else {
                panic!("expected invalid");
            };
            assert_eq!(violations[0].field, "limit");
        }
    }

    #[test]
    fn tokens_round_trip_and_are_bound_to_sort_and_scope() {
        let params = ListParams::parse(&request(&["email"]), FIELDS, 100, "status=1").unwrap();
        let rows = vec!["a", "b", "c"];
        let page = ListParams {
            limit: 2,
            ..params.clone()
        }
        .page(rows, 3, |_| Uuid::nil(), |row, _| CursorValue::Text(row.to_string()));
        assert!(page.has_next);
        let next = PageRequest {
            page_token: page.next_page_token.clone(),
            sort: vec!["email".into()],
            ..Default::default()
        };
        let parsed = ListParams::parse(&next, FIELDS, 100, "status=1").unwrap();
        assert_eq!(parsed.after.as_ref().map(|c| c.position), Some(2));
        assert!(ListParams::parse(&next, FIELDS, 100, "status=2").is_err());
        let resorted = PageRequest {
            sort: vec!["-email".into()],
            ..next
        };
        assert!(ListParams::parse(&resorted, FIELDS, 100, "status=1").is_err());
    }

    #[test]
    fn a_forged_token_at_the_last_position_pages_without_overflowing() {
        let params = ListParams::parse(&request(&["email"]), FIELDS, 100, "").unwrap();
        let forged = encode_cursor(&Cursor {
            values: vec![CursorValue::Text("a".into())],
            id: Uuid::nil(),
            position: u64::MAX,
            fingerprint: params.fingerprint.clone(),
        });
        let next = PageRequest {
            page_token: forged,
            limit: 1,
            sort: vec!["email".into()],
            ..Default::default()
        };
        let params = ListParams::parse(&next, FIELDS, 100, "").unwrap();
        let page = params.page(
            vec!["b", "c"],
            3,
            |_| Uuid::nil(),
            |row, _| CursorValue::Text(row.to_string()),
        );
        assert!(page.has_next);
        let after = PageRequest {
            page_token: page.next_page_token,
            ..next
        };
        let parsed = ListParams::parse(&after, FIELDS, 100, "").unwrap();
        assert_eq!(parsed.position(), u64::MAX);
    }

    #[test]
    fn a_text_value_that_looks_like_a_time_stays_text() {
        let params = ListParams::parse(&request(&["email"]), FIELDS, 100, "").unwrap();
        let page = ListParams { limit: 1, ..params }.page(
            vec!["2024-01-01T00:00:00Z", "zeta"],
            2,
            |_| Uuid::nil(),
            |row, _| CursorValue::Text(row.to_string()),
        );
        let next = PageRequest {
            page_token: page.next_page_token,
            sort: vec!["email".into()],
            ..Default::default()
        };
        let parsed = ListParams::parse(&next, FIELDS, 100, "").unwrap();
        let values = parsed.after.map(|cursor| cursor.values);
        assert_eq!(values, Some(vec![CursorValue::Text("2024-01-01T00:00:00Z".into())]));
    }

    #[test]
    fn a_time_value_that_is_not_a_time_is_refused() {
        let params = ListParams::parse(&request(&["createdAt"]), FIELDS, 100, "").unwrap();
        let forged = encode_cursor(&Cursor {
            values: vec![CursorValue::Text("yesterday".into())],
            id: Uuid::nil(),
            position: 1,
            fingerprint: params.fingerprint.clone(),
        });
        let next = PageRequest {
            page_token: forged,
            sort: vec!["createdAt".into()],
            ..Default::default()
        };
        assert!(ListParams::parse(&next, FIELDS, 100, "").is_err());
    }
}
