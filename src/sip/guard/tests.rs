use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn guard(now: Instant) -> Guard {
    let twilio = AddressList::parse(&["twilio".to_string()]).unwrap();
    let any = AddressList::parse(&[]).unwrap();
    Guard::new(now, Limits::default(), vec![twilio, any])
}

#[test]
fn a_stranger_over_its_budget_is_banned_then_let_back() {
    let t0 = Instant::now();
    let mut g = guard(t0);
    let flooder = ip("198.51.100.7");
    // The burst passes, the next request bans.
    for _ in 0..40 {
        assert_eq!(g.check(t0, flooder), Ok(()));
    }
    assert_eq!(g.check(t0, flooder), Err(Drop::OverRate));
    let bans = g.bans(t0);
    assert_eq!(bans.len(), 1);
    assert_eq!((bans[0].ip, bans[0].reason), (flooder, BanReason::Rate));
    // Dropped for the whole ban, even at a polite rate...
    let t1 = t0 + Duration::from_secs(599);
    assert_eq!(g.check(t1, flooder), Err(Drop::Banned));
    // ...and back afterwards, with a full bucket.
    let t2 = t0 + Duration::from_secs(601);
    assert_eq!(g.check(t2, flooder), Ok(()));
    assert!(g.bans(t2).is_empty());
    // Others were never affected.
    assert_eq!(g.check(t0, ip("198.51.100.8")), Ok(()));
}

#[test]
fn a_steady_rate_under_the_budget_is_never_banned() {
    let t0 = Instant::now();
    let mut g = guard(t0);
    let caller = ip("203.0.113.5");
    // 19 requests a second for a minute against 20/s.
    for i in 0..(19 * 60) {
        let t = t0 + Duration::from_secs_f64(f64::from(i) / 19.0);
        assert_eq!(g.check(t, caller), Ok(()), "request {i}");
    }
}

#[test]
fn trusted_sources_are_never_limited_nor_banned() {
    let t0 = Instant::now();
    let mut g = guard(t0);
    let edge = ip("54.171.127.193");
    for _ in 0..10_000 {
        assert_eq!(g.check(t0, edge), Ok(()));
    }
    for _ in 0..100 {
        assert_eq!(g.auth_failed(t0, edge), None);
    }
    assert!(g.bans(t0).is_empty());
    assert_eq!(g.tracked(), 0, "trusted sources take no room in the table");
}

#[test]
fn ten_wrong_passwords_in_ten_minutes_ban_and_a_right_one_makes_a_customer() {
    let t0 = Instant::now();
    let mut g = guard(t0);
    let guesser = ip("192.0.2.66");
    for i in 0..9 {
        let t = t0 + Duration::from_secs(60 * i);
        assert_eq!(g.check(t, guesser), Ok(()));
        assert_eq!(g.auth_failed(t, guesser), None, "failure {i}");
    }
    // The tenth within the window bans.
    let t = t0 + Duration::from_secs(590);
    assert_eq!(g.check(t, guesser), Ok(()));
    let ban = g.auth_failed(t, guesser).expect("banned");
    assert_eq!(ban.reason, BanReason::AuthFailures);
    assert_eq!(g.check(t, guesser), Err(Drop::Banned));

    // Failures spread wider than the window never add up.
    let slow = ip("192.0.2.67");
    for i in 0..30 {
        let t = t0 + Duration::from_secs(70 * i);
        g.check(t, slow).unwrap();
        assert_eq!(g.auth_failed(t, slow), None);
    }

    // A customer: ten calls a second (five requests each) for a minute, never limited.
    let customer = ip("192.0.2.10");
    g.check(t0, customer).unwrap();
    g.auth_succeeded(t0, customer);
    for i in 0..(50 * 60) {
        let t = t0 + Duration::from_millis(20 * i);
        assert_eq!(g.check(t, customer), Ok(()));
    }
    // But a customer flooding at 2,000 a second is banned all the same.
    let t1 = t0 + Duration::from_secs(60);
    let flood = (0..4000u64)
        .map(|i| g.check(t1 + Duration::from_micros(500 * i), customer))
        .position(|r| r.is_err());
    assert!(flood.is_some_and(|i| i > 1000), "banned after {flood:?}");
}

#[test]
fn a_ban_can_be_lifted() {
    let t0 = Instant::now();
    let mut g = guard(t0);
    let flooder = ip("198.51.100.9");
    while g.check(t0, flooder).is_ok() {}
    assert!(g.lift(t0, flooder));
    assert!(!g.lift(t0, flooder), "nothing left to lift");
    assert_eq!(g.check(t0, flooder), Ok(()));
    assert!(g.bans(t0).is_empty());
}

#[test]
fn the_table_is_bounded_and_sources_beyond_it_share_one_bucket() {
    let t0 = Instant::now();
    let limits = Limits {
        max_sources: 100,
        ..Limits::default()
    };
    let mut g = Guard::new(t0, limits, Vec::new());
    let mut passed = 0;
    // A spoofed flood: 10,000 sources, one packet each, in one instant.
    for i in 0..10_000u32 {
        let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        if g.check(t0, a).is_ok() {
            passed += 1;
        }
    }
    assert_eq!(g.tracked(), 100);
    // The tracked hundred, then the overflow bucket's burst (16 strangers' worth).
    assert_eq!(passed, 100 + 16 * 40);
    // Idle entries are swept once their buckets refill, making room again.
    let later = t0 + Duration::from_secs(30);
    g.check(later, ip("192.0.2.1")).unwrap();
    assert!(g.tracked() <= 2, "{} tracked", g.tracked());
}
