//! How the demo watches and tells what happened: a progress bar until every expected
//! delivery settled, then the closing summary, for people or as one JSON object.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{DLQ_TOPIC, Receivers};
use crate::metrics::Metrics;

/// How the wait for the deliveries ended.
pub(super) struct Progress {
    /// Every expected delivery settled (and both invalid records were dead-lettered).
    pub(super) finished: bool,
    /// Since the first request (joining the consumer group takes seconds), else since the
    /// wait began.
    elapsed: Duration,
}

/// Shows a progress bar until every expected delivery settled, `timeout` passed or
/// `shutdown` fired.
pub(super) async fn watch(
    metrics: &Metrics,
    expected: u64,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> Progress {
    let started = Instant::now();
    let bar = ProgressBar::new(expected).with_style(
        ProgressStyle::with_template("  {bar:40.cyan/blue} {pos:>7}/{len:7} deliveries  {elapsed} {msg}")
            .expect("valid progress template"),
    );
    // Every delivery ends delivered or dead-lettered; the unknown-template event is one
    // dead letter of its own.
    let settled = || {
        metrics.deliveries("delivered")
            + metrics.deliveries("dead_lettered")
            + metrics.dead_letters("template_not_found")
    };
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut finished = false;
    // Throughput counts from the first request: joining the consumer group takes seconds.
    let mut first_request: Option<Instant> = None;
    bar.set_message("joining the consumer group…");
    while started.elapsed() < timeout && !shutdown.is_cancelled() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        if first_request.is_none() && metrics.request_count() > 0 {
            first_request = Some(Instant::now());
            bar.set_message("");
            bar.reset_eta();
        }
        bar.set_position(settled().min(expected));
        if settled() >= expected && metrics.dead_letters("invalid_event") >= 2 {
            finished = true;
            break;
        }
    }
    let elapsed = first_request.unwrap_or(started).elapsed();
    bar.finish();
    Progress { finished, elapsed }
}

/// The closing summary as one JSON object (`demo --json`): the figures [`report`] prints.
pub(super) fn summary(metrics: &Metrics, receivers: &Receivers, progress: &Progress) -> serde_json::Value {
    let seconds = progress.elapsed.as_secs_f64();
    let requests = metrics.request_count();
    let ms = |q| metrics.request_latency_quantile(q).map(|s| s * 1000.0);
    json!({
        "finished": progress.finished,
        "delivered": metrics.deliveries("delivered"),
        "retried": metrics.deliveries("retried"),
        "dead_lettered": metrics.deliveries("dead_lettered"),
        "dead_letters": {
            "retries_exhausted": metrics.dead_letters("retries_exhausted"),
            "rejected": metrics.dead_letters("rejected"),
            "invalid_event": metrics.dead_letters("invalid_event"),
            "template_not_found": metrics.dead_letters("template_not_found"),
        },
        "requests": requests,
        "seconds": seconds,
        "requests_per_second": requests as f64 / seconds.max(0.001),
        "latency_ms": {"p50": ms(0.5), "p99": ms(0.99)},
        "oauth2_token_requests": receivers.tokens.requests().len(),
        "receivers": {
            "crm": receivers.crm.count(),
            "helpdesk": receivers.helpdesk.count(),
            "sms": receivers.sms.count(),
        },
    })
}

/// The closing summary: outcomes, throughput, latency, tokens and what each receiver saw.
pub(super) fn report(metrics: &Metrics, receivers: &Receivers, progress: &Progress) {
    let elapsed = progress.elapsed;
    let delivered = metrics.deliveries("delivered");
    let failed = metrics.deliveries("dead_lettered");
    let requests = metrics.request_count();
    let ms = |q| {
        metrics
            .request_latency_quantile(q)
            .map_or("n/a".to_string(), |s| format!("{:.1} ms", s * 1000.0))
    };
    println!();
    println!(
        "summary{}",
        if progress.finished {
            ""
        } else {
            " (stopped before every delivery settled)"
        }
    );
    println!("  delivered        {}", thousands(delivered));
    println!(
        "  retried          {} (parked on webhook-retry-1/-2, attempted again when due)",
        thousands(metrics.deliveries("retried"))
    );
    println!(
        "  dead-lettered    {} deliveries on {DLQ_TOPIC} (retries_exhausted {}, rejected {})",
        thousands(failed),
        metrics.dead_letters("retries_exhausted"),
        metrics.dead_letters("rejected"),
    );
    println!(
        "                   + {} invalid records (raw bytes kept) and {} event with an unknown template",
        metrics.dead_letters("invalid_event"),
        metrics.dead_letters("template_not_found"),
    );
    println!(
        "  throughput       {} requests in {:.1} s = {} requests/s",
        thousands(requests),
        elapsed.as_secs_f64(),
        thousands((requests as f64 / elapsed.as_secs_f64().max(0.001)) as u64)
    );
    println!("  latency          p50 {}, p99 {}", ms(0.5), ms(0.99));
    println!(
        "  oauth 2.0        {} token requests for {} sms deliveries (cached, refreshed before expiry)",
        receivers.tokens.requests().len(),
        thousands(receivers.sms.count())
    );
    println!(
        "  receivers saw    crm {}, helpdesk {}, sms {}",
        thousands(receivers.crm.count()),
        thousands(receivers.helpdesk.count()),
        thousands(receivers.sms.count())
    );
}

pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
