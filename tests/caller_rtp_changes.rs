//! The caller's RTP changing mid-call, through the gateway and its echo agent. A new source
//! address (a NAT rebinding): a trunk with `symmetric_rtp = true` follows it after three packets
//! in a row; a Twilio trunk (the default) keeps sending to the SDP address, as Twilio asks. A
//! sequence-number wrap and a new SSRC (an SBC failover): every frame still comes back, in order.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::raw_sip::{ack, authenticated_invite, bye, RawSip};
use common::*;
use sipbridge::media::rtp::{self, RtpHeader};
use sipbridge::sdp::SessionDescription;
use tokio::net::UdpSocket;

/// The gateway's RTP address, from its 200's SDP.
fn answer_rtp(ok: &str) -> SocketAddr {
    let body = ok.split_once("\r\n\r\n").expect("a body").1;
    let sdp = SessionDescription::parse(body).expect("SDP answer");
    let ip = sdp
        .connection
        .as_ref()
        .and_then(|c| c.ip)
        .expect("c= address");
    SocketAddr::new(ip, sdp.media[0].port)
}

/// Sends `n` PCMU packets from `from`, 20 ms apart, sequence numbers from `seq`.
async fn send_rtp(from: &UdpSocket, to: SocketAddr, seq: u16, n: u16) {
    let packets: Vec<_> = (0..n)
        .map(|i| (0x5151_0001, seq + i, u32::from(seq + i) * 160, 0x55))
        .collect();
    send_stream(from, to, &packets).await;
}

/// Sends one PCMU packet per `(ssrc, sequence, timestamp, code)`, 20 ms apart, its payload
/// all `code`.
async fn send_stream(from: &UdpSocket, to: SocketAddr, packets: &[(u32, u16, u32, u8)]) {
    let mut buf = [0u8; 172];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for &(ssrc, sequence, timestamp, code) in packets {
        tick.tick().await;
        let h = RtpHeader {
            marker: false,
            payload_type: 0,
            sequence,
            timestamp,
            ssrc,
        };
        let len = rtp::write(&h, &[code; 160], &mut buf).unwrap();
        from.send_to(&buf[..len], to).await.unwrap();
    }
}

/// Calls the gateway at `to` from `sip`, with `rtp`'s port in the offer; returns its 200, ACKed.
async fn answered(sip: &RawSip, to: SocketAddr, call_id: &str, rtp: &UdpSocket) -> String {
    let port = rtp.local_addr().unwrap().port();
    let ok = authenticated_invite(sip, to, call_id, port, USER, PASSWORD)
        .await
        .expect("answered");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    ack(sip, to, call_id, &ok).await;
    ok
}

/// Datagrams that reach `sock` within `window`.
async fn count_arrivals(sock: &UdpSocket, window: Duration) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    let end = tokio::time::Instant::now() + window;
    while let Ok(Ok(_)) = tokio::time::timeout_at(end, sock.recv_from(&mut buf)).await {
        n += 1;
    }
    n
}

