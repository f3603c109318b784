//! Streaming polyphase sample-rate conversion of mono 16-bit audio.
//!
//! The media path converts in both directions between the 8 kHz of G.711 and the agents' rates
//! (Hume EVI sends 48/44.1/24/16 kHz WAV; LiveKit's Opus runs at 48 kHz). A rate pair is reduced
//! to `L/M` (upsample by `L`, keep every `M`-th sample) and one linear-phase low-pass FIR, a
//! Kaiser-windowed sinc designed at the upsampled rate `from × L`, serves as both anti-imaging
//! and anti-aliasing filter. It is split into `L` phases so only the kept output samples are ever
//! computed: each costs one dot product of `taps / L` input samples.
//!
//! # Filter design and the 2 ms delay budget
//!
//! Barge-in latency caps the group delay at 2 ms, so the filter spans at most 4 ms. A Kaiser
//! design's attenuation `A` and transition width `Δf` obey `span ≈ (A − 8) / (14.36 · Δf)`: the
//! product of span and transition width is fixed by the attenuation, whatever the sample rate.
//! The target is a passband flat to 0.85 × the lower Nyquist and a stopband of 63 dB (60 dB plus
//! margin) starting at that Nyquist.
//!
//! - Whenever the lower rate is at least ~12.8 kHz, the 15 % transition band is wide enough
//!   (≥ 958 Hz) and the filter is exactly that, with the shortest span that achieves it (e.g.
//!   1.6 ms of delay for a 16 kHz side).
//! - With an 8 kHz side the transition band would be 600 Hz, which needs a 6.4 ms span (3.2 ms of
//!   delay). The delay wins and the span is held at 4 ms, which leaves a ~960 Hz transition band
//!   for 63 dB. The passband (within 0.4 dB to 3.4 kHz) and the attenuation are kept and the
//!   transition band slides up just far enough: 60 dB is reached at ~4.19 kHz instead of 4 kHz
//!   (about 23 dB at 4 kHz itself). So everything that would alias (or image) into 0–3.8 kHz is
//!   at least 60 dB down, and only 4.0–4.2 kHz content folds, weakened, into 3.8–4.0 kHz, above
//!   the 3.4 kHz a telephone channel carries. The alternative — keep the stopband edge at
//!   4 kHz — tops out near 47 dB there and about 55 dB for what folds into the voice band, which
//!   is worse where it is audible.

use std::f64::consts::PI;
use std::fmt;

/// Longest group delay the filter may add, in seconds (barge-in latency budget).
const MAX_DELAY_SECS: f64 = 0.002;
/// Stopband attenuation aimed for when the delay budget allows it.
const TARGET_ATTEN_DB: f64 = 63.0;
/// Passband edge as a fraction of the lower Nyquist frequency.
const PASSBAND_FRACTION: f64 = 0.85;
/// Largest droop allowed at the passband edge when the design is delay-constrained; 0.1 dB under
/// the 0.5 dB budget leaves room for the reference evaluation's approximation.
const MAX_EDGE_DROOP_DB: f64 = 0.4;
/// Kaiser's empirical constant: span × transition width ≈ (A − 8) / KAISER_SPAN_FACTOR.
const KAISER_SPAN_FACTOR: f64 = 2.285 * 2.0 * PI;
/// Slowest and fastest rates accepted; the design rules above are checked for this range.
const MIN_RATE_HZ: u32 = 8_000;
const MAX_RATE_HZ: u32 = 192_000;
/// Largest coefficient table (f32 entries) built for one rate pair, to refuse pairs whose reduced
/// ratio is huge (e.g. 44101 -> 48000) instead of allocating megabytes per call.
const MAX_COEFFS: usize = 1 << 18;
/// Input samples converted per pass; the history buffer holds this much beyond the filter width.
const BLOCK: usize = 1024;
/// Lanes of the dot product's accumulator; phase widths are padded to a multiple of it.
const LANES: usize = 8;

/// Why a [`Resampler`] could not be built.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ResampleError {
    /// One of the rates was zero.
    #[error("sample rate must not be zero")]
    ZeroRate,
    /// A rate lies outside the range the filter design covers.
    #[error("sample rate {hz} Hz is outside the supported {MIN_RATE_HZ}..={MAX_RATE_HZ} Hz")]
    RateOutOfRange {
        /// The offending rate.
        hz: u32,
    },
    /// The reduced ratio of the pair is so fine that its coefficient table would be too large.
    #[error("converting {from_hz} Hz to {to_hz} Hz needs an upsampling factor of {up}, too large")]
    UnsupportedPair {
        /// Input rate.
        from_hz: u32,
        /// Output rate.
        to_hz: u32,
        /// The upsampling factor `L` the pair reduces to.
        up: u32,
    },
}

