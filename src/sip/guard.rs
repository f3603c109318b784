//! Per-source limits and bans for the SIP port, sans-IO: what Kamailio's `pike` and `htable`
//! and fail2ban's SIP jails do, built in.
//!
//! Every datagram's source address is judged before the datagram is even parsed, so a flood
//! costs one table lookup per packet:
//!
//! - **trusted** sources (inside a trunk's explicit `allowed_addresses`, e.g. Twilio's ranges)
//!   always pass and are never banned: a busy Twilio edge carries every call;
//! - **customers** (a source whose digest answer succeeded recently) are held to a budget 25
//!   times a stranger's: one authenticated source placing ten calls a second is business, a
//!   source flooding after it once knew the password is still banned;
//! - **strangers** spend a token bucket (`rate` per second, `burst` deep); a stranger that runs
//!   it dry is banned for `ban`, and so is one with `auth_failures` wrong digest answers within
//!   `auth_window`. A banned source's packets are dropped without an answer.
//!
//! The table is bounded (`max_sources`): sources it has no room for share one overflow bucket
//! (sixteen strangers' worth), so a spoofed flood from many addresses is capped too, and the
//! table is swept of idle entries every few seconds.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::sip::acl::AddressList;

/// The limits, from `[limits]` in the configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Requests per second a stranger may send, on average.
    pub rate: f64,
    /// How many it may send at once.
    pub burst: f64,
    pub ban: Duration,
    /// Wrong digest answers within `auth_window` that ban a source (0: never).
    pub auth_failures: u32,
    pub auth_window: Duration,
    /// How long a successful digest answer keeps its source a customer.
    pub customer: Duration,
    /// Sources tracked at most.
    pub max_sources: usize,
    /// Calls admitted but not yet answered, at most: a burst of new calls beyond it gets 503
    /// with Retry-After instead of a queue of agent connections.
    pub max_setup: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rate: 20.0,
            burst: 40.0,
            // fail2ban's SIP jails: 10 failures in 10 minutes, banned for 10 minutes.
            ban: Duration::from_secs(600),
            auth_failures: 10,
            auth_window: Duration::from_secs(600),
            customer: Duration::from_secs(3600),
            max_sources: 65_536,
            // Ten seconds of setup (a LiveKit agent's ring timeout) at twenty calls a second.
            max_setup: 200,
        }
    }
}

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    /// Its source is banned.
    Banned,
    /// Its source just ran out of budget (and is banned from now on).
    OverRate,
    /// The overflow bucket (sources the table has no room for) is empty.
    Overflow,
    /// The gateway was behind on its socket, and the datagram came from neither a trusted
    /// source nor a customer, nor belonged to a call.
    Shed,
}

/// Why a source was banned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BanReason {
    Rate,
    AuthFailures,
}

impl BanReason {
    pub fn as_str(self) -> &'static str {
        match self {
            BanReason::Rate => "rate",
            BanReason::AuthFailures => "auth_failures",
        }
    }
}

/// A ban in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    pub ip: IpAddr,
    pub reason: BanReason,
    pub since: Instant,
    pub until: Instant,
}

#[derive(Debug)]
struct Source {
    tokens: f64,
    last: Instant,
    /// Times of the recent wrong digest answers, oldest first (at most `auth_failures`).
    failures: VecDeque<Instant>,
    ban: Option<(BanReason, Instant, Instant)>,
    customer_until: Option<Instant>,
}

/// How often idle entries are swept out of the table.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// The overflow bucket is this many strangers' budget.
const OVERFLOW_SHARE: f64 = 16.0;
/// A customer's budget is this many strangers' (500 requests a second with the defaults, ten
/// times what ten calls a second need).
const CUSTOMER_SHARE: f64 = 25.0;

pub struct Guard {
    limits: Limits,
    trusted: Vec<AddressList>,
    sources: HashMap<IpAddr, Source>,
    overflow: (f64, Instant),
    last_sweep: Instant,
}

impl Guard {
    /// `trusted`: the trunks' explicit allowlists (an empty list, "any", trusts nobody).
    pub fn new(now: Instant, limits: Limits, trusted: Vec<AddressList>) -> Guard {
        let burst = limits.burst * OVERFLOW_SHARE;
        Guard {
            trusted: trusted.into_iter().filter(|l| !l.is_any()).collect(),
            limits,
            sources: HashMap::new(),
            overflow: (burst, now),
            last_sweep: now,
        }
    }

