#![doc = include_str!("../README.md")]

mod grant_cache;
mod group;
mod migrations;
mod private;
mod replicas;
mod rows;
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite_writer;
mod steps;
mod writes;

use std::{
    fs::File,
    path::{Path, PathBuf},
    time::Duration,
};

use sqlx::{
    AnyPool, Executor,
    any::{AnyPoolOptions, install_default_drivers},
};

pub use self::{private::create_private_dir, sql::SqlStore};

/// Which database a [`SqlStore`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file (the default).
    Sqlite,
    /// A PostgreSQL server (for several replicas).
    Postgres,
}

/// `store.durability` (ST-3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous = NORMAL` in WAL mode: a crash of assent loses nothing; a power loss may
    /// lose the last transactions.
    #[default]
    Normal,
    /// `synchronous = FULL`: also survives power loss, at the cost of an fsync per commit.
    PowerLoss,
}

/// How to open a store.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    /// Apply pending migrations (`false` is `assent serve --no-migrate`).
    pub migrate: bool,
    /// SQLite durability.
    pub durability: Durability,
    /// Connections in the pool (readers, for SQLite).
    pub max_connections: u32,
    /// Group commit: commits queued behind the one in progress share its transaction, each in
    /// its own savepoint. `None` is the backend's default: on for SQLite, whose one writer
    /// serializes commits anyway; off for PostgreSQL, which commits on concurrent connections
    /// and already merges their WAL flushes.
    pub group_commit: Option<bool>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self { migrate: true, durability: Durability::Normal, max_connections: 8, group_commit: None }
    }
}

/// Why a store could not be opened. Messages say what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The database was written by a newer assent (ST-5).
    #[error(
        "schema_too_new: the database has schema version {found} but this assent supports up to {supported}; \
         upgrade assent, or restore a backup taken before the upgrade"
    )]
    SchemaTooNew {
        /// Version found.
        found: i64,
        /// Newest version this binary knows.
        supported: i64,
    },
    /// `--no-migrate` and migrations are pending.
    #[error("{pending} migration(s) are pending and --no-migrate was given; run once without --no-migrate")]
    MigrationsPending {
        /// How many.
        pending: i64,
    },
    /// Another assent server holds the SQLite file (ST-3).
    #[error("another assent server is using {path}: stop it first (lock file {path}.lock)")]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// The URL names a backend this build lacks or does not know.
    #[error(
        "unsupported store.url `{0}`: use sqlite://<file> or postgres://user@host/db (postgres needs the `postgres` feature)"
    )]
    UnsupportedUrl(String),
    /// Filesystem error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The database refused.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

fn backend_of(url: &str) -> Result<Backend, OpenError> {
    if url.starts_with("sqlite:") {
        if cfg!(feature = "sqlite") {
            Ok(Backend::Sqlite)
        } else {
            Err(OpenError::UnsupportedUrl(url.to_owned()))
        }
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        if cfg!(feature = "postgres") {
            Ok(Backend::Postgres)
        } else {
            Err(OpenError::UnsupportedUrl(url.to_owned()))
        }
    } else {
        Err(OpenError::UnsupportedUrl(url.to_owned()))
    }
}

/// Holds `<db>.lock` so a second server on the same SQLite file refuses to start.
fn lock_file(db: &Path) -> Result<File, OpenError> {
    let path = PathBuf::from(format!("{}.lock", db.display()));
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| OpenError::Io { context: format!("opening {}", path.display()), source })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::Locked { path: db.to_path_buf() }),
        Err(std::fs::TryLockError::Error(source)) => {
            Err(OpenError::Io { context: format!("locking {}", path.display()), source })
        }
    }
}

impl SqlStore {
    /// Opens (creating if needed) the SQLite database at `path`, with WAL, a 5 s busy timeout,
    /// a reader pool and one writer thread, and a lock file against a second server (ST-3).
    pub async fn open_sqlite(path: &Path, options: OpenOptions) -> Result<Self, OpenError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)
                .map_err(|source| OpenError::Io { context: format!("creating {}", dir.display()), source })?;
        }
        let lock = lock_file(path)?;
        private::make_db_private(path).map_err(|source| OpenError::Io {
            context: format!("making {} readable by its owner only", path.display()),
            source,
        })?;
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let mut store = Self::connect(&url, Backend::Sqlite, options).await?;
        store.lock = Some(lock);
        #[cfg(feature = "sqlite")]
        {
            // The lock file makes this process SQLite's only writer, so its writer thread can
            // keep the active grants in step.
            let grants: std::sync::Arc<grant_cache::GrantCache> = std::sync::Arc::default();
            let batch = if options.group_commit.unwrap_or(true) { sqlite_writer::MAX_BATCH } else { 1 };
            let writer =
                sqlite_writer::SqliteWriter::start(path, options.durability, batch, Some(grants.clone()))?;
            let checkpointer =
                tokio::spawn(sqlite_writer::checkpoints(store.pool.clone(), writer.wal_resetter()));
            store.checkpoints = Some(checkpointer.abort_handle());
            store.grants = Some(grants);
            store.sqlite_writer = Some(writer);
        }
        Ok(store)
    }

    /// Opens a store from `store.url`: `sqlite://<file>` or `postgres://…`.
    pub async fn open(url: &str, options: OpenOptions) -> Result<Self, OpenError> {
        match backend_of(url)? {
            Backend::Sqlite => {
                let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
                let path = path.split('?').next().unwrap_or(path);
                Self::open_sqlite(Path::new(path), options).await
            }
            Backend::Postgres => Self::connect(url, Backend::Postgres, options).await,
        }
    }

    async fn connect(url: &str, backend: Backend, options: OpenOptions) -> Result<Self, OpenError> {
        install_default_drivers();
        let synchronous: &'static str = match options.durability {
            Durability::Normal => "PRAGMA synchronous = NORMAL",
            Durability::PowerLoss => "PRAGMA synchronous = FULL",
        };
        let pool: AnyPool = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute(synchronous).await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        if backend == Backend::Sqlite {
            // Persistent in the file: set once, before any other connection writes.
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        // Migrations run on the pool; once open, a SQLite store writes on its own thread.
        let mut store = Self::from_pool(pool, backend, url);
        store.migrate(options.migrate).await?;
        if backend == Backend::Postgres && options.group_commit == Some(true) {
            store.group = Some(group::GroupCommit::start(store.pool.clone()));
        }
        Ok(store)
    }
}
