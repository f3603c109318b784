//! SIP digest authentication: RFC 7616 (MD5 and SHA-256), compatible with RFC 2617 and with the
//! RFC 2069 form that has no `qop`.
//!
//! Both sides live here. [`DigestServer`] challenges INVITEs (`407` + `Proxy-Authenticate` by
//! default, as Twilio's `<Dial><Sip username password>` expects) and verifies the retry;
//! [`Challenge`] and [`respond`] are the client half, used by the load harness and the tests.
//!
//! Everything works on header VALUES (the text after `Proxy-Authenticate:` etc.), never on a SIP
//! message, so the core has no dependency on the message codec and no I/O: time comes in as an
//! [`std::time::Instant`].

mod client;
mod params;
#[cfg(test)]
mod parse_tests;
mod server;
#[cfg(test)]
mod tests;

use std::fmt;

use md5::{Digest, Md5};
use sha2::Sha256;

pub use client::{respond, Challenge};
pub use server::{nonce_key, DigestConfig, DigestServer, NonceClock, Verified, MAX_TRACKED_NONCES};

/// A digest hash algorithm. The `-sess` variants are not supported: they exist so a server can
/// precompute HA1 with a third party, which a SIP gateway holding the password does not need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5`: the default when a header names no algorithm, and the only one Twilio is known
    /// to answer.
    Md5,
    /// `SHA-256` (RFC 7616).
    Sha256,
}

impl Algorithm {
    /// The token used on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parses the wire token, case-insensitively (RFC 7616 §3.3: tokens are case-insensitive).
    pub fn from_token(token: &str) -> Option<Algorithm> {
        if token.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if token.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which challenge a server sends: a proxy's or a user agent's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChallengeKind {
    /// `407 Proxy Authentication Required` with `Proxy-Authenticate`; the client answers with
    /// `Proxy-Authorization`. The default, because every capture of Twilio answering a
    /// challenge is a 407.
    #[default]
    Proxy,
    /// `401 Unauthorized` with `WWW-Authenticate`; the client answers with `Authorization`.
    Www,
}

impl ChallengeKind {
    /// The status code of the challenging response.
    pub fn status(self) -> u16 {
        match self {
            ChallengeKind::Proxy => 407,
            ChallengeKind::Www => 401,
        }
    }

    /// The name of the header that carries the challenge.
    pub fn challenge_header(self) -> &'static str {
        match self {
            ChallengeKind::Proxy => "Proxy-Authenticate",
            ChallengeKind::Www => "WWW-Authenticate",
        }
    }

    /// The name of the header a client puts its credentials in when answering this challenge.
    pub fn credentials_header(self) -> &'static str {
        match self {
            ChallengeKind::Proxy => "Proxy-Authorization",
            ChallengeKind::Www => "Authorization",
        }
    }
}

/// Why a credentials header (or, on the client side, a challenge) was refused. `Display` is a
/// short reason for the log; user-supplied text in it is escaped, so a hostile username cannot
/// forge log lines.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The header could not be parsed, or lacks a required parameter.
    #[error("malformed digest header: {0}")]
    Malformed(String),
    /// The `realm` is not this server's.
    #[error("realm does not match")]
    WrongRealm,
    /// The algorithm is unknown, or known but not offered by this server (a downgrade attempt).
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The credentials name a user the lookup does not know.
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    /// The nonce has a shape no sipbridge node issues: answer with a fresh challenge.
    #[error("malformed nonce")]
    BadNonce,
    /// The password was right but the nonce (or the opaque) was issued under another secret:
    /// by another node that does not share `sip.nonce_secret_env`, or before a restart. A
    /// stale challenge (`stale=true`), not a wrong password.
    #[error("nonce issued by another node or an earlier run")]
    ForeignNonce,
    /// The password was right but the nonce has expired: answer with a fresh challenge that
    /// carries `stale=true`, so the client retries without asking its user again.
    #[error("nonce expired")]
    StaleNonce,
    /// The password was right but this nonce-count was already used (a replayed request), or a
    /// nonce answered without `qop` was used twice. Answer with a fresh challenge; `stale=true`
    /// is appropriate because the client proved it knows the password.
    #[error("nonce count replayed")]
    Replay,
    /// The response does not match the password on file.
    #[error("wrong password for user {username:?}")]
    BadResponse {
        /// The username the client claimed.
        username: String,
    },
}

