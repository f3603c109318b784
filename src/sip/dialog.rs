//! Dialogs (RFC 3261 §12), UAS side: the gateway answers calls, so its dialogs are built from
//! the INVITE it receives.
//!
//! The route set is what keeps a Twilio call alive: Twilio's Contact is a private 172.x address,
//! and requests we send inside the dialog (BYE) must go to the first Record-Route hop, Twilio's
//! public edge. Sending to the Contact host is the classic "call drops at 30 s" bug.

use crate::sip::message::{HeaderName, Method, NameAddr, Request};
use crate::sip::uri::Uri;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DialogError {
    #[error("INVITE has no {0}")]
    Missing(&'static str),
    #[error("CSeq {got} is not above the last one seen ({last})")]
    OutOfOrder { got: u32, last: u32 },
}

#[derive(Clone, Debug)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// The INVITE's To, with our tag: the From of requests we send.
    pub local_uri: NameAddr,
    /// The INVITE's From: the To of requests we send.
    pub remote_uri: NameAddr,
    /// The Contact of the INVITE (or of the last target refresh): our Request-URI.
    pub remote_target: Uri,
    /// Record-Route of the INVITE, in order (a UAS keeps the order as received).
    pub route_set: Vec<NameAddr>,
    pub local_cseq: u32,
    pub remote_cseq: u32,
}

impl Dialog {
    pub fn new_uas(invite: &Request, local_tag: &str) -> Result<Dialog, DialogError> {
        let call_id = invite.call_id().ok_or(DialogError::Missing("Call-ID"))?;
        let remote_uri = invite.from().ok_or(DialogError::Missing("From"))?;
        let remote_tag = remote_uri
            .tag()
            .ok_or(DialogError::Missing("From tag"))?
            .to_string();
        let mut local_uri = invite.to().ok_or(DialogError::Missing("To"))?;
        local_uri.set_tag(local_tag);
        let remote_target = invite
            .contacts()
            .into_iter()
            .next()
            .map(|c| c.uri)
            .ok_or(DialogError::Missing("Contact"))?;
        let remote_cseq = invite.cseq().ok_or(DialogError::Missing("CSeq"))?.seq;
        Ok(Dialog {
            call_id: call_id.to_string(),
            local_tag: local_tag.to_string(),
            remote_tag,
            local_uri,
            remote_uri,
            remote_target,
            route_set: invite.record_routes(),
            local_cseq: 0,
            remote_cseq,
        })
    }

    /// RFC 3261 12.2.2: an in-dialog request must carry a CSeq above the last one; ACK and
    /// CANCEL reuse their INVITE's and are exempt.
    pub fn accept_remote_cseq(&mut self, req: &Request) -> Result<(), DialogError> {
        if matches!(req.method, Method::Ack | Method::Cancel) {
            return Ok(());
        }
        let got = req.cseq().map(|c| c.seq).unwrap_or(0);
        if got <= self.remote_cseq {
            return Err(DialogError::OutOfOrder {
                got,
                last: self.remote_cseq,
            });
        }
        self.remote_cseq = got;
        Ok(())
    }

    /// True when Call-ID, From tag and To tag are this dialog's.
    pub fn matches_request(&self, req: &Request) -> bool {
        req.call_id() == Some(self.call_id.as_str())
            && req.headers.from_tag() == Some(self.remote_tag.as_str())
            && req.headers.to_tag() == Some(self.local_tag.as_str())
    }

