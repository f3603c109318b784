use std::time::{Duration, Instant};

use super::*;

pub(super) const SECRET: [u8; 32] = [7; 32];
pub(super) const URI: &str = "sip:agent@gw.example.net";

pub(super) fn users(name: &str) -> Option<String> {
    (name == "ai-voice-agent").then(|| "s3cret-Passw0rd".to_owned())
}

/// A wall clock for tests: 2027-01-15, whatever the machine says.
pub(super) fn clock(epoch: Instant) -> NonceClock {
    NonceClock {
        epoch,
        unix_ms_at_epoch: 1_800_000_000_000,
    }
}

pub(super) fn server(algorithms: Vec<Algorithm>, qop: bool) -> (DigestServer, Instant) {
    let epoch = Instant::now();
    let cfg = DigestConfig {
        realm: "gw.example.net".to_owned(),
        algorithms,
        qop,
        ..DigestConfig::default()
    };
    (DigestServer::new(cfg, SECRET, 1, clock(epoch)), epoch)
}

/// Challenges, parses the first challenge and answers it as `user`/`password` would.
pub(super) fn answer(
    srv: &DigestServer,
    now: Instant,
    user: &str,
    password: &str,
    nc: u32,
) -> (Challenge, String) {
    let ch = Challenge::parse(&srv.challenges(now, false)[0]).unwrap();
    let creds = respond(&ch, "INVITE", URI, user, password, "0a4f113b", nc);
    (ch, creds)
}

#[test]
fn rfc2617_section_3_5_vector() {
    // RFC 2617 §3.5, qop=auth.
    let ch = Challenge::parse(
        "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
         nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
    )
    .unwrap();
    assert!(ch.qop_auth);
    assert_eq!(ch.algorithm, Algorithm::Md5);
    let h = respond(
        &ch,
        "GET",
        "/dir/index.html",
        "Mufasa",
        "Circle Of Life",
        "0a4f113b",
        1,
    );
    assert!(
        h.contains("response=\"6629fae49393a05397450978507c4ef1\""),
        "{h}"
    );
    assert!(h.contains("nc=00000001"), "{h}");
    assert!(
        h.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""),
        "{h}"
    );

    // The same inputs without qop (RFC 2069 form); value computed independently with hashlib.
    let plain = Challenge {
        qop_auth: false,
        ..ch
    };
    let h = respond(
        &plain,
        "GET",
        "/dir/index.html",
        "Mufasa",
        "Circle Of Life",
        "x",
        1,
    );
    assert!(
        h.contains("response=\"670fd8c2df070c60b045671b8b24ff02\""),
        "{h}"
    );
    assert!(
        !h.contains("qop") && !h.contains("nc=") && !h.contains("cnonce"),
        "{h}"
    );
}

#[test]
fn rfc7616_section_3_9_1_vectors() {
    for (alg, expected) in [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        (
            "SHA-256",
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        ),
    ] {
        let ch = Challenge::parse(&format!(
            "Digest\r\n realm=\"http-auth@example.org\",\r\n qop=\"auth, auth-int\",\r\n \
             algorithm={alg},\r\n nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
        ))
        .unwrap();
        let h = respond(
            &ch,
            "GET",
            "/dir/index.html",
            "Mufasa",
            "Circle of Life",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            1,
        );
        assert!(
            h.contains(&format!("response=\"{expected}\"")),
            "{alg}: {h}"
        );
        assert!(h.contains(&format!("algorithm={alg}")), "{h}");
    }
}

#[test]
fn round_trip_every_algorithm_with_and_without_qop() {
    for alg in [Algorithm::Md5, Algorithm::Sha256] {
        for qop in [true, false] {
            let (mut srv, epoch) = server(vec![alg], qop);
            let now = epoch + Duration::from_secs(1);
            let challenges = srv.challenges(now, false);
            assert_eq!(challenges.len(), 1);
            assert_eq!(
                challenges[0].contains("qop=\"auth\""),
                qop,
                "{}",
                challenges[0]
            );
            let (ch, creds) = answer(&srv, now, "ai-voice-agent", "s3cret-Passw0rd", 1);
            assert_eq!(ch.algorithm, alg);
            assert_eq!(ch.qop_auth, qop);
            let v = srv.verify(now, "INVITE", &creds, users).unwrap();
            assert_eq!(v.username, "ai-voice-agent", "{alg} qop={qop}");
        }
    }
}

