//! The running service: [`App`] binds the listeners, connects to Redis (waiting while it is
//! down), builds the pipeline and both consumers, and owns every task. It stops in order:
//! the consumers drain and commit, then the watchers and the stats flusher stop, and the
//! HTTP endpoints (served on a thread of their own) go last, so probes and scrapes see the
//! drain happen.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::redis_link::{Patience, RedisConn, RedisLink};
use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::admin::{Admin, api};
use crate::auth::SharedTokens;
use crate::backoff::Backoff;
use crate::campaigns::Campaigns;
use crate::config::Config;
use crate::deliver::{NetworkPolicy, SenderOptions, Sending, SharedLimits};
use crate::delivery_log::DeliveryLog;
use crate::event_loops::{Loops, OtherLoops};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::park::Parking;
use crate::pipeline::{self, Pipeline};
use crate::stats::Stats;
use crate::template::{RedisStore, TemplateCache, TemplateStore};
use crate::{console, consume, park, probes, server, telemetry};

/// Where templates come from.
pub enum Templates {
    /// Redis at `redis.url` (production).
    Redis,
    /// A store given by the caller (the demo's in-memory one).
    Store(Arc<dyn TemplateStore>),
}

/// A dispatcher whose listeners are bound, ready to [`run`](App::run).
pub struct App {
    config: Config,
    templates: Templates,
    api_listener: TcpListener,
    metrics_listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Runs the service until `shutdown` is cancelled, then drains and commits.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    App::build(config, Templates::Redis).await?.run(shutdown).await
}

impl App {
    pub async fn build(config: Config, templates: Templates) -> anyhow::Result<App> {
        let api_listener = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("cannot listen on http_addr (WD_HTTP_ADDR) {}", config.http_addr))?;
        let metrics_listener = TcpListener::bind(config.metrics_addr).await.with_context(|| {
            format!(
                "cannot listen on metrics_addr (WD_METRICS_ADDR) {}",
                config.metrics_addr
            )
        })?;
        let metrics = Arc::new(
            Metrics::new()
                .with_known_series(&park::Reason::ALL.map(park::Reason::as_str))
                .with_trigger_topic(&config.trigger_topic),
        );
        Ok(App {
            config,
            templates,
            api_listener,
            metrics_listener,
            metrics,
            health: Arc::new(Health::default()),
        })
    }

    /// Where `/healthz` and `/readyz` are served (useful with port 0).
    pub fn api_addr(&self) -> SocketAddr {
        self.api_listener.local_addr().expect("bound listener")
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_listener.local_addr().expect("bound listener")
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let (api_addr, metrics_addr) = (self.api_addr(), self.metrics_addr());
        let App {
            config,
            templates,
            api_listener,
            metrics_listener,
            metrics,
            health,
        } = self;
        for name in &config.ignored_variables {
            tracing::debug!(variable = %name, "ignored: a Kubernetes service link, not configuration");
        }
        // The endpoints outlive the drain, so probes and scrapes see it happen.
        let admin_slot = api::AdminSlot::default();
        let api_routes = probes::api_router(health.clone())
            .merge(api::router(admin_slot.clone(), config.admin_token.clone()))
            .merge(console::router());
        let endpoints = server::Endpoints::start(vec![
            (api_listener, api_routes),
            (metrics_listener, probes::metrics_router(metrics.clone())),
        ])
        .context("cannot start the HTTP endpoints' thread")?;
        // The addresses bound, which with port 0 only this line tells.
        info!(api = %api_addr, metrics = %metrics_addr, "listening");
        // What must outlive the watchers (the other event loops' runtimes).
        let mut last = Tasks::default();
        // Watchers and the stats flusher: stopped once the consumers have drained.
        let mut helpers = Tasks::default();
        helpers.spawn({
            let (config, health, metrics) = (config.clone(), health.clone(), metrics.clone());
            |stop| async move { consume::watch_topics(&config, health, metrics, stop).await }
        });
        let dispatched = match connect_templates(&config, templates, &shutdown).await? {
            Some(storage) => {
                let shown = Shown {
                    metrics,
                    health,
                    admin_slot,
                };
                dispatch(&config, shown, storage, &mut helpers, &mut last, shutdown).await
            }
            None => Ok(()),
        };
        helpers.stop().await;
        last.stop().await;
        endpoints.stop().await;
        info!("stopped");
        dispatched
    }
}

/// Tasks that run until told to stop, then are waited for.
#[derive(Default)]
struct Tasks {
    stop: CancellationToken,
    set: tokio::task::JoinSet<()>,
}

impl Tasks {
    fn spawn<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.set.spawn(task(self.stop.clone()));
    }

    async fn stop(mut self) {
        self.stop.cancel();
        while self.set.join_next().await.is_some() {}
    }
}

/// Where templates and per-campaign stats live, once reached.
struct Storage {
    store: Arc<dyn TemplateStore>,
    stats: Stats,
    campaigns: Arc<Campaigns>,
    log: DeliveryLog,
    redis: Option<RedisConn>,
}

