//! Connections to destinations, both schemes, one set of rules: HTTP/1.1 keep-alive over
//! TCP (`http://`) or TLS (`https://`), and HTTP/2 where a TLS destination picks it in ALPN,
//! kept per destination by each event loop, over the guarded connectors (SSRF guard,
//! connect timeout covering DNS, TCP and TLS, TCP keepalive) of `connector.rs`.
//!
//! Why not hyper-util's pooled client: on a fast destination its pool cost more per request
//! than hyper's connection itself (docs/performance.md): a SipHash-keyed map behind a lock,
//! the URI cloned and its `Host` header formatted each time, the request's future boxed,
//! and a task spawned per request to put the connection back once the answer is read.
//! Here an HTTP/1.1 connection goes back to its destination's list when its answer has been
//! read to the end, and only then: a connection whose answer was cut short is closed. An
//! HTTP/2 connection is shared by every request to its destination while it is open.
//!
//! Like hyper-util's client, a request that a reused connection could not even start (the
//! destination closed it while it was idle) is sent on another connection: it never
//! reached the destination, so this cannot duplicate it. And like it (capped the same way), a
//! destination keeps at most `max_idle` idle HTTP/1.1 connections: one put back beyond that
//! is closed.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::connect::Connection as _;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;
use tower_service::Service;
use tracing::debug;
use url::{Position, Url};

use super::connector::{
    BoxError, POOL_IDLE_TIMEOUT, PlainConnector, TlsConnector, plain_connector, tls_connector,
};
use crate::FastMap;
use crate::guard::NetworkPolicy;

/// An HTTP/1.1 connection's sending end; a task of the event loop drives it.
type Http1 = http1::SendRequest<Full<Bytes>>;
/// An HTTP/2 connection's sending end, cloned for each request it carries.
type Http2 = http2::SendRequest<Full<Bytes>>;

/// How often idle connections past [`POOL_IDLE_TIMEOUT`] (or closed by their destination)
/// are let go.
const SWEEP_EVERY: Duration = Duration::from_secs(15);

/// One event loop's connections to destinations.
pub(super) struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    plain: PlainConnector,
    tls: TlsConnector,
    idle: Mutex<Idle>,
    /// Idle HTTP/1.1 connections kept per destination at most.
    max_idle: usize,
}

#[derive(Default)]
struct Idle {
    /// HTTP/1.1, by `scheme://host[:port]` as the URL gives it; the most recently used last.
    http1: FastMap<String, Vec<Kept<Http1>>>,
    /// HTTP/2, by `scheme://host[:port]`: one connection, shared; `since` its last use.
    http2: FastMap<String, Kept<Http2>>,
    sweeping: bool,
}

struct Kept<C> {
    connection: C,
    since: Instant,
}

/// A connection lent to one request: [`Lease::release`] it once the answer is read to the
/// end, or drop it to close an HTTP/1.1 connection (an HTTP/2 one stays open for others).
pub(super) struct Lease<'a> {
    pool: &'a Pool,
    destination: &'a str,
    connection: Option<Http1>,
}

impl Lease<'_> {
    /// Puts an HTTP/1.1 connection back for the destination's next request, unless it is
    /// closed or the destination already has its most idle connections (then it is closed).
    pub fn release(self) {
        let Some(connection) = self.connection else { return };
        if connection.is_closed() {
            return;
        }
        let max_idle = self.pool.inner.max_idle;
        let kept = Kept {
            connection,
            since: Instant::now(),
        };
        let mut idle = self.pool.idle();
        match idle.http1.get_mut(self.destination) {
            Some(list) if list.len() >= max_idle => {}
            Some(list) => list.push(kept),
            None if max_idle == 0 => {}
            None => {
                idle.http1.insert(self.destination.to_string(), vec![kept]);
            }
        }
    }
}

/// A connection for one request.
enum Connection {
    Http1(Http1),
    Http2(Http2),
}

