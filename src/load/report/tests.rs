use super::*;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn nearest_rank_percentiles_on_known_data() {
    let v: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(percentile(&v, 50.0), Some(50.0));
    assert_eq!(percentile(&v, 95.0), Some(95.0));
    assert_eq!(percentile(&v, 99.0), Some(99.0));
    assert_eq!(percentile(&v, 100.0), Some(100.0));
    assert_eq!(percentile(&v, 0.0), Some(1.0));
    assert_eq!(percentile(&[], 50.0), None);
    // Five values: p50 is the 3rd, p95 and p99 the 5th.
    let p = Percentiles::of([9.0, 1.0, 7.0, 3.0, 5.0]);
    assert_eq!(
        (p.count, p.p50, p.p95, p.p99, p.max),
        (5, Some(5.0), Some(9.0), Some(9.0), Some(9.0))
    );
    assert_eq!(p.mean, Some(5.0));
    let none = Percentiles::of(std::iter::empty());
    assert_eq!((none.count, none.p50, none.mean), (0, None, None));
}

#[test]
fn histogram_percentiles_match_the_exact_ones_to_the_bucket() {
    let mut h = Histogram::default();
    // 1.0, 1.1, ... 100.9 ms: 1000 samples.
    let values: Vec<f64> = (0..1000).map(|i| 1.0 + i as f64 * 0.1).collect();
    for &v in &values {
        h.add(Duration::from_secs_f64(v / 1000.0 + 1e-9));
    }
    let p = h.percentiles();
    let exact = Percentiles::of(values.iter().copied());
    for (a, b) in [(p.p50, exact.p50), (p.p95, exact.p95), (p.p99, exact.p99)] {
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a >= b && a - b <= 0.1 + 1e-6, "{a} vs {b}");
    }
    assert!(close(p.max.unwrap(), 100.9, 1e-3));
    assert!(close(p.mean.unwrap(), exact.mean.unwrap(), 1e-3));
    // Beyond the last bucket: counted, and the maximum is exact.
    h.add(Duration::from_secs(5));
    let p = h.percentiles();
    assert_eq!(p.count, 1001);
    assert_eq!(p.max, Some(5000.0));
    assert_eq!(Histogram::default().percentiles().p50, None);
}

/// G.107's own statement: with every parameter at its default, Ro = 94.77, Is = 1.41 and
/// R = 93.2 (so MOS 4.41).
#[test]
fn e_model_defaults_give_r_93_2() {
    let r = r_factor(0.0, 0.0);
    assert!(close(r, 93.2, 0.01), "R = {r}");
    let m = mos_from_r(r);
    // By hand: 1 + 0.035*93.2 + 93.2*33.2*6.8*7e-6 = 1 + 3.262 + 0.1473 = 4.409.
    assert!(close(m, 4.409, 0.001), "MOS {m}");
}

#[test]
fn e_model_worked_examples() {
    // Ie,eff = 95 * Ppl / (Ppl + Bpl); at 1 % loss: 95 / 5.3 = 17.92, so R = 93.2 - 17.92.
    let r = r_factor(0.0, 1.0);
    assert!(close(r, 93.206 - 17.925, 0.01), "R = {r}");
    assert!(close(mos_from_r(r), 3.834, 0.002));
    // Idd at Ta = 200 ms: X = 1, 25 * (2^(1/6) - 3 * (1 + 3^-6)^(1/6) + 2) = 25 * 0.12177.
    assert!(close(idd(200.0), 3.044, 0.001), "Idd {}", idd(200.0));
    assert_eq!(idd(100.0), 0.0);
    // At 50 ms one way, Idte (1.02) and Idle (0.58, up from 0.15) take R to 91.76.
    assert!(close(r_factor(50.0, 0.0), 91.756, 0.01));
    // A 10 ms loopback round trip: one way 5 + 40 ms, MOS about 4.38.
    assert!(close(mos(10.0, 0.0), 4.38, 0.01), "{}", mos(10.0, 0.0));
}

#[test]
fn mos_falls_with_loss_and_with_delay() {
    let mut last = 5.0;
    for loss in [0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0] {
        let m = mos(20.0, loss);
        assert!(m < last, "loss {loss}: {m} !< {last}");
        last = m;
    }
    let mut last = 5.0;
    for rtt in [0.0, 100.0, 200.0, 400.0, 800.0, 1600.0] {
        let m = mos(rtt, 0.5);
        assert!(m < last, "rtt {rtt}: {m} !< {last}");
        last = m;
    }
    assert!(mos(0.0, 0.0) > 4.3 && mos(0.0, 0.0) < 4.5);
    assert_eq!(mos_from_r(-5.0), 1.0);
    assert_eq!(mos_from_r(120.0), 4.5);
}

