//! Policy reload through the running gateway: valid → broken → valid, Kubernetes ConfigMap
//! symlink swaps, SIGHUP, and requests that each see one whole policy while it changes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dcr_gateway::Gateway;
use dcr_gateway::policy::store::Trigger;
use serde_json::json;
use support::policy_kit::*;
use support::*;

const KC_DEFAULT: &str = "/realms/demo/clients-registrations/default";

/// Allows the `default` provider in realm demo.
const ALLOW: &str = r#"
version = 1
[realms.demo]
providers = ["openid-connect", "default"]
"#;

/// Forbids the `default` provider in realm demo.
const FORBID: &str = r#"
version = 1
[realms.demo]
providers = ["openid-connect"]
"#;

/// What realm demo answers to a create on the `default` provider by a caller with create-client.
async fn probe(kc: &Kc, gw: &Gateway) -> u16 {
    let token = kc.bearer("demo", "prober", &["create-client"]);
    let body = json!({"clientId": "probe"});
    send(req("POST", gw.addr, KC_DEFAULT, Some(&token), Some(&body)))
        .await
        .status
        .as_u16()
}

/// The reload-related metrics at one moment.
#[derive(Debug, Clone, PartialEq)]
struct ReloadState {
    generation: f64,
    checksums: Vec<String>,
    errors: f64,
    successes: f64,
    last_success: f64,
}

async fn reload_state(gw: &Gateway) -> ReloadState {
    let m = metrics_text(gw).await;
    ReloadState {
        generation: metric(&m, "dcr_gateway_policy_generation", &[]).expect("generation"),
        checksums: series(&m, "dcr_gateway_policy_info")
            .into_iter()
            .filter(|(_, v)| *v == 1.0)
            .flat_map(|(l, _)| l.into_iter().filter(|(k, _)| k == "checksum").map(|(_, v)| v))
            .collect(),
        errors: metric(&m, "dcr_gateway_policy_reloads_total", &[("result", "error")]).unwrap_or(0.0),
        successes: metric(&m, "dcr_gateway_policy_reloads_total", &[("result", "success")]).unwrap_or(0.0),
        last_success: metric(&m, "dcr_gateway_policy_last_reload_success_timestamp_seconds", &[])
            .expect("last success"),
    }
}

/// How long a file change may take to apply: the watcher, else the 300 ms poll of
/// `support::settings`.
const APPLY: Duration = Duration::from_millis(1500);

// --- 3. valid → broken → valid ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_valid_broken_valid_on_a_directory() {
    let kc = Kc::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("demo.toml");
    std::fs::write(&file, ALLOW).unwrap();
    let gw = gateway(settings(&kc.url(), Some(dir.path()))).await;
    assert_eq!(probe(&kc, &gw).await, 201);
    let s1 = reload_state(&gw).await;
    assert_eq!(s1.generation, 1.0);
    assert_eq!(s1.checksums.len(), 1, "{s1:?}");
    assert_eq!(s1.errors, 0.0);

    // valid: the forbidding policy applies, generation 2
    write_policy(&file, FORBID);
    assert!(
        until(APPLY, || async { probe(&kc, &gw).await == 403 }).await,
        "FORBID never applied"
    );
    let s2 = reload_state(&gw).await;
    assert_eq!(s2.generation, 2.0, "{s2:?}");
    assert_eq!(s2.checksums.len(), 1, "{s2:?}");
    assert_ne!(s2.checksums, s1.checksums);
    assert!(s2.last_success > s1.last_success, "{s1:?} {s2:?}");
    assert_eq!(s2.errors, 0.0);

    // broken three ways, each of which would otherwise allow `default` again
    let broken = [
        ("syntax error", format!("{ALLOW}[realms.demo.create\nroles_any = []\n")),
        (
            "unknown key",
            format!("{ALLOW}[realms.demo.create]\ntoken_kindz = [\"bearer\"]\n"),
        ),
        (
            "contradiction",
            format!("{ALLOW}[realms.demo.read]\ntoken_kinds = [\"initial_access\"]\n"),
        ),
    ];
    let mut errors = s2.errors;
    for (what, text) in broken {
        write_policy(&file, &text);
        let seen = until(APPLY, || async { reload_state(&gw).await.errors >= errors + 1.0 }).await;
        assert!(seen, "{what}: no failed reload counted");
        errors += 1.0;
        assert_eq!(probe(&kc, &gw).await, 403, "{what}: behaviour changed");
        let s = reload_state(&gw).await;
        assert_eq!(s.errors, errors, "{what}: {s:?}");
        assert_eq!(s.generation, 2.0, "{what}: {s:?}");
        assert_eq!(s.checksums, s2.checksums, "{what}: {s:?}");
        assert_eq!(s.last_success, s2.last_success, "{what}: {s:?}");
        let r = readyz(&gw).await;
        assert_eq!(r["policy"]["generation"], 2, "{what}: {r}");
        assert_eq!(r["policy"]["checksum"], s2.checksums[0].as_str(), "{what}: {r}");
    }

    // valid again: applies, generation 3, new checksum, newer success time
    write_policy(&file, &format!("# fixed\n{ALLOW}"));
    assert!(
        until(APPLY, || async { probe(&kc, &gw).await == 201 }).await,
        "fix never applied"
    );
    let s3 = reload_state(&gw).await;
    assert_eq!(s3.generation, 3.0, "{s3:?}");
    assert_eq!(s3.checksums.len(), 1, "{s3:?}");
    assert_ne!(s3.checksums, s2.checksums);
    assert_ne!(s3.checksums, s1.checksums);
    assert!(s3.last_success > s2.last_success, "{s2:?} {s3:?}");
    assert_eq!(s3.errors, errors);
    assert_eq!(s3.successes, 3.0, "{s3:?}");
    let r = readyz(&gw).await;
    assert_eq!(r["policy"]["generation"], 3, "{r}");
    assert_eq!(r["policy"]["checksum"], s3.checksums[0].as_str(), "{r}");
    assert_eq!(r["policy"]["source"], dir.path().display().to_string(), "{r}");
    gw.shutdown().await;
}