/// A streaming converter from one sample rate to another for mono `i16` audio.
///
/// Build one per direction per call; it keeps the input history between [`process`] calls, so a
/// stream may be fed in chunks of any size and the output does not depend on how it was split.
///
/// [`process`]: Resampler::process
#[derive(Clone)]
pub struct Resampler {
    from_hz: u32,
    to_hz: u32,
    /// Upsampling factor `L`.
    up: usize,
    /// Decimation factor `M`.
    down: usize,
    /// `M / L` and `M % L`: how far `next` and `phase` advance per output, precomputed so the
    /// per-output bookkeeping is an add and a compare rather than two divisions.
    step_whole: usize,
    step_phase: usize,
    /// Length of the prototype filter at the upsampled rate (1 for identity).
    taps: usize,
    /// Coefficients per phase, a multiple of [`LANES`]; also the input history each output reads.
    width: usize,
    /// `up` phases of `width` coefficients each, oldest-sample coefficient first, so phase `p`
    /// applied to `hist[next + 1 - width ..= next]` is a plain forward dot product.
    coeffs: Vec<f32>,
    /// Input samples as f32: `width - 1` of history followed by up to [`BLOCK`] new ones.
    hist: Vec<f32>,
    /// Valid samples in `hist`.
    filled: usize,
    /// Index in `hist` of the newest input sample the next output depends on.
    next: usize,
    /// Filter phase of the next output, in `0..up`.
    phase: usize,
}

impl fmt::Debug for Resampler {
    // The coefficient table and history are thousands of numbers; the shape is what helps.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resampler")
            .field("from_hz", &self.from_hz)
            .field("to_hz", &self.to_hz)
            .field("up", &self.up)
            .field("down", &self.down)
            .field("taps", &self.taps)
            .field("delay_secs", &self.delay_secs())
            .finish_non_exhaustive()
    }
}

impl Resampler {
    /// A converter from `from_hz` to `to_hz`, mono.
    ///
    /// Every pair of rates in 8–192 kHz whose reduced ratio `L/M` keeps the coefficient table
    /// reasonable is accepted; that includes every pair among 8, 11.025, 16, 22.05, 24, 32, 44.1
    /// and 48 kHz in both directions. Equal rates give an identity converter that copies.
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Resampler, ResampleError> {
        if from_hz == 0 || to_hz == 0 {
            return Err(ResampleError::ZeroRate);
        }
        for hz in [from_hz, to_hz] {
            if !(MIN_RATE_HZ..=MAX_RATE_HZ).contains(&hz) {
                return Err(ResampleError::RateOutOfRange { hz });
            }
        }
        let g = gcd(from_hz, to_hz);
        let (up, down) = ((to_hz / g) as usize, (from_hz / g) as usize);
        if up == 1 && down == 1 {
            return Ok(Resampler {
                from_hz,
                to_hz,
                up,
                down,
                step_whole: 1,
                step_phase: 0,
                taps: 1,
                width: 1,
                coeffs: Vec::new(),
                hist: Vec::new(),
                filled: 0,
                next: 0,
                phase: 0,
            });
        }

        let upsampled_hz = f64::from(from_hz) * up as f64;
        let nyquist_hz = f64::from(from_hz.min(to_hz)) / 2.0;
        let taps = prototype_taps(nyquist_hz, upsampled_hz);
        // Every output reads at least the input samples it steps over, which keeps the history
        // compaction in `process` from ever needing samples it has not seen yet.
        let width = taps
            .div_ceil(up)
            .max(down.div_ceil(up) + 1)
            .next_multiple_of(LANES);
        if width.saturating_mul(up) > MAX_COEFFS {
            return Err(ResampleError::UnsupportedPair {
                from_hz,
                to_hz,
                up: up as u32,
            });
        }
        let span_secs = (taps - 1) as f64 / upsampled_hz;
        let design = Design::for_span(nyquist_hz, span_secs);
        let proto = design.taps(taps, upsampled_hz);
        // Unity DC gain for the prototype, times L because upsampling spreads each input sample's
        // energy over L slots of which only one is non-zero.
        let sum: f64 = proto.iter().sum();
        let gain = up as f64 / sum;

        let mut coeffs = vec![0.0f32; width * up];
        for (phase, row) in coeffs.chunks_exact_mut(width).enumerate() {
            // Output for phase p reads x[i0 - t] with prototype tap p + t·L; the newest sample
            // sits last in the history window, hence the reversed fill.
            for (t, c) in row.iter_mut().rev().enumerate() {
                if let Some(h) = proto.get(phase + t * up) {
                    *c = (h * gain) as f32;
                }
            }
        }

        let mut r = Resampler {
            from_hz,
            to_hz,
            up,
            down,
            step_whole: down / up,
            step_phase: down % up,
            taps,
            width,
            coeffs,
            hist: vec![0.0; width - 1 + BLOCK],
            filled: 0,
            next: 0,
            phase: 0,
        };
        r.reset();
        Ok(r)
    }

