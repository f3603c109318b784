//! The fake's audio: G.711 and PCM encoding of a tone, written from the standards (not with the
//! gateway's codec), chunked and paced as the servers stream it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::sync::watch;

use super::AMPLITUDE;

/// An audio format as the fake produces and counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fmt {
    /// `audio/pcm` 24 kHz, Realtime's default.
    #[default]
    Pcm24,
    /// `audio/pcm` 16 kHz (Live only).
    Pcm16,
    Pcmu,
    Pcma,
}

impl Fmt {
    pub fn rate(self) -> u32 {
        match self {
            Fmt::Pcm24 => 24_000,
            Fmt::Pcm16 => 16_000,
            Fmt::Pcmu | Fmt::Pcma => 8_000,
        }
    }

    pub fn bytes_per_ms(self) -> usize {
        match self {
            Fmt::Pcm24 => 48,
            Fmt::Pcm16 => 32,
            Fmt::Pcmu | Fmt::Pcma => 8,
        }
    }

    pub fn encode(self, pcm: &[i16]) -> Vec<u8> {
        match self {
            Fmt::Pcm24 | Fmt::Pcm16 => pcm.iter().flat_map(|s| s.to_le_bytes()).collect(),
            Fmt::Pcmu => pcm.iter().map(|&s| mulaw(s)).collect(),
            Fmt::Pcma => pcm.iter().map(|&s| alaw(s)).collect(),
        }
    }
}

/// Real-time pacing of audio chunks: the first `lead` go at once, then one per period; a change
/// of `stop` cuts the wait short.
pub(super) struct Pacer {
    tick: Option<tokio::time::Interval>,
    lead: u32,
}

impl Pacer {
    /// `lead: None` is unpaced (everything at once).
    pub(super) fn new(chunk_ms: u32, lead: Option<u32>) -> Pacer {
        let tick = lead.map(|_| {
            let p = Duration::from_millis(u64::from(chunk_ms.max(1)));
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        Pacer {
            tick,
            lead: lead.unwrap_or(0),
        }
    }

    pub(super) async fn wait(&mut self, k: u32, stop: &mut watch::Receiver<Option<&'static str>>) {
        let Some(t) = &mut self.tick else { return };
        if k < self.lead {
            return;
        }
        tokio::select! {
            _ = t.tick() => {}
            r = stop.changed() => if r.is_err() { t.tick().await; },
        }
    }
}

/// The chunks of a tone in one format, base64-encoded, cached when the tone repeats every second
/// (whole hertz) so an endless stream encodes each distinct chunk once.
pub(super) struct ToneChunks {
    hz: f64,
    fmt: Fmt,
    pub(super) samples: usize,
    cache: HashMap<(usize, usize), Arc<str>>,
}

impl ToneChunks {
    pub(super) fn new(hz: f64, fmt: Fmt, chunk_ms: u32) -> ToneChunks {
        ToneChunks {
            hz,
            fmt,
            samples: (fmt.rate() * chunk_ms / 1000) as usize,
            cache: HashMap::new(),
        }
    }

    /// Chunk `k`, of `n` samples (the last one of a reply may be short): (base64, bytes).
    pub(super) fn chunk(&mut self, k: u32, n: usize) -> (Arc<str>, usize) {
        let start = k as usize * self.samples;
        let rate = self.fmt.rate() as usize;
        let (hz, fmt) = (self.hz, self.fmt);
        let make = || -> Arc<str> {
            let pcm = tone(hz, fmt.rate(), start, n);
            base64::engine::general_purpose::STANDARD
                .encode(fmt.encode(&pcm))
                .into()
        };
        let b64 = if hz.fract() == 0.0 {
            self.cache
                .entry((start % rate, n))
                .or_insert_with(make)
                .clone()
        } else {
            make()
        };
        (b64, n * fmt.bytes_per_ms() / (rate / 1000))
    }
}

/// `n` samples of a `hz` tone at `rate`, from sample `start` (phase continuous across chunks).
pub fn tone(hz: f64, rate: u32, start: usize, n: usize) -> Vec<i16> {
    (start..start + n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (AMPLITUDE * (2.0 * std::f64::consts::PI * hz * t).sin()).round() as i16
        })
        .collect()
}

/// G.711 mu-law, from the standard's segment formula (not the gateway's codec).
pub fn mulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = (s.min(32635) + BIAS) as u32;
    let exponent = (31 - s.leading_zeros()).saturating_sub(7).min(7);
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// G.711 A-law (ITU-T reference algorithm: 13-bit magnitude, segments, even bits inverted).
pub fn alaw(sample: i16) -> u8 {
    let mut v = i32::from(sample) >> 3;
    let mask = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let seg = (0..8).find(|&s| v < (0x20 << s)).unwrap_or(8);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let mantissa = (if seg < 2 { v >> 1 } else { v >> seg }) & 0x0F;
    (((seg << 4) | mantissa) ^ mask) as u8
}