/// The `qop=auth` inputs of a response: the nonce-count and the client nonce, exactly as they
/// appear on the wire (the nonce-count's text is hashed, not its value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QopAuth<'a> {
    /// `nc`, normally eight hex digits.
    pub nc: &'a str,
    /// `cnonce`.
    pub cnonce: &'a str,
}

/// Everything the `response` hash covers.
#[derive(Clone, Copy, Debug)]
pub struct DigestInput<'a> {
    /// The hash algorithm.
    pub algorithm: Algorithm,
    /// The user's name, unquoted.
    pub username: &'a str,
    /// The realm, unquoted.
    pub realm: &'a str,
    /// The user's password.
    pub password: &'a str,
    /// The request method, e.g. `INVITE`.
    pub method: &'a str,
    /// The `uri` parameter, exactly as sent.
    pub uri: &'a str,
    /// The server's nonce.
    pub nonce: &'a str,
    /// `Some` for `qop=auth`, `None` for the RFC 2069 form.
    pub qop: Option<QopAuth<'a>>,
}

/// Computes the lowercase hex `response` value:
/// `H(HA1:nonce:nc:cnonce:auth:HA2)` with `qop=auth`, `H(HA1:nonce:HA2)` without, where
/// `HA1 = H(username:realm:password)` and `HA2 = H(method:uri)`.
pub fn digest_response(input: &DigestInput<'_>) -> String {
    digest_response_hex(input).as_str().to_owned()
}

/// As [`digest_response`], on the stack.
pub(crate) fn digest_response_hex(i: &DigestInput<'_>) -> HexDigest {
    let alg = i.algorithm;
    let ha1 = hash(
        alg,
        &[
            i.username.as_bytes(),
            i.realm.as_bytes(),
            i.password.as_bytes(),
        ],
    );
    let ha2 = hash(alg, &[i.method.as_bytes(), i.uri.as_bytes()]);
    match i.qop {
        Some(q) => hash(
            alg,
            &[
                ha1.as_bytes(),
                i.nonce.as_bytes(),
                q.nc.as_bytes(),
                q.cnonce.as_bytes(),
                b"auth",
                ha2.as_bytes(),
            ],
        ),
        None => hash(alg, &[ha1.as_bytes(), i.nonce.as_bytes(), ha2.as_bytes()]),
    }
}

/// A lowercase hex digest of up to 32 bytes, kept on the stack.
pub(crate) struct HexDigest {
    buf: [u8; 64],
    len: usize,
}

impl HexDigest {
    fn from_bytes(bytes: &[u8]) -> HexDigest {
        let mut out = HexDigest {
            buf: [0; 64],
            len: 0,
        };
        let len = (bytes.len() * 2).min(out.buf.len());
        let src = &bytes[..len / 2];
        if hex::encode_to_slice(src, &mut out.buf[..len]).is_ok() {
            out.len = len;
        }
        out
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

/// `H(p0:p1:...)`: the parts joined with colons, hashed, in lowercase hex.
fn hash(alg: Algorithm, parts: &[&[u8]]) -> HexDigest {
    fn run<D: Digest>(parts: &[&[u8]]) -> HexDigest {
        let mut d = D::new();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                d.update(b":");
            }
            d.update(p);
        }
        HexDigest::from_bytes(&d.finalize())
    }
    match alg {
        Algorithm::Md5 => run::<Md5>(parts),
        Algorithm::Sha256 => run::<Sha256>(parts),
    }
}
