use super::*;
use crate::codec::wav::write_pcm16;
use crate::load::signal::{rms, zero_crossing_hz as pitch};

/// `n` samples of a `hz` tone at `rate`, amplitude 8000, starting at sample `start`.
pub(crate) fn tone(rate: u32, hz: f64, start: usize, n: usize) -> Vec<i16> {
    (start..start + n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
        })
        .collect()
}

fn chunk(id: &str, index: u32, rate: u32, pcm: &[i16]) -> AudioOutput {
    AudioOutput {
        id: id.into(),
        index,
        data: base64::engine::general_purpose::STANDARD.encode(write_pcm16(rate, pcm)),
        custom_session_id: None,
    }
}

struct Sink {
    frames: Vec<AudioFrame>,
    errors: Vec<String>,
}

impl Sink {
    fn new() -> Sink {
        Sink {
            frames: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn push(&mut self, p: &mut Playout, c: AudioOutput) -> bool {
        let (frames, errors) = (&mut self.frames, &mut self.errors);
        p.push(c, &mut |f| frames.push(f), &mut |e| {
            errors.push(e.to_string())
        })
    }

    fn end(&mut self, p: &mut Playout) {
        let (frames, errors) = (&mut self.frames, &mut self.errors);
        p.end_of_turn(&mut |f| frames.push(f), &mut |e| errors.push(e.to_string()));
    }

    fn samples(&self) -> Vec<i16> {
        self.frames
            .iter()
            .flat_map(|f| f.samples().to_vec())
            .collect()
    }
}

#[test]
fn a_48k_tone_comes_out_as_8k_frames_at_the_same_pitch() {
    let mut p = Playout::new();
    let mut sink = Sink::new();
    // One second in ten 100 ms chunks, each a complete WAV file.
    for i in 0..10 {
        assert!(sink.push(
            &mut p,
            chunk("a", i, 48000, &tone(48000, 1000.0, i as usize * 4800, 4800))
        ));
    }
    assert_eq!(sink.frames.len(), 50);
    sink.end(&mut p);
    assert_eq!(sink.frames.len(), 51, "the filter's delay line pushed out");
    assert!(sink
        .frames
        .iter()
        .all(|f| f.sample_rate() == 8000 && f.samples().len() == FRAME));
    let s = sink.samples();
    let steady = &s[160..7840];
    assert!(
        (pitch(steady, 8000.0) - 1000.0).abs() < 10.0,
        "{}",
        pitch(steady, 8000.0)
    );
    // The passband keeps the level: a sine of amplitude 8000 has an RMS of 5657.
    let level = rms(steady);
    assert!((level - 5657.0).abs() < 300.0, "{level}");
    assert!(sink.errors.is_empty());
    assert_eq!(p.stats().chunks_played, 10);
}

#[test]
fn energy_above_4k_is_filtered_out_not_folded_down() {
    let mut p = Playout::new();
    let mut sink = Sink::new();
    // 7 kHz would alias to 1 kHz with a naive decimator.
    sink.push(&mut p, chunk("a", 0, 48000, &tone(48000, 7000.0, 0, 48000)));
    let s = sink.samples();
    assert!(rms(&s[160..]) < 30.0, "{}", rms(&s[160..]));
}

/// Chunks of a constant level per index, so the order can be read back from the frames.
fn level_chunk(id: &str, index: u32, level: i16) -> AudioOutput {
    chunk(id, index, 48000, &vec![level; 4800])
}

fn plateaus(s: &[i16]) -> Vec<i16> {
    // The middle of every 100 ms (800 samples at 8 kHz) piece.
    s.chunks(800)
        .filter(|c| c.len() == 800)
        .map(|c| c[400])
        .collect()
}

#[test]
fn chunks_are_played_in_index_order_whatever_the_arrival_order() {
    let mut p = Playout::new();
    let mut sink = Sink::new();
    sink.push(&mut p, level_chunk("a", 1, 2000));
    sink.push(&mut p, level_chunk("a", 2, 3000));
    assert!(sink.frames.is_empty(), "index 0 is missing: held");
    sink.push(&mut p, level_chunk("a", 0, 1000));
    sink.push(&mut p, level_chunk("b", 0, 4000));
    sink.end(&mut p);
    assert_eq!(plateaus(&sink.samples()), vec![1000, 2000, 3000, 4000]);
}

#[test]
fn a_repeated_index_is_dropped() {
    let mut p = Playout::new();
    let mut sink = Sink::new();
    assert!(sink.push(&mut p, level_chunk("a", 0, 1000)));
    assert!(!sink.push(&mut p, level_chunk("a", 0, 1000)));
    assert_eq!(p.stats().chunks_discarded, 1);
}

#[test]
fn a_gap_is_skipped_when_a_newer_segment_starts_or_too_much_is_held() {
    let mut p = Playout::new();
    let mut sink = Sink::new();
    sink.push(&mut p, level_chunk("a", 0, 1000));
    sink.push(&mut p, level_chunk("a", 2, 3000));
    sink.push(&mut p, level_chunk("b", 0, 4000));
    sink.end(&mut p);
    assert_eq!(plateaus(&sink.samples()), vec![1000, 3000, 4000]);

    let mut p = Playout::new();
    let mut sink = Sink::new();
    for i in 1..=(MAX_HELD as u32 + 1) {
        sink.push(&mut p, level_chunk("a", i, 1000 + i as i16));
    }
    assert!(!sink.frames.is_empty(), "index 0 given up on");
}

#[test]
fn interruption_drops_what_is_held_and_late_chunks_of_the_reply() {
    let mut p = Playout::new();
    let mut sink = Sink::new();
    sink.push(&mut p, level_chunk("a", 0, 1000));
    sink.push(&mut p, level_chunk("a", 2, 3000));
    let before = sink.frames.len();
    p.interrupt();
    assert!(p.is_dead("a"));
    assert!(
        !sink.push(&mut p, level_chunk("a", 1, 2000)),
        "late chunk of the interrupted reply"
    );
    assert!(!sink.push(&mut p, level_chunk("a", 3, 2000)));
    assert_eq!(sink.frames.len(), before);
    assert_eq!(p.stats().chunks_discarded, 3, "one held and two late");
    // The next reply plays from a clean filter.
    assert!(sink.push(&mut p, level_chunk("b", 0, 5000)));
    sink.end(&mut p);
    let after: Vec<i16> = sink.frames[before..]
        .iter()
        .flat_map(|f| f.samples().to_vec())
        .collect();
    assert_eq!(plateaus(&after), vec![5000]);
}

#[test]
fn a_finished_segment_does_not_come_back() {
    let mut p = Playout::new();
    let mut sink = Sink::new();
    sink.push(&mut p, level_chunk("a", 0, 1000));
    sink.push(&mut p, level_chunk("b", 0, 2000));
    assert!(p.is_dead("a"), "b started, so a is complete");
    assert!(!sink.push(&mut p, level_chunk("a", 1, 1000)));
}

#[test]
fn the_rate_is_read_from_every_header() {
    let mut p = Playout::new();
    let mut sink = Sink::new();
    // 24 kHz then 48 kHz then 8 kHz, 100 ms each: 800 samples out each time.
    sink.push(&mut p, chunk("a", 0, 24000, &tone(24000, 500.0, 0, 2400)));
    sink.push(&mut p, chunk("a", 1, 48000, &tone(48000, 500.0, 0, 4800)));
    sink.push(&mut p, chunk("a", 2, 8000, &tone(8000, 500.0, 0, 800)));
    sink.end(&mut p);
    let n = sink.samples().len();
    assert!((2400..=2400 + 2 * FRAME).contains(&n), "{n}");
    assert!(sink.errors.is_empty(), "{:?}", sink.errors);
}

#[test]
fn undecodable_chunks_are_reported_and_skipped() {
    let mut p = Playout::new();
    let mut sink = Sink::new();
    let mut bad = level_chunk("a", 0, 1000);
    bad.data = "***".into();
    sink.push(&mut p, bad);
    let mut stereo = write_pcm16(48000, &[0; 4800]);
    stereo[22] = 2;
    sink.push(
        &mut p,
        AudioOutput {
            id: "a".into(),
            index: 1,
            data: base64::engine::general_purpose::STANDARD.encode(stereo),
            custom_session_id: None,
        },
    );
    sink.push(&mut p, chunk("a", 2, 3, &[0; 10]));
    sink.push(&mut p, level_chunk("a", 3, 1000));
    sink.end(&mut p);
    assert_eq!(sink.errors.len(), 3, "{:?}", sink.errors);
    assert!(sink.errors[0].contains("a/0") && sink.errors[0].contains("base64"));
    assert!(sink.errors[1].contains("2 channels"), "{}", sink.errors[1]);
    assert!(sink.errors[2].contains("3 Hz"), "{}", sink.errors[2]);
    assert_eq!(p.stats().chunks_undecodable, 3);
    assert_eq!(plateaus(&sink.samples()), vec![1000]);
}

#[test]
fn the_last_partial_frame_is_padded_at_the_end_of_the_turn() {
    let mut p = Playout::new();
    let mut sink = Sink::new();
    // 25 ms: one frame now, the rest at the end of the turn.
    sink.push(&mut p, chunk("a", 0, 48000, &tone(48000, 1000.0, 0, 1200)));
    assert_eq!(sink.frames.len(), 1);
    sink.end(&mut p);
    assert_eq!(sink.frames.len(), 2);
    sink.end(&mut p);
    assert_eq!(sink.frames.len(), 2, "nothing more to flush");
}
