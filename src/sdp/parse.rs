//! The SDP text parser.

use std::net::IpAddr;

use super::{
    Connection, Crypto, Direction, MediaSection, Origin, RtcpAttr, RtpMap, SdpError,
    SessionDescription,
};

/// An SDP body larger than this is refused before parsing: a SIP INVITE over UDP is bounded by
/// the datagram size, and nothing legitimate over TCP comes near it.
const MAX_SDP_LEN: usize = 64 * 1024;

fn err(line: usize, reason: impl Into<String>) -> SdpError {
    SdpError::Malformed {
        line,
        reason: reason.into(),
    }
}

pub(super) fn parse(text: &str) -> Result<SessionDescription, SdpError> {
    if text.len() > MAX_SDP_LEN {
        return Err(err(0, "SDP longer than 64 KiB"));
    }
    let mut sd = SessionDescription {
        origin: None,
        session_name: String::new(),
        connection: None,
        direction: None,
        media: Vec::new(),
    };
    let mut seen_version = false;
    for (idx, raw) in text.split('\n').enumerate() {
        let n = idx + 1;
        let line = raw.trim_end();
        if line.is_empty() {
            continue;
        }
        // A bare CR or other control character inside a line would be echoed into our answer
        // (fmtp, formats) and could split it; no valid SDP contains one.
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(err(n, "control character in line"));
        }
        let b = line.as_bytes();
        if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
            return Err(err(n, "expected <type>=<value>"));
        }
        let kind = b[0];
        // Bytes 0 and 1 are ASCII, so 2 is a char boundary.
        let value = &line[2..];
        if !seen_version {
            if kind != b'v' || value.trim() != "0" {
                return Err(err(n, "SDP must start with v=0"));
            }
            seen_version = true;
            continue;
        }
        match kind {
            b'v' => return Err(err(n, "repeated v= line")),
            b'o' => sd.origin = Some(origin(value, n)?),
            b's' if sd.media.is_empty() => sd.session_name = value.to_owned(),
            b'c' => {
                let c = connection(value, n)?;
                match sd.media.last_mut() {
                    Some(m) => m.connection = Some(c),
                    None => sd.connection = Some(c),
                }
            }
            b'm' => sd.media.push(media(value, n)?),
            b'a' => {
                let (name, val) = match value.split_once(':') {
                    Some((k, v)) => (k, Some(v)),
                    None => (value, None),
                };
                match sd.media.last_mut() {
                    Some(m) => media_attribute(m, name, val, n)?,
                    None => {
                        if let Some(d) = Direction::from_attr(name) {
                            sd.direction = Some(d);
                        }
                    }
                }
            }
            // t, b, k, i, u, e, p, z, r and anything newer carry nothing the gateway uses.
            _ => {}
        }
    }
    if !seen_version {
        return Err(err(0, "empty SDP"));
    }
    Ok(sd)
}

fn origin(value: &str, n: usize) -> Result<Origin, SdpError> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    let [username, session_id, session_version, _net, _addr_type, address] = f.as_slice() else {
        return Err(err(n, "o= needs 6 fields"));
    };
    Ok(Origin {
        username: (*username).to_owned(),
        session_id: (*session_id).to_owned(),
        session_version: (*session_version).to_owned(),
        address: (*address).to_owned(),
    })
}

/// `IN IP4 <addr>[/ttl[/count]]` or `IN IP6 <addr>[/count]`.
fn connection(value: &str, n: usize) -> Result<Connection, SdpError> {
    let mut f = value.split_ascii_whitespace();
    let (Some(net), Some(addr_type), Some(addr), None) = (f.next(), f.next(), f.next(), f.next())
    else {
        return Err(err(n, "c= needs 3 fields"));
    };
    connection_fields(net, addr_type, addr, n)
}

fn connection_fields(
    net: &str,
    addr_type: &str,
    addr: &str,
    n: usize,
) -> Result<Connection, SdpError> {
    if net != "IN" {
        return Err(err(n, format!("network type {net:?} is not IN")));
    }
    let address = addr.split('/').next().unwrap_or(addr);
    let ip = address.parse::<IpAddr>().ok();
    match (addr_type, ip) {
        ("IP4", Some(IpAddr::V6(_))) | ("IP6", Some(IpAddr::V4(_))) => {
            return Err(err(n, format!("{address} is not an {addr_type} address")))
        }
        ("IP4" | "IP6", _) => {}
        _ => {
            return Err(err(
                n,
                format!("address type {addr_type:?} is not IP4 or IP6"),
            ))
        }
    }
    if address.is_empty() {
        return Err(err(n, "empty address"));
    }
    Ok(Connection {
        address: address.to_owned(),
        ip,
    })
}

