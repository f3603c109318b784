//! UAS dialog state (RFC 3261 §12): created from the INVITE we answer, it matches the
//! in-dialog requests Twilio sends, orders their CSeq, and builds the requests we send back
//! (BYE, re-INVITE) through Twilio's Record-Route set.

use crate::sip::message::{HeaderName, Method, NameAddr, ParseError, Request};
use crate::sip::transport::Transport;
use crate::sip::uri::Uri;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    #[error("request has no Call-ID")]
    MissingCallId,
    #[error("request has no CSeq")]
    MissingCSeq,
    #[error("bad From: {0}")]
    BadFrom(ParseError),
    #[error("bad To: {0}")]
    BadTo(ParseError),
    #[error("From has no tag")]
    MissingFromTag,
    #[error("INVITE has no Contact")]
    MissingContact,
    #[error("bad Contact: {0}")]
    BadContact(ParseError),
    #[error("bad Record-Route: {0}")]
    BadRecordRoute(ParseError),
    /// RFC 3261 §12.2.2: answer 500.
    #[error("CSeq {got} is lower than the last remote CSeq {last}")]
    OutOfOrder { got: u32, last: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// The INVITE's To, with our tag.
    pub local_uri: NameAddr,
    /// The INVITE's From (with the remote tag).
    pub remote_uri: NameAddr,
    /// The INVITE's Contact URI (Twilio's private address: a Request-URI, never a next hop
    /// while there is a route set).
    pub remote_target: Uri,
    /// The INVITE's Record-Route entries, in the order received (UAS, §12.1.1).
    pub route_set: Vec<NameAddr>,
    /// The CSeq of the last request we sent in this dialog; 0 until the first, so the first
    /// request we send carries CSeq 1.
    pub local_cseq: u32,
    pub remote_cseq: u32,
}

