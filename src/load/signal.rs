//! What each call says: a built-in speech-like test signal, or a WAV file, as 20 ms frames of
//! 8 kHz linear PCM.
//!
//! The audio is made (or decoded) once per run and shared by every call; each call reads it
//! from its own starting point, and the test signal adds a low per-call noise floor from the
//! call's seed, so no two calls say the same thing and a call's frames do not repeat while
//! their echoes are being matched (the built-in signal is ten seconds long).

use std::sync::Arc;

use crate::codec::g711;
use crate::codec::wav::WavAudio;

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME: usize = 160;

/// Length of the built-in signal: far longer than the ~1 s window in which echoes are matched.
const SIGNAL_SECONDS: usize = 10;
/// Peak level of the built-in signal (about -3 dBFS): loud enough that every voiced frame is
/// far from the comfort-silence code, without clipping.
const PEAK: f32 = 23_000.0;
/// Per-call noise floor (about -60 dBFS): inaudible under speech, but it keeps the pauses
/// between syllables from being digital silence and makes each call's frames its own.
const NOISE_AMPLITUDE: i16 = 32;

/// SplitMix64: tiny, fast, and good enough to make signals and seeds; not for secrets.
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * unit
    }
}

/// Vowel formants (F1, F2) in Hz, spread over the vowel space so syllables sound different.
const VOWELS: [(f32, f32); 8] = [
    (730.0, 1090.0),
    (270.0, 2290.0),
    (300.0, 870.0),
    (530.0, 1840.0),
    (660.0, 1720.0),
    (490.0, 1350.0),
    (640.0, 1190.0),
    (440.0, 1020.0),
];
const F3: f32 = 2500.0;
const RATE: f32 = 8000.0;

/// A two-pole resonator (one formant of the vocal tract).
#[derive(Default)]
struct Resonator {
    a1: f32,
    a2: f32,
    y1: f32,
    y2: f32,
}

impl Resonator {
    fn tune(&mut self, freq: f32, bandwidth: f32) {
        let r = (-std::f32::consts::PI * bandwidth / RATE).exp();
        self.a1 = 2.0 * r * (2.0 * std::f32::consts::PI * freq / RATE).cos();
        self.a2 = -r * r;
    }

