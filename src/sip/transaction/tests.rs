//! Fake-clock tests: every `Instant` is a base plus an offset we choose, nothing sleeps.

use std::cell::Cell;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use rand::SeedableRng;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs_f(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn drain<T: Transaction + ?Sized>(m: &mut T) -> (Vec<Bytes>, Vec<TxEvent>) {
    let mut tx = Vec::new();
    while let Some(x) = m.poll_transmit() {
        tx.push(x);
    }
    let mut ev = Vec::new();
    while let Some(e) = m.poll_event() {
        ev.push(e);
    }
    (tx, ev)
}

/// What happened while only the machine's own timers ran, stamped with the offset from `base`.
#[derive(Debug, Default)]
struct Trace {
    tx: Vec<(Duration, Bytes)>,
    ev: Vec<(Duration, TxEvent)>,
}

impl Trace {
    fn tx_times(&self) -> Vec<Duration> {
        self.tx.iter().map(|(t, _)| *t).collect()
    }
}

/// Drives the machine like a driver would, jumping the clock to each `poll_timeout` up to and
/// including `until`.
fn run_timers<T: Transaction>(m: &mut T, base: Instant, until: Instant) -> Trace {
    let mut trace = Trace::default();
    let mut steps = 0;
    while let Some(at) = m.poll_timeout() {
        if at > until {
            break;
        }
        // A deadline that does not move when fired would spin here forever.
        steps += 1;
        assert!(steps < 10_000, "timer at {:?} keeps firing", at - base);
        m.handle_timeout(at);
        let (tx, ev) = drain(m);
        trace.tx.extend(tx.into_iter().map(|x| (at - base, x)));
        trace.ev.extend(ev.into_iter().map(|e| (at - base, e)));
    }
    trace
}

/// Offsets of the first `n` retransmissions for intervals T1, 2T1, ... capped at T2.
fn capped_schedule(n: usize) -> Vec<Duration> {
    let (mut at, mut interval) = (ms(0), ms(500));
    (0..n)
        .map(|_| {
            at += interval;
            interval = (interval * 2).min(ms(4000));
            at
        })
        .collect()
}

// ---------------------------------------------------------------- INVITE server

#[test]
fn invite_server_retransmits_2xx_until_ack_then_lingers_until_timer_l() {
    let t0 = Instant::now();
    let mut s = InviteServer::new(t0, Timers::default());
    s.respond(t0, 100, b("100"));
    assert_eq!(drain(&mut s), (vec![b("100")], vec![]));
    assert_eq!(
        s.poll_timeout(),
        None,
        "nothing to time while the TU thinks"
    );

    let t_ok = t0 + ms(1000);
    s.respond(t_ok, 200, b("200"));
    assert_eq!(drain(&mut s).0, vec![b("200")]);
    assert_eq!(s.state(), InviteServerState::Accepted);
    assert_eq!(s.final_status(), Some(200));

    let trace = run_timers(&mut s, t_ok, t_ok + secs_f(15.5));
    assert_eq!(trace.tx_times(), capped_schedule(6));
    let gaps: Vec<f64> = std::iter::once(ms(0))
        .chain(trace.tx_times())
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    assert_eq!(gaps, [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]);
    assert!(trace.tx.iter().all(|(_, x)| *x == b("200")));
    assert!(trace.ev.is_empty());

    // Before the ACK a retransmitted INVITE gets the 2xx again.
    s.on_request_retransmit(t_ok + ms(16_000));
    assert_eq!(drain(&mut s).0, vec![b("200")]);

    s.ack_received(t_ok + ms(17_000));
    assert!(s.is_acked());
    assert_eq!(s.state(), InviteServerState::Accepted);
    assert_eq!(s.poll_timeout(), Some(t_ok + ms(32_000)), "timer L");
    s.on_request_retransmit(t_ok + ms(18_000));
    s.ack_received(t_ok + ms(19_000));
    assert_eq!(drain(&mut s), (vec![], vec![]), "absorbed after the ACK");

    let trace = run_timers(&mut s, t_ok, t_ok + ms(60_000));
    assert!(trace.tx.is_empty());
    assert_eq!(trace.ev, vec![(ms(32_000), TxEvent::Terminated)]);
    assert!(s.is_terminated());
    assert_eq!(s.state(), InviteServerState::Terminated);
}

#[test]
fn invite_server_lost_ack_for_2xx_gives_up_at_64_t1() {
    let t0 = Instant::now();
    let mut s = InviteServer::new(t0, Timers::default());
    s.respond(t0, 200, b("200"));
    drain(&mut s);
    let trace = run_timers(&mut s, t0, t0 + ms(100_000));
    // 0.5, 1.5, 3.5, then every 4 s up to 31.5: ten retransmissions before 32 s.
    assert_eq!(trace.tx_times(), capped_schedule(10));
    assert_eq!(
        trace.ev,
        vec![
            (ms(32_000), TxEvent::AckTimeout),
            (ms(32_000), TxEvent::Terminated)
        ]
    );
    assert_eq!(s.poll_timeout(), None);
    s.on_request_retransmit(t0 + ms(33_000));
    s.respond(t0 + ms(33_000), 200, b("200"));
    assert_eq!(drain(&mut s), (vec![], vec![]), "silent once terminated");
}

#[test]
fn invite_server_486_timer_g_then_ack_then_timer_i() {
    let t0 = Instant::now();
    let mut s = InviteServer::new(t0, Timers::default());
    s.respond(t0, 100, b("100"));
    s.respond(t0, 486, b("486"));
    assert_eq!(drain(&mut s).0, vec![b("100"), b("486")]);
    assert_eq!(s.state(), InviteServerState::Completed);

    let trace = run_timers(&mut s, t0, t0 + ms(4000));
    assert_eq!(trace.tx_times(), capped_schedule(3));
    assert!(trace.tx.iter().all(|(_, x)| *x == b("486")));

    s.ack_received(t0 + ms(4000));
    assert_eq!(s.state(), InviteServerState::Confirmed);
    assert_eq!(s.poll_timeout(), Some(t0 + ms(9000)), "timer I = T4");
    s.ack_received(t0 + ms(5000));
    s.on_request_retransmit(t0 + ms(5000));
    assert_eq!(drain(&mut s), (vec![], vec![]), "Confirmed absorbs");

    let trace = run_timers(&mut s, t0, t0 + ms(60_000));
    assert!(trace.tx.is_empty(), "the ACK stopped timer G");
    assert_eq!(trace.ev, vec![(ms(9000), TxEvent::Terminated)]);
}

#[test]
fn invite_server_486_without_ack_ends_at_timer_h() {
    let t0 = Instant::now();
    let mut s = InviteServer::new(t0, Timers::default());
    s.respond(t0, 486, b("486"));
    drain(&mut s);
    let trace = run_timers(&mut s, t0, t0 + ms(100_000));
    assert_eq!(trace.tx_times(), capped_schedule(10));
    assert_eq!(
        trace.ev,
        vec![
            (ms(32_000), TxEvent::AckTimeout),
            (ms(32_000), TxEvent::Terminated)
        ]
    );
}

#[test]
fn invite_server_request_retransmit_resends_latest_response() {
    let t0 = Instant::now();
    let mut s = InviteServer::new(t0, Timers::default());
    s.on_request_retransmit(t0);
    assert_eq!(drain(&mut s).0, Vec::<Bytes>::new(), "nothing sent yet");

    s.respond(t0, 100, b("100"));
    drain(&mut s);
    s.on_request_retransmit(t0 + ms(100));
    assert_eq!(drain(&mut s).0, vec![b("100")]);

    s.respond(t0 + ms(200), 180, b("180"));
    drain(&mut s);
    s.on_request_retransmit(t0 + ms(300));
    assert_eq!(drain(&mut s).0, vec![b("180")]);
    assert_eq!(
        s.poll_timeout(),
        None,
        "provisionals are not retransmitted on a timer"
    );

    s.respond(t0 + ms(400), 603, b("603"));
    drain(&mut s);
    let g = s.poll_timeout();
    s.on_request_retransmit(t0 + ms(500));
    assert_eq!(drain(&mut s).0, vec![b("603")]);
    assert_eq!(
        s.poll_timeout(),
        g,
        "a request retransmit leaves timer G alone"
    );
}

#[test]
fn invite_server_discards_responses_after_a_final() {
    let t0 = Instant::now();
    let mut s = InviteServer::new(t0, Timers::default());
    s.respond(t0, 200, b("200"));
    s.respond(t0, 486, b("486"));
    s.respond(t0, 180, b("180"));
    s.respond(t0, 99, b("bogus"));
    assert_eq!(drain(&mut s).0, vec![b("200")]);
    assert_eq!(s.final_status(), Some(200));
    s.on_request_retransmit(t0 + ms(1));
    assert_eq!(drain(&mut s).0, vec![b("200")]);
}

#[test]
fn invite_server_ignores_out_of_range_status_in_proceeding() {
    let t0 = Instant::now();
    let mut s = InviteServer::new(t0, Timers::default());
    s.respond(t0, 700, b("700"));
    s.respond(t0, 0, b("0"));
    assert_eq!(drain(&mut s), (vec![], vec![]));
    assert_eq!(s.state(), InviteServerState::Proceeding);
}

#[test]
fn invite_server_input_after_a_missed_deadline_fires_the_timer_first() {
    let t0 = Instant::now();
    let mut s = InviteServer::new(t0, Timers::default());
    s.respond(t0, 486, b("486"));
    drain(&mut s);
    // The driver slept through timers G and H; a late ACK must not resurrect the transaction.
    s.ack_received(t0 + ms(40_000));
    assert_eq!(
        drain(&mut s),
        (vec![], vec![TxEvent::AckTimeout, TxEvent::Terminated])
    );
    assert_eq!(s.state(), InviteServerState::Terminated);
}

#[test]
fn late_wakeup_sends_one_retransmission_and_reschedules_ahead() {
    let t0 = Instant::now();
    let mut s = InviteServer::new(t0, Timers::default());
    s.respond(t0, 200, b("200"));
    drain(&mut s);
    let late = t0 + ms(10_000);
    s.handle_timeout(late);
    assert_eq!(
        drain(&mut s),
        (vec![b("200")], vec![]),
        "no burst of catch-up sends"
    );
    assert_eq!(s.poll_timeout(), Some(late + ms(1000)));
}

// ---------------------------------------------------------------- non-INVITE server

#[test]
fn non_invite_server_absorbs_retransmitted_bye_and_ends_at_timer_j() {
    let t0 = Instant::now();
    let mut s = NonInviteServer::new(t0, Timers::default());
    s.on_request_retransmit(t0 + ms(10));
    assert_eq!(drain(&mut s), (vec![], vec![]), "Trying: nothing to resend");
    assert_eq!(s.state(), NonInviteServerState::Trying);

    s.respond(t0 + ms(20), 200, b("200"));
    assert_eq!(drain(&mut s).0, vec![b("200")]);
    assert_eq!(s.state(), NonInviteServerState::Completed);
    assert_eq!(s.final_status(), Some(200));
    assert_eq!(s.poll_timeout(), Some(t0 + ms(32_020)), "timer J = 64*T1");

    s.on_request_retransmit(t0 + ms(500));
    s.on_request_retransmit(t0 + ms(1500));
    assert_eq!(drain(&mut s).0, vec![b("200"), b("200")]);
    s.respond(t0 + ms(1600), 500, b("500"));
    assert_eq!(
        drain(&mut s).0,
        Vec::<Bytes>::new(),
        "a second final is discarded"
    );

    let trace = run_timers(&mut s, t0, t0 + ms(60_000));
    assert!(trace.tx.is_empty());
    assert_eq!(trace.ev, vec![(ms(32_020), TxEvent::Terminated)]);
    s.on_request_retransmit(t0 + ms(60_000));
    assert_eq!(drain(&mut s), (vec![], vec![]));
}

#[test]
fn non_invite_server_provisional_then_final() {
    let t0 = Instant::now();
    let mut s = NonInviteServer::new(t0, Timers::default());
    s.respond(t0, 100, b("100"));
    assert_eq!(s.state(), NonInviteServerState::Proceeding);
    assert_eq!(s.poll_timeout(), None);
    s.on_request_retransmit(t0 + ms(500));
    s.respond(t0 + ms(600), 202, b("202"));
    s.on_request_retransmit(t0 + ms(700));
    assert_eq!(
        drain(&mut s).0,
        vec![b("100"), b("100"), b("202"), b("202")]
    );
}

// ---------------------------------------------------------------- non-INVITE client

#[test]
fn non_invite_client_retransmits_on_timer_e_until_the_final() {
    let t0 = Instant::now();
    let mut c = NonInviteClient::new(t0, Timers::default(), b("BYE"));
    assert_eq!(drain(&mut c), (vec![b("BYE")], vec![]), "sent at once");

    let trace = run_timers(&mut c, t0, t0 + ms(8000));
    assert_eq!(trace.tx_times(), capped_schedule(4));
    assert!(trace.tx.iter().all(|(_, x)| *x == b("BYE")));

    c.on_response(t0 + ms(8000), 200);
    assert_eq!(drain(&mut c), (vec![], vec![TxEvent::Response(200)]));
    assert_eq!(c.state(), NonInviteClientState::Completed);
    assert_eq!(c.poll_timeout(), Some(t0 + ms(13_000)), "timer K = T4");
    c.on_response(t0 + ms(9000), 200);
    c.on_response(t0 + ms(9000), 180);
    assert_eq!(
        drain(&mut c),
        (vec![], vec![]),
        "retransmitted final absorbed"
    );

    let trace = run_timers(&mut c, t0, t0 + ms(60_000));
    assert!(trace.tx.is_empty(), "a final stops timer E");
    assert_eq!(trace.ev, vec![(ms(13_000), TxEvent::Terminated)]);
}

#[test]
fn non_invite_client_times_out_at_timer_f() {
    let t0 = Instant::now();
    let mut c = NonInviteClient::new(t0, Timers::default(), b("BYE"));
    drain(&mut c);
    let trace = run_timers(&mut c, t0, t0 + ms(100_000));
    assert_eq!(trace.tx_times(), capped_schedule(10));
    assert_eq!(
        trace.ev,
        vec![
            (ms(32_000), TxEvent::Timeout),
            (ms(32_000), TxEvent::Terminated)
        ]
    );
    c.on_response(t0 + ms(33_000), 200);
    assert_eq!(
        drain(&mut c),
        (vec![], vec![]),
        "too late: nothing reported"
    );
}

#[test]
fn non_invite_client_retransmits_at_t2_after_a_provisional() {
    let t0 = Instant::now();
    let mut c = NonInviteClient::new(t0, Timers::default(), b("OPTIONS"));
    drain(&mut c);
    let first = run_timers(&mut c, t0, t0 + ms(600));
    assert_eq!(first.tx_times(), vec![ms(500)]);

    c.on_response(t0 + ms(600), 100);
    assert_eq!(drain(&mut c), (vec![], vec![TxEvent::Response(100)]));
    assert_eq!(c.state(), NonInviteClientState::Proceeding);
    c.on_response(t0 + ms(700), 100);
    assert_eq!(drain(&mut c).1, vec![TxEvent::Response(100)]);

    // The armed timer E (1.5 s) still fires; from then on the interval is T2, and timer F
    // still bounds Proceeding.
    let trace = run_timers(&mut c, t0, t0 + ms(100_000));
    let expected: Vec<Duration> = (0..8).map(|i| ms(1500 + 4000 * i)).collect();
    assert_eq!(trace.tx_times(), expected);
    assert_eq!(
        trace.ev,
        vec![
            (ms(32_000), TxEvent::Timeout),
            (ms(32_000), TxEvent::Terminated)
        ]
    );
}

// ---------------------------------------------------------------- INVITE client

#[test]
fn invite_client_timer_a_doubles_uncapped_and_timer_b_times_out() {
    let t0 = Instant::now();
    let mut c = InviteClient::new(t0, Timers::default(), b("INVITE"));
    assert_eq!(drain(&mut c).0, vec![b("INVITE")]);
    let trace = run_timers(&mut c, t0, t0 + ms(100_000));
    let expected: Vec<Duration> = [500, 1500, 3500, 7500, 15_500, 31_500]
        .into_iter()
        .map(ms)
        .collect();
    assert_eq!(trace.tx_times(), expected);
    assert_eq!(
        trace.ev,
        vec![
            (ms(32_000), TxEvent::Timeout),
            (ms(32_000), TxEvent::Terminated)
        ]
    );
}

#[test]
fn invite_client_provisional_stops_retransmission_then_2xx_accepted() {
    let t0 = Instant::now();
    let mut c = InviteClient::new(t0, Timers::default(), b("INVITE"));
    drain(&mut c);
    let no_ack = || -> Bytes { panic!("no ACK is built for a 1xx or 2xx") };

    c.on_response(t0 + ms(300), 100, no_ack);
    c.on_response(t0 + ms(400), 180, no_ack);
    assert_eq!(
        drain(&mut c),
        (vec![], vec![TxEvent::Response(100), TxEvent::Response(180)])
    );
    assert_eq!(c.state(), InviteClientState::Proceeding);
    assert_eq!(
        c.poll_timeout(),
        None,
        "no timer A, and timer B only guards Calling"
    );

    let t_ok = t0 + ms(5000);
    c.on_response(t_ok, 200, no_ack);
    assert_eq!(drain(&mut c), (vec![], vec![TxEvent::Response(200)]));
    assert_eq!(c.state(), InviteClientState::Accepted);
    assert_eq!(c.final_status(), Some(200));
    assert_eq!(c.poll_timeout(), Some(t_ok + ms(32_000)), "timer M");

    // RFC 6026: each 2xx retransmission reaches the TU so it can ACK again; others do not.
    c.on_response(t_ok + ms(500), 200, no_ack);
    c.on_response(t_ok + ms(600), 486, no_ack);
    c.on_response(t_ok + ms(700), 180, no_ack);
    c.on_response(t_ok + ms(1500), 200, no_ack);
    assert_eq!(
        drain(&mut c),
        (vec![], vec![TxEvent::Response(200), TxEvent::Response(200)])
    );

    let trace = run_timers(&mut c, t0, t0 + ms(100_000));
    assert!(trace.tx.is_empty());
    assert_eq!(trace.ev, vec![(ms(37_000), TxEvent::Terminated)]);
}

#[test]
fn invite_client_acks_a_non_2xx_final_and_reacks_its_retransmissions() {
    let t0 = Instant::now();
    let mut c = InviteClient::new(t0, Timers::default(), b("INVITE"));
    drain(&mut c);
    let built = Cell::new(0);
    let ack = || {
        built.set(built.get() + 1);
        b("ACK")
    };

    let t_busy = t0 + ms(400);
    c.on_response(t_busy, 486, ack);
    assert_eq!(
        drain(&mut c),
        (vec![b("ACK")], vec![TxEvent::Response(486)])
    );
    assert_eq!(c.state(), InviteClientState::Completed);
    assert_eq!(c.poll_timeout(), Some(t_busy + ms(32_000)), "timer D");

    c.on_response(t_busy + ms(500), 486, ack);
    c.on_response(t_busy + ms(1500), 486, ack);
    c.on_response(t_busy + ms(1600), 200, ack);
    assert_eq!(
        drain(&mut c),
        (vec![b("ACK"), b("ACK")], vec![]),
        "final retransmissions get the stored ACK, not a new event"
    );
    assert_eq!(built.get(), 1, "the ACK is built once");

    let trace = run_timers(&mut c, t0, t0 + ms(100_000));
    assert!(trace.tx.is_empty(), "a final stops timer A");
    assert_eq!(trace.ev, vec![(ms(32_400), TxEvent::Terminated)]);
}

#[test]
fn invite_client_response_after_timer_a_was_due_fires_it_first() {
    let t0 = Instant::now();
    let mut c = InviteClient::new(t0, Timers::default(), b("INVITE"));
    drain(&mut c);
    c.on_response(t0 + ms(700), 180, || b("ACK"));
    assert_eq!(
        drain(&mut c),
        (vec![b("INVITE")], vec![TxEvent::Response(180)]),
        "timer A was due at 500 ms, before the 180"
    );
    assert_eq!(c.poll_timeout(), None);
}

/// Over TCP or TLS a request and a non-2xx final go out once, and the states that only wait
/// for stray retransmissions end at once; the INVITE's 2xx is still repeated until its ACK.
#[test]
fn over_a_stream_only_the_2xx_is_retransmitted() {
    let t0 = Instant::now();
    let timers = Timers::default().reliable();

    let mut bye = NonInviteClient::new(t0, timers, b("BYE"));
    assert_eq!(bye.poll_transmit(), Some(b("BYE")));
    assert_eq!(
        bye.poll_timeout(),
        Some(t0 + ms(32_000)),
        "only timer F runs"
    );
    bye.on_response(t0 + ms(10), 200);
    assert_eq!(bye.poll_event(), Some(TxEvent::Response(200)));
    bye.handle_timeout(t0 + ms(10));
    assert!(bye.is_terminated(), "timer K is zero");
    assert_eq!(bye.poll_transmit(), None);

    let mut busy = InviteServer::new(t0, timers);
    busy.respond(t0, 486, b("486"));
    assert_eq!(busy.poll_transmit(), Some(b("486")));
    let trace = run_timers(&mut busy, t0, t0 + ms(40_000));
    assert!(trace.tx.is_empty(), "no timer G: {:?}", trace.tx);
    assert_eq!(trace.ev.first(), Some(&(ms(32_000), TxEvent::AckTimeout)));

    let mut ok = InviteServer::new(t0, timers);
    ok.respond(t0, 200, b("200"));
    assert_eq!(ok.poll_transmit(), Some(b("200")));
    let trace = run_timers(&mut ok, t0, t0 + ms(2_000));
    assert_eq!(
        trace.tx.len(),
        2,
        "the 2xx at 500 ms and 1.5 s: {:?}",
        trace.tx
    );

    let mut options = NonInviteServer::new(t0, timers);
    options.respond(t0, 200, b("200"));
    options.handle_timeout(t0);
    assert!(options.is_terminated(), "timer J is zero");
}

#[test]
fn timer_d_covers_timer_h_when_t1_is_raised() {
    let t0 = Instant::now();
    let timers = Timers {
        t1: ms(1000),
        ..Timers::default()
    };
    let mut c = InviteClient::new(t0, timers, b("INVITE"));
    c.on_response(t0, 503, || b("ACK"));
    assert_eq!(c.poll_timeout(), Some(t0 + ms(64_000)));
}

#[test]
fn degenerate_timers_still_schedule_strictly_ahead() {
    let t0 = Instant::now();
    let zero = Timers {
        t1: ms(0),
        t2: ms(0),
        t4: ms(0),
        reliable: false,
    };
    let mut c = NonInviteClient::new(t0, zero, b("BYE"));
    assert!(c.poll_timeout().is_some_and(|t| t > t0));
    let trace = run_timers(&mut c, t0, t0 + ms(1000));
    assert_eq!(
        trace.ev.last(),
        Some(&(ms(64), TxEvent::Terminated)),
        "T1 floors at 1 ms, so timer F is 64 ms"
    );
    let huge = Timers {
        t1: Duration::MAX,
        t2: Duration::MAX,
        t4: Duration::MAX,
        reliable: false,
    };
    let mut c = InviteClient::new(t0, huge, b("INVITE"));
    assert_eq!(
        c.poll_timeout(),
        None,
        "unrepresentable deadlines never fire"
    );
    c.on_response(t0, 486, || b("ACK"));
    assert_eq!(drain(&mut c).0, vec![b("INVITE"), b("ACK")]);
}

// ---------------------------------------------------------------- matching keys

#[test]
fn server_key_follows_rfc3261_matching() {
    let invite = ServerKey::new("z9hG4bK776asdhds", "PC33.atlanta.com:5060", "INVITE").unwrap();
    let ack = ServerKey::new("z9hG4bK776asdhds", "pc33.atlanta.com:5060", "ACK").unwrap();
    assert_eq!(invite, ack, "ACK matches its INVITE; host case is forgiven");
    assert_eq!(invite.sent_by, "pc33.atlanta.com:5060");

    let cancel = ServerKey::new("z9hG4bK776asdhds", "pc33.atlanta.com:5060", "CANCEL").unwrap();
    assert_ne!(cancel, invite, "CANCEL is its own transaction");
    assert_eq!(cancel.cancelled_invite(), Some(invite.clone()));
    assert_eq!(invite.cancelled_invite(), None);

    let other_branch = ServerKey::new("z9hG4bK776asdhdX", "pc33.atlanta.com:5060", "INVITE");
    assert_ne!(other_branch, Some(invite.clone()));
    let other_host = ServerKey::new("z9hG4bK776asdhds", "10.0.0.1:5060", "INVITE");
    assert_ne!(other_host, Some(invite));

    assert_eq!(
        ServerKey::new("776asdhds", "h:5060", "INVITE"),
        None,
        "RFC 2543"
    );
    assert_eq!(ServerKey::new("Z9HG4BK776", "h:5060", "INVITE"), None);
    assert_eq!(ServerKey::new("z9hG4bK1", "  ", "INVITE"), None);
    assert_eq!(ServerKey::new("z9hG4bK1", "h", ""), None);
    let lower_ack = ServerKey::new("z9hG4bK1", "h", "ack").unwrap();
    assert_eq!(lower_ack.method, "ack", "methods are case-sensitive");
}

#[test]
fn client_key_pairs_branch_with_cseq_method() {
    let invite = ClientKey::new("z9hG4bKabc", "INVITE").unwrap();
    let cancel = ClientKey::new("z9hG4bKabc", "CANCEL").unwrap();
    assert_ne!(invite, cancel);
    assert_eq!(ClientKey::new(" z9hG4bKabc ", "INVITE"), Some(invite));
    assert_eq!(ClientKey::new("abc", "INVITE"), None);
    assert_eq!(ClientKey::new("z9hG4bKabc", ""), None);
}

#[test]
fn new_branch_is_cookie_plus_128_random_bits() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let a = new_branch(&mut rng);
    let c = new_branch(&mut rng);
    assert!(a.starts_with(BRANCH_COOKIE));
    assert_eq!(a.len(), BRANCH_COOKIE.len() + 32);
    assert!(a[BRANCH_COOKIE.len()..]
        .bytes()
        .all(|x| x.is_ascii_hexdigit()));
    assert_ne!(a, c);
    assert!(ServerKey::new(&a, "h", "BYE").is_some());
}

