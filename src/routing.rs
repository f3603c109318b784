//! Who may call, and which agent answers: trunk matching (source address, called number,
//! digest credentials) and route selection.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Instant;

use crate::config::{normalize_number, MediaEncryption, Route, Trunk};
use crate::sip::auth::{AuthError, ChallengeKind, DigestConfig, DigestServer, NonceClock};
use crate::sip::message::{HeaderName, Request};
use crate::sip::uri::{unescape_user, Uri};

/// Failed digest attempts remembered per Call-ID, so that a second wrong password on the same
/// call gets 403 rather than an endless challenge loop. Bounded: old entries are forgotten.
const MAX_REMEMBERED_FAILURES: usize = 10_000;

#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Accept(Admitted),
    /// Answer with `status` (401 or 407) carrying one `header` per value.
    Challenge {
        status: u16,
        header: HeaderName,
        values: Vec<String>,
        /// Why the credentials the INVITE carried were not enough; `None` when it had none.
        failure: Option<ChallengeWhy>,
    },
    Reject {
        status: u16,
        why: RejectWhy,
        /// The operator's explanation, for the log.
        reason: String,
    },
}

/// Why a new INVITE was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectWhy {
    /// No trunk admits the source address (or serves the called number from it).
    NoTrunk,
    /// A second wrong digest answer on the same Call-ID.
    AuthFailed,
    /// Admitted, but no route for the called number.
    NoRoute,
}

/// Why credentials earned another challenge.
#[derive(Debug, PartialEq, Eq)]
pub enum ChallengeWhy {
    /// The password was right but the nonce is old, reused or another node's: `stale=true`.
    Stale(AuthError),
    /// They did not verify (the first time on this Call-ID; the second gets 403).
    Wrong(AuthError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    pub trunk: String,
    pub agent: String,
    /// The caller's number (or name), as presented in From.
    pub caller: String,
    /// The dialled number as presented (`+447846855904`), never the normalised matching key:
    /// agents, `/calls`, transcripts and webhooks show what the caller dialled.
    pub called: String,
    /// The trunk's `symmetric_rtp`.
    pub symmetric_rtp: bool,
    /// The trunk's `media_encryption`.
    pub media_encryption: MediaEncryption,
}

pub struct Router {
    trunks: Vec<Trunk>,
    routes: Vec<Route>,
    digest: DigestServer,
    kind: ChallengeKind,
    failures: HashMap<String, u8>,
    failure_order: VecDeque<String>,
}

impl Router {
    /// `nonce_key`: the digest nonce key ([`crate::sip::auth::nonce_key`]), shared by the
    /// nodes of a cluster or random; `clock`: the wall-clock time nonces carry.
    pub fn new(
        trunks: Vec<Trunk>,
        routes: Vec<Route>,
        realm: &str,
        kind: ChallengeKind,
        nonce_key: [u8; 32],
        clock: NonceClock,
    ) -> Router {
        let cfg = DigestConfig {
            realm: realm.to_string(),
            kind,
            ..DigestConfig::default()
        };
        Router {
            trunks,
            routes,
            // A random node id keeps this process's nonces apart from its peers'.
            digest: DigestServer::new(cfg, nonce_key, rand::random(), clock),
            kind,
            failures: HashMap::new(),
            failure_order: VecDeque::new(),
        }
    }

    /// Swaps in new trunks and routes (a configuration reload). The digest secret stays, so
    /// challenges issued before the reload are still answered correctly after it.
    pub fn reload(&mut self, trunks: Vec<Trunk>, routes: Vec<Route>) {
        self.trunks = trunks;
        self.routes = routes;
    }

    /// Every trunk's source allowlist: the addresses the SIP port trusts (never limited or
    /// banned) are those inside an explicit one.
    pub fn allowlists(&self) -> Vec<crate::sip::acl::AddressList> {
        self.trunks.iter().map(|t| t.allowed.clone()).collect()
    }

    /// Decides what to do with a new INVITE from `src`. Every rejection and challenge says why,
    /// for the caller to log (rate-limited: a stranger must not be able to write the log).
    pub fn admit(&mut self, now: Instant, req: &Request, src: IpAddr) -> Admission {
        // The numbers as the caller presented them are what the agent sees; the normalised
        // form only matches trunks and routes.
        let called = called_number(req);
        let caller = caller_number(req);
        let called_key = normalize_number(&called);
        let candidates: Vec<usize> = (0..self.trunks.len())
            .filter(|&i| {
                let t = &self.trunks[i];
                t.allowed.allows(src) && (t.numbers.is_empty() || t.numbers.contains(&called_key))
            })
            .collect();
        if candidates.is_empty() {
            let reason = format!("no trunk admits source {src} calling {called:?}");
            return Admission::Reject {
                status: 403,
                why: RejectWhy::NoTrunk,
                reason,
            };
        }
        let trunk = match candidates
            .iter()
            .find(|&&i| self.trunks[i].credentials.is_none())
        {
            // An address-only trunk (Twilio Elastic SIP Trunking never answers a challenge).
            Some(&i) => self.trunks[i].name.clone(),
            None => match self.authenticate(now, req, &candidates) {
                Ok(name) => name,
                Err(a) => return a,
            },
        };
        let Some(agent) = self.route(&called_key) else {
            let reason = format!("no route for called number {called:?} (trunk {trunk:?})");
            return Admission::Reject {
                status: 404,
                why: RejectWhy::NoRoute,
                reason,
            };
        };
        let matched = self.trunks.iter().find(|t| t.name == trunk);
        let symmetric_rtp = matched.is_some_and(|t| t.symmetric_rtp);
        let media_encryption = matched.map(|t| t.media_encryption).unwrap_or_default();
        Admission::Accept(Admitted {
            trunk,
            agent,
            caller,
            called,
            symmetric_rtp,
            media_encryption,
        })
    }

