//! SRTP (RFC 3711) for the SIP leg: the AES_CM_128_HMAC_SHA1_80 and _32 suites that SDES
//! (RFC 4568) negotiates, one outgoing and one incoming stream per call.
//!
//! Both directions work in place on the caller's datagram buffer and never allocate: the session
//! keys are derived once (key_derivation_rate 0, so there is no re-keying), and what a packet
//! costs is one counter-mode pass with the already expanded AES key and one HMAC from a clone of
//! the already keyed hash state. There is no SRTCP (the gateway sends no RTCP) and no MKI (the
//! offers we make and accept carry none).

use aes::cipher::{InnerIvInit, KeyInit, KeyIvInit, StreamCipher, StreamCipherCoreWrapper};
use aes::Aes128;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::{alphabet, Engine as _};
use ctr::CtrCore;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::fmt;
use subtle::ConstantTimeEq;

use super::rtp::HEADER_LEN;

/// A protection profile as named in SDP `a=crypto` lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
}

impl Suite {
    /// Every suite we speak, most preferred first: the 80-bit tag is the stronger one and the
    /// one every SDES peer supports.
    pub const ALL: [Suite; 2] = [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32];

    /// The crypto-suite name of RFC 4568 §6.2.
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// Exact and case-sensitive: RFC 4568's grammar defines the names as literal strings.
    pub fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|suite| suite.name() == name)
    }

    /// Bytes of authentication tag after each packet.
    pub fn tag_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
        }
    }
}

pub const MASTER_KEY_LEN: usize = 16;
pub const MASTER_SALT_LEN: usize = 14;
/// The largest tag: a buffer given to `protect` needs this much room past the RTP packet.
pub const MAX_TAG_LEN: usize = 10;

/// RFC 3711 §4.3.1 key derivation labels for SRTP (the SRTCP ones are never needed).
const LABEL_ENCRYPTION: u8 = 0x00;
const LABEL_AUTH: u8 = 0x01;
const LABEL_SALT: u8 = 0x02;
/// The HMAC-SHA1 key length of RFC 3711 §4.2.1 for both suites.
const AUTH_KEY_LEN: usize = 20;
/// The replay window of RFC 3711 §3.3.2, one bit per packet.
const REPLAY_WINDOW: u64 = 64;

/// SDES key material: the `inline:` value of an `a=crypto` line is base64 of key || salt. 30
/// bytes encode without padding characters either way; decoding is lenient about padding because
/// the length check after it rejects anything that is not a key.
const INLINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// An SRTP master key and master salt, as one SDES `inline:` value carries them.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    key: [u8; MASTER_KEY_LEN],
    salt: [u8; MASTER_SALT_LEN],
}

// Keys end up in structs that get logged with {:?}; the key must never reach a log.
impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn new(key: [u8; MASTER_KEY_LEN], salt: [u8; MASTER_SALT_LEN]) -> MasterKey {
        MasterKey { key, salt }
    }

    /// A fresh key and salt from the operating system's random source.
    ///
    /// `OsRng` rather than the thread-local generator so a key never depends on generator state
    /// shared with non-secret uses. Should the OS source fail (on Linux it does not once booted),
    /// `rand::rng()` takes over: a CSPRNG that source seeded earlier, which beats failing the
    /// call. If it was never seeded on this thread it panics too: there is no key to be had.
    pub fn random() -> MasterKey {
        use rand::{RngCore, TryRngCore};
        let mut bytes = [0u8; MASTER_KEY_LEN + MASTER_SALT_LEN];
        if let Err(err) = rand::rngs::OsRng.try_fill_bytes(&mut bytes) {
            tracing::warn!(%err, "OS random source failed; SRTP key from the thread CSPRNG");
            rand::rng().fill_bytes(&mut bytes);
        }
        MasterKey::from_bytes(&bytes)
    }

    /// SDES `inline:` key material (RFC 4568 §6.1): base64 of the 30 bytes key || salt, with or
    /// without padding. `None` for anything else, lifetime and MKI suffixes included: the caller
    /// splits those off the `a=crypto` line.
    pub fn from_inline(b64: &str) -> Option<MasterKey> {
        let bytes = INLINE.decode(b64).ok()?;
        let bytes: &[u8; MASTER_KEY_LEN + MASTER_SALT_LEN] = bytes.as_slice().try_into().ok()?;
        Some(MasterKey::from_bytes(bytes))
    }

    /// Standard base64 with padding (40 characters; 30 bytes need no padding characters).
    pub fn to_inline(&self) -> String {
        let mut bytes = [0u8; MASTER_KEY_LEN + MASTER_SALT_LEN];
        bytes[..MASTER_KEY_LEN].copy_from_slice(&self.key);
        bytes[MASTER_KEY_LEN..].copy_from_slice(&self.salt);
        INLINE.encode(bytes)
    }

    fn from_bytes(bytes: &[u8; MASTER_KEY_LEN + MASTER_SALT_LEN]) -> MasterKey {
        let (key, salt) = bytes.split_at(MASTER_KEY_LEN);
        let mut master = MasterKey::new([0; MASTER_KEY_LEN], [0; MASTER_SALT_LEN]);
        master.key.copy_from_slice(key);
        master.salt.copy_from_slice(salt);
        master
    }
}