// ---------------------------------------------------------------- properties

#[derive(Clone, Copy, Debug)]
enum Kind {
    InviteServer,
    NonInviteServer,
    NonInviteClient,
    InviteClient,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    /// Move the clock without telling the machine.
    Advance(u64),
    /// Jump to the machine's own deadline and fire it, as a driver does.
    FireNext,
    /// `handle_timeout` at the current time, possibly early.
    Poke,
    /// `respond` for servers, `on_response` for clients.
    Status(u16),
    RequestRetransmit,
    Ack,
}

enum Machine {
    Is(InviteServer),
    Ns(NonInviteServer),
    Nc(NonInviteClient),
    Ic(InviteClient),
}

impl Machine {
    fn new(kind: Kind, now: Instant, timers: Timers) -> Self {
        match kind {
            Kind::InviteServer => Machine::Is(InviteServer::new(now, timers)),
            Kind::NonInviteServer => Machine::Ns(NonInviteServer::new(now, timers)),
            Kind::NonInviteClient => Machine::Nc(NonInviteClient::new(now, timers, b("REQ"))),
            Kind::InviteClient => Machine::Ic(InviteClient::new(now, timers, b("INVITE"))),
        }
    }

    fn tx(&mut self) -> &mut dyn Transaction {
        match self {
            Machine::Is(m) => m,
            Machine::Ns(m) => m,
            Machine::Nc(m) => m,
            Machine::Ic(m) => m,
        }
    }