    fn authenticate(
        &mut self,
        now: Instant,
        req: &Request,
        candidates: &[usize],
    ) -> Result<String, Admission> {
        // Accept the credentials under either header name: clients differ in which they use.
        let creds = req
            .headers
            .get(&HeaderName::ProxyAuthorization)
            .or_else(|| req.headers.get(&HeaderName::Authorization));
        let Some(creds) = creds else {
            return Err(self.challenge(now, None));
        };
        let trunks = &self.trunks;
        let lookup = |user: &str| {
            candidates.iter().find_map(|&i| {
                trunks[i]
                    .credentials
                    .as_ref()
                    .filter(|c| c.username == user)
                    .map(|c| c.password.clone())
            })
        };
        match self.digest.verify(now, req.method.as_str(), creds, lookup) {
            Ok(v) => {
                let name = candidates
                    .iter()
                    .map(|&i| &self.trunks[i])
                    .find(|t| {
                        t.credentials
                            .as_ref()
                            .is_some_and(|c| c.username == v.username)
                    })
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                Ok(name)
            }
            // The password was right but the nonce is old, already used, or another node's
            // (a balancer sent the retry elsewhere): a fresh nonce with stale=true lets the
            // client retry without asking its user again.
            Err(e @ (AuthError::StaleNonce | AuthError::Replay | AuthError::ForeignNonce)) => {
                Err(self.challenge(now, Some(ChallengeWhy::Stale(e))))
            }
            Err(e) => {
                let call_id = req.call_id().unwrap_or_default().to_string();
                if self.note_failure(call_id) >= 2 {
                    Err(Admission::Reject {
                        status: 403,
                        why: RejectWhy::AuthFailed,
                        reason: format!("authentication failed: {e}"),
                    })
                } else {
                    Err(self.challenge(now, Some(ChallengeWhy::Wrong(e))))
                }
            }
        }
    }

    fn challenge(&self, now: Instant, failure: Option<ChallengeWhy>) -> Admission {
        let header = match self.kind {
            ChallengeKind::Proxy => HeaderName::ProxyAuthenticate,
            ChallengeKind::Www => HeaderName::WwwAuthenticate,
        };
        let stale = matches!(failure, Some(ChallengeWhy::Stale(_)));
        Admission::Challenge {
            status: self.kind.status(),
            header,
            values: self.digest.challenges(now, stale),
            failure,
        }
    }

    fn note_failure(&mut self, call_id: String) -> u8 {
        if let Some(n) = self.failures.get_mut(&call_id) {
            *n = n.saturating_add(1);
            return *n;
        }
        if self.failure_order.len() >= MAX_REMEMBERED_FAILURES {
            if let Some(old) = self.failure_order.pop_front() {
                self.failures.remove(&old);
            }
        }
        self.failure_order.push_back(call_id.clone());
        self.failures.insert(call_id, 1);
        1
    }

    /// The agent for a called number: the first route listing it, else the default route.
    pub fn route(&self, called: &str) -> Option<String> {
        self.routes
            .iter()
            .find(|r| r.numbers.iter().any(|n| n == called))
            .or_else(|| self.routes.iter().find(|r| r.numbers.is_empty()))
            .map(|r| r.agent.clone())
    }
}

/// The dialled number as presented (`+447846855904`): the Request-URI's user part (Twilio puts
/// the E.164 number there, and so does the gateway's own TwiML), else the To header's.
/// [`normalize_number`] of it is what trunks and routes match.
pub fn called_number(req: &Request) -> String {
    let from_uri = Uri::parse(&req.uri).ok().and_then(|u| u.user);
    let user = from_uri.or_else(|| req.to().and_then(|t| t.uri.user));
    user.map(|u| unescape_user(&u).trim().to_string())
        .unwrap_or_default()
}

/// The caller's number (or name) from the From header.
pub fn caller_number(req: &Request) -> String {
    req.from()
        .and_then(|f| f.uri.user)
        .map(|u| unescape_user(&u))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
