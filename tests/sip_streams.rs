//! SIP over TCP and TLS, end to end: calls whose every message (our BYE included) travels on
//! the caller's connection, keep-alives, mutual TLS, a certificate renewed by a reload, and
//! what hostile streams get: a 400 and a close, within bounded time and memory, never
//! touching anyone else.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::pki::{client_config, Ca};
use common::raw_sip::{answered_invite, header, in_dialog, invite, invite_cseq, rtp_sink};
use common::stream_sip::StreamSip;
use common::*;
use sipbridge::call::Gateway;
use sipbridge::config;

const WAIT: Duration = Duration::from_secs(5);

fn tcp_sip(limits: &str) -> String {
    format!("listen_tcp = \"127.0.0.1:0\"\n{limits}")
}

async fn tcp_gateway(limits: &str) -> (Gateway, SocketAddr) {
    let extra = if limits.is_empty() {
        String::new()
    } else {
        format!("[limits]\n{limits}")
    };
    let gw = gateway_sip(&tcp_sip(""), "", &extra, &|_| None).await;
    let tcp = addr(gw.sip().tcp_port.expect("TCP listener"));
    (gw, tcp)
}

/// A digest call over `sip`'s connection, Via naming `transport`: the 200 to the INVITE.
async fn call(sip: &mut StreamSip, to: SocketAddr, transport: &str, call_id: &str) -> String {
    let rtp = rtp_sink();
    let port = rtp.local_addr().unwrap().port();
    let ok = call_with(sip, to, transport, call_id, port, &|sdp| sdp, None).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    ok
}