    /// Returns whether the machine was handed an input (some ops mean nothing to some kinds).
    fn apply(&mut self, op: Op, now: Instant) -> bool {
        match (self, op) {
            (m, Op::FireNext | Op::Poke) => m.tx().handle_timeout(now),
            (Machine::Is(m), Op::Status(s)) => m.respond(now, s, b("RESP")),
            (Machine::Ns(m), Op::Status(s)) => m.respond(now, s, b("RESP")),
            (Machine::Nc(m), Op::Status(s)) => m.on_response(now, s),
            (Machine::Ic(m), Op::Status(s)) => m.on_response(now, s, || b("ACK")),
            (Machine::Is(m), Op::RequestRetransmit) => m.on_request_retransmit(now),
            (Machine::Ns(m), Op::RequestRetransmit) => m.on_request_retransmit(now),
            (Machine::Is(m), Op::Ack) => m.ack_received(now),
            (_, Op::Advance(_))
            | (Machine::Nc(_) | Machine::Ic(_), Op::RequestRetransmit)
            | (Machine::Ns(_) | Machine::Nc(_) | Machine::Ic(_), Op::Ack) => return false,
        }
        true
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::InviteServer),
        Just(Kind::NonInviteServer),
        Just(Kind::NonInviteClient),
        Just(Kind::InviteClient),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..40_000).prop_map(Op::Advance),
        Just(Op::FireNext),
        Just(Op::Poke),
        prop_oneof![4 => 100u16..700, 1 => any::<u16>()].prop_map(Op::Status),
        Just(Op::RequestRetransmit),
        Just(Op::Ack),
    ]
}

