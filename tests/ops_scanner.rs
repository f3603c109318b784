//! SIPVicious, the scanner every public port 5060 meets (`sipvicious` from PyPI, through
//! scripts/sipvicious), against a real gateway process with a digest trunk open to any
//! address: svmap sees a SIP device and nothing about it, svwar enumerates no extension by
//! INVITE, REGISTER or OPTIONS, and the OPTIONS sweep gets its source banned.

mod common;
mod ops_support;

use common::python_script;
use ops_support::*;

/// Runs `scripts/sipvicious TOOL ARGS`; (exit success, stdout + stderr).
fn sipvicious(tool: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec![tool];
    all.extend_from_slice(args);
    python_script("sipvicious", &all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipvicious_maps_a_device_but_enumerates_no_user() {
    let gw = open_trunk_gateway("").await;
    let port = gw.sip.port().to_string();
    let target = ["127.0.0.1", "-p", port.as_str()];
    let run = |tool: &'static str, args: Vec<&str>| {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            sipvicious(tool, &args)
        })
    };

    let (ok, out) = run("svmap", target.to_vec()).await.unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("127.0.0.1:{port}")),
        "svmap sees the port:\n{out}"
    );
    assert!(out.contains("unknown"), "and no product name:\n{out}");

    for method in ["INVITE", "REGISTER"] {
        let mut args = vec!["--force", "-e100-300", "-m", method];
        args.extend(target);
        let (_, out) = run("svwar", args).await.unwrap();
        assert!(out.contains("found nothing"), "svwar by {method}:\n{out}");
    }
    let bans = get(gw.http, "/bans").await.json();
    assert_eq!(bans["bans"].as_array().map(Vec::len), Some(0), "{bans}");

    // The OPTIONS sweep runs past the stranger budget: banned, so it hears nothing more.
    let mut args = vec!["--force", "-e100-300", "-m", "OPTIONS"];
    args.extend(target);
    let (_, out) = run("svwar", args).await.unwrap();
    assert!(out.contains("found nothing"), "svwar by OPTIONS:\n{out}");
    let bans = get(gw.http, "/bans").await.json();
    assert_eq!(bans["bans"][0]["ip"], "127.0.0.1", "{bans}");
    assert_eq!(bans["bans"][0]["reason"], "rate", "{bans}");
}
