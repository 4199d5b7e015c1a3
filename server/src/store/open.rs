//! [`StoreConfig`]: the engine, an optional cache in front of it and their
//! options; opening them, and the maintenance commands that need nothing
//! else (`migrate`, `clearsessions`).

use std::sync::Arc;

use chrono::Utc;

use crate::store::cached::CachedStore;
use crate::store::kit::{
    Migration, Migrations, OpenFailure, PendingMigration, StoreError, StoreOptions,
};
use crate::store::url::StoreUrl;
use crate::store::{SessionStore, clear_expired};

/// Where sessions are stored.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The engine (`--store`).
    pub url: StoreUrl,
    /// A cache engine in front of it (`--cache`, Django's `cached_db`).
    pub cache: Option<StoreUrl>,
    pub options: StoreOptions,
}

/// Why a store could not be opened. Each message names the store and the
/// flag; its source says what to do. (The URL is boxed to keep results that
/// carry this error small.)
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot use store {url} (--store, SESSIOND_STORE)")]
    Store {
        url: Box<StoreUrl>,
        #[source]
        source: OpenFailure,
    },
    #[error("cannot use cache {url} (--cache, SESSIOND_CACHE)")]
    Cache {
        url: Box<StoreUrl>,
        #[source]
        source: OpenFailure,
    },
}

/// Why a maintenance command failed.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("{url} does not exist (--store, SESSIOND_STORE); nothing to clear")]
    Missing { url: Box<StoreUrl> },
    #[error("cannot migrate {url} (--store, SESSIOND_STORE)")]
    Migrate {
        url: Box<StoreUrl>,
        #[source]
        source: StoreError,
    },
    #[error("cannot clear expired sessions in {url}")]
    Clear {
        url: Box<StoreUrl>,
        #[source]
        source: StoreError,
    },
}

impl StoreConfig {
    /// The engine `url` names with the default options and no cache.
    pub fn new(url: StoreUrl) -> Self {
        Self {
            url,
            cache: None,
            options: StoreOptions::default(),
        }
    }

    /// Opens the engine, with the cache in front of it if there is one.
    /// Does not migrate.
    pub async fn open(&self) -> Result<Arc<dyn SessionStore>, OpenError> {
        let Some(cache_url) = &self.cache else {
            return open(&self.url, &self.options).await;
        };
        let refuse = |source| OpenError::Cache {
            url: Box::new(cache_url.clone()),
            source,
        };
        if cache_url.is_database() {
            return Err(refuse(OpenFailure::unusable(
                "a cache must be redis://… or memory://; the database goes in --store",
            )));
        }
        if !self.url.is_database() {
            return Err(refuse(OpenFailure::unusable(format!(
                "{} is a cache itself; put a cache in front of sqlite://, postgres:// or file:// only",
                self.url
            ))));
        }
        let database = open(&self.url, &self.options).await?;
        let cache = cache_url
            .engine()
            .open(&self.options)
            .await
            .map_err(refuse)?;
        Ok(Arc::new(CachedStore::new(
            database,
            cache,
            self.options.timeout,
        )))
    }

    /// Creates or upgrades the schema (`sessiond migrate`); returns what was
    /// done.
    pub async fn migrate(&self) -> Result<Vec<Migration>, MaintenanceError> {
        let store = self.open().await?;
        let result = store.migrate().await;
        store.close().await;
        result.map_err(|source| MaintenanceError::Migrate {
            url: Box::new(self.url.clone()),
            source,
        })
    }

    /// What [`migrate`](Self::migrate) would do, changing nothing
    /// (`sessiond migrate --dry-run`). Fails where `migrate` would refuse
    /// the schema.
    pub async fn pending_migrations(&self) -> Result<Vec<PendingMigration>, MaintenanceError> {
        // Opening SQLite creates the file; a dry run has no reason to, and
        // everything is pending on a database that does not exist.
        let engine = self.url.engine();
        if let Some(migrations) = engine.migrations()
            && !engine.storage_exists()
        {
            return Ok(Migrations::all_pending(migrations));
        }
        let store = self.open().await?;
        let result = store.pending_migrations().await;
        store.close().await;
        result.map_err(|source| MaintenanceError::Migrate {
            url: Box::new(self.url.clone()),
            source,
        })
    }

    /// Removes every expired session once, in batches of `batch_size`
    /// (`sessiond clearsessions`); returns how many.
    pub async fn clear_expired(&self, batch_size: u64) -> Result<u64, MaintenanceError> {
        // Opening SQLite creates the file; a purge has no reason to.
        if !self.url.engine().storage_exists() {
            return Err(MaintenanceError::Missing {
                url: Box::new(self.url.clone()),
            });
        }
        let store = self.open().await?;
        let result = clear_expired(store.as_ref(), Utc::now(), batch_size).await;
        store.close().await;
        result.map_err(|source| MaintenanceError::Clear {
            url: Box::new(self.url.clone()),
            source,
        })
    }
}

/// Opens the engine a store URL names. Does not migrate.
pub async fn open(
    url: &StoreUrl,
    options: &StoreOptions,
) -> Result<Arc<dyn SessionStore>, OpenError> {
    url.engine()
        .open(options)
        .await
        .map_err(|source| OpenError::Store {
            url: Box::new(url.clone()),
            source,
        })
}
