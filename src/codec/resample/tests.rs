use super::*;
use proptest::prelude::*;

/// Every rate the media path meets; all pairs among them must work.
const RATES: [u32; 6] = [8_000, 16_000, 24_000, 32_000, 44_100, 48_000];

fn all_pairs() -> impl Iterator<Item = (u32, u32)> {
    RATES
        .iter()
        .flat_map(|&a| RATES.iter().map(move |&b| (a, b)))
}

fn tone(freq: f64, rate: u32, amp: f64, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| (amp * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()).round() as i16)
        .collect()
}

fn convert(from: u32, to: u32, input: &[i16]) -> Vec<i16> {
    let mut r = Resampler::new(from, to).unwrap();
    let mut out = Vec::new();
    r.process(input, &mut out);
    out
}

/// Amplitude of the `freq` component of `x` (Hann-windowed single-bin DFT, i.e. Goertzel).
fn amplitude(x: &[i16], freq: f64, rate: u32) -> f64 {
    let n = x.len() as f64;
    let w = 2.0 * PI * freq / f64::from(rate);
    let (mut re, mut im, mut wsum) = (0.0, 0.0, 0.0);
    for (i, &s) in x.iter().enumerate() {
        let hann = 0.5 - 0.5 * (2.0 * PI * i as f64 / n).cos();
        re += hann * f64::from(s) * (w * i as f64).cos();
        im -= hann * f64::from(s) * (w * i as f64).sin();
        wsum += hann;
    }
    2.0 * (re * re + im * im).sqrt() / wsum
}

/// Frequency from the interpolated positions of the first and last rising zero crossings.
fn zero_crossing_freq(x: &[i16], rate: u32) -> f64 {
    let mut crossings = Vec::new();
    for (i, w) in x.windows(2).enumerate() {
        let (a, b) = (f64::from(w[0]), f64::from(w[1]));
        if a < 0.0 && b >= 0.0 {
            crossings.push(i as f64 + a / (a - b));
        }
    }
    let (first, last) = (crossings[0], crossings[crossings.len() - 1]);
    (crossings.len() - 1) as f64 * f64::from(rate) / (last - first)
}

fn db(ratio: f64) -> f64 {
    20.0 * ratio.log10()
}

/// Converts a 0.5 s tone and returns the steady-state output (the first 10 ms dropped, which is
/// more than the filter's whole span).
fn steady(from: u32, to: u32, freq: f64, amp: f64) -> Vec<i16> {
    let out = convert(from, to, &tone(freq, from, amp, from as usize / 2));
    out[to as usize / 100..].to_vec()
}

/// Asserts a passband tone comes out at its own frequency and level.
fn assert_passes(from: u32, to: u32, freq: f64) {
    let amp = 20_000.0;
    let out = steady(from, to, freq, amp);
    let gain = db(amplitude(&out, freq, to) / amp);
    assert!(
        gain.abs() <= 0.5,
        "{from}->{to}: {freq} Hz tone changed level by {gain:.3} dB"
    );
    let f = zero_crossing_freq(&out, to);
    assert!(
        (f - freq).abs() < 0.5,
        "{from}->{to}: {freq} Hz tone came out at {f:.3} Hz"
    );
}

/// Level in dB, relative to the input tone, of the output component at `probe` Hz when a tone of
/// `freq` Hz is converted.
fn leak_db(from: u32, to: u32, freq: f64, probe: f64) -> f64 {
    let amp = 30_000.0;
    let out = steady(from, to, freq, amp);
    db(amplitude(&out, probe, to) / amp)
}

#[test]
fn down_48k_to_8k_keeps_passband_tones() {
    assert_passes(48_000, 8_000, 1_000.0);
    assert_passes(48_000, 8_000, 3_300.0);
    assert_passes(48_000, 8_000, 300.0);
}

#[test]
fn down_48k_to_8k_rejects_6khz_alias() {
    // 6 kHz folds to 8 - 6 = 2 kHz at the output.
    let leak = leak_db(48_000, 8_000, 6_000.0, 2_000.0);
    assert!(leak <= -55.0, "6 kHz leaked into 2 kHz at {leak:.1} dB");
    // An unfiltered decimator would leave it at full level, which the probe must see.
    let naive: Vec<i16> = tone(6_000.0, 48_000, 30_000.0, 24_000)
        .into_iter()
        .step_by(6)
        .collect();
    assert!(db(amplitude(&naive, 2_000.0, 8_000) / 30_000.0) > -1.0);
}