/// Why a packet was not protected or not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    #[error("packet or buffer too short for SRTP")]
    TooShort,
    #[error("not an RTP packet")]
    NotRtp,
    #[error("SRTP authentication failed")]
    AuthFailed,
    #[error("SRTP packet replayed")]
    Replayed,
    #[error("SRTP packet older than the replay window")]
    TooOld,
}

/// The session keys of one direction, derived once from the master key.
struct SessionKeys {
    /// Expanded once per direction, not per packet.
    aes: Aes128,
    salt: [u8; MASTER_SALT_LEN],
    /// Already keyed; cloning it copies the inner and outer hash states, so a packet does not
    /// hash the key pads again.
    mac: Hmac<Sha1>,
    tag_len: usize,
}

impl SessionKeys {
    fn new(suite: Suite, master: &MasterKey) -> SessionKeys {
        let mut key = [0u8; MASTER_KEY_LEN];
        derive(master, LABEL_ENCRYPTION, &mut key);
        let mut salt = [0u8; MASTER_SALT_LEN];
        derive(master, LABEL_SALT, &mut salt);
        // HMAC zero-pads a short key to the hash's block size (RFC 2104 §2), so keying with the
        // padded block is the same MAC, through the constructor that cannot fail.
        let mut auth_key = hmac::digest::Key::<Hmac<Sha1>>::default();
        derive(master, LABEL_AUTH, &mut auth_key[..AUTH_KEY_LEN]);
        SessionKeys {
            aes: Aes128::new(&key.into()),
            salt,
            mac: <Hmac<Sha1> as KeyInit>::new(&auth_key),
            tag_len: suite.tag_len(),
        }
    }

    /// RFC 3711 §4.1.1: encryption and decryption are the same XOR.
    fn crypt(&self, ssrc: u32, index: u64, payload: &mut [u8]) {
        apply_keystream(&self.aes, &packet_iv(&self.salt, ssrc, index), payload);
    }

    /// RFC 3711 §4.2: HMAC-SHA1 over the authenticated portion and the ROC, cut to the suite's
    /// length by the caller (the array holds the longest tag).
    fn tag(&self, authenticated: &[u8], roc: u32) -> [u8; MAX_TAG_LEN] {
        let mut mac = self.mac.clone();
        mac.update(authenticated);
        mac.update(&roc.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; MAX_TAG_LEN];
        tag.copy_from_slice(&full[..MAX_TAG_LEN]);
        tag
    }
}

/// RFC 3711 §4.3.1 with key_derivation_rate 0: the PRF keystream from the master key with
/// IV = (label || 48 zero bits, right-aligned, XOR master salt) || 0x0000.
fn derive(master: &MasterKey, label: u8, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..MASTER_SALT_LEN].copy_from_slice(&master.salt);
    // The 56-bit key id ends at the salt's last byte, so its label byte lands on byte 7.
    iv[MASTER_SALT_LEN - 7] ^= label;
    out.fill(0);
    let mut prf = ctr::Ctr128BE::<Aes128>::new(&master.key.into(), &iv.into());
    prf.apply_keystream(out);
}

/// RFC 3711 §4.1.1: IV = (salt * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16).
fn packet_iv(salt: &[u8; MASTER_SALT_LEN], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..MASTER_SALT_LEN].copy_from_slice(salt);
    for (byte, x) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *byte ^= x;
    }
    // The index has 48 bits, so shifted by 16 it fills the low 64 exactly.
    for (byte, x) in iv[8..].iter_mut().zip((index << 16).to_be_bytes()) {
        *byte ^= x;
    }
    iv
}

