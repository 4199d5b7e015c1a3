//! The scale-out engine: Django's `django_session` table on PostgreSQL,
//! shared by any number of stateless sessiond replicas (and Django apps).
//!
//! Every operation is one statement or one short transaction on a pooled
//! connection, so replicas need no coordination of their own: inserts race
//! on the primary key, read-modify-writes lock the row (`SELECT … FOR
//! UPDATE`), and purges skip rows another replica is purging (`SKIP
//! LOCKED`). Migrations run under an advisory lock, so replicas starting
//! together migrate once.
//!
//! `expire_date` is `timestamp with time zone`, as Django declares it; the
//! comparisons use sessiond's clock, passed in as `now`, as Django uses the
//! app server's.

mod connector;
mod errors;
mod pool;
mod schema;
mod tls;
mod url;
mod verify;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::session::{ExpireDate, Record, SessionKey};
use crate::store::kit::{
    Engine, Migration, Migrations, OpenFailure, PendingMigration, StoreError, StoreOptions,
};
use crate::store::{Patcher, PoolGauges, SessionStore, StoreGauges};
use errors::classify;
pub use url::DEFAULT_POOL_SIZE;
pub use url::{PostgresUrl, PostgresUrlError};

const INSERT: &str = "INSERT INTO django_session (session_key, session_data, expire_date) \
                      VALUES ($1, $2, $3)";
const UPDATE: &str = "UPDATE django_session SET session_data = $2, expire_date = $3 \
                      WHERE session_key = $1";
const DELETE: &str = "DELETE FROM django_session WHERE session_key = $1";

/// The PostgreSQL engine.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool.status())
            .finish()
    }
}

#[async_trait]
impl Engine for PostgresUrl {
    fn is_database(&self) -> bool {
        true
    }

    fn migrations(&self) -> Option<&'static Migrations> {
        Some(&schema::MIGRATIONS)
    }

    async fn open(&self, options: &StoreOptions) -> Result<Arc<dyn SessionStore>, OpenFailure> {
        let pool = pool::connect(self, options).await?;
        Ok(Arc::new(PostgresStore { pool }))
    }
}

impl PostgresStore {
    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|err| StoreError::Unavailable(err.into()))
    }

    /// Runs one statement on a pooled connection, prepared once per
    /// connection; returns how many rows it changed.
    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(classify)?;
        client.execute(&statement, params).await.map_err(classify)
    }

    /// Runs one query on a pooled connection, prepared once per connection;
    /// returns its row, if any.
    async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(classify)?;
        client.query_opt(&statement, params).await.map_err(classify)
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn migrate(&self) -> Result<Vec<Migration>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(classify)?;
        match schema::migrate(&tx).await {
            Ok(done) => {
                tx.commit().await.map_err(classify)?;
                Ok(done)
            }
            Err(err) => {
                // Roll back now, so the advisory lock is not held by an idle
                // connection while the pool closes.
                let _ = tx.rollback().await;
                Err(err)
            }
        }
    }

    async fn pending_migrations(&self) -> Result<Vec<PendingMigration>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(classify)?;
        let pending = schema::pending(&tx).await;
        let _ = tx.rollback().await;
        pending
    }

    async fn load(
        &self,
        key: &SessionKey,
        now: DateTime<Utc>,
    ) -> Result<Option<Record>, StoreError> {
        let row = self
            .query_opt(
                "SELECT session_data, expire_date FROM django_session \
                 WHERE session_key = $1 AND expire_date > $2",
                &[&key.as_str(), &now],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let expire: DateTime<Utc> = row.get(1);
        Ok(Some(Record {
            session_data: row.get(0),
            expire_date: ExpireDate::new(expire).map_err(|err| StoreError::Corrupt(err.into()))?,
        }))
    }

    async fn exists(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let row = self
            .query_opt(
                "SELECT 1 FROM django_session WHERE session_key = $1",
                &[&key.as_str()],
            )
            .await?;
        Ok(row.is_some())
    }

    async fn insert(&self, key: &SessionKey, record: Record) -> Result<(), StoreError> {
        let expire_date = record.expire_date.instant();
        self.execute(INSERT, &[&key.as_str(), &record.session_data, &expire_date])
            .await?;
        Ok(())
    }

    async fn update(&self, key: &SessionKey, record: Record) -> Result<(), StoreError> {
        let expire_date = record.expire_date.instant();
        let updated = self
            .execute(UPDATE, &[&key.as_str(), &record.session_data, &expire_date])
            .await?;
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn patch(
        &self,
        key: &SessionKey,
        patcher: Patcher,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    ) -> Result<Record, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(classify)?;
        let row = tx
            .query_opt(
                "SELECT session_data, expire_date > $2 FROM django_session \
                 WHERE session_key = $1 FOR UPDATE",
                &[&key.as_str(), &now],
            )
            .await
            .map_err(classify)?
            .ok_or(StoreError::NotFound)?;
        let (stored, live): (String, bool) = (row.get(0), row.get(1));
        let session_data = patcher(live.then_some(stored))?;
        tx.execute(
            UPDATE,
            &[&key.as_str(), &session_data, &expire_date.instant()],
        )
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(Record {
            session_data,
            expire_date,
        })
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let deleted = self.execute(DELETE, &[&key.as_str()]).await?;
        Ok(deleted > 0)
    }

    async fn cycle_key(
        &self,
        old_key: &SessionKey,
        new_key: &SessionKey,
        session_data: Option<String>,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(classify)?;
        let data = match session_data {
            Some(data) => data,
            None => tx
                .query_opt(
                    "SELECT session_data FROM django_session \
                     WHERE session_key = $1 AND expire_date > $2 FOR UPDATE",
                    &[&old_key.as_str(), &now],
                )
                .await
                .map_err(classify)?
                .ok_or(StoreError::NotFound)?
                .get(0),
        };
        tx.execute(INSERT, &[&new_key.as_str(), &data, &expire_date.instant()])
            .await
            .map_err(classify)?;
        tx.execute(DELETE, &[&old_key.as_str()])
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)
    }

    async fn clear_expired_batch(&self, now: DateTime<Utc>, limit: u64) -> Result<u64, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.execute(
            "DELETE FROM django_session WHERE session_key IN ( \
             SELECT session_key FROM django_session WHERE expire_date < $1 \
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
            &[&now, &limit],
        )
        .await
    }

    /// `SELECT 1` on a pooled connection: a connection that broke while
    /// idle is replaced first, so an answer means PostgreSQL takes queries.
    async fn ping(&self) -> Result<(), StoreError> {
        self.query_opt("SELECT 1", &[]).await.map(|_| ())
    }

    fn gauges(&self) -> StoreGauges {
        let status = self.pool.status();
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        StoreGauges {
            pool: Some(PoolGauges {
                in_use: count(status.size.saturating_sub(status.available)),
                idle: count(status.available),
                max: count(status.max_size),
                waiters: Some(count(status.waiting)),
            }),
            sqlite: None,
        }
    }

    async fn close(&self) {
        self.pool.close();
    }
}
