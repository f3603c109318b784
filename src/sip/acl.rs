//! Source-address allowlists for trunks: CIDR blocks, bare addresses and the `twilio` preset.
//!
//! Twilio's Elastic SIP Trunking never answers a digest challenge, so for those trunks the
//! source address is the only credential; `reference/twilio.md` §0.1 and §3.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Twilio's public SIP signalling ranges, one /30 per edge (reference/twilio.md §3: Twilio asks
/// to allow all of them, since it fails over between edges). Media (168.86.128.0/18) is not
/// here: this list gates SIP, not RTP.
pub const TWILIO_SIGNALLING: &[&str] = &[
    "54.172.60.0/30",    // ashburn (us1)
    "54.244.51.0/30",    // umatilla (us2)
    "54.171.127.192/30", // dublin (ie1)
    "35.156.191.128/30", // frankfurt (de1)
    "54.65.63.192/30",   // tokyo (jp1)
    "54.169.127.128/30", // singapore (sg1)
    "54.252.254.64/30",  // sydney (au1)
    "177.71.206.192/30", // sao-paulo (br1)
];

/// The name that expands to [`TWILIO_SIGNALLING`] in an address list.
pub const TWILIO_PRESET: &str = "twilio";

/// An IPv4 or IPv6 network. Host bits below the prefix are cleared when parsing, so
/// `54.171.127.193/30` means the /30 that contains that address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    net: Net,
    prefix: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Net {
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

/// Why a CIDR or an address-list entry was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    /// The text is not an address or `address/prefix`.
    #[error("{text:?} is not an IP address or CIDR: {reason}")]
    BadCidr {
        /// The offending text.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An entry of an address list is bad; `index` counts from 0.
    #[error("allowed address entry {index} ({entry:?}): {source}")]
    BadEntry {
        /// Position in the list.
        index: usize,
        /// The entry as written.
        entry: String,
        /// The underlying problem.
        #[source]
        source: Box<AclError>,
    },
}

fn mask4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl Cidr {
    /// The network `addr/prefix`, host bits cleared; `None` if the prefix is too long.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let net = match addr {
            IpAddr::V4(a) if prefix <= 32 => {
                let mask = mask4(prefix);
                Net::V4 {
                    net: u32::from(a) & mask,
                    mask,
                }
            }
            IpAddr::V6(a) if prefix <= 128 => {
                let mask = mask6(prefix);
                Net::V6 {
                    net: u128::from(a) & mask,
                    mask,
                }
            }
            _ => return None,
        };
        Some(Cidr { net, prefix })
    }

    /// Whether `ip` is in this network. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a
    /// dual-stack socket reports for IPv4 peers) matches as its IPv4 address, and an IPv4
    /// address matches an IPv6 network as its mapped form.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (Net::V4 { net, mask }, IpAddr::V4(a)) => u32::from(a) & mask == net,
            (Net::V4 { net, mask }, IpAddr::V6(a)) => a
                .to_ipv4_mapped()
                .is_some_and(|v4| u32::from(v4) & mask == net),
            (Net::V6 { net, mask }, IpAddr::V6(a)) => u128::from(a) & mask == net,
            (Net::V6 { net, mask }, IpAddr::V4(a)) => u128::from(a.to_ipv6_mapped()) & mask == net,
        }
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        match self.net {
            Net::V4 { net, .. } => IpAddr::V4(Ipv4Addr::from(net)),
            Net::V6 { net, .. } => IpAddr::V6(Ipv6Addr::from(net)),
        }
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl FromStr for Cidr {
    type Err = AclError;

    /// `a.b.c.d/n`, `v6::addr/n`, or a bare address (`/32` or `/128`). Surrounding whitespace
    /// is ignored; zone ids (`%eth0`) are refused since they do not name a network.
    fn from_str(s: &str) -> Result<Cidr, AclError> {
        let bad = |reason| AclError::BadCidr {
            text: s.to_owned(),
            reason,
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(bad("empty"));
        }
        let (addr_text, prefix_text) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let addr_text = addr_text
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr_text);
        let addr: IpAddr = addr_text.parse().map_err(|_| bad("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 3 {
                    return Err(bad("the prefix length is not a number"));
                }
                let n: u8 = p
                    .parse()
                    .map_err(|_| bad("the prefix length is not a number"))?;
                if n > max {
                    return Err(bad(if max == 32 {
                        "the prefix length of an IPv4 network is at most 32"
                    } else {
                        "the prefix length of an IPv6 network is at most 128"
                    }));
                }
                n
            }
        };
        Cidr::new(addr, prefix).ok_or_else(|| bad("the prefix length is too long"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.prefix)
    }
}