    /// Builds an in-dialog request (RFC 3261 12.2.1.1) and says where to send it: the first
    /// route's URI, or the remote target when there is no route set.
    pub fn build_request(
        &mut self,
        method: Method,
        via_host_port: &str,
        branch: &str,
        contact: &Uri,
    ) -> (Request, Uri) {
        self.local_cseq += 1;
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
                // Strict routing (RFC 2543 proxies): the first route becomes the Request-URI
                // and the remote target goes last in the Route list.
                let mut routes: Vec<NameAddr> = self.route_set[1..].to_vec();
                routes.push(NameAddr::new(self.remote_target.clone()));
                let mut uri = first.uri.clone();
                uri.headers.clear();
                (uri.clone(), routes, uri)
            }
        };
        let mut req = Request::new(method.clone(), request_uri.to_string());
        let h = &mut req.headers;
        h.push(
            HeaderName::Via,
            format!("SIP/2.0/UDP {via_host_port};branch={branch};rport"),
        );
        h.push(HeaderName::MaxForwards, "70");
        for r in &routes {
            h.push(HeaderName::Route, r.to_string());
        }
        h.push(HeaderName::From, self.local_uri.to_string());
        h.push(HeaderName::To, self.remote_uri.to_string());
        h.push(HeaderName::CallId, self.call_id.clone());
        h.push(
            HeaderName::CSeq,
            format!("{} {}", self.local_cseq, method.as_str()),
        );
        h.push(HeaderName::Contact, format!("<{contact}>"));
        (req, next_hop)
    }

    /// A target refresh (re-INVITE) may move the remote target.
    pub fn refresh_target(&mut self, req: &Request) {
        if let Some(c) = req.contacts().into_iter().next() {
            self.remote_target = c.uri;
        }
    }
}

/// A new RFC 3261 branch (magic cookie plus 128 random bits).
pub fn new_branch() -> String {
    crate::sip::transaction::new_branch(&mut rand::rng())
}

