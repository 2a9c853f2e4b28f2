//! A real, local webhook receiver whose answers are scripted: the demo's destinations, the
//! tests' witness of what reached the wire, and the benchmark's sink. It records every
//! request (unless told not to) and the most requests it ever had in flight at once.

use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

/// One request as it reached the receiver.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    /// Path and query, e.g. `/hook?c=1`.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The answer to one request.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    pub retry_after: Option<u64>,
    /// The answer's body (`ok` unless said).
    pub body: &'static str,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            delay: Duration::ZERO,
            retry_after: None,
            body: "ok",
        }
    }

    pub fn saying(self, body: &'static str) -> Reply {
        Reply { body, ..self }
    }

    pub fn after(self, delay: Duration) -> Reply {
        Reply { delay, ..self }
    }

    pub fn retry_after(self, seconds: u64) -> Reply {
        Reply {
            retry_after: Some(seconds),
            ..self
        }
    }
}

/// Decides the reply from the request and its sequence number (0-based).
pub type Script = Arc<dyn Fn(&Received, u64) -> Reply + Send + Sync>;

struct Shared {
    script: Script,
    record: bool,
    requests: Mutex<Vec<Received>>,
    count: AtomicU64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1 (a free port) answering with `script`.
    pub async fn start(script: impl Fn(&Received, u64) -> Reply + Send + Sync + 'static) -> Receiver {
        Self::start_with(Arc::new(script), true).await
    }

    /// A receiver that only counts (for load: nothing kept per request).
    pub async fn counting(script: impl Fn(&Received, u64) -> Reply + Send + Sync + 'static) -> Receiver {
        Self::start_with(Arc::new(script), false).await
    }

    async fn start_with(script: Script, record: bool) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound");
        let shared = Arc::new(Shared {
            script,
            record,
            requests: Mutex::new(Vec::new()),
            count: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let stop = CancellationToken::new();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped.cancelled_owned())
                .await;
        });
        Receiver { addr, shared, stop }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.shared.requests.lock().clone()
    }

    pub fn count(&self) -> u64 {
        self.shared.count.load(Ordering::Relaxed)
    }

    /// The most requests this receiver ever had open at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::Relaxed)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
    // Decremented on drop, so a client that gives up (timeout) is not counted forever.
    let _in_flight = InFlight(&shared.in_flight);
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 << 20).await.unwrap_or_default();
    let received = Received {
        method: parts.method,
        uri: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers,
        body,
        at: Instant::now(),
    };
    let sequence = shared.count.fetch_add(1, Ordering::SeqCst);
    let reply = (shared.script)(&received, sequence);
    if shared.record {
        shared.requests.lock().push(received);
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, reply.body).into_response();
    if let Some(seconds) = reply.retry_after {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(seconds));
    }
    response
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
