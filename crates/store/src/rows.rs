//! Row plumbing shared by reads and writes: the transaction type, error mapping, JSON bodies
//! and integer conversions.

use assent_core::{clock::Timestamp, model::Grant, store::StoreError};
use serde::{Serialize, de::DeserializeOwned};
use sqlx::{Any, Row, Transaction, any::AnyRow};

/// A write transaction.
pub(crate) type Tx<'c> = Transaction<'c, Any>;

pub(crate) fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Maps a unique-constraint violation to `Conflict(what)`, anything else to `Unavailable`.
pub(crate) fn unique(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        _ => unavailable(e),
    }
}

pub(crate) fn json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Unavailable(format!("cannot encode a record: {e}")))
}

pub(crate) fn parse<T: DeserializeOwned>(row: &AnyRow) -> Result<T, StoreError> {
    decode(row.try_get("body").map_err(unavailable)?)
}

/// A stored record's JSON body.
pub(crate) fn decode<T: DeserializeOwned>(body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body)
        .map_err(|e| StoreError::Unavailable(format!("a stored record does not decode: {e}")))
}

/// A grant row (`body, uses, last_used_at, revoked_at, revoked_by`): its body as inserted, with
/// its uses and revocation since (migration 3) laid over it.
pub(crate) fn parse_grant(row: &AnyRow) -> Result<Grant, StoreError> {
    let mut g: Grant = parse(row)?;
    let uses: i64 = row.try_get("uses").map_err(unavailable)?;
    g.use_count = g.use_count.saturating_add(u64::try_from(uses).unwrap_or(0));
    let stamp = |column| row.try_get::<Option<i64>, _>(column).map(|t| t.map(Timestamp));
    if let Some(at) = stamp("last_used_at").map_err(unavailable)? {
        g.last_used_at = Some(at);
    }
    if let Some(at) = stamp("revoked_at").map_err(unavailable)? {
        g.revoked_at = Some(at);
        g.revoked_by = row.try_get("revoked_by").map_err(unavailable)?;
    }
    Ok(g)
}

pub(crate) fn parse_all<T: DeserializeOwned>(rows: &[AnyRow]) -> Result<Vec<T>, StoreError> {
    rows.iter().map(parse).collect()
}

pub(crate) type Query<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;
pub(crate) fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