impl Pool {
    /// A pool keeping at most `max_idle` idle HTTP/1.1 connections per destination, TLS
    /// with `tls` (which offers HTTP/2 and HTTP/1.1 in ALPN).
    pub fn new(policy: &Arc<NetworkPolicy>, tls: &rustls::ClientConfig, max_idle: usize) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                plain: plain_connector(policy),
                tls: tls_connector(policy, tls),
                idle: Mutex::new(Idle::default()),
                max_idle,
            }),
        }
    }

    /// Sends `request` to `url` (its URI and `Host` are set here, as the connection's
    /// protocol wants them) and returns the answer's head with the connection it came on.
    pub async fn send<'a>(
        &'a self,
        mut request: Request<Full<Bytes>>,
        url: &'a Url,
    ) -> Result<(Response<Incoming>, Lease<'a>), BoxError> {
        let destination = &url[..Position::AfterPort];
        loop {
            let (connection, reused) = match self.idle_connection(destination).await {
                Some(connection) => (connection, true),
                // Boxed: connecting (a TLS and HTTP/2 handshake) is rare, and inline its state
                // made every delivery's future larger, which tokio copies as it moves it
                // (~10,000 more instructions of `memcpy` per delivery, callgrind).
                None => (Box::pin(self.connect(url, destination)).await?, false),
            };
            let sent = match connection {
                Connection::Http1(mut connection) => {
                    origin_form(&mut request, url)?;
                    let sent = connection.try_send_request(request).await;
                    sent.map(|response| (response, Some(connection)))
                }
                Connection::Http2(mut connection) => {
                    // `:scheme` and `:authority` come from the URI.
                    *request.uri_mut() = target(&url[..Position::AfterQuery])?;
                    connection
                        .try_send_request(request)
                        .await
                        .map(|response| (response, None))
                }
            };
            match sent {
                Ok((response, connection)) => {
                    let lease = Lease {
                        pool: self,
                        destination,
                        connection,
                    };
                    return Ok((response, lease));
                }
                Err(mut err) => match err.take_message() {
                    Some(unsent) if reused => {
                        debug!(error = %err.error(), "a kept connection was closed before the request could start; sending it on another");
                        request = unsent;
                    }
                    _ => return Err(err.into_error().into()),
                },
            }
        }
    }

    /// The destination's open HTTP/2 connection, or its most recently used idle HTTP/1.1
    /// connection that is still open.
    async fn idle_connection(&self, destination: &str) -> Option<Connection> {
        if let Some(mut shared) = self.shared(destination)
            && shared.ready().await.is_ok()
        {
            return Some(Connection::Http2(shared));
        }
        loop {
            let kept = self.idle().http1.get_mut(destination)?.pop()?;
            if kept.connection.is_closed() || kept.since.elapsed() >= POOL_IDLE_TIMEOUT {
                continue;
            }
            let mut connection = kept.connection;
            // Its last answer was read to the end: it is ready as soon as hyper's connection
            // task has seen that, or closed.
            if connection.ready().await.is_ok() {
                return Some(Connection::Http1(connection));
            }
        }
    }

    /// A handle on the destination's HTTP/2 connection while it is open.
    fn shared(&self, destination: &str) -> Option<Http2> {
        let mut idle = self.idle();
        let kept = idle.http2.get_mut(destination)?;
        if kept.connection.is_closed() {
            idle.http2.remove(destination);
            return None;
        }
        kept.since = Instant::now();
        Some(kept.connection.clone())
    }

    async fn connect(&self, url: &Url, destination: &str) -> Result<Connection, BoxError> {
        let uri = Uri::try_from(destination)?;
        let connection = if url.scheme() == "https" {
            let stream = self.inner.tls.clone().call(uri).await?;
            if stream.connected().is_negotiated_h2() {
                let (connection, task) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake::<_, Full<Bytes>>(stream)
                    .await?;
                spawn_connection(task);
                self.idle().http2.insert(
                    destination.to_string(),
                    Kept {
                        connection: connection.clone(),
                        since: Instant::now(),
                    },
                );
                Connection::Http2(connection)
            } else {
                let (connection, task) = http1::handshake::<_, Full<Bytes>>(stream).await?;
                spawn_connection(task);
                Connection::Http1(connection)
            }
        } else {
            let tcp = self.inner.plain.clone().call(uri).await?;
            let (connection, task) = http1::handshake::<_, Full<Bytes>>(tcp).await?;
            spawn_connection(task);
            Connection::Http1(connection)
        };
        self.start_sweeping();
        Ok(connection)
    }

    /// Lets idle connections go after [`POOL_IDLE_TIMEOUT`], on the event loop that made
    /// them, until the pool is dropped.
    fn start_sweeping(&self) {
        let mut idle = self.idle();
        if idle.sweeping {
            return;
        }
        idle.sweeping = true;
        let pool = Arc::downgrade(&self.inner);
        tokio::spawn(sweep(pool));
    }

    fn idle(&self) -> MutexGuard<'_, Idle> {
        self.inner.idle()
    }
}