#[test]
pub(super) fn answer_without_qop_to_a_qop_challenge_is_accepted_once() {
    let (mut srv, epoch) = server(vec![Algorithm::Md5], true);
    let ch = Challenge::parse(&srv.challenges(epoch, false)[0]).unwrap();
    let plain = Challenge {
        qop_auth: false,
        ..ch
    };
    let creds = respond(
        &plain,
        "INVITE",
        URI,
        "ai-voice-agent",
        "s3cret-Passw0rd",
        "c",
        1,
    );
    assert!(srv.verify(epoch, "INVITE", &creds, users).is_ok());
    // Without nc there is nothing to tell a replay from a new request: one use per nonce.
    assert_eq!(
        srv.verify(epoch, "INVITE", &creds, users),
        Err(AuthError::Replay)
    );
}

#[test]
fn several_algorithms_give_several_challenges_in_order() {
    let (mut srv, epoch) = server(
        vec![Algorithm::Sha256, Algorithm::Md5, Algorithm::Sha256],
        true,
    );
    let hs = srv.challenges(epoch, true);
    assert_eq!(hs.len(), 2, "duplicates dropped: {hs:?}");
    assert!(
        hs[0].contains("algorithm=SHA-256") && hs[1].contains("algorithm=MD5"),
        "{hs:?}"
    );
    assert!(hs.iter().all(|h| h.ends_with(", stale=true")), "{hs:?}");
    let ch = Challenge::select(hs.iter().map(String::as_str)).unwrap();
    assert!(ch.stale);
    assert_eq!(ch.algorithm, Algorithm::Sha256);
    // The client may pick the MD5 challenge: it was offered.
    let md5 = Challenge::parse(&hs[1]).unwrap();
    let creds = respond(
        &md5,
        "INVITE",
        URI,
        "ai-voice-agent",
        "s3cret-Passw0rd",
        "c",
        1,
    );
    assert!(srv.verify(epoch, "INVITE", &creds, users).is_ok());
}

#[test]
fn challenge_shape() {
    let (srv, epoch) = server(vec![Algorithm::Md5], true);
    let h = &srv.challenges(epoch, false)[0];
    assert!(
        h.starts_with("Digest realm=\"gw.example.net\", nonce=\""),
        "{h}"
    );
    assert!(h.ends_with(", algorithm=MD5, qop=\"auth\""), "{h}");
    assert!(!h.contains("stale"), "{h}");
    let ch = Challenge::parse(h).unwrap();
    assert!(ch.opaque.is_some());
    // Two challenges in the same instant still get distinct nonces.
    let other = Challenge::parse(&srv.challenges(epoch, false)[0]).unwrap();
    assert_ne!(ch.nonce, other.nonce);
    assert_eq!(ch.opaque, other.opaque);

    assert_eq!(ChallengeKind::default(), ChallengeKind::Proxy);
    assert_eq!(ChallengeKind::Proxy.status(), 407);
    assert_eq!(
        ChallengeKind::Proxy.challenge_header(),
        "Proxy-Authenticate"
    );
    assert_eq!(
        ChallengeKind::Proxy.credentials_header(),
        "Proxy-Authorization"
    );
    assert_eq!(ChallengeKind::Www.status(), 401);
    assert_eq!(ChallengeKind::Www.challenge_header(), "WWW-Authenticate");
    assert_eq!(ChallengeKind::Www.credentials_header(), "Authorization");
}

#[test]
fn realm_is_quoted_with_escapes() {
    let cfg = DigestConfig {
        realm: "a \"quoted\" \\ realm, with comma".to_owned(),
        ..DigestConfig::default()
    };
    let epoch = Instant::now();
    let mut srv = DigestServer::new(cfg.clone(), SECRET, 1, clock(epoch));
    let ch = Challenge::parse(&srv.challenges(epoch, false)[0]).unwrap();
    assert_eq!(ch.realm, cfg.realm);
    let creds = respond(
        &ch,
        "INVITE",
        URI,
        "ai-voice-agent",
        "s3cret-Passw0rd",
        "c",
        1,
    );
    assert!(srv.verify(epoch, "INVITE", &creds, users).is_ok());
}