// --- 4. Kubernetes ConfigMap symlink swap -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_symlink_swap_applies_the_new_policy() {
    use std::os::unix::fs::symlink;
    let kc = Kc::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // What the kubelet writes: dir/..2026_a/demo.toml, ..data -> ..2026_a, demo.toml -> ..data/demo.toml
    std::fs::create_dir(dir.join("..2026_a")).unwrap();
    std::fs::write(dir.join("..2026_a/demo.toml"), ALLOW).unwrap();
    symlink("..2026_a", dir.join("..data")).unwrap();
    symlink("..data/demo.toml", dir.join("demo.toml")).unwrap();
    let gw = gateway(settings(&kc.url(), Some(dir))).await;
    assert_eq!(probe(&kc, &gw).await, 201);
    let before = reload_state(&gw).await;

    // The swap: new timestamped directory, new ..data_tmp link, atomic rename over ..data.
    std::fs::create_dir(dir.join("..2026_b")).unwrap();
    std::fs::write(dir.join("..2026_b/demo.toml"), FORBID).unwrap();
    symlink("..2026_b", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..2026_a")).unwrap();
    assert!(
        until(APPLY, || async { probe(&kc, &gw).await == 403 }).await,
        "the swap never applied"
    );
    // Let any trailing watcher or poll reloads run: nothing more changes, nothing fails.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = reload_state(&gw).await;
    assert_eq!(after.generation, before.generation + 1.0, "{after:?}");
    assert_ne!(after.checksums, before.checksums);
    assert_eq!(after.errors, 0.0, "{after:?}");
    assert_eq!(probe(&kc, &gw).await, 403);
    gw.shutdown().await;
}

// --- 5. SIGHUP --------------------------------------------------------------------------------

/// SIGHUP isolated from the other triggers: the poll interval is an hour, and the policy path is
/// a symlink in `watched/` to a file in `real/`. The watcher watches `watched/` (the parent of
/// the configured path), so editing `real/policy.toml` in place raises no event it sees; only
/// the signal can make the gateway re-read it. The test first shows that nothing else reloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_policy() {
    use tokio::signal::unix::{SignalKind, signal};
    let kc = Kc::start().await;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("watched")).unwrap();
    std::fs::create_dir(tmp.path().join("real")).unwrap();
    let real = tmp.path().join("real/policy.toml");
    let link = tmp.path().join("watched/policy.toml");
    std::fs::write(&real, ALLOW).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let mut s = settings(&kc.url(), Some(&link));
    s.timeouts.policy_poll = Duration::from_secs(3600);
    let gw = gateway(s).await;
    assert_eq!(probe(&kc, &gw).await, 201);

    std::fs::write(&real, FORBID).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(probe(&kc, &gw).await, 201, "something other than SIGHUP reloaded");
    let before = reload_state(&gw).await;
    assert_eq!(before.generation, 1.0);

    // Our own listener first: with it, SIGHUP can never take the default action (terminate).
    let mut hup = signal(SignalKind::hangup()).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(2), hup.recv())
        .await
        .expect("SIGHUP delivered");
    assert!(
        until(APPLY, || async { probe(&kc, &gw).await == 403 }).await,
        "SIGHUP did not reload"
    );
    let after = reload_state(&gw).await;
    assert_eq!(after.generation, 2.0, "{after:?}");
    assert_eq!(after.successes, before.successes + 1.0, "{after:?}");
    assert_ne!(after.checksums, before.checksums);
    gw.shutdown().await;
}