#[test]
fn up_8k_to_48k_keeps_tone_and_rejects_images() {
    assert_passes(8_000, 48_000, 1_000.0);
    assert_passes(8_000, 48_000, 3_300.0);
    for image in [7_000.0, 9_000.0, 15_000.0, 17_000.0, 23_000.0] {
        let leak = leak_db(8_000, 48_000, 1_000.0, image);
        assert!(leak <= -55.0, "image at {image} Hz only {leak:.1} dB down");
    }
}

#[test]
fn other_pairs_keep_frequency_and_level() {
    for (from, to) in [
        (24_000, 8_000),
        (16_000, 8_000),
        (44_100, 8_000),
        (32_000, 8_000),
        (8_000, 16_000),
        (8_000, 24_000),
        (8_000, 44_100),
        (48_000, 16_000),
        (16_000, 48_000),
        (44_100, 48_000),
        (48_000, 44_100),
        (24_000, 16_000),
    ] {
        assert_passes(from, to, 1_000.0);
    }
}

#[test]
fn wideband_pairs_keep_the_top_of_their_passband() {
    // 0.85 of the lower Nyquist, just under the passband edge.
    assert_passes(48_000, 16_000, 6_700.0);
    assert_passes(16_000, 48_000, 6_700.0);
    assert_passes(44_100, 48_000, 18_500.0);
}

#[test]
fn down_44k1_to_8k_rejects_aliases() {
    // 5 kHz folds to 3 kHz, 9 kHz to 1 kHz.
    assert!(leak_db(44_100, 8_000, 5_000.0, 3_000.0) <= -55.0);
    assert!(leak_db(44_100, 8_000, 9_000.0, 1_000.0) <= -55.0);
}

/// The prototype filter, rebuilt from the polyphase table (so this checks what `process` uses).
fn prototype(r: &Resampler) -> Vec<f64> {
    let mut h = vec![0.0; r.up * r.width];
    for (p, row) in r.coeffs.chunks_exact(r.width).enumerate() {
        for (t, &c) in row.iter().rev().enumerate() {
            h[p + t * r.up] = f64::from(c) / r.up as f64;
        }
    }
    h.truncate(r.taps);
    h
}

/// Magnitude response of the linear-phase `h` at `f` Hz for sample rate `rate`.
fn response(h: &[f64], f: f64, rate: f64) -> f64 {
    let centre = (h.len() - 1) as f64 / 2.0;
    let w = 2.0 * PI * f / rate;
    h.iter()
        .enumerate()
        .map(|(k, v)| v * (w * (k as f64 - centre)).cos())
        .sum::<f64>()
        .abs()
}

/// Worst passband deviation up to 0.85 × Nyquist, the least attenuation from Nyquist on, and the
/// frequency from which the attenuation stays at or above 60 dB (up to the higher rate's Nyquist,
/// beyond which neither aliases nor images come from).
fn measure(from: u32, to: u32) -> (f64, f64, f64) {
    let r = Resampler::new(from, to).unwrap();
    let h = prototype(&r);
    let rate = f64::from(from) * r.up as f64;
    let nyq = f64::from(from.min(to)) / 2.0;
    let top = f64::from(from.max(to)) / 2.0;
    let step = nyq / 400.0;
    let mut ripple: f64 = 0.0;
    let mut f = 0.0;
    while f <= PASSBAND_FRACTION * nyq {
        ripple = ripple.max(db(response(&h, f, rate)).abs());
        f += step;
    }
    let (mut stop, mut from_60) = (f64::INFINITY, nyq);
    let mut f = nyq;
    while f <= top {
        let a = -db(response(&h, f, rate));
        stop = stop.min(a);
        if a < 60.0 {
            from_60 = f + step;
        }
        f += step;
    }
    (ripple, stop, from_60)
}

