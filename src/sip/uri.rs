//! SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966), parsed into owned parts.
//!
//! Components are kept exactly as sent, escapes included (`%40` stays `%40`), because RFC 3261
//! compares most of them after unescaping but forwards them as received; callers that compare
//! user parts use [`unescape_user`]. An IPv6 host is stored without its brackets (so `host`
//! can go straight into a socket address) and [`Uri`]'s `Display` puts them back.

use std::fmt;
use std::str::FromStr;

use crate::sip::message::names::{all_in, URI_CHAR};
use crate::sip::message::ParseError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
}

impl Scheme {
    pub fn as_str(&self) -> &'static str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
        }
    }
}

/// A parsed URI. For `tel:` URIs the telephone number is in `user` and `host` is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    pub scheme: Scheme,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Without brackets for IPv6 (`::1`, not `[::1]`).
    pub host: String,
    pub port: Option<u16>,
    /// URI parameters in order; names and values as sent.
    pub params: Vec<(String, Option<String>)>,
    /// URI headers (`?name=value&...`) in order, as sent.
    pub headers: Vec<(String, String)>,
}

impl Uri {
    pub fn parse(s: &str) -> Result<Uri, ParseError> {
        let parts = scan_uri(s)?;
        let params = split_uri_params(parts.params)
            .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
            .collect();
        let headers = if parts.headers.is_empty() {
            Vec::new()
        } else {
            parts
                .headers
                .split('&')
                .map(|h| match h.split_once('=') {
                    Some((n, v)) => (n.to_string(), v.to_string()),
                    None => (h.to_string(), String::new()),
                })
                .collect()
        };
        Ok(Uri {
            scheme: parts.scheme,
            user: parts.user.map(str::to_string),
            password: parts.password.map(str::to_string),
            host: parts.host.to_string(),
            port: parts.port,
            params,
            headers,
        })
    }

    /// `Some(None)` for a parameter without a value (`;lr`), `Some(Some(v))` with one, `None`
    /// when absent. Names compare case-insensitively.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// Loose routing (RFC 3261 §16.12.1.1): the `lr` parameter.
    pub fn has_lr(&self) -> bool {
        self.param("lr").is_some()
    }

    /// `sip:host:port`, nothing else.
    pub fn host(host: impl Into<String>, port: u16) -> Uri {
        Uri {
            scheme: Scheme::Sip,
            user: None,
            password: None,
            host: host.into(),
            port: Some(port),
            params: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Where to send, when the host is an IP address (a name needs DNS, which callers do or
    /// refuse themselves).
    pub fn socket_addr(&self) -> Option<std::net::SocketAddr> {
        let (host, port) = self.host_port();
        let ip = host.parse::<std::net::IpAddr>().ok()?;
        Some(std::net::SocketAddr::new(ip, port))
    }

    /// Host and port to send to. Without an explicit port: 5061 for `sips:` or
    /// `;transport=tls`, 5060 otherwise (RFC 3263 §4.2 defaults, no DNS SRV here).
    pub fn host_port(&self) -> (String, u16) {
        let tls = self.scheme == Scheme::Sips
            || matches!(self.param("transport"), Some(Some(t)) if t.eq_ignore_ascii_case("tls"));
        let default = if tls { 5061 } else { 5060 };
        (self.host.clone(), self.port.unwrap_or(default))
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme.as_str())?;
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(pw) = &self.password {
                write!(f, ":{pw}")?;
            }
            if self.scheme != Scheme::Tel {
                f.write_str("@")?;
            }
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for (name, value) in &self.params {
            write!(f, ";{name}")?;
            if let Some(v) = value {
                write!(f, "={v}")?;
            }
        }
        for (i, (name, value)) in self.headers.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            write!(f, "{sep}{name}={value}")?;
        }
        Ok(())
    }
}

impl FromStr for Uri {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Uri, ParseError> {
        Uri::parse(s)
    }
}

/// Decodes `%XX` escapes in a user part (RFC 3261 §19.1.4 compares user parts unescaped).
/// A `%` not followed by two hex digits is kept literally; decoded bytes that are not UTF-8
/// become U+FFFD.
pub fn unescape_user(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = match (b[i], b.get(i + 1), b.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex_val(h).zip(hex_val(l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// A URI split into borrowed parts: what the message codec validates at parse time without
/// allocating, and what [`Uri::parse`] copies out.
pub(crate) struct UriParts<'a> {
    pub scheme: Scheme,
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    pub host: &'a str,
    pub port: Option<u16>,
    /// Everything after the first `;` up to `?`, without the leading `;`.
    pub params: &'a str,
    /// Everything after `?`.
    pub headers: &'a str,
}

pub(crate) fn scan_uri(s: &str) -> Result<UriParts<'_>, ParseError> {
    let bad = |why| Err(ParseError::BadUri(why));
    if !all_in(&URI_CHAR, s.as_bytes()) {
        return bad("whitespace, control character or <>\" in URI");
    }
    let Some((scheme, rest)) = s.split_once(':') else {
        return bad("no scheme");
    };
    let scheme = if scheme.eq_ignore_ascii_case("sip") {
        Scheme::Sip
    } else if scheme.eq_ignore_ascii_case("sips") {
        Scheme::Sips
    } else if scheme.eq_ignore_ascii_case("tel") {
        Scheme::Tel
    } else {
        return bad("unsupported URI scheme");
    };

    if scheme == Scheme::Tel {
        let (number, params) = rest.split_once(';').unwrap_or((rest, ""));
        if number.is_empty() {
            return bad("empty telephone number");
        }
        check_uri_params(params)?;
        return Ok(UriParts {
            scheme,
            user: Some(number),
            password: None,
            host: "",
            port: None,
            params,
            headers: "",
        });
    }

    // '@' cannot appear unescaped anywhere else in a SIP URI (RFC 3261 §25.1), so the first
    // one ends the userinfo even when the user part holds ';' or '?'.
    let (userinfo, hostpart) = match rest.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (user, password) = match userinfo {
        Some(u) => {
            let (user, pw) = match u.split_once(':') {
                Some((user, pw)) => (user, Some(pw)),
                None => (u, None),
            };
            if user.is_empty() {
                return bad("empty user part");
            }
            (Some(user), pw)
        }
        None => (None, None),
    };

    let (host, after) = if let Some(v6) = hostpart.strip_prefix('[') {
        let Some(end) = v6.find(']') else {
            return bad("unterminated IPv6 reference");
        };
        let host = &v6[..end];
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return bad("bad IPv6 reference");
        }
        (host, &v6[end + 1..])
    } else {
        let end = hostpart.find([':', ';', '?']).unwrap_or(hostpart.len());
        let host = &hostpart[..end];
        if host.is_empty() {
            return bad("empty host");
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return bad("bad character in host");
        }
        (host, &hostpart[end..])
    };

    let (port, after) = match after.strip_prefix(':') {
        Some(p) => {
            let end = p.find([';', '?']).unwrap_or(p.len());
            (Some(parse_port(&p[..end])?), &p[end..])
        }
        None => (None, after),
    };
    let (params, headers) = match after.split_once('?') {
        Some((p, h)) => (p, h),
        None => (after, ""),
    };
    let params = match params.strip_prefix(';') {
        Some(p) => p,
        None if params.is_empty() => "",
        None => return bad("unexpected text after host"),
    };
    check_uri_params(params)?;
    Ok(UriParts {
        scheme,
        user,
        password,
        host,
        port,
        params,
        headers,
    })
}

pub(crate) fn parse_port(s: &str) -> Result<u16, ParseError> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadUri("bad port"));
    }
    s.parse()
        .map_err(|_| ParseError::BadUri("port out of range"))
}