// --- 6. one whole policy per request -----------------------------------------------------------

/// P1 allows the `default` provider but only redirect hosts under a.example; P2 refuses the
/// provider and allows hosts under b.example. A create on `default` for `https://x.b.example/cb`
/// gets 400 redirect_uri_not_allowed from P1 and 403 provider_not_allowed from P2; a request that
/// saw P1's providers with P2's hosts would be allowed and forwarded, which neither can do.
const P1: &str = r#"
version = 1
[realms.demo]
providers = ["openid-connect", "default"]
[realms.demo.metadata.redirect_uris]
hosts = ["*.a.example"]
"#;
const P2: &str = r#"
version = 1
[realms.demo]
providers = ["openid-connect"]
[realms.demo.metadata.redirect_uris]
hosts = ["*.b.example"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_see_one_whole_policy_during_reloads() {
    const FLIPS: u64 = 60;
    const WAVE: usize = 100;
    const MIN_REQUESTS: usize = 400;
    let kc = Kc::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("demo.toml");
    std::fs::write(&file, P1).unwrap();
    let gw = gateway(settings(&kc.url(), Some(dir.path()))).await;
    let token = Arc::new(kc.bearer("demo", "racer", &["create-client"]));
    let body = json!({"clientId": "racer", "redirectUris": ["https://x.b.example/cb"]}).to_string();

    // Flip the file FLIPS times, applying each version at once (the watcher and the poller
    // may apply some first; every version is applied before the next is written).
    let done = Arc::new(AtomicBool::new(false));
    let store = gw.policy();
    let flipper = {
        let done = done.clone();
        let file = file.clone();
        tokio::task::spawn_blocking(move || {
            for i in 0..FLIPS {
                write_policy(&file, if i % 2 == 0 { P2 } else { P1 });
                store.reload(Trigger::Manual);
                std::thread::sleep(Duration::from_millis(10));
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let addr = gw.addr;
    let mut outcomes: Vec<(u16, String)> = Vec::new();
    while !done.load(Ordering::SeqCst) || outcomes.len() < MIN_REQUESTS {
        let mut wave = tokio::task::JoinSet::new();
        for _ in 0..WAVE {
            let token = token.clone();
            let body = body.clone();
            wave.spawn(async move {
                let a = send(raw_req("POST", addr, KC_DEFAULT, Some(&token), body)).await;
                let reason = if a.status.as_u16() < 300 {
                    "forwarded".to_owned()
                } else {
                    a.json()["reason"].as_str().unwrap_or("?").to_owned()
                };
                (a.status.as_u16(), reason)
            });
        }
        while let Some(r) = wave.join_next().await {
            outcomes.push(r.unwrap());
        }
    }
    flipper.await.unwrap();
    let p1 = outcomes
        .iter()
        .filter(|o| *o == &(400, "redirect_uri_not_allowed".to_owned()))
        .count();
    let p2 = outcomes
        .iter()
        .filter(|o| *o == &(403, "provider_not_allowed".to_owned()))
        .count();
    let mixed: Vec<&(u16, String)> = outcomes
        .iter()
        .filter(|o| {
            *o != &(400, "redirect_uri_not_allowed".to_owned()) && *o != &(403, "provider_not_allowed".to_owned())
        })
        .collect();
    eprintln!("{} requests: {p1} saw P1, {p2} saw P2", outcomes.len());
    assert!(mixed.is_empty(), "outcomes no whole policy gives: {mixed:?}");
    assert_eq!(kc.reg_hits(), 0, "a request was forwarded");
    assert!(
        p1 > 0 && p2 > 0,
        "the policy never changed under the requests: {p1} / {p2}"
    );
    let st = reload_state(&gw).await;
    assert_eq!(st.generation, 1.0 + FLIPS as f64, "{st:?}");
    assert_eq!(st.errors, 0.0, "{st:?}");
    gw.shutdown().await;
}