#[test]
fn filter_meets_design_for_every_pair() {
    let mut failures = Vec::new();
    for (from, to) in all_pairs().filter(|(a, b)| a != b) {
        let (ripple, stop, from_60) = measure(from, to);
        let r = Resampler::new(from, to).unwrap();
        println!(
            "{from:>5} -> {to:>5}: L/M {:>3}/{:<3} taps {:>5} ({:>3}/phase) delay {:.3} ms, \
             ripple {ripple:.3} dB, {stop:.1} dB from Nyquist, 60 dB from {from_60:.0} Hz",
            r.up,
            r.down,
            r.taps,
            r.width,
            r.delay_secs() * 1e3
        );
        // With an 8 kHz side the 2 ms delay budget moves the stopband edge up (see module docs).
        let nyq = f64::from(from.min(to)) / 2.0;
        let latest_60 = if nyq >= 8_000.0 { nyq } else { 1.06 * nyq };
        if ripple > 0.5 || from_60 > latest_60 {
            failures.push((from, to));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn delay_is_within_budget_and_matches_an_impulse() {
    for (from, to) in all_pairs() {
        let mut r = Resampler::new(from, to).unwrap();
        let delay = r.delay_secs();
        assert!(delay <= MAX_DELAY_SECS + 1e-12, "{from}->{to}: {delay} s");
        assert_eq!(from == to, delay == 0.0);
        let at = 37;
        let mut input = vec![0i16; from as usize / 50];
        input[at] = 30_000;
        let mut out = Vec::new();
        r.process(&input, &mut out);
        let peak = (0..out.len()).max_by_key(|&i| out[i]).unwrap();
        let expected = (at as f64 / f64::from(from) + delay) * f64::from(to);
        assert!(
            (peak as f64 - expected).abs() <= 1.0,
            "{from}->{to}: impulse peak at output {peak}, expected {expected:.2}"
        );
    }
}

#[test]
fn cd_and_dat_family_rates_work() {
    for odd in [11_025, 22_050] {
        for other in RATES {
            for (from, to) in [(odd, other), (other, odd)] {
                let r = Resampler::new(from, to).unwrap();
                assert!(r.delay_secs() <= MAX_DELAY_SECS + 1e-12, "{from}->{to}");
                assert_passes(from, to, 1_000.0);
            }
        }
    }
}

#[test]
fn identity_copies() {
    let input = tone(440.0, 16_000, 32_767.0, 1_000);
    let mut r = Resampler::new(16_000, 16_000).unwrap();
    let mut out = Vec::new();
    r.process(&input[..10], &mut out);
    r.process(&input[10..], &mut out);
    assert_eq!(out, input);
    assert_eq!((r.input_rate(), r.output_rate()), (16_000, 16_000));
}

#[test]
fn rates_are_reported() {
    let r = Resampler::new(44_100, 8_000).unwrap();
    assert_eq!((r.input_rate(), r.output_rate()), (44_100, 8_000));
    assert_eq!((r.up, r.down), (80, 441));
}

#[test]
fn refuses_bad_rates() {
    assert_eq!(
        Resampler::new(0, 8_000).unwrap_err(),
        ResampleError::ZeroRate
    );
    assert_eq!(
        Resampler::new(8_000, 0).unwrap_err(),
        ResampleError::ZeroRate
    );
    assert_eq!(
        Resampler::new(8_000, 7_999).unwrap_err(),
        ResampleError::RateOutOfRange { hz: 7_999 }
    );
    assert_eq!(
        Resampler::new(200_000, 8_000).unwrap_err(),
        ResampleError::RateOutOfRange { hz: 200_000 }
    );
    assert!(matches!(
        Resampler::new(48_000, 47_999),
        Err(ResampleError::UnsupportedPair { up: 47_999, .. })
    ));
    // 11.025 kHz family and 22.05 kHz are accepted too.
    assert!(Resampler::new(11_025, 8_000).is_ok());
    assert!(Resampler::new(22_050, 48_000).is_ok());
}

#[test]
fn reset_behaves_like_new() {
    let noise: Vec<i16> = (0..3_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 16) as i16)
        .collect();
    let signal = tone(700.0, 48_000, 12_000.0, 2_000);
    let mut used = Resampler::new(48_000, 8_000).unwrap();
    let mut scratch = Vec::new();
    used.process(&noise[..1_001], &mut scratch);
    used.reset();
    let mut after_reset = Vec::new();
    used.process(&signal, &mut after_reset);
    assert_eq!(after_reset, convert(48_000, 8_000, &signal));
}

#[test]
fn does_not_grow_a_buffer_with_room() {
    let mut r = Resampler::new(48_000, 8_000).unwrap();
    let frame = tone(1_000.0, 48_000, 10_000.0, 960);
    let mut out = Vec::with_capacity(160);
    for _ in 0..5 {
        out.clear();
        let ptr = out.as_ptr();
        r.process(&frame, &mut out);
        assert_eq!((out.len(), out.capacity(), out.as_ptr()), (160, 160, ptr));
    }
    let mut r = Resampler::new(8_000, 48_000).unwrap();
    let mut out = Vec::with_capacity(960);
    r.process(&frame[..160], &mut out);
    assert_eq!((out.len(), out.capacity()), (960, 960));
}

#[test]
fn saturates_instead_of_wrapping() {
    // A full-scale square wave overshoots after filtering (Gibbs); the overshoot must clip.
    let input: Vec<i16> = (0..48_000 / 5)
        .map(|i| {
            if (i / 240) % 2 == 0 {
                i16::MAX
            } else {
                i16::MIN
            }
        })
        .collect();
    let out = convert(48_000, 8_000, &input);
    assert!(out.contains(&i16::MAX) && out.contains(&i16::MIN));
    let delay = (Resampler::new(48_000, 8_000).unwrap().delay_secs() * 8_000.0).round() as usize;
    // Half-periods are 5 ms, 40 output samples; check the middle of each plateau.
    for (n, &y) in out.iter().enumerate().skip(delay + 80) {
        let t = n - delay;
        if t % 80 == 20 {
            assert!(y > 30_000, "sample {n} = {y}");
        } else if t % 80 == 60 {
            assert!(y < -30_000, "sample {n} = {y}");
        }
    }
}

#[test]
fn empty_and_single_samples() {
    let mut r = Resampler::new(8_000, 48_000).unwrap();
    let mut out = Vec::new();
    r.process(&[], &mut out);
    assert!(out.is_empty());
    r.process(&[1_000], &mut out);
    assert_eq!(out.len(), 6);
    let mut r = Resampler::new(48_000, 8_000).unwrap();
    let mut out = Vec::new();
    // Output 0 depends on input 0 only; the next needs input 6.
    for expected in [1, 1, 1, 1, 1, 1, 2] {
        r.process(&[1_000], &mut out);
        assert_eq!(out.len(), expected);
    }
}

#[test]
fn is_clone_debug_send() {
    fn check<T: Clone + fmt::Debug + Send + Sync>() {}
    check::<Resampler>();
    let r = Resampler::new(44_100, 8_000).unwrap();
    let shown = format!("{r:?}");
    assert!(shown.contains("44100") && shown.len() < 200, "{shown}");
    // A clone carries the history on independently.
    let mut a = Resampler::new(48_000, 8_000).unwrap();
    let mut out_a = Vec::new();
    a.process(&tone(500.0, 48_000, 9_000.0, 500), &mut out_a);
    let mut b = a.clone();
    let rest = tone(800.0, 48_000, 9_000.0, 700);
    let (mut ya, mut yb) = (Vec::new(), Vec::new());
    a.process(&rest, &mut ya);
    b.process(&rest, &mut yb);
    assert_eq!(ya, yb);
}

fn pair() -> impl Strategy<Value = (u32, u32)> {
    (0..RATES.len(), 0..RATES.len()).prop_map(|(a, b)| (RATES[a], RATES[b]))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn chunking_does_not_change_output(
        (from, to) in pair(),
        input in proptest::collection::vec(any::<i16>(), 0..3_000),
        cuts in proptest::collection::vec(0usize..700, 0..20),
    ) {
        let whole = convert(from, to, &input);
        let mut r = Resampler::new(from, to).unwrap();
        let mut pieces = Vec::new();
        let mut rest = input.as_slice();
        let mut consumed = 0usize;
        for cut in cuts.into_iter().chain(std::iter::once(usize::MAX)) {
            let (now, later) = rest.split_at(cut.min(rest.len()));
            r.process(now, &mut pieces);
            rest = later;
            consumed += now.len();
            // The produced count is ceil(consumed × to / from): within one of the exact ratio.
            let exact = consumed as f64 * f64::from(to) / f64::from(from);
            prop_assert!((pieces.len() as f64 - exact).abs() <= 1.0);
            prop_assert_eq!(pieces.len() as u64, (consumed as u64 * u64::from(to)).div_ceil(u64::from(from)));
        }
        prop_assert_eq!(pieces, whole);
    }
}
