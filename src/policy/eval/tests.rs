use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::policy::compile::{Source, compile};
use crate::policy::metadata::normalise;
use crate::token::Claims;

const DEMO: &str = include_str!("../../../policies/demo.toml");

fn snap(text: &str) -> Snapshot {
    let text = if text.contains("version") {
        text.to_owned()
    } else {
        format!("version = 1\n{text}")
    };
    compile(
        &[Source {
            path: PathBuf::from("p.toml"),
            text,
        }],
        1,
    )
    .unwrap()
}

fn route(op: Operation, provider: &str) -> RegRoute {
    RegRoute {
        realm: "demo".into(),
        provider: provider.into(),
        client_id: (op != Operation::Create).then(|| "c1".into()),
        operation: op,
    }
}

fn bearer(roles: &[&str]) -> Identity {
    let claims: Claims = serde_json::from_value(json!({
        "azp": "registrar", "preferred_username": "service-account-registrar", "scope": "profile email",
        "resource_access": {"realm-management": {"roles": roles}}
    }))
    .unwrap();
    Identity {
        kind: TokenKind::Bearer,
        claims: Arc::new(claims),
        kid: Some("k".into()),
        cached: false,
    }
}

fn kind(kind: TokenKind) -> Identity {
    let claims: Claims = serde_json::from_value(json!({"jti": "iat-1"})).unwrap();
    Identity {
        kind,
        claims: Arc::new(claims),
        kid: None,
        cached: false,
    }
}

fn run(s: &Snapshot, route: &RegRoute, id: &Identity, body: Option<serde_json::Value>) -> Decision {
    let md = body.map(|b| {
        let d = Dialect::of(&route.provider).unwrap();
        (
            normalise(d, b.as_object().unwrap(), route.operation == Operation::Create).unwrap(),
            d,
        )
    });
    let input = Input {
        route,
        identity: id,
        metadata: md.as_ref().map(|(m, d)| (m, *d)),
        current: None,
        peer: "127.0.0.1".parse().unwrap(),
    };
    decide(s, &input, false)
}

fn reason(d: &Decision) -> Option<Reason> {
    d.refusal.as_ref().map(|r| r.reason)
}

#[test]
fn keycloak_role_rules() {
    let s = snap(DEMO);
    let create = route(Operation::Create, "default");
    assert_eq!(
        reason(&run(&s, &create, &bearer(&[]), Some(json!({"clientId": "x"})))),
        Some(Reason::MissingRole)
    );
    assert_eq!(
        run(&s, &create, &bearer(&["create-client"]), Some(json!({"clientId": "x"}))).label(),
        "allow"
    );
    assert_eq!(
        run(
            &s,
            &create,
            &bearer(&["manage-clients"]),
            Some(json!({"clientId": "x"}))
        )
        .label(),
        "allow"
    );
    let read = route(Operation::Read, "default");
    assert_eq!(
        reason(&run(&s, &read, &bearer(&["create-client"]), None)),
        Some(Reason::MissingRole)
    );
    assert_eq!(run(&s, &read, &bearer(&["view-clients"]), None).label(), "allow");
    let update = route(Operation::Update, "default");
    assert_eq!(
        reason(&run(
            &s,
            &update,
            &bearer(&["view-clients"]),
            Some(json!({"clientId": "c1"}))
        )),
        Some(Reason::MissingRole)
    );
    assert_eq!(
        run(
            &s,
            &update,
            &bearer(&["manage-clients"]),
            Some(json!({"clientId": "c1"}))
        )
        .label(),
        "allow"
    );
}

#[test]
fn missing_role_names_the_fix() {
    let s = snap(DEMO);
    let d = run(
        &s,
        &route(Operation::Create, "default"),
        &bearer(&[]),
        Some(json!({"clientId": "x"})),
    );
    let r = d.refusal.unwrap();
    assert!(
        r.description.contains("realm-management/create-client"),
        "{}",
        r.description
    );
    assert_eq!(
        r.scope.as_deref(),
        Some("realm-management/create-client realm-management/manage-clients")
    );
    assert_eq!(
        r.rule.as_ref().map(RuleId::as_str),
        Some("realms.demo.create.roles_any")
    );
}

