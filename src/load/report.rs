//! What a run measured: per-call records, the summary (percentiles, loss, jitter, intact audio,
//! E-model MOS), the table printed at the end and the JSON written for scripts.

use super::impair::ImpairStats;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// What the E-model adds to the measured one-way delay (RTT/2): the far ends' own
/// packetisation (20 ms frames) and playout buffering (20 ms), which a loopback round trip
/// through the gateway cannot see. Stated in the report next to every MOS.
pub const ASSUMED_EXTRA_ONE_WAY_MS: f64 = 40.0;
/// G.113 Appendix I packet-loss robustness of G.711 without packet-loss concealment, random
/// loss (the gateway conceals only one frame, so the bare codec figure is the honest one).
pub const G711_BPL: f64 = 4.3;

/// Nearest-rank percentile (`p` in 0..=100) of values sorted ascending; `None` when empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// p50/p95/p99/max (and the mean) of a set of values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Percentiles {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Percentiles {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let count = v.len() as u64;
        Percentiles {
            count,
            mean: (count > 0).then(|| v.iter().sum::<f64>() / count as f64),
            p50: percentile(&v, 50.0),
            p95: percentile(&v, 95.0),
            p99: percentile(&v, 99.0),
            max: v.last().copied(),
        }
    }
}

/// Round-trip latencies of every echoed frame of a run, in 0.1 ms buckets up to 2 s: millions
/// of samples in a fixed 160 KiB, with percentiles exact to the bucket.
pub struct Histogram {
    counts: Vec<u64>,
    overflow: u64,
    count: u64,
    sum: Duration,
    max: Duration,
}

const BUCKET: Duration = Duration::from_micros(100);
const BUCKETS: usize = 20_000;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            overflow: 0,
            count: 0,
            sum: Duration::ZERO,
            max: Duration::ZERO,
        }
    }
}

impl Histogram {
    pub fn add(&mut self, d: Duration) {
        let i = (d.as_micros() / BUCKET.as_micros()) as usize;
        match self.counts.get_mut(i) {
            Some(c) => *c += 1,
            None => self.overflow += 1,
        }
        self.count += 1;
        self.sum += d;
        self.max = self.max.max(d);
    }

    /// Percentiles in milliseconds; each is its bucket's upper edge (never above the maximum).
    pub fn percentiles(&self) -> Percentiles {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let at = |p: f64| -> Option<f64> {
            if self.count == 0 {
                return None;
            }
            let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, &c) in self.counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Some(ms(BUCKET * (i as u32 + 1)).min(ms(self.max)));
                }
            }
            Some(ms(self.max))
        };
        Percentiles {
            count: self.count,
            mean: (self.count > 0).then(|| ms(self.sum) / self.count as f64),
            p50: at(50.0),
            p95: at(95.0),
            p99: at(99.0),
            max: (self.count > 0).then(|| ms(self.max)),
        }
    }
}

