//! The connection pool of one sessiond replica, and the checks at open that
//! turn a wrong URL, a refused user or a missing schema into advice.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;

use super::errors::connect_advice;
use super::url::PostgresUrl;
use crate::store::kit::{OpenFailure, StoreOptions};

/// Builds the pool, checks that the server answers, and creates the URL's
/// schema if it is missing.
pub(super) async fn connect(
    url: &PostgresUrl,
    options: &StoreOptions,
) -> Result<Pool, OpenFailure> {
    let mut config = url.config().map_err(OpenFailure::driver)?;
    config.connect_timeout(options.timeout);
    config.application_name("sessiond");
    // A statement that waits longer than the store timeout (for a lock,
    // or on an overloaded server) fails instead of holding the call.
    let mut session_options = format!(
        "-c statement_timeout={} -c lock_timeout={}",
        options.timeout.as_millis(),
        options.timeout.as_millis()
    );
    if let Some(schema) = &url.schema {
        session_options.push_str(&format!(" -c search_path={schema}"));
    }
    config.options(&session_options);
    let settings = (url.tls)
        .resolve(|name| std::env::var(name).ok())
        .map_err(OpenFailure::driver)?;
    let tls = settings.load().map_err(OpenFailure::driver)?;
    config.ssl_mode(tls.driver_mode);
    let hosts = config.get_hosts().to_vec();

    let manager = Manager::from_config(
        config,
        tls.connector,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(url.pool_size)
        .wait_timeout(Some(options.timeout))
        .create_timeout(Some(options.timeout))
        .recycle_timeout(Some(options.timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(OpenFailure::driver)?;

    let client = pool.get().await.map_err(|err| {
        let advice = connect_advice(&err, &settings, &hosts).unwrap_or_else(|| {
            "cannot connect to PostgreSQL; check the URL, that the server runs and accepts this user".into()
        });
        OpenFailure::unusable_because(advice, err)
    })?;
    if let Some(schema) = &url.schema {
        let created = client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .await;
        // Replicas starting together race on the catalog even with IF NOT
        // EXISTS; losing that race means the schema is there.
        let lost_race = |err: &tokio_postgres::Error| {
            err.code() == Some(&SqlState::UNIQUE_VIOLATION)
                || err.code() == Some(&SqlState::DUPLICATE_SCHEMA)
        };
        if let Err(err) = created
            && !lost_race(&err)
        {
            return Err(OpenFailure::unusable_because(
                format!("cannot create schema {schema}; create it or grant CREATE on the database"),
                err,
            ));
        }
    }
    Ok(pool)
}