fn check_uri_params(params: &str) -> Result<(), ParseError> {
    if params.is_empty() {
        return Ok(());
    }
    if params
        .split(';')
        .any(|p| p.split('=').next().unwrap_or("").is_empty())
    {
        return Err(ParseError::BadUri("empty URI parameter"));
    }
    Ok(())
}

/// Splits raw URI parameters (`lr;transport=tls`) into names and optional values.
pub(crate) fn split_uri_params(params: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    params
        .split(';')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (p, None),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_sip_uri() {
        let u = Uri::parse("sips:alice:secret@Example.COM:5071;transport=tls;lr?subject=hi&x=1")
            .unwrap();
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("secret"));
        assert_eq!(u.host, "Example.COM");
        assert_eq!(u.port, Some(5071));
        assert_eq!(u.param("TRANSPORT"), Some(Some("tls")));
        assert!(u.has_lr());
        assert_eq!(u.param("maddr"), None);
        assert_eq!(
            u.headers,
            vec![("subject".into(), "hi".into()), ("x".into(), "1".into())]
        );
        assert_eq!(
            u.to_string(),
            "sips:alice:secret@Example.COM:5071;transport=tls;lr?subject=hi&x=1"
        );
    }

    #[test]
    fn host_port_defaults() {
        assert_eq!(
            Uri::parse("sip:54.171.127.193;lr").unwrap().host_port(),
            ("54.171.127.193".to_string(), 5060)
        );
        assert_eq!(
            Uri::parse("sip:h;transport=TLS").unwrap().host_port().1,
            5061
        );
        assert_eq!(Uri::parse("sips:h").unwrap().host_port().1, 5061);
        assert_eq!(Uri::parse("sip:h:5080").unwrap().host_port().1, 5080);
    }

    #[test]
    fn ipv6_host_is_stored_without_brackets() {
        let u = Uri::parse("sip:bob@[2001:db8::10]:5070;transport=udp").unwrap();
        assert_eq!(u.host, "2001:db8::10");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.to_string(), "sip:bob@[2001:db8::10]:5070;transport=udp");
        assert_eq!(u.host_port(), ("2001:db8::10".to_string(), 5070));
    }

    #[test]
    fn user_part_may_hold_semicolons_and_escapes() {
        let u = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(u.host, "example.com");
        assert!(u.params.is_empty());
        assert_eq!(
            unescape_user(u.user.as_deref().unwrap()),
            "user;par=u@example.net"
        );
    }

    #[test]
    fn tel_uri() {
        let u = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.user.as_deref(), Some("+1-201-555-0123"));
        assert_eq!(u.host, "");
        assert_eq!(
            u.to_string(),
            "tel:+1-201-555-0123;phone-context=example.com"
        );
    }

    #[test]
    fn unescape_keeps_malformed_escapes_and_nuls() {
        assert_eq!(unescape_user("%2B44%20"), "+44 ");
        assert_eq!(unescape_user("100%"), "100%");
        assert_eq!(unescape_user("a%zz"), "a%zz");
        assert_eq!(unescape_user("null-%00-null"), "null-\0-null");
    }

    #[test]
    fn rejects_malformed_uris() {
        for bad in [
            "",
            "sip:",
            "sip:@host",
            "sip:user@",
            "http://example.com",
            "sip:host:99999",
            "sip:host:",
            "sip:[::1",
            "sip:ho st",
            "sip:host;;lr",
            "sip:host;=x",
            "<sip:host>",
            "sip:host junk",
            "tel:",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn from_str_matches_parse() {
        let u: Uri = "sip:+442071230000@sbc.example.net;transport=tls"
            .parse()
            .unwrap();
        assert_eq!(u.user.as_deref(), Some("+442071230000"));
        assert_eq!(u.param("transport"), Some(Some("tls")));
    }
}
