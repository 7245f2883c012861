//! Side doors (issue 17, items 1, 2, 3, 7, 8) through the running gateway: every spelling,
//! field and JSON type that reaches a forbidden effect in Keycloak is refused, the answer names
//! the rule and the fix, and the stand-in Keycloak saw nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use crate::support::testkit;
use serde_json::{Value, json};
use support::policy_kit::*;
use support::*;

const OIDC: &str = "/realms/demo/clients-registrations/openid-connect";
const KC_DEFAULT: &str = "/realms/demo/clients-registrations/default";
const ADMIN: &[&str] = &["manage-clients"];

/// A gateway over one policy file in a fresh temporary directory (`None`: built-in policy).
async fn gw(kc: &Kc, text: Option<&str>) -> (tempfile::TempDir, dcr_gateway::Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    let policies = text.map(|t| {
        std::fs::write(&file, t).unwrap();
        file.as_path()
    });
    let g = gateway(settings(&kc.url(), policies)).await;
    (dir, g)
}

/// Sends each body; each must be refused with `reason` under `rule`, naming its field, with
/// a hint, and never reach the upstream.
async fn all_refused(
    kc: &Kc,
    g: &dcr_gateway::Gateway,
    path: &str,
    token: &str,
    cases: &[(Value, &str)],
    reason: &str,
    rule: &str,
) {
    for (body, field) in cases {
        let a = send(req("POST", g.addr, path, Some(token), Some(body))).await;
        let v = a.json();
        assert_eq!(v["reason"], reason, "{body}: {v}");
        assert_eq!(v["details"]["rule"], rule, "{body}: {v}");
        assert_eq!(v["details"]["field"], *field, "{body}: {v}");
        assert!(
            v["hint"].as_str().unwrap().contains(rule),
            "{body}: hint names no rule: {v}"
        );
        assert!(a.status == 400, "{body}: {}", a.status);
    }
    assert_eq!(kc.reg_hits(), 0, "a refused body reached Keycloak");
}

const GRANTS: &str = r#"
version = 1
[realms.demo.metadata]
grant_types = ["authorization_code", "refresh_token"]
"#;

#[tokio::test]
async fn grant_flags_in_every_spelling_keycloak_accepts_are_refused() {
    let kc = Kc::start().await;
    let (_d, g) = gw(&kc, Some(GRANTS)).await;
    let iat = kc.initial_access("demo", "iat-1");
    let grants = "standardFlowEnabled/implicitFlowEnabled/directAccessGrantsEnabled/serviceAccountsEnabled/authorizationServicesEnabled/attributes";
    let mut cases = Vec::new();
    for attr in [
        "oauth2.device.authorization.grant.enabled",
        "oidc.ciba.grant.enabled",
        "standard.token.exchange.enabled",
        "oauth2.jwt.authorization.grant.enabled",
    ] {
        for v in [json!("TRUE"), json!("True"), json!("tRuE"), json!(true), json!("true")] {
            cases.push((json!({"clientId": "c", "attributes": {attr: v}}), grants));
        }
    }
    for flag in [
        "serviceAccountsEnabled",
        "implicitFlowEnabled",
        "directAccessGrantsEnabled",
        "authorizationServicesEnabled",
    ] {
        for v in [
            json!(true),
            json!("true"),
            json!("TRUE"),
            json!(" True "),
            json!(1),
            json!(-2),
        ] {
            cases.push((json!({"clientId": "c", flag: v}), grants));
        }
    }
    all_refused(
        &kc,
        &g,
        KC_DEFAULT,
        &iat,
        &cases,
        "grant_type_not_allowed",
        "realms.demo.metadata.grant_types",
    )
    .await;
    let oidc = [
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:openid:params:grant-type:ciba",
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:uma-ticket",
        "client_credentials",
        "password",
    ]
    .map(|grant| {
        (
            json!({"grant_types": ["authorization_code", grant]}),
            "grant_types/response_types",
        )
    });
    all_refused(
        &kc,
        &g,
        OIDC,
        &iat,
        &oidc,
        "grant_type_not_allowed",
        "realms.demo.metadata.grant_types",
    )
    .await;
    // Values Keycloak refuses to parse are refused here too, before it sees them.
    for v in [json!("yes"), json!(1.0), json!([true]), json!("tRUE")] {
        let a = send(req(
            "POST",
            g.addr,
            KC_DEFAULT,
            Some(&iat),
            Some(&json!({"clientId": "c", "serviceAccountsEnabled": v})),
        ))
        .await;
        assert_eq!(a.json()["reason"], "body_wrong_type", "{v}");
    }
    let a = send(req(
        "POST",
        g.addr,
        KC_DEFAULT,
        Some(&iat),
        Some(&json!({"clientId": "c", "attributes": {"oidc.ciba.grant.enabled": {"x": 1}}})),
    ))
    .await;
    assert_eq!(a.json()["reason"], "body_wrong_type");
    assert_eq!(kc.reg_hits(), 0);
    // What Boolean.parseBoolean reads as false does not switch the grant on: forwarded.
    let body = json!({"clientId": "c", "attributes": {"oauth2.device.authorization.grant.enabled": " true", "oidc.ciba.grant.enabled": "1"}});
    let a = send(req("POST", g.addr, KC_DEFAULT, Some(&iat), Some(&body))).await;
    assert_eq!(a.status, 201, "{}", a.json());
    assert_eq!(kc.reg_hits(), 1);
    g.shutdown().await;
}

