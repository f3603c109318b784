//! Many nodes behind Kamailio: the shipped deploy/kamailio/kamailio.cfg (not a copy, with -A
//! overrides) in front of three sipbridge nodes on 127.0.0.2-4 that share a digest nonce
//! secret, driven by the project's own caller (`sipbridge load`) and by SIPp.
//!
//! Two tests, each with its own proxy and nodes, run one after the other (a shared lock): the
//! first keeps every node up (spread, dialogs through the proxy, a gateway-initiated BYE, a
//! challenge answered on another node, the flood ban); the second takes nodes down in turn
//! (drain, kill -9, restart). Within each, the phases share one cluster, because a cluster
//! costs a few seconds to start and the later phases build on the earlier ones' state.

mod cluster;
mod common;
mod ops_support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use cluster::*;
use common::sipp::{explain, Sipp};
use common::{temp_dir, PASSWORD, USER};
use sipbridge::sip::auth::{respond, Challenge};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SECS: Duration = Duration::from_secs(1);

/// Three nodes with the shared secret, then the proxy in front of them, all probed alive.
async fn cluster(dir: &Path) -> (Kamailio, Vec<Node>) {
    let mut nodes = Vec::new();
    for (name, ip) in [("a", "127.0.0.2"), ("b", "127.0.0.3"), ("c", "127.0.0.4")] {
        nodes.push(Node::start(name, ip, dir, true).await);
    }
    for n in &nodes {
        n.wait_healthy().await;
    }
    let sips: Vec<SocketAddr> = nodes.iter().map(|n| n.sip).collect();
    let kam = Kamailio::start(dir, &sips);
    for n in &nodes {
        let probed = kam.wait_node(n.sip, "AP", 10 * SECS).await;
        assert!(
            probed,
            "node {} never probed alive: {:?}\n{}",
            n.name,
            kam.nodes(),
            kam.log()
        );
    }
    let sip = RawSip::bind([127, 0, 0, 1]).await;
    let pong = options(&sip, kam.addr, "ready", 2 * SECS).await;
    assert!(
        pong.as_deref()
            .is_some_and(|r| r.starts_with("SIP/2.0 200")),
        "the proxy answers OPTIONS itself: {pong:?}\n{}",
        kam.log()
    );
    (kam, nodes)
}

