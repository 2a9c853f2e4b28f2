use super::*;

#[test]
fn exposition_names_every_spec_metric() {
    let m = Metrics::new();
    m.event_consumed("t");
    m.event_invalid("schema");
    m.request(MethodLabel::Post, StatusClass::Success, 0.01);
    m.delivered();
    m.delivery_dead_lettered();
    m.dead_lettered("rejected");
    m.consumer_lag("t", 0, 3);
    m.oauth_token_request("success");
    m.template_cache("hit");
    let text = m.render();
    for name in [
        "webhook_events_consumed_total",
        "webhook_events_invalid_total",
        "webhook_requests_total",
        "webhook_request_duration_seconds",
        "webhook_deliveries_total",
        "webhook_dead_letters_total",
        "webhook_inflight_requests",
        "webhook_consumer_lag",
        "webhook_oauth_token_requests_total",
        "webhook_template_cache_requests_total",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(text.contains(&format!("# HELP {name} ")), "{name} missing");
    }
    let version = format!(
        "webhook_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&version), "{text}");
}

#[test]
fn resolved_handles_count_in_the_exposed_series() {
    let m = Metrics::new();
    for _ in 0..3 {
        m.event_consumed("triggers");
        m.event_settled("triggers", 0.01);
        m.request(MethodLabel::Post, StatusClass::Success, 0.01);
        m.delivered();
        m.template_cache("hit");
    }
    m.request(MethodLabel::Delete, StatusClass::Timeout, 0.01);
    m.retry_scheduled(1);
    assert_eq!(m.deliveries("delivered"), 3);
    assert_eq!(m.deliveries("retried"), 1);
    let text = m.render();
    for line in [
        "webhook_events_consumed_total{topic=\"triggers\"} 3",
        "webhook_event_duration_seconds_count{topic=\"triggers\"} 3",
        "webhook_requests_total{method=\"POST\",status_class=\"2xx\"} 3",
        "webhook_requests_total{method=\"DELETE\",status_class=\"timeout\"} 1",
        "webhook_template_cache_requests_total{result=\"hit\"} 3",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    // A series appears when first used, as with `with_label_values`.
    assert!(!text.contains("result=\"miss\""), "{text}");
}

#[test]
fn quantiles_interpolate_within_buckets() {
    let m = Metrics::new();
    assert_eq!(m.request_latency_quantile(0.5), None);
    for _ in 0..100 {
        m.request(MethodLabel::Get, StatusClass::Success, 0.004); // bucket (0.003, 0.005]
    }
    let p50 = m.request_latency_quantile(0.5).unwrap();
    assert!((0.003..=0.005).contains(&p50), "{p50}");
}