#[test]
fn no_resource_access_is_its_own_reason() {
    let s = snap(DEMO);
    let mut id = bearer(&[]);
    id.claims = Arc::new(Claims {
        azp: Some("registrar".into()),
        ..Claims::default()
    });
    let d = run(
        &s,
        &route(Operation::Create, "default"),
        &id,
        Some(json!({"clientId": "x"})),
    );
    assert_eq!(reason(&d), Some(Reason::RolesNotInToken));
}

#[test]
fn token_kinds_per_operation() {
    let s = snap(DEMO);
    assert_eq!(
        run(
            &s,
            &route(Operation::Create, "openid-connect"),
            &kind(TokenKind::InitialAccess),
            Some(json!({}))
        )
        .label(),
        "allow"
    );
    assert_eq!(
        reason(&run(
            &s,
            &route(Operation::Create, "openid-connect"),
            &kind(TokenKind::Anonymous),
            Some(json!({}))
        )),
        Some(Reason::AnonymousNotAllowed)
    );
    assert_eq!(
        run(
            &s,
            &route(Operation::Delete, "openid-connect"),
            &kind(TokenKind::RegistrationAccess),
            None
        )
        .label(),
        "allow"
    );
    let strict = snap("[realms.demo.create]\ntoken_kinds = [\"bearer\"]\n");
    assert_eq!(
        reason(&run(
            &strict,
            &route(Operation::Create, "openid-connect"),
            &kind(TokenKind::InitialAccess),
            Some(json!({}))
        )),
        Some(Reason::TokenKindNotAllowed)
    );
}

#[test]
fn providers() {
    let s = snap(DEMO);
    let d = run(
        &s,
        &route(Operation::Create, "saml2-entity-descriptor"),
        &bearer(&["create-client"]),
        None,
    );
    assert_eq!(reason(&d), Some(Reason::ProviderNotAllowed));
    let mut other = route(Operation::Create, "default");
    other.realm = "elsewhere".into();
    assert_eq!(
        reason(&run(
            &s,
            &other,
            &bearer(&["create-client"]),
            Some(json!({"clientId": "x"}))
        )),
        Some(Reason::ProviderNotAllowed)
    );
}

#[test]
fn redirect_uri_rules_both_dialects() {
    let s = snap(DEMO);
    let iat = kind(TokenKind::InitialAccess);
    let oidc = route(Operation::Create, "openid-connect");
    let kc = route(Operation::Create, "default");
    let ok = [
        json!(["https://app.example.com/cb"]),
        json!(["http://127.0.0.1:33418/cb", "https://[::1]:8443/cb"]),
        json!(["http://localhost:1234/x"]),
    ];
    for uris in ok {
        assert_eq!(
            run(&s, &oidc, &iat, Some(json!({"redirect_uris": uris}))).label(),
            "allow",
            "{uris}"
        );
        assert_eq!(
            run(&s, &kc, &iat, Some(json!({"clientId": "x", "redirectUris": uris}))).label(),
            "allow",
            "{uris}"
        );
    }
    let bad = [
        (json!(["http://app.example.com/cb"]), Reason::RedirectUriNotAllowed),
        (json!(["https://example.com/cb"]), Reason::RedirectUriNotAllowed),
        (json!(["https://evil.com/cb"]), Reason::RedirectUriNotAllowed),
        (json!(["https://app.example.com/cb#x"]), Reason::RedirectUriFragment),
        (json!(["https://app.example.com/*"]), Reason::RedirectUriNotAllowed),
        (json!(["not a uri"]), Reason::RedirectUriMalformed),
        (json!(["javascript:alert(1)"]), Reason::RedirectUriNotAllowed),
        (json!(["com.example.app:/cb"]), Reason::RedirectUriNotAllowed),
    ];
    for (uris, want) in bad {
        let d = run(&s, &oidc, &iat, Some(json!({"redirect_uris": uris.clone()})));
        assert_eq!(reason(&d), Some(want), "{uris}");
        let r = d.refusal.unwrap();
        assert_eq!(r.details["field"], "redirect_uris");
        assert_eq!(r.reason.oauth_error(), "invalid_redirect_uri");
        let d = run(
            &s,
            &kc,
            &iat,
            Some(json!({"clientId": "x", "redirectUris": uris.clone()})),
        );
        assert_eq!(reason(&d), Some(want), "{uris}");
        assert_eq!(d.refusal.unwrap().details["field"], "redirectUris");
    }
    let many: Vec<String> = (0..11).map(|i| format!("https://a{i}.example.com/cb")).collect();
    assert_eq!(
        reason(&run(&s, &oidc, &iat, Some(json!({"redirect_uris": many})))),
        Some(Reason::TooManyRedirectUris)
    );
}

