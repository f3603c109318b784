//! End to end against SIPp (Debian's sip-tester), calling exactly as Twilio does: digest auth
//! answered from a 407, G.711 RTP streamed, the echo agent's audio checked on the way back.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::sipp::{explain, fixture, Sipp};
use common::*;
use sipbridge::call::Gateway;
use sipbridge::codec::g711::Law;
use sipbridge::media::rtp;
use sipbridge::sip::transport::Transport;

/// Where the echo comes back: the SDP's m= port points here, and every packet is checked.
struct EchoSink {
    port: u16,
    packets: Arc<AtomicU64>,
    loud: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl EchoSink {
    async fn start(law: Law) -> EchoSink {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = socket.local_addr().unwrap().port();
        let packets = Arc::new(AtomicU64::new(0));
        let loud = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, l, s) = (packets.clone(), loud.clone(), stop.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                let Ok(Ok((n, _))) =
                    tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf))
                        .await
                else {
                    continue;
                };
                let Ok((h, payload)) = rtp::parse(&buf[..n]) else {
                    continue;
                };
                assert_eq!(
                    h.payload_type,
                    law.payload_type(),
                    "echo uses the negotiated codec"
                );
                p.fetch_add(1, Ordering::Relaxed);
                // The tone is at about 5,700 RMS; silence fill decodes to ~0.
                if rms(law, payload) > 2000.0 {
                    l.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        EchoSink {
            port,
            packets,
            loud,
            stop,
        }
    }

    fn finish(&self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        (
            self.packets.load(Ordering::Relaxed),
            self.loud.load(Ordering::Relaxed),
        )
    }
}

async fn echo_call(law: Law, codecs: &str) {
    echo_call_over(law, codecs, Transport::Udp).await
}

async fn echo_call_over(law: Law, codecs: &str, transport: Transport) {
    let (gw, target, sipp_transport) = match transport {
        Transport::Udp => (gateway("").await, None, "u1"),
        _ => {
            let sip = "listen_tcp = \"127.0.0.1:0\"\n";
            let gw = gateway_sip(sip, "media_timeout_secs = 5\n", "", &|_| None).await;
            let tcp = addr(gw.sip().tcp_port.expect("TCP listener"));
            (gw, Some(tcp), "t1")
        }
    };
    let dir = temp_dir("sipp");
    let audio = dir.join("tone.raw");
    std::fs::write(&audio, tone(law, 2.0)).unwrap();
    let sink = EchoSink::start(law).await;
    let target = target.unwrap_or(gw.sip_addr);
    let out = Sipp::new(target, &echo_scenario(&audio, law.payload_type()))
        .arg("-t", sipp_transport)
        .arg("-au", USER)
        .arg("-ap", PASSWORD)
        .arg("-m", 1)
        .arg("-d", 3000)
        .key("rtp_port", sink.port)
        .key("codecs", codecs)
        .run()
        .await;
    let (packets, loud) = sink.finish();
    assert!(out.status.success(), "{}", explain(&out));
    // 3 s of call at 50 packets/s; the tone loops for the whole call.
    assert!(
        packets >= 100,
        "only {packets} RTP packets came back\n{}",
        explain(&out)
    );
    assert!(
        loud >= 80,
        "only {loud} of {packets} echoed packets carried the tone"
    );
    gw.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcmu_call_with_digest_auth_echoes_the_audio() {
    echo_call(Law::Mu, "0 8 101").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcma_call_echoes_the_audio() {
    echo_call(Law::A, "8 0 101").await;
}

/// SIPp over one TCP connection (`-t t1`): digest, 200, ACK, BYE and its answer all on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcmu_call_over_tcp_echoes_the_audio() {
    echo_call_over(Law::Mu, "0 8 101", Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_never_gets_200() {
    let gw = gateway("").await;
    let out = Sipp::new(gw.sip_addr, &fixture("uac_bad_password.xml"))
        .arg("-au", USER)
        .arg("-ap", "not-the-password")
        .arg("-m", 1)
        .run()
        .await;
    assert!(out.status.success(), "{}", explain(&out));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_calls_at_ten_per_second_all_complete() {
    let gw = gateway("").await;
    let dir = temp_dir("sipp");
    let audio = dir.join("tone.raw");
    std::fs::write(&audio, tone(Law::Mu, 1.0)).unwrap();
    // Every call's echo comes back to one sink; SIPp's exit status says every call completed.
    let sink = EchoSink::start(Law::Mu).await;
    let out = Sipp::new(gw.sip_addr, &echo_scenario(&audio, 0))
        .arg("-au", USER)
        .arg("-ap", PASSWORD)
        .arg("-m", 50)
        .arg("-r", 10)
        .arg("-d", 1000)
        .key("rtp_port", sink.port)
        .key("codecs", "0 8 101")
        .run()
        .await;
    let (packets, loud) = sink.finish();
    assert!(out.status.success(), "{}", explain(&out));
    // 50 calls of about 1 s at 50 packets/s each.
    assert!(packets >= 50 * 40, "only {packets} RTP packets came back");
    assert!(
        loud >= 50 * 30,
        "only {loud} of {packets} echoed packets carried the tone"
    );
    gw.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_sends_no_rtp_gets_bye_at_the_media_timeout() {
    let gw = gateway_with("initial_media_timeout_secs = 1\n", "").await;
    silent_call_succeeds(gw, "uac_silent.xml").await;
}

/// One digest call of a SIPp `scenario` that sends no RTP (PCMU offered); its success is
/// SIPp's exit status.
async fn silent_call_succeeds(gw: Gateway, scenario: &str) {
    let sink = EchoSink::start(Law::Mu).await;
    let out = Sipp::new(gw.sip_addr, &fixture(scenario))
        .arg("-au", USER)
        .arg("-ap", PASSWORD)
        .arg("-m", 1)
        .key("rtp_port", sink.port)
        .key("codecs", "0 101")
        .run()
        .await;
    sink.finish();
    assert!(out.status.success(), "{}", explain(&out));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_then_resume_a_second_later_is_answered_200() {
    silent_call_succeeds(gateway("").await, "uac_hold_resume.xml").await;
}
