//! Foundation: proxying, headers, limits and upstream failures, against stand-in upstreams.

mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn other_paths_are_forwarded_untouched() {
    let up = upstream(|s| async move { json_response(200, &json!({"path": s.uri})) }).await;
    let gw = gateway(settings(&up.url(), None)).await;
    let a = send(req(
        "GET",
        gw.addr,
        "/realms/demo/.well-known/openid-configuration?x=1",
        None,
        None,
    ))
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.json()["path"],
        "/realms/demo/.well-known/openid-configuration?x=1"
    );
    assert_eq!(up.hits(), 1);
    gw.shutdown().await;
}
