//! deploy/sipbridge.service passes `systemd-analyze verify` (which needs no running systemd)
//! and keeps the settings the gateway relies on. `verify` insists that ExecStart's binary
//! exists, so it checks a copy whose paths point at the binary this build produced.

use std::process::Command;

const UNIT: &str = include_str!("../deploy/sipbridge.service");

fn directive(key: &str) -> Vec<&'static str> {
    UNIT.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let dir = std::env::temp_dir().join(format!("sipbridge-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unit = dir.join("sipbridge.service");
    std::fs::write(
        &unit,
        UNIT.replace("/usr/local/bin/sipbridge", env!("CARGO_BIN_EXE_sipbridge")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze not found: the test command installs Debian's systemd package");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on unknown keys and bad values, only warning: any line about this unit
    // is a failure.
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("sipbridge.service"))
        .collect();
    assert!(out.status.success() && about_unit.is_empty(), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_unit_keeps_what_the_gateway_relies_on() {
    assert_eq!(directive("Type"), ["notify"]);
    assert_eq!(directive("NotifyAccess"), ["main"]);
    assert_eq!(directive("KillSignal"), ["SIGTERM"]);
    assert_eq!(directive("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(directive("User"), ["sipbridge"]);
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ] {
        assert_eq!(directive(key), [value], "{key}");
    }
    let secs = |k: &str| -> u64 { directive(k)[0].parse().unwrap() };
    assert!(secs("WatchdogSec") >= 10);
    // The default grace (30 s) plus the BYE wait must fit before systemd kills.
    assert!(secs("TimeoutStopSec") > 30 + 5);
    // One socket per RTP port of the default 10000-20000 range, plus headroom.
    assert!(secs("LimitNOFILE") > 10_001 * 2);
}