/// ITU-T G.107 E-model with every parameter at its default except delay and packet loss,
/// G.711 (Ie = 0) and Bpl = [`G711_BPL`], random loss (BurstR = 1). `one_way_ms` is the mean
/// one-way delay T = Ta; the echo path's round trip Tr is 2T. Returns R.
pub fn r_factor(one_way_ms: f64, loss_pct: f64) -> f64 {
    // Default parameters (G.107 Table 3).
    let (slr, rlr, stmr, lstr, ds, telr, wepl) = (8.0, 2.0, 15.0, 18.0, 3.0, 65.0, 110.0);
    let (qdu, nc, nfor, ps, pr, ie, a) = (1.0f64, -70.0, -64.0, 35.0, 35.0, 0.0, 0.0);
    let t = one_way_ms.max(0.0);
    let (ta, tr) = (t, 2.0 * t);
    let ppl = loss_pct.clamp(0.0, 100.0);
    let p10 = |x: f64| 10f64.powf(x / 10.0);

    // Basic signal-to-noise ratio Ro.
    let olr = slr + rlr;
    let nfo = nfor + rlr;
    let pre = pr + 10.0 * (1.0 + p10(10.0 - lstr)).log10();
    let nor = rlr - 121.0 + pre + 0.008 * (pre - 35.0).powi(2);
    let nos = ps - slr - ds - 100.0 + 0.004 * (ps - olr - ds - 14.0).powi(2);
    let no = 10.0 * (p10(nc) + p10(nos) + p10(nor) + p10(nfo)).log10();
    let ro = 15.0 - 1.5 * (slr + no);

    // Simultaneous impairments Is = Iolr + Ist + Iq.
    let xolr = olr + 0.2 * (64.0 + no - rlr);
    let iolr = 20.0 * ((1.0 + (xolr / 8.0).powi(8)).powf(1.0 / 8.0) - xolr / 8.0);
    let stmro = -10.0 * (p10(-stmr) + (-t / 4.0).exp() * p10(-telr)).log10();
    let ist = 12.0 * (1.0 + ((stmro - 13.0) / 6.0).powi(8)).powf(1.0 / 8.0)
        - 28.0 * (1.0 + ((stmro + 1.0) / 19.4).powi(35)).powf(1.0 / 35.0)
        - 13.0 * (1.0 + ((stmro - 3.0) / 33.0).powi(13)).powf(1.0 / 13.0)
        + 29.0;
    let q = 37.0 - 15.0 * qdu.log10();
    let g = 1.07 + 0.258 * q + 0.0602 * q * q;
    let z = 46.0 / 30.0 - g / 40.0;
    let y = (ro - 100.0) / 15.0 + 46.0 / 8.4 - g / 9.0;
    let iq = 15.0 * (1.0 + 10f64.powf(y) + 10f64.powf(z)).log10();
    let is = iolr + ist + iq;

    // Delay impairments Id = Idte + Idle + Idd.
    let terv =
        telr - 40.0 * ((1.0 + t / 10.0) / (1.0 + t / 150.0)).log10() + 6.0 * (-0.3 * t * t).exp();
    let roe = -1.5 * (no - rlr);
    let re = 80.0 + 2.5 * (terv - 14.0);
    let idte =
        ((roe - re) / 2.0 + ((roe - re).powi(2) / 4.0 + 100.0).sqrt() - 1.0) * (1.0 - (-t).exp());
    let rle = 10.5 * (wepl + 7.0) * (tr + 1.0).powf(-0.25);
    let idle = (ro - rle) / 2.0 + ((ro - rle).powi(2) / 4.0 + 169.0).sqrt();
    let idd = idd(ta);
    let id = idte + idle + idd;

    // Equipment impairment with random packet loss.
    let ie_eff = ie + (95.0 - ie) * ppl / (ppl + G711_BPL);
    ro - is - id - ie_eff + a
}

/// G.107 absolute-delay impairment: zero up to 100 ms.
pub fn idd(ta_ms: f64) -> f64 {
    if ta_ms <= 100.0 {
        return 0.0;
    }
    let x = (ta_ms / 100.0).log2();
    25.0 * ((1.0 + x.powi(6)).powf(1.0 / 6.0) - 3.0 * (1.0 + (x / 3.0).powi(6)).powf(1.0 / 6.0)
        + 2.0)
}

