//! The server half: stateless HMAC nonces, response verification, nonce-count replay tracking.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::params::{self, push_quoted, DigestParams};
use super::{digest_response_hex, Algorithm, AuthError, ChallengeKind, DigestInput, QopAuth};

type HmacSha256 = Hmac<Sha256>;

/// How many nonces the replay tracker remembers at most. Entries are only created by requests
/// that carried the right password, so only real clients fill it; at 100k calls per nonce
/// lifetime (300 s), that is over 300 authenticated calls per second.
pub const MAX_TRACKED_NONCES: usize = 100_000;

/// Bytes of the HMAC tag kept in a nonce: 128 bits, beyond guessing.
const TAG_LEN: usize = 16;
/// Issue time (8) + node (4) + sequence (4) + tag.
const NONCE_LEN: usize = 16 + TAG_LEN;
/// `seen` value for a nonce answered without `qop`: no later use is acceptable.
const USED_WITHOUT_QOP: u64 = u64::MAX;

/// Digest settings of one server (one realm).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestConfig {
    /// The realm in challenges; credentials must name it exactly.
    pub realm: String,
    /// The algorithms offered, one challenge each, in this order (RFC 7616 §3.7 asks for the
    /// preferred one first). Credentials using another algorithm are refused, so a client
    /// cannot downgrade to MD5 when only SHA-256 is offered. An empty list means `[Md5]`.
    pub algorithms: Vec<Algorithm>,
    /// Offer `qop="auth"`. Credentials are accepted with or without qop either way (see
    /// [`DigestServer::verify`]).
    pub qop: bool,
    /// How long a nonce stays fresh.
    pub nonce_ttl: Duration,
    /// 407 or 401.
    pub kind: ChallengeKind,
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig {
            realm: "sipbridge".to_owned(),
            algorithms: vec![Algorithm::Md5],
            qop: true,
            nonce_ttl: Duration::from_secs(300),
            kind: ChallengeKind::Proxy,
        }
    }
}

/// A successful verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The authenticated digest username (Twilio's From is the caller, never this).
    pub username: String,
}

/// Identifies one issued nonce: (issue time in Unix ms, node << 32 | sequence number). Ordered
/// by issue time, so the oldest entries are the first in the map.
type NonceId = (u64, u64);

/// The wall clock as the digest core sees it: the Unix time at `epoch`. Nonces carry their
/// wall-clock issue time so that nodes sharing a secret agree on a nonce's age; the core itself
/// is only ever given `Instant`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NonceClock {
    pub epoch: Instant,
    /// Milliseconds since 1970 at `epoch`.
    pub unix_ms_at_epoch: u64,
}

impl NonceClock {
    /// `epoch` paired with the system clock now: for the driver, once at start.
    pub fn system(epoch: Instant) -> NonceClock {
        let since = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        NonceClock {
            epoch,
            unix_ms_at_epoch: millis(since),
        }
    }
}

/// The HMAC key for nonces: derived from a secret the nodes of a cluster share
/// (`sip.nonce_secret_env`), or 32 random bytes for a node of its own.
pub fn nonce_key(shared: Option<&str>) -> [u8; 32] {
    match shared {
        Some(s) => {
            let mut h = Sha256::new();
            h.update(b"sipbridge digest nonce key v1\0");
            h.update(s.as_bytes());
            h.finalize().into()
        }
        None => rand::random(),
    }
}

/// Issues challenges and verifies credentials for one realm.
///
/// Nonces are stateless: `hex(unix_ms || node || seq || HMAC-SHA256(secret, unix_ms || node ||
/// seq || realm)[..16])`. The wall-clock time lets every node sharing the secret judge a
/// nonce's age; the node id (random per process) and the sequence number keep nonces issued in
/// the same millisecond distinct across nodes and callers, so no two callers share a
/// nonce-count space. Only nonces that have been *used with the right password* are remembered
/// (for nonce-count replay), so a flood of unauthenticated requests costs no memory; that
/// memory is per node, so a request replayed to *another* node of a cluster is caught only by
/// the nonce's age. A nonce of another secret (a node without the shared one, or a run before
/// a restart) answered with the right password is [`AuthError::ForeignNonce`]: a stale
/// challenge, never a wrong password.
pub struct DigestServer {
    cfg: DigestConfig,
    mac: HmacSha256,
    clock: NonceClock,
    node: u32,
    opaque: String,
    // Atomic only because `challenges` takes `&self`; the core is still single-owner.
    next_seq: AtomicU32,
    /// Highest nonce-count accepted per used nonce.
    pub(super) seen: BTreeMap<NonceId, u64>,
    /// Every nonce at or below this id that is not in `seen` was evicted while still fresh: it
    /// may have been used, so any use of it is treated as a replay.
    evicted_up_to: Option<NonceId>,
    pub(super) max_tracked: usize,
}

