//! Builders for SIP messages in unit tests, shaped like Twilio's (reference/twilio.md §2).

use bytes::Bytes;

use crate::sip::message::{Message, Request, Response};

pub const TWILIO_SDP: &str = "v=0\r\no=root 1311022221 1311022221 IN IP4 172.18.165.214\r\n\
s=Twilio Media Gateway\r\nc=IN IP4 168.86.138.121\r\nt=0 0\r\n\
m=audio 12692 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n";

/// A request from Twilio's edge: `method` with the given Call-ID, branch, CSeq, extra header
/// lines (each ending in CRLF) and body.
pub fn request(
    method: &str,
    call_id: &str,
    branch: &str,
    cseq: u32,
    to_tag: Option<&str>,
    extra: &str,
    body: &str,
) -> Request {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let text = format!(
        "{method} sip:+447846855904@gw.example.net SIP/2.0\r\n\
         Record-Route: <sip:54.171.127.192:5060;lr;ftag=f1>\r\n\
         Via: SIP/2.0/UDP 54.171.127.192:5060;branch={branch}\r\n\
         Via: SIP/2.0/UDP 172.18.4.191:5060;rport=5060;branch=z9hG4bKinternal{branch}\r\n\
         From: \"+447700900123\" <sip:+447700900123@sip.twilio.com>;tag=f1\r\n\
         To: <sip:+447846855904@gw.example.net>{to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Max-Forwards: 68\r\n\
         Contact: <sip:+447700900123@172.18.4.191:5060;transport=udp>\r\n\
         X-Twilio-CallSid: CA00000000000000000000000000000001\r\n\
         {extra}{ctype}Content-Length: {len}\r\n\r\n{body}",
        ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        },
        len = body.len(),
    );
    match Message::parse(Bytes::from(text)) {
        Ok(Message::Request(r)) => r,
        other => panic!("test request did not parse: {other:?}"),
    }
}

pub fn invite(call_id: &str, branch: &str, cseq: u32, extra: &str) -> Request {
    request("INVITE", call_id, branch, cseq, None, extra, TWILIO_SDP)
}

pub fn parse_response(bytes: &[u8]) -> Response {
    match Message::parse(Bytes::copy_from_slice(bytes)) {
        Ok(Message::Response(r)) => r,
        other => panic!("not a response: {other:?}"),
    }
}

pub fn parse_request(bytes: &[u8]) -> Request {
    match Message::parse(Bytes::copy_from_slice(bytes)) {
        Ok(Message::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}
