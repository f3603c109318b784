//! A small RIFF/WAVE reader and writer for telephone audio: 8 kHz mono, either 16-bit linear PCM
//! or G.711 (A-law, μ-law), in the plain `WAVEFORMATEX` layout or `WAVE_FORMAT_EXTENSIBLE`.
//!
//! The load harness plays such files into calls. Anything else (stereo, 44.1 kHz, float,
//! 24-bit, ADPCM...) is refused with an error that names what the file has and what is needed,
//! because resampling or mixing down silently would change what is being measured.
//!
//! [`read_pcm16`] reads 16-bit mono PCM at any rate, for far ends that speak in WAV chunks
//! (Hume EVI), whose rate is then converted on purpose.

use std::path::Path;

use super::g711::Law;

/// The decoded contents of a supported file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WavAudio {
    /// 16-bit signed linear samples at 8 kHz.
    Pcm16(Vec<i16>),
    /// G.711 codes at 8 kHz, one byte per sample.
    G711 { law: Law, codes: Vec<u8> },
}

impl WavAudio {
    /// Number of samples (8000 per second).
    pub fn len(&self) -> usize {
        match self {
            WavAudio::Pcm16(s) => s.len(),
            WavAudio::G711 { codes, .. } => codes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavError {
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("not a RIFF/WAVE file")]
    NotWave,
    #[error("malformed WAVE file: {0}")]
    Malformed(&'static str),
    #[error("unsupported WAVE audio: {0} (need 8 kHz mono 16-bit PCM, A-law or mu-law; e.g. `sox in.wav -r 8000 -c 1 -b 16 out.wav`)")]
    Unsupported(String),
    #[error("the WAVE file holds no audio")]
    Empty,
    #[error("unsupported WAVE audio: {0} (need 16-bit mono linear PCM)")]
    NotPcm16Mono(String),
}

const FORMAT_PCM: u16 = 0x0001;
const FORMAT_FLOAT: u16 = 0x0003;
const FORMAT_ALAW: u16 = 0x0006;
const FORMAT_MULAW: u16 = 0x0007;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// Bytes 2..16 of every `KSDATAFORMAT_SUBTYPE_*` GUID derived from a format tag
/// (`XXXXXXXX-0000-0010-8000-00AA00389B71`, little-endian on disk).
const SUBTYPE_SUFFIX: [u8; 14] = [
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];

/// Reads and decodes a WAVE file.
pub fn read_file(path: &Path) -> Result<WavAudio, WavError> {
    let bytes = std::fs::read(path).map_err(|e| WavError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    read(&bytes)
}

/// Decodes a WAVE file held in memory. Never panics, whatever the bytes.
pub fn read(bytes: &[u8]) -> Result<WavAudio, WavError> {
    let (fmt, data) = walk(bytes)?;
    let audio = fmt.decode(data)?;
    if audio.is_empty() {
        return Err(WavError::Empty);
    }
    Ok(audio)
}

/// 16-bit mono PCM at whatever rate its header says, borrowed from the file: what a far end
/// that speaks in WAV chunks (Hume EVI's `audio_output`) sends. Reading it never copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pcm16Wav<'a> {
    /// Samples per second, from the `fmt ` chunk.
    pub rate: u32,
    /// The `data` chunk, cut to whole samples.
    data: &'a [u8],
}

impl Pcm16Wav<'_> {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.data.len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.data.len() < 2
    }

    pub fn samples(&self) -> impl ExactSizeIterator<Item = i16> + '_ {
        le_samples(self.data)
    }

    /// Appends the samples to `out` (no allocation once `out` has grown to a chunk's size).
    pub fn decode_into(&self, out: &mut Vec<i16>) {
        out.extend(self.samples());
    }
}

/// Reads a 16-bit mono linear PCM WAVE file of any sample rate, found by walking the RIFF
/// chunks (never by assuming a 44-byte header). Other formats (stereo, 8-bit, float, G.711,
/// compressed) are refused by name. An empty `data` chunk is valid: a far end may send one.
pub fn read_pcm16(bytes: &[u8]) -> Result<Pcm16Wav<'_>, WavError> {
    let (fmt, data) = walk(bytes)?;
    let problem = match fmt.tag {
        FORMAT_PCM if fmt.channels != 1 => Some(format!("{} channels", fmt.channels)),
        FORMAT_PCM if fmt.bits != 16 => Some(format!("{}-bit PCM", fmt.bits)),
        FORMAT_PCM if fmt.rate == 0 => Some("a sample rate of 0 Hz".into()),
        FORMAT_PCM => None,
        FORMAT_FLOAT => Some(format!("{}-bit floating point", fmt.bits)),
        FORMAT_ALAW => Some("A-law".into()),
        FORMAT_MULAW => Some("mu-law".into()),
        other => Some(format!("format tag {other:#06x} ({})", format_name(other))),
    };
    if let Some(what) = problem {
        return Err(WavError::NotPcm16Mono(what));
    }
    Ok(Pcm16Wav {
        rate: fmt.rate,
        data: &data[..data.len() & !1],
    })
}

