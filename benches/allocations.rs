//! Allocations and CPU per delivery, stage by stage, on one thread: a counting allocator
//! (around mimalloc, the binary's) counts this thread's allocations, and
//! `/proc/thread-self/schedstat` its CPU time. The last stages send the delivery through
//! reqwest and through the service's `Sender` (limits, guard, metrics, client) to a
//! loopback sink whose threads are not counted. `cargo bench --bench allocations`;
//! BENCH_AUTH (none | basic | signed) picks the template's credentials.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use webhook_dispatcher::consume::OffsetTracker;
use webhook_dispatcher::deliver::{NetworkPolicy, Sender, SenderOptions};
use webhook_dispatcher::event::TriggerEvent;
use webhook_dispatcher::metrics::{MethodLabel, Metrics, StatusClass};
use webhook_dispatcher::render::render;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// This thread's CPU time in nanoseconds.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Runs `op` `n` times (after a warm-up) and prints allocations and CPU µs per run.
fn measure(name: &str, n: u64, mut op: impl FnMut(u64)) {
    for i in 0..n / 10 {
        op(i);
    }
    let (a0, c0) = (allocations(), cpu_ns());
    for i in 0..n {
        op(i);
    }
    let (a1, c1) = (allocations(), cpu_ns());
    println!(
        "{name:<40} {:>7.1} allocations {:>8.2} µs CPU",
        (a1 - a0) as f64 / n as f64,
        (c1 - c0) as f64 / n as f64 / 1000.0
    );
}

fn main() {
    let auth = std::env::var("BENCH_AUTH").unwrap_or_else(|_| "none".into());
    let base = common::sink();
    let prepared = common::template(&base, &auth);
    let bytes = common::event_bytes(42);
    let event = common::event(42);
    let metrics = Arc::new(Metrics::new());
    println!("per delivery, one thread (template auth: {auth}):");

    measure("event parse", 100_000, |_| {
        black_box(TriggerEvent::parse(black_box(&bytes), common::LIMITS).expect("valid"));
    });
    measure("render (URL, headers, body)", 100_000, |_| {
        black_box(render(&prepared, &event, 16 << 20).expect("renders"));
    });
    let mut tracker = OffsetTracker::new();
    let mut tickets = std::collections::VecDeque::new();
    measure("offset tracker (track + settle)", 200_000, |i| {
        tickets.push_back(tracker.track((i % 16) as i32, i as i64));
        if tickets.len() > 64 {
            let ticket = tickets
                .remove((i as usize * 7) % tickets.len())
                .expect("in range");
            black_box(tracker.settle(ticket));
        }
    });
    measure("metrics of one delivery", 200_000, |_| {
        metrics.event_consumed("campaign-triggers");
        metrics.template_cache("hit");
        metrics.inflight().inc();
        metrics.request(MethodLabel::Post, StatusClass::Success, 0.0012);
        metrics.inflight().dec();
        metrics.delivered();
        metrics.event_settled("campaign-triggers", 0.0031);
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let delivery = render(&prepared, &event, 16 << 20).expect("renders").remove(0);
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .expect("client");
    measure("reqwest send (plain loop)", 20_000, |_| {
        runtime.block_on(async {
            let mut request = client
                .request(reqwest::Method::POST, delivery.url.clone())
                .headers(delivery.headers.clone());
            if let Some(body) = &delivery.body {
                request = request.body(body.clone());
            }
            let response = request.send().await.expect("sink answers");
            black_box(response.bytes().await.expect("body"));
        })
    });
    let sender = Sender::new(
        SenderOptions {
            max_inflight: 64,
            max_per_host: 64,
            policy: NetworkPolicy {
                allowed: vec!["127.0.0.1/32".parse().expect("network")],
                https_only: false,
            },
            extra_roots: Vec::new(),
            shared_tokens: None,
            shared_limits: None,
        },
        metrics.clone(),
    )
    .expect("sender");
    let trace = webhook_dispatcher::trace::Step::start(webhook_dispatcher::trace::StepKind::Attempt, None);
    measure("Sender::send (limits, guard, client)", 20_000, |_| {
        let attempt = runtime.block_on(sender.send(&delivery, &prepared, 0, trace.at()));
        black_box(attempt.expect("sent"));
    });
    measure("parse + render + Sender::send", 20_000, |_| {
        let event = TriggerEvent::parse(&bytes, common::LIMITS).expect("valid");
        let delivery = render(&prepared, &event, 16 << 20).expect("renders").remove(0);
        let attempt = runtime.block_on(sender.send(&delivery, &prepared, 0, trace.at()));
        black_box(attempt.expect("sent"));
    });
    // Keep the runtime's connections until the end (the sink threads would see EOF).
    std::thread::sleep(Duration::from_millis(10));
}