/// AES-CM from `iv`, borrowing the expanded key rather than copying it per packet.
fn apply_keystream(aes: &Aes128, iv: &[u8; 16], buf: &mut [u8]) {
    let core = CtrCore::<&Aes128, ctr::flavors::Ctr128BE>::inner_iv_init(aes, iv.into());
    StreamCipherCoreWrapper::from_core(core).apply_keystream(buf);
}

/// Where the payload of an RTP packet starts: only the payload is encrypted, the header (CSRCs
/// and extension included) is authenticated in the clear.
fn payload_offset(packet: &[u8]) -> Result<usize, SrtpError> {
    let Some(&[first, ..]) = packet.get(..HEADER_LEN) else {
        return Err(SrtpError::NotRtp);
    };
    if first >> 6 != 2 {
        return Err(SrtpError::NotRtp);
    }
    let mut offset = HEADER_LEN + 4 * usize::from(first & 0x0F);
    if first & 0x10 != 0 {
        let Some(&[_, _, hi, lo]) = packet.get(offset..offset + 4) else {
            return Err(SrtpError::NotRtp);
        };
        offset += 4 + 4 * usize::from(u16::from_be_bytes([hi, lo]));
    }
    if offset > packet.len() {
        return Err(SrtpError::NotRtp);
    }
    Ok(offset)
}

fn ssrc_and_seq(packet: &[u8]) -> (u32, u16) {
    match packet.get(2..12) {
        Some(&[s0, s1, _, _, _, _, x0, x1, x2, x3]) => (
            u32::from_be_bytes([x0, x1, x2, x3]),
            u16::from_be_bytes([s0, s1]),
        ),
        // payload_offset has checked the fixed header is there.
        _ => (0, 0),
    }
}

/// RFC 3711 Appendix A: the index of sequence number `seq`, as the one nearest the highest index
/// seen so far (ROC - 1, ROC or ROC + 1 with `seq`).
fn estimate_index(highest: u64, seq: u16) -> u64 {
    let roc = (highest >> 16) as u32;
    let s_l = u32::from(highest as u16);
    let seq32 = u32::from(seq);
    let v = if s_l < 0x8000 {
        if seq32 > s_l + 0x8000 {
            // In the first roll there is no earlier one: a far-ahead number is ahead.
            roc.saturating_sub(1)
        } else {
            roc
        }
    } else if s_l - 0x8000 > seq32 {
        // Wraps only after 2^48 packets, ~178,000 years of 20 ms packets.
        roc.wrapping_add(1)
    } else {
        roc
    };
    (u64::from(v) << 16) | u64::from(seq)
}

/// Protects our outgoing RTP (one SSRC: the gateway sends one stream per call).
///
/// `protect` does not allocate.
pub struct SrtpSender {
    keys: SessionKeys,
    /// SSRC and the highest index sent; `None` before the first packet.
    stream: Option<(u32, u64)>,
}

impl SrtpSender {
    pub fn new(suite: Suite, key: &MasterKey) -> SrtpSender {
        SrtpSender {
            keys: SessionKeys::new(suite, key),
            stream: None,
        }
    }

    /// Encrypts the payload of the RTP packet `buf[..len]` in place and appends the auth tag;
    /// returns the SRTP length (`len` + tag length). `buf.len()` must be at least that, else
    /// `TooShort`. The ROC follows the sequence number across its wrap by the same estimate a
    /// receiver makes, so a resent or slightly reordered packet keeps the ROC it was sent with.
    /// A new SSRC starts again at ROC 0, as the receiver will.
    pub fn protect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let packet = buf.get(..len).ok_or(SrtpError::TooShort)?;
        let offset = payload_offset(packet)?;
        let (ssrc, seq) = ssrc_and_seq(packet);
        let end = len + self.keys.tag_len;
        if end > buf.len() {
            return Err(SrtpError::TooShort);
        }

        let highest = self
            .stream
            .and_then(|(current, highest)| (current == ssrc).then_some(highest));
        let index = highest.map_or(u64::from(seq), |h| estimate_index(h, seq));
        self.keys.crypt(ssrc, index, &mut buf[offset..len]);
        let tag = self.keys.tag(&buf[..len], (index >> 16) as u32);
        buf[len..end].copy_from_slice(&tag[..self.keys.tag_len]);
        self.stream = Some((ssrc, highest.map_or(index, |h| h.max(index))));
        Ok(end)
    }
}

