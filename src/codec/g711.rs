//! ITU-T G.711 μ-law and A-law, bit-exact with the G.191 reference tools.
//!
//! Both directions are table lookups built at compile time. The encoders only ever look at the
//! top 14 bits of a sample (μ-law quantises `s >> 2`, A-law `s >> 3`), so one entry per 14-bit
//! value — 16 Ki entries indexed by `(s + 32768) >> 2` — reproduces the arithmetic encoder exactly
//! for every one of the 65,536 inputs while costing a single load per sample.

/// Companding law of a G.711 stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Law {
    /// μ-law (PCMU), static RTP payload type 0.
    #[default]
    Mu,
    /// A-law (PCMA), static RTP payload type 8.
    A,
}

impl Law {
    /// The static RTP payload type of this law (RFC 3551 §6).
    pub fn payload_type(self) -> u8 {
        match self {
            Law::Mu => 0,
            Law::A => 8,
        }
    }

    /// The code that decodes to (closest to) zero, used to fill concealed or missing frames.
    pub fn silence(self) -> u8 {
        match self {
            Law::Mu => 0xFF,
            Law::A => 0xD5,
        }
    }

    /// The law for a static payload type, if it is one of the two G.711 types.
    pub fn from_payload_type(pt: u8) -> Option<Law> {
        match pt {
            0 => Some(Law::Mu),
            8 => Some(Law::A),
            _ => None,
        }
    }
}

const ENCODE_ENTRIES: usize = 1 << 14;

/// μ-law quantisation of a 14-bit two's-complement value (the sample's top 14 bits).
const fn ulaw_quantise(v: i32) -> u8 {
    // Negative values use the ones' complement magnitude, as G.191 does; this is what makes the
    // decision thresholds symmetric around -0.5 rather than 0.
    let (mag, mask) = if v < 0 { (!v, 0x7F) } else { (v, 0xFF) };
    let mut biased = mag + 33;
    if biased > 0x1FFF {
        biased = 0x1FFF;
    }
    // biased >= 33, so its top bit is at position 5..=12: segments 0..=7.
    let top = 31 - (biased as u32).leading_zeros();
    let segment = top - 5;
    let mantissa = ((biased as u32) >> (segment + 1)) & 0x0F;
    let code = ((segment << 4) | mantissa) as u8;
    code ^ mask
}

/// A-law quantisation of a 13-bit two's-complement value (the sample's top 13 bits).
const fn alaw_quantise(v: i32) -> u8 {
    let (mag, sign) = if v < 0 {
        (!v as u32, 0x00)
    } else {
        (v as u32, 0x80)
    };
    // Segments 0 and 1 share a step size, so values below 32 all shift by one.
    let (segment, shift) = if mag < 32 {
        (0, 1)
    } else {
        let top = 31 - mag.leading_zeros();
        (top - 4, top - 4)
    };
    let mantissa = (mag >> shift) & 0x0F;
    // Even-bit inversion is part of the A-law line code.
    (((segment << 4) | mantissa) as u8 | sign) ^ 0x55
}

static ULAW_ENCODE: [u8; ENCODE_ENTRIES] = const {
    let mut t = [0u8; ENCODE_ENTRIES];
    let mut i = 0;
    while i < ENCODE_ENTRIES {
        t[i] = ulaw_quantise(i as i32 - (ENCODE_ENTRIES as i32 / 2));
        i += 1;
    }
    t
};

static ALAW_ENCODE: [u8; ENCODE_ENTRIES] = const {
    let mut t = [0u8; ENCODE_ENTRIES];
    let mut i = 0;
    while i < ENCODE_ENTRIES {
        // Arithmetic shift keeps this the floor of the 14-bit value / 2, i.e. exactly `s >> 3`.
        t[i] = alaw_quantise((i as i32 - (ENCODE_ENTRIES as i32 / 2)) >> 1);
        i += 1;
    }
    t
};

static ULAW_DECODE: [i16; 256] = const {
    let mut t = [0i16; 256];
    let mut c = 0;
    while c < 256 {
        let inv = !(c as u8);
        let segment = ((inv >> 4) & 0x07) as i32;
        let mantissa = (inv & 0x0F) as i32;
        let mag = (((mantissa << 3) + 0x84) << segment) - 0x84;
        t[c] = if inv & 0x80 != 0 {
            -mag as i16
        } else {
            mag as i16
        };
        c += 1;
    }
    t
};

static ALAW_DECODE: [i16; 256] = const {
    let mut t = [0i16; 256];
    let mut c = 0;
    while c < 256 {
        let v = (c as u8) ^ 0x55;
        let segment = ((v >> 4) & 0x07) as i32;
        let mantissa = (v & 0x0F) as i32;
        let mut mag = (mantissa << 4) + 8;
        if segment > 0 {
            mag = (mag + 0x100) << (segment - 1);
        }
        t[c] = if v & 0x80 != 0 {
            mag as i16
        } else {
            -mag as i16
        };
        c += 1;
    }
    t
};

#[inline(always)]
fn encode_index(s: i16) -> usize {
    // Flipping the sign bit is `s + 32768` as an unsigned value; the shift keeps 14 bits, so the
    // index is provably < 16384 and the bounds check disappears.
    (((s as u16) ^ 0x8000) >> 2) as usize
}