    fn run(&mut self, x: f32) -> f32 {
        // Normalised so a formant's gain is about the same wherever it sits.
        let y =
            x * (1.0 - self.a1 - self.a2).abs().max(0.05) + self.a1 * self.y1 + self.a2 * self.y2;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// Makes `SIGNAL_SECONDS` of a speech-like signal: syllables of a glottal pulse train through
/// three formant resonators, with rising and falling pitch, an attack/decay envelope and short
/// pauses. It has speech's spectrum and rhythm, so the gateway's path sees what a caller sends,
/// and it never repeats a frame.
pub fn speech_like(seed: u64) -> Vec<i16> {
    let mut rng = SplitMix::new(seed);
    let total = SIGNAL_SECONDS * RATE as usize;
    let mut out: Vec<f32> = Vec::with_capacity(total);
    let mut tract = [
        Resonator::default(),
        Resonator::default(),
        Resonator::default(),
    ];
    let mut phase = 0.0f32;
    while out.len() < total {
        let voiced = (rng.uniform(0.12, 0.30) * RATE) as usize;
        let pause = if rng.uniform(0.0, 1.0) < 0.3 {
            (rng.uniform(0.04, 0.15) * RATE) as usize
        } else {
            0
        };
        let (f1, f2) = VOWELS[(rng.next_u64() % VOWELS.len() as u64) as usize];
        let (f1, f2) = (f1 * rng.uniform(0.9, 1.1), f2 * rng.uniform(0.9, 1.1));
        tract[0].tune(f1, 80.0);
        tract[1].tune(f2, 110.0);
        tract[2].tune(F3 * rng.uniform(0.95, 1.05), 160.0);
        let f0_start = rng.uniform(95.0, 190.0);
        let f0_end = f0_start * rng.uniform(0.8, 1.2);
        let level = rng.uniform(0.45, 1.0);
        let attack = (0.025 * RATE) as usize;
        let release = (0.05 * RATE) as usize;
        for n in 0..voiced + pause {
            let source = if n < voiced {
                let f0 = f0_start + (f0_end - f0_start) * n as f32 / voiced as f32;
                phase += f0 / RATE;
                let env = if n < attack {
                    n as f32 / attack as f32
                } else if n + release > voiced {
                    (voiced - n) as f32 / release as f32
                } else {
                    1.0
                };
                // A pulse per pitch period plus a little aspiration noise.
                let pulse = if phase >= 1.0 {
                    phase -= 1.0;
                    1.0
                } else {
                    0.0
                };
                (pulse + 0.02 * rng.uniform(-1.0, 1.0)) * env * level
            } else {
                0.0
            };
            let y = tract.iter_mut().fold(source, |x, r| r.run(x));
            out.push(y);
        }
    }
    out.truncate(total);
    let peak = out.iter().fold(0.0f32, |m, &s| m.max(s.abs())).max(1e-9);
    out.iter()
        .map(|&s| (s / peak * PEAK).clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// The audio shared by every call of a run, as linear PCM.
#[derive(Clone, Debug)]
pub struct Program {
    pcm: Arc<[i16]>,
    /// The built-in signal gets a per-call noise floor; a file is played as it is.
    builtin: bool,
}

impl Program {
    /// The built-in test signal.
    pub fn builtin(seed: u64) -> Program {
        Program {
            pcm: speech_like(seed).into(),
            builtin: true,
        }
    }

    /// A decoded WAV file (G.711 files are decoded; each call re-encodes with its codec, which
    /// gives back the same codes for the same law).
    pub fn from_wav(audio: WavAudio) -> Program {
        let pcm: Vec<i16> = match audio {
            WavAudio::Pcm16(s) => s,
            WavAudio::G711 { law, codes } => {
                let mut pcm = vec![0i16; codes.len()];
                g711::decode(law, &codes, &mut pcm);
                pcm
            }
        };
        Program {
            pcm: pcm.into(),
            builtin: false,
        }
    }

    pub fn samples(&self) -> usize {
        self.pcm.len()
    }

    /// One call's voice: starts at a point of the program chosen by `seed`.
    pub fn voice(&self, seed: u64) -> Voice {
        let mut rng = SplitMix::new(seed);
        let start = if self.pcm.is_empty() {
            0
        } else {
            (rng.next_u64() % self.pcm.len() as u64) as usize
        };
        Voice {
            pcm: Arc::clone(&self.pcm),
            pos: start,
            noise: self.builtin.then_some(rng),
        }
    }
}

/// One call's position in the program.
#[derive(Clone, Debug)]
pub struct Voice {
    pcm: Arc<[i16]>,
    pos: usize,
    noise: Option<SplitMix>,
}

impl Voice {
    /// The next 20 ms, looping at the end of the program.
    pub fn next_frame(&mut self, out: &mut [i16; FRAME]) {
        let len = self.pcm.len();
        if len == 0 {
            out.fill(0);
            return;
        }
        // Copied in runs (at most two, or more for a program shorter than a frame).
        let mut filled = 0;
        while filled < FRAME {
            let run = (FRAME - filled).min(len - self.pos);
            out[filled..filled + run].copy_from_slice(&self.pcm[self.pos..self.pos + run]);
            filled += run;
            self.pos = (self.pos + run) % len;
        }
        if let Some(rng) = self.noise.as_mut() {
            // Eight samples of noise, each in -32..=31, per draw of 64 bits.
            for chunk in out.chunks_mut(8) {
                let r = rng.next_u64().to_le_bytes();
                for (s, b) in chunk.iter_mut().zip(r) {
                    *s = s.saturating_add(i16::from(b & 0x3F) - NOISE_AMPLITUDE);
                }
            }
        }
    }
}

/// Root-mean-square level of `pcm`, in sample units.
pub fn rms(pcm: &[i16]) -> f64 {
    let sum: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / pcm.len().max(1) as f64).sqrt()
}

/// The frequency of a clean tone in `pcm` (sampled at `rate` Hz), from its zero crossings. The
/// checks of every audio path (codecs, resampler, agents, load runs) hear pitch with it.
pub fn zero_crossing_hz(pcm: &[i16], rate: f64) -> f64 {
    let crossings = pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    crossings as f64 / 2.0 * rate / pcm.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::g711::Law;
    use std::collections::HashSet;

    #[test]
    fn builtin_signal_is_speech_level_with_pauses_and_loud_parts() {
        let pcm = speech_like(7);
        assert_eq!(pcm.len(), SIGNAL_SECONDS * 8000);
        let total = rms(&pcm);
        assert!((1000.0..12000.0).contains(&total), "rms {total}");
        let frame_rms: Vec<f64> = pcm.chunks(FRAME).map(rms).collect();
        let loud = frame_rms.iter().filter(|&&r| r > total).count();
        let quiet = frame_rms.iter().filter(|&&r| r < total / 10.0).count();
        // Speech has a wide dynamic range: plenty of loud frames and some near-pauses.
        assert!(loud > frame_rms.len() / 5, "{loud} loud frames");
        assert!(quiet > 10, "{quiet} quiet frames");
    }

    #[test]
    fn signal_depends_on_seed() {
        assert_eq!(speech_like(1), speech_like(1));
        assert_ne!(speech_like(1), speech_like(2));
    }

    #[test]
    fn a_voice_never_repeats_a_frame_within_its_program_nor_sends_silence() {
        let program = Program::builtin(3);
        for law in [Law::Mu, Law::A] {
            let mut voice = program.voice(99);
            let mut seen = HashSet::new();
            let mut pcm = [0i16; FRAME];
            let mut codes = [0u8; FRAME];
            // 12 s: past the program's 10 s loop, where the noise floor still keeps frames apart.
            for k in 0..600 {
                voice.next_frame(&mut pcm);
                g711::encode(law, &pcm, &mut codes);
                assert!(
                    codes.iter().any(|&c| c != law.silence()),
                    "frame {k} is all silence"
                );
                assert!(seen.insert(codes), "frame {k} repeats an earlier one");
            }
        }
    }

    #[test]
    fn calls_start_at_different_points() {
        let program = Program::builtin(3);
        let (mut a, mut b) = (program.voice(1), program.voice(2));
        let (mut fa, mut fb) = ([0i16; FRAME], [0i16; FRAME]);
        a.next_frame(&mut fa);
        b.next_frame(&mut fb);
        assert_ne!(fa, fb);
    }

    #[test]
    fn file_program_is_played_unchanged_and_loops() {
        let samples: Vec<i16> = (0..200).map(|i| i as i16 * 10).collect();
        let program = Program::from_wav(WavAudio::Pcm16(samples.clone()));
        let mut voice = program.voice(0);
        let start = voice.pos;
        let mut frame = [0i16; FRAME];
        voice.next_frame(&mut frame);
        for (i, &s) in frame.iter().enumerate() {
            assert_eq!(s, samples[(start + i) % 200]);
        }
        let codes = vec![0x12u8; 320];
        let from_g711 = Program::from_wav(WavAudio::G711 { law: Law::A, codes });
        let mut v = from_g711.voice(5);
        v.next_frame(&mut frame);
        let mut back = [0u8; FRAME];
        g711::encode(Law::A, &frame, &mut back);
        assert_eq!(
            back, [0x12; FRAME],
            "A-law file round-trips to its own codes"
        );
    }
}
