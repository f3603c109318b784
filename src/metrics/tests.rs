use super::*;

/// Checks `text` against the Prometheus text format 0.0.4: every line a HELP, a TYPE or a
/// sample; every sample's family typed before it; histogram buckets cumulative and ending in
/// +Inf equal to _count. Returns the samples as (name{labels}, value).
fn check_exposition(text: &str) -> Result<Vec<(String, f64)>, String> {
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = std::collections::BTreeSet::new();
    let mut samples = Vec::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    for (i, line) in text.lines().enumerate() {
        let err = |m: &str| Err(format!("line {}: {m}: {line:?}", i + 1));
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let Some((name, _)) = rest.split_once(' ') else {
                return err("HELP without text");
            };
            if !name_ok(name) || !helped.insert(name.to_string()) {
                return err("bad or repeated HELP");
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let Some((name, kind)) = rest.split_once(' ') else {
                return err("TYPE without kind");
            };
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return err("unknown type");
            }
            if !name_ok(name) || typed.insert(name.into(), kind.into()).is_some() {
                return err("bad or repeated TYPE");
            }
        } else if line.starts_with('#') || line.is_empty() {
            return err("unexpected comment or blank line");
        } else {
            let (series, value) = match line.rsplit_once(' ') {
                Some(p) => p,
                None => return err("sample without value"),
            };
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => match v.parse() {
                    Ok(v) => v,
                    Err(_) => return err("bad value"),
                },
            };
            let name = series.split('{').next().unwrap_or("");
            if !name_ok(name) {
                return err("bad metric name");
            }
            if let Some(labels) = series.strip_prefix(name) {
                if !labels.is_empty() {
                    let Some(inner) = labels.strip_prefix('{').and_then(|l| l.strip_suffix('}'))
                    else {
                        return err("bad label braces");
                    };
                    for pair in split_labels(inner) {
                        let Some((k, v)) = pair.split_once('=') else {
                            return err("label without =");
                        };
                        if !(name_ok(k) && v.len() >= 2 && v.starts_with('"') && v.ends_with('"')) {
                            return err("bad label");
                        }
                    }
                }
            }
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| typed.get(*f).is_some_and(|k| k == "histogram"))
                })
                .unwrap_or(name);
            if !typed.contains_key(family) || !helped.contains(family) {
                return err("sample before its TYPE/HELP");
            }
            samples.push((series.to_string(), value));
        }
    }
    // Histograms: cumulative buckets, +Inf == _count.
    for (family, kind) in &typed {
        if kind != "histogram" {
            continue;
        }
        let mut last = 0.0;
        let mut inf = None;
        for (s, v) in &samples {
            if s.starts_with(&format!("{family}_bucket")) {
                if s.contains("le=\"+Inf\"") {
                    inf = Some(*v);
                    last = 0.0;
                } else {
                    if *v < last {
                        return Err(format!("{family}: buckets not cumulative"));
                    }
                    last = *v;
                }
            }
        }
        let count = samples
            .iter()
            .find(|(s, _)| s.starts_with(&format!("{family}_count")))
            .map(|(_, v)| *v);
        if inf.is_some() && inf != count {
            return Err(format!("{family}: +Inf bucket != _count"));
        }
    }
    Ok(samples)
}

/// Splits `a="x",b="y,z"` on the commas between labels (not those inside quoted values).
fn split_labels(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

fn value(samples: &[(String, f64)], series: &str) -> Option<f64> {
    samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v)
}

#[test]
fn a_fresh_registry_renders_valid_text_with_every_family() {
    let m = Metrics::new();
    let text = m.render();
    let samples = check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(value(&samples, "sipbridge_active_calls"), Some(0.0));
    assert_eq!(
        value(&samples, "sipbridge_calls_total{outcome=\"caller_hangup\"}"),
        Some(0.0)
    );
    assert_eq!(
        value(
            &samples,
            "sipbridge_auth_failures_total{reason=\"wrong_credentials\"}"
        ),
        Some(0.0)
    );
    for family in [
        "sipbridge_invite_responses_total",
        "sipbridge_agent_errors_total",
        "sipbridge_rtp_packets_total",
        "sipbridge_rtp_bytes_total",
        "sipbridge_rtp_lost_packets_total",
        "sipbridge_call_setup_seconds",
        "sipbridge_agent_connect_seconds",
        "sipbridge_rtp_jitter_seconds",
    ] {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
    }
}

