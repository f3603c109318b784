//! `[agents.NAME] kind = "hume"`: defaults, every key, and the problems named with their line.

use std::time::Duration;

use sipbridge::config::{self, AgentSpec, HumeSpec, Problem};

fn env(k: &str) -> Option<String> {
    (k == "HUME_API_KEY").then(|| "secret-key".to_string())
}

fn hume(table: &str) -> Result<HumeSpec, Vec<Problem>> {
    let text = format!("[agents.evi]\nkind = \"hume\"\n{table}");
    match config::parse(&text, "t.toml", &env) {
        Ok(c) => match c.agents.get("evi") {
            Some(AgentSpec::Hume(h)) => Ok(h.clone()),
            other => panic!("{other:?}"),
        },
        Err(e) => Err(e.problems),
    }
}

#[test]
fn defaults_need_only_the_key() {
    let h = hume("api_key_env = \"HUME_API_KEY\"\n").unwrap();
    assert_eq!(h.url, "wss://api.hume.ai/v0/evi/chat");
    assert_eq!(h.api_key, "secret-key");
    assert_eq!(h.config_id, None);
    assert_eq!(h.config_version, None);
    assert!(h.resume);
    assert!(!h.verbose_transcription);
    assert_eq!(h.connect_timeout, Duration::from_secs(10));
    assert_eq!(h.session_limit, Duration::from_secs(1800));
    assert_eq!(h.audio_batch_ms, 20);
    // The key never shows in a debug print of the config.
    let dbg = format!("{h:?}");
    assert!(
        !dbg.contains("secret-key") && dbg.contains("redacted"),
        "{dbg}"
    );
}

#[test]
fn every_key_is_read() {
    let h = hume(
        "url = \"ws://127.0.0.1:9000/v0/evi/chat\"\napi_key_env = \"HUME_API_KEY\"\n\
         config_id = \"cfg-1\"\nconfig_version = 4\nresume = false\n\
         verbose_transcription = true\nconnect_timeout_secs = 3\nsession_limit_secs = 600\n\
         audio_batch_ms = 60\n",
    )
    .unwrap();
    assert_eq!(h.url, "ws://127.0.0.1:9000/v0/evi/chat");
    assert_eq!(h.config_id.as_deref(), Some("cfg-1"));
    assert_eq!(h.config_version, Some(4));
    assert!(!h.resume);
    assert!(h.verbose_transcription);
    assert_eq!(h.connect_timeout, Duration::from_secs(3));
    assert_eq!(h.session_limit, Duration::from_secs(600));
    assert_eq!(h.audio_batch_ms, 60);
}

fn problem(table: &str) -> Problem {
    let p = hume(table).unwrap_err();
    p.into_iter().next().unwrap()
}

#[test]
fn problems_name_the_key_and_line() {
    let p = problem("url = \"https://api.hume.ai\"\napi_key_env = \"HUME_API_KEY\"\n");
    assert_eq!((p.key.as_str(), p.line), ("agents.evi.url", 3));
    assert!(p.message.contains("ws://"), "{}", p.message);

    let p = problem("");
    assert_eq!(p.key, "agents.evi");
    assert!(p.message.contains("api_key_env"), "{}", p.message);

    let p = problem("api_key_env = \"NOT_SET\"\n");
    assert_eq!(p.key, "agents.evi.api_key_env");
    assert!(p.message.contains("NOT_SET is not set"), "{}", p.message);

    let base = "api_key_env = \"HUME_API_KEY\"\n";
    for (line, key, needle) in [
        ("audio_batch_ms = 30", "agents.evi.audio_batch_ms", "20, 40"),
        (
            "audio_batch_ms = 120",
            "agents.evi.audio_batch_ms",
            "20, 40",
        ),
        (
            "session_limit_secs = 3600",
            "agents.evi.session_limit_secs",
            "1800",
        ),
        (
            "session_limit_secs = 1",
            "agents.evi.session_limit_secs",
            "between 2",
        ),
        (
            "connect_timeout_secs = 0",
            "agents.evi.connect_timeout_secs",
            "between 1",
        ),
        (
            "config_version = -1",
            "agents.evi.config_version",
            "0 or more",
        ),
        (
            "room_prefix = \"x\"",
            "agents.evi.room_prefix",
            "not valid for kind",
        ),
    ] {
        let p = problem(&format!("{base}{line}\n"));
        assert_eq!(p.key, key, "{line}");
        assert_eq!(p.line, 4, "{line}");
        assert!(p.message.contains(needle), "{line}: {}", p.message);
    }
}

#[test]
fn a_hume_agent_can_be_routed_to() {
    let text = "[agents.evi]\nkind = \"hume\"\napi_key_env = \"HUME_API_KEY\"\n\
                [[routes]]\nagent = \"evi\"\n";
    let c = config::parse(text, "t.toml", &env).unwrap();
    assert_eq!(c.routes[0].agent, "evi");
    let agents = sipbridge::call::build_agents(&c);
    assert_eq!(agents["evi"].kind(), "hume");
    let policy = agents["evi"].setup_policy();
    assert_eq!(policy.ring_after, Duration::ZERO);
    assert_eq!(policy.timeout, Duration::from_secs(10));
    assert_eq!((policy.timeout_status, policy.error_status), (503, 503));
}