#[test]
fn wrong_password_and_unknown_user() {
    let (mut srv, epoch) = server(vec![Algorithm::Md5], true);
    let (_, creds) = answer(&srv, epoch, "ai-voice-agent", "guess", 1);
    let err = srv.verify(epoch, "INVITE", &creds, users).unwrap_err();
    assert_eq!(
        err,
        AuthError::BadResponse {
            username: "ai-voice-agent".to_owned()
        }
    );
    assert_eq!(
        err.to_string(),
        "wrong password for user \"ai-voice-agent\""
    );

    let (_, creds) = answer(&srv, epoch, "mallory", "s3cret-Passw0rd", 1);
    let err = srv.verify(epoch, "INVITE", &creds, users).unwrap_err();
    assert_eq!(err, AuthError::UnknownUser("mallory".to_owned()));
    assert_eq!(err.to_string(), "unknown user \"mallory\"");
}

#[test]
fn method_is_part_of_the_hash() {
    let (mut srv, epoch) = server(vec![Algorithm::Md5], true);
    let (_, creds) = answer(&srv, epoch, "ai-voice-agent", "s3cret-Passw0rd", 1);
    assert!(matches!(
        srv.verify(epoch, "BYE", &creds, users),
        Err(AuthError::BadResponse { .. })
    ));
}

#[test]
fn stale_nonce_then_fresh_challenge() {
    let (mut srv, epoch) = server(vec![Algorithm::Md5], true);
    let (_, creds) = answer(&srv, epoch, "ai-voice-agent", "s3cret-Passw0rd", 1);
    let (_, wrong) = answer(&srv, epoch, "ai-voice-agent", "nope", 1);
    let at_ttl = epoch + Duration::from_secs(300);
    let later = epoch + Duration::from_secs(301);
    // Exactly at the TTL the nonce is still good.
    let (_, edge) = answer(&srv, epoch, "ai-voice-agent", "s3cret-Passw0rd", 1);
    assert!(srv.verify(at_ttl, "INVITE", &edge, users).is_ok());
    assert_eq!(
        srv.verify(later, "INVITE", &creds, users),
        Err(AuthError::StaleNonce)
    );
    // Stale is only reported to someone who knows the password.
    assert!(matches!(
        srv.verify(later, "INVITE", &wrong, users),
        Err(AuthError::BadResponse { .. })
    ));
    let hs = srv.challenges(later, true);
    let ch = Challenge::parse(&hs[0]).unwrap();
    assert!(ch.stale);
    let creds = respond(
        &ch,
        "INVITE",
        URI,
        "ai-voice-agent",
        "s3cret-Passw0rd",
        "c2",
        1,
    );
    assert!(srv.verify(later, "INVITE", &creds, users).is_ok());
}

#[test]
fn nonce_count_must_increase() {
    let (mut srv, epoch) = server(vec![Algorithm::Sha256], true);
    let ch = Challenge::parse(&srv.challenges(epoch, false)[0]).unwrap();
    let with_nc = |nc| {
        respond(
            &ch,
            "INVITE",
            URI,
            "ai-voice-agent",
            "s3cret-Passw0rd",
            "cn",
            nc,
        )
    };
    assert!(srv.verify(epoch, "INVITE", &with_nc(1), users).is_ok());
    assert_eq!(
        srv.verify(epoch, "INVITE", &with_nc(1), users),
        Err(AuthError::Replay)
    );
    assert!(srv.verify(epoch, "INVITE", &with_nc(3), users).is_ok());
    assert_eq!(
        srv.verify(epoch, "INVITE", &with_nc(2), users),
        Err(AuthError::Replay)
    );
    assert!(srv.verify(epoch, "INVITE", &with_nc(4), users).is_ok());
    // A forged request with a huge nc and the wrong password does not advance the count.
    let forged = respond(
        &ch,
        "INVITE",
        URI,
        "ai-voice-agent",
        "bad",
        "cn",
        0xffff_ffff,
    );
    assert!(srv.verify(epoch, "INVITE", &forged, users).is_err());
    assert!(srv.verify(epoch, "INVITE", &with_nc(5), users).is_ok());
    // A qop-less use of a nonce already used with nc is a replay too.
    let plain = Challenge {
        qop_auth: false,
        ..ch.clone()
    };
    let creds = respond(
        &plain,
        "INVITE",
        URI,
        "ai-voice-agent",
        "s3cret-Passw0rd",
        "",
        0,
    );
    assert_eq!(
        srv.verify(epoch, "INVITE", &creds, users),
        Err(AuthError::Replay)
    );
    assert_eq!(srv.tracked_nonces(), 1);
}

