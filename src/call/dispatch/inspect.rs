//! RFC 3261 §8.2's inspection of a request that would start something here (an INVITE, or an
//! OPTIONS we answer ourselves), in the RFC's order after the method check: the Request-URI's
//! scheme (§8.2.2.1), the extensions it requires (§8.2.2.3), then its body (§8.2.3) and what
//! it will accept back. A request that fails gets the RFC's status with the header that tells
//! the sender what would have worked; nothing here allocates for a request that passes.

use crate::sip::message::{HeaderName, Method, Request};

/// Why a request is refused before authentication or admission.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    pub status: u16,
    /// The header the answer carries so the sender can do better (Unsupported, Accept).
    pub header: Option<(HeaderName, String)>,
}

impl Refusal {
    fn bare(status: u16) -> Refusal {
        Refusal {
            status,
            header: None,
        }
    }
}

pub(super) fn inspect(req: &Request) -> Result<(), Refusal> {
    // §8.2.2.1: a scheme we do not serve is 416 (RFC 4475 unkscm, novelsc); a sip: URI we
    // cannot read is a bad request.
    let scheme = req.uri.split_once(':').map_or("", |(s, _)| s);
    if !["sip", "sips", "tel"]
        .iter()
        .any(|known| scheme.eq_ignore_ascii_case(known))
    {
        return Err(Refusal::bare(416));
    }
    // Read in place: the router builds the owned URI for admitted requests.
    if crate::sip::uri::scan_uri(&req.uri).is_err() {
        return Err(Refusal::bare(400));
    }
    // §8.2.2.3: we implement no extension a caller could require (no 100rel, no session
    // timers), so every tag it requires is unsupported. Proxy-Require is for proxies.
    let required: Vec<&str> = req.headers.get_all(&HeaderName::Require).collect();
    if !required.is_empty() {
        return Err(Refusal {
            status: 420,
            header: Some((HeaderName::Unsupported, required.join(", "))),
        });
    }
    if req.method != Method::Invite {
        return Ok(());
    }
    // §8.2.3: an offer in anything but SDP cannot be answered (RFC 4475 invut). A body without
    // Content-Type is read as SDP: the offer/answer code refuses it if it is not.
    if !req.body.is_empty() {
        if let Some(kind) = req.headers.get(&HeaderName::ContentType) {
            if !media_type_is(kind, "application", "sdp") {
                return Err(Refusal {
                    status: 415,
                    header: Some((HeaderName::Accept, "application/sdp".into())),
                });
            }
        }
    }
    // §20.1: our answer is SDP; an Accept that lists types and none that covers SDP rules it
    // out (RFC 4475 sdp01). An empty Accept is read as absent, not as "no body at all".
    let mut accepts = req.headers.get_all(&HeaderName::Accept).peekable();
    if accepts.peek().is_some() && !accepts.any(|t| media_type_is(t, "application", "sdp")) {
        return Err(Refusal {
            status: 406,
            header: Some((HeaderName::Accept, "application/sdp".into())),
        });
    }
    Ok(())
}

/// Whether a media range (`type/subtype;params`, wildcards allowed) covers `kind/sub`.
fn media_type_is(range: &str, kind: &str, sub: &str) -> bool {
    let essence = range.split(';').next().unwrap_or("").trim();
    let Some((t, s)) = essence.split_once('/') else {
        return false;
    };
    let (t, s) = (t.trim(), s.trim());
    (t == "*" && s == "*")
        || (t.eq_ignore_ascii_case(kind) && (s == "*" || s.eq_ignore_ascii_case(sub)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::testing::invite;

    fn with(extra: &str) -> Request {
        invite("c", "z9hG4bK1", 1, extra)
    }

    #[test]
    fn media_ranges() {
        assert!(media_type_is("application/sdp", "application", "sdp"));
        assert!(media_type_is(
            " Application/SDP ; charset=x",
            "application",
            "sdp"
        ));
        assert!(media_type_is("application/*", "application", "sdp"));
        assert!(media_type_is("*/*", "application", "sdp"));
        assert!(!media_type_is("text/nobodyKnowsThis", "application", "sdp"));
        assert!(!media_type_is("application/sdpx", "application", "sdp"));
        assert!(!media_type_is("sdp", "application", "sdp"));
    }

    #[test]
    fn an_ordinary_invite_passes() {
        assert_eq!(inspect(&with("")), Ok(()));
        assert_eq!(
            inspect(&with("Accept: application/sdp, application/dtmf-relay\r\n")),
            Ok(())
        );
        assert_eq!(inspect(&with("Accept:\r\n")), Ok(()));
    }

    #[test]
    fn every_required_tag_is_listed_unsupported() {
        let r = inspect(&with("Require: 100rel\r\nRequire: timer,  foo\r\n")).unwrap_err();
        assert_eq!(r.status, 420);
        assert_eq!(
            r.header,
            Some((HeaderName::Unsupported, "100rel, timer, foo".into()))
        );
    }

    #[test]
    fn accept_without_sdp_is_406() {
        let r = inspect(&with("Accept: text/plain, application/isup\r\n")).unwrap_err();
        assert_eq!(r.status, 406);
    }

    #[test]
    fn unknown_scheme_is_416_and_unreadable_uri_400() {
        let mut req = with("");
        req.uri = "mailto:someone@example.com".into();
        assert_eq!(inspect(&req).unwrap_err().status, 416);
        req.uri = "sip:2001:db8::10".into();
        assert_eq!(inspect(&req).unwrap_err().status, 400);
    }
}