/// Empties `sock` of what already arrived.
fn drain(sock: &UdpSocket) {
    let mut buf = [0u8; 2048];
    while sock.try_recv_from(&mut buf).is_ok() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latching_trunk_follows_a_rebinding_and_a_twilio_trunk_keeps_the_sdp_address() {
    for latch in [true, false] {
        let gw = gateway(if latch { "symmetric_rtp = true\n" } else { "" }).await;
        let sip = RawSip::bind([127, 0, 0, 1]).await;
        let sdp_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rebound = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let call_id = format!("nat-{latch}");
        let to = gw.sip_addr;
        let ok = answered(&sip, to, &call_id, &sdp_sock).await;
        let gw_rtp = answer_rtp(&ok);

        // From the SDP address first: the gateway's frames come back there.
        send_rtp(&sdp_sock, gw_rtp, 100, 10).await;
        assert!(count_arrivals(&sdp_sock, Duration::from_millis(200)).await > 5);
        // The NAT rebinds: the same stream now comes from another port.
        send_rtp(&rebound, gw_rtp, 110, 10).await;
        drain(&sdp_sock);
        drain(&rebound);
        let (at_sdp, at_rebound) = tokio::join!(
            count_arrivals(&sdp_sock, Duration::from_millis(300)),
            count_arrivals(&rebound, Duration::from_millis(300)),
        );
        if latch {
            assert!(at_rebound > 5, "latched: {at_rebound} at the new address");
            assert_eq!(at_sdp, 0, "nothing to the old one");
        } else {
            assert!(at_sdp > 5, "Twilio-style: {at_sdp} at the SDP address");
            assert_eq!(at_rebound, 0);
        }
        let answer = bye(&sip, to, &call_id, &ok).await;
        assert!(answer.is_some_and(|b| b.starts_with("SIP/2.0 200")));
        gw.stop().await;
    }
}

/// The payload codes of the frames that reach `sock` within `window` and are one code
/// throughout (the echo of a frame of [`send_stream`]), in arrival order; silence is skipped.
async fn echoed_codes(sock: &UdpSocket, window: Duration) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    let mut codes = Vec::new();
    let end = tokio::time::Instant::now() + window;
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(end, sock.recv_from(&mut buf)).await {
        let Ok((_, payload)) = rtp::parse(&buf[..n]) else {
            continue;
        };
        let code = payload[0];
        if code != 0xFF && payload.iter().all(|&b| b == code) {
            codes.push(code);
        }
    }
    codes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_wrap_and_a_new_ssrc_lose_no_frame() {
    let gw = gateway("").await;
    let sip = RawSip::bind([127, 0, 0, 1]).await;
    let rtp_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = gw.sip_addr;
    let call_id = "wrap-and-failover";
    let ok = answered(&sip, to, call_id, &rtp_sock).await;
    // Distinct mu-law codes that decode and encode back unchanged (not 0x7F, not silence).
    let code = |i: usize| 0x10 + i as u8;
    // Twenty packets across the sequence (and timestamp) wrap, then an SBC failover: twenty
    // more with a new SSRC, sequence and timestamp.
    let packets: Vec<_> = (0..40)
        .map(|i| match i {
            0..20 => (
                0xA1A1,
                65526u16.wrapping_add(i as u16),
                (u32::MAX - 1600).wrapping_add(160 * i as u32),
                code(i),
            ),
            _ => (0xB2B2, 3000 + i as u16, 77_000 + 160 * i as u32, code(i)),
        })
        .collect();
    let (_, codes) = tokio::join!(
        send_stream(&rtp_sock, answer_rtp(&ok), &packets),
        echoed_codes(&rtp_sock, Duration::from_millis(40 * 20 + 500)),
    );
    assert_eq!(codes, (0..40).map(code).collect::<Vec<_>>());
    let answer = bye(&sip, to, call_id, &ok).await;
    assert!(answer.is_some_and(|b| b.starts_with("SIP/2.0 200")));
    gw.stop().await;
}

/// Once the caller's media is symmetric the gateway connects its RTP socket to the caller, and
/// a connected socket hears nobody else. A stream that moves to another source without a
/// pause (Twilio's edge moving, a NAT rebinding mid-stream) must still be heard: the gateway
/// unconnects once the old source has been quiet for `PEER_IDLE`, and the rest of the new
/// source's frames come back (to the SDP address, a Twilio trunk's policy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_moves_while_the_socket_is_connected_is_heard_again() {
    let gw = gateway("").await;
    let sip = RawSip::bind([127, 0, 0, 1]).await;
    let sdp_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let moved = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = gw.sip_addr;
    let call_id = "moved-while-connected";
    let ok = answered(&sip, to, call_id, &sdp_sock).await;
    let gw_rtp = answer_rtp(&ok);
    // One stream (SSRC, sequence, timestamp), its first 10 frames from the SDP address (the
    // socket is connected after 3), the next 30 from elsewhere, with no gap.
    let frame = |i: u16, code: u8| (0x5151_0001, 100 + i, u32::from(100 + i) * 160, code);
    let before: Vec<_> = (0..10).map(|i| frame(i, 0x11)).collect();
    let after: Vec<_> = (10..40).map(|i| frame(i, 0x22)).collect();
    let send = async {
        send_stream(&sdp_sock, gw_rtp, &before).await;
        send_stream(&moved, gw_rtp, &after).await;
    };
    let (_, codes) = tokio::join!(
        send,
        echoed_codes(&sdp_sock, Duration::from_millis(40 * 20 + 500)),
    );
    let heard_before = codes.iter().filter(|&&c| c == 0x11).count();
    let heard_after = codes.iter().filter(|&&c| c == 0x22).count();
    assert!(heard_before >= 8, "{heard_before} of 10 before the move");
    // 30 frames over 600 ms, of which those in the first PEER_IDLE (200 ms) after the move
    // are lost to the connected socket.
    assert!(
        (10..30).contains(&heard_after),
        "{heard_after} of 30 from the new source: lost while connected, then heard"
    );
    let answer = bye(&sip, to, call_id, &ok).await;
    assert!(answer.is_some_and(|b| b.starts_with("SIP/2.0 200")));
    gw.stop().await;
}