/// `<media> <port>[/<count>] <proto> <fmt> ...`
fn media(value: &str, n: usize) -> Result<MediaSection, SdpError> {
    let mut f = value.split_ascii_whitespace();
    let (Some(media), Some(port_text), Some(proto)) = (f.next(), f.next(), f.next()) else {
        return Err(err(n, "m= needs media, port, proto and formats"));
    };
    let formats: Vec<String> = f.map(str::to_owned).collect();
    if formats.is_empty() {
        return Err(err(n, "m= has no formats"));
    }
    let (port, port_count) = match port_text.split_once('/') {
        Some((p, c)) => (number(p, n, "port")?, Some(number(c, n, "port count")?)),
        None => (number(port_text, n, "port")?, None),
    };
    Ok(MediaSection {
        media: media.to_owned(),
        port,
        port_count,
        proto: proto.to_owned(),
        formats,
        connection: None,
        rtpmaps: Vec::new(),
        fmtps: Vec::new(),
        ptime: None,
        maxptime: None,
        direction: None,
        rtcp: None,
        crypto: Vec::new(),
        line: n,
    })
}

fn media_attribute(
    m: &mut MediaSection,
    name: &str,
    val: Option<&str>,
    n: usize,
) -> Result<(), SdpError> {
    if let Some(d) = Direction::from_attr(name) {
        m.direction = Some(d);
        return Ok(());
    }
    let need = || val.ok_or_else(|| err(n, format!("a={name} needs a value")));
    match name {
        "rtpmap" => {
            let map = rtpmap(need()?, n)?;
            if m.rtpmap(map.payload_type).is_none() {
                m.rtpmaps.push(map);
            }
        }
        "fmtp" => {
            let v = need()?;
            let (fmt, params) = v.split_once([' ', '\t']).unwrap_or((v, ""));
            if fmt.is_empty() {
                return Err(err(n, "a=fmtp has no format"));
            }
            m.fmtps.push((fmt.to_owned(), params.trim().to_owned()));
        }
        "ptime" => m.ptime = Some(millis(need()?, n)?),
        "maxptime" => m.maxptime = Some(millis(need()?, n)?),
        "rtcp" => {
            let v = need()?;
            let mut f = v.split_ascii_whitespace();
            let port = number(f.next().unwrap_or(""), n, "rtcp port")?;
            let connection = match (f.next(), f.next(), f.next(), f.next()) {
                (None, ..) => None,
                (Some(net), Some(t), Some(a), None) => Some(connection_fields(net, t, a, n)?),
                _ => return Err(err(n, "a=rtcp needs a port and optionally a full address")),
            };
            m.rtcp = Some(RtcpAttr { port, connection });
        }
        "crypto" => m.crypto.extend(crypto(need()?)),
        _ => {}
    }
    Ok(())
}

/// `<tag> <suite> <key-params> [<session-params>...]`, or `None` when it does not have that
/// shape (a tag of 1-9 digits, RFC 4568 §9.1).
fn crypto(v: &str) -> Option<Crypto> {
    let mut f = v.split_ascii_whitespace();
    let tag = f.next()?;
    if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let suite = f.next()?.to_owned();
    let key_params = f.next()?.to_owned();
    let session_params = f.collect::<Vec<_>>().join(" ");
    Some(Crypto {
        tag: tag.parse().ok()?,
        suite,
        key_params,
        session_params,
    })
}

/// `<pt> <encoding>/<clock rate>[/<channels>]`
fn rtpmap(v: &str, n: usize) -> Result<RtpMap, SdpError> {
    let (pt_text, rest) = v
        .trim()
        .split_once([' ', '\t'])
        .ok_or_else(|| err(n, "a=rtpmap needs a payload type and an encoding"))?;
    let payload_type: u8 = number(pt_text, n, "payload type")?;
    if payload_type > 127 {
        return Err(err(n, "payload type above 127"));
    }
    let mut parts = rest.trim().split('/');
    let encoding = parts.next().unwrap_or("");
    if encoding.is_empty() {
        return Err(err(n, "a=rtpmap has no encoding name"));
    }
    let clock_rate = number(parts.next().unwrap_or(""), n, "clock rate")?;
    let channels = parts
        .next()
        .map(|c| number(c, n, "channel count"))
        .transpose()?;
    if parts.next().is_some() {
        return Err(err(n, "a=rtpmap has too many '/' fields"));
    }
    Ok(RtpMap {
        payload_type,
        encoding: encoding.to_owned(),
        clock_rate,
        channels,
    })
}

/// A decimal number of a known meaning; digits only (no sign, no spaces).
fn number<T: std::str::FromStr>(s: &str, n: usize, what: &str) -> Result<T, SdpError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(n, format!("{what} {s:?} is not a number")));
    }
    s.parse()
        .map_err(|_| err(n, format!("{what} {s:?} is out of range")))
}

/// `ptime`/`maxptime`: whole milliseconds; a fractional part (`20.0`, seen from some UAs) is
/// rounded down.
fn millis(v: &str, n: usize) -> Result<u32, SdpError> {
    let v = v.trim();
    let whole = match v.split_once('.') {
        Some((w, frac)) if frac.bytes().all(|b| b.is_ascii_digit()) => w,
        _ => v,
    };
    number(whole, n, "packet time")
}
