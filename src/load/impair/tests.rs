use super::*;

const FRAME: Duration = Duration::from_millis(20);

/// Feeds `n` packets numbered 0.. one every 20 ms and returns what comes out, in order.
fn run(spec: &str, seed: u64, n: u32) -> (Vec<u32>, ImpairStats) {
    let mut link = Impairer::new(ImpairSpec::parse(spec).unwrap(), seed);
    let t0 = Instant::now();
    let mut out = Vec::new();
    for i in 0..n {
        let now = t0 + FRAME * i;
        link.push(now, i);
        while let Some(p) = link.pop_due(now) {
            out.push(p);
        }
    }
    let end = t0 + FRAME * n + Duration::from_secs(5);
    while let Some(p) = link.pop_due(end) {
        out.push(p);
    }
    assert_eq!(link.in_flight(), 0);
    (out, link.stats())
}

#[test]
fn spec_parses_and_names_the_bad_key() {
    let s =
        ImpairSpec::parse("loss=5%, burst=3, delay=10ms, jitter=40ms, reorder=2, dup=1%").unwrap();
    assert_eq!(
        (s.loss, s.burst, s.reorder, s.duplicate),
        (0.05, 3.0, 0.02, 0.01)
    );
    assert_eq!((s.delay, s.jitter), (FRAME / 2, FRAME * 2));
    assert_eq!(ImpairSpec::parse("").unwrap(), ImpairSpec::default());
    assert_ne!(s, ImpairSpec::default());
    for (bad, key) in [
        ("loss=150%", "loss"),
        ("loss=100", "loss"),
        ("jitter=fast", "jitter"),
        ("burst=0.5", "burst"),
        ("latency=1ms", "latency"),
        ("loss", "loss"),
    ] {
        let e = ImpairSpec::parse(bad).unwrap_err().to_string();
        assert!(e.contains(key), "{bad}: {e}");
    }
}

#[test]
fn a_clear_link_delivers_everything_in_order_at_once() {
    let (out, stats) = run("", 1, 1000);
    assert_eq!(out, (0..1000).collect::<Vec<_>>());
    assert_eq!(stats.lost + stats.reordered + stats.duplicated, 0);
}

#[test]
fn loss_is_near_its_rate_and_bursts_have_their_mean_length() {
    let (out, stats) = run("loss=10%", 7, 100_000);
    let lost = 100_000 - out.len();
    assert_eq!(lost as u64, stats.lost);
    assert!((9_500..10_500).contains(&lost), "{lost}");

    let (out, _) = run("loss=10%,burst=4", 7, 100_000);
    let lost = 100_000 - out.len();
    assert!((9_000..11_000).contains(&lost), "{lost}");
    // Mean run of consecutive losses: gaps in the delivered sequence.
    let runs: Vec<u32> = out
        .windows(2)
        .map(|w| w[1] - w[0] - 1)
        .filter(|&gap| gap > 0)
        .collect();
    let mean = f64::from(runs.iter().sum::<u32>()) / runs.len() as f64;
    assert!((3.5..4.5).contains(&mean), "mean burst {mean}");
}

#[test]
fn jitter_delays_without_reordering_and_reorder_lets_packets_pass() {
    let (out, _) = run("jitter=40ms", 3, 10_000);
    assert_eq!(out, (0..10_000).collect::<Vec<_>>(), "queueing keeps order");

    let (out, stats) = run("jitter=40ms,reorder=2%", 3, 10_000);
    assert_eq!(out.len(), 10_000);
    let late = out.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(
        late > 0 && late as u64 <= stats.reordered,
        "{late} {stats:?}"
    );
    assert!((150..250).contains(&stats.reordered), "{stats:?}");
}

#[test]
fn duplicates_arrive_twice() {
    let (out, stats) = run("dup=1%", 5, 10_000);
    assert_eq!(out.len() as u64, 10_000 + stats.duplicated);
    assert!((60..140).contains(&stats.duplicated), "{stats:?}");
    let mut seen = std::collections::HashSet::new();
    let twice = out.iter().filter(|p| !seen.insert(**p)).count();
    assert_eq!(twice as u64, stats.duplicated);
}

#[test]
fn delay_holds_packets_until_due() {
    let mut link = Impairer::new(ImpairSpec::parse("delay=30ms").unwrap(), 0);
    let t0 = Instant::now();
    link.push(t0, 'a');
    assert_eq!(link.pop_due(t0 + Duration::from_millis(29)), None);
    assert_eq!(link.next_due(), Some(t0 + Duration::from_millis(30)));
    assert_eq!(link.pop_due(t0 + Duration::from_millis(30)), Some('a'));
}

#[test]
fn the_same_seed_gives_the_same_link() {
    let spec = "loss=5%,burst=2,jitter=40ms,reorder=2%,dup=1%";
    assert_eq!(run(spec, 42, 5000), run(spec, 42, 5000));
    assert_ne!(run(spec, 42, 5000).0, run(spec, 43, 5000).0);
}