#[test]
fn counters_and_histograms_move_and_stay_valid() {
    let m = Metrics::new();
    m.set_active_calls(3);
    m.set_calls_in_setup(2);
    m.call_ended("agent_hangup");
    m.call_ended("agent_hangup");
    m.invite_response(200);
    m.invite_response(407);
    m.invite_response(407);
    m.auth_failure(AuthFailure::StaleNonce);
    m.agent_error("hume", "connect_timeout");
    m.rtp(RtpDelta {
        packets_sent: 50,
        packets_received: 49,
        bytes_sent: 50 * 172,
        bytes_received: 49 * 172,
        lost: 1,
        late: 2,
    });
    m.setup_time(Duration::from_millis(30));
    m.setup_time(Duration::from_secs(100));
    m.agent_connect_time("echo", Duration::from_millis(1));
    m.agent_connect_time("live\"kit", Duration::from_secs(2));
    m.call_jitter_ms(3.5);
    m.sip_malformed();
    m.config_reload(false);
    let text = m.render();
    let s = check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(value(&s, "sipbridge_active_calls"), Some(3.0));
    assert_eq!(value(&s, "sipbridge_calls_in_setup"), Some(2.0));
    assert_eq!(value(&s, "sipbridge_call_tasks"), Some(0.0));
    assert_eq!(value(&s, "sipbridge_rtp_late_packets_total"), Some(2.0));
    assert_eq!(
        value(&s, "sipbridge_calls_total{outcome=\"agent_hangup\"}"),
        Some(2.0)
    );
    assert_eq!(
        value(&s, "sipbridge_invite_responses_total{code=\"407\"}"),
        Some(2.0)
    );
    assert_eq!(
        value(&s, "sipbridge_auth_failures_total{reason=\"stale_nonce\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "sipbridge_agent_errors_total{kind=\"hume\",error=\"connect_timeout\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "sipbridge_rtp_packets_total{direction=\"sent\"}"),
        Some(50.0)
    );
    assert_eq!(
        value(&s, "sipbridge_rtp_bytes_total{direction=\"received\"}"),
        Some(49.0 * 172.0)
    );
    assert_eq!(value(&s, "sipbridge_rtp_lost_packets_total"), Some(1.0));
    assert_eq!(
        value(&s, "sipbridge_call_setup_seconds_bucket{le=\"0.05\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "sipbridge_call_setup_seconds_bucket{le=\"30\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "sipbridge_call_setup_seconds_bucket{le=\"+Inf\"}"),
        Some(2.0)
    );
    assert_eq!(value(&s, "sipbridge_call_setup_seconds_count"), Some(2.0));
    assert_eq!(
        value(
            &s,
            "sipbridge_agent_connect_seconds_count{kind=\"live\\\"kit\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "sipbridge_rtp_jitter_seconds_bucket{le=\"0.005\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "sipbridge_config_reloads_total{result=\"failed\"}"),
        Some(1.0)
    );
}

#[test]
fn the_checker_refuses_what_prometheus_would() {
    assert!(check_exposition("foo 1\n").is_err(), "no TYPE");
    assert!(check_exposition("# HELP a x\n# TYPE a gauge\na{b=c} 1\n").is_err());
    assert!(check_exposition("# HELP a x\n# TYPE a gauge\na one\n").is_err());
    assert!(check_exposition(
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"2\"} 1\n\
         h_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n"
    )
    .is_err());
    assert!(check_exposition("# HELP a x\n# TYPE a gauge\na{b=\"c,d\"} 1\n").is_ok());
}