fn timers() -> impl Strategy<Value = Timers> {
    let d = prop_oneof![
        4 => (0u64..10_000).prop_map(Duration::from_millis),
        1 => Just(Duration::MAX),
    ];
    prop_oneof![
        3 => Just(Timers::default()),
        1 => (d.clone(), d.clone(), d).prop_map(|(t1, t2, t4)| Timers { t1, t2, t4, reliable: false }),
    ]
}

proptest! {
    #[test]
    fn machines_never_panic_and_keep_their_promises(
        kind in kind(),
        timers in timers(),
        ops in prop::collection::vec(op(), 0..80),
    ) {
        let mut now = Instant::now();
        let mut m = Machine::new(kind, now, timers);
        // The promise is about the last `now` the machine was given, not the test's clock.
        let mut last_input = now;
        let mut terminated_seen = 0;
        let mut finals = 0;
        for op in ops {
            match op {
                Op::Advance(n) => now += Duration::from_millis(n),
                Op::FireNext => if let Some(at) = m.tx().poll_timeout() {
                    now = now.max(at);
                },
                _ => {}
            }
            let was_terminated = m.tx().is_terminated();
            if m.apply(op, now) {
                last_input = now;
            }
            let (tx, ev) = drain(m.tx());
            if was_terminated {
                prop_assert!(tx.is_empty() && ev.is_empty(), "output after Terminated");
            }
            for (i, e) in ev.iter().enumerate() {
                if *e == TxEvent::Terminated {
                    terminated_seen += 1;
                    prop_assert_eq!(i, ev.len() - 1, "Terminated is the last event");
                }
                if let (Kind::NonInviteClient, TxEvent::Response(300..)) |
                    (Kind::NonInviteClient, TxEvent::Response(200..=299)) = (kind, e) {
                    finals += 1;
                }
            }
            prop_assert!(finals <= 1, "a non-INVITE final is reported once");
            let t = m.tx();
            if t.is_terminated() {
                prop_assert_eq!(t.poll_timeout(), None);
                prop_assert_eq!(t.poll_transmit(), None);
                prop_assert_eq!(terminated_seen, 1);
            } else {
                prop_assert_eq!(terminated_seen, 0);
                if let Some(at) = t.poll_timeout() {
                    prop_assert!(at > last_input, "deadline {:?} not after {:?}", at, last_input);
                }
            }
        }
    }
}