    /// Input sample rate in Hz.
    pub fn input_rate(&self) -> u32 {
        self.from_hz
    }

    /// Output sample rate in Hz.
    pub fn output_rate(&self) -> u32 {
        self.to_hz
    }

    /// Converts all of `input` and appends the samples it completes to `out`.
    ///
    /// Chunking does not matter: after `n` input samples in total, exactly `ceil(n · to / from)`
    /// output samples have been produced, the same as for one call with the whole stream. Does
    /// not allocate when `out` already has room for the new samples.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        // Only the identity converter has no coefficient table.
        if self.coeffs.is_empty() {
            out.extend_from_slice(input);
            return;
        }
        out.reserve(self.pending_outputs(input.len()));
        let mut rest = input;
        while !rest.is_empty() {
            let room = self.hist.len().saturating_sub(self.filled);
            let (now, later) = rest.split_at(room.min(rest.len()));
            rest = later;
            if let Some(dst) = self.hist.get_mut(self.filled..) {
                for (d, &s) in dst.iter_mut().zip(now) {
                    *d = f32::from(s);
                }
            }
            self.filled += now.len();
            self.drain(out);
            self.compact();
        }
    }

    /// Exactly how many outputs `n` more input samples complete, so `process` reserves once and
    /// never grows `out` beyond what the caller may already have provided.
    fn pending_outputs(&self, n: usize) -> usize {
        // Positions in upsampled-rate units relative to the start of `hist`.
        let end = self.filled.saturating_add(n).saturating_mul(self.up);
        let next = self.next * self.up + self.phase;
        end.saturating_sub(next).div_ceil(self.down)
    }

    /// Emits every output whose newest input sample is already in the history.
    fn drain(&mut self, out: &mut Vec<i16>) {
        while self.next < self.filled {
            let start = self.next + 1 - self.width;
            let window = self.hist.get(start..=self.next).unwrap_or_default();
            let row = self
                .coeffs
                .get(self.phase * self.width..(self.phase + 1) * self.width)
                .unwrap_or_default();
            out.push(saturate(dot(window, row)));
            self.next += self.step_whole;
            self.phase += self.step_phase;
            if self.phase >= self.up {
                self.phase -= self.up;
                self.next += 1;
            }
        }
    }

    /// Moves the history the next output needs to the front of the buffer.
    fn compact(&mut self) {
        // `next + 1 - width <= filled` by the width bound in `new`; `min` keeps it so regardless.
        let start = (self.next + 1 - self.width).min(self.filled);
        self.hist.copy_within(start..self.filled, 0);
        self.filled -= start;
        self.next -= start;
    }

    /// Group delay of the filter in seconds: `(taps - 1) / 2` at the upsampled rate.
    pub fn delay_secs(&self) -> f64 {
        (self.taps - 1) as f64 / 2.0 / (f64::from(self.from_hz) * self.up as f64)
    }

    /// Forgets all history, as if newly built (e.g. after barge-in flushed the playout).
    pub fn reset(&mut self) {
        self.hist.fill(0.0);
        // The stream starts after `width - 1` samples of silence, so the first output (phase 0)
        // reads input 0 as its newest sample.
        self.filled = self.width - 1;
        self.next = self.width - 1;
        self.phase = 0;
    }
}

/// Prototype length at `upsampled_hz`: the Kaiser estimate for the full specification, capped by
/// the delay budget.
fn prototype_taps(nyquist_hz: f64, upsampled_hz: f64) -> usize {
    let transition_hz = (1.0 - PASSBAND_FRACTION) * nyquist_hz;
    let wanted = (TARGET_ATTEN_DB - 8.0) / (KAISER_SPAN_FACTOR * transition_hz) * upsampled_hz;
    let allowed = (2.0 * MAX_DELAY_SECS * upsampled_hz + 1e-9).floor();
    wanted.ceil().min(allowed) as usize + 1
}

/// Parameters of a Kaiser-windowed sinc low-pass.
#[derive(Clone, Copy, Debug)]
struct Design {
    /// Kaiser window shape parameter.
    beta: f64,
    /// Cutoff (the -6 dB point, centre of the transition band), Hz.
    cutoff_hz: f64,
}