impl Inner {
    fn idle(&self) -> MutexGuard<'_, Idle> {
        // Nothing panics while holding it; a list of connections is sound whatever happened.
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Sets an HTTP/1.1 request's target (path and query) and its `Host` (unless the template
/// set one).
fn origin_form(request: &mut Request<Full<Bytes>>, url: &Url) -> Result<(), BoxError> {
    *request.uri_mut() = target(&url[Position::BeforePath..Position::AfterQuery])?;
    if !request.headers().contains_key(HOST) {
        let host = HeaderValue::from_str(&url[Position::BeforeHost..Position::AfterPort])?;
        request.headers_mut().insert(HOST, host);
    }
    Ok(())
}

fn target(part: &str) -> Result<Uri, BoxError> {
    Ok(Uri::try_from(part).map_err(|err| format!("invalid URL: {err}"))?)
}

/// Drives a connection on the event loop until it ends.
fn spawn_connection<F>(task: F)
where
    F: std::future::Future<Output = Result<(), hyper::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(err) = task.await {
            debug!(error = %err, "connection to a destination ended");
        }
    });
}

async fn sweep(pool: Weak<Inner>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let mut idle = pool.idle();
        idle.http1.retain(|_, list| {
            list.retain(|kept| !kept.connection.is_closed() && kept.since.elapsed() < POOL_IDLE_TIMEOUT);
            !list.is_empty()
        });
        idle.http2
            .retain(|_, kept| !kept.connection.is_closed() && kept.since.elapsed() < POOL_IDLE_TIMEOUT);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A destination that answers every request `200` with `body`, counting connections
    /// and requests. `one_answer_per_connection`: it closes each connection after its first
    /// answer, without saying so (`Connection: close`), as a server does whose keep-alive
    /// timeout ran out.
    struct Destination {
        url: Url,
        connections: Arc<AtomicUsize>,
        requests: Arc<AtomicUsize>,
        /// Connections that ended: closed by the pool, or by the destination after its one
        /// answer (`one_answer_per_connection`).
        closed: Arc<AtomicUsize>,
    }

    /// Counts a connection as closed when its task ends.
    struct CountOnDrop(Arc<AtomicUsize>);

    impl Drop for CountOnDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    async fn destination(body: &'static [u8], one_answer_per_connection: bool) -> Destination {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/hooks/1?x=1", listener.local_addr().unwrap())).unwrap();
        let (connections, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (opened, answered) = (connections.clone(), requests.clone());
        let closed = Arc::new(AtomicUsize::new(0));
        let ended = closed.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                opened.fetch_add(1, Ordering::SeqCst);
                let answered = answered.clone();
                let ended = CountOnDrop(ended.clone());
                tokio::spawn(async move {
                    let _ended = ended;
                    let mut seen = Vec::new();
                    let mut buf = [0; 4096];
                    loop {
                        // One request: its head, then Content-Length bytes of body.
                        let head_end = loop {
                            if let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                                break at + 4;
                            }
                            match socket.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&seen[..head_end]).to_lowercase();
                        assert!(head.starts_with("post /hooks/1?x=1 http/1.1\r\n"), "{head}");
                        assert!(head.contains("\r\nhost: 127.0.0.1:"), "{head}");
                        let length: usize = head
                            .split("\r\n")
                            .find_map(|line| line.strip_prefix("content-length: "))
                            .map_or(0, |n| n.parse().unwrap());
                        while seen.len() < head_end + length {
                            match socket.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        seen.drain(..head_end + length);
                        answered.fetch_add(1, Ordering::SeqCst);
                        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                        let _ = socket.write_all(head.as_bytes()).await;
                        let _ = socket.write_all(body).await;
                        if one_answer_per_connection {
                            return;
                        }
                    }
                });
            }
        });
        Destination {
            url,
            connections,
            requests,
            closed,
        }
    }

    fn tls() -> rustls::ClientConfig {
        super::super::connector::tls_config(&[]).expect("the public roots")
    }

    fn pool() -> Pool {
        pool_keeping(64)
    }

    fn pool_keeping(max_idle: usize) -> Pool {
        let policy = NetworkPolicy {
            allowed: vec!["127.0.0.1/32".parse().unwrap()],
            https_only: false,
        };
        Pool::new(&Arc::new(policy), &tls(), max_idle)
    }

    fn post() -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(Bytes::from_static(br#"{"a":1}"#)));
        *request.method_mut() = http::Method::POST;
        request
    }

    impl Destination {
        /// Waits (real time: the sockets' ends) until `count` connections have ended, and
        /// checks that no more did.
        async fn wait_closed(&self, count: usize) {
            for _ in 0..500 {
                if self.closed.load(Ordering::SeqCst) >= count {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(self.closed.load(Ordering::SeqCst), count, "closed, not leaked");
        }
    }

    /// `count` requests whose connections are all held at once, then all put back.
    async fn burst(pool: &Pool, url: &Url, count: usize) {
        let sent = (0..count).map(|_| async {
            let (response, connection) = pool.send(post(), url).await.expect("sent");
            response.into_body().collect().await.expect("answer read");
            connection
        });
        let connections = futures::future::join_all(sent).await;
        connections.into_iter().for_each(Lease::release);
    }

    /// Sends one request and reads its answer to the end; the connection goes back.
    async fn deliver(pool: &Pool, url: &Url) -> http::StatusCode {
        let (response, connection) = pool.send(post(), url).await.expect("sent");
        let status = response.status();
        response.into_body().collect().await.expect("answer read");
        connection.release();
        status
    }

    #[tokio::test]
    async fn one_connection_carries_request_after_request() {
        let destination = destination(b"ok", false).await;
        let pool = pool();
        for _ in 0..5 {
            assert_eq!(deliver(&pool, &destination.url).await, 200);
        }
        assert_eq!(destination.requests.load(Ordering::SeqCst), 5);
        assert_eq!(destination.connections.load(Ordering::SeqCst), 1, "kept alive");
    }

    #[tokio::test]
    async fn a_connection_closed_while_idle_is_replaced_without_a_failure() {
        let destination = destination(b"", true).await;
        let pool = pool();
        for _ in 0..5 {
            assert_eq!(deliver(&pool, &destination.url).await, 200);
            // The destination has closed the connection by now; the pool still holds it.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(destination.requests.load(Ordering::SeqCst), 5);
        assert_eq!(destination.connections.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_connection_whose_answer_was_not_read_to_the_end_is_not_reused() {
        let destination = destination(&[b'x'; 100_000], false).await;
        let pool = pool();
        let (response, connection) = pool.send(post(), &destination.url).await.expect("sent");
        assert_eq!(response.status(), 200);
        drop((response, connection));
        assert_eq!(deliver(&pool, &destination.url).await, 200);
        assert_eq!(deliver(&pool, &destination.url).await, 200);
        assert_eq!(
            destination.connections.load(Ordering::SeqCst),
            2,
            "a new connection after the cut-short answer, then that one again"
        );
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let destination = destination(b"ok", false).await;
        let pool = pool();
        assert_eq!(deliver(&pool, &destination.url).await, 200);
        assert_eq!(pool.idle().http1.len(), 1, "kept for the next request");
        // A minute and more without a request (tokio's clock, paused: it jumps from one
        // sweep to the next while nothing else is due).
        tokio::time::pause();
        tokio::time::sleep(SWEEP_EVERY).await;
        assert_eq!(pool.idle().http1.len(), 1, "not idle long enough yet");
        tokio::time::sleep(POOL_IDLE_TIMEOUT + SWEEP_EVERY).await;
        assert!(pool.idle().http1.is_empty(), "let go by the sweep");
        tokio::time::resume();
        // The destination sees the connection closed (real time: the socket's end).
        destination.wait_closed(1).await;
        // The next request opens a new connection.
        assert_eq!(deliver(&pool, &destination.url).await, 200);
        assert_eq!(destination.connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_requests_each_get_a_connection_and_all_come_back() {
        let destination = destination(b"", false).await;
        let pool = pool();
        // All eight held at once, then all released.
        burst(&pool, &destination.url, 8).await;
        for _ in 0..8 {
            assert_eq!(deliver(&pool, &destination.url).await, 200);
        }
        assert_eq!(destination.connections.load(Ordering::SeqCst), 8);
        assert_eq!(destination.requests.load(Ordering::SeqCst), 16);
    }

    #[tokio::test]
    async fn a_destination_keeps_at_most_max_idle_connections() {
        let destination = destination(b"", false).await;
        let pool = pool_keeping(3);
        // Eight in use at once, then all put back: three are kept.
        burst(&pool, &destination.url, 8).await;
        assert_eq!(pool.idle().http1.values().map(Vec::len).sum::<usize>(), 3);
        destination.wait_closed(5).await;
        for _ in 0..6 {
            assert_eq!(deliver(&pool, &destination.url).await, 200);
        }
        assert_eq!(
            destination.connections.load(Ordering::SeqCst),
            8,
            "the kept ones are used"
        );
    }

    #[tokio::test]
    async fn the_guard_resolves_destinations() {
        // IP literals are checked before the request (`NetworkPolicy::check_url`); names
        // when they resolve, here: `localhost` is loopback, outside an empty allow list.
        let strict = Pool::new(&Arc::new(NetworkPolicy::default()), &tls(), 64);
        let url = Url::parse("http://localhost:9/hooks/1?x=1").unwrap();
        let err = strict.send(post(), &url).await.err().expect("refused");
        let blocked = crate::guard::blocked_cause(&*err).expect("refused by the guard");
        assert!(blocked.0.contains("loopback"), "{blocked}");
    }
}