#[test]
fn foreign_or_tampered_nonce_and_opaque() {
    let (mut srv, epoch) = server(vec![Algorithm::Md5], true);
    let ch = Challenge::parse(&srv.challenges(epoch, false)[0]).unwrap();
    let mut nonce = ch.nonce.clone().into_bytes();
    nonce[3] = if nonce[3] == b'0' { b'1' } else { b'0' };
    let tampered = Challenge {
        nonce: String::from_utf8(nonce).unwrap(),
        ..ch.clone()
    };
    let creds = respond(
        &tampered,
        "INVITE",
        URI,
        "ai-voice-agent",
        "s3cret-Passw0rd",
        "c",
        1,
    );
    // Answered over the tampered nonce with the right password: not ours, not a wrong password.
    assert_eq!(
        srv.verify(epoch, "INVITE", &creds, users),
        Err(AuthError::ForeignNonce)
    );

    for bad in ["", "zz", "dcd98b7102dd2f0e8b11d0f600bfb0c093"] {
        let c = Challenge {
            nonce: bad.to_owned(),
            ..ch.clone()
        };
        let creds = respond(
            &c,
            "INVITE",
            URI,
            "ai-voice-agent",
            "s3cret-Passw0rd",
            "c",
            1,
        );
        assert_eq!(
            srv.verify(epoch, "INVITE", &creds, users),
            Err(AuthError::BadNonce),
            "{bad}"
        );
    }

    // A nonce and opaque from a server with another secret (another node without the shared
    // secret, or before a restart): a stale challenge with the right password, and still a
    // wrong password with the wrong one.
    let other = DigestServer::new(srv.config().clone(), [8; 32], 2, clock(epoch));
    let (_, creds) = answer(&other, epoch, "ai-voice-agent", "s3cret-Passw0rd", 1);
    assert_eq!(
        srv.verify(epoch, "INVITE", &creds, users),
        Err(AuthError::ForeignNonce)
    );
    let (_, creds) = answer(&other, epoch, "ai-voice-agent", "guess", 1);
    assert!(matches!(
        srv.verify(epoch, "INVITE", &creds, users),
        Err(AuthError::BadResponse { .. })
    ));

    // Our nonce with someone else's opaque; opaque omitted is fine.
    let c = Challenge {
        opaque: Some("00".to_owned()),
        ..ch.clone()
    };
    let creds = respond(
        &c,
        "INVITE",
        URI,
        "ai-voice-agent",
        "s3cret-Passw0rd",
        "c",
        1,
    );
    assert_eq!(
        srv.verify(epoch, "INVITE", &creds, users),
        Err(AuthError::ForeignNonce)
    );
    let c = Challenge { opaque: None, ..ch };
    let creds = respond(
        &c,
        "INVITE",
        URI,
        "ai-voice-agent",
        "s3cret-Passw0rd",
        "c",
        1,
    );
    assert!(srv.verify(epoch, "INVITE", &creds, users).is_ok());
}

#[test]
fn same_secret_other_realm_is_not_ours() {
    let (srv_a, epoch) = server(vec![Algorithm::Md5], true);
    let cfg = DigestConfig {
        realm: "other".to_owned(),
        ..DigestConfig::default()
    };
    let mut srv_b = DigestServer::new(cfg, SECRET, 2, clock(epoch));
    let ch = Challenge::parse(&srv_a.challenges(epoch, false)[0]).unwrap();
    let moved = Challenge {
        realm: "other".to_owned(),
        opaque: None,
        ..ch
    };
    let creds = respond(
        &moved,
        "INVITE",
        URI,
        "ai-voice-agent",
        "s3cret-Passw0rd",
        "c",
        1,
    );
    assert_eq!(
        srv_b.verify(epoch, "INVITE", &creds, users),
        Err(AuthError::ForeignNonce)
    );
}

