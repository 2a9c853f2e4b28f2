//! The accept loop of the service's HTTP servers (the admin API with the probes, and
//! `/metrics`): `axum::serve`'s job, plus bounds a client cannot get around: how long a
//! request header may take (HTTP/1), how long a connection may stay idle on either protocol
//! (an h2c connection opened and left idle holds a file descriptor as long as the client
//! likes), and how many connections are open at once. At the cap, the connection idle the
//! longest is closed to make room, so a flood of idle connections never keeps a probe out;
//! and [`Endpoints`], which serves them on a thread of their own.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How long a client may take to send a request's header: a client that trickles it
/// (slowloris) is disconnected instead of holding a connection forever.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The bounds of one server.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub header_timeout: Duration,
    /// A connection with no byte read or written for this long is closed (gracefully:
    /// a request in progress finishes).
    pub idle_timeout: Duration,
    /// Connections open at once; past it the one idle the longest is closed.
    pub max_connections: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            header_timeout: HEADER_READ_TIMEOUT,
            // Longer than an admin test request may wait on its destination by default.
            idle_timeout: Duration::from_secs(120),
            max_connections: 1024,
        }
    }
}

/// Serves `router` on `listener` until `stop`, then lets open requests finish. Like
/// `axum::serve`, within the default [`Bounds`].
pub async fn serve(listener: TcpListener, router: Router, stop: CancellationToken) {
    serve_with(listener, router, stop, Bounds::default()).await
}

/// [`serve`] within other bounds (tests).
pub async fn serve_with(listener: TcpListener, router: Router, stop: CancellationToken, bounds: Bounds) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.header_timeout);
    let tasks = tokio_util::task::TaskTracker::new();
    let open = Arc::new(parking_lot::Mutex::new(Open::default()));
    while let Some(stream) = accept(&listener, &stop).await {
        let activity = Arc::new(AtomicU64::new(0));
        let close = CancellationToken::new();
        let id = open.lock().add(&activity, &close, bounds.max_connections);
        let service = TowerToHyperService::new(router.clone());
        let io = Watched {
            inner: stream,
            activity: activity.clone(),
            epoch: open.lock().epoch,
        };
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let idle = Idle {
            activity,
            epoch: open.lock().epoch,
            timeout: bounds.idle_timeout,
        };
        let (open, stop) = (open.clone(), stop.clone());
        tasks.spawn(async move {
            drive(connection, idle, close, stop).await;
            open.lock().remove(id);
        });
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
}

/// The next connection, or `None` once `stop` fires. A failed accept is logged (within
/// the log budget) and tried again after a pause.
async fn accept(listener: &TcpListener, stop: &CancellationToken) -> Option<tokio::net::TcpStream> {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => return Some(stream),
            Err(err) => {
                // Out of file descriptors, usually: give connections time to close.
                if let Some(suppressed) = crate::telemetry::limited("http-accept") {
                    warn!(error = %err, suppressed, "cannot accept a connection");
                }
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
}

/// One connection as the server serves it.
type Connection =
    auto::UpgradeableConnection<'static, TokioIo<Watched>, TowerToHyperService<Router>, TokioExecutor>;

/// Serves `connection` until it ends; once it has been idle too long, was evicted to make
/// room (`close`) or the server stops, closes it gracefully, giving a request in progress
/// the grace that applies.
async fn drive(connection: Connection, idle: Idle, close: CancellationToken, stop: CancellationToken) {
    let mut connection = pin!(connection);
    let grace = tokio::select! {
        _ = &mut connection => None,
        _ = idle.over() => Some(CLOSE_GRACE),
        _ = close.cancelled() => Some(CLOSE_GRACE),
        _ = stop.cancelled() => Some(STOP_GRACE),
    };
    if let Some(grace) = grace {
        // HTTP/1 closes at once between requests, HTTP/2 says GOAWAY; a request in
        // progress may finish within the grace.
        connection.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(grace, connection).await;
    }
}

/// When a connection was last active, and how long it may stay idle.
struct Idle {
    activity: Arc<AtomicU64>,
    epoch: Instant,
    timeout: Duration,
}

impl Idle {
    /// Ends once the connection has been idle for the timeout.
    async fn over(&self) {
        loop {
            let last = self.epoch + Duration::from_millis(self.activity.load(Ordering::Relaxed));
            let left = self.timeout.saturating_sub(last.elapsed());
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left).await;
        }
    }
}

/// How long an idle (or evicted) connection may take to close: an HTTP/2 client that does
/// not answer the GOAWAY is not waited for longer.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long requests in progress may take to finish when the server stops.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// The connections a server has open: when each was last active and how to close it.
struct Open {
    epoch: Instant,
    next: u64,
    connections: crate::FastMap<u64, (Arc<AtomicU64>, CancellationToken)>,
}

impl Default for Open {
    fn default() -> Self {
        Open {
            epoch: Instant::now(),
            next: 0,
            connections: Default::default(),
        }
    }
}

