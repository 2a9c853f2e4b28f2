//! The accept loop of the service's HTTP servers (the admin API with the probes, and
//! `/metrics`): `axum::serve`'s job, plus a bound on how long a request header may take;
//! and [`Endpoints`], which serves them on a thread of their own.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How long a client may take to send a request's header: a client that trickles it
/// (slowloris) is disconnected instead of holding a connection forever.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `stop`, then lets open requests finish. Like
/// `axum::serve`, plus [`HEADER_READ_TIMEOUT`] on HTTP/1 connections.
pub async fn serve(listener: TcpListener, router: Router, stop: CancellationToken) {
    serve_with(listener, router, stop, HEADER_READ_TIMEOUT).await
}

/// [`serve`] with another header read timeout (tests).
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
    header_timeout: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors, usually: give connections time to close.
                if let Some(suppressed) = crate::telemetry::limited("http-accept") {
                    warn!(error = %err, suppressed, "cannot accept a connection");
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
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
            Duration::from_millis(200),
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
}
