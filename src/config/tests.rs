use super::*;

fn env_none(_: &str) -> Option<String> {
    None
}

fn parse_ok(text: &str) -> Config {
    match parse(text, "test.toml", &|k| {
        (k == "PW").then(|| "s3cret-pw".to_string())
    }) {
        Ok(c) => c,
        Err(e) => panic!("unexpected config error:\n{e}"),
    }
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text, "test.toml", &env_none) {
        Ok(_) => panic!("config unexpectedly valid"),
        Err(e) => e.problems,
    }
}

#[test]
fn empty_file_is_the_echo_default_without_trunks() {
    let c = parse_ok("");
    assert_eq!(
        c.sip.listen,
        "0.0.0.0:5060".parse::<std::net::SocketAddr>().unwrap()
    );
    assert_eq!(
        c.http.listen,
        "127.0.0.1:3000".parse::<std::net::SocketAddr>().unwrap()
    );
    assert_eq!(c.media.rtp_ports, (10000, 20000));
    assert_eq!(c.agents.get("echo"), Some(&AgentSpec::Echo));
    assert_eq!(c.routes.len(), 1);
    assert!(c.trunks.is_empty());
}

#[test]
fn design_example_keys_parse() {
    let c = parse_ok(
        r#"
shutdown_grace_secs = 10
[sip]
listen = "127.0.0.1:5070"
public_addr = "203.0.113.10"
realm = "gw"
max_calls = 5
auth_challenge = "www"
[media]
rtp_ports = "30000-30100"
public_ip = "203.0.113.10"
media_timeout_secs = 7
initial_media_timeout_secs = 9
[http]
listen = "127.0.0.1:3999"
[[trunks]]
name = "twilio"
username = "ai-voice-agent"
password_env = "PW"
allowed_addresses = ["twilio", "10.0.0.0/8"]
numbers = ["+44 7846 855904"]
[[routes]]
numbers = ["+447846855904"]
agent = "bot"
[agents.bot]
kind = "echo"
"#,
    );
    assert_eq!(c.shutdown_grace, Duration::from_secs(10));
    assert_eq!(c.sip.max_calls, 5);
    assert_eq!(c.sip.challenge, ChallengeKind::Www);
    assert_eq!(c.sip.public_addr.as_deref(), Some("203.0.113.10"));
    assert_eq!(c.media.rtp_ports, (30000, 30100));
    assert_eq!(c.media.media_timeout, Duration::from_secs(7));
    let t = &c.trunks[0];
    assert_eq!(t.name, "twilio");
    let cred = t.credentials.as_ref().unwrap();
    assert_eq!(
        (cred.username.as_str(), cred.password.as_str()),
        ("ai-voice-agent", "s3cret-pw")
    );
    assert!(t.allowed.allows("54.171.127.193".parse().unwrap()));
    assert!(!t.allowed.allows("8.8.8.8".parse().unwrap()));
    assert_eq!(t.numbers, vec!["447846855904"]);
    assert_eq!(c.routes[0].agent, "bot");
    assert!(
        !format!("{c:?}").contains("s3cret-pw"),
        "password leaked through Debug"
    );
}

#[test]
fn unknown_key_names_key_and_line() {
    let p = problems("[sip]\nlisten = \"0.0.0.0:5060\"\nlisen = 1\n");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].line, 3);
    assert!(p[0].message.contains("lisen"), "{:?}", p[0]);
}

#[test]
fn every_semantic_problem_is_reported_with_its_line() {
    let p = problems(
        "[sip]\nlisten = \"nope\"\n[media]\nrtp_ports = \"20000-10000\"\n\
         [[trunks]]\nusername = \"u\"\npassword_env = \"MISSING\"\n\
         [[routes]]\nagent = \"ghost\"\n",
    );
    let keys: Vec<(&str, usize)> = p.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert!(keys.contains(&("sip.listen", 2)), "{keys:?}");
    assert!(keys.contains(&("media.rtp_ports", 4)), "{keys:?}");
    assert!(keys.contains(&("trunks[0].password_env", 7)), "{keys:?}");
    assert!(keys.contains(&("routes[0].agent", 9)), "{keys:?}");
    let shown = ConfigError {
        file: "f.toml".into(),
        problems: p,
    }
    .to_string();
    assert!(
        shown.contains("f.toml:2:10: sip.listen: expected ip:port"),
        "{shown}"
    );
    assert!(shown.contains("MISSING is not set"), "{shown}");
}

#[test]
fn open_trunk_without_credentials_or_allowlist_is_refused() {
    let p = problems("[[trunks]]\nname = \"open\"\n");
    assert_eq!(p[0].key, "trunks[0]");
    assert!(p[0].message.contains("allowed_addresses"));
}

#[test]
fn bad_cidr_points_at_the_entry() {
    let p = problems("[[trunks]]\nallowed_addresses = [\"twilio\",\n  \"10.0.0.0/33\"]\n");
    assert_eq!(p[0].key, "trunks[0].allowed_addresses");
    assert_eq!(p[0].line, 3);
}

