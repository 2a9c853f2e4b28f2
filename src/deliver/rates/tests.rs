use std::time::Instant as StdInstant;

use super::adapt::MIN_ADAPTED;
use super::*;

#[test]
fn a_second_with_a_429_lowers_the_rate_by_the_share_accepted_and_success_raises_it_back() {
    let start = StdInstant::now();
    let at = |ms: u64| start + Duration::from_millis(ms);
    let mut adapt = Adapt::start(Some(80.0), start);
    assert_eq!(
        adapt.effective, 80.0,
        "until a second shows what the destination takes"
    );
    // Of the first second's 80 requests, 50 were accepted: down by that share, to 50.
    for _ in 0..50 {
        assert!(!adapt.answer(at(10), false, at(10), || 0.0));
    }
    for _ in 0..29 {
        adapt.answer(at(20), true, at(20), || 0.0);
    }
    adapt.answer(at(1000), false, at(1000), || 0.0);
    assert!((adapt.effective - 50.0).abs() < 0.01, "{}", adapt.effective);
    // A second with one 429 in 50 lowers it by a fiftieth.
    for _ in 0..48 {
        adapt.answer(at(1200), false, at(1200), || 0.0);
    }
    adapt.answer(at(1500), true, at(1500), || 0.0);
    adapt.answer(at(2000), false, at(2000), || 0.0);
    assert!((adapt.effective - 49.0).abs() < 0.01, "{}", adapt.effective);
    // A second that held nothing back does not raise; one that held requests back does, by
    // a twentieth of the level.
    adapt.answer(at(3000), false, at(3000), || 0.0);
    assert!(
        (adapt.effective - 49.0).abs() < 0.01,
        "not binding: {}",
        adapt.effective
    );
    adapt.waited = true;
    adapt.answer(at(4000), false, at(4000), || 0.0);
    assert!((adapt.effective - 51.45).abs() < 0.01, "{}", adapt.effective);
    // Back at the configured rate, adaptation ends.
    let mut now = 4000;
    let mut ended = false;
    for _ in 0..200 {
        now += 1000;
        adapt.waited = true;
        if adapt.answer(at(now), false, at(now), || 0.0) {
            ended = true;
            break;
        }
    }
    assert!(ended && adapt.effective >= 80.0);
}

#[test]
fn a_template_without_a_rate_is_limited_only_once_its_destination_refuses() {
    let start = StdInstant::now();
    let at = |ms: u64| start + Duration::from_millis(ms);
    let mut adapt = Adapt::start(None, start);
    assert!(
        adapt.effective.is_infinite(),
        "no limit until the destination's rate is seen"
    );
    // Its quota for this second was spent before the first 429: nothing to learn yet.
    adapt.answer(at(500), true, at(500), || 0.0);
    adapt.answer(at(1000), true, at(1000), || 0.0);
    assert!(adapt.effective.is_infinite());
    for _ in 0..50 {
        adapt.answer(at(1100), false, at(1100), || 0.0);
    }
    adapt.answer(at(1200), true, at(1200), || 0.0);
    adapt.answer(at(2000), false, at(2000), || 0.0);
    assert!(
        (adapt.effective - 50.0).abs() < 0.01,
        "50 accepted in a second: {}",
        adapt.effective
    );
    // 429s answered now to requests sent before the rate was lowered say nothing of it.
    let mut stale = adapt.clone();
    for _ in 0..100 {
        stale.answer(at(2100), true, at(1500), || 0.0);
    }
    stale.answer(at(3000), false, at(2900), || 0.0);
    assert!((stale.effective - 50.0).abs() < 0.01, "{}", stale.effective);
    // A destination that refuses everything: halved each second, floored, never zero.
    adapt.answer(at(2500), true, at(2500), || 0.0);
    adapt.answer(at(3000), true, at(3000), || 0.0);
    assert_eq!(adapt.effective, 25.0);
    for n in 0..60 {
        adapt.answer(at(3500 + n * 1000), true, at(3500 + n * 1000), || 0.0);
    }
    assert_eq!(adapt.effective, MIN_ADAPTED);
}

#[tokio::test]
async fn rates_of_one_process_space_requests_and_a_429_limits_a_template_without_one() {
    let rates = Rates::new(None, None);
    let closed = CancellationToken::new();
    assert!(!rates.may_wait(None), "nothing to wait for");
    let started = Instant::now();
    for _ in 0..5 {
        rates.wait("t", Some(50.0), &closed).await.unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_millis(79),
        "four gaps of 20 ms at least"
    );
    let refused = AttemptResult::Status {
        code: 429,
        retry_after: None,
        said: None,
    };
    let answer = Answer {
        result: &refused,
        sent: std::time::Instant::now(),
        accepted: &Accepted::default(),
    };
    rates.observe("free", None, answer);
    assert!(rates.may_wait(None), "an adapted template is looked up");
    assert_eq!(rates.effective("free"), Some(f64::INFINITY));
    assert_eq!(rates.effective("t"), None, "other templates are not adapted");
}

/// Two replicas lease moments of one schedule from Redis: together they keep the rate.
/// Needs a Redis (scripts/test starts one; REDIS_URL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_redis_send_at_the_rate_together() {
    let conn = crate::redis_link::test_conn().await;
    let prefix = format!("rates-test-{}-{}:", std::process::id(), crate::park::now_ms());
    let replica = || {
        Arc::new(Rates::new(
            Some(SharedLimits {
                conn: conn.clone(),
                prefix: prefix.clone(),
            }),
            None,
        ))
    };
    let (one, two) = (replica(), replica());
    let closed = CancellationToken::new();
    let started = Instant::now();
    let window = Duration::from_secs(2);
    let sends = |rates: Arc<Rates>, closed: CancellationToken| async move {
        let mut sent = 0;
        while Instant::now() < started + window {
            rates.wait("shared", Some(100.0), &closed).await.unwrap();
            sent += 1;
        }
        sent
    };
    let (a, b) = tokio::join!(
        tokio::spawn(sends(one.clone(), closed.clone())),
        tokio::spawn(sends(two.clone(), closed.clone()))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    // 100/s for 2 s: 200 moments, one of them at the very start of the window.
    assert!((180..=215).contains(&(a + b)), "{a} + {b}");
    assert!(a > 40 && b > 40, "both replicas had their share: {a}, {b}");
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}rate:shared"))
        .query_async(&mut conn.clone())
        .await
        .unwrap();
}

#[test]
fn a_first_429_starts_from_what_the_destination_accepted_lately() {
    let accepted = Accepted::default();
    for _ in 0..30 {
        accepted.record(100);
    }
    assert_eq!(accepted.rate(100), 30.0, "this second so far");
    for _ in 0..20 {
        accepted.record(101);
    }
    assert_eq!(accepted.rate(101), 30.0, "the last full second had more");
    assert_eq!(accepted.rate(102), 30.0, "the two seconds before");
    assert_eq!(accepted.rate(105), 0.0, "nothing lately");
    // A template not limited yet, whose first second watched saw 2 of them accepted
    // (the rest answered before the 429): what was accepted lately is what it gets.
    let start = StdInstant::now();
    let at = |ms: u64| start + Duration::from_millis(ms);
    let mut adapt = Adapt::start(None, start);
    adapt.answer(at(500), false, at(500), || 30.0);
    adapt.answer(at(600), false, at(600), || 30.0);
    adapt.answer(at(1000), true, at(1000), || 30.0);
    assert_eq!(adapt.effective, 30.0);
}