fn stat(stats: &std::collections::HashMap<String, i64>, name: &str) -> i64 {
    *stats
        .get(name)
        .unwrap_or_else(|| panic!("no statistic {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_the_nodes_and_their_dialogs_cross_the_proxy() {
    let _serial = SERIAL.lock().await;
    let dir = temp_dir("spread");
    let (kam, nodes) = cluster(&dir).await;

    // (a) 30 calls at 10/s, 2 s each, through the proxy: all complete with audio both ways,
    // every node answers some, and exactly one node answers each call.
    let before = kam.stats();
    let report = Load::start(kam.addr, &dir, 30, 10.0, 2.0)
        .finish(60 * SECS)
        .await;
    let after = kam.stats();
    print_setup("spread over three nodes", &report);
    assert_eq!(count(&report, "completed"), 30, "{}", summary(&report));
    assert_eq!(count(&report, "failed"), 0, "{}", summary(&report));
    assert!(report["summary"]["passed"] == true, "{}", summary(&report));
    for call in report["calls"].as_array().unwrap() {
        assert!(
            call["rtp_received"].as_u64().unwrap_or(0) > 0
                && call["echoed_frames"].as_u64().unwrap_or(0) > 0,
            "audio both ways: {call}"
        );
    }
    let mut answered = Vec::new();
    for n in &nodes {
        answered.push(n.answered().await);
    }
    assert!(
        answered.iter().all(|&a| a > 0.0),
        "every node answers some calls: {answered:?}"
    );
    assert_eq!(answered.iter().sum::<f64>(), 30.0, "{answered:?}");
    // Each call sends two ACKs (the 407's, hop by hop, and the 200's) and one BYE. The 200's
    // ACK and the BYE reach the proxy only when the node copied its Record-Route into the 200;
    // without that the caller sends them straight to the node.
    let delta = |name: &str| stat(&after, name) - stat(&before, name);
    assert!(
        delta("core:rcv_requests_ack") >= 60,
        "ACKs through the proxy: {}",
        delta("core:rcv_requests_ack")
    );
    assert!(
        delta("core:rcv_requests_bye") >= 30,
        "BYEs through the proxy: {}",
        delta("core:rcv_requests_bye")
    );

    // (b) A caller that sends no RTP through the proxy: the node hangs up after its initial
    // media timeout (2 s), and its BYE comes back through the proxy (the proxy's Via on top).
    gateway_bye_crosses_the_proxy(&kam, &dir).await;

    // (c) A challenge from node a answered to node b directly: accepted, the nonce secret is
    // shared. A node without the shared secret asks again with stale=true (never 403).
    challenge_on_one_node_answer_on_another(&nodes[0], &nodes[1], &dir).await;

    // A new call from outside Twilio's ranges and the trusted ones: the proxy refuses it (the
    // nodes would only see the proxy's address).
    untrusted_callers_are_refused(&kam).await;

    // Flood: an untrusted source over the pike limit is banned (dropped without an answer)
    // with one log line; 127.0.0.1 (trusted with -A) keeps being answered.
    flood_is_banned(&kam).await;

    drop(kam);
    drop(nodes);
    let _ = std::fs::remove_dir_all(dir);
}

async fn gateway_bye_crosses_the_proxy(kam: &Kamailio, dir: &Path) {
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/sipp/uac_silent_via_proxy.xml"
    ))
    .unwrap();
    let proxy_re = kam.addr.to_string().replace('.', "\\.");
    let scenario = dir.join("uac_silent_via_proxy.xml");
    std::fs::write(&scenario, template.replace("@PROXY_RE@", &proxy_re)).unwrap();
    let sink = rtp_sink();
    let out = Sipp::new(kam.addr, &scenario)
        .arg("-au", USER)
        .arg("-ap", PASSWORD)
        .arg("-m", 1)
        .key("rtp_port", sink.local_addr().unwrap().port())
        .key("codecs", "0 101")
        .run()
        .await;
    assert!(
        out.status.success(),
        "SIPp through the proxy: {}",
        explain(&out)
    );
}

async fn challenge_on_one_node_answer_on_another(a: &Node, b: &Node, dir: &Path) {
    let sip = RawSip::bind([127, 0, 0, 1]).await;
    let sink = rtp_sink();
    let rtp = sink.local_addr().unwrap().port();
    let challenge = |call_id: &'static str| {
        let sip = &sip;
        async move {
            let msg = invite(
                a.sip,
                sip.local,
                call_id,
                1,
                &format!("{call_id}-1"),
                rtp,
                None,
            );
            sip.send(a.sip, &msg).await;
            let r = sip
                .final_response("INVITE", 5 * SECS)
                .await
                .expect("node a answers the INVITE");
            assert!(r.starts_with("SIP/2.0 407"), "{r}");
            Challenge::parse(&header(&r, "Proxy-Authenticate").expect("a challenge")).unwrap()
        }
    };
    let answer_to = |to: SocketAddr, ch: Challenge, call_id: &'static str| {
        let sip = &sip;
        async move {
            let auth = respond(
                &ch,
                "INVITE",
                &invite_uri(to),
                USER,
                PASSWORD,
                "0a4f113b",
                1,
            );
            let msg = invite(
                to,
                sip.local,
                call_id,
                2,
                &format!("{call_id}-2"),
                rtp,
                Some(&auth),
            );
            sip.send(to, &msg).await;
            sip.final_response("INVITE", 5 * SECS)
                .await
                .expect("the INVITE is answered")
        }
    };

    let ch = challenge("xnode-shared").await;
    let r = answer_to(b.sip, ch, "xnode-shared").await;
    assert!(
        r.starts_with("SIP/2.0 200"),
        "node b accepts node a's nonce: {r}"
    );
    assert!(ack_and_bye(&sip, b.sip, "xnode-shared", &r).await);

    // A fourth node, same trunk, no shared secret.
    let mut d = Node::start("d", "127.0.0.5", dir, false).await;
    d.wait_healthy().await;
    let ch = challenge("xnode-foreign").await;
    let r = answer_to(d.sip, ch, "xnode-foreign").await;
    assert!(
        r.starts_with("SIP/2.0 407"),
        "a node that cannot check the nonce challenges again: {r}"
    );
    let again = Challenge::parse(&header(&r, "Proxy-Authenticate").unwrap()).unwrap();
    assert!(again.stale, "the password was right: stale=true\n{r}");
    d.gw = None;
}