impl DigestServer {
    /// `secret`: the key for the HMAC nonces ([`nonce_key`]); `node`: this process's id in
    /// the nonces (random, so two nodes sharing the secret never issue the same nonce);
    /// `clock`: how the `Instant`s given later map to wall-clock time.
    pub fn new(mut cfg: DigestConfig, secret: [u8; 32], node: u32, clock: NonceClock) -> Self {
        if cfg.algorithms.is_empty() {
            cfg.algorithms.push(Algorithm::Md5);
        }
        let mut seen_alg = Vec::with_capacity(cfg.algorithms.len());
        cfg.algorithms.retain(|a| {
            let first = !seen_alg.contains(a);
            seen_alg.push(*a);
            first
        });
        // HMAC zero-pads keys shorter than its 64-byte block, so padding here gives the same
        // MAC as keying with the 32 bytes, through the constructor that cannot fail.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&secret);
        let mac = <HmacSha256 as Mac>::new(&block.into());
        let mut m = mac.clone();
        m.update(b"sipbridge opaque\0");
        m.update(cfg.realm.as_bytes());
        let opaque = hex::encode(&m.finalize().into_bytes()[..TAG_LEN]);
        DigestServer {
            cfg,
            mac,
            clock,
            node,
            opaque,
            next_seq: AtomicU32::new(0),
            seen: BTreeMap::new(),
            evicted_up_to: None,
            max_tracked: MAX_TRACKED_NONCES,
        }
    }

    /// The configuration in force (algorithms de-duplicated, never empty).
    pub fn config(&self) -> &DigestConfig {
        &self.cfg
    }

    /// The challenge header VALUES, one per configured algorithm in the configured order, e.g.
    /// `Digest realm="sipbridge", nonce="...", opaque="...", algorithm=MD5, qop="auth"`, with
    /// `, stale=true` appended when `stale`. All share one fresh nonce.
    pub fn challenges(&self, now: Instant, stale: bool) -> Vec<String> {
        let nonce = self.issue_nonce(now);
        self.cfg
            .algorithms
            .iter()
            .map(|alg| {
                let mut h = String::with_capacity(160);
                h.push_str("Digest realm=");
                push_quoted(&mut h, &self.cfg.realm);
                h.push_str(", nonce=\"");
                h.push_str(&nonce);
                h.push_str("\", opaque=\"");
                h.push_str(&self.opaque);
                h.push_str("\", algorithm=");
                h.push_str(alg.name());
                if self.cfg.qop {
                    h.push_str(", qop=\"auth\"");
                }
                if stale {
                    h.push_str(", stale=true");
                }
                h
            })
            .collect()
    }