impl Dialog {
    /// The dialog a 2xx (or 1xx with a To tag) to `invite` creates, with `local_tag` as our
    /// To tag. Needs Call-ID, a From tag, a Contact and well-formed Record-Route entries.
    pub fn new_uas(invite: &Request, local_tag: &str) -> Result<Dialog, DialogError> {
        let headers = &invite.headers;
        let call_id = headers.call_id().ok_or(DialogError::MissingCallId)?;
        let cseq = invite.cseq().ok_or(DialogError::MissingCSeq)?;
        let remote_uri = NameAddr::parse(headers.get(&HeaderName::From).unwrap_or_default())
            .map_err(DialogError::BadFrom)?;
        let remote_tag = remote_uri
            .tag()
            .ok_or(DialogError::MissingFromTag)?
            .to_string();
        let mut local_uri = NameAddr::parse(headers.get(&HeaderName::To).unwrap_or_default())
            .map_err(DialogError::BadTo)?;
        local_uri.set_tag(local_tag);
        let contact = headers
            .get_all(&HeaderName::Contact)
            .next()
            .ok_or(DialogError::MissingContact)?;
        let remote_target = NameAddr::parse(contact)
            .map_err(DialogError::BadContact)?
            .uri;
        // The parser leaves Record-Route unchecked; a route set with a hole would send our
        // BYE around Twilio's edge, so any bad entry fails the dialog.
        let route_set = headers
            .get_all(&HeaderName::RecordRoute)
            .map(NameAddr::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(DialogError::BadRecordRoute)?;
        Ok(Dialog {
            call_id: call_id.to_string(),
            local_tag: local_tag.to_string(),
            remote_tag,
            local_uri,
            remote_uri,
            remote_target,
            route_set,
            local_cseq: 0,
            remote_cseq: cseq.seq,
        })
    }

    /// RFC 3261 §12.2.2: a request whose CSeq is lower than the last one is out of order
    /// (the caller answers 500); otherwise the remote CSeq moves to it. ACK and CANCEL carry
    /// the CSeq of the request they belong to and are exempt.
    pub fn accept_remote_cseq(&mut self, req: &Request) -> Result<(), DialogError> {
        if matches!(req.method, Method::Ack | Method::Cancel) {
            return Ok(());
        }
        let got = req.cseq().ok_or(DialogError::MissingCSeq)?.seq;
        if got < self.remote_cseq {
            return Err(DialogError::OutOfOrder {
                got,
                last: self.remote_cseq,
            });
        }
        self.remote_cseq = got;
        Ok(())
    }

    /// True when the request's Call-ID, From tag (theirs) and To tag (ours) are this
    /// dialog's.
    pub fn matches_request(&self, req: &Request) -> bool {
        let h = &req.headers;
        h.call_id() == Some(self.call_id.as_str())
            && h.from_tag() == Some(self.remote_tag.as_str())
            && h.to_tag() == Some(self.local_tag.as_str())
    }

    /// An in-dialog request per RFC 3261 §12.2.1.1, and the URI to send it to.
    ///
    /// CSeq: one more than the last request we sent, except for ACK and CANCEL, which reuse
    /// the CSeq number of the INVITE they belong to (the last one sent). Routing: with an
    /// empty route set the request goes to the remote target; when the first route has `lr`
    /// (loose routing, as Twilio's do) the Request-URI is the remote target, every route
    /// becomes a Route header in order and the request goes to the first route; otherwise
    /// (strict routing) the first route becomes the Request-URI and next hop, and the remote
    /// target is appended as the last Route. Never the Contact host while routes exist.
    pub fn build_request(
        &mut self,
        method: Method,
        transport: Transport,
        via_host_port: &str,
        branch: &str,
        contact: &Uri,
    ) -> (Request, Uri) {
        if !matches!(method, Method::Ack | Method::Cancel) {
            self.local_cseq = self.local_cseq.wrapping_add(1);
        }
        let (request_uri, routes, next_hop) = match self.route_set.first() {
            None => (
                self.remote_target.clone(),
                Vec::new(),
                self.remote_target.clone(),
            ),
            Some(first) if first.uri.has_lr() => (
                self.remote_target.clone(),
                self.route_set.clone(),
                first.uri.clone(),
            ),
            Some(first) => {
                let mut uri = first.uri.clone();
                // §12.2.1.1: strip what a Request-URI may not carry (§19.1.1 table).
                uri.params
                    .retain(|(n, _)| !n.eq_ignore_ascii_case("method"));
                uri.headers.clear();
                let mut routes = self.route_set[1..].to_vec();
                routes.push(NameAddr::new(self.remote_target.clone()));
                (uri.clone(), routes, uri)
            }
        };

        let mut req = Request::new(method.clone(), request_uri.to_string());
        let h = &mut req.headers;
        h.push(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {via_host_port};branch={branch};rport",
                transport.via_name()
            ),
        );
        h.push(HeaderName::MaxForwards, "70");
        for route in &routes {
            h.push(HeaderName::Route, route.to_string());
        }
        h.push(HeaderName::From, self.local_uri.to_string());
        h.push(HeaderName::To, self.remote_uri.to_string());
        h.push(HeaderName::CallId, self.call_id.clone());
        h.push(HeaderName::CSeq, format!("{} {}", self.local_cseq, method));
        h.push(HeaderName::Contact, format!("<{contact}>"));
        (req, next_hop)
    }

    /// A target refresh (re-INVITE, UPDATE) replaces the remote target with its Contact
    /// (RFC 3261 §12.2.2); a request without a usable Contact leaves it unchanged.
    pub fn refresh_target(&mut self, req: &Request) {
        let contact = req.headers.get_all(&HeaderName::Contact).next();
        if let Some(addr) = contact.and_then(|c| NameAddr::parse(c).ok()) {
            self.remote_target = addr.uri;
        }
    }
}

/// A Via branch: the RFC 3261 magic cookie and 128 random bits.
pub fn new_branch() -> String {
    crate::sip::transaction::new_branch(&mut rand::rng())
}