/// Nodes behind one balancer share the secret: a challenge from one verifies on another, their
/// nonces never collide, and age is judged on the wall clock both carry.
#[test]
fn nodes_sharing_a_secret_verify_each_others_nonces_by_wall_clock_age() {
    let epoch = Instant::now();
    let cfg = server(vec![Algorithm::Md5], true).0.config().clone();
    let a = DigestServer::new(cfg.clone(), SECRET, 0xa, clock(epoch));
    // B started 100 s after A; its epoch Instant says nothing about A's.
    let b_epoch = epoch + Duration::from_secs(100);
    let b_clock = NonceClock {
        epoch: b_epoch,
        unix_ms_at_epoch: 1_800_000_100_000,
    };
    let mut b = DigestServer::new(cfg.clone(), SECRET, 0xb, b_clock);

    // Same millisecond, same sequence number, different nodes: different nonces.
    let na = Challenge::parse(&a.challenges(b_epoch, false)[0])
        .unwrap()
        .nonce;
    let nb = Challenge::parse(&b.challenges(b_epoch, false)[0])
        .unwrap()
        .nonce;
    assert_eq!(na[..16], nb[..16], "issued in the same millisecond");
    assert_ne!(na, nb);

    let t = epoch + Duration::from_secs(150);
    let (_, creds) = answer(&a, t, "ai-voice-agent", "s3cret-Passw0rd", 1);
    assert!(b.verify(t, "INVITE", &creds, users).is_ok());
    // Replay protection is per node: B remembers the use...
    assert_eq!(b.verify(t, "INVITE", &creds, users), Err(AuthError::Replay));
    // ...and age is judged on wall-clock time: 301 s after A issued it, B finds it stale.
    let (_, creds) = answer(&a, t, "ai-voice-agent", "s3cret-Passw0rd", 1);
    let late = t + cfg.nonce_ttl + Duration::from_secs(1);
    assert_eq!(
        b.verify(late, "INVITE", &creds, users),
        Err(AuthError::StaleNonce)
    );
    // A node whose clock runs a whole lifetime behind the issuer's finds it stale too.
    let behind = NonceClock {
        epoch,
        unix_ms_at_epoch: 1_800_000_000_000 - 400_000,
    };
    let mut c = DigestServer::new(cfg, SECRET, 0xc, behind);
    let (_, creds) = answer(&a, epoch, "ai-voice-agent", "s3cret-Passw0rd", 1);
    assert_eq!(
        c.verify(epoch, "INVITE", &creds, users),
        Err(AuthError::StaleNonce)
    );
}

#[test]
fn a_shared_secret_gives_one_key_and_none_a_random_one() {
    let s = "0123456789abcdef0123456789abcdef";
    assert_eq!(nonce_key(Some(s)), nonce_key(Some(s)));
    assert_ne!(
        nonce_key(Some(s)),
        nonce_key(Some("0123456789abcdef0123456789abcdeF"))
    );
    assert_ne!(nonce_key(None), nonce_key(None));
}

#[test]
fn wrong_realm() {
    let (mut srv, epoch) = server(vec![Algorithm::Md5], true);
    let ch = Challenge::parse(&srv.challenges(epoch, false)[0]).unwrap();
    let c = Challenge {
        realm: "sip.twilio.com".to_owned(),
        ..ch
    };
    let creds = respond(
        &c,
        "INVITE",
        URI,
        "ai-voice-agent",
        "s3cret-Passw0rd",
        "c",
        1,
    );
    assert_eq!(
        srv.verify(epoch, "INVITE", &creds, users),
        Err(AuthError::WrongRealm)
    );
}

#[test]
fn algorithm_must_be_one_offered() {
    let (mut srv, epoch) = server(vec![Algorithm::Sha256], true);
    let ch = Challenge::parse(&srv.challenges(epoch, false)[0]).unwrap();
    let c = Challenge {
        algorithm: Algorithm::Md5,
        ..ch.clone()
    };
    let creds = respond(
        &c,
        "INVITE",
        URI,
        "ai-voice-agent",
        "s3cret-Passw0rd",
        "c",
        1,
    );
    assert_eq!(
        srv.verify(epoch, "INVITE", &creds, users),
        Err(AuthError::UnsupportedAlgorithm("MD5".to_owned()))
    );
    // No algorithm parameter means MD5, also not offered here.
    let creds = creds.replace(", algorithm=MD5", "");
    assert_eq!(
        srv.verify(epoch, "INVITE", &creds, users),
        Err(AuthError::UnsupportedAlgorithm("MD5".to_owned()))
    );
    let sess = respond(
        &ch,
        "INVITE",
        URI,
        "ai-voice-agent",
        "s3cret-Passw0rd",
        "c",
        1,
    )
    .replace("algorithm=SHA-256", "algorithm=SHA-256-sess");
    assert_eq!(
        srv.verify(epoch, "INVITE", &sess, users),
        Err(AuthError::UnsupportedAlgorithm("SHA-256-sess".to_owned()))
    );
    assert!(matches!(
        Challenge::parse("Digest realm=\"r\", nonce=\"n\", algorithm=MD5-sess"),
        Err(AuthError::UnsupportedAlgorithm(_))
    ));
    assert_eq!(Algorithm::from_token("sha-256"), Some(Algorithm::Sha256));
    assert_eq!(Algorithm::from_token("md5"), Some(Algorithm::Md5));
}