/// A new tag for From/To: 64 random bits, hex.
pub fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Message;
    use bytes::Bytes;

    const FIXTURE_A: &str = "INVITE sip:+442071230000@sbc.example.net;transport=tls SIP/2.0\r\n\
Record-Route: <sip:54.171.127.193:5061;transport=tls;r2=on;lr>\r\n\
Record-Route: <sip:54.171.127.193;r2=on;lr>\r\n\
From: <sip:+447700900123@mytrunk.pstn.twilio.com:5060>;tag=08601002_c3356d0b\r\n\
To: <sip:+442071230000@sbc.example.net;transport=tls>\r\n\
CSeq: 29044 INVITE\r\n\
Max-Forwards: 60\r\n\
Call-ID: fb3e6e86a53e3094ed17b4776a69af59@0.0.0.0\r\n\
Via: SIP/2.0/TLS 54.171.127.193:5061;branch=z9hG4bK1dc3.f822d4f6a9d2c3b351d555992ddc6b78.0\r\n\
Via: SIP/2.0/UDP 172.25.75.240:5060;rport=5060;branch=z9hG4bK658bbbdc\r\n\
Contact: <sip:+447700900123@172.25.75.240:5060;transport=udp>\r\n\
Content-Length: 0\r\n\r\n";

    fn parse(text: &str) -> Request {
        match Message::parse(Bytes::copy_from_slice(text.as_bytes())) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn contact() -> Uri {
        Uri::parse("sip:203.0.113.10:5060").unwrap()
    }

    #[test]
    fn bye_goes_through_both_record_routes_to_the_private_contact() {
        let invite = parse(FIXTURE_A);
        let mut d = Dialog::new_uas(&invite, "ours").unwrap();
        assert_eq!(d.remote_cseq, 29044);
        let (bye, hop) = d.build_request(Method::Bye, "203.0.113.10:5060", "z9hG4bKx", &contact());
        assert_eq!(hop.host_port(), ("54.171.127.193".to_string(), 5061));
        assert_eq!(
            bye.uri,
            "sip:+447700900123@172.25.75.240:5060;transport=udp"
        );
        let routes: Vec<&str> = bye.headers.get_all(&HeaderName::Route).collect();
        assert_eq!(routes.len(), 2);
        assert!(routes[0].contains("5061;transport=tls"));
        assert!(routes[1].contains("<sip:54.171.127.193;r2=on;lr>"));
        assert_eq!(bye.from().unwrap().tag(), Some("ours"));
        assert_eq!(bye.to().unwrap().tag(), Some("08601002_c3356d0b"));
        assert_eq!(bye.cseq().unwrap().seq, 1);
        assert_eq!(
            bye.call_id(),
            Some("fb3e6e86a53e3094ed17b4776a69af59@0.0.0.0")
        );
        // What we build must itself parse.
        let again = parse(std::str::from_utf8(&bye.to_bytes()).unwrap());
        assert_eq!(again.method, Method::Bye);
        let (bye2, _) = d.build_request(Method::Bye, "h:1", "z9hG4bKy", &contact());
        assert_eq!(bye2.cseq().unwrap().seq, 2);
    }

    #[test]
    fn without_record_route_the_request_goes_to_the_contact() {
        let text = FIXTURE_A
            .replace(
                "Record-Route: <sip:54.171.127.193:5061;transport=tls;r2=on;lr>\r\n",
                "",
            )
            .replace("Record-Route: <sip:54.171.127.193;r2=on;lr>\r\n", "");
        let mut d = Dialog::new_uas(&parse(&text), "ours").unwrap();
        let (bye, hop) = d.build_request(Method::Bye, "h:1", "z9hG4bKx", &contact());
        assert_eq!(hop.host_port(), ("172.25.75.240".to_string(), 5060));
        assert!(bye.headers.get(&HeaderName::Route).is_none());
    }

    #[test]
    fn strict_route_is_rewritten() {
        let text = FIXTURE_A.replace(
            "<sip:54.171.127.193:5061;transport=tls;r2=on;lr>",
            "<sip:10.0.0.1:5070>",
        );
        let mut d = Dialog::new_uas(&parse(&text), "ours").unwrap();
        let (bye, hop) = d.build_request(Method::Bye, "h:1", "z9hG4bKx", &contact());
        assert_eq!(bye.uri, "sip:10.0.0.1:5070");
        assert_eq!(hop.host_port(), ("10.0.0.1".to_string(), 5070));
        let routes: Vec<&str> = bye.headers.get_all(&HeaderName::Route).collect();
        assert_eq!(routes.len(), 2);
        assert!(
            routes[1].contains("172.25.75.240"),
            "remote target last: {routes:?}"
        );
    }

    #[test]
    fn cseq_and_matching() {
        let invite = parse(FIXTURE_A);
        let mut d = Dialog::new_uas(&invite, "ours").unwrap();
        let bye = |cseq: u32, to_tag: &str| {
            parse(&format!(
                "BYE sip:x@203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP 54.171.127.193;branch=z9hG4bKb\r\n\
                 From: <sip:+447700900123@t>;tag=08601002_c3356d0b\r\nTo: <sip:x@y>;tag={to_tag}\r\n\
                 Call-ID: fb3e6e86a53e3094ed17b4776a69af59@0.0.0.0\r\nCSeq: {cseq} BYE\r\n\
                 Content-Length: 0\r\n\r\n"
            ))
        };
        assert!(d.matches_request(&bye(29045, "ours")));
        assert!(!d.matches_request(&bye(29045, "theirs")));
        assert_eq!(
            d.accept_remote_cseq(&bye(29044, "ours")),
            Err(DialogError::OutOfOrder {
                got: 29044,
                last: 29044
            })
        );
        assert_eq!(d.accept_remote_cseq(&bye(29045, "ours")), Ok(()));
        assert_eq!(d.remote_cseq, 29045);
    }

    #[test]
    fn missing_pieces_are_errors() {
        let no_tag = FIXTURE_A.replace(";tag=08601002_c3356d0b", "");
        assert_eq!(
            Dialog::new_uas(&parse(&no_tag), "x").unwrap_err(),
            DialogError::Missing("From tag")
        );
        let no_contact = FIXTURE_A.replace(
            "Contact: <sip:+447700900123@172.25.75.240:5060;transport=udp>\r\n",
            "",
        );
        assert_eq!(
            Dialog::new_uas(&parse(&no_contact), "x").unwrap_err(),
            DialogError::Missing("Contact")
        );
    }
}
