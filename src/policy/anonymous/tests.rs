use crate::error::Detail;
use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::json;

use super::*;
use crate::policy::compile::{Source, compile};
use crate::policy::eval::{Input, anonymous_rules, count, decide, lends_credential};
use crate::policy::metadata::{Dialect, normalise};
use crate::policy::{Quotas, Snapshot};
use crate::route::{Operation, RegRoute};
use crate::token::{Identity, TokenKind};

const ANON: &str = r#"
version = 1
[realms.demo]
providers = ["openid-connect", "default"]
[realms.demo.anonymous]
redirect_hosts = ["app.example.com"]
[realms.demo.anonymous.quota]
creates = 2
window = "1h"
[realms.demo.anonymous.realm_quota]
creates = 3
window = "1h"
"#;

fn snap(text: &str) -> Result<Snapshot, Vec<String>> {
    let text = match text.contains("version") {
        true => text.to_owned(),
        false => format!("version = 1\n{text}"),
    };
    let src = Source {
        path: PathBuf::from("p.toml"),
        text,
    };
    compile(&[src], 1).map_err(|e| e.iter().map(ToString::to_string).collect())
}

fn route(op: Operation, provider: &str) -> RegRoute {
    RegRoute {
        realm: "demo".into(),
        provider: provider.into(),
        client_id: (op != Operation::Create).then(|| "c1".into()),
        operation: op,
    }
}

fn anonymous() -> Identity {
    Identity::anonymous()
}

async fn decide_body(
    s: &Snapshot,
    r: &RegRoute,
    id: &Identity,
    body: serde_json::Value,
    ip: &str,
    q: &Quotas,
) -> crate::policy::Decision {
    let d = Dialect::of(&r.provider).unwrap();
    let md = normalise(d, body.as_object().unwrap(), r.operation == Operation::Create).unwrap();
    let input = Input {
        route: r,
        identity: id,
        metadata: Some((&md, d)),
        peer: ip.parse::<IpAddr>().unwrap(),
        current: None,
    };
    let mut d = decide(s, &input, false);
    count(&mut d, q).await;
    d
}