    /// New limits and trusted lists (a reload); bans and budgets in progress stay.
    pub fn reload(&mut self, limits: Limits, trusted: Vec<AddressList>) {
        self.trusted = trusted.into_iter().filter(|l| !l.is_any()).collect();
        self.limits = limits;
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|l| l.allows(ip))
    }

    /// Whether `ip` proved it knows a trunk's password recently (and is not banned since).
    pub fn is_customer(&self, now: Instant, ip: IpAddr) -> bool {
        self.sources.get(&ip).is_some_and(|s| {
            s.customer_until.is_some_and(|t| now < t)
                && s.ban.is_none_or(|(_, _, until)| now >= until)
        })
    }

    /// Judges one datagram from `ip`: `Ok` to process it, `Err` to drop it unanswered.
    pub fn check(&mut self, now: Instant, ip: IpAddr) -> Result<(), Drop> {
        if now.saturating_duration_since(self.last_sweep) >= SWEEP_EVERY {
            self.sweep(now);
        }
        if self.is_trusted(ip) {
            return Ok(());
        }
        let limits = &self.limits;
        if !self.sources.contains_key(&ip) && self.sources.len() >= limits.max_sources {
            let (rate, burst) = (limits.rate * OVERFLOW_SHARE, limits.burst * OVERFLOW_SHARE);
            return match spend(&mut self.overflow, now, rate, burst) {
                true => Ok(()),
                false => Err(Drop::Overflow),
            };
        }
        let src = self.sources.entry(ip).or_insert_with(|| Source {
            tokens: limits.burst,
            last: now,
            failures: VecDeque::new(),
            ban: None,
            customer_until: None,
        });
        if let Some((_, _, until)) = src.ban {
            if now < until {
                return Err(Drop::Banned);
            }
            src.ban = None;
        }
        // A customer is not held to a stranger's budget, only to a far larger one: enough for
        // a busy trunk, not for a flood from a source that once knew the password.
        let share = match src.customer_until.is_some_and(|t| now < t) {
            true => CUSTOMER_SHARE,
            false => 1.0,
        };
        let mut bucket = (src.tokens, src.last);
        let ok = spend(&mut bucket, now, limits.rate * share, limits.burst * share);
        (src.tokens, src.last) = bucket;
        if ok {
            return Ok(());
        }
        src.ban = Some((BanReason::Rate, now, now + limits.ban));
        Err(Drop::OverRate)
    }

    /// A wrong digest answer from `ip`. Returns the ban it caused, if any.
    pub fn auth_failed(&mut self, now: Instant, ip: IpAddr) -> Option<Ban> {
        let n = self.limits.auth_failures as usize;
        if n == 0 || self.is_trusted(ip) {
            return None;
        }
        let window = self.limits.auth_window;
        let src = self.sources.get_mut(&ip)?;
        // A wrong password ends the benefit of the doubt a right one earned.
        src.customer_until = None;
        while src
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > window)
        {
            src.failures.pop_front();
        }
        src.failures.push_back(now);
        if src.failures.len() < n {
            return None;
        }
        src.failures.clear();
        let until = now + self.limits.ban;
        src.ban = Some((BanReason::AuthFailures, now, until));
        Some(Ban {
            ip,
            reason: BanReason::AuthFailures,
            since: now,
            until,
        })
    }

    /// A right digest answer from `ip`: a customer, whom the stranger budget no longer limits.
    pub fn auth_succeeded(&mut self, now: Instant, ip: IpAddr) {
        let until = now + self.limits.customer;
        let burst = self.limits.burst * CUSTOMER_SHARE;
        if let Some(src) = self.sources.get_mut(&ip) {
            src.customer_until = Some(until);
            src.failures.clear();
            src.tokens = burst;
        }
    }

    /// The bans in force at `now`, oldest first. Read off the source table, which holds each
    /// ban (a walk over it: for the admin API and a scrape, never per packet).
    pub fn bans(&self, now: Instant) -> Vec<Ban> {
        let mut bans: Vec<Ban> = self
            .sources
            .iter()
            .filter_map(|(ip, s)| {
                let (reason, since, until) = s.ban?;
                (now < until).then_some(Ban {
                    ip: *ip,
                    reason,
                    since,
                    until,
                })
            })
            .collect();
        bans.sort_by_key(|b| b.since);
        bans
    }

    /// Lifts the ban on `ip`; false when there was none.
    pub fn lift(&mut self, now: Instant, ip: IpAddr) -> bool {
        let burst = self.limits.burst;
        let Some(src) = self.sources.get_mut(&ip) else {
            return false;
        };
        let was = src.ban.take().is_some_and(|(_, _, until)| now < until);
        src.failures.clear();
        src.tokens = burst;
        was
    }

    /// Sources tracked now (bounded by `max_sources`).
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    /// Forgets what no longer matters: sources neither banned, nor
    /// customers, nor with recent failures, whose bucket has refilled.
    fn sweep(&mut self, now: Instant) {
        self.last_sweep = now;
        let limits = &self.limits;
        self.sources.retain(|_, s| {
            let banned = s.ban.is_some_and(|(_, _, until)| now < until);
            let customer = s.customer_until.is_some_and(|t| now < t);
            let failing = s
                .failures
                .back()
                .is_some_and(|t| now.saturating_duration_since(*t) <= limits.auth_window);
            let refilled = s.tokens
                + now.saturating_duration_since(s.last).as_secs_f64() * limits.rate
                >= limits.burst;
            banned || customer || failing || !refilled
        });
    }
}

/// Takes one token from a bucket `(tokens, last refill)` refilled at `rate` per second up to
/// `burst`; false when it is empty.
fn spend(bucket: &mut (f64, Instant), now: Instant, rate: f64, burst: f64) -> bool {
    let elapsed = now.saturating_duration_since(bucket.1).as_secs_f64();
    bucket.0 = (bucket.0 + elapsed * rate).min(burst);
    bucket.1 = now;
    if bucket.0 >= 1.0 {
        bucket.0 -= 1.0;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests;