/// Encodes one linear sample to μ-law.
#[inline]
pub fn ulaw_encode(s: i16) -> u8 {
    ULAW_ENCODE[encode_index(s)]
}

/// Decodes one μ-law code to a linear sample.
#[inline]
pub fn ulaw_decode(c: u8) -> i16 {
    ULAW_DECODE[c as usize]
}

/// Encodes one linear sample to A-law.
#[inline]
pub fn alaw_encode(s: i16) -> u8 {
    ALAW_ENCODE[encode_index(s)]
}

/// Decodes one A-law code to a linear sample.
#[inline]
pub fn alaw_decode(c: u8) -> i16 {
    ALAW_DECODE[c as usize]
}

/// Encodes `pcm` into `out` and returns the number of codes written, `min(pcm.len(), out.len())`.
/// Callers size `out` to `pcm.len()`; a shorter buffer truncates rather than panicking.
pub fn encode(law: Law, pcm: &[i16], out: &mut [u8]) -> usize {
    let table = match law {
        Law::Mu => &ULAW_ENCODE,
        Law::A => &ALAW_ENCODE,
    };
    let n = pcm.len().min(out.len());
    for (o, &s) in out[..n].iter_mut().zip(&pcm[..n]) {
        *o = table[encode_index(s)];
    }
    n
}

/// Decodes `codes` into `out` and returns the number of samples written,
/// `min(codes.len(), out.len())`.
pub fn decode(law: Law, codes: &[u8], out: &mut [i16]) -> usize {
    let table = match law {
        Law::Mu => &ULAW_DECODE,
        Law::A => &ALAW_DECODE,
    };
    let n = codes.len().min(out.len());
    for (o, &c) in out[..n].iter_mut().zip(&codes[..n]) {
        *o = table[c as usize];
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use audio_codec_algorithms as oracle;

    fn assert_encoder_matches(ours: fn(i16) -> u8, reference: fn(i16) -> u8) {
        let mismatches: Vec<i16> = (i16::MIN..=i16::MAX)
            .filter(|&s| ours(s) != reference(s))
            .collect();
        assert!(
            mismatches.is_empty(),
            "{} mismatches, first {:?}",
            mismatches.len(),
            &mismatches[..mismatches.len().min(8)]
        );
    }

    #[test]
    fn ulaw_encode_matches_reference_for_every_sample() {
        assert_encoder_matches(ulaw_encode, oracle::encode_ulaw);
    }

    #[test]
    fn alaw_encode_matches_reference_for_every_sample() {
        assert_encoder_matches(alaw_encode, oracle::encode_alaw);
    }

    #[test]
    fn decode_matches_reference_for_every_code() {
        for c in 0..=255u8 {
            assert_eq!(
                ulaw_decode(c),
                oracle::decode_ulaw(c),
                "mu-law code {c:#04x}"
            );
            assert_eq!(
                alaw_decode(c),
                oracle::decode_alaw(c),
                "A-law code {c:#04x}"
            );
        }
    }

    #[test]
    fn slice_functions_agree_with_per_sample_functions() {
        let pcm: Vec<i16> = (i16::MIN..=i16::MAX).step_by(7).collect();
        for law in [Law::Mu, Law::A] {
            let mut codes = vec![0u8; pcm.len()];
            assert_eq!(encode(law, &pcm, &mut codes), pcm.len());
            let mut back = vec![0i16; codes.len()];
            assert_eq!(decode(law, &codes, &mut back), codes.len());
            let (enc, dec) = match law {
                Law::Mu => (ulaw_encode as fn(i16) -> u8, ulaw_decode as fn(u8) -> i16),
                Law::A => (alaw_encode as fn(i16) -> u8, alaw_decode as fn(u8) -> i16),
            };
            for ((&s, &c), &d) in pcm.iter().zip(&codes).zip(&back) {
                assert_eq!(c, enc(s));
                assert_eq!(d, dec(c));
            }
        }
    }

    #[test]
    fn short_output_buffer_truncates() {
        let pcm = [1000i16; 10];
        let mut out = [0u8; 4];
        assert_eq!(encode(Law::Mu, &pcm, &mut out), 4);
        assert_eq!(out, [ulaw_encode(1000); 4]);
        let mut pcm_out = [0i16; 3];
        assert_eq!(decode(Law::A, &[0xD5; 8], &mut pcm_out), 3);
        assert_eq!(pcm_out, [8; 3]);
    }

    #[test]
    fn silence_and_payload_types() {
        assert_eq!(ulaw_encode(0), Law::Mu.silence());
        assert_eq!(alaw_encode(0), Law::A.silence());
        assert_eq!(ulaw_decode(Law::Mu.silence()), 0);
        assert_eq!(Law::Mu.payload_type(), 0);
        assert_eq!(Law::A.payload_type(), 8);
        assert_eq!(Law::from_payload_type(8), Some(Law::A));
        assert_eq!(Law::from_payload_type(0), Some(Law::Mu));
        assert_eq!(Law::from_payload_type(18), None);
    }

    #[test]
    fn decode_then_encode_is_identity_except_mu_law_negative_zero() {
        for c in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(c)), c, "A-law code {c:#04x}");
            let expected = if c == 0x7F { 0xFF } else { c };
            assert_eq!(
                ulaw_encode(ulaw_decode(c)),
                expected,
                "mu-law code {c:#04x}"
            );
        }
    }
}