#[test]
fn unknown_agent_kind_is_named_with_the_available_ones() {
    let p = problems("[agents.x]\nkind = \"telepathy\"\n");
    assert_eq!(p[0].key, "agents.x.kind");
    assert!(p[0].message.contains("unknown agent kind"), "{p:?}");
    assert!(p[0].message.contains("echo, hume, livekit"), "{p:?}");
}

#[test]
fn numbers_normalise() {
    assert_eq!(
        normalize_number("+44 (0) 78-46.855904"),
        "440784685590 4".replace(' ', "")
    );
    assert_eq!(normalize_number("tel:+447846855904"), "447846855904");
}

#[test]
fn embedded_default_has_a_random_demo_password() {
    let a = embedded_default();
    let b = embedded_default();
    let pa = &a.trunks[0].credentials.as_ref().unwrap().password;
    let pb = &b.trunks[0].credentials.as_ref().unwrap().password;
    assert!(pa.len() >= 16);
    assert_ne!(pa, pb);
}

#[test]
fn the_shipped_example_config_is_valid() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/sipbridge.example.toml");
    let env = |k: &str| {
        matches!(k, "SIPBRIDGE_TRUNK_PASSWORD" | "TWILIO_AUTH_TOKEN")
            .then(|| "example-secret".to_string())
    };
    let c = match load_file(&path, &env) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(c.trunks.len(), 2);
    assert!(c.trunks[1].credentials.is_none());
}

/// The commented-out agent examples are valid once uncommented, with their variables set.
#[test]
fn the_example_agent_tables_are_valid_uncommented() {
    let text = include_str!("../../deploy/sipbridge.example.toml");
    let env = |k: &str| {
        matches!(
            k,
            "SIPBRIDGE_TRUNK_PASSWORD" | "TWILIO_AUTH_TOKEN" | "OPENAI_API_KEY"
        )
        .then(|| "example-secret".to_string())
    };
    let start = text
        .find("#[agents.assistant]")
        .expect("the openai example");
    let block: String = text[start..]
        .lines()
        .take_while(|l| l.starts_with('#') || l.starts_with(' '))
        .filter(|l| l.starts_with('#'))
        .map(|l| format!("{}\n", &l[1..]))
        .collect();
    let c = match parse(&block, "example", &env) {
        Ok(c) => c,
        Err(e) => panic!("{e}\n{block}"),
    };
    let Some(AgentSpec::Openai(spec)) = c.agents.get("assistant") else {
        panic!("{block}")
    };
    assert!(spec.instructions.contains("Acme"));
    assert_eq!(spec.tools.len(), 2);
}

#[test]
fn public_addr_must_make_a_sip_uri() {
    for bad in ["gw example.net", "<gw>", "gw:port:x"] {
        let p = problems(&format!("[sip]\npublic_addr = \"{bad}\"\n"));
        assert_eq!(p[0].key, "sip.public_addr", "{bad}");
    }
    let c = parse_ok("[sip]\npublic_addr = \"gw.example.net:5080\"\n");
    assert_eq!(c.sip.public_addr.as_deref(), Some("gw.example.net:5080"));
}

#[test]
fn key_of_another_agent_kind_is_named_with_its_line() {
    let p = problems("[agents.e]\nkind = \"echo\"\n\nroom_prefix = \"x-\"\n");
    assert_eq!(p[0].key, "agents.e.room_prefix");
    assert_eq!(p[0].line, 4);
    assert!(
        p[0].message.contains("not valid for kind = \"echo\""),
        "{p:?}"
    );
    let p = problems("[agents.e]\nkind = \"echo\"\nroom_prefx = \"x-\"\n");
    assert!(p[0].message.contains("unknown field"), "{p:?}");
}

#[test]
fn http_and_twilio_keys_are_read_and_checked() {
    let env = |k: &str| match k {
        "ADMIN" => Some("admin-secret".to_string()),
        "TW" => Some("twilio-secret".to_string()),
        _ => None,
    };
    let c = parse(
        "[http]\nauth_token_env = \"ADMIN\"\n[twilio]\nauth_token_env = \"TW\"\n\
         public_url = \"https://gw.example.com/sb/\"\nedge = \"frankfurt\"\n",
        "t.toml",
        &env,
    )
    .unwrap();
    assert_eq!(c.http.auth_token.as_deref(), Some("admin-secret"));
    assert_eq!(c.twilio.auth_token.as_deref(), Some("twilio-secret"));
    assert_eq!(
        c.twilio.public_url.as_deref(),
        Some("https://gw.example.com/sb")
    );
    assert_eq!(c.twilio.edge.as_deref(), Some("frankfurt"));
    // Secrets never show through Debug.
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("admin-secret") && !debug.contains("twilio-secret"),
        "{debug}"
    );

    let p = problems(
        "[http]\nauth_token_env = \"UNSET_FOR_TEST\"\n[twilio]\npublic_url = \"gw.example.com\"\n\
         edge = \"london\"\n",
    );
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        ["http.auth_token_env", "twilio.public_url", "twilio.edge"],
        "{p:?}"
    );
    assert_eq!(p[2].line, 5);
    assert!(p[2].message.contains("dublin"), "{p:?}");
    let p = problems("[twilio]\npublic_url = \"https://gw.example.com/x?y=1\"\n");
    assert_eq!(p[0].key, "twilio.public_url");
}

