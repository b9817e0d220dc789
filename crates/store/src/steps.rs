//! A write's statements as data: each [`Step`] is one statement, its values, and what its
//! result means. PostgreSQL runs them through sqlx ([`Step::run`]); SQLite's writer thread runs
//! the same steps in place (`crate::sqlite_writer`), so both share one text of every statement.

use std::borrow::Cow;

use assent_core::store::StoreError;
use sqlx::{Arguments, AssertSqlSafe, any::AnyArguments};

use crate::rows::{Query, Tx, unavailable, unique};

/// One bound value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Int(i64),
    MaybeInt(Option<i64>),
    Text(String),
    MaybeText(Option<String>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        Self::MaybeInt(v)
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        Self::MaybeText(v)
    }
}

impl Value {
    fn add_to(self, args: &mut AnyArguments) -> Result<(), StoreError> {
        let added = match self {
            Self::Int(v) => args.add(v),
            Self::MaybeInt(v) => args.add(v),
            Self::Text(v) => args.add(v),
            Self::MaybeText(v) => args.add(v),
        };
        added.map_err(|e| StoreError::Unavailable(format!("cannot bind a value: {e}")))
    }
}

/// One statement of a write. Its text numbers its parameters `$1`, `$2`… from one.
#[derive(Debug)]
pub(crate) struct Step {
    pub(crate) sql: Cow<'static, str>,
    pub(crate) values: Vec<Value>,
    /// A unique-constraint violation is this conflict, not an outage.
    unique: Option<&'static str>,
    /// The statement must change exactly one row, or the write is this conflict (a
    /// compare-and-set that found the row moved).
    changes_one: Option<&'static str>,
}

impl Step {
    pub(crate) fn new(sql: impl Into<Cow<'static, str>>) -> Self {
        Self { sql: sql.into(), values: Vec::new(), unique: None, changes_one: None }
    }

    pub(crate) fn bind(mut self, value: impl Into<Value>) -> Self {
        self.values.push(value.into());
        self
    }

    pub(crate) fn unique(mut self, what: &'static str) -> Self {
        self.unique = Some(what);
        self
    }

    pub(crate) fn changes_one(mut self, what: &'static str) -> Self {
        self.changes_one = Some(what);
        self
    }

    /// The conflict a unique-constraint violation of this statement stands for, if any.
    #[cfg(feature = "sqlite")]
    pub(crate) fn unique_conflict(&self) -> Option<&'static str> {
        self.unique
    }

    /// What a failure of this statement means to the caller.
    pub(crate) fn error(&self, e: sqlx::Error) -> StoreError {
        match self.unique {
            Some(what) => unique(what)(e),
            None => unavailable(e),
        }
    }

    /// Whether `changed` rows is what this statement needed.
    pub(crate) fn check(&self, changed: u64) -> Result<(), StoreError> {
        match self.changes_one {
            Some(what) if changed != 1 => Err(StoreError::Conflict(what)),
            _ => Ok(()),
        }
    }

    fn arguments(&self) -> Result<AnyArguments, StoreError> {
        let mut args = AnyArguments::default();
        self.values.iter().try_for_each(|v| v.clone().add_to(&mut args))?;
        Ok(args)
    }

    /// This statement as a sqlx query, for a caller that reads its rows.
    pub(crate) fn query(&self) -> Result<Query<'static>, StoreError> {
        Ok(sqlx::query_with(AssertSqlSafe(self.sql.clone()), self.arguments()?))
    }

    /// Runs this statement alone inside `tx`.
    pub(crate) async fn run(self, tx: &mut Tx<'_>) -> Result<(), StoreError> {
        let done = self.query()?.execute(&mut **tx).await.map_err(|e| self.error(e))?;
        self.check(done.rows_affected())
    }
}

/// Runs `steps` one after another; the first failure ends the run.
pub(crate) async fn run_all(tx: &mut Tx<'_>, steps: Vec<Step>) -> Result<(), StoreError> {
    for step in steps {
        step.run(tx).await?;
    }
    Ok(())
}