/// A From/To tag with 64 random bits (RFC 3261 §19.3 asks for at least 32).
pub fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::sip::message::Message;

    const FIXTURE_A: &[u8] = include_bytes!("../../fixtures/sip/twilio_esip_tls_invite.sip");
    const TWILIO_TAG: &str = "08601002_c3356d0b_658bbbdc-370e-4c02-862b-9f5807568f80";
    const CALL_ID: &str = "fb3e6e86a53e3094ed17b4776a69af59@0.0.0.0";

    fn request(bytes: &[u8]) -> Request {
        match Message::parse(Bytes::copy_from_slice(bytes)) {
            Ok(Message::Request(r)) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn fixture_a() -> Request {
        request(FIXTURE_A)
    }

    fn edited(from: &str, to: &str) -> Request {
        let text = std::str::from_utf8(FIXTURE_A).unwrap().replace(from, to);
        request(text.as_bytes())
    }

    fn our_contact() -> Uri {
        Uri::parse("sip:gw@203.0.113.10:5060").unwrap()
    }

    /// An in-dialog request from Twilio: its From tag, our To tag.
    fn twilio_request(
        method: &str,
        cseq: u32,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
    ) -> Request {
        let text = format!(
            "{method} sip:gw@203.0.113.10:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 54.171.127.193:5060;branch=z9hG4bKx{cseq}\r\n\
             From: <sip:+447700900123@mytrunk.pstn.twilio.com:5060>;tag={from_tag}\r\n\
             To: <sip:+442071230000@sbc.example.net;transport=tls>;tag={to_tag}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n"
        );
        request(text.as_bytes())
    }

    #[test]
    fn uas_dialog_from_fixture_a() {
        let d = Dialog::new_uas(&fixture_a(), "gw-tag").unwrap();
        assert_eq!(d.call_id, CALL_ID);
        assert_eq!(d.remote_tag, TWILIO_TAG);
        assert_eq!(d.local_tag, "gw-tag");
        assert_eq!(d.local_uri.tag(), Some("gw-tag"));
        assert_eq!(d.local_uri.uri.user.as_deref(), Some("+442071230000"));
        assert_eq!(d.remote_uri.tag(), Some(TWILIO_TAG));
        assert_eq!(
            d.remote_target.to_string(),
            "sip:+447700900123@172.25.75.240:5060;transport=udp"
        );
        let routes: Vec<_> = d.route_set.iter().map(|r| r.uri.to_string()).collect();
        assert_eq!(
            routes,
            [
                "sip:54.171.127.193:5061;transport=tls;r2=on;lr",
                "sip:54.171.127.193;r2=on;lr"
            ]
        );
        assert_eq!(d.remote_cseq, 29044);
        assert_eq!(d.local_cseq, 0);
    }

    #[test]
    fn bye_goes_through_the_record_route_set() {
        let mut d = Dialog::new_uas(&fixture_a(), "gw-tag").unwrap();
        let (bye, next_hop) = d.build_request(
            Method::Bye,
            Transport::Udp,
            "203.0.113.10:5060",
            "z9hG4bKbye1",
            &our_contact(),
        );
        assert_eq!(
            next_hop.to_string(),
            "sip:54.171.127.193:5061;transport=tls;r2=on;lr"
        );
        assert_eq!(next_hop.host_port(), ("54.171.127.193".to_string(), 5061));
        assert_eq!(
            bye.uri,
            "sip:+447700900123@172.25.75.240:5060;transport=udp"
        );

        // Through the wire format, so the test sees what Twilio would.
        let Ok(Message::Request(wire)) = Message::parse(bye.to_bytes()) else {
            panic!("BYE does not parse");
        };
        assert_eq!(wire.method, Method::Bye);
        let routes: Vec<_> = wire.headers.get_all(&HeaderName::Route).collect();
        assert_eq!(
            routes,
            [
                "<sip:54.171.127.193:5061;transport=tls;r2=on;lr>",
                "<sip:54.171.127.193;r2=on;lr>"
            ]
        );
        assert_eq!(wire.headers.from_tag(), Some("gw-tag"));
        assert_eq!(wire.headers.to_tag(), Some(TWILIO_TAG));
        assert_eq!(
            wire.from().unwrap().uri.user.as_deref(),
            Some("+442071230000")
        );
        assert_eq!(wire.to().unwrap().uri.host, "mytrunk.pstn.twilio.com");
        assert_eq!(wire.call_id(), Some(CALL_ID));
        assert_eq!(wire.cseq().unwrap().to_string(), "1 BYE");
        assert_eq!(wire.max_forwards(), Some(70));
        let via = wire.top_via().unwrap();
        assert_eq!(
            (via.transport.as_str(), via.host.as_str(), via.port),
            ("UDP", "203.0.113.10", Some(5060))
        );
        assert_eq!(via.branch.as_deref(), Some("z9hG4bKbye1"));
        assert_eq!(via.rport, Some(None));
        assert_eq!(wire.contacts()[0].uri, our_contact());
    }

    #[test]
    fn cseq_counts_up_except_for_ack_and_cancel() {
        let mut d = Dialog::new_uas(&fixture_a(), "t").unwrap();
        let c = our_contact();
        let cseq = |r: &Request| r.cseq().unwrap();
        let (r1, _) = d.build_request(Method::Invite, Transport::Udp, "h", "z9hG4bK1", &c);
        let (ack, _) = d.build_request(Method::Ack, Transport::Udp, "h", "z9hG4bK2", &c);
        let (r2, _) = d.build_request(Method::Bye, Transport::Udp, "h", "z9hG4bK3", &c);
        assert_eq!((cseq(&r1).seq, cseq(&r1).method), (1, Method::Invite));
        assert_eq!((cseq(&ack).seq, cseq(&ack).method), (1, Method::Ack));
        assert_eq!((cseq(&r2).seq, cseq(&r2).method), (2, Method::Bye));
        assert_eq!(d.local_cseq, 2);
    }

    #[test]
    fn without_record_route_the_request_goes_to_the_contact() {
        let invite = edited(
            "Record-Route: <sip:54.171.127.193:5061;transport=tls;r2=on;lr>\r\n\
             Record-Route: <sip:54.171.127.193;r2=on;lr>\r\n",
            "",
        );
        let mut d = Dialog::new_uas(&invite, "t").unwrap();
        assert!(d.route_set.is_empty());
        let (bye, next_hop) = d.build_request(
            Method::Bye,
            Transport::Udp,
            "h:5060",
            "z9hG4bK1",
            &our_contact(),
        );
        assert_eq!(next_hop, d.remote_target);
        assert!(!bye.headers.contains(&HeaderName::Route));
    }

    #[test]
    fn strict_route_is_rewritten_per_12_2_1_1() {
        let invite = edited(
            "Record-Route: <sip:54.171.127.193:5061;transport=tls;r2=on;lr>\r\n\
             Record-Route: <sip:54.171.127.193;r2=on;lr>\r\n",
            "Record-Route: <sip:strict.example.net;transport=udp;method=INVITE>, <sip:p2.example.net;lr>\r\n",
        );
        let mut d = Dialog::new_uas(&invite, "t").unwrap();
        let (bye, next_hop) = d.build_request(
            Method::Bye,
            Transport::Udp,
            "h:5060",
            "z9hG4bK1",
            &our_contact(),
        );
        assert_eq!(bye.uri, "sip:strict.example.net;transport=udp");
        assert_eq!(next_hop.to_string(), "sip:strict.example.net;transport=udp");
        let routes: Vec<_> = bye.headers.get_all(&HeaderName::Route).collect();
        assert_eq!(
            routes,
            [
                "<sip:p2.example.net;lr>",
                "<sip:+447700900123@172.25.75.240:5060;transport=udp>"
            ]
        );
    }

    #[test]
    fn out_of_order_cseq_is_rejected() {
        let mut d = Dialog::new_uas(&fixture_a(), "gw-tag").unwrap();
        let lower = twilio_request("BYE", 29043, CALL_ID, TWILIO_TAG, "gw-tag");
        assert_eq!(
            d.accept_remote_cseq(&lower),
            Err(DialogError::OutOfOrder {
                got: 29043,
                last: 29044
            })
        );
        assert_eq!(d.remote_cseq, 29044);
        let info = twilio_request("INFO", 29045, CALL_ID, TWILIO_TAG, "gw-tag");
        assert_eq!(d.accept_remote_cseq(&info), Ok(()));
        assert_eq!(d.remote_cseq, 29045);
        let again = twilio_request("BYE", 29045, CALL_ID, TWILIO_TAG, "gw-tag");
        assert_eq!(d.accept_remote_cseq(&again), Ok(()));
        // ACK carries the INVITE's number, lower than the INFO's: still fine.
        let ack = twilio_request("ACK", 29044, CALL_ID, TWILIO_TAG, "gw-tag");
        assert_eq!(d.accept_remote_cseq(&ack), Ok(()));
        assert_eq!(d.remote_cseq, 29045);
    }

    #[test]
    fn matches_request_checks_call_id_and_both_tags() {
        let d = Dialog::new_uas(&fixture_a(), "gw-tag").unwrap();
        let bye =
            |call_id: &str, from: &str, to: &str| twilio_request("BYE", 29045, call_id, from, to);
        assert!(d.matches_request(&bye(CALL_ID, TWILIO_TAG, "gw-tag")));
        assert!(!d.matches_request(&bye("other@0.0.0.0", TWILIO_TAG, "gw-tag")));
        assert!(!d.matches_request(&bye(CALL_ID, "someone-else", "gw-tag")));
        assert!(!d.matches_request(&bye(CALL_ID, TWILIO_TAG, "other-tag")));
        // The INVITE itself (no To tag yet) is not an in-dialog request.
        assert!(!d.matches_request(&fixture_a()));
    }

    #[test]
    fn re_invite_refreshes_the_remote_target() {
        let mut d = Dialog::new_uas(&fixture_a(), "gw-tag").unwrap();
        let mut reinvite = twilio_request("INVITE", 29045, CALL_ID, TWILIO_TAG, "gw-tag");
        reinvite.headers.push(
            HeaderName::Contact,
            "<sip:+447700900123@172.25.75.241:5070>",
        );
        d.refresh_target(&reinvite);
        assert_eq!(
            d.remote_target.to_string(),
            "sip:+447700900123@172.25.75.241:5070"
        );
        // No Contact: unchanged.
        let bye = twilio_request("BYE", 29046, CALL_ID, TWILIO_TAG, "gw-tag");
        d.refresh_target(&bye);
        assert_eq!(d.remote_target.port, Some(5070));
    }

    #[test]
    fn dialog_creation_errors() {
        let no_tag = edited(
            ";tag=08601002_c3356d0b_658bbbdc-370e-4c02-862b-9f5807568f80",
            "",
        );
        assert_eq!(
            Dialog::new_uas(&no_tag, "t"),
            Err(DialogError::MissingFromTag)
        );
        let no_contact = edited(
            "Contact: <sip:+447700900123@172.25.75.240:5060;transport=udp>\r\n",
            "",
        );
        assert_eq!(
            Dialog::new_uas(&no_contact, "t"),
            Err(DialogError::MissingContact)
        );
        let bad_rr = edited(
            "Record-Route: <sip:54.171.127.193;r2=on;lr>",
            "Record-Route: <sip:54.171.127.193;;lr>",
        );
        assert!(matches!(
            Dialog::new_uas(&bad_rr, "t"),
            Err(DialogError::BadRecordRoute(_))
        ));
        let star = edited(
            "Contact: <sip:+447700900123@172.25.75.240:5060;transport=udp>",
            "Contact: *",
        );
        assert!(matches!(
            Dialog::new_uas(&star, "t"),
            Err(DialogError::BadContact(_))
        ));
    }

    #[test]
    fn branches_and_tags_are_random() {
        let (a, b) = (new_branch(), new_branch());
        assert!(a.starts_with("z9hG4bK") && a.len() == 7 + 32);
        assert_ne!(a, b);
        let (t1, t2) = (new_tag(), new_tag());
        assert_eq!(t1.len(), 16);
        assert!(t1.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(t1, t2);
    }
}