/// A digest call offering media on `rtp_port`, its SDP passed through `sdp` first: the final
/// response to the INVITE with credentials.
async fn call_with(
    sip: &mut StreamSip,
    to: SocketAddr,
    transport: &str,
    call_id: &str,
    rtp_port: u16,
    sdp: &dyn Fn(String) -> String,
    contact: Option<SocketAddr>,
) -> String {
    let sip_local = sip.local;
    let shape = |msg: String| {
        let mut msg = msg.replace("SIP/2.0/UDP", &format!("SIP/2.0/{transport}"));
        if let Some(c) = contact {
            let ours = format!("Contact: <sip:+15551230000@{}>", sip_local);
            msg = msg.replace(
                &ours,
                &format!("Contact: <sip:+15551230000@{c};transport=tcp>"),
            );
        }
        let (head, body) = msg.split_once("\r\n\r\n").unwrap();
        let body = sdp(body.to_string());
        let head = head
            .lines()
            .map(|l| match l.starts_with("Content-Length:") {
                true => format!("Content-Length: {}", body.len()),
                false => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\r\n");
        format!("{head}\r\n\r\n{body}")
    };
    let first = invite(
        to,
        sip.local,
        call_id,
        1,
        &format!("{call_id}-1"),
        rtp_port,
        None,
    );
    sip.send(&shape(first)).await.unwrap();
    let challenge = sip.recv_matching("INVITE", WAIT).await.expect("a 407");
    assert!(challenge.starts_with("SIP/2.0 407"), "{challenge}");
    let second = answered_invite(&challenge, to, sip.local, call_id, rtp_port, USER, PASSWORD)
        .expect("a digest challenge");
    sip.send(&shape(second)).await.unwrap();
    sip.recv_matching("INVITE", WAIT)
        .await
        .expect("a final response")
}

/// ACK (or another in-dialog request) for the 2xx `ok`, on the connection.
async fn in_dialog_request(
    sip: &mut StreamSip,
    to: SocketAddr,
    call_id: &str,
    ok: &str,
    method: &str,
    transport: &str,
) {
    let cseq = invite_cseq(ok) + u32::from(method != "ACK");
    let req = in_dialog(sip.local, to, call_id, ok, method, cseq)
        .replace("SIP/2.0/UDP", &format!("SIP/2.0/{transport}"));
    sip.send(&req).await.unwrap();
}

/// A 200 for a request the gateway sent: its Vias, From, To, Call-ID and CSeq echoed.
fn ok_for(req: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for line in req.split("\r\n\r\n").next().unwrap().lines().skip(1) {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if ["via", "from", "to", "call-id", "cseq"].contains(&name.as_str()) {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// Waits up to [`WAIT`] for `done` (a connection's task counts and leaves the table a moment
/// after its socket closes).
async fn until(what: &str, done: impl Fn() -> bool) {
    let waited = tokio::time::timeout(WAIT, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    waited.await.unwrap_or_else(|_| panic!("{what}"));
}

async fn settled(gw: &Gateway) {
    tokio::time::timeout(WAIT, gw.wait_for(|s| s.unsettled == 0 && s.active == 0))
        .await
        .expect("every call settled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_call_keeps_every_message_on_its_connection() {
    let (gw, tcp) = tcp_gateway("").await;
    let mut sip = StreamSip::tcp(tcp).await;
    // RFC 5626 keep-alive: a double CRLF is answered with one.
    sip.send("\r\n\r\n").await.unwrap();
    assert!(sip.pong(WAIT).await, "no pong");

    let ok = call(&mut sip, tcp, "TCP", "tcp-call-1").await;
    let contact = header(&ok, "Contact").unwrap();
    assert!(
        contact.contains(&format!("127.0.0.1:{};transport=tcp", tcp.port())),
        "Contact names the TCP listener: {contact}"
    );
    assert!(
        header(&ok, "Via").unwrap().starts_with("SIP/2.0/TCP"),
        "{ok}"
    );
    in_dialog_request(&mut sip, tcp, "tcp-call-1", &ok, "ACK", "TCP").await;

    // Our BYE comes back on the caller's connection, with a TCP Via of ours.
    gw.hangup_all();
    let bye = sip
        .recv_matching(">BYE", WAIT)
        .await
        .expect("our BYE on the connection");
    let via = header(&bye, "Via").unwrap();
    assert!(
        via.starts_with(&format!("SIP/2.0/TCP 127.0.0.1:{}", tcp.port())),
        "{via}"
    );
    sip.send(&ok_for(&bye)).await.unwrap();
    settled(&gw).await;
    gw.stop().await;
}

/// The caller's connection is gone when we hang up: our BYE opens a new connection to the
/// dialog's next hop (here the caller's Contact, a listener of its own, with
/// `;transport=tcp`) and goes out on it, Via still TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_bye_opens_a_connection_when_the_dialogs_one_closed() {
    let (gw, tcp) = tcp_gateway("").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let contact = listener.local_addr().unwrap();
    let mut sip = StreamSip::tcp(tcp).await;
    let rtp = rtp_sink();
    let port = rtp.local_addr().unwrap().port();
    let ok = call_with(
        &mut sip,
        tcp,
        "TCP",
        "tcp-reopen",
        port,
        &|sdp| sdp,
        Some(contact),
    )
    .await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    in_dialog_request(&mut sip, tcp, "tcp-reopen", &ok, "ACK", "TCP").await;
    drop(sip);
    until("the gateway notices the closed connection", || {
        gw.sip().streams.is_empty()
    })
    .await;

    gw.hangup_all();
    let (socket, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .expect("the gateway connects to the caller's Contact")
        .unwrap();
    let mut back = StreamSip::from_tcp(socket);
    let bye = back.recv_matching(">BYE", WAIT).await.expect("our BYE");
    assert!(
        header(&bye, "Via").unwrap().starts_with("SIP/2.0/TCP"),
        "{bye}"
    );
    back.send(&ok_for(&bye)).await.unwrap();
    settled(&gw).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_bye_over_tcp_is_answered_on_the_connection() {
    let (gw, tcp) = tcp_gateway("").await;
    let mut sip = StreamSip::tcp(tcp).await;
    let ok = call(&mut sip, tcp, "TCP", "tcp-call-2").await;
    in_dialog_request(&mut sip, tcp, "tcp-call-2", &ok, "ACK", "TCP").await;
    in_dialog_request(&mut sip, tcp, "tcp-call-2", &ok, "BYE", "TCP").await;
    let answer = sip.recv_matching("BYE", WAIT).await.expect("200 to BYE");
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    settled(&gw).await;
    gw.stop().await;
}

/// The OPTIONS a monitor sends, over a stream.
fn options(local: SocketAddr, to: SocketAddr, transport: &str, tag: &str) -> String {
    format!(
        "OPTIONS sip:{to} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK-opt-{tag}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:monitor@{local}>;tag={tag}\r\nTo: <sip:{to}>\r\n\
         Call-ID: opt-{tag}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

async fn options_answered(sip: &mut StreamSip, to: SocketAddr, transport: &str, tag: &str) -> bool {
    if sip
        .send(&options(sip.local, to, transport, tag))
        .await
        .is_err()
    {
        return false;
    }
    sip.recv_matching("OPTIONS", WAIT)
        .await
        .is_some_and(|r| r.starts_with("SIP/2.0 200"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_errors_get_one_400_and_a_close() {
    let (gw, tcp) = tcp_gateway("").await;

    // A complete header section without Content-Length, then 10 MB that would be its body:
    // answered 400 at the end of the headers and closed, whatever follows.
    let mut sip = StreamSip::tcp(tcp).await;
    let head =
        invite(tcp, sip.local, "no-length", 1, "nl", 9, None).replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let head = head.split("Content-Length").next().unwrap().to_string() + "\r\n";
    sip.send(&head).await.unwrap();
    let flood = vec![b'v'; 1 << 20];
    for _ in 0..10 {
        if sip.send_bytes(&flood).await.is_err() {
            break;
        }
    }
    let answer = sip.recv(WAIT).await.expect("a 400");
    assert!(answer.starts_with("SIP/2.0 400"), "{answer}");
    assert!(
        answer.contains("Content-Length"),
        "the Warning says why: {answer}"
    );
    assert!(sip.closed(WAIT).await, "connection left open");

    // A header section that never ends: closed at the header limit, nothing to answer.
    let mut sip = StreamSip::tcp(tcp).await;
    sip.send("INVITE sip:a@b SIP/2.0\r\n").await.unwrap();
    for _ in 0..10 {
        if sip.send_bytes(&flood).await.is_err() {
            break;
        }
    }
    assert!(sip.closed(WAIT).await, "connection left open");

    // Binary garbage with a blank line in it: no Content-Length, not a request: closed unanswered.
    let mut sip = StreamSip::tcp(tcp).await;
    let _ = sip
        .send_bytes(b"\x16\x03\x01\x02\x00\x01\xff\xfe\r\n\r\n\x00\x01")
        .await;
    assert!(sip.closed(WAIT).await, "connection left open");
    assert_eq!(sip.pending_text(), "", "garbage is not answered");

    // None of it touched anyone else.
    let mut sip = StreamSip::tcp(tcp).await;
    assert!(options_answered(&mut sip, tcp, "TCP", "after").await);
    let bad = &gw.sip().streams.counters.closed_bad;
    until("3 connections counted as bad", || {
        bad.load(Ordering::Relaxed) == 3
    })
    .await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_messages_and_idle_connections_are_closed_in_time() {
    let (gw, tcp) = tcp_gateway("tcp_message_secs = 1\ntcp_idle_secs = 2\n").await;
    let mut half = StreamSip::tcp(tcp).await;
    half.send("OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/TCP x")
        .await
        .unwrap();
    let mut idle = StreamSip::tcp(tcp).await;
    assert!(
        half.closed(WAIT).await,
        "a half-sent message held its connection"
    );
    assert!(idle.closed(WAIT).await, "an idle connection stayed open");
    until("the table forgets closed connections", || {
        gw.sip().streams.is_empty()
    })
    .await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_per_source_limit_are_refused() {
    let (gw, tcp) = tcp_gateway("tcp_connections_per_source = 3\n").await;
    let mut open = Vec::new();
    for i in 0..3 {
        let mut sip = StreamSip::tcp(tcp).await;
        assert!(options_answered(&mut sip, tcp, "TCP", &format!("c{i}")).await);
        open.push(sip);
    }
    let mut fourth = StreamSip::tcp(tcp).await;
    assert!(
        fourth.closed(WAIT).await,
        "a fourth connection from one address was kept"
    );
    let refused = gw.sip().streams.counters.refused.load(Ordering::Relaxed);
    assert_eq!(refused, 1);
    // One closes; a new one fits again.
    drop(open.pop());
    until("the closed connection leaves the table", || {
        gw.sip().streams.len() <= 2
    })
    .await;
    let mut again = StreamSip::tcp(tcp).await;
    assert!(options_answered(&mut again, tcp, "TCP", "again").await);
    gw.stop().await;
}

/// A stranger flooding over TCP is banned like one over UDP: its connection is closed and a
/// new one refused at once, while the ban lasts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_source_loses_its_connections() {
    let (lo, hi) = rtp_range();
    let text = format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\nlisten_tcp = \"127.0.0.1:0\"\n[media]\nrtp_ports = \"{lo}-{hi}\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[limits]\nsource_burst = 5\nsource_rate = 1\n\
         [[trunks]]\nname = \"open\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n"
    );
    let gw = Gateway::start(&config::parse(&text, "t.toml", &|_| None).unwrap())
        .await
        .unwrap();
    let tcp = addr(gw.sip().tcp_port.unwrap());
    let mut flooder = StreamSip::tcp_from([127, 0, 0, 9], tcp).await;
    let mut answered = 0;
    for i in 0..20 {
        if flooder
            .send(&options(flooder.local, tcp, "TCP", &format!("f{i}")))
            .await
            .is_err()
        {
            break;
        }
        if flooder
            .recv_matching("OPTIONS", Duration::from_millis(200))
            .await
            .is_some()
        {
            answered += 1;
        }
    }
    assert_eq!(answered, 5, "the burst is answered, then nothing");
    assert!(
        flooder.closed(WAIT).await,
        "the banned source kept its connection"
    );
    let mut again = StreamSip::tcp_from([127, 0, 0, 9], tcp).await;
    assert!(
        again.closed(WAIT).await,
        "a banned source got a new connection"
    );
    // Anyone else is served.
    let mut other = StreamSip::tcp_from([127, 0, 0, 10], tcp).await;
    assert!(options_answered(&mut other, tcp, "TCP", "other").await);
    gw.stop().await;
}

// --- TLS ---

struct Pki {
    dir: std::path::PathBuf,
    ca: Ca,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = temp_dir(tag);
        let ca = Ca::new(&dir, "trunk");
        Pki { dir, ca }
    }
}

fn tls_sip(server: &common::pki::Leaf, client_ca: Option<&Path>) -> String {
    let mut s = format!(
        "listen_tls = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        server.cert.display(),
        server.key.display()
    );
    if let Some(ca) = client_ca {
        s += &format!("tls_client_ca = \"{}\"\n", ca.display());
    }
    s
}

async fn tls_gateway(sip: &str) -> (Gateway, SocketAddr) {
    let gw = gateway_sip(sip, "", "[limits]\ntcp_message_secs = 2\n", &|_| None).await;
    let tls = addr(gw.sip().tls_port.expect("TLS listener"));
    (gw, tls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_call_and_a_client_that_does_not_trust_the_certificate() {
    let pki = Pki::new("tls-call");
    let server = pki.ca.leaf("server", &["127.0.0.1", "localhost"], false);
    let (gw, tls) = tls_gateway(&tls_sip(&server, None)).await;

    let mut sip = StreamSip::tls(tls, client_config(&pki.ca.cert, None))
        .await
        .unwrap();
    let ok = call(&mut sip, tls, "TLS", "tls-call-1").await;
    let contact = header(&ok, "Contact").unwrap();
    assert!(
        contact.contains(&format!(":{};transport=tls", tls.port())),
        "{contact}"
    );
    in_dialog_request(&mut sip, tls, "tls-call-1", &ok, "ACK", "TLS").await;
    gw.hangup_all();
    let bye = sip
        .recv_matching(">BYE", WAIT)
        .await
        .expect("our BYE over TLS");
    assert!(
        header(&bye, "Via").unwrap().starts_with("SIP/2.0/TLS"),
        "{bye}"
    );
    sip.send(&ok_for(&bye)).await.unwrap();
    settled(&gw).await;

    // A client whose roots do not include our CA refuses the handshake.
    let other = Ca::new(&pki.dir, "other");
    assert!(StreamSip::tls(tls, client_config(&other.cert, None))
        .await
        .is_err());
    gw.stop().await;
    let _ = std::fs::remove_dir_all(&pki.dir);
}

/// Mutual TLS: with `tls_client_ca` only clients whose certificate that CA signed, and which
/// is in date, get an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_valid_client_certificates() {
    let pki = Pki::new("mtls");
    let server = pki.ca.leaf("server", &["127.0.0.1"], false);
    let good = pki.ca.leaf("client", &["trunk.example.com"], false);
    let expired = pki.ca.leaf("expired", &["trunk.example.com"], true);
    let other = Ca::new(&pki.dir, "stranger");
    let stranger = other.leaf("stranger-client", &["trunk.example.com"], false);
    let (gw, tls) = tls_gateway(&tls_sip(&server, Some(&pki.ca.cert))).await;

    let mut sip = StreamSip::tls(tls, client_config(&pki.ca.cert, Some(&good)))
        .await
        .unwrap();
    assert!(options_answered(&mut sip, tls, "TLS", "good").await);

    for (name, cert) in [
        ("none", None),
        ("expired", Some(&expired)),
        ("stranger", Some(&stranger)),
    ] {
        // TLS 1.3 lets the client finish before the server judges its certificate: the
        // refusal shows as a failed handshake or as a connection closed unanswered.
        let refused = match StreamSip::tls(tls, client_config(&pki.ca.cert, cert)).await {
            Err(_) => true,
            Ok(mut s) => !options_answered(&mut s, tls, "TLS", name).await,
        };
        assert!(refused, "client certificate {name} was admitted");
    }
    gw.stop().await;
    let _ = std::fs::remove_dir_all(&pki.dir);
}

/// A renewed certificate (same files, new contents) is served after a reload to new
/// connections; a broken one is refused by the reload and the old one stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_the_renewed_certificate() {
    let pki = Pki::new("tls-reload");
    let server = pki.ca.leaf("server", &["127.0.0.1"], false);
    let text = config_text(&tls_sip(&server, None), "", "");
    let cfg = config::parse(&text, "test.toml", &|_| None).unwrap();
    let gw = Gateway::start(&cfg).await.unwrap();
    let tls = addr(gw.sip().tls_port.unwrap());
    let roots = client_config(&pki.ca.cert, None);
    let first = StreamSip::tls(tls, roots.clone())
        .await
        .unwrap()
        .server_cert;

    let renewed = pki.ca.leaf("server", &["127.0.0.1"], false);
    assert_eq!(renewed.cert, server.cert, "same paths, new contents");
    gw.reload(config::parse(&text, "test.toml", &|_| None).unwrap());
    let second = StreamSip::tls(tls, roots.clone())
        .await
        .unwrap()
        .server_cert;
    assert!(
        second.is_some() && second != first,
        "the renewed certificate is served"
    );

    // A broken file: the config no longer loads, and the certificate in force stays.
    std::fs::write(&server.key, "not a key").unwrap();
    assert!(config::parse(&text, "test.toml", &|_| None).is_err());
    let third = StreamSip::tls(tls, roots).await.unwrap().server_cert;
    assert_eq!(third, second);
    gw.stop().await;
    let _ = std::fs::remove_dir_all(&pki.dir);
}

/// Connections that open and never finish their handshake (a ClientHello flood) are closed
/// at the handshake limit, and a real client is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_are_dropped_and_others_served() {
    let pki = Pki::new("tls-flood");
    let server = pki.ca.leaf("server", &["127.0.0.1"], false);
    let (gw, tls) = tls_gateway(&tls_sip(&server, None)).await;
    let mut stalled = Vec::new();
    for _ in 0..30 {
        let mut s = StreamSip::tcp(tls).await;
        // The start of a ClientHello record, and then nothing.
        s.send_bytes(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            .await
            .unwrap();
        stalled.push(s);
    }
    let mut sip = StreamSip::tls(tls, client_config(&pki.ca.cert, None))
        .await
        .unwrap();
    assert!(options_answered(&mut sip, tls, "TLS", "meanwhile").await);
    for s in &mut stalled {
        assert!(s.closed(WAIT).await, "a stalled handshake was kept");
    }
    let bad = &gw.sip().streams.counters.closed_bad;
    until("30 handshakes counted as failed", || {
        bad.load(Ordering::Relaxed) >= 30
    })
    .await;
    gw.stop().await;
    let _ = std::fs::remove_dir_all(&pki.dir);
}

/// Bad TLS settings are named by key at load.
#[test]
fn tls_settings_problems_name_their_key() {
    let pki = Pki::new("tls-config");
    let server = pki.ca.leaf("server", &["127.0.0.1"], false);
    let missing = pki.dir.join("missing.pem");
    let cases = [
        (
            format!("tls_cert = \"{}\"\n", server.cert.display()),
            "sip.tls_cert",
        ),
        (
            format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                missing.display(),
                server.key.display()
            ),
            "sip.tls_cert",
        ),
        (
            format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                server.cert.display(),
                server.cert.display()
            ),
            "sip.tls_key",
        ),
        (
            "listen_tls = \"127.0.0.1:5061\"\n".to_string(),
            "sip.listen_tls",
        ),
    ];
    for (sip, key) in cases {
        let text = config_text(&sip, "", "");
        let err = config::parse(&text, "t.toml", &|_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{sip}: {err}");
    }
    let _ = std::fs::remove_dir_all(&pki.dir);
}

// --- SRTP (SDES keys over TLS) ---

/// An SDES key (RFC 4568 inline): 16 bytes of key, 14 of salt.
fn sdes_key() -> ([u8; 30], String) {
    use base64::Engine as _;
    let key: [u8; 30] = rand::random();
    (key, base64::engine::general_purpose::STANDARD.encode(key))
}

/// The offer made SAVP with one AES_CM_128_HMAC_SHA1_80 key.
fn savp(inline: &str) -> impl Fn(String) -> String + '_ {
    move |sdp: String| {
        sdp.replace("RTP/AVP", "RTP/SAVP")
            + &format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{inline}\r\n")
    }
}

/// An SRTP context of the independent implementation (webrtc-rs's rtc-srtp) for `key`.
fn rtc_srtp(key: &[u8]) -> rtc::srtp::context::Context {
    use rtc::srtp::protection_profile::ProtectionProfile;
    let provider = rtc::crypto::default_provider().expect("rtc is built with ring");
    rtc::srtp::context::Context::new(
        &key[..16],
        &key[16..30],
        ProtectionProfile::Aes128CmHmacSha1_80,
        None,
        None,
        provider.crypto(),
    )
    .expect("rtc SRTP context")
}

/// Twilio's Secure Trunking path: SIP over TLS, an SDES-SRTP offer, answered with our own key;
/// the caller's SRTP (made by a second, independent SRTP implementation) is decrypted, echoed
/// and encrypted back, and the echo decrypts with our answer's key and carries the tone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_srtp_call_over_tls_echoes_through_both_implementations() {
    use base64::Engine as _;
    use sipbridge::codec::g711::Law;
    use sipbridge::media::rtp::{self, RtpHeader};

    let pki = Pki::new("srtp");
    let server = pki.ca.leaf("server", &["127.0.0.1"], false);
    let (gw, tls) = tls_gateway(&tls_sip(&server, None)).await;
    let mut sip = StreamSip::tls(tls, client_config(&pki.ca.cert, None))
        .await
        .unwrap();
    let media = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = media.local_addr().unwrap().port();
    let (ours, inline) = sdes_key();
    let ok = call_with(&mut sip, tls, "TLS", "srtp-1", port, &savp(&inline), None).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let body = ok.split_once("\r\n\r\n").unwrap().1;
    let m = body.lines().find(|l| l.starts_with("m=audio")).unwrap();
    assert!(m.contains(" RTP/SAVP "), "{body}");
    let gw_port: u16 = m.split_whitespace().nth(1).unwrap().parse().unwrap();
    let crypto = body
        .lines()
        .find(|l| l.starts_with("a=crypto:"))
        .expect("our key");
    let theirs = crypto
        .strip_prefix("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:")
        .expect("the offer's tag and suite");
    let theirs = base64::engine::general_purpose::STANDARD
        .decode(theirs)
        .unwrap();
    assert_eq!(theirs.len(), 30);
    assert_ne!(&theirs[..], &ours[..], "our own key, not the caller's");
    in_dialog_request(&mut sip, tls, "srtp-1", &ok, "ACK", "TLS").await;

    let mut encrypt = rtc_srtp(&ours);
    let mut decrypt = rtc_srtp(&theirs);
    let tone = tone(Law::Mu, 1.2);
    let (mut echoed, mut loud, mut bad) = (0, 0, 0);
    let mut buf = [0u8; 1500];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for (i, frame) in tone.chunks(160).enumerate() {
        tick.tick().await;
        let header = RtpHeader {
            marker: i == 0,
            payload_type: 0,
            sequence: 65_500u16.wrapping_add(i as u16),
            timestamp: 160 * i as u32,
            ssrc: 0x5151_5151,
        };
        let mut plain = [0u8; 172];
        let len = rtp::write(&header, frame, &mut plain).unwrap();
        let packet = encrypt.encrypt_rtp(&plain[..len]).unwrap();
        media.send_to(&packet, addr(gw_port)).await.unwrap();
        while let Ok((n, _)) = media.try_recv_from(&mut buf) {
            match decrypt.decrypt_rtp(&buf[..n]) {
                Ok(p) => {
                    echoed += 1;
                    let (_, payload) = rtp::parse(&p).unwrap();
                    if rms(Law::Mu, payload) > 2000.0 {
                        loud += 1;
                    }
                }
                Err(_) => bad += 1,
            }
        }
    }
    assert_eq!(bad, 0, "every packet from the gateway decrypts");
    assert!(echoed >= 40, "only {echoed} SRTP packets came back");
    assert!(
        loud >= 20,
        "only {loud} of {echoed} carried the echoed tone"
    );
    let calls = admin_get(gw.http_addr, "/calls").await;
    assert_eq!(calls[0]["srtp"], "AES_CM_128_HMAC_SHA1_80", "{calls}");

    in_dialog_request(&mut sip, tls, "srtp-1", &ok, "BYE", "TLS").await;
    let answer = sip.recv_matching("BYE", WAIT).await.expect("200 to BYE");
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    settled(&gw).await;
    gw.stop().await;
    let _ = std::fs::remove_dir_all(&pki.dir);
}

/// SDES keys over plain TCP would be readable on the path: refused with 488 unless the
/// operator says otherwise; a trunk that requires SRTP refuses a plain offer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srtp_policy_refusals() {
    let (_, inline) = sdes_key();
    let (gw, tcp) = tcp_gateway("").await;
    let mut sip = StreamSip::tcp(tcp).await;
    let refused = call_with(&mut sip, tcp, "TCP", "srtp-tcp", 9, &savp(&inline), None).await;
    assert!(refused.starts_with("SIP/2.0 488"), "{refused}");
    gw.stop().await;

    let gw = gateway_sip(&tcp_sip(""), "sdes_without_tls = true\n", "", &|_| None).await;
    let tcp = addr(gw.sip().tcp_port.unwrap());
    let mut sip = StreamSip::tcp(tcp).await;
    let ok = call_with(&mut sip, tcp, "TCP", "srtp-tcp-ok", 9, &savp(&inline), None).await;
    assert!(
        ok.starts_with("SIP/2.0 200") && ok.contains("a=crypto:1 "),
        "{ok}"
    );
    in_dialog_request(&mut sip, tcp, "srtp-tcp-ok", &ok, "ACK", "TCP").await;
    in_dialog_request(&mut sip, tcp, "srtp-tcp-ok", &ok, "BYE", "TCP").await;
    gw.stop().await;

    let gw = gateway_sip(
        &tcp_sip(""),
        "sdes_without_tls = true\n",
        "media_encryption = \"required\"\n",
        &|_| None,
    )
    .await;
    let tcp = addr(gw.sip().tcp_port.unwrap());
    let mut sip = StreamSip::tcp(tcp).await;
    let plain = call_with(&mut sip, tcp, "TCP", "plain", 9, &|sdp| sdp, None).await;
    assert!(plain.starts_with("SIP/2.0 488"), "{plain}");
    gw.stop().await;
}

/// A real SIP phone: baresip (Debian's baresip-core) calls over TLS with SRTP mandatory
/// (`mediaenc=srtp-mand`, its own SRTP in libre), sends a 440 Hz sine and records what it
/// hears: the gateway's echo, decrypted by baresip, must be the tone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_over_tls_with_mandatory_srtp_hears_its_echo() {
    let pki = Pki::new("baresip");
    let server = pki.ca.leaf("server", &["127.0.0.1"], false);
    let (gw, tls) = tls_gateway(&tls_sip(&server, None)).await;
    let cfg = pki.dir.join("baresip");
    let rec = pki.dir.join("rec");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::create_dir_all(&rec).unwrap();
    let (lo, hi) = rtp_range();
    std::fs::write(
        cfg.join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{sip}\nsip_cafile {ca}\nnet_interface 127.0.0.1\n\
             audio_player aufile,{rec}\naudio_source ausine,440\naudio_alert aufile,/dev/null\n\
             ausrc_srate 48000\nausrc_channels 2\nrtp_ports {lo}-{hi}\n\
             module_path /usr/lib/baresip/modules\nmodule stdio.so\nmodule g711.so\n\
             module ausine.so\nmodule aufile.so\nmodule sndfile.so\nmodule srtp.so\n\
             module_app account.so\nmodule_app menu.so\nsnd_path {rec}\n",
            sip = free_tcp_port(),
            ca = pki.ca.cert.display(),
            rec = rec.display(),
        ),
    )
    .unwrap();
    std::fs::write(
        cfg.join("accounts"),
        format!(
            "<sip:+15551230000@127.0.0.1;transport=tls>;auth_user={USER};auth_pass={PASSWORD};\
             mediaenc=srtp-mand;audio_codecs=PCMU;regint=0\n"
        ),
    )
    .unwrap();
    let dial = format!(
        "/dial sip:+447846855904@127.0.0.1:{};transport=tls",
        tls.port()
    );
    let cfg_arg = cfg.display().to_string();
    // `timeout` bounds the phone's life whatever happens; -t ends the call after 4 s.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("timeout")
            .args(["20", "baresip", "-f", &cfg_arg, "-e", &dial, "-t", "4"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("baresip: the test command installs baresip-core")
    })
    .await
    .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains("SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)"),
        "{log}"
    );
    assert!(log.contains("Call established"), "{log}");
    let heard = std::fs::read_dir(&rec)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with("-dec.wav"))
        .expect("baresip recorded what it heard");
    let wav = sipbridge::codec::wav::read_file(&heard.path()).unwrap();
    let sipbridge::codec::wav::WavAudio::Pcm16(samples) = wav else {
        panic!("baresip records 16-bit linear audio")
    };
    let frames = samples.len() / 160;
    let loud = samples
        .chunks(160)
        .filter(|f| {
            let energy: f64 = f.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
            (energy / f.len() as f64).sqrt() > 2000.0
        })
        .count();
    assert!(frames >= 150, "only {frames} frames heard\n{log}");
    assert!(
        loud * 10 >= frames * 9,
        "{loud} of {frames} frames carried the echo"
    );
    settled(&gw).await;
    gw.stop().await;
    let _ = std::fs::remove_dir_all(&pki.dir);
}