fn public(redirect: &str) -> serde_json::Value {
    json!({"client_name": "MCP Inspector", "redirect_uris": [redirect], "token_endpoint_auth_method": "none",
           "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]})
}

fn with(mut body: serde_json::Value, key: &str, value: serde_json::Value) -> serde_json::Value {
    body[key] = value;
    body
}

#[tokio::test]
async fn safe_public_client_passes_with_defaults() {
    let s = snap(ANON).unwrap();
    let q = Quotas::default();
    let r = route(Operation::Create, "openid-connect");
    for uri in [
        "http://127.0.0.1:33418/callback",
        "http://[::1]:9/cb",
        "https://app.example.com/cb",
    ] {
        let d = decide_body(&s, &r, &anonymous(), public(uri), "10.0.0.1", &q).await;
        assert!(d.refusal.is_none(), "{uri}: {:?}", d.refusal);
        assert!(d.quota_slot.is_some(), "address and realm quota count");
        q.refund(d.quota_slot.unwrap()).await;
    }
    let id = anonymous();
    let input = Input {
        route: &r,
        identity: &id,
        metadata: None,
        peer: "10.0.0.1".parse().unwrap(),
        current: None,
    };
    assert!(lends_credential(&s, &input));
}

#[tokio::test]
async fn unsafe_metadata_refused_by_default_rules() {
    let s = snap(ANON).unwrap();
    let q = Quotas::default();
    let r = route(Operation::Create, "openid-connect");
    let base = public("http://127.0.0.1:1/cb");
    let cases: Vec<(serde_json::Value, Reason, &str)> = vec![
        (
            public("https://evil.example/cb"),
            Reason::RedirectUriNotAllowed,
            "redirect_hosts",
        ),
        (
            public("http://app.example.com/cb"),
            Reason::RedirectUriNotAllowed,
            "redirect_hosts",
        ),
        (
            json!({"redirect_uris": ["http://127.0.0.1:1/cb"]}),
            Reason::AuthMethodNotAllowed, // RFC 7591's default is client_secret_basic
            "token_endpoint_auth_methods",
        ),
        (
            with(base.clone(), "token_endpoint_auth_method", json!("client_secret_basic")),
            Reason::AuthMethodNotAllowed,
            "token_endpoint_auth_methods",
        ),
        (
            with(base.clone(), "grant_types", json!(["client_credentials"])),
            Reason::GrantTypeNotAllowed,
            "grant_types",
        ),
        (
            with(base.clone(), "jwks_uri", json!("https://attacker.example/jwks")),
            Reason::FieldForbidden,
            "forbidden_fields",
        ),
        (
            with(
                base.clone(),
                "sector_identifier_uri",
                json!("https://attacker.example/s"),
            ),
            Reason::FieldForbidden,
            "forbidden_fields",
        ),
        (
            with(base.clone(), "request_uris", json!(["https://attacker.example/r"])),
            Reason::FieldForbidden,
            "forbidden_fields",
        ),
        (
            with(
                base.clone(),
                "backchannel_logout_uri",
                json!("https://attacker.example/bc"),
            ),
            Reason::FieldForbidden,
            "forbidden_fields",
        ),
        (
            // A URL Keycloak would call on an internal address: the server URL rule, first.
            with(base.clone(), "backchannel_logout_uri", json!("http://169.254.169.254/")),
            Reason::ServerUrlNotAllowed,
            "server_urls",
        ),
        (
            with(base.clone(), "client_name", json!("<script>")),
            Reason::ClientNamePattern,
            "client_name_pattern",
        ),
        (
            with(
                base.clone(),
                "redirect_uris",
                json!([
                    "http://127.0.0.1:1/a",
                    "http://127.0.0.1:1/b",
                    "http://127.0.0.1:1/c",
                    "http://127.0.0.1:1/d",
                    "http://127.0.0.1:1/e",
                    "http://127.0.0.1:1/f"
                ]),
            ),
            Reason::TooManyRedirectUris,
            "redirect_hosts",
        ),
    ];
    for (body, reason, rule) in cases {
        let d = decide_body(&s, &r, &anonymous(), body.clone(), "10.0.0.2", &q).await;
        let refusal = d.refusal.unwrap_or_else(|| panic!("{body} passed"));
        assert_eq!(refusal.reason, reason, "{body}");
        assert!(
            d.rule
                .as_ref()
                .map(crate::error::RuleId::as_str)
                .unwrap_or_default()
                .ends_with(rule),
            "{body}: {:?}",
            d.rule
        );
        assert!(d.quota_slot.is_none(), "a refused create takes no quota");
    }
    let logout = with(
        base.clone(),
        "post_logout_redirect_uris",
        json!(["https://evil.example/bye"]),
    );
    let d = decide_body(&s, &r, &anonymous(), logout, "10.0.0.2", &q).await;
    let refusal = d.refusal.unwrap();
    // A URL Keycloak sends browsers to: the anonymous redirect rules, as the browser URL rule.
    assert_eq!(refusal.reason, Reason::BrowserUrlNotAllowed, "{refusal:?}");
    assert!(
        refusal.details["field"]
            .as_str()
            .unwrap()
            .starts_with("post_logout_redirect_uris"),
        "{refusal:?}"
    );
    // Empty values of forbidden members do nothing, and `+` is "the redirect URIs": Keycloak's
    // own answers hold such values, and clients send them back on update.
    let echo = with(
        with(
            with(
                base,
                "post_logout_redirect_uris",
                json!(["+", "http://127.0.0.1:1/bye"]),
            ),
            "request_uris",
            json!([]),
        ),
        "response_types",
        json!(["code", "none"]),
    );
    let d = decide_body(&s, &r, &anonymous(), echo, "10.0.0.2", &q).await;
    assert!(d.refusal.is_none(), "{:?}", d.refusal);
}

#[tokio::test]
async fn quotas_per_address_and_per_realm() {
    let s = snap(ANON).unwrap();
    let q = Quotas::default();
    let r = route(Operation::Create, "openid-connect");
    let ok = async |ip: &str| decide_body(&s, &r, &anonymous(), public("http://127.0.0.1:1/cb"), ip, &q).await;
    assert!(ok("10.0.0.1").await.refusal.is_none());
    let second = ok("10.0.0.1").await;
    assert!(second.refusal.is_none());
    assert_eq!(second.anonymous_realm_used, Some(2));
    let third = ok("10.0.0.1").await.refusal.unwrap();
    assert_eq!(third.reason, Reason::QuotaExceeded);
    assert_eq!(third.details["quota"], "address");
    assert!(
        third.description.contains("initial access token"),
        "{}",
        third.description
    );
    assert!(ok("10.0.0.2").await.refusal.is_none(), "the realm's third create");
    let realm = ok("10.0.0.3").await.refusal.unwrap();
    assert_eq!(realm.details["quota"], "realm");
    assert!(realm.retry_after.is_some());
    // The realm-wide refusal took no slot at the address either: after two creates elsewhere
    // leave the window, 10.0.0.3 still has both of its own.
    assert_eq!(q.local_len(), 3, "two addresses and the realm counted; 10.0.0.3 not");
}

#[tokio::test]
async fn anonymous_rules_are_never_shadowed() {
    let text = ANON.replace("[realms.demo]\n", "[realms.demo]\nmode = \"shadow\"\n");
    let s = snap(&text).unwrap();
    let q = Quotas::default();
    let r = route(Operation::Create, "openid-connect");
    let d = decide_body(&s, &r, &anonymous(), public("https://evil.example/cb"), "10.0.0.9", &q).await;
    assert_eq!(d.refusal.map(|r| r.reason), Some(Reason::RedirectUriNotAllowed));
    let body = public("https://evil.example/cb");
    let md = normalise(Dialect::Rfc7591, body.as_object().unwrap(), true).unwrap();
    let id = anonymous();
    let input = Input {
        route: &r,
        identity: &id,
        metadata: Some((&md, Dialect::Rfc7591)),
        peer: "10.0.0.9".parse().unwrap(),
        current: None,
    };
    let mut d = decide(&s, &input, true);
    count(&mut d, &q).await;
    assert!(d.refusal.is_some(), "global shadow mode too");
}

#[tokio::test]
async fn other_providers_and_realms_stay_closed() {
    let s = snap(ANON).unwrap();
    let q = Quotas::default();
    let r = route(Operation::Create, "default");
    let d = decide_body(&s, &r, &anonymous(), json!({"clientId": "x"}), "10.0.0.1", &q).await;
    let refusal = d.refusal.unwrap();
    assert_eq!(refusal.reason, Reason::AnonymousNotAllowed);
    assert!(
        refusal.description.contains("openid-connect"),
        "{}",
        refusal.description
    );
    let mut other = route(Operation::Create, "openid-connect");
    other.realm = "other".into();
    let d = decide_body(
        &s,
        &other,
        &anonymous(),
        public("http://127.0.0.1:1/cb"),
        "10.0.0.1",
        &q,
    )
    .await;
    let refusal = d.refusal.unwrap();
    assert_eq!(
        (refusal.reason, refusal.status().as_u16(), refusal.oauth_error()),
        (Reason::AnonymousNotAllowed, 403, "insufficient_scope")
    );
    assert!(
        refusal.description.contains("initial access token"),
        "{}",
        refusal.description
    );
}

#[tokio::test]
async fn registration_access_updates_held_to_the_same_rules() {
    let s = snap(ANON).unwrap();
    let q = Quotas::default();
    let r = route(Operation::Update, "openid-connect");
    let rat = Identity {
        kind: TokenKind::RegistrationAccess,
        ..Identity::anonymous()
    };
    let body = with(public("https://evil.example/cb"), "client_id", json!("c1"));
    let d = decide_body(&s, &r, &rat, body, "10.0.0.1", &q).await;
    assert_eq!(d.refusal.map(|r| r.reason), Some(Reason::RedirectUriNotAllowed));
    let off = snap(&ANON.replace("redirect_hosts =", "registration_access = false\nredirect_hosts =")).unwrap();
    let body = json!({"client_id": "c1", "redirect_uris": ["https://evil.example/cb"]});
    assert!(
        decide_body(&off, &r, &rat, body, "10.0.0.1", &q)
            .await
            .refusal
            .is_none()
    );
    let input = Input {
        route: &r,
        identity: &rat,
        metadata: None,
        peer: "10.0.0.1".parse().unwrap(),
        current: None,
    };
    assert!(anonymous_rules(off.for_realm("demo"), &input).is_none());
    assert!(anonymous_rules(s.for_realm("demo"), &input).is_some());
}

#[test]
fn compile_errors() {
    for (text, key) in [
        ("[default.anonymous]\n", "default.anonymous"),
        ("[realms.demo.anonymous]\nloopback = false\n", "realms.demo.anonymous"),
        (
            "[realms.demo.anonymous]\ngrant_types = [\"magic\"]\n",
            "anonymous.grant_types",
        ),
        (
            "[realms.demo.anonymous]\nforbidden_fields = [\"jwks_url\"]\n",
            "anonymous.forbidden_fields",
        ),
        (
            "[realms.demo.anonymous]\nredirect_hosts = [\"https://x.example\"]\n",
            "anonymous.redirect_hosts",
        ),
        (
            "[realms.demo.anonymous.quota]\nmode = \"shadow\"\n",
            "anonymous.quota.mode",
        ),
        (
            "[realms.demo.anonymous.realm_quota]\ncreates = 0\n",
            "anonymous.realm_quota.creates",
        ),
        (
            "[realms.demo.anonymous]\nclient_name_pattern = \"(\"\n",
            "anonymous.client_name_pattern",
        ),
        ("[realms.demo.anonymous]\nscope_member = \"ignore\"\n", "scope_member"),
        (
            "[realms.demo.cors]\norigins = [\"https://app.example.com/path\"]\n",
            "cors.origins",
        ),
        ("[realms.demo.cors]\norigins = [\"*\"]\n", "cors.origins"),
    ] {
        let errors = snap(text).unwrap_err();
        assert!(errors.iter().any(|e| e.contains(key)), "{text}: {errors:?}");
    }
    let off = snap("[realms.demo.anonymous]\nenabled = false\n").unwrap();
    assert!(off.for_realm("demo").anonymous.is_none());
    let s = snap("[default.cors]\norigins = [\"https://App.example.com\", \"http://localhost:6274\"]\n").unwrap();
    let c = s.for_realm("any").cors.as_ref().unwrap();
    assert!(c.allows("https://app.example.com") && c.allows("http://localhost:6274"));
    assert!(!c.allows("http://localhost:1"));
}

#[test]
fn body_preparation_drops_scope_and_unknown_members() {
    let s = snap(ANON).unwrap();
    let a = s.for_realm("demo").anonymous.clone().unwrap();
    let mut body = json!({"client_name": "x", "scope": "openid mcp:tools", "resource": "https://mcp.example/"})
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(a.prepare(&mut body, "demo").unwrap(), ["scope", "resource"]);
    assert_eq!(body.len(), 1);
    let keep = AnonymousPolicy {
        scope_member: ScopeMember::Keep,
        drop_unknown: false,
        ..a.clone()
    };
    let mut body = json!({"scope": "openid", "resource": "r"}).as_object().unwrap().clone();
    assert!(keep.prepare(&mut body, "demo").unwrap().is_empty());
    assert_eq!(body.len(), 2);
    let refuse = AnonymousPolicy {
        scope_member: ScopeMember::Refuse,
        ..a
    };
    let e = refuse.prepare(&mut body, "demo").unwrap_err();
    assert_eq!(e.reason, Reason::ScopeMemberRefused);
    assert!(e.description.contains("keycloak#50807"));
}

#[test]
fn refusals_wear_keycloaks_face_with_the_fix_in_the_description() {
    let s = snap(ANON).unwrap();
    let a = s.for_realm("demo").anonymous.as_ref();
    let r = Refusal::new(Reason::RedirectUriNotAllowed, "x").detail(Detail::Value, "https://evil.example/cb");
    let f = face(r, "demo", a);
    assert_eq!((f.status().as_u16(), f.oauth_error()), (403, "insufficient_scope"));
    for needle in ["https://evil.example/cb", "127.0.0.1", "RFC 8252", "app.example.com"] {
        assert!(f.description.contains(needle), "{needle}: {}", f.description);
    }
    let body = face(Refusal::new(Reason::BodyNotJson, "x"), "demo", a);
    assert_eq!(
        (body.status().as_u16(), body.oauth_error()),
        (400, "invalid_client_metadata")
    );
    let down = face(Refusal::new(Reason::RegistrarUnavailable, "x"), "demo", a);
    assert_eq!(down.status().as_u16(), 503);
    let quota = face(Refusal::new(Reason::QuotaExceeded, "x; try again in 3s"), "demo", a);
    assert_eq!(quota.status().as_u16(), 403);
}