async fn untrusted_callers_are_refused(kam: &Kamailio) {
    let stranger = RawSip::bind([127, 0, 0, 67]).await;
    let before = kam.stats();
    let msg = invite(
        kam.addr,
        stranger.local,
        "stranger",
        1,
        "stranger-1",
        9,
        None,
    );
    stranger.send(kam.addr, &msg).await;
    let r = stranger.final_response("INVITE", 2 * SECS).await;
    assert!(
        r.as_deref().is_some_and(|r| r.starts_with("SIP/2.0 403")),
        "{r:?}\n{}",
        kam.log()
    );
    let after = kam.stats();
    assert_eq!(
        stat(&after, "core:fwd_requests") - stat(&before, "core:fwd_requests"),
        0,
        "nothing reached a node"
    );
}

async fn flood_is_banned(kam: &Kamailio) {
    let flooder = RawSip::bind([127, 0, 0, 66]).await;
    let local = flooder.local;
    let to = kam.addr;
    for i in 0..150 {
        let msg = format!(
            "OPTIONS sip:{to} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-flood-{i}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:scanner@{local}>;tag=f{i}\r\n\
             To: <sip:{to}>\r\n\
             Call-ID: flood-{i}@{local}\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        );
        flooder.send(to, &msg).await;
    }
    let mut answered = 0;
    while flooder.recv(Duration::from_millis(500)).await.is_some() {
        answered += 1;
    }
    // pike blocks somewhere between 1x and 3x its limit (32 per 2 s by default).
    assert!(
        (32..150).contains(&answered),
        "{answered} of 150 flood requests answered\n{}",
        kam.log()
    );
    let late = options(&flooder, to, "after-ban", SECS).await;
    assert!(late.is_none(), "a banned source is not answered: {late:?}");
    let trusted = RawSip::bind([127, 0, 0, 1]).await;
    let ok = options(&trusted, to, "trusted", 2 * SECS).await;
    assert!(
        ok.as_deref().is_some_and(|r| r.starts_with("SIP/2.0 200")),
        "{ok:?}"
    );
    let log = kam.log();
    let bans = log.matches("banning 127.0.0.66").count();
    assert!(
        (1..=2).contains(&bans),
        "one ban line (two workers may race), not one per packet: {bans}\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_and_killed_nodes_lose_no_new_calls_and_a_restarted_node_comes_back() {
    let _serial = SERIAL.lock().await;
    let dir = temp_dir("failover");
    let (kam, mut nodes) = cluster(&dir).await;
    let probe = RawSip::bind([127, 0, 0, 1]).await;

    // (d) SIGTERM on node a while calls run: not one call fails. Its own calls finish; it
    // answers OPTIONS 503, so the proxy takes it out; new INVITEs it still gets are 503s the
    // proxy fails over.
    let load = Load::start(kam.addr, &dir, 24, 6.0, 3.0);
    let a = &nodes[0];
    assert!(
        a.wait_active(5 * SECS).await,
        "node a never got a call:\n{}",
        kam.log()
    );
    a.gw().signal("TERM");
    let a_http = a.http;
    let health = ops_support::poll(
        100,
        async || ops_support::get(a_http, "/healthz").await.status,
        |s| *s == 503,
    )
    .await;
    assert_eq!(health, 503, "node a drains on SIGTERM");
    let pong = options(&probe, a.sip, "drain", 2 * SECS).await;
    assert!(
        pong.as_deref()
            .is_some_and(|r| r.starts_with("SIP/2.0 503")),
        "a draining node answers OPTIONS 503: {pong:?}"
    );
    assert!(
        kam.wait_node(a.sip, "I", 5 * SECS).await,
        "the proxy takes the draining node out: {:?}",
        kam.nodes()
    );
    // INVITEs already on their way when the node started draining (forced here by putting
    // it back in the set by hand, until the next probe): its 503 makes the proxy try another
    // node, so each of them meets a live node's challenge, never the 503.
    let raw = RawSip::bind([127, 0, 0, 1]).await;
    kam.kamcmd(&["dispatcher.set_state", "ap", "1", &format!("sip:{}", a.sip)])
        .expect("kamcmd set_state");
    for i in 0..30 {
        let msg = invite(
            kam.addr,
            raw.local,
            &format!("in-flight-{i}"),
            1,
            &format!("if-{i}"),
            9,
            None,
        );
        raw.send(kam.addr, &msg).await;
    }
    for _ in 0..30 {
        let r = raw.final_response("INVITE", 5 * SECS).await;
        assert!(
            r.as_deref().is_some_and(|r| r.starts_with("SIP/2.0 407")),
            "{r:?}\n{}",
            kam.log()
        );
    }
    assert!(
        kam.log().contains("failed with 503; trying"),
        "the proxy failed over on the draining node's 503:\n{}",
        kam.log()
    );
    let report = load.finish(60 * SECS).await;
    print_setup("SIGTERM on a node during load", &report);
    assert_eq!(count(&report, "failed"), 0, "{}", summary(&report));
    assert_eq!(count(&report, "completed"), 24, "{}", summary(&report));
    let status = nodes[0].gw.as_mut().unwrap().wait_exit().await;
    assert!(status.success(), "drained node exits 0: {status}");
    nodes[0].gw = None;

    // (e) kill -9 on node b while calls run: only the calls it held are lost; calls placed
    // after the kill succeed (the proxy times the dead node out after 2 s without a 100 and
    // tries the next one, and marks it inactive).
    let load = Load::start(kam.addr, &dir, 24, 6.0, 3.0);
    assert!(
        nodes[1].wait_active(5 * SECS).await,
        "node b never got a call"
    );
    let held = nodes[1].active_calls().await as u64;
    let killed_at_ms = load.started.elapsed().as_secs_f64() * 1000.0;
    // Dropping the child handle sends SIGKILL by PID at once (no `kill` process to spawn),
    // so few calls can be set up on b between the scrape and the kill; one such call is
    // allowed for below.
    nodes[1].gw = None;
    let report = load.finish(90 * SECS).await;
    print_setup("kill -9 on a node during load", &report);
    let failed = count(&report, "failed");
    assert!(
        (1..=held + 1).contains(&failed),
        "{failed} failed, node b held {held} at the kill: {}",
        summary(&report)
    );
    for call in report["calls"].as_array().unwrap() {
        if call["completed"] != true {
            let started = call["started_at_ms"].as_f64().unwrap();
            assert!(
                started < killed_at_ms + 500.0,
                "a call placed {started} ms in, after the kill at {killed_at_ms} ms, failed: {call}"
            );
        }
    }
    assert!(
        kam.log().contains("failed with 408; trying"),
        "the proxy failed over on the dead node's silence:\n{}",
        kam.log()
    );
    assert!(
        kam.wait_node(nodes[1].sip, "I", 10 * SECS).await,
        "{:?}",
        kam.nodes()
    );
    let report = Load::start(kam.addr, &dir, 15, 10.0, 1.0)
        .finish(60 * SECS)
        .await;
    print_setup("after the kill", &report);
    assert_eq!(
        count(&report, "completed"),
        15,
        "after the kill: {}",
        summary(&report)
    );

    // (f) The killed node restarts on the same ports: the next probe takes it back and new
    // calls reach it.
    nodes[1].restart().await;
    nodes[1].wait_healthy().await;
    let back = kam.wait_node(nodes[1].sip, "AP", 5 * SECS).await;
    assert!(back, "restarted node taken back: {:?}", kam.nodes());
    let report = Load::start(kam.addr, &dir, 30, 15.0, 0.0)
        .finish(60 * SECS)
        .await;
    print_setup("restarted node back in", &report);
    assert_eq!(count(&report, "completed"), 30, "{}", summary(&report));
    let answered = nodes[1].answered().await;
    assert!(answered > 0.0, "the restarted node answers new calls");

    drop(kam);
    drop(nodes);
    let _ = std::fs::remove_dir_all(dir);
}
