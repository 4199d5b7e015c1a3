//! [`Link`]: the one connection the engine sends its commands on, whatever
//! stands behind the URL. Each kind finds its way back by itself after a
//! failure: the connection manager reconnects to the one server, the cluster
//! connection follows `MOVED` replies and refreshes its slot map, and the
//! Sentinel link asks the sentinels for the current master.

use ::redis::aio::{ConnectionLike, ConnectionManager};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, Pipeline, RedisFuture, Value};

use super::sentinel::SentinelLink;

/// A cheap handle to a shared, multiplexed connection: cloned for each call.
#[derive(Clone)]
pub(super) enum Link {
    Single(ConnectionManager),
    Sentinel(SentinelLink),
    Cluster(ClusterConnection),
}

impl Link {
    /// Stops what the link runs in the background (the Sentinel link's
    /// listener) and waits for it; the connection itself closes once the
    /// last handle is dropped.
    pub(super) async fn stop(&self) {
        if let Self::Sentinel(link) = self {
            link.stop_watching().await;
        }
    }
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Sentinel(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Sentinel(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}