/// Finds the `fmt ` and `data` chunks.
fn walk(bytes: &[u8]) -> Result<(Format, &[u8]), WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWave);
    }
    let mut fmt: Option<Format> = None;
    let mut data: Option<&[u8]> = None;
    let mut rest = &bytes[12..];
    while rest.len() >= 8 {
        let id = &rest[0..4];
        let size = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let body_all = &rest[8..];
        // A data chunk whose size runs past the end (a file cut short, or a streaming writer's
        // 0xFFFFFFFF placeholder) keeps what is there; any other chunk must fit.
        let body = match body_all.get(..size) {
            Some(b) => b,
            None if id == b"data" => body_all,
            None => return Err(WavError::Malformed("a chunk runs past the end of the file")),
        };
        match id {
            b"fmt " => fmt = Some(Format::parse(body)?),
            b"data" => data = Some(body),
            _ => {}
        }
        // Chunks are padded to an even length.
        let advance = size.saturating_add(8).saturating_add(size & 1);
        rest = rest.get(advance..).unwrap_or(&[]);
    }
    let fmt = fmt.ok_or(WavError::Malformed("no fmt chunk"))?;
    let data = data.ok_or(WavError::Malformed("no data chunk"))?;
    Ok((fmt, data))
}

#[derive(Debug)]
struct Format {
    tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
}

impl Format {
    fn parse(b: &[u8]) -> Result<Format, WavError> {
        if b.len() < 16 {
            return Err(WavError::Malformed("fmt chunk shorter than 16 bytes"));
        }
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let mut tag = u16_at(0);
        if tag == FORMAT_EXTENSIBLE {
            // cbSize(2) validBits(2) channelMask(4) then the 16-byte sub-format GUID.
            let guid = b.get(24..40).ok_or(WavError::Malformed(
                "WAVE_FORMAT_EXTENSIBLE without sub-format",
            ))?;
            if guid[2..] != SUBTYPE_SUFFIX {
                return Err(WavError::Unsupported(
                    "an extensible format with a non-standard sub-format GUID".into(),
                ));
            }
            tag = u16::from_le_bytes([guid[0], guid[1]]);
        }
        Ok(Format {
            tag,
            channels: u16_at(2),
            rate: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            bits: u16_at(14),
        })
    }

    fn decode(&self, data: &[u8]) -> Result<WavAudio, WavError> {
        let (law, bits_needed) = match self.tag {
            FORMAT_PCM => (None, 16),
            FORMAT_ALAW => (Some(Law::A), 8),
            FORMAT_MULAW => (Some(Law::Mu), 8),
            FORMAT_FLOAT => {
                return Err(WavError::Unsupported(format!(
                    "{}-bit floating point",
                    self.bits
                )))
            }
            other => {
                return Err(WavError::Unsupported(format!(
                    "format tag {other:#06x} ({})",
                    format_name(other)
                )))
            }
        };
        if self.channels != 1 {
            return Err(WavError::Unsupported(format!("{} channels", self.channels)));
        }
        if self.rate != 8000 {
            return Err(WavError::Unsupported(format!(
                "a sample rate of {} Hz",
                self.rate
            )));
        }
        if self.bits != bits_needed {
            let kind = if law.is_some() { "G.711" } else { "PCM" };
            return Err(WavError::Unsupported(format!("{}-bit {kind}", self.bits)));
        }
        Ok(match law {
            None => WavAudio::Pcm16(le_samples(data).collect()),
            Some(law) => WavAudio::G711 {
                law,
                codes: data.to_vec(),
            },
        })
    }
}

/// 16-bit little-endian samples; a trailing odd byte is ignored.
fn le_samples(data: &[u8]) -> impl ExactSizeIterator<Item = i16> + '_ {
    data.chunks_exact(2)
        .map(|s| i16::from_le_bytes([s[0], s[1]]))
}

fn format_name(tag: u16) -> &'static str {
    match tag {
        0x0002 => "MS ADPCM",
        0x0011 => "IMA ADPCM",
        0x0031 => "GSM 6.10",
        0x0050 => "MPEG",
        0x0055 => "MP3",
        0x0064 | 0x0065 => "G.726",
        0x0067 => "G.722",
        _ => "unknown",
    }
}

/// A 16-bit mono PCM WAVE file at `rate` Hz.
pub fn write_pcm16(rate: u32, samples: &[i16]) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    write(FORMAT_PCM, rate, 16, &data)
}