impl Design {
    /// The design for a filter spanning `span_secs` whose passband ends at 0.85 × `nyquist_hz`.
    fn for_span(nyquist_hz: f64, span_secs: f64) -> Design {
        let beta = kaiser_beta(TARGET_ATTEN_DB);
        let transition_hz = (TARGET_ATTEN_DB - 8.0) / (KAISER_SPAN_FACTOR * span_secs);
        let at = |cutoff_hz| Design { beta, cutoff_hz };
        let edge_hz = PASSBAND_FRACTION * nyquist_hz;
        let ok = |d: Design| d.edge_droop_db(nyquist_hz, span_secs, edge_hz) <= MAX_EDGE_DROOP_DB;
        // The transition band ends at Nyquist when the span allows it to fit above the passband.
        let lo = nyquist_hz - transition_hz / 2.0;
        if ok(at(lo)) {
            return at(lo);
        }
        // Too short for that: keep the attenuation and the passband and slide the transition band
        // up just as far as the passband edge needs (see the module docs for why this trade).
        let (mut lo, mut hi) = (lo, nyquist_hz + transition_hz / 2.0);
        // 12 halvings of a ~1 kHz interval place the band to a fraction of a hertz.
        for _ in 0..12 {
            let mid = (lo + hi) / 2.0;
            if ok(at(mid)) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        at(hi)
    }

    /// `n` taps sampled at `rate_hz`, not normalised.
    fn taps(self, n: usize, rate_hz: f64) -> Vec<f64> {
        let centre = (n - 1) as f64 / 2.0;
        let norm = bessel_i0(self.beta);
        let fc = self.cutoff_hz / rate_hz;
        (0..n)
            .map(|k| {
                let t = k as f64 - centre;
                let sinc = if t == 0.0 {
                    2.0 * fc
                } else {
                    (2.0 * PI * fc * t).sin() / (PI * t)
                };
                let r = if centre > 0.0 { t / centre } else { 0.0 };
                let window = bessel_i0(self.beta * (1.0 - r * r).max(0.0).sqrt()) / norm;
                sinc * window
            })
            .collect()
    }

    /// Deviation in dB from unity at `edge_hz` of this design over `span_secs`.
    ///
    /// The response in Hz of a windowed sinc depends on its span in seconds, barely on the rate it
    /// is sampled at once that is far above the cutoff, so a short reference at 8 × Nyquist stands
    /// in for a prototype that may have thousands of taps.
    fn edge_droop_db(self, nyquist_hz: f64, span_secs: f64, edge_hz: f64) -> f64 {
        let rate = 8.0 * nyquist_hz;
        let n = (span_secs * rate).round() as usize + 1;
        let h = self.taps(n, rate);
        let sum: f64 = h.iter().sum();
        let centre = (n - 1) as f64 / 2.0;
        let w = 2.0 * PI * edge_hz / rate;
        let resp: f64 = h
            .iter()
            .enumerate()
            .map(|(k, v)| v * (w * (k as f64 - centre)).cos())
            .sum();
        (20.0 * (resp / sum).abs().log10()).abs()
    }
}

/// Kaiser's window parameter for a stopband attenuation of `atten_db`.
fn kaiser_beta(atten_db: f64) -> f64 {
    if atten_db > 50.0 {
        0.1102 * (atten_db - 8.7)
    } else if atten_db >= 21.0 {
        0.5842 * (atten_db - 21.0).powf(0.4) + 0.07886 * (atten_db - 21.0)
    } else {
        0.0
    }
}

/// Modified Bessel function of the first kind, order 0, by its power series (converges quickly
/// for the arguments a Kaiser window uses, below ~15).
fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let (mut sum, mut term) = (1.0, 1.0);
    for k in 1..100 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Dot product with independent lane accumulators, which the compiler turns into SIMD (a single
/// running sum would force sequential adds, as float addition is not associative).
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    for (x, y) in a
        .as_chunks::<LANES>()
        .0
        .iter()
        .zip(b.as_chunks::<LANES>().0)
    {
        for ((acc, x), y) in acc.iter_mut().zip(x).zip(y) {
            *acc += x * y;
        }
    }
    acc.iter().sum()
}

/// Rounds half away from zero to the nearest sample value; `as` saturates out-of-range values
/// (and maps NaN to 0). Adding ±0.5 and truncating avoids `f32::round`, a libm call on baseline
/// x86-64 that costs as much as a short dot product.
#[inline]
fn saturate(y: f32) -> i16 {
    (y + 0.5f32.copysign(y)) as i16
}

#[cfg(test)]
mod tests;