/// G.107 Annex B: MOS (conversational quality, estimated) from R.
pub fn mos_from_r(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

/// MOS for a call whose echo round trip was `rtt_ms` and whose returned stream lost `loss_pct`.
pub fn mos(rtt_ms: f64, loss_pct: f64) -> f64 {
    mos_from_r(r_factor(rtt_ms / 2.0 + ASSUMED_EXTRA_ONE_WAY_MS, loss_pct))
}

/// One call, every figure.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CallRecord {
    pub index: u32,
    pub call_id: String,
    /// When the first INVITE went out, from the start of the run.
    pub started_at_ms: f64,
    /// The INVITE's final status, or "timeout" / "error".
    pub outcome: String,
    pub status: Option<u16>,
    /// 200, media both ways, and our BYE answered with 2xx.
    pub completed: bool,
    /// Why the call did not complete.
    pub failure: Option<String>,
    pub note: Option<String>,
    pub auth_rounds: u32,
    /// First INVITE sent to 200 received (challenge round trips included).
    pub setup_ms: Option<f64>,
    /// First INVITE sent to the first RTP packet received.
    pub first_rtp_ms: Option<f64>,
    pub codec: Option<String>,
    /// "200" (or another final), "timeout", "remote", "not sent", "interrupted".
    pub bye: String,
    /// The Reason header of the gateway's BYE, when it hung up.
    pub bye_reason: Option<String>,
    pub rtp_sent: u64,
    pub send_errors: u64,
    pub rtp_received: u64,
    pub silence_frames: u64,
    pub echoed_frames: u64,
    pub unmatched_frames: u64,
    /// Frames the impaired link lost going out, and intact echoes it lost coming back.
    pub lost_on_way_out: u64,
    pub echo_lost_on_way_back: u64,
    /// Frames that reached the gateway and never came back intact (see `MediaCounters`).
    pub not_returned: u64,
    pub other_packets: u64,
    pub expected: u64,
    pub lost: i64,
    pub loss_pct: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub rtt_min_ms: Option<f64>,
    pub rtt_mean_ms: Option<f64>,
    pub rtt_max_ms: Option<f64>,
    /// Echoed frames as a share of the returned frames that were not comfort silence.
    pub intact_pct: Option<f64>,
    pub mos: Option<f64>,
}

/// How the run itself kept up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct HarnessStats {
    /// The latest a 20 ms media tick ran after its due time.
    pub max_tick_late_ms: f64,
    /// Ticks skipped because the loop fell more than 100 ms behind.
    pub ticks_skipped: u64,
    pub rtp_send_errors: u64,
    pub sip_send_errors: u64,
    /// What the impaired link did (`--impair-sip`, `--impair-rtp`), when there was one.
    pub impaired: Option<LinkStats>,
}

/// Packets each direction of the impaired link carried, lost, reordered and duplicated: "out"
/// is towards the gateway.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LinkStats {
    pub sip_out: ImpairStats,
    pub sip_in: ImpairStats,
    pub rtp_out: ImpairStats,
    pub rtp_in: ImpairStats,
}

/// What the run was asked to do.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunInfo {
    pub target: String,
    pub codec: String,
    pub calls_planned: u32,
    pub rate_cps: f64,
    pub duration_s: f64,
    pub max_loss_pct: f64,
    pub elapsed_s: f64,
    pub interrupted: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct MosSummary {
    pub mean: Option<f64>,
    pub min: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub run: RunInfo,
    pub attempted: u64,
    pub completed: u64,
    pub failed: u64,
    /// Every attempted call by its INVITE outcome ("200", "403", "timeout", ...).
    pub outcomes: BTreeMap<String, u64>,
    /// Failed calls by reason.
    pub failures: BTreeMap<String, u64>,
    pub setup_ms: Percentiles,
    pub first_rtp_ms: Percentiles,
    pub rtt_ms: Percentiles,
    /// Per-call interarrival jitter of the returned streams.
    pub jitter_ms: Percentiles,
    pub rtp_sent: u64,
    pub rtp_received: u64,
    pub silence_frames: u64,
    pub echoed_frames: u64,
    pub unmatched_frames: u64,
    pub not_returned: u64,
    pub expected: u64,
    pub lost: i64,
    pub loss_pct: f64,
    pub intact_pct: Option<f64>,
    pub mos: MosSummary,
    pub mos_model: String,
    pub harness: HarnessStats,
    pub passed: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub summary: Summary,
    pub calls: Vec<CallRecord>,
}