/// The template store and stats of `templates`; `None` when shutdown came before Redis.
async fn connect_templates(
    config: &Config,
    templates: Templates,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Storage>> {
    Ok(match templates {
        Templates::Store(store) => Some(Storage {
            store,
            stats: Stats::in_memory(),
            campaigns: Campaigns::in_memory(config.campaign_max_pause),
            log: DeliveryLog::in_memory(&config.delivery_log),
            redis: None,
        }),
        Templates::Redis => connect_redis(config, shutdown).await?.map(|conn| Storage {
            store: redis_store(config, conn.clone()),
            stats: Stats::redis(conn.clone(), &config.redis.prefix, config.stats_ttl),
            campaigns: Campaigns::redis(conn.clone(), &config.redis.prefix, config.campaign_max_pause),
            log: DeliveryLog::redis(conn.clone(), &config.redis.prefix, &config.delivery_log),
            redis: Some(conn),
        }),
    })
}

/// What the HTTP endpoints show of the running service: metrics, health and, once built,
/// the admin operations.
struct Shown {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    admin_slot: api::AdminSlot,
}

/// Builds the event loops and runs them until they have drained, with the watchers of
/// `storage` and the stats flusher among `helpers`.
async fn dispatch(
    config: &Config,
    shown: Shown,
    storage: Storage,
    helpers: &mut Tasks,
    last: &mut Tasks,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Shown {
        metrics,
        health,
        admin_slot,
    } = shown;
    let Storage {
        store,
        stats,
        campaigns,
        log,
        redis,
    } = storage;
    if !watch_campaigns(config, &campaigns, redis.is_some(), helpers, &shutdown).await? {
        return Ok(());
    }
    let stats = Arc::new(stats);
    let log = start_log(config, log, &metrics, helpers)?;
    health.set_redis_up(true);
    let cache = TemplateCache::new(store.clone(), config.template_cache_ttl, metrics.clone());
    watch_storage(config, &store, &stats, &cache, &health, redis.is_some(), helpers)?;

    let shared = pipeline::Shared {
        templates: cache.clone(),
        campaigns: campaigns.clone(),
        parking: Arc::new(
            Parking::new(config, metrics.clone(), health.clone())
                .context("cannot create the Kafka producer (check kafka.brokers / kafka.properties)")?,
        ),
        stats: stats.clone(),
        log: log.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        event_limits: config.event_limits(),
        max_rendered_bytes: config.max_rendered_bytes,
    };
    let sending = sending(config, metrics, redis.clone())?;
    helpers.spawn(|stop| sending.heartbeat(stop));
    let loops = Arc::new(Loops::new(config, shared.clone(), sending, health));
    let sender = loops.sender(0);
    let admin = Admin::new(store, sender.clone(), redis, Some(cache), config.clone())
        .with_stats(stats)
        .with_campaigns(campaigns)
        .with_log(log);
    let _ = admin_slot.set(Arc::new(admin));
    consume(&loops, loops.pipeline(sender), last, shutdown).await?;
    // Dead letters were all acknowledged before their offsets were stored; this only
    // tidies what a shutdown interrupted.
    shared.parking.flush(Duration::from_secs(5));
    Ok(())
}

/// The delivery log, reporting to `metrics` (and the attempts topic), written by a helper.
fn start_log(
    config: &Config,
    log: DeliveryLog,
    metrics: &Arc<Metrics>,
    helpers: &mut Tasks,
) -> anyhow::Result<DeliveryLog> {
    let log = log
        .reporting(metrics.clone(), config)
        .context("delivery_log.attempts_topic")?;
    helpers.spawn({
        let log = log.clone();
        |stop| async move { log.run(stop).await }
    });
    Ok(log)
}

/// Reads the paused and cancelled campaigns (no delivery may go before they are known,
/// waiting while Redis is down) and, with Redis, keeps them in step with what other replicas
/// and the command line change. `false` when shutdown came first.
async fn watch_campaigns(
    config: &Config,
    campaigns: &Arc<Campaigns>,
    redis: bool,
    helpers: &mut Tasks,
    shutdown: &CancellationToken,
) -> anyhow::Result<bool> {
    if !crate::campaigns::load(campaigns, shutdown).await {
        return Ok(false);
    }
    if redis {
        let link = RedisLink::new(&config.redis).context("invalid redis.url")?;
        let campaigns = campaigns.clone();
        helpers.spawn(|stop| crate::campaigns::watch_changes(link, campaigns, stop));
    }
    Ok(true)
}

/// Starts what keeps the process in step with its storage: the stats flusher, readiness
/// following the template store and, with Redis, template changes made by other replicas.
fn watch_storage(
    config: &Config,
    store: &Arc<dyn TemplateStore>,
    stats: &Arc<Stats>,
    cache: &TemplateCache,
    health: &Arc<Health>,
    redis: bool,
    helpers: &mut Tasks,
) -> anyhow::Result<()> {
    helpers.spawn({
        let stats = stats.clone();
        |stop| async move { stats.run(stop).await }
    });
    helpers.spawn({
        let (store, health) = (store.clone(), health.clone());
        |stop| watch_store(store, health, stop)
    });
    if redis {
        let client = RedisLink::new(&config.redis).context("invalid redis.url")?;
        let (prefix, cache) = (config.redis.prefix.clone(), cache.clone());
        helpers.spawn(|stop| crate::template::cache::watch_changes(client, prefix, cache, stop));
    }
    Ok(())
}

/// Runs the consumers until `shutdown`, then until they have drained and committed: loop
/// 0's trigger member and the retry tiers' member on this thread, feeding `pipeline` (loop
/// 0's), and the other loops on threads of their own, released once `last` stops.
async fn consume(
    loops: &Arc<Loops>,
    pipeline: Arc<Pipeline>,
    last: &mut Tasks,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let consumer = loops.trigger_consumer(0, pipeline.clone())?;
    let retries = loops.retry_consumer(pipeline)?;
    let mut others = OtherLoops::start(loops, &shutdown).await?;
    let release = others.release();
    last.spawn(|stop| async move {
        stop.cancelled().await;
        release.cancel();
    });
    let ((), (), clean) = tokio::join!(
        consumer.run(shutdown.clone()),
        retries.run(shutdown),
        others.finished()
    );
    anyhow::ensure!(clean, "an event loop stopped unexpectedly (see the log)");
    Ok(())
}

/// The template store of `config`: Redis, with credentials encrypted when keys are set.
pub fn redis_store(config: &Config, conn: RedisConn) -> Arc<dyn TemplateStore> {
    Arc::new(RedisStore::new(conn, config.redis.prefix.clone()).with_keys(config.secret_keys.clone()))
}

/// What the event loops' senders of `config` share; OAuth 2.0 tokens are shared through
/// `redis` when given.
pub fn sending(config: &Config, metrics: Arc<Metrics>, redis: Option<RedisConn>) -> anyhow::Result<Sending> {
    let shared_tokens = redis
        .clone()
        .map(|conn| {
            anyhow::Ok(SharedTokens {
                conn,
                client: RedisLink::new(&config.redis).context("invalid redis.url (WD_REDIS_URL)")?,
                prefix: config.redis.prefix.clone(),
                keys: config.secret_keys.clone(),
                // The admin token: a secret every replica of a deployment shares.
                name_key: config.admin_token.as_ref().map_or_else(
                    || config.redis.prefix.clone().into_bytes(),
                    |t| t.expose().as_bytes().to_vec(),
                ),
            })
        })
        .transpose()?;
    let options = SenderOptions {
        max_inflight: config.max_inflight,
        max_per_host: config.max_per_host,
        policy: NetworkPolicy {
            allowed: config.allowed_networks.clone(),
            https_only: config.https_only,
        },
        extra_roots: config
            .destination_ca_file
            .as_ref()
            .map(|file| file.certs.clone())
            .unwrap_or_default(),
        shared_tokens,
        shared_limits: redis.map(|conn| SharedLimits {
            conn,
            prefix: config.redis.prefix.clone(),
        }),
    };
    Sending::new(options, metrics).context("cannot build the HTTP client")
}

/// The admin operations for the command line: Redis must answer now (no waiting).
pub async fn admin_for_cli(config: &Config) -> anyhow::Result<Admin> {
    let link = RedisLink::new(&config.redis).context("invalid redis.url (WD_REDIS_URL)")?;
    let conn = link
        .connect(Patience::CommandLine)
        .await
        .context("cannot reach Redis (redis.url, WD_REDIS_URL)")?;
    let sender = sending(config, Arc::new(Metrics::new()), Some(conn.clone()))?.sender(config.max_inflight);
    let campaigns = Campaigns::redis(conn.clone(), &config.redis.prefix, config.campaign_max_pause);
    Ok(Admin::new(
        redis_store(config, conn.clone()),
        Arc::new(sender),
        Some(conn),
        None,
        config.clone(),
    )
    .with_campaigns(campaigns))
}

/// While Redis cannot be reached at start.
const REDIS_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// Connects to Redis, waiting (with backoff) while it is down: an unreachable Redis delays
/// the start, it does not fail it. `None` when shutdown came first.
async fn connect_redis(config: &Config, shutdown: &CancellationToken) -> anyhow::Result<Option<RedisConn>> {
    let link = RedisLink::new(&config.redis).context("invalid redis.url (WD_REDIS_URL)")?;
    let mut failures = 0;
    loop {
        match link.connect(Patience::Service).await {
            Ok(conn) => return Ok(Some(conn)),
            Err(err) => {
                if let Some(suppressed) = telemetry::limited("redis-connect") {
                    warn!(error = %err, suppressed, "redis unavailable; waiting before consuming");
                }
            }
        }
        failures += 1;
        if !REDIS_BACKOFF.wait(failures, shutdown).await {
            return Ok(None);
        }
    }
}

/// Keeps readiness in step with the template store.
async fn watch_store(store: Arc<dyn TemplateStore>, health: Arc<Health>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => health.set_redis_up(store.ping().await.is_ok()),
        }
    }
}