/// An 8 kHz mono G.711 WAVE file.
pub fn write_g711(law: Law, codes: &[u8]) -> Vec<u8> {
    let tag = match law {
        Law::A => FORMAT_ALAW,
        Law::Mu => FORMAT_MULAW,
    };
    write(tag, 8000, 8, codes)
}

fn write(tag: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let block_align = bits / 8;
    // Non-PCM formats carry cbSize (0) and a fact chunk with the sample count.
    let non_pcm = tag != FORMAT_PCM;
    let fmt_len: u32 = if non_pcm { 18 } else { 16 };
    let fact_len: u32 = if non_pcm { 12 } else { 0 };
    let pad = data.len() & 1;
    let riff_len = 4 + (8 + fmt_len) + fact_len + 8 + data.len() as u32 + pad as u32;
    let mut out = Vec::with_capacity(riff_len as usize + 8);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&riff_len.to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&fmt_len.to_le_bytes());
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
    out.extend_from_slice(&block_align.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    if non_pcm {
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(b"fact");
        out.extend_from_slice(&4u32.to_le_bytes());
        let samples = (data.len() / usize::from(block_align.max(1))) as u32;
        out.extend_from_slice(&samples.to_le_bytes());
    }
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    if pad == 1 {
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pcm16_round_trips() {
        let samples: Vec<i16> = (0..1000).map(|i| (i * 37 - 16000) as i16).collect();
        let file = write_pcm16(8000, &samples);
        assert_eq!(read(&file), Ok(WavAudio::Pcm16(samples)));
    }

    #[test]
    fn g711_round_trips_with_odd_length_padding() {
        for law in [Law::A, Law::Mu] {
            let codes: Vec<u8> = (0..161).map(|i| i as u8).collect();
            let file = write_g711(law, &codes);
            assert_eq!(file.len() % 2, 0, "padded to even");
            assert_eq!(read(&file), Ok(WavAudio::G711 { law, codes }));
        }
    }

    #[test]
    fn unknown_chunks_are_skipped_and_odd_chunks_padded() {
        let mut file = write_pcm16(8000, &[1, 2, 3]);
        // Insert an odd-sized LIST chunk (plus its pad byte) before fmt.
        let list = [b"LIST".as_slice(), &3u32.to_le_bytes(), b"abc", &[0]].concat();
        file.splice(12..12, list);
        assert_eq!(read(&file), Ok(WavAudio::Pcm16(vec![1, 2, 3])));
    }

    #[test]
    fn truncated_data_chunk_keeps_what_is_there() {
        let mut file = write_pcm16(8000, &[5; 100]);
        file.truncate(file.len() - 50);
        assert_eq!(read(&file).map(|a| a.len()), Ok(75));
    }

    #[test]
    fn extensible_pcm_is_read() {
        let mut file = write_pcm16(8000, &[7, 8]);
        // Rewrite fmt as a 40-byte WAVE_FORMAT_EXTENSIBLE chunk.
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&FORMAT_EXTENSIBLE.to_le_bytes());
        fmt.extend_from_slice(&file[22..36]);
        fmt.extend_from_slice(&22u16.to_le_bytes());
        fmt.extend_from_slice(&16u16.to_le_bytes());
        fmt.extend_from_slice(&4u32.to_le_bytes());
        fmt.extend_from_slice(&FORMAT_PCM.to_le_bytes());
        fmt.extend_from_slice(&SUBTYPE_SUFFIX);
        let chunk = [b"fmt ".as_slice(), &40u32.to_le_bytes(), &fmt].concat();
        file.splice(12..36, chunk);
        assert_eq!(read(&file), Ok(WavAudio::Pcm16(vec![7, 8])));
    }

    fn unsupported(file: &[u8]) -> String {
        match read(file) {
            Err(WavError::Unsupported(what)) => what,
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }

    #[test]
    fn errors_say_what_is_unsupported() {
        assert_eq!(
            unsupported(&write_pcm16(44100, &[0; 4])),
            "a sample rate of 44100 Hz"
        );
        let mut stereo = write_pcm16(8000, &[0; 4]);
        stereo[22] = 2;
        assert_eq!(unsupported(&stereo), "2 channels");
        let mut float = write_pcm16(8000, &[0; 4]);
        float[20] = 3;
        float[34] = 32;
        assert_eq!(unsupported(&float), "32-bit floating point");
        let mut pcm8 = write_pcm16(8000, &[0; 4]);
        pcm8[34] = 8;
        assert_eq!(unsupported(&pcm8), "8-bit PCM");
        let mut adpcm = write_pcm16(8000, &[0; 4]);
        adpcm[20] = 0x11;
        assert_eq!(unsupported(&adpcm), "format tag 0x0011 (IMA ADPCM)");
        let err = read(&write_pcm16(16000, &[0; 4])).unwrap_err().to_string();
        assert!(
            err.contains("16000 Hz") && err.contains("need 8 kHz mono"),
            "{err}"
        );
    }

    #[test]
    fn structural_errors() {
        assert_eq!(read(b"RIFX0000WAVE"), Err(WavError::NotWave));
        assert_eq!(read(b"RIFF"), Err(WavError::NotWave));
        let file = write_pcm16(8000, &[1]);
        let no_data = &file[..36];
        assert_eq!(read(no_data), Err(WavError::Malformed("no data chunk")));
        let mut no_fmt = file.clone();
        no_fmt[12..16].copy_from_slice(b"junk");
        assert_eq!(read(&no_fmt), Err(WavError::Malformed("no fmt chunk")));
        assert_eq!(read(&write_pcm16(8000, &[])), Err(WavError::Empty));
        let mut long_fmt = file.clone();
        long_fmt[16..20].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(read(&long_fmt), Err(WavError::Malformed(_))));
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = read_file(Path::new("/nonexistent/x.wav")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.wav"), "{err}");
    }

    #[test]
    fn pcm16_at_any_rate_is_read_from_its_header() {
        for rate in [8000, 16000, 24000, 44100, 48000] {
            let samples: Vec<i16> = (0..480).map(|i| (i * 61 - 9000) as i16).collect();
            let file = write_pcm16(rate, &samples);
            let wav = read_pcm16(&file).unwrap();
            assert_eq!(wav.rate, rate);
            assert_eq!(wav.len(), samples.len());
            let mut out = vec![42];
            wav.decode_into(&mut out);
            assert_eq!(out[0], 42, "appends");
            assert_eq!(&out[1..], &samples[..]);
        }
    }

    #[test]
    fn pcm16_reader_walks_chunks_and_keeps_an_empty_data_chunk() {
        let mut file = write_pcm16(48000, &[3, -4, 5]);
        // A LIST chunk between fmt and data moves data past byte 44.
        let list = [b"LIST".as_slice(), &5u32.to_le_bytes(), b"hello", &[0]].concat();
        file.splice(36..36, list);
        let wav = read_pcm16(&file).unwrap();
        assert_eq!(wav.samples().collect::<Vec<_>>(), vec![3, -4, 5]);
        let empty_file = write_pcm16(48000, &[]);
        let empty = read_pcm16(&empty_file).unwrap();
        assert!(empty.is_empty() && empty.rate == 48000);
        // An odd data length (a cut-off stream) keeps whole samples only.
        let mut odd = write_pcm16(24000, &[7, 8]);
        odd.truncate(odd.len() - 1);
        assert_eq!(read_pcm16(&odd).unwrap().len(), 1);
    }

    #[test]
    fn pcm16_reader_refuses_other_formats_by_name() {
        let refused = |file: &[u8]| match read_pcm16(file) {
            Err(WavError::NotPcm16Mono(what)) => what,
            other => panic!("expected NotPcm16Mono, got {other:?}"),
        };
        let mut stereo = write_pcm16(48000, &[0; 4]);
        stereo[22] = 2;
        assert_eq!(refused(&stereo), "2 channels");
        let mut pcm8 = write_pcm16(48000, &[0; 4]);
        pcm8[34] = 8;
        assert_eq!(refused(&pcm8), "8-bit PCM");
        assert_eq!(refused(&write_g711(Law::Mu, &[0; 4])), "mu-law");
        let mut float = write_pcm16(48000, &[0; 4]);
        float[20] = 3;
        float[34] = 32;
        assert_eq!(refused(&float), "32-bit floating point");
        let mut zero_rate = write_pcm16(48000, &[0; 4]);
        zero_rate[24..28].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(refused(&zero_rate), "a sample rate of 0 Hz");
        let err = read_pcm16(&stereo).unwrap_err().to_string();
        assert!(err.contains("need 16-bit mono"), "{err}");
        assert_eq!(read_pcm16(b"RIFF"), Err(WavError::NotWave));
    }

    proptest! {
        #[test]
        fn pcm16_reader_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut file = b"RIFF\0\0\0\0WAVE".to_vec();
            file.extend_from_slice(&tail);
            let _ = read_pcm16(&file);
            let _ = read_pcm16(&tail);
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut file = b"RIFF\0\0\0\0WAVE".to_vec();
            file.extend_from_slice(&tail);
            let _ = read(&file);
            let _ = read(&tail);
        }

        #[test]
        fn never_panics_on_mutated_files(pos in 0usize..60, byte in any::<u8>()) {
            let mut file = write_pcm16(8000, &[1, 2, 3, 4, 5]);
            let i = pos % file.len();
            file[i] = byte;
            let _ = read(&file);
        }
    }
}