    /// Verifies a credentials header VALUE (from `Authorization` or `Proxy-Authorization`,
    /// whichever the request carries). `lookup(username)` returns the user's plain password.
    ///
    /// Choices:
    /// - HA2 is computed over the `uri=` parameter exactly as sent, and that URI is not
    ///   compared with the Request-URI. RFC 2617 §3.2.2.5 (kept in RFC 7616 §3.4.6) asks the
    ///   server to make sure `uri` names the same resource as the request line, a check meant
    ///   for proxies that rewrite it. This core is never given the Request-URI: in SIP the same
    ///   resource is spelt in many ways (Twilio keeps `;transport=tls` in `uri=`, edge proxies
    ///   rewrite the Request-URI), so a strict comparison would fail real calls, and a loose
    ///   one would add nothing against replay, which the nonce (ours, fresh) and the
    ///   once-only nonce-count already stop. A caller wanting it can compare user and host.
    /// - A response without `qop` (RFC 2069 form) is accepted even when `qop="auth"` was
    ///   offered: it still proves knowledge of the password over our nonce, LiveKit-style
    ///   clients built against qop-less challenges produce it, and refusing it would fail
    ///   calls for no gain because such a nonce is accepted only once (see
    ///   [`AuthError::Replay`]), which is all that `nc` would have bought.
    /// - Order of checks: syntax (the nonce's shape included), realm, algorithm, user,
    ///   response, then the nonce's authenticity (and the opaque's), freshness and replay.
    ///   Those three are only judged on a correct response, so `ForeignNonce`, `StaleNonce`
    ///   and `Replay` tell the caller the password was right (a balancer that sent the retry
    ///   to another node is not a password guess), and forged requests can never advance a
    ///   nonce-count to lock a real client out. Checking the password over a nonce we may not
    ///   have issued costs one hash, the same as the HMAC it replaces, and tells a guesser
    ///   nothing a fresh challenge of ours would not.
    /// - `username*` (RFC 7616 §3.4.4, UTF-8 ext-value) is accepted; `userhash=true` is refused
    ///   because it is never offered.
    pub fn verify(
        &mut self,
        now: Instant,
        method: &str,
        credentials: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Verified, AuthError> {
        let p = params::parse(credentials)?;
        let username = username(&p)?;
        let realm = p.require("realm")?;
        let nonce = p.require("nonce")?;
        let uri = p.require("uri")?;
        let response = p.require("response")?;
        if realm != self.cfg.realm {
            return Err(AuthError::WrongRealm);
        }
        // No algorithm parameter means MD5 (RFC 7616 §3.4), which must have been offered too.
        let alg_token = p.get("algorithm").unwrap_or("MD5");
        let algorithm = Algorithm::from_token(alg_token)
            .filter(|alg| self.cfg.algorithms.contains(alg))
            .ok_or_else(|| AuthError::UnsupportedAlgorithm(alg_token.to_owned()))?;
        if p.get("userhash")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Err(AuthError::Malformed("userhash was not offered".to_owned()));
        }
        let qop = match p.get("qop") {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let nc = p.require("nc")?;
                let cnonce = p.require("cnonce")?;
                Some((QopAuth { nc, cnonce }, parse_nc(nc)?))
            }
            Some(q) => return Err(AuthError::Malformed(format!("qop {q:?} was not offered"))),
        };
        let raw = decode_nonce(nonce)?;
        let password = lookup(&username).ok_or_else(|| AuthError::UnknownUser(username.clone()))?;

        let expected = digest_response_hex(&DigestInput {
            algorithm,
            username: &username,
            realm,
            password: &password,
            method,
            uri,
            nonce,
            qop: qop.map(|(q, _)| q),
        });
        if !response_matches(expected.as_bytes(), response.as_bytes()) {
            return Err(AuthError::BadResponse { username });
        }
        let opaque_ok = p
            .get("opaque")
            .is_none_or(|o| bool::from(o.as_bytes().ct_eq(self.opaque.as_bytes())));
        let tag = self.tag(&raw[..16]);
        if !opaque_ok || !bool::from(tag.ct_eq(&raw[16..])) {
            return Err(AuthError::ForeignNonce);
        }
        let id = nonce_id(&raw);

