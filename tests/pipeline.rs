//! The pipeline without a socket: `pipeline::handle` takes any request body, so a test hands it
//! a request and reads the response, as tower's and axum's tests do. The refusals asserted here
//! are also asserted over sockets elsewhere; these show the same answers come from `handle`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;

use dcr_gateway::App;
use dcr_gateway::pipeline::ctx::ConnInfo;
use dcr_gateway::pipeline::handle;
use http::Request;
use http_body_util::BodyExt;
use serde_json::Value;

async fn call(req: Request<http_body_util::Full<bytes::Bytes>>) -> (u16, Value) {
    // Nothing listens on the upstream: a request that were forwarded would answer 502.
    let app = App::new(support::settings("http://127.0.0.1:9", None)).unwrap();
    let conn = ConnInfo {
        peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
        tls: false,
    };
    let resp = handle(app, conn, req).await;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_create_without_a_credential_is_refused_by_handle() {
    let req = Request::post("/realms/demo/clients-registrations/default")
        .header("host", "gw.example")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"{\"clientId\":\"x\"}",
        )))
        .unwrap();
    let (status, body) = call(req).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "insufficient_scope", "{body}");
    assert_eq!(body["reason"], "anonymous_not_allowed", "{body}");
    assert!(body["request_id"].as_str().is_some_and(|id| id.len() == 32), "{body}");
}

#[tokio::test]
async fn an_encoded_slash_in_the_path_is_refused_by_handle() {
    let req = Request::post("/realms/demo/clients-registrations/default%2F..%2Fx")
        .header("host", "gw.example")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let (status, body) = call(req).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["reason"], "path_malformed", "{body}");
}

#[tokio::test]
async fn other_paths_are_forwarded_and_an_unreachable_upstream_is_named() {
    let req = Request::get("/realms/demo/.well-known/openid-configuration")
        .header("host", "gw.example")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let (status, body) = call(req).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["reason"], "upstream_unreachable", "{body}");
}
