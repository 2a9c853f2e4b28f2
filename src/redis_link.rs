//! The service's Redis: one server (or a managed primary behind one address) or a Redis
//! Cluster (`redis.cluster`). Everything that talks to Redis goes through a [`RedisConn`]
//! (commands, pipelines, scripts: the same code for both) and a [`RedisLink`] (connections
//! and pub/sub subscriptions).
//!
//! In a cluster every key of the service shares one hash tag, the one the key prefix must
//! hold (`{webhook}:`, checked at start): a template and its list, a campaign's stats and the
//! campaign index, a replay mark and its outcome, a token and its fetch lock all sit in one
//! slot, so pipelines, `MGET`/`DEL` of several keys and the token lock's script work as on one
//! server. The price is that one shard holds all of them: a few MiB for ten thousand
//! templates and campaigns, small beside what a shard holds. Pub/sub is cluster-wide (a
//! `PUBLISH` reaches subscribers on every node), so template changes and token
//! announcements reach every replica whichever node each is connected to.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, PushKind, RedisFuture, RedisResult, Value};

use crate::config::RedisConfig;

/// How long a connection waits: the service waits a little (its events wait for Redis
/// anyway), the command line not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    Service,
    CommandLine,
}

/// Where the service's Redis is; opens connections and subscriptions.
#[derive(Clone)]
pub enum RedisLink {
    Server(redis::Client),
    /// The seed nodes' settings: each subscription builds a client of its own, since a
    /// cluster connection delivers its pushes to the sender it was built with.
    Cluster(RedisConfig),
}

/// A connection: commands, pipelines and scripts alike, reconnecting by itself.
#[derive(Clone)]
pub enum RedisConn {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisLink {
    /// The link `config` describes (URL, TLS files, cluster mode); checked, not connected.
    pub fn new(config: &RedisConfig) -> RedisResult<RedisLink> {
        if config.cluster {
            cluster_builder(config, Patience::Service)?.build()?;
            Ok(RedisLink::Cluster(config.clone()))
        } else {
            config.client().map(RedisLink::Server)
        }
    }

    /// A connection, waiting as `patience` says.
    pub async fn connect(&self, patience: Patience) -> RedisResult<RedisConn> {
        match self {
            RedisLink::Server(client) => {
                let settings = match patience {
                    Patience::Service => ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(Duration::from_secs(3)))
                        .set_response_timeout(Some(Duration::from_secs(3)))
                        .set_number_of_retries(2)
                        .set_max_delay(Duration::from_secs(2)),
                    Patience::CommandLine => ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(Duration::from_secs(3)))
                        .set_response_timeout(Some(Duration::from_secs(5)))
                        .set_number_of_retries(1),
                };
                let manager = ConnectionManager::new_with_config(client.clone(), settings).await?;
                Ok(RedisConn::Server(manager))
            }
            RedisLink::Cluster(config) => {
                let client = cluster_builder(config, patience)?.build()?;
                Ok(RedisConn::Cluster(client.get_async_connection().await?))
            }
        }
    }

    /// The messages published on `channel` from now on, as their payloads. The stream ends
    /// when the subscription is lost (a server restart): subscribe again.
    pub async fn subscribe(&self, channel: &str) -> RedisResult<Subscription> {
        match self {
            RedisLink::Server(client) => {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(channel).await?;
                Ok(Subscription::Server(pubsub.into_on_message()))
            }
            RedisLink::Cluster(config) => {
                let (sender, pushes) = tokio::sync::mpsc::unbounded_channel();
                let client = cluster_builder(config, Patience::Service)?
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .push_sender(sender)
                    .build()?;
                let mut connection = client.get_async_connection().await?;
                connection.subscribe(channel).await?;
                Ok(Subscription::Cluster {
                    _connection: Box::new(connection),
                    pushes,
                })
            }
        }
    }
}

/// A cluster client for `config`'s seed nodes (`redis.url`, comma-separated), with its TLS
/// files.
fn cluster_builder(config: &RedisConfig, patience: Patience) -> RedisResult<ClusterClientBuilder> {
    let nodes: Vec<&str> = config
        .url
        .expose()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    let response = match patience {
        Patience::Service => Duration::from_secs(3),
        Patience::CommandLine => Duration::from_secs(5),
    };
    let mut builder = ClusterClientBuilder::new(nodes)
        .connection_timeout(Duration::from_secs(3))
        .response_timeout(response);
    if let Some(certificates) = config.tls_certificates() {
        builder = builder.certs(certificates);
    }
    Ok(builder)
}

impl From<ConnectionManager> for RedisConn {
    fn from(manager: ConnectionManager) -> RedisConn {
        RedisConn::Server(manager)
    }
}

/// The Redis of the library's own tests (scripts/test starts one; `REDIS_URL`).
#[cfg(test)]
pub(crate) fn test_client() -> redis::Client {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    redis::Client::open(url).expect("a valid REDIS_URL")
}

/// A connection to [`test_client`]'s Redis.
#[cfg(test)]
pub(crate) async fn test_conn() -> RedisConn {
    let manager = test_client().get_connection_manager().await;
    RedisConn::Server(manager.expect("a Redis for this test"))
}

impl RedisConn {
    /// Every key matching `pattern` (a glob under the key prefix). On a cluster the scan
    /// goes to the node holding the prefix's slot: every key of the service is there.
    pub async fn keys_matching(&self, pattern: &str) -> RedisResult<Vec<String>> {
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
            let (next, batch): (u64, Vec<String>) = match self {
                RedisConn::Server(manager) => scan.query_async(&mut manager.clone()).await?,
                RedisConn::Cluster(connection) => {
                    let node = Route::with_key(pattern, SlotAddr::Master);
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(node));
                    let value = connection.clone().route_command(scan, routing).await?;
                    redis::from_redis_value(value)?
                }
            };
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Server(manager) => manager.req_packed_command(cmd),
            RedisConn::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Server(manager) => manager.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Server(manager) => manager.get_db(),
            RedisConn::Cluster(connection) => connection.get_db(),
        }
    }
}

/// The payloads published on a channel (see [`RedisLink::subscribe`]).
pub enum Subscription {
    Server(redis::aio::PubSubStream),
    Cluster {
        /// Kept while subscribed: it resubscribes after a node is lost.
        _connection: Box<ClusterConnection>,
        pushes: tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>,
    },
}

impl Stream for Subscription {
    type Item = String;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<String>> {
        loop {
            match &mut *self {
                Subscription::Server(messages) => {
                    return match Pin::new(messages).poll_next(cx) {
                        Poll::Ready(Some(message)) => match message.get_payload::<String>() {
                            Ok(payload) => Poll::Ready(Some(payload)),
                            Err(_) => continue,
                        },
                        Poll::Ready(None) => Poll::Ready(None),
                        Poll::Pending => Poll::Pending,
                    };
                }
                Subscription::Cluster { pushes, .. } => {
                    let Some(push) = futures::ready!(pushes.poll_recv(cx)) else {
                        return Poll::Ready(None);
                    };
                    // A message is [channel, payload]; subscribe confirmations and
                    // disconnect notices are not messages.
                    if push.kind == PushKind::Message
                        && let Some(payload) = push.data.get(1)
                        && let Ok(payload) = redis::from_redis_value_ref::<String>(payload)
                    {
                        return Poll::Ready(Some(payload));
                    }
                }
            }
        }
    }
}