        let now_ms = self.unix_ms(now);
        let ttl_ms = millis(self.cfg.nonce_ttl);
        // Nodes' clocks differ a little, so a nonce from slightly ahead is fine; one from
        // further ahead than a whole lifetime is not.
        if now_ms.saturating_sub(id.0) > ttl_ms || id.0.saturating_sub(now_ms) > ttl_ms {
            return Err(AuthError::StaleNonce);
        }
        self.record_use(id, qop.map(|(_, n)| n), now_ms.saturating_sub(ttl_ms))?;
        Ok(Verified { username })
    }

    /// How many used nonces are being tracked for replay.
    pub fn tracked_nonces(&self) -> usize {
        self.seen.len()
    }

    /// `now` on the wall clock, in Unix milliseconds.
    fn unix_ms(&self, now: Instant) -> u64 {
        let since = millis(now.saturating_duration_since(self.clock.epoch));
        self.clock.unix_ms_at_epoch.saturating_add(since)
    }

    fn issue_nonce(&self, now: Instant) -> String {
        let ms = self.unix_ms(now);
        // Wrapping is harmless: the same sequence number comes back 2^32 nonces later, never
        // within one millisecond.
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let mut raw = [0u8; NONCE_LEN];
        raw[..8].copy_from_slice(&ms.to_be_bytes());
        raw[8..12].copy_from_slice(&self.node.to_be_bytes());
        raw[12..16].copy_from_slice(&seq.to_be_bytes());
        let tag = self.tag(&raw[..16]);
        raw[16..].copy_from_slice(&tag);
        hex::encode(raw)
    }

    fn tag(&self, id: &[u8]) -> [u8; TAG_LEN] {
        let mut m = self.mac.clone();
        m.update(id);
        m.update(self.cfg.realm.as_bytes());
        let full = m.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// Accepts `nc` for nonce `id` only if it is higher than every nc accepted before (a
    /// qop-less use is accepted only as the nonce's first and only use), then remembers it.
    /// `fresh_from` is the issue time before which nonces are stale and need no tracking.
    fn record_use(
        &mut self,
        id: NonceId,
        nc: Option<u32>,
        fresh_from: u64,
    ) -> Result<(), AuthError> {
        if let Some(prev) = self.seen.get_mut(&id) {
            return match nc {
                Some(n) if *prev != USED_WITHOUT_QOP && u64::from(n) > *prev => {
                    *prev = u64::from(n);
                    Ok(())
                }
                _ => Err(AuthError::Replay),
            };
        }
        if self.evicted_up_to.is_some_and(|floor| id <= floor) {
            return Err(AuthError::Replay);
        }
        if self
            .seen
            .first_key_value()
            .is_some_and(|(k, _)| k.0 < fresh_from)
        {
            self.seen = self.seen.split_off(&(fresh_from, 0));
        }
        while self.seen.len() >= self.max_tracked.max(1) {
            match self.seen.pop_first() {
                Some((old, _)) => {
                    self.evicted_up_to = Some(self.evicted_up_to.map_or(old, |f| f.max(old)));
                }
                None => break,
            }
        }
        self.seen.insert(id, nc.map_or(USED_WITHOUT_QOP, u64::from));
        Ok(())
    }
}

// By hand, so the HMAC key never reaches a log.
impl std::fmt::Debug for DigestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestServer")
            .field("cfg", &self.cfg)
            .field("tracked_nonces", &self.seen.len())
            .finish_non_exhaustive()
    }
}

/// A nonce's bytes, or `BadNonce` when it has a shape no sipbridge node issues.
fn decode_nonce(nonce: &str) -> Result<[u8; NONCE_LEN], AuthError> {
    let mut raw = [0u8; NONCE_LEN];
    if nonce.len() != NONCE_LEN * 2 || hex::decode_to_slice(nonce, &mut raw).is_err() {
        return Err(AuthError::BadNonce);
    }
    Ok(raw)
}

fn nonce_id(raw: &[u8; NONCE_LEN]) -> NonceId {
    let mut ms = [0u8; 8];
    let mut rest = [0u8; 8];
    ms.copy_from_slice(&raw[..8]);
    rest.copy_from_slice(&raw[8..16]);
    (u64::from_be_bytes(ms), u64::from_be_bytes(rest))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The authenticated name: `username`, or the decoded `username*` (never both, RFC 7616 §3.4).
fn username(p: &DigestParams<'_>) -> Result<String, AuthError> {
    match (p.get("username"), p.get("username*")) {
        (Some(u), None) => Ok(u.to_owned()),
        (None, Some(ext)) => params::decode_ext_value(ext)
            .ok_or_else(|| AuthError::Malformed("undecodable username*".to_owned())),
        (Some(_), Some(_)) => Err(AuthError::Malformed(
            "both username and username*".to_owned(),
        )),
        (None, None) => Err(AuthError::Malformed("missing username".to_owned())),
    }
}

/// `nc` is 8 hex digits (RFC 7616 §3.4); fewer are tolerated since the text is hashed as sent.
fn parse_nc(nc: &str) -> Result<u32, AuthError> {
    if nc.is_empty() || nc.len() > 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuthError::Malformed(format!("bad nc {nc:?}")));
    }
    u32::from_str_radix(nc, 16).map_err(|_| AuthError::Malformed(format!("bad nc {nc:?}")))
}

/// Constant-time comparison of the expected lowercase hex with the client's, ignoring the
/// client's hex case. The length check leaks only the length, which the algorithm fixes.
fn response_matches(expected: &[u8], got: &[u8]) -> bool {
    if expected.len() != got.len() {
        return false;
    }
    let mut lower = [0u8; 64];
    let Some(dst) = lower.get_mut(..got.len()) else {
        return false;
    };
    for (d, s) in dst.iter_mut().zip(got) {
        *d = s.to_ascii_lowercase();
    }
    bool::from(expected.ct_eq(dst))
}
