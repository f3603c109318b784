use std::task::Waker;

use super::*;

fn session() -> (RemoteSession, DriverEnds) {
    RemoteSession::with_capacity("test", 2)
}

fn poll(s: &mut RemoteSession, want: bool) -> Poll<Option<AgentOutput>> {
    s.poll_output(&mut Context::from_waker(Waker::noop()), want)
}

fn frame(v: i16) -> AudioFrame {
    AudioFrame::from_samples(8000, &[v; 160])
}

fn audio(s: &mut RemoteSession) -> i16 {
    match poll(s, true) {
        Poll::Ready(Some(AgentOutput::Audio(f))) => f.samples()[0],
        other => panic!("{other:?}"),
    }
}

fn played(ends: &mut DriverEnds) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(up) = ends.up_rx.try_recv() {
        if let Up::Played(name) = up {
            out.push(name);
        }
    }
    out
}

/// A far end that streams faster than real time without end: the queue stops at two
/// minutes of speech (memory bounded), the excess is dropped and counted, and what is
/// queued still plays in order.
#[test]
fn a_flood_of_speech_is_capped_at_two_minutes() {
    let (mut s, ends) = session();
    for i in 0..MAX_PLAYOUT + 500 {
        ends.down_tx
            .send(Down::Frame(frame((i % 1000) as i16)))
            .unwrap();
    }
    assert!(poll(&mut s, false).is_pending());
    assert_eq!(s.playout.queue.len(), MAX_PLAYOUT);
    assert_eq!(s.playout.down_dropped, 500);
    assert_eq!(audio(&mut s), 0);
    // Room again: new speech is queued behind the old.
    ends.down_tx.send(Down::Frame(frame(-1))).unwrap();
    assert!(poll(&mut s, false).is_pending());
    assert!(matches!(s.playout.queue.back(), Some(Queued::Frame(f)) if f.samples()[0] == -1));
}

#[test]
fn frames_leave_only_on_the_paced_clock_and_a_clear_drops_them_at_once() {
    let (mut s, ends) = session();
    for v in 1..=3 {
        ends.down_tx.send(Down::Frame(frame(v))).unwrap();
    }
    assert!(poll(&mut s, false).is_pending());
    assert!(s.audio_queued());
    assert_eq!(audio(&mut s), 1);
    ends.down_tx.send(Down::Clear).unwrap();
    ends.down_tx.send(Down::Frame(frame(9))).unwrap();
    match poll(&mut s, true) {
        Poll::Ready(Some(AgentOutput::Event(AgentEvent::ClearPlayout))) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(audio(&mut s), 9);
    assert!(poll(&mut s, true).is_pending());
}

#[test]
fn a_mark_is_reported_once_the_audio_before_it_has_played() {
    let (mut s, mut ends) = session();
    // Nothing queued: reported at once.
    ends.down_tx.send(Down::Mark("first".into())).unwrap();
    assert!(poll(&mut s, false).is_pending());
    assert_eq!(played(&mut ends), ["first"]);
    for d in [
        Down::Frame(frame(1)),
        Down::Mark("a".into()),
        Down::Frame(frame(2)),
        Down::Mark("b".into()),
        Down::Mark("c".into()),
    ] {
        ends.down_tx.send(d).unwrap();
    }
    assert!(poll(&mut s, false).is_pending());
    assert!(played(&mut ends).is_empty(), "nothing played yet");
    assert_eq!(audio(&mut s), 1);
    assert_eq!(played(&mut ends), ["a"]);
    assert_eq!(audio(&mut s), 2);
    assert_eq!(played(&mut ends), ["b", "c"]);
    assert!(!s.audio_queued());
}

#[test]
fn a_clear_reports_every_pending_mark_in_order() {
    let (mut s, mut ends) = session();
    for d in [
        Down::Frame(frame(1)),
        Down::Mark("a".into()),
        Down::Frame(frame(2)),
        Down::Mark("b".into()),
        Down::Clear,
        Down::Mark("after".into()),
    ] {
        ends.down_tx.send(d).unwrap();
    }
    assert!(matches!(
        poll(&mut s, true),
        Poll::Ready(Some(AgentOutput::Event(AgentEvent::ClearPlayout)))
    ));
    assert_eq!(played(&mut ends), ["a", "b", "after"]);
    assert!(!s.audio_queued());
}

#[test]
fn the_end_comes_after_the_queue_has_played() {
    let (mut s, ends) = session();
    ends.down_tx.send(Down::Frame(frame(1))).unwrap();
    ends.down_tx
        .send(Down::End {
            reason: "EVI hung up".into(),
            failed: false,
        })
        .unwrap();
    drop(ends);
    assert!(poll(&mut s, false).is_pending(), "a frame is still queued");
    assert_eq!(audio(&mut s), 1);
    match poll(&mut s, true) {
        Poll::Ready(Some(AgentOutput::Event(AgentEvent::Hangup { reason }))) => {
            assert_eq!(reason, "EVI hung up")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(poll(&mut s, true), Poll::Ready(None)));
}

#[test]
fn a_vanished_driver_ends_the_session_with_a_reason() {
    let (mut s, ends) = session();
    drop(ends);
    match poll(&mut s, false) {
        Poll::Ready(Some(AgentOutput::Event(AgentEvent::Failed { reason }))) => {
            assert_eq!(reason, "the test driver stopped")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn caller_audio_never_blocks_and_drops_are_counted() {
    let (mut s, mut ends) = session();
    for v in 0..5 {
        s.send_audio(&frame(v));
    }
    assert_eq!(s.up_dropped, 3, "capacity 2");
    assert_eq!(ends.audio_rx.try_recv().unwrap().samples()[0], 0);
    s.send_event(CallerEvent::Dtmf('5'));
    assert_eq!(
        ends.up_rx.try_recv().unwrap(),
        Up::Caller(CallerEvent::Dtmf('5'))
    );
}

/// What OpenAI's truncation needs: after a clear, the driver learns exactly how many of the
/// frames it handed down were heard, counted across earlier clears.
#[test]
fn a_clear_reports_how_many_frames_handed_down_were_heard() {
    let (mut s, mut ends) = session();
    let cleared = |ends: &mut DriverEnds| -> Vec<u64> {
        let mut out = Vec::new();
        while let Ok(up) = ends.up_rx.try_recv() {
            if let Up::Cleared { heard } = up {
                out.push(heard);
            }
        }
        out
    };
    for v in 1..=5 {
        ends.down_tx.send(Down::Frame(frame(v))).unwrap();
    }
    assert_eq!(audio(&mut s), 1);
    assert_eq!(audio(&mut s), 2);
    ends.down_tx.send(Down::Clear).unwrap();
    assert!(matches!(
        poll(&mut s, false),
        Poll::Ready(Some(AgentOutput::Event(AgentEvent::ClearPlayout)))
    ));
    assert_eq!(
        cleared(&mut ends),
        [2],
        "frames 1 and 2 played, 3-5 dropped"
    );
    // Frames 6 and 7 follow; one plays before the next clear: 5 handed down before it were
    // taken (2 heard, 3 dropped), then the 6th was heard.
    for v in 6..=7 {
        ends.down_tx.send(Down::Frame(frame(v))).unwrap();
    }
    assert_eq!(audio(&mut s), 6);
    ends.down_tx.send(Down::Clear).unwrap();
    let _ = poll(&mut s, false);
    assert_eq!(cleared(&mut ends), [6]);
}