#[test]
fn metadata_rules() {
    let s = snap(
        r#"
[realms.demo.metadata]
grant_types = ["authorization_code", "refresh_token"]
token_endpoint_auth_methods = ["client_secret_basic", "none"]
scopes = ["email", "profile"]
client_types = ["confidential"]
forbidden_fields = ["protocol_mappers", "jwks_uri"]
client_id_pattern = "[a-z][a-z0-9-]{2,30}"
client_name_pattern = "[A-Za-z0-9 ]+"
"#,
    );
    let iat = kind(TokenKind::InitialAccess);
    let oidc = route(Operation::Create, "openid-connect");
    let kc = route(Operation::Create, "default");
    let cases = [
        (
            &oidc,
            json!({"grant_types": ["client_credentials"]}),
            Reason::GrantTypeNotAllowed,
        ),
        (
            &kc,
            json!({"clientId": "abc", "serviceAccountsEnabled": true}),
            Reason::GrantTypeNotAllowed,
        ),
        (
            &oidc,
            json!({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://keys.example.com/jwks"}),
            Reason::AuthMethodNotAllowed,
        ),
        (&oidc, json!({"scope": "email admin"}), Reason::ScopeNotAllowed),
        (
            &kc,
            json!({"clientId": "abc", "defaultClientScopes": ["roles"]}),
            Reason::ScopeNotAllowed,
        ),
        (
            &oidc,
            json!({"token_endpoint_auth_method": "none"}),
            Reason::ClientTypeNotAllowed,
        ),
        (
            &kc,
            json!({"clientId": "abc", "protocolMappers": [{"name": "m"}]}),
            Reason::FieldForbidden,
        ),
        (&kc, json!({"clientId": "Bad_Id"}), Reason::ClientIdPattern),
        (&oidc, json!({"client_name": "evil<script>"}), Reason::ClientNamePattern),
    ];
    for (r, body, want) in cases {
        let d = run(&s, r, &iat, Some(body.clone()));
        assert_eq!(reason(&d), Some(want), "{body}");
        assert_eq!(d.refusal.unwrap().reason.oauth_error(), "invalid_client_metadata");
    }
    assert_eq!(
        run(&s, &kc, &iat, Some(json!({"clientId": "good-id", "name": "Fine Name"}))).label(),
        "allow"
    );
}

#[test]
fn update_needs_matching_client_id() {
    let s = snap(DEMO);
    let rat = kind(TokenKind::RegistrationAccess);
    let upd = route(Operation::Update, "openid-connect");
    assert_eq!(
        reason(&run(&s, &upd, &rat, Some(json!({"client_id": "other"})))),
        Some(Reason::ClientIdMismatch)
    );
    assert_eq!(
        reason(&run(&s, &upd, &rat, Some(json!({"client_name": "x"})))),
        Some(Reason::ClientIdMismatch)
    );
    assert_eq!(run(&s, &upd, &rat, Some(json!({"client_id": "c1"}))).label(), "allow");
}

#[test]
fn shadow_rules_record_and_continue() {
    let s =
        snap("[realms.demo.create]\nmode = \"shadow\"\n[realms.demo.metadata.redirect_uris]\nschemes = [\"https\"]\n");
    let d = run(
        &s,
        &route(Operation::Create, "openid-connect"),
        &bearer(&[]),
        Some(json!({"redirect_uris": ["https://x.org/cb"]})),
    );
    assert_eq!(d.label(), "shadow_deny");
    assert_eq!(d.shadowed[0].reason, Reason::MissingRole);
    // an enforced rule still bites after a shadowed one
    let d = run(
        &s,
        &route(Operation::Create, "openid-connect"),
        &bearer(&[]),
        Some(json!({"redirect_uris": ["http://x.org/cb"]})),
    );
    assert_eq!(reason(&d), Some(Reason::RedirectUriNotAllowed));
    assert_eq!(d.shadowed.len(), 1);
    // global shadow mode turns every refusal into a record
    let strict = snap(DEMO);
    let route = route(Operation::Create, "default");
    let id = bearer(&[]);
    let input = Input {
        route: &route,
        identity: &id,
        metadata: None,
        current: None,
        peer: "127.0.0.1".parse().unwrap(),
    };
    let d = decide(&strict, &input, true);
    assert_eq!(d.label(), "shadow_deny");
}

/// Decides and counts, as the pipeline does.
async fn decide_counted(s: &Snapshot, input: &Input<'_>, shadow: bool, q: &crate::policy::Quotas) -> Decision {
    let mut d = decide(s, input, shadow);
    count(&mut d, q).await;
    d
}

#[tokio::test]
async fn quotas_per_caller() {
    let s = snap("[realms.demo.quota]\ncreates = 2\nwindow = \"1h\"\n");
    let q = crate::policy::Quotas::default();
    let r = route(Operation::Create, "openid-connect");
    let id = bearer(&["create-client"]);
    let input = Input {
        route: &r,
        identity: &id,
        metadata: None,
        current: None,
        peer: "127.0.0.1".parse().unwrap(),
    };
    assert!(decide(&s, &input, false).quota.is_some(), "decide says what to count");
    assert_eq!(decide_counted(&s, &input, false, &q).await.label(), "allow");
    assert_eq!(decide_counted(&s, &input, false, &q).await.label(), "allow");
    let d = decide_counted(&s, &input, false, &q).await;
    assert!(d.quota_slot.is_none());
    let refusal = d.refusal.unwrap();
    assert_eq!(refusal.reason, Reason::QuotaExceeded);
    assert!(refusal.retry_after.unwrap() > 3500);
    // another caller has its own budget
    let other = kind(TokenKind::InitialAccess);
    let input = Input {
        route: &r,
        identity: &other,
        metadata: None,
        current: None,
        peer: "127.0.0.1".parse().unwrap(),
    };
    assert_eq!(decide_counted(&s, &input, false, &q).await.label(), "allow");
    assert_eq!(caller_key(&other, "10.0.0.1".parse().unwrap()), "iat:iat-1");
    assert_eq!(
        caller_key(&kind(TokenKind::Anonymous), "10.0.0.1".parse().unwrap()),
        "ip:10.0.0.1"
    );
}

#[tokio::test]
async fn realm_quota_across_callers_and_shadow() {
    let s = snap("[realms.demo.quota]\nrealm_creates = 2\nwindow = \"1h\"\n");
    let q = crate::policy::Quotas::default();
    let r = route(Operation::Create, "openid-connect");
    let mut other_iat = kind(TokenKind::InitialAccess);
    other_iat.claims = Arc::new(serde_json::from_value(json!({"jti": "iat-2"})).unwrap());
    let ids = [kind(TokenKind::InitialAccess), bearer(&["create-client"]), other_iat];
    let input = |id| Input {
        route: &r,
        identity: id,
        metadata: None,
        current: None,
        peer: "127.0.0.1".parse().unwrap(),
    };
    assert_eq!(decide_counted(&s, &input(&ids[0]), false, &q).await.label(), "allow");
    assert_eq!(decide_counted(&s, &input(&ids[1]), false, &q).await.label(), "allow");
    let d = decide_counted(&s, &input(&ids[2]), false, &q).await;
    let refusal = d.refusal.unwrap();
    assert_eq!(refusal.reason, Reason::RealmQuotaExceeded, "a third caller is refused");
    assert_eq!(refusal.rule.as_ref().map(RuleId::as_str), Some("realms.demo.quota"));
    // Global shadow counts and forwards.
    let d = decide_counted(&s, &input(&ids[2]), true, &q).await;
    assert_eq!(d.label(), "shadow_deny");
    assert!(d.quota_slot.is_some());
}