/// The receive state of the caller's current stream.
struct ReceiveStream {
    ssrc: u32,
    highest: u64,
    /// Bit n set: index `highest - n` has been accepted.
    window: u64,
}

impl ReceiveStream {
    fn new(ssrc: u32, index: u64) -> ReceiveStream {
        ReceiveStream {
            ssrc,
            highest: index,
            window: 1,
        }
    }

    /// RFC 3711 §3.3.2, before authentication: rejecting a replay is cheaper than a MAC.
    fn check(&self, index: u64) -> Result<(), SrtpError> {
        let Some(behind) = self.highest.checked_sub(index) else {
            return Ok(());
        };
        if behind >= REPLAY_WINDOW {
            Err(SrtpError::TooOld)
        } else if self.window >> behind & 1 == 1 {
            Err(SrtpError::Replayed)
        } else {
            Ok(())
        }
    }

    /// After authentication only, so a forgery cannot move the window or the ROC.
    fn accept(&mut self, index: u64) {
        match self.highest.checked_sub(index) {
            Some(behind) => self.window |= 1 << behind,
            None => {
                let ahead = index - self.highest;
                self.window = if ahead >= REPLAY_WINDOW {
                    1
                } else {
                    self.window << ahead | 1
                };
                self.highest = index;
            }
        }
    }
}

/// Checks and decrypts the caller's SRTP.
///
/// `unprotect` does not allocate, and nothing in it panics on any input.
pub struct SrtpReceiver {
    keys: SessionKeys,
    /// The streams seen, most recent first. More than the current one is kept so that an
    /// attacker on the path cannot replay a captured stream by alternating it with another
    /// SSRC under the same key: a stream seen before resumes its own window. Past this many
    /// SSRCs the least recent is forgotten.
    streams: [Option<ReceiveStream>; STREAMS],
}

/// SSRCs a receiver remembers (a caller's media server restarting its stream, a transfer).
const STREAMS: usize = 4;

impl SrtpReceiver {
    pub fn new(suite: Suite, key: &MasterKey) -> SrtpReceiver {
        SrtpReceiver {
            keys: SessionKeys::new(suite, key),
            streams: Default::default(),
        }
    }

    /// Authenticates (constant-time tag comparison), replay-checks (64-packet window) and
    /// decrypts the SRTP packet `buf` in place; returns the length of the plain RTP packet, the
    /// tag stripped. The index is estimated per RFC 3711 Appendix A from the highest index seen,
    /// so the ROC is right across the wrap and reordering.
    ///
    /// Nothing changes unless the packet authenticates. A packet with an SSRC not seen before,
    /// once it authenticates, starts a new stream at ROC 0 with a fresh window (the caller's
    /// media server may restart its stream); one seen before resumes its own window.
    pub fn unprotect(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let tag_len = self.keys.tag_len;
        if buf.len() < HEADER_LEN + tag_len {
            return Err(SrtpError::TooShort);
        }
        let (authenticated, tag) = buf.split_at_mut(buf.len() - tag_len);
        let offset = payload_offset(authenticated)?;
        let (ssrc, seq) = ssrc_and_seq(authenticated);

        let known = self
            .streams
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.ssrc == ssrc));
        let index = match known.and_then(|i| self.streams[i].as_ref()) {
            Some(stream) => {
                let index = estimate_index(stream.highest, seq);
                stream.check(index)?;
                index
            }
            None => u64::from(seq),
        };
        let expected = self.keys.tag(authenticated, (index >> 16) as u32);
        if !bool::from(expected[..tag_len].ct_eq(tag)) {
            return Err(SrtpError::AuthFailed);
        }

        match known {
            Some(i) => {
                if let Some(stream) = self.streams[i].as_mut() {
                    stream.accept(index);
                }
                self.streams[..=i].rotate_right(1);
            }
            None => {
                self.streams.rotate_right(1);
                self.streams[0] = Some(ReceiveStream::new(ssrc, index));
            }
        }
        let len = authenticated.len();
        self.keys.crypt(ssrc, index, &mut authenticated[offset..]);
        Ok(len)
    }
}

#[cfg(test)]
mod tests;