fn record(i: u32, completed: bool, outcome: &str) -> CallRecord {
    CallRecord {
        index: i,
        call_id: format!("c{i}@0.0.0.0"),
        outcome: outcome.into(),
        status: outcome.parse().ok(),
        completed,
        failure: (!completed).then(|| format!("SIP {outcome}")),
        setup_ms: completed.then_some(2.0 + i as f64),
        first_rtp_ms: completed.then_some(20.0),
        bye: "200".into(),
        rtp_sent: 100,
        rtp_received: 100,
        silence_frames: 2,
        echoed_frames: 97,
        unmatched_frames: 1,
        expected: 100,
        lost: i64::from(i % 2),
        mos: Some(4.4 - 0.01 * i as f64),
        ..CallRecord::default()
    }
}

fn run(planned: u32) -> RunInfo {
    RunInfo {
        target: "127.0.0.1:5060".into(),
        codec: "PCMU".into(),
        calls_planned: planned,
        rate_cps: 10.0,
        duration_s: 2.0,
        max_loss_pct: 1.0,
        elapsed_s: 3.0,
        interrupted: false,
    }
}

#[test]
fn summary_groups_outcomes_and_decides_pass() {
    let calls: Vec<CallRecord> = (0..4).map(|i| record(i, true, "200")).collect();
    let mut h = Histogram::default();
    h.add(Duration::from_millis(8));
    let report = Report::build(run(4), calls.clone(), &h, HarnessStats::default());
    let s = &report.summary;
    assert_eq!((s.attempted, s.completed, s.failed), (4, 4, 0));
    assert_eq!(s.outcomes.get("200"), Some(&4));
    // 2 lost of 400 expected.
    assert!(close(s.loss_pct, 0.5, 1e-9));
    assert!(close(s.intact_pct.unwrap(), 97.0 * 100.0 / 98.0, 1e-9));
    assert!(report.passed());
    assert!(report.table().contains("PASS"));

    // A failed call, more loss than allowed, a call never placed, or an interruption: FAIL.
    let mut with_fail = calls.clone();
    with_fail.push(record(4, false, "403"));
    let r = Report::build(run(5), with_fail, &h, HarnessStats::default());
    assert!(!r.passed());
    assert_eq!(r.why_failed(), ["1 of 5 calls failed"]);
    assert!(
        r.table().contains("FAIL: 1 of 5 calls failed"),
        "{}",
        r.table()
    );
    assert_eq!(r.summary.failures.get("SIP 403"), Some(&1));
    assert!(r.table().contains("403 x1"), "{}", r.table());
    let lossy: Vec<CallRecord> = calls
        .iter()
        .cloned()
        .map(|mut c| {
            c.lost = 2;
            c
        })
        .collect();
    let lossy = Report::build(run(4), lossy, &h, HarnessStats::default());
    assert_eq!(lossy.why_failed(), ["loss 2.000 % not under 1 %"]);
    let short = Report::build(run(5), calls.clone(), &h, HarnessStats::default());
    assert_eq!(short.why_failed(), ["1 of 5 calls never placed"]);
    let mut interrupted = run(4);
    interrupted.interrupted = true;
    let r = Report::build(interrupted, calls, &h, HarnessStats::default());
    assert_eq!(r.why_failed(), ["interrupted"]);
    assert!(!r.passed());
}

#[test]
fn json_carries_the_summary_and_every_call() {
    let calls: Vec<CallRecord> = (0..3).map(|i| record(i, true, "200")).collect();
    let report = Report::build(
        run(3),
        calls,
        &Histogram::default(),
        HarnessStats::default(),
    );
    let v: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(v["summary"]["completed"], 3);
    assert_eq!(v["summary"]["target"], "127.0.0.1:5060");
    assert_eq!(v["summary"]["passed"], true);
    assert_eq!(v["calls"].as_array().unwrap().len(), 3);
    assert_eq!(v["calls"][1]["setup_ms"], 3.0);
    assert!(
        v["summary"]["rtt_ms"]["p50"].is_null(),
        "no echo, no latency"
    );
}