#[tokio::test]
async fn response_types_that_mean_implicit_are_refused() {
    let kc = Kc::start().await;
    let (_d, g) = gw(&kc, Some(GRANTS)).await;
    let iat = kc.initial_access("demo", "iat-1");
    let cases: Vec<(Value, &str)> = [
        json!({"grant_types": ["authorization_code"], "response_types": ["token"]}),
        json!({"grant_types": ["authorization_code"], "response_types": ["id_token"]}),
        json!({"grant_types": ["authorization_code"], "response_types": ["code token"]}),
        json!({"grant_types": ["authorization_code"], "response_types": ["code id_token"]}),
        json!({"grant_types": ["authorization_code"], "response_types": ["code", "id_token token"]}),
        json!({"response_types": ["token"]}),
        json!({"grant_types": ["implicit"]}),
    ]
    .into_iter()
    .map(|b| (b, "grant_types/response_types"))
    .collect();
    all_refused(
        &kc,
        &g,
        OIDC,
        &iat,
        &cases,
        "grant_type_not_allowed",
        "realms.demo.metadata.grant_types",
    )
    .await;
    let a = send(req("POST", g.addr, OIDC, Some(&iat), Some(&cases[0].0))).await;
    assert_eq!(a.json()["details"]["value"], "implicit");
    let ok = json!({"grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]});
    assert_eq!(send(req("POST", g.addr, OIDC, Some(&iat), Some(&ok))).await.status, 201);
    g.shutdown().await;
}

const URLS: &str = r#"
version = 1
[realms.demo.metadata.redirect_uris]
schemes = ["https"]
hosts = ["*.example.com"]
"#;

#[tokio::test]
async fn every_url_a_browser_is_sent_to_follows_the_redirect_rules() {
    let kc = Kc::start().await;
    let (_d, g) = gw(&kc, Some(URLS)).await;
    let iat = kc.initial_access("demo", "iat-1");
    let evil = "https://evil.com/x";
    let mut kc_cases: Vec<(Value, String)> = Vec::new();
    for f in ["rootUrl", "baseUrl"] {
        kc_cases.push((json!({"clientId": "c", f: evil}), f.into()));
    }
    kc_cases.push((
        json!({"clientId": "c", "webOrigins": ["https://app.example.com", "https://evil.com"]}),
        "webOrigins".into(),
    ));
    kc_cases.push((json!({"clientId": "c", "webOrigins": ["*"]}), "webOrigins".into()));
    kc_cases.push((
        json!({"clientId": "c", "rootUrl": "http://app.example.com"}),
        "rootUrl".into(),
    ));
    for a in [
        "frontchannel.logout.url",
        "logoUri",
        "policyUri",
        "tosUri",
        "saml_assertion_consumer_url_post",
        "saml_assertion_consumer_url_redirect",
        "saml_artifact_binding_url",
        "saml_single_logout_service_url_post",
        "saml_single_logout_service_url_redirect",
        "saml_single_logout_service_url_artifact",
    ] {
        kc_cases.push((
            json!({"clientId": "c", "protocol": "saml", "attributes": {a: evil}}),
            format!("attributes.{a}"),
        ));
    }
    kc_cases.push((
        json!({"clientId": "c", "attributes": {"post.logout.redirect.uris": "https://app.example.com/bye##https://evil.com/y"}}),
        "attributes.post.logout.redirect.uris".into(),
    ));
    kc_cases.push((
        json!({"clientId": "c", "attributes": {"post.logout.redirect.uris": "javascript:alert(1)"}}),
        "attributes.post.logout.redirect.uris".into(),
    ));
    let cases: Vec<(Value, &str)> = kc_cases.iter().map(|(b, f)| (b.clone(), f.as_str())).collect();
    all_refused(
        &kc,
        &g,
        KC_DEFAULT,
        &iat,
        &cases,
        "browser_url_not_allowed",
        "realms.demo.metadata.redirect_uris",
    )
    .await;
    let mut oidc: Vec<(Value, &str)> = [
        "client_uri",
        "logo_uri",
        "policy_uri",
        "tos_uri",
        "frontchannel_logout_uri",
        "initiate_login_uri",
    ]
    .into_iter()
    .map(|f| (json!({"redirect_uris": ["https://app.example.com/cb"], f: evil}), f))
    .collect();
    oidc.push((
        json!({"post_logout_redirect_uris": ["https://app.example.com/b", evil]}),
        "post_logout_redirect_uris",
    ));
    all_refused(
        &kc,
        &g,
        OIDC,
        &iat,
        &oidc,
        "browser_url_not_allowed",
        "realms.demo.metadata.redirect_uris",
    )
    .await;
    // The same URLs on allowed hosts, Keycloak's `+`, and a path under rootUrl pass.
    let ok = json!({"clientId": "c", "rootUrl": "https://app.example.com", "baseUrl": "/home", "webOrigins": ["+"],
                    "attributes": {"post.logout.redirect.uris": "+##https://app.example.com/bye", "logoUri": "https://cdn.example.com/l.png"}});
    let a = send(req("POST", g.addr, KC_DEFAULT, Some(&iat), Some(&ok))).await;
    assert_eq!(a.status, 201, "{}", a.json());
    g.shutdown().await;
}

#[tokio::test]
async fn urls_keycloak_calls_refuse_internal_addresses_by_default() {
    let kc = Kc::start().await;
    let (_d, g) = gw(&kc, None).await; // the built-in policy
    let iat = kc.initial_access("demo", "iat-1");
    let hosts = [
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "169.254.169.254",
        "0xa9fea9fe",
        "[fd00:ec2::254]",
        "metadata.google.internal",
        "localhost.",
        "LocalHost",
        "api.localhost",
        "10.1.2.3",
        "192.168.0.10",
        "[fe80::1]",
        "0.0.0.0",
        "keycloak",
    ];
    let mut cases: Vec<(Value, &str)> = hosts
        .iter()
        .map(|h| {
            (
                json!({"jwks_uri": format!("https://{h}/certs"), "token_endpoint_auth_method": "private_key_jwt"}),
                "jwks_uri",
            )
        })
        .collect();
    for f in [
        "sector_identifier_uri",
        "backchannel_logout_uri",
        "backchannel_client_notification_endpoint",
    ] {
        cases.push((json!({f: "http://169.254.169.254/latest/meta-data/"}), f));
    }
    cases.push((
        json!({"request_uris": ["https://ok.example.com/r", "http://[::1]:8080/r"]}),
        "request_uris",
    ));
    all_refused(
        &kc,
        &g,
        OIDC,
        &iat,
        &cases,
        "server_url_not_allowed",
        "built-in.metadata.server_urls",
    )
    .await;
    let mut kc_cases: Vec<(Value, String)> = Vec::new();
    kc_cases.push((
        json!({"clientId": "c", "adminUrl": "http://127.0.0.1:9000/"}),
        "adminUrl".into(),
    ));
    for a in [
        "backchannel.logout.url",
        "jwks.url",
        "sectorIdentifierUri",
        "ciba.backchannel.client.notification.endpoint",
        "saml_single_logout_service_url_soap",
        "saml_artifact_resolution_service_url",
    ] {
        kc_cases.push((
            json!({"clientId": "c", "attributes": {a: "http://10.0.0.5/x"}}),
            format!("attributes.{a}"),
        ));
    }
    kc_cases.push((
        json!({"clientId": "c", "attributes": {"request.uris": "https://ok.example.com/r##http://0x7f000001/r"}}),
        "attributes.request.uris".into(),
    ));
    kc_cases.push((
        json!({"clientId": "c", "protocolMappers": [{"name": "p", "protocol": "openid-connect", "protocolMapper": "oidc-sha256-pairwise-sub-mapper", "config": {"sectorIdentifierUri": "http://169.254.169.254/"}}]}),
        "protocolMappers[0].config.sectorIdentifierUri".into(),
    ));
    kc_cases.push((
        json!({"clientId": "c", "rootUrl": "http://127.0.0.1:8080"}),
        "rootUrl".into(),
    ));
    kc_cases.push((
        json!({"clientId": "c", "registeredNodes": {"127.0.0.1": 1}}),
        "registeredNodes".into(),
    ));
    let cases: Vec<(Value, &str)> = kc_cases.iter().map(|(b, f)| (b.clone(), f.as_str())).collect();
    all_refused(
        &kc,
        &g,
        KC_DEFAULT,
        &iat,
        &cases,
        "server_url_not_allowed",
        "built-in.metadata.server_urls",
    )
    .await;
    let ok = json!({"jwks_uri": "https://keys.example.com/certs", "token_endpoint_auth_method": "private_key_jwt"});
    assert_eq!(send(req("POST", g.addr, OIDC, Some(&iat), Some(&ok))).await.status, 201);
    g.shutdown().await;
}

#[tokio::test]
async fn server_url_host_allow_list() {
    let kc = Kc::start().await;
    let policy =
        "version = 1\n[realms.demo.metadata.server_urls]\nhosts = [\"*.partner.example\"]\nschemes = [\"https\"]\n";
    let (_d, g) = gw(&kc, Some(policy)).await;
    let iat = kc.initial_access("demo", "iat-1");
    let cases = [
        (
            json!({"backchannel_logout_uri": "https://partner.example.evil.com/l"}),
            "backchannel_logout_uri",
        ),
        (
            json!({"backchannel_logout_uri": "http://api.partner.example/l"}),
            "backchannel_logout_uri",
        ),
        (json!({"jwks_uri": "https://keys.example.com/certs"}), "jwks_uri"),
    ];
    all_refused(
        &kc,
        &g,
        OIDC,
        &iat,
        &cases,
        "server_url_not_allowed",
        "realms.demo.metadata.server_urls",
    )
    .await;
    let ok = json!({"backchannel_logout_uri": "https://api.partner.example/logout"});
    assert_eq!(send(req("POST", g.addr, OIDC, Some(&iat), Some(&ok))).await.status, 201);
    g.shutdown().await;
}

/// A client as Keycloak's `default` provider returns it on GET.
fn stored_client() -> Value {
    json!({
        "clientId": "c1", "enabled": true, "publicClient": false, "standardFlowEnabled": true,
        "serviceAccountsEnabled": false, "redirectUris": ["https://app.example.com/cb"],
        "attributes": {"realm_client": "false", "backchannel.logout.session.required": "true"},
        "protocolMappers": [{"id": "m-1", "name": "dept", "protocol": "openid-connect", "protocolMapper": "oidc-usermodel-attribute-mapper",
                             "consentRequired": false, "config": {"user.attribute": "dept", "claim.name": "dept", "access.token.claim": "true"}}]
    })
}

fn puts(kc: &Kc) -> usize {
    kc.registrations().iter().filter(|s| s.method == "PUT").count()
}

#[tokio::test]
async fn updates_are_refused_only_for_what_they_change() {
    let kc = Kc::start().await;
    kc.server.clients.lock().insert("c1".into(), stored_client());
    let policy = "version = 1\n[realms.demo.metadata]\nforbidden_fields = [\"protocol_mappers\", \"attributes\", \"service_accounts\"]\n";
    let (_d, g) = gw(&kc, Some(policy)).await;
    let token = kc.bearer("demo", "ops", ADMIN);
    let path = format!("{KC_DEFAULT}/c1");
    // kcreg.sh update c1 -s description=x: the read-back body with one change passes.
    let mut body = stored_client();
    body["description"] = json!("x");
    body["attributes"]["backchannel.logout.session.required"] = json!(true); // the same, as JSON true
    let a = send(req("PUT", g.addr, &path, Some(&token), Some(&body))).await;
    assert_eq!(a.status, 201, "{}", a.json());
    assert_eq!(puts(&kc), 1);
    // Every change of a forbidden field is refused, and the PUT never reaches Keycloak.
    let mut changed_mapper = stored_client();
    changed_mapper["protocolMappers"][0]["config"]["claim.name"] = json!("roles");
    let mut added_mapper = stored_client();
    added_mapper["protocolMappers"].as_array_mut().unwrap().push(json!({"name": "hc", "protocol": "openid-connect", "protocolMapper": "oidc-hardcoded-claim-mapper", "config": {"claim.value": "admin"}}));
    let mut new_attr = stored_client();
    new_attr["attributes"]["oauth2.device.authorization.grant.enabled"] = json!("TRUE");
    let mut attr_value = stored_client();
    attr_value["attributes"]["backchannel.logout.session.required"] = json!("false");
    let mut sa = stored_client();
    sa["serviceAccountsEnabled"] = json!("TRUE");
    for (b, field) in [
        (changed_mapper, "protocolMappers"),
        (added_mapper, "protocolMappers"),
        (new_attr, "attributes"),
        (attr_value, "attributes"),
        (sa, "serviceAccountsEnabled"),
    ] {
        let a = send(req("PUT", g.addr, &path, Some(&token), Some(&b))).await;
        let v = a.json();
        assert_eq!(
            (a.status.as_u16(), v["reason"].as_str()),
            (400, Some("field_forbidden")),
            "{v}"
        );
        assert_eq!(v["details"]["field"], field, "{v}");
        let hint = v["hint"].as_str().unwrap();
        assert!(
            hint.contains("realms.demo.metadata.forbidden_fields") && hint.contains("exactly as the client has it now"),
            "{hint}"
        );
        assert!(
            hint.contains("\"protocolMappers\": []") && hint.contains("keeps the client's current value"),
            "{hint}"
        );
        assert!(!hint.contains("Remove"), "{hint}");
    }
    assert_eq!(puts(&kc), 1, "a refused update reached Keycloak");
    let gets = kc.registrations().iter().filter(|s| s.method == "GET").count();
    assert_eq!(
        gets, 6,
        "each refused update reads the client once, with the caller's credential"
    );
    let seen = kc.registrations();
    let get = seen.iter().find(|s| s.method == "GET").unwrap();
    assert_eq!(get.headers["authorization"], format!("Bearer {token}"));
    assert!(get.body.is_empty() && get.uri.ends_with("/clients-registrations/default/c1"));
    // A client the caller cannot read: the update is judged whole, so the mappers are refused.
    let mut other = stored_client();
    other["clientId"] = json!("c2");
    other["description"] = json!("x");
    let a = send(req(
        "PUT",
        g.addr,
        &format!("{KC_DEFAULT}/c2"),
        Some(&token),
        Some(&other),
    ))
    .await;
    assert_eq!(a.json()["reason"], "field_forbidden");
    assert_eq!(puts(&kc), 1);
    // A create is judged whole, of course.
    let a = send(req(
        "POST",
        g.addr,
        KC_DEFAULT,
        Some(&kc.bearer("demo", "ops", &["create-client"])),
        Some(&stored_client()),
    ))
    .await;
    assert_eq!(a.json()["reason"], "field_forbidden");
    assert!(
        a.json()["hint"]
            .as_str()
            .unwrap()
            .contains("out of the request body; rule")
    );
    g.shutdown().await;
}

#[tokio::test]
async fn hmac_tokens_keycloak_cannot_verify_are_diagnosed_honestly() {
    let up = upstream(|_s: Seen| async {
        json_response(
            401,
            &json!({"error": "invalid_token", "error_description": "Failed decode token"}),
        )
    })
    .await;
    let issuer = format!("{}/realms/demo", up.url());
    let g = gateway(settings(&up.url(), None)).await;
    let internal = |typ: &str, jti: &str, key: &[u8], kid: &str| {
        let mut claims = testkit::internal_claims(&issuer, typ, testkit::now() + 600);
        claims["jti"] = json!(jti);
        testkit::hmac_token(key, &json!({"alg": "HS512", "typ": "JWT", "kid": kid}), &claims)
    };
    let iat = internal("InitialAccessToken", "iat-1", b"realm-key", "k-1");
    let mut altered = iat.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    let rat = internal("RegistrationAccessToken", "r-1", b"other-realm-key", "k-gone");
    for (method, path, token, noun) in [
        ("POST", OIDC.to_owned(), iat, "initial access token"),
        ("POST", OIDC.to_owned(), altered, "initial access token"),
        ("GET", format!("{OIDC}/abc"), rat.clone(), "registration access token"),
        ("PUT", format!("{OIDC}/abc"), rat, "registration access token"),
    ] {
        let body =
            (method != "GET").then(|| json!({"client_id": "abc", "redirect_uris": ["https://app.example.com/cb"]}));
        let body = if method == "POST" {
            Some(json!({"redirect_uris": ["https://app.example.com/cb"]}))
        } else {
            body
        };
        let mut r = req(method, g.addr, &path, Some(&token), body.as_ref());
        // Reached through the host the tokens were minted on, so the issuer is right.
        r.headers_mut().insert("host", up.addr.to_string().parse().unwrap());
        let a = send(r).await;
        let v = a.json();
        assert_eq!(
            (a.status.as_u16(), v["reason"].as_str()),
            (401, Some("hmac_token_rejected")),
            "{v}"
        );
        let d = v["error_description"].as_str().unwrap();
        assert!(
            d.contains(noun)
                && d.contains("altered")
                && d.contains("rotated away or deleted")
                && d.contains("another realm"),
            "{d}"
        );
        assert!(!d.contains("probably"), "{d}");
        let hint = v["hint"].as_str().unwrap();
        assert!(
            hint.contains("exactly as Keycloak returned it") && hint.contains("cannot be repaired"),
            "{hint}"
        );
        assert_eq!(v["upstream"]["body"]["error_description"], "Failed decode token");
    }
    g.shutdown().await;
}
