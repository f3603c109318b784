//! The unit of audio between a call's media and its agent: 20 ms of PCM. A leaf module, so that
//! media, codecs and agents all depend on it and not on each other.

/// Samples in the largest frame we carry: 20 ms at 16 kHz. The call side is 8 kHz (G.711);
/// the room above is for wideband telephone codecs. Agents resample their far end's rates
/// (24 or 48 kHz) inside themselves, so frames crossing the trait stay small: they are moved
/// several times per frame, and at 48 kHz capacity those copies showed up in profiles.
pub const MAX_FRAME_SAMPLES: usize = 320;

/// 20 ms of signed 16-bit mono PCM at `sample_rate`. Inline storage so that passing frames
/// around never allocates on the media path.
#[derive(Clone)]
pub struct AudioFrame {
    sample_rate: u32,
    len: u16,
    samples: [i16; MAX_FRAME_SAMPLES],
}

impl AudioFrame {
    /// A frame of silence holding 20 ms at `sample_rate` (8 or 16 kHz).
    pub fn silence(sample_rate: u32) -> AudioFrame {
        let len = (sample_rate / 50).min(MAX_FRAME_SAMPLES as u32) as u16;
        AudioFrame {
            sample_rate,
            len,
            samples: [0; MAX_FRAME_SAMPLES],
        }
    }

    /// Copies `pcm` (at most [`MAX_FRAME_SAMPLES`] samples; the rest is dropped).
    pub fn from_samples(sample_rate: u32, pcm: &[i16]) -> AudioFrame {
        let mut f = AudioFrame::silence(sample_rate);
        let n = pcm.len().min(MAX_FRAME_SAMPLES);
        f.samples[..n].copy_from_slice(&pcm[..n]);
        f.len = n as u16;
        f
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    pub fn samples(&self) -> &[i16] {
        &self.samples[..self.len as usize]
    }

    pub fn samples_mut(&mut self) -> &mut [i16] {
        &mut self.samples[..self.len as usize]
    }
}

impl std::fmt::Debug for AudioFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AudioFrame({} Hz, {} samples)",
            self.sample_rate, self.len
        )
    }
}