impl Open {
    /// Adds a connection, closing the one idle the longest when `max` are open already.
    fn add(&mut self, activity: &Arc<AtomicU64>, close: &CancellationToken, max: usize) -> u64 {
        activity.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        while self.connections.len() >= max.max(1) {
            let Some((&oldest, _)) = self
                .connections
                .iter()
                .min_by_key(|(_, (active, _))| active.load(Ordering::Relaxed))
            else {
                break;
            };
            if let Some((_, close)) = self.connections.remove(&oldest) {
                close.cancel();
            }
        }
        let id = self.next;
        self.next += 1;
        self.connections.insert(id, (activity.clone(), close.clone()));
        id
    }

    fn remove(&mut self, id: u64) {
        self.connections.remove(&id);
    }
}

/// A connection's socket, noting when a byte last went either way (milliseconds since the
/// server's epoch).
struct Watched {
    inner: tokio::net::TcpStream,
    activity: Arc<AtomicU64>,
    epoch: Instant,
}

impl Watched {
    fn touch(&self) {
        self.activity
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The service's HTTP servers on a thread of their own, with its own current-thread
/// runtime: probes and scrapes answer while an event loop is busy or blocked (librdkafka's
/// synchronous commit in a rebalance), and serving them never delays a delivery.
pub struct Endpoints {
    stop: CancellationToken,
    stopped: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Endpoints {
    /// Serves each router on its listener until [`stop`](Endpoints::stop) (or drop).
    pub fn start(servers: Vec<(TcpListener, Router)>) -> std::io::Result<Endpoints> {
        let servers = servers
            .into_iter()
            .map(|(listener, router)| Ok((listener.into_std()?, router)))
            .collect::<std::io::Result<Vec<_>>>()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let stop = CancellationToken::new();
        let (done, stopped) = tokio::sync::oneshot::channel();
        let serving = stop.clone();
        std::thread::Builder::new().name("http".into()).spawn(move || {
            runtime.block_on(async move {
                let all = servers.into_iter().filter_map(|(listener, router)| {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => Some(serve(listener, router, serving.clone())),
                        Err(err) => {
                            warn!(error = %err, "cannot serve a listener");
                            None
                        }
                    }
                });
                futures::future::join_all(all).await;
            });
            let _ = done.send(());
        })?;
        Ok(Endpoints {
            stop,
            stopped: Some(stopped),
        })
    }

    /// Stops accepting, lets open requests finish and waits for that.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.await;
        }
    }
}

impl Drop for Endpoints {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    #[tokio::test]
    async fn a_client_that_trickles_its_header_is_disconnected() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let server = tokio::spawn(serve_with(
            listener,
            router,
            stop.clone(),
            Bounds {
                header_timeout: Duration::from_millis(200),
                ..Bounds::default()
            },
        ));

        let mut whole = TcpStream::connect(addr).await.unwrap();
        whole
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        whole.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

        // Half a header, then nothing: the server hangs up (EOF or reset) by itself.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the connection was still open after 5 s");
        assert!(started.elapsed() < Duration::from_secs(5));

        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server stops")
            .unwrap();
    }

    fn bounded(idle_ms: u64, max_connections: usize) -> Bounds {
        Bounds {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_millis(idle_ms),
            max_connections,
        }
    }

    async fn server(bounds: Bounds) -> (std::net::SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let router = Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
        tokio::spawn(serve_with(listener, router, stop.clone(), bounds));
        (addr, stop)
    }

    /// An HTTP/1.1 keep-alive connection that made one request and stays open.
    async fn kept_alive(addr: std::net::SocketAddr) -> TcpStream {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 512];
        let n = stream.read(&mut answer).await.unwrap();
        assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
        stream
    }

    /// Whether the server closed `stream` within `within`.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        let mut rest = Vec::new();
        tokio::time::timeout(within, stream.read_to_end(&mut rest))
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn idle_connections_are_closed_on_both_protocols() {
        let (addr, stop) = server(bounded(300, 100)).await;
        // h2c (prior knowledge): the preface and an empty SETTINGS frame, then nothing.
        let mut h2c = TcpStream::connect(addr).await.unwrap();
        h2c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .unwrap();
        let mut http1 = kept_alive(addr).await;
        assert!(
            closed_within(&mut h2c, Duration::from_secs(5)).await,
            "the idle h2c connection is still open"
        );
        assert!(
            closed_within(&mut http1, Duration::from_secs(3)).await,
            "the idle HTTP/1 connection is still open"
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_connection_makes_room_and_probes_answer() {
        let (addr, stop) = server(bounded(60_000, 4)).await;
        let mut idle = Vec::new();
        for _ in 0..4 {
            idle.push(kept_alive(addr).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A fifth client (the kubelet's probe) is served; the oldest idle one is closed.
        let probe = kept_alive(addr).await;
        assert!(
            closed_within(&mut idle[0], Duration::from_secs(3)).await,
            "the oldest was kept"
        );
        for stream in &mut idle[1..] {
            assert!(
                !closed_within(stream, Duration::from_millis(100)).await,
                "a newer one was closed"
            );
        }
        drop(probe);
        stop.cancel();
    }
}