#[test]
fn nonce_secret_comes_from_the_environment_and_is_long_enough() {
    const LONG: &str = "0123456789abcdef0123456789abcdef";
    let env = |k: &str| match k {
        "NONCE" => Some(LONG.to_string()),
        "SHORT" => Some("too-short".to_string()),
        _ => None,
    };
    let c = parse("[sip]\nnonce_secret_env = \"NONCE\"\n", "t.toml", &env).unwrap();
    assert_eq!(c.sip.nonce_secret, Some(NonceSecret(LONG.into())));
    assert!(!format!("{c:?}").contains(LONG), "the secret never shows");
    assert_eq!(parse_ok("").sip.nonce_secret, None, "random per process");

    for (var, says) in [("SHORT", "fewer than 32"), ("UNSET", "is not set")] {
        let text = format!("[sip]\nrealm = \"r\"\nnonce_secret_env = \"{var}\"\n");
        let e = parse(&text, "t.toml", &env).unwrap_err();
        let p = &e.problems[0];
        assert_eq!(
            (p.key.as_str(), p.line),
            ("sip.nonce_secret_env", 3),
            "{p:?}"
        );
        assert!(p.message.contains(says), "{p:?}");
        assert!(!p.message.contains("too-short"), "{p:?}");
    }
}

#[test]
fn twilio_sip_host_is_a_host_or_host_port() {
    let c = parse_ok("[twilio]\nsip_host = \"sip.example.com:5080\"\n");
    assert_eq!(c.twilio.sip_host.as_deref(), Some("sip.example.com:5080"));
    let p = problems("[twilio]\nedge = \"dublin\"\nsip_host = \"sip:proxy;lr\"\n");
    assert_eq!((p[0].key.as_str(), p[0].line), ("twilio.sip_host", 3));
}

#[test]
fn limits_have_fail2ban_defaults_and_checked_values() {
    let d = parse_ok("").limits;
    assert_eq!((d.rate, d.burst, d.auth_failures), (20.0, 40.0, 10));
    assert_eq!((d.ban.as_secs(), d.auth_window.as_secs()), (600, 600));
    assert_eq!(d.max_setup, 200);
    let c = parse_ok(
        "[limits]\nsource_rate = 5.5\nsource_burst = 10\nban_secs = 60\nauth_failures = 0\n\
         auth_window_secs = 30\nmax_sources = 1000\nmax_calls_in_setup = 7\n",
    );
    assert_eq!(c.limits.max_setup, 7);
    let l = c.limits;
    assert_eq!((l.rate, l.burst, l.auth_failures), (5.5, 10.0, 0));
    assert_eq!(
        (l.ban.as_secs(), l.auth_window.as_secs(), l.max_sources),
        (60, 30, 1000)
    );
    let p =
        problems("[limits]\nsource_rate = -1.0\nsource_burst = 0\nban_secs = 0\nmax_sources = 3\nmax_calls_in_setup = 0\n");
    let keys: Vec<(&str, usize)> = p.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert_eq!(
        keys,
        [
            ("limits.source_rate", 2),
            ("limits.source_burst", 3),
            ("limits.ban_secs", 4),
            ("limits.max_sources", 5),
            ("limits.max_calls_in_setup", 6)
        ]
    );
    let p = problems("[limits]\nsource_rat = 3\n");
    assert!(p[0].message.contains("source_rate"), "{p:?}");
}

#[test]
fn tcp_listens_beside_udp_unless_turned_off() {
    let c = parse_ok("[sip]\nlisten = \"127.0.0.2:5070\"\n");
    assert_eq!(c.sip.streams.tcp, Some("127.0.0.2:5070".parse().unwrap()));
    assert_eq!(c.sip.streams.tls, None);
    let c = parse_ok("[sip]\nlisten_tcp = \"off\"\n");
    assert_eq!(c.sip.streams.tcp, None);
    let p = problems("[sip]\nlisten_tcp = \"5060\"\n[limits]\ntcp_connections = 0\n");
    let keys: Vec<_> = p.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert_eq!(keys, [("sip.listen_tcp", 2), ("limits.tcp_connections", 4)]);
}

#[test]
fn media_reactors_default_to_one_per_core_but_one_and_are_bounded() {
    let c = parse_ok("");
    assert_eq!(c.media.reactors, crate::engine::default_reactors());
    assert!(c.media.reactors >= 1);
    assert_eq!(parse_ok("[media]\nreactors = 3\n").media.reactors, 3);
    for bad in ["0", "1000"] {
        let p = problems(&format!(
            "[media]\nrtp_ports = \"10000-20000\"\nreactors = {bad}\n"
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(
            (p[0].key.as_str(), p[0].line),
            ("media.reactors", 3),
            "{p:?}"
        );
    }
}