impl Report {
    pub fn build(
        run: RunInfo,
        calls: Vec<CallRecord>,
        rtt: &Histogram,
        harness: HarnessStats,
    ) -> Report {
        let attempted = calls.len() as u64;
        let completed = calls.iter().filter(|c| c.completed).count() as u64;
        let mut outcomes = BTreeMap::new();
        let mut failures = BTreeMap::new();
        for c in &calls {
            *outcomes.entry(c.outcome.clone()).or_insert(0) += 1;
            if let Some(f) = &c.failure {
                *failures.entry(f.clone()).or_insert(0) += 1;
            }
        }
        let sum = |f: fn(&CallRecord) -> u64| calls.iter().map(f).sum::<u64>();
        let expected = sum(|c| c.expected);
        let lost: i64 = calls.iter().map(|c| c.lost).sum();
        let echoed = sum(|c| c.echoed_frames);
        let unmatched = sum(|c| c.unmatched_frames);
        let loss_pct = if expected > 0 {
            lost.max(0) as f64 * 100.0 / expected as f64
        } else {
            0.0
        };
        let mos_values: Vec<f64> = calls.iter().filter_map(|c| c.mos).collect();
        let mos = MosSummary {
            mean: (!mos_values.is_empty())
                .then(|| mos_values.iter().sum::<f64>() / mos_values.len() as f64),
            min: mos_values.iter().copied().reduce(f64::min),
        };
        let passed = !run.interrupted
            && attempted == u64::from(run.calls_planned)
            && completed == attempted
            && loss_pct < run.max_loss_pct;
        let summary = Summary {
            attempted,
            completed,
            failed: attempted - completed,
            outcomes,
            failures,
            setup_ms: Percentiles::of(calls.iter().filter_map(|c| c.setup_ms)),
            first_rtp_ms: Percentiles::of(calls.iter().filter_map(|c| c.first_rtp_ms)),
            rtt_ms: rtt.percentiles(),
            jitter_ms: Percentiles::of(calls.iter().filter_map(|c| c.jitter_ms)),
            rtp_sent: sum(|c| c.rtp_sent),
            rtp_received: sum(|c| c.rtp_received),
            silence_frames: sum(|c| c.silence_frames),
            echoed_frames: echoed,
            unmatched_frames: unmatched,
            not_returned: sum(|c| c.not_returned),
            expected,
            lost,
            loss_pct,
            intact_pct: intact_pct(echoed, unmatched),
            mos,
            mos_model: format!(
                "ITU-T G.107 E-model, defaults, G.711 Ie=0 Bpl={G711_BPL} (G.113 App. I, random \
                 loss); one-way delay = RTT/2 + {ASSUMED_EXTRA_ONE_WAY_MS} ms assumed for the \
                 far ends' packetisation and playout buffer"
            ),
            harness,
            passed,
            run,
        };
        Report { summary, calls }
    }

