use super::*;

const SETTINGS: BreakerSettings = BreakerSettings {
    failure_threshold: 5,
    failure_rate_percent: 50,
    window_seconds: 10,
    cooldown_seconds: 30,
    max_wait_seconds: 86_400,
};

fn at(start: Instant, ms: u64) -> Instant {
    start + Duration::from_millis(ms)
}

/// Records `outcomes` (true: failed) 10 ms apart from `from`; the transitions seen.
fn run(b: &mut Breaker, start: Instant, from: u64, outcomes: &[bool]) -> Vec<Transition> {
    outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, failed)| b.record(*failed, false, at(start, from + 10 * i as u64), SETTINGS))
        .collect()
}

#[test]
fn a_destination_that_answers_most_requests_is_never_cut_off() {
    let t0 = Instant::now();
    let mut b = Breaker::default();
    // Busy and mostly healthy: 1 failure in 10, in bursts of 3 failures in a row (what
    // concurrent requests see), for a minute: tens of failures, never the rate.
    let mut outcomes = Vec::new();
    for round in 0..200 {
        outcomes.extend([round % 10 < 3; 10].iter().enumerate().map(|(i, f)| *f && i == 0));
        outcomes.extend([false; 20]);
    }
    assert_eq!(run(&mut b, t0, 0, &outcomes), vec![]);
    assert_eq!(b.admit(at(t0, 60_000)), (Admit::Go, None));
}

#[test]
fn a_destination_failing_most_requests_opens_it_once_the_window_holds_enough() {
    let t0 = Instant::now();
    let mut b = Breaker::default();
    // Four failures: under the threshold, whatever the rate.
    assert_eq!(run(&mut b, t0, 0, &[true; 4]), vec![]);
    assert_eq!(run(&mut b, t0, 40, &[true]), vec![Transition::Opened]);
    assert_eq!(
        b.admit(at(t0, 1_000)),
        (
            Admit::Refuse {
                reopens_in: Duration::from_millis(29_040)
            },
            None
        ),
        "the cool-down left is told"
    );
    // Failing half of its requests: opens too (the rate is reached).
    let mut b = Breaker::default();
    let half: Vec<bool> = (0..20).map(|i| i % 2 == 0).collect();
    assert_eq!(run(&mut b, t0, 0, &half), vec![Transition::Opened]);
}

#[test]
fn failures_older_than_the_window_stop_counting() {
    let t0 = Instant::now();
    let mut b = Breaker::default();
    // Four failures, then four more 25 s later: never five within 10 s.
    assert_eq!(run(&mut b, t0, 0, &[true; 4]), vec![]);
    assert_eq!(run(&mut b, t0, 25_000, &[true; 4]), vec![]);
    // Within one window they add up.
    assert_eq!(run(&mut b, t0, 26_000, &[true]), vec![Transition::Opened]);
}

#[test]
fn several_probes_decide_and_traffic_ramps_back_up() {
    let t0 = Instant::now();
    let mut b = Breaker::Open {
        until: at(t0, 30_000),
    };
    assert!(matches!(b.admit(at(t0, 29_000)).0, Admit::Refuse { .. }));
    assert_eq!(
        b.admit(at(t0, 30_000)),
        (Admit::Probe, Some(Transition::HalfOpened))
    );
    for _ in 1..PROBES {
        assert_eq!(b.admit(at(t0, 30_001)).0, Admit::Probe);
    }
    assert_eq!(
        b.admit(at(t0, 30_002)).0,
        Admit::Refuse {
            reopens_in: Duration::ZERO
        },
        "five probes at most"
    );
    // One probe fails (the first attempt of an event that fails once): it does not decide.
    assert_eq!(b.record(true, true, at(t0, 30_100), SETTINGS), None);
    // A late answer of a request sent before it opened changes nothing.
    assert_eq!(b.record(true, false, at(t0, 30_100), SETTINGS), None);
    assert_eq!(b.record(false, true, at(t0, 30_200), SETTINGS), None);
    assert_eq!(b.record(false, true, at(t0, 30_300), SETTINGS), None);
    assert_eq!(
        b.record(false, true, at(t0, 30_400), SETTINGS),
        Some(Transition::Closed),
        "three of five succeeded"
    );
    // Closed, ramping up over the cool-down (30 s): a tenth of the requests at first, all
    // at the end.
    let let_through =
        |b: &mut Breaker, ms: u64| (0..100).filter(|_| b.admit(at(t0, ms)).0 == Admit::Go).count();
    assert_eq!(let_through(&mut b, 30_500), 10);
    let halfway = let_through(&mut b, 45_400);
    assert!((20..=60).contains(&halfway), "{halfway}");
    assert_eq!(let_through(&mut b, 60_500), 100);
}

#[test]
fn probes_that_mostly_fail_open_it_again() {
    let t0 = Instant::now();
    let mut b = Breaker::Open { until: t0 };
    for _ in 0..PROBES {
        b.admit(t0);
    }
    assert_eq!(b.record(true, true, at(t0, 10), SETTINGS), None);
    assert_eq!(b.record(false, true, at(t0, 20), SETTINGS), None);
    assert_eq!(b.record(true, true, at(t0, 30), SETTINGS), None);
    assert_eq!(
        b.record(true, true, at(t0, 40), SETTINGS),
        Some(Transition::Opened),
        "three of five failed: the destination is still down"
    );
    assert!(matches!(b.admit(at(t0, 50)).0, Admit::Refuse { .. }));
}

#[test]
fn a_dropped_probe_lets_another_go() {
    let t0 = Instant::now();
    let mut b = Breaker::Open { until: t0 };
    for _ in 0..PROBES {
        assert_eq!(b.admit(t0).0, Admit::Probe);
    }
    assert!(matches!(b.admit(t0).0, Admit::Refuse { .. }));
    b.abandon_probe();
    assert_eq!(b.admit(t0).0, Admit::Probe);
}

#[test]
fn a_breaker_is_idle_once_nothing_in_it_counts() {
    let t0 = Instant::now();
    let longest = Duration::from_secs(3600);
    let mut b = Breaker::default();
    assert!(b.idle(t0, longest));
    run(&mut b, t0, 0, &[true]);
    assert!(!b.idle(at(t0, 1_000), longest));
    assert!(b.idle(at(t0, 7_200_001), longest));
    assert!(!Breaker::Open { until: t0 }.idle(at(t0, 9_999_999), longest));
}
