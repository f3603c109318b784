//! Where the agent's audio goes when the caller's RTP starts coming from a new address mid-call
//! (a NAT rebinding): a trunk with `symmetric_rtp = true` follows it after three packets in a
//! row; a Twilio trunk (the default) keeps sending to the SDP address, as Twilio asks.

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
    let mut buf = [0u8; 172];
    for i in 0..n {
        let h = RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: seq + i,
            timestamp: u32::from(seq + i) * 160,
            ssrc: 0x5151_0001,
        };
        let len = rtp::write(&h, &[0x55; 160], &mut buf).unwrap();
        from.send_to(&buf[..len], to).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
        let rtp_port = sdp_sock.local_addr().unwrap().port();
        let call_id = format!("nat-{latch}");
        let to = gw.sip_addr;
        let ok = authenticated_invite(&sip, to, &call_id, rtp_port, USER, PASSWORD)
            .await
            .expect("answered");
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
        ack(&sip, to, &call_id, &ok).await;
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
