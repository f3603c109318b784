//! Opus for the LiveKit leg: 20 ms mono frames at 48 kHz, through the system libopus
//! (`audiopus`). Rooms carry Opus 48 kHz; the phone side is 8 kHz, so the encoder is told what
//! the signal really holds (narrowband speech) and spends its effort accordingly.

use std::convert::TryFrom;

use audiopus::coder::{Decoder, Encoder};
use audiopus::packet::Packet;
use audiopus::{Application, Bandwidth, Bitrate, Channels, MutSignals, SampleRate, Signal};

pub const RATE: u32 = 48_000;
/// Samples in one 20 ms mono frame at 48 kHz.
pub const FRAME: usize = 960;
/// Largest packet we produce or accept; 20 ms at Opus's top bitrate fits in 1275 bytes.
pub const MAX_PACKET: usize = 1500;
/// Telephone speech needs no more; Opus at this rate is transparent for an 8 kHz source.
const BITRATE: i32 = 24_000;

#[derive(Debug, thiserror::Error)]
pub enum OpusError {
    #[error("opus: {0}")]
    Codec(#[from] audiopus::Error),
    #[error("opus: frame of {0} samples; 20 ms at 48 kHz is {FRAME}")]
    FrameSize(usize),
}

/// How hard the encoder works. Complexity trades CPU for quality at a given bitrate; on a
/// narrowband source the top settings buy little (docs/performance.md has the figures).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncoderSettings {
    pub complexity: u8,
    pub max_bandwidth: Bandwidth,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        EncoderSettings {
            complexity: 3,
            max_bandwidth: Bandwidth::Wideband,
        }
    }
}

pub struct OpusEncoder {
    enc: Encoder,
}

impl OpusEncoder {
    /// VoIP mode, mono, in-band FEC on (rooms lose packets, and FEC costs little), DTX off
    /// (the agent's voice detection expects a continuous stream).
    pub fn new(settings: EncoderSettings) -> Result<OpusEncoder, OpusError> {
        let mut enc = Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip)?;
        enc.set_bitrate(Bitrate::BitsPerSecond(BITRATE))?;
        enc.set_complexity(settings.complexity)?;
        enc.set_max_bandwidth(settings.max_bandwidth)?;
        enc.set_signal(Signal::Voice)?;
        enc.set_inband_fec(true)?;
        enc.set_packet_loss_perc(5)?;
        enc.set_dtx(false)?;
        Ok(OpusEncoder { enc })
    }

    /// Encodes one 20 ms frame into `out`; returns the packet length.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, OpusError> {
        if pcm.len() != FRAME {
            return Err(OpusError::FrameSize(pcm.len()));
        }
        Ok(self.enc.encode(pcm, out)?)
    }
}

pub struct OpusDecoder {
    dec: Decoder,
}

impl OpusDecoder {
    pub fn new() -> Result<OpusDecoder, OpusError> {
        Ok(OpusDecoder {
            dec: Decoder::new(SampleRate::Hz48000, Channels::Mono)?,
        })
    }

    /// Decodes one packet into `out` (at least [`FRAME`] samples for 20 ms packets; up to
    /// 120 ms packets need six times that). Returns the samples written. A malformed packet is
    /// an error, never a panic.
    pub fn decode(&mut self, packet: &[u8], out: &mut [i16]) -> Result<usize, OpusError> {
        let packet = Packet::try_from(packet)?;
        let signals = MutSignals::try_from(out)?;
        Ok(self.dec.decode(Some(packet), signals, false)?)
    }

    /// Conceals one lost frame of `out.len()` samples.
    pub fn conceal(&mut self, out: &mut [i16]) -> Result<usize, OpusError> {
        let signals = MutSignals::try_from(out)?;
        Ok(self.dec.decode(None, signals, false)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, n: usize, offset: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = (i + offset) as f64 / RATE as f64;
                (8000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn round_trip_keeps_a_tone() {
        let mut enc = OpusEncoder::new(EncoderSettings::default()).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut packet = [0u8; MAX_PACKET];
        let mut pcm = vec![0i16; FRAME];
        let mut decoded = Vec::new();
        let input = tone(440.0, FRAME * 50, 0);
        for frame in input.chunks(FRAME) {
            let n = enc.encode(frame, &mut packet).unwrap();
            assert!(n > 0 && n < 200, "24 kb/s is 60 bytes a frame, got {n}");
            let m = dec.decode(&packet[..n], &mut pcm).unwrap();
            assert_eq!(m, FRAME);
            decoded.extend_from_slice(&pcm);
        }
        // A perceptual codec keeps pitch and loudness, not the waveform: compare those.
        let tail = &decoded[FRAME * 10..];
        let rms = |s: &[i16]| {
            (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
        };
        let ratio = rms(tail) / rms(&input[FRAME * 10..]);
        assert!((0.7..1.4).contains(&ratio), "level ratio {ratio:.2}");
        let crossings = tail.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        let freq = crossings as f64 / 2.0 / (tail.len() as f64 / f64::from(RATE));
        assert!((freq - 440.0).abs() < 5.0, "{freq} Hz");
    }

    #[test]
    fn wrong_sizes_and_garbage_are_errors_not_panics() {
        let mut enc = OpusEncoder::new(EncoderSettings::default()).unwrap();
        let mut out = [0u8; MAX_PACKET];
        assert!(matches!(
            enc.encode(&[0; 480], &mut out),
            Err(OpusError::FrameSize(480))
        ));
        let mut dec = OpusDecoder::new().unwrap();
        let mut pcm = [0i16; FRAME];
        assert!(dec.decode(&[], &mut pcm).is_err());
        // A code-3 packet claiming more frames than it holds.
        assert!(dec.decode(&[0xFF, 0xFF], &mut pcm).is_err());
        assert_eq!(dec.conceal(&mut pcm).unwrap(), FRAME);
    }
}
