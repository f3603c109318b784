//! The client half: read a challenge, answer it.

use std::fmt::Write as _;

use super::params::{self, push_quoted};
use super::{digest_response_hex, Algorithm, AuthError, DigestInput, QopAuth};

/// A parsed `Proxy-Authenticate` / `WWW-Authenticate` value. Which of the two it came from (and
/// so whether to answer in `Proxy-Authorization` or `Authorization`) is known to the caller
/// from the status code; see [`super::ChallengeKind`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The realm, unquoted.
    pub realm: String,
    /// The server's nonce.
    pub nonce: String,
    /// Echoed unchanged when present.
    pub opaque: Option<String>,
    /// `MD5` when the challenge names none.
    pub algorithm: Algorithm,
    /// The server offered `qop="auth"` (possibly among others), so the answer uses it.
    pub qop_auth: bool,
    /// `stale=true`: the previous answer had the right password but an old nonce.
    pub stale: bool,
}

impl Challenge {
    /// Parses one challenge header value.
    pub fn parse(header_value: &str) -> Result<Challenge, AuthError> {
        let p = params::parse(header_value)?;
        let realm = p.require("realm")?.to_owned();
        let nonce = p.require("nonce")?.to_owned();
        let algorithm = match p.get("algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::from_token(a)
                .ok_or_else(|| AuthError::UnsupportedAlgorithm(a.to_owned()))?,
        };
        let qop_auth = match p.get("qop") {
            None => false,
            Some(list) => {
                if !list
                    .split(',')
                    .any(|q| q.trim().eq_ignore_ascii_case("auth"))
                {
                    return Err(AuthError::Malformed(format!(
                        "challenge offers qop {list:?} without auth"
                    )));
                }
                true
            }
        };
        Ok(Challenge {
            realm,
            nonce,
            opaque: p.get("opaque").map(str::to_owned),
            algorithm,
            qop_auth,
            stale: p
                .get("stale")
                .is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// The first challenge among several (a response may carry one per algorithm, the
    /// server's preference first, RFC 7616 §3.7) that this client can answer. With none, the
    /// error of the last one tried (or `Malformed` when there were none).
    pub fn select<'a>(
        header_values: impl IntoIterator<Item = &'a str>,
    ) -> Result<Challenge, AuthError> {
        let mut last = AuthError::Malformed("no challenge".to_owned());
        for v in header_values {
            match Challenge::parse(v) {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// Builds an `Authorization` / `Proxy-Authorization` header VALUE answering `ch` for a request
/// with this method and URI (the Request-URI, as RFC 3261 §22.4 asks). `cnonce` and `nc` are
/// used only when the challenge offered `qop="auth"`; `nc` starts at 1 and goes up by one for
/// each request sent with the same nonce.
pub fn respond(
    ch: &Challenge,
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let nc_text = format!("{nc:08x}");
    let qop = ch.qop_auth.then_some(QopAuth {
        nc: &nc_text,
        cnonce,
    });
    let response = digest_response_hex(&DigestInput {
        algorithm: ch.algorithm,
        username,
        realm: &ch.realm,
        password,
        method,
        uri,
        nonce: &ch.nonce,
        qop,
    });
    let mut h = String::with_capacity(256);
    h.push_str("Digest username=");
    push_quoted(&mut h, username);
    h.push_str(", realm=");
    push_quoted(&mut h, &ch.realm);
    h.push_str(", nonce=");
    push_quoted(&mut h, &ch.nonce);
    h.push_str(", uri=");
    push_quoted(&mut h, uri);
    let _ = write!(
        h,
        ", response=\"{}\", algorithm={}",
        response.as_str(),
        ch.algorithm
    );
    if let Some(q) = qop {
        h.push_str(", cnonce=");
        push_quoted(&mut h, q.cnonce);
        let _ = write!(h, ", qop=auth, nc={}", q.nc);
    }
    if let Some(o) = &ch.opaque {
        h.push_str(", opaque=");
        push_quoted(&mut h, o);
    }
    h
}
