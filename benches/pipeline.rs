//! Throughput of the whole pipeline against what the HTTP client alone achieves.
//!
//! One process, one run, one local sink (an HTTP server answering 200 at once):
//! 1. raw: a plain reqwest loop with CONCURRENCY requests in flight, POSTing a body of the
//!    same size the pipeline sends (and wrk with as many connections, when installed);
//! 2. pipeline: EVENTS trigger records already on an embedded Kafka topic, consumed by the
//!    dispatcher (in-memory templates, WD_MAX_INFLIGHT = CONCURRENCY) and delivered to the
//!    same sink, timed from the first request the sink sees to the last.
//!
//! Raw and pipeline runs alternate for BENCH_ROUNDS rounds (default 3); prints each round,
//! the medians, the median ratio and the process's peak RSS. `cargo bench` (release).
//! Environment: BENCH_EVENTS (default 50000), BENCH_CONCURRENCY (default 64), BENCH_ROUNDS,
//! BENCH_KAFKA_PROPERTIES (extra librdkafka properties, key=value,...), BENCH_ONLY_PIPELINE
//! (skip the raw run, for profiling), RUST_LOG (logs).

use std::sync::Arc;

/// The binary's allocator, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use webhook_dispatcher::config::Config;
use webhook_dispatcher::demo::embedded_kafka::{EmbeddedKafka, partitions_for};
use webhook_dispatcher::demo::receiver::{Receiver, Reply};
use webhook_dispatcher::template::{MemoryStore, Template, TemplateStore};
use webhook_dispatcher::{App, Templates};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn event(i: usize) -> Vec<u8> {
    json!({"event_id": format!("bench-{i}"), "template_id": "sink", "targetId": 1234,
           "key_values": {"campaign": "bench"},
           "profiles": [{"Identity": format!("user-{i}"), "Email": "user@example.com", "push_token": "Token"}]})
    .to_string()
    .into_bytes()
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

async fn raw_client(url: &str, requests: usize, concurrency: usize) -> f64 {
    let client = reqwest::Client::new();
    let body = bytes::Bytes::from(
        json!({"is_test": false, "targetId": 1234, "key_values": {"campaign": "bench"},
               "profiles": [{"Identity": "user-1", "Email": "user@example.com", "push_token": "Token"}]})
        .to_string(),
    );
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, body, next, url) = (client.clone(), body.clone(), next.clone(), url.to_string());
            tokio::spawn(async move {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .expect("sink answers");
                    let _ = response.bytes().await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    requests as f64 / started.elapsed().as_secs_f64()
}

/// wrk's requests/s against the sink, when wrk is installed.
fn wrk(url: &str, concurrency: usize) -> Option<f64> {
    let output = std::process::Command::new("wrk")
        .args(["-t1", &format!("-c{concurrency}"), "-d5s", url])
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

async fn pipeline(sink: &Receiver, events: usize, concurrency: usize) -> anyhow::Result<(f64, f64)> {
    let payloads: Vec<Vec<u8>> = (0..events).map(event).collect();
    let bytes = payloads.iter().map(Vec::len).sum();
    let kafka = EmbeddedKafka::start(&[("bench-triggers", partitions_for(bytes, 4))])?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let keys: Vec<String> = (0..events).map(|i| i.to_string()).collect();
    for (batch, keys) in payloads.chunks(10_000).zip(keys.chunks(10_000)) {
        let sends = batch.iter().zip(keys).map(|(payload, key)| {
            producer.send(
                FutureRecord::to("bench-triggers").key(key).payload(payload),
                Duration::from_secs(30),
            )
        });
        for result in futures::future::join_all(sends).await {
            result.map_err(|(e, _)| e)?;
        }
    }

    let store = Arc::new(MemoryStore::new());
    let template: Template = serde_json::from_value(json!({"id": "sink", "url": sink.url("/hook")}))?;
    store.put(&template).await?;
    let config = Config::load_from(
        [
            ("WD_KAFKA_BROKERS", kafka.bootstrap_servers().to_string()),
            ("WD_KAFKA_GROUP_ID", "bench".to_string()),
            ("WD_TRIGGER_TOPIC", "bench-triggers".to_string()),
            ("WD_HTTP_ADDR", "127.0.0.1:0".to_string()),
            ("WD_METRICS_ADDR", "127.0.0.1:0".to_string()),
            ("WD_MAX_INFLIGHT", concurrency.to_string()),
            ("WD_ALLOWED_NETWORKS", "127.0.0.1/32".to_string()),
            ("WD_MAX_PER_HOST", concurrency.to_string()),
            (
                "WD_KAFKA_PROPERTIES",
                std::env::var("BENCH_KAFKA_PROPERTIES").unwrap_or_default(),
            ),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    )?;
    let app = App::build(config, Templates::Store(store)).await?;
    let metrics = app.metrics();
    let stop = CancellationToken::new();
    let service = tokio::spawn(app.run(stop.clone()));
    let before = sink.count();
    let deadline = Instant::now() + Duration::from_secs(300);
    while sink.count() == before {
        anyhow::ensure!(Instant::now() < deadline, "no delivery within 300 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let first = Instant::now();
    let (mut last, mut last_change) = (0, Instant::now());
    while metrics.deliveries("delivered") < events as u64 {
        let now = metrics.deliveries("delivered");
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
        if last_change.elapsed() > Duration::from_secs(10) || Instant::now() > deadline {
            let state: Vec<_> = metrics
                .render()
                .lines()
                .filter(|l| !l.starts_with('#') && !l.contains("_bucket"))
                .map(str::to_string)
                .collect();
            anyhow::bail!(
                "deliveries stalled at {now}/{events}; metrics:\n{}",
                state.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = first.elapsed().as_secs_f64();
    let p99 = metrics.request_latency_quantile(0.99).unwrap_or(0.0);
    stop.cancel();
    service.await??;
    Ok((events as f64 / elapsed, p99))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _logs = std::env::var_os("RUST_LOG")
        .map(|_| webhook_dispatcher::telemetry::init(webhook_dispatcher::config::LogFormat::Text));
    let events = setting("BENCH_EVENTS", 50_000);
    let concurrency = setting("BENCH_CONCURRENCY", 64);
    let rounds = setting("BENCH_ROUNDS", 3).max(1);
    let only_pipeline = std::env::var_os("BENCH_ONLY_PIPELINE").is_some();
    let sink = Receiver::counting(|_, _| Reply::status(200)).await;
    let url = sink.url("/hook");
    println!(
        "webhook-dispatcher benchmark: {events} events, {concurrency} in flight, {} cores, {rounds} rounds",
        num_cpus()
    );
    // Raw and pipeline runs alternate, so both see the same (noisy, shared) machine.
    let (mut raws, mut pipelines, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let raw = if only_pipeline {
            f64::NAN
        } else {
            raw_client(&url, events, concurrency).await
        };
        let (rate, p99) = pipeline(&sink, events, concurrency).await?;
        println!(
            "  round {round}: raw reqwest loop {raw:>8.0} req/s   pipeline {rate:>8.0} deliveries/s \
             (p99 {:.1} ms)   ratio {:.2}",
            p99 * 1000.0,
            rate / raw
        );
        raws.push(raw);
        pipelines.push(rate);
        ratios.push(rate / raw);
    }
    println!("  median raw reqwest loop {:>8.0} requests/s", median(&mut raws));
    println!(
        "  median pipeline         {:>8.0} deliveries/s",
        median(&mut pipelines)
    );
    println!(
        "  median ratio            {:>8.2} (pipeline / raw, per round)",
        median(&mut ratios)
    );
    match wrk(&url, concurrency) {
        Some(rate) => {
            println!("  wrk (GET, 5 s)          {rate:>8.0} requests/s (another client, for scale)")
        }
        None => println!("  wrk                     not installed (apt-get install wrk)"),
    }
    println!(
        "  peak RSS                {:>8} MiB, whole process: dispatcher, embedded Kafka holding every \
         record, sink and load generators",
        peak_rss_mib()
    );
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