#[test]
fn digest_uri_is_hashed_as_sent_not_compared() {
    // Twilio's retry carries the Request-URI with its ;transport=tls in uri=; whatever the
    // request line says, the hash over uri= as sent must verify.
    let (mut srv, epoch) = server(vec![Algorithm::Md5], true);
    let ch = Challenge::parse(&srv.challenges(epoch, false)[0]).unwrap();
    let creds = respond(
        &ch,
        "INVITE",
        "sip:+442071230000@sbc.example.net;transport=tls",
        "ai-voice-agent",
        "s3cret-Passw0rd",
        "c",
        1,
    );
    assert!(srv.verify(epoch, "INVITE", &creds, users).is_ok());
    // Changing uri= without re-hashing breaks it.
    let (_, creds) = answer(&srv, epoch, "ai-voice-agent", "s3cret-Passw0rd", 1);
    let moved = creds.replace(URI, "sip:agent@gw.example.net;transport=tls");
    assert!(matches!(
        srv.verify(epoch, "INVITE", &moved, users),
        Err(AuthError::BadResponse { .. })
    ));
}

#[test]
fn replay_tracking_is_bounded_and_evicted_nonces_are_not_reusable() {
    let (mut srv, epoch) = server(vec![Algorithm::Md5], true);
    srv.max_tracked = 3;
    let mut issued = Vec::new();
    for i in 0..5u64 {
        let now = epoch + Duration::from_millis(i);
        let ch = Challenge::parse(&srv.challenges(now, false)[0]).unwrap();
        let creds = respond(
            &ch,
            "INVITE",
            URI,
            "ai-voice-agent",
            "s3cret-Passw0rd",
            "c",
            1,
        );
        assert!(srv.verify(now, "INVITE", &creds, users).is_ok());
        issued.push(ch);
        assert!(srv.tracked_nonces() <= 3);
    }
    // The oldest nonce was evicted while fresh: it cannot be used again, even with a higher nc.
    let creds = respond(
        &issued[0],
        "INVITE",
        URI,
        "ai-voice-agent",
        "s3cret-Passw0rd",
        "c",
        9,
    );
    assert_eq!(
        srv.verify(epoch, "INVITE", &creds, users),
        Err(AuthError::Replay)
    );
    // The newest is still tracked and works with nc=2.
    let creds = respond(
        &issued[4],
        "INVITE",
        URI,
        "ai-voice-agent",
        "s3cret-Passw0rd",
        "c",
        2,
    );
    assert!(srv.verify(epoch, "INVITE", &creds, users).is_ok());
}

#[test]
fn expired_entries_are_pruned() {
    let (mut srv, epoch) = server(vec![Algorithm::Md5], true);
    for _ in 0..10 {
        let (_, creds) = answer(&srv, epoch, "ai-voice-agent", "s3cret-Passw0rd", 1);
        assert!(srv.verify(epoch, "INVITE", &creds, users).is_ok());
    }
    assert_eq!(srv.tracked_nonces(), 10);
    let later = epoch + Duration::from_secs(400);
    let (_, creds) = answer(&srv, later, "ai-voice-agent", "s3cret-Passw0rd", 1);
    assert!(srv.verify(later, "INVITE", &creds, users).is_ok());
    assert_eq!(srv.tracked_nonces(), 1);
}

#[test]
fn empty_algorithm_list_means_md5() {
    let (srv, epoch) = server(Vec::new(), true);
    assert_eq!(srv.config().algorithms, vec![Algorithm::Md5]);
    assert_eq!(srv.challenges(epoch, false).len(), 1);
    let dbg = format!("{srv:?}");
    assert!(
        dbg.contains("sipbridge") || dbg.contains("gw.example.net"),
        "{dbg}"
    );
    assert!(!dbg.contains("mac"), "the key stays out of Debug: {dbg}");
}
