use std::time::Duration;

use super::*;

fn settings() -> DeliveryLogConfig {
    DeliveryLogConfig {
        enabled: true,
        max_age: Duration::from_secs(3600),
        per_campaign: 100,
        campaigns: 2,
        attempts_topic: None,
        success_sample: 0.0,
    }
}

fn attempt(event: &str, target: i64, n: u32, outcome: Outcome) -> LoggedAttempt {
    LoggedAttempt {
        id: String::new(),
        event_id: event.into(),
        target_id: target,
        template_id: "t".into(),
        chunk: 0,
        attempt: n,
        at_ms: 1_765_150_000_000 + u64::from(n),
        host: "crm.test:443".into(),
        status: Some(if outcome == Outcome::Delivered { 200 } else { 503 }),
        error: None,
        latency_ms: 12,
        tier: n - 1,
        outcome,
        next: None,
        answer: None,
        request_bytes: 100,
    }
}

#[tokio::test]
async fn a_campaign_pages_newest_first_and_filters_by_outcome() {
    let log = DeliveryLog::in_memory(&settings());
    for i in 0..5 {
        log.record(attempt(&format!("e{i}"), 7, 1, Outcome::Retrying));
        log.record(attempt(&format!("e{i}"), 7, 2, Outcome::Delivered));
    }
    log.record(attempt("other", 8, 1, Outcome::Delivered));
    log.flush().await;
    let page = log.campaign(7, Filter::Failed, None, 3).await.unwrap();
    let events: Vec<_> = page.attempts.iter().map(|a| a.event_id.as_str()).collect();
    assert_eq!(events, ["e4", "e3", "e2"]);
    let rest = log
        .campaign(7, Filter::Failed, page.next_cursor.as_deref(), 3)
        .await
        .unwrap();
    let events: Vec<_> = rest.attempts.iter().map(|a| a.event_id.as_str()).collect();
    assert_eq!(events, ["e1", "e0"]);
    assert_eq!(rest.next_cursor, None);
    let timeline = log.event("e3").await.unwrap();
    assert_eq!(
        timeline
            .iter()
            .map(|a| (a.attempt, a.outcome))
            .collect::<Vec<_>>(),
        [(1, Outcome::Retrying), (2, Outcome::Delivered)]
    );
    assert!(matches!(
        log.campaign(7, Filter::All, Some("1-1"), 3).await,
        Err(LogError::Cursor(_))
    ));
}

#[tokio::test]
async fn an_off_log_records_nothing_and_says_so() {
    let log = DeliveryLog::in_memory(&DeliveryLogConfig {
        enabled: false,
        ..settings()
    });
    log.record(attempt("e", 1, 1, Outcome::Delivered));
    log.flush().await;
    assert!(matches!(log.event("e").await, Err(LogError::Off)));
}

#[test]
fn an_answer_is_cut_at_a_character_boundary() {
    let text = "é".repeat(200);
    let cut = answer_start(&text);
    assert!(cut.len() <= ANSWER_BYTES && text.starts_with(&cut));
    assert_eq!(cut.len(), 256);
}