    pub fn passed(&self) -> bool {
        self.summary.passed
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human summary printed at the end of a run.
    pub fn table(&self) -> String {
        let s = &self.summary;
        let r = &s.run;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "sipbridge load: {} calls to {} ({}, {} cps, {} s each), {:.1} s{}",
            r.calls_planned,
            r.target,
            r.codec,
            r.rate_cps,
            r.duration_s,
            r.elapsed_s,
            if r.interrupted { ", INTERRUPTED" } else { "" }
        );
        let _ = writeln!(
            t,
            "  calls       attempted {}   completed {}   failed {}",
            s.attempted, s.completed, s.failed
        );
        let _ = writeln!(t, "  outcomes    {}", counts(&s.outcomes));
        if !s.failures.is_empty() {
            let _ = writeln!(t, "  failures    {}", counts(&s.failures));
        }
        let _ = writeln!(
            t,
            "  {:<22}{:>9}{:>9}{:>9}{:>9}{:>9}",
            "(ms)", "p50", "p95", "p99", "max", "n"
        );
        for (name, p) in [
            ("setup (INVITE->200)", &s.setup_ms),
            ("first RTP back", &s.first_rtp_ms),
            ("audio round trip", &s.rtt_ms),
            ("jitter (per call)", &s.jitter_ms),
        ] {
            let _ = writeln!(
                t,
                "  {name:<22}{}{}{}{}{:>9}",
                cell(p.p50),
                cell(p.p95),
                cell(p.p99),
                cell(p.max),
                p.count
            );
        }
        let _ = writeln!(
            t,
            "  RTP         sent {}   received {}   comfort silence {}   lost {} of {} ({:.3} %)",
            s.rtp_sent, s.rtp_received, s.silence_frames, s.lost, s.expected, s.loss_pct
        );
        let _ = writeln!(
            t,
            "  audio       intact {} ({} echoed frames matched, {} did not; {} frames that \
             reached the gateway never came back intact)",
            s.intact_pct
                .map_or("n/a".to_string(), |p| format!("{p:.2} %")),
            s.echoed_frames,
            s.unmatched_frames,
            s.not_returned
        );
        let _ = writeln!(
            t,
            "  MOS         {} mean, {} worst  (G.107 E-model, G.711 Bpl {G711_BPL}; one way = \
             RTT/2 + {ASSUMED_EXTRA_ONE_WAY_MS} ms assumed)",
            opt(s.mos.mean, 2),
            opt(s.mos.min, 2),
        );
        let h = &s.harness;
        let _ = writeln!(
            t,
            "  harness     tick late max {:.1} ms, {} ticks skipped, send errors RTP {} SIP {}",
            h.max_tick_late_ms, h.ticks_skipped, h.rtp_send_errors, h.sip_send_errors
        );
        if let Some(l) = &h.impaired {
            let dir = |d: &ImpairStats| {
                format!(
                    "{} lost, {} reordered, {} duplicated of {}",
                    d.lost, d.reordered, d.duplicated, d.offered
                )
            };
            let _ = writeln!(
                t,
                "  impaired    SIP out {}; in {}",
                dir(&l.sip_out),
                dir(&l.sip_in)
            );
            let _ = writeln!(
                t,
                "              RTP out {}; in {}",
                dir(&l.rtp_out),
                dir(&l.rtp_in)
            );
        }
        if s.passed {
            let _ = writeln!(
                t,
                "  result      PASS (every call completed, loss under {} %)",
                r.max_loss_pct
            );
        } else {
            let _ = writeln!(t, "  result      FAIL: {}", self.why_failed().join("; "));
        }
        t
    }

    /// Why the run did not pass (empty when it did).
    pub fn why_failed(&self) -> Vec<String> {
        let s = &self.summary;
        let mut why = Vec::new();
        if s.run.interrupted {
            why.push("interrupted".to_string());
        }
        if s.attempted < u64::from(s.run.calls_planned) {
            why.push(format!(
                "{} of {} calls never placed",
                u64::from(s.run.calls_planned) - s.attempted,
                s.run.calls_planned
            ));
        }
        if s.failed > 0 {
            why.push(format!("{} of {} calls failed", s.failed, s.attempted));
        }
        if s.loss_pct >= s.run.max_loss_pct {
            why.push(format!(
                "loss {:.3} % not under {} %",
                s.loss_pct, s.run.max_loss_pct
            ));
        }
        why
    }
}

pub fn intact_pct(echoed: u64, unmatched: u64) -> Option<f64> {
    let total = echoed + unmatched;
    (total > 0).then(|| echoed as f64 * 100.0 / total as f64)
}

fn counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k} x{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn cell(v: Option<f64>) -> String {
    match v {
        Some(v) => format!("{v:>9.1}"),
        None => format!("{:>9}", "-"),
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.digits$}"))
}

#[cfg(test)]
mod tests;