/// The addresses a trunk accepts requests from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressList {
    cidrs: Vec<Cidr>,
}

impl AddressList {
    /// Entries are CIDRs, bare addresses, or the preset `twilio` (any case). An empty list
    /// allows any address. The error names the first bad entry.
    pub fn parse(entries: &[String]) -> Result<AddressList, AclError> {
        let mut cidrs = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            if entry.trim().eq_ignore_ascii_case(TWILIO_PRESET) {
                for range in TWILIO_SIGNALLING {
                    // The preset is a constant list of valid CIDRs (checked by a test).
                    if let Ok(c) = range.parse() {
                        cidrs.push(c);
                    }
                }
                continue;
            }
            let c = entry.parse().map_err(|e| AclError::BadEntry {
                index,
                entry: entry.clone(),
                source: Box::new(e),
            })?;
            cidrs.push(c);
        }
        cidrs.dedup();
        Ok(AddressList { cidrs })
    }

    /// A list that allows any address.
    pub fn any() -> AddressList {
        AddressList::default()
    }

    /// Whether requests from `ip` are allowed.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.is_any() || self.cidrs.iter().any(|c| c.contains(ip))
    }

    /// True when the list is empty and so allows everything.
    pub fn is_any(&self) -> bool {
        self.cidrs.is_empty()
    }

    /// The networks in the list, presets expanded.
    pub fn cidrs(&self) -> &[Cidr] {
        &self.cidrs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn list(entries: &[&str]) -> Result<AddressList, AclError> {
        AddressList::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn v4_prefix_boundaries() {
        let c = cidr("10.1.2.0/24");
        assert!(c.contains(ip("10.1.2.0")));
        assert!(c.contains(ip("10.1.2.255")));
        assert!(!c.contains(ip("10.1.3.0")));
        assert!(!c.contains(ip("10.1.1.255")));
        let c = cidr("192.168.0.0/23");
        assert!(c.contains(ip("192.168.1.7")));
        assert!(!c.contains(ip("192.168.2.0")));
        let c = cidr("54.171.127.192/30");
        assert!(c.contains(ip("54.171.127.195")));
        assert!(!c.contains(ip("54.171.127.196")));
        assert!(!c.contains(ip("54.171.127.191")));
    }

    #[test]
    fn zero_and_full_prefixes() {
        let all = cidr("0.0.0.0/0");
        assert!(all.contains(ip("255.255.255.255")) && all.contains(ip("1.2.3.4")));
        assert!(
            !all.contains(ip("2001:db8::1")),
            "an IPv4 network never holds a native IPv6 address"
        );
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        let host = cidr("203.0.113.10/32");
        assert!(host.contains(ip("203.0.113.10")) && !host.contains(ip("203.0.113.11")));
        assert_eq!(cidr("203.0.113.10"), host, "a bare address is a /32");
        let host6 = cidr("2001:db8::1");
        assert_eq!(host6.prefix(), 128);
        assert!(host6.contains(ip("2001:db8::1")) && !host6.contains(ip("2001:db8::2")));
    }

    #[test]
    fn v6_networks() {
        let c = cidr("2001:db8:abcd::/48");
        assert!(c.contains(ip("2001:db8:abcd:ffff::1")));
        assert!(!c.contains(ip("2001:db8:abce::1")));
        assert!(!c.contains(ip("10.0.0.1")));
        let c = cidr("2001:db8::/33");
        assert!(c.contains(ip("2001:db8:7fff::1")));
        assert!(!c.contains(ip("2001:db8:8000::1")));
        assert_eq!(cidr("[2001:db8::1]/64").to_string(), "2001:db8::/64");
    }

    #[test]
    fn ipv4_mapped_addresses() {
        let c = cidr("54.171.127.192/30");
        assert!(c.contains(ip("::ffff:54.171.127.193")));
        assert!(!c.contains(ip("::ffff:54.171.127.196")));
        // An IPv4-compatible (deprecated) address is not a mapped one.
        assert!(!c.contains(ip("::54.171.127.193")));
        let mapped_net = cidr("::ffff:10.0.0.0/104");
        assert!(mapped_net.contains(ip("10.200.0.1")));
        assert!(!mapped_net.contains(ip("11.0.0.1")));
    }

    #[test]
    fn host_bits_are_cleared() {
        let c = cidr("54.171.127.193/30");
        assert_eq!(c.to_string(), "54.171.127.192/30");
        assert!(c.contains(ip("54.171.127.192")));
        assert_eq!(cidr(" 10.9.8.7/8 ").to_string(), "10.0.0.0/8");
    }

    #[test]
    fn bad_cidrs_say_why() {
        for (text, why) in [
            ("", "empty"),
            ("   ", "empty"),
            ("10.0.0.1/33", "at most 32"),
            ("2001:db8::/129", "at most 128"),
            ("10.0.0.0/", "not a number"),
            ("10.0.0.0/-1", "not a number"),
            ("10.0.0.0/+8", "not a number"),
            ("10.0.0.0/0008", "not a number"),
            ("10.0.0.0/8/8", "not a number"),
            ("10.0.0/8", "not an IP address"),
            ("example.com", "not an IP address"),
            ("fe80::1%eth0", "not an IP address"),
            ("10.0.0.256", "not an IP address"),
        ] {
            let err = text.parse::<Cidr>().unwrap_err();
            assert!(err.to_string().contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn twilio_preset() {
        assert_eq!(TWILIO_SIGNALLING.len(), 8);
        for r in TWILIO_SIGNALLING {
            assert_eq!(cidr(r).prefix(), 30, "{r}");
            assert_eq!(cidr(r).to_string(), *r, "{r} has host bits set");
        }
        let l = list(&["Twilio"]).unwrap();
        assert_eq!(l.cidrs().len(), 8);
        assert!(!l.is_any());
        assert!(l.allows(ip("54.171.127.193")));
        assert!(!l.allows(ip("54.171.127.196")));
        assert!(l.allows(ip("54.172.60.3")));
        assert!(l.allows(ip("::ffff:35.156.191.129")));
        assert!(
            !l.allows(ip("168.86.138.121")),
            "media addresses are not signalling"
        );
    }

    #[test]
    fn lists() {
        let any = list(&[]).unwrap();
        assert!(any.is_any() && any.allows(ip("198.51.100.1")) && any.allows(ip("::1")));
        assert_eq!(AddressList::any(), any);
        let l = list(&["twilio", "198.51.100.0/24", "2001:db8::/32", "203.0.113.7"]).unwrap();
        assert!(l.allows(ip("198.51.100.200")));
        assert!(l.allows(ip("2001:db8:1::5")));
        assert!(l.allows(ip("203.0.113.7")));
        assert!(!l.allows(ip("203.0.113.8")));
        assert!(!l.allows(ip("2001:db9::1")));
    }

    #[test]
    fn bad_entry_is_named() {
        let err = list(&["twilio", "10.0.0.0/8", "10.0.0.0/40"]).unwrap_err();
        assert!(
            matches!(&err, AclError::BadEntry { index: 2, entry, .. } if entry == "10.0.0.0/40")
        );
        let msg = err.to_string();
        assert!(
            msg.contains("entry 2")
                && msg.contains("\"10.0.0.0/40\"")
                && msg.contains("at most 32"),
            "{msg}"
        );
        let err = list(&["twlio"]).unwrap_err();
        assert!(err.to_string().contains("\"twlio\""), "{err}");
        assert!(
            list(&[""]).is_err(),
            "an empty entry is a mistake, not 'any'"
        );
    }
}
