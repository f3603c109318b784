//! Hand-made SIP over UDP for tests that need exact control of each message: a socket on any
//! 127/8 address, Twilio-shaped INVITEs (with or without credentials), OPTIONS, ACK and BYE.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// A UDP socket on `ip` for hand-made SIP.
pub struct RawSip {
    pub sock: tokio::net::UdpSocket,
    pub local: SocketAddr,
}

impl RawSip {
    pub async fn bind(ip: [u8; 4]) -> RawSip {
        let sock = tokio::net::UdpSocket::bind(SocketAddr::from((ip, 0)))
            .await
            .unwrap();
        let local = sock.local_addr().unwrap();
        RawSip { sock, local }
    }

    pub async fn send(&self, to: SocketAddr, text: &str) {
        self.sock.send_to(text.as_bytes(), to).await.unwrap();
    }

    /// The next message within `wait`, as text.
    pub async fn recv(&self, wait: Duration) -> Option<String> {
        let mut buf = vec![0u8; 65536];
        let (n, _) = tokio::time::timeout(wait, self.sock.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// The first non-provisional response within `wait` (responses to other requests are
    /// skipped by CSeq method).
    pub async fn final_response(&self, method: &str, wait: Duration) -> Option<String> {
        let end = Instant::now() + wait;
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            let msg = self.recv(left).await?;
            let cseq_ok = header(&msg, "CSeq").is_some_and(|c| c.ends_with(method));
            if msg.starts_with("SIP/2.0 ") && !msg.starts_with("SIP/2.0 1") && cseq_ok {
                return Some(msg);
            }
        }
    }
}

/// The value of the first `name` header of a SIP message.
pub fn header(msg: &str, name: &str) -> Option<String> {
    msg.split("\r\n\r\n").next()?.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// An out-of-dialog OPTIONS from `sip` to `to`; the final response, if any within `wait`.
pub async fn options(sip: &RawSip, to: SocketAddr, tag: &str, wait: Duration) -> Option<String> {
    let local = sip.local;
    let msg = format!(
        "OPTIONS sip:{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-opt-{tag};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:monitor@{local}>;tag={tag}\r\n\
         To: <sip:{to}>\r\n\
         Call-ID: opt-{tag}@{local}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    sip.send(to, &msg).await;
    sip.final_response("OPTIONS", wait).await
}

/// A Twilio-shaped INVITE (G.711 offer, media to `rtp_port`) for `call_id`, with an optional
/// Proxy-Authorization value.
pub fn invite(
    to: SocketAddr,
    local: SocketAddr,
    call_id: &str,
    cseq: u32,
    branch: &str,
    rtp_port: u16,
    auth: Option<&str>,
) -> String {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\n",
        ip = local.ip()
    );
    let auth = auth
        .map(|a| format!("Proxy-Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!(
        "INVITE {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+15551230000@sip.twilio.com>;tag=from-{call_id}\r\n\
         To: <sip:+447846855904@{to}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} INVITE\r\n\
         Contact: <sip:+15551230000@{local}>\r\n\
         {auth}\
         Content-Type: application/sdp\r\n\
         Content-Length: {len}\r\n\r\n{sdp}",
        uri = invite_uri(to),
        len = sdp.len()
    )
}

/// An INVITE without credentials (CSeq 1, for a trunk that admits by address); its final
/// response.
pub async fn unauthenticated_invite(
    sip: &RawSip,
    to: SocketAddr,
    call_id: &str,
    rtp_port: u16,
) -> Option<String> {
    let branch = format!("{call_id}-1");
    sip.send(
        to,
        &invite(to, sip.local, call_id, 1, &branch, rtp_port, None),
    )
    .await;
    sip.final_response("INVITE", Duration::from_secs(5)).await
}

/// A digest call: INVITE, the 407, INVITE with credentials for `user`/`password`; the final
/// response to the second INVITE (CSeq 2), `None` when either went unanswered.
pub async fn authenticated_invite(
    sip: &RawSip,
    to: SocketAddr,
    call_id: &str,
    rtp_port: u16,
    user: &str,
    password: &str,
) -> Option<String> {
    let challenge = unauthenticated_invite(sip, to, call_id, rtp_port).await?;
    let second = answered_invite(&challenge, to, sip.local, call_id, rtp_port, user, password)?;
    sip.send(to, &second).await;
    sip.final_response("INVITE", Duration::from_secs(5)).await
}

/// The INVITE (CSeq 2) that answers `challenge`, the 407 to our first [`invite`] for
/// `call_id`, with digest credentials for `user`/`password`; `None` when the 407 carries no
/// challenge we can read.
pub fn answered_invite(
    challenge: &str,
    to: SocketAddr,
    local: SocketAddr,
    call_id: &str,
    rtp_port: u16,
    user: &str,
    password: &str,
) -> Option<String> {
    use sipbridge::sip::auth::{respond, Challenge};
    let ch = Challenge::parse(&header(challenge, "Proxy-Authenticate")?).ok()?;
    let uri = invite_uri(to);
    let auth = respond(&ch, "INVITE", &uri, user, password, "0a4f113b", 1);
    let branch = format!("{call_id}-2");
    Some(invite(
        to,
        local,
        call_id,
        2,
        &branch,
        rtp_port,
        Some(&auth),
    ))
}

pub fn invite_uri(to: SocketAddr) -> String {
    format!("sip:+447846855904@{to}")
}

/// A request inside the dialog the 2xx `ok` (to our [`invite`] for `call_id`) set up, sent
/// straight to the gateway's Contact.
pub fn in_dialog(
    local: SocketAddr,
    to: SocketAddr,
    call_id: &str,
    ok: &str,
    method: &str,
    cseq: u32,
) -> String {
    let to_hdr = header(ok, "To").unwrap_or_default();
    let target = header(ok, "Contact")
        .and_then(|c| {
            let start = c.find('<')? + 1;
            let end = c[start..].find('>')? + start;
            Some(c[start..end].to_string())
        })
        .unwrap_or_else(|| invite_uri(to));
    let branch = format!("{}-{call_id}-{cseq}", method.to_ascii_lowercase());
    format!(
        "{method} {target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+15551230000@sip.twilio.com>;tag=from-{call_id}\r\n\
         To: {to_hdr}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The CSeq number of the INVITE the 2xx `ok` answers.
pub fn invite_cseq(ok: &str) -> u32 {
    header(ok, "CSeq")
        .and_then(|c| c.split_whitespace().next()?.parse().ok())
        .expect("the 2xx carries the INVITE's CSeq")
}

/// ACK for the 2xx `ok`, with its INVITE's CSeq (RFC 3261 17.1.1.3), straight to `to`.
pub async fn ack(sip: &RawSip, to: SocketAddr, call_id: &str, ok: &str) {
    let cseq = invite_cseq(ok);
    sip.send(to, &in_dialog(sip.local, to, call_id, ok, "ACK", cseq))
        .await;
}

/// BYE in the dialog `ok` set up, the CSeq after its INVITE's; the final response to it.
pub async fn bye(sip: &RawSip, to: SocketAddr, call_id: &str, ok: &str) -> Option<String> {
    let cseq = invite_cseq(ok) + 1;
    sip.send(to, &in_dialog(sip.local, to, call_id, ok, "BYE", cseq))
        .await;
    sip.final_response("BYE", Duration::from_secs(5)).await
}

/// ACK for the 2xx `ok` and BYE, both sent straight to `to`; true when the BYE got a 200.
pub async fn ack_and_bye(sip: &RawSip, to: SocketAddr, call_id: &str, ok: &str) -> bool {
    ack(sip, to, call_id, ok).await;
    bye(sip, to, call_id, ok)
        .await
        .is_some_and(|r| r.starts_with("SIP/2.0 200"))
}

/// A UDP port on 127.0.0.1 that swallows whatever RTP is sent to it while it lives.
pub fn rtp_sink() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}
