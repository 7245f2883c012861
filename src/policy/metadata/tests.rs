//! Unit tests of the normalised metadata view.

use serde_json::json;

use super::*;

fn normalise_create(d: Dialect, m: &Map<String, Value>) -> Result<ClientMetadata, Refusal> {
    normalise(d, m, true)
}

#[test]
fn keycloak_updates_are_partial_and_creates_get_defaults() {
    let md = normalise(
        Dialect::Keycloak,
        &obj(json!({"clientId": "c1", "description": "x"})),
        false,
    )
    .unwrap();
    assert!(md.grant_types.is_empty() && md.client_type.is_empty() && md.auth_method.is_empty());
    assert!(!md.present.contains_key("full_scope_allowed"));
    let md = normalise(Dialect::Keycloak, &obj(json!({"clientId": "c1"})), true).unwrap();
    assert!(
        md.present.contains_key("full_scope_allowed"),
        "Keycloak makes new clients full-scope"
    );
    let md = normalise(
        Dialect::Keycloak,
        &obj(json!({"clientId": "c1", "consentRequired": true})),
        true,
    )
    .unwrap();
    assert!(!md.present.contains_key("full_scope_allowed"));
    let md = normalise(
        Dialect::Keycloak,
        &obj(json!({"clientId": "c1", "fullScopeAllowed": false})),
        true,
    )
    .unwrap();
    assert!(!md.present.contains_key("full_scope_allowed"));
    let attrs = json!({"clientId": "c1", "attributes": {"oauth2.device.authorization.grant.enabled": "true"}});
    let md = normalise(Dialect::Keycloak, &obj(attrs), false).unwrap();
    assert_eq!(md.grant_types, ["urn:ietf:params:oauth:grant-type:device_code"]);
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn rfc7591_defaults_and_fields() {
    let md = normalise_create(
        Dialect::Rfc7591,
        &obj(json!({"client_name": "x", "redirect_uris": ["https://a/cb"], "scope": "openid email"})),
    )
    .unwrap();
    assert_eq!(md.grant_types, ["authorization_code", "refresh_token"]);
    assert_eq!(md.response_types, ["code"]);
    assert_eq!(md.auth_method, "client_secret_basic");
    assert_eq!(md.client_type, "confidential");
    assert_eq!(md.scopes, ["openid", "email"]);
    let md = normalise_create(Dialect::Rfc7591, &obj(json!({"token_endpoint_auth_method": "none", "grant_types": ["client_credentials"], "jwks_uri": "https://k"}))).unwrap();
    assert_eq!(md.client_type, "public");
    assert!(md.present.contains_key("service_accounts") && md.present.contains_key("jwks_uri"));
}

#[test]
fn keycloak_dialect_maps_flags_to_grants() {
    let md = normalise_create(Dialect::Keycloak, &obj(json!({"clientId": "c1"}))).unwrap();
    assert_eq!(md.client_id.as_deref(), Some("c1"));
    assert_eq!(md.grant_types, ["authorization_code", "refresh_token"]);
    let md = normalise_create(
        Dialect::Keycloak,
        &obj(json!({"clientId": "c1", "standardFlowEnabled": false, "serviceAccountsEnabled": true, "directAccessGrantsEnabled": true,
                    "protocolMappers": [{"name": "m"}], "publicClient": false, "redirectUris": ["https://x/cb"], "defaultClientScopes": ["email"]})),
    )
    .unwrap();
    assert_eq!(md.grant_types, ["password", "client_credentials", "refresh_token"]);
    assert!(md.present.contains_key("protocol_mappers") && md.present.contains_key("service_accounts"));
    assert_eq!(md.redirect_uris, ["https://x/cb"]);
    assert_eq!(md.scopes, ["email"]);
    let md = normalise_create(Dialect::Keycloak, &obj(json!({"publicClient": true}))).unwrap();
    assert_eq!((md.client_type, md.auth_method.as_str()), ("public", "none"));
}

#[test]
fn wrong_types_named() {
    let e = normalise_create(Dialect::Rfc7591, &obj(json!({"redirect_uris": "https://a/cb"}))).unwrap_err();
    assert_eq!(e.reason, Reason::BodyWrongType);
    assert!(e.description.contains("redirect_uris"));
    let e = normalise_create(Dialect::Keycloak, &obj(json!({"publicClient": "yes"}))).unwrap_err();
    assert!(e.description.contains("publicClient"));
    let e = normalise_create(Dialect::Keycloak, &obj(json!({"redirectUris": [1]}))).unwrap_err();
    assert!(e.description.contains("array of strings"));
}

fn grants(d: Dialect, body: Value, create: bool) -> Vec<String> {
    normalise(d, &obj(body), create).unwrap().grant_types
}

#[test]
fn attribute_grants_in_every_spelling_keycloak_accepts() {
    let device = "urn:ietf:params:oauth:grant-type:device_code";
    for v in [json!("true"), json!("TRUE"), json!("True"), json!("tRuE"), json!(true)] {
        let body = json!({"clientId": "c", "attributes": {"oauth2.device.authorization.grant.enabled": v}});
        assert!(
            grants(Dialect::Keycloak, body, false).contains(&device.to_owned()),
            "{v}"
        );
    }
    for v in [
        json!(" true"),
        json!("1"),
        json!(1),
        json!(false),
        json!(null),
        json!(""),
    ] {
        let body = json!({"clientId": "c", "attributes": {"oauth2.device.authorization.grant.enabled": v}});
        assert!(
            !grants(Dialect::Keycloak, body, false).contains(&device.to_owned()),
            "{v}"
        );
    }
    let body = json!({"clientId": "c", "attributes": {"oauth2.device.authorization.grant.enabled": ["true"]}});
    assert_eq!(
        normalise(Dialect::Keycloak, &obj(body), true).unwrap_err().reason,
        Reason::BodyWrongType
    );
    for (attr, grant) in [
        ("oidc.ciba.grant.enabled", "urn:openid:params:grant-type:ciba"),
        (
            "standard.token.exchange.enabled",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        (
            "oauth2.jwt.authorization.grant.enabled",
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
        ),
        ("client_credentials.use_refresh_token", "refresh_token"),
    ] {
        let body = json!({"clientId": "c", "standardFlowEnabled": false, "attributes": {attr: "True"}});
        assert!(
            grants(Dialect::Keycloak, body, true).contains(&grant.to_owned()),
            "{attr}"
        );
    }
}

#[test]
fn top_level_flags_as_jackson_binds_them() {
    for v in [json!("true"), json!("TRUE"), json!(" True "), json!(1), json!(7)] {
        let g = grants(
            Dialect::Keycloak,
            json!({"clientId": "c", "serviceAccountsEnabled": v, "implicitFlowEnabled": v}),
            false,
        );
        assert_eq!(g, ["implicit", "client_credentials"], "{v}");
    }
    for v in [json!(""), json!(0), json!("FALSE"), json!(null)] {
        assert!(
            grants(
                Dialect::Keycloak,
                json!({"clientId": "c", "serviceAccountsEnabled": v}),
                false
            )
            .is_empty(),
            "{v}"
        );
    }
    for v in [json!("tRUE"), json!("yes"), json!(1.0), json!([true])] {
        let e = normalise(Dialect::Keycloak, &obj(json!({"serviceAccountsEnabled": v})), true).unwrap_err();
        assert_eq!(e.reason, Reason::BodyWrongType, "{v}");
    }
    let md = normalise(Dialect::Keycloak, &obj(json!({"publicClient": "TRUE"})), true).unwrap();
    assert_eq!(md.client_type, "public");
    let g = grants(
        Dialect::Keycloak,
        json!({"clientId": "c", "authorizationServicesEnabled": "true"}),
        false,
    );
    assert_eq!(g, ["urn:ietf:params:oauth:grant-type:uma-ticket"]);
}

#[test]
fn response_types_imply_grants_as_the_description_converter_does() {
    for (body, want) in [
        (
            json!({"grant_types": ["authorization_code"], "response_types": ["token"]}),
            vec!["authorization_code", "implicit"],
        ),
        (
            json!({"grant_types": ["client_credentials"], "response_types": ["code id_token"]}),
            vec!["client_credentials", "authorization_code", "implicit"],
        ),
        (
            json!({"grant_types": ["client_credentials"], "response_types": ["id_token"]}),
            vec!["client_credentials", "implicit"],
        ),
        (
            json!({"grant_types": ["client_credentials"], "response_types": ["none"]}),
            vec!["client_credentials", "authorization_code"],
        ),
        (json!({"grant_types": ["implicit"]}), vec!["implicit"]),
        (
            json!({"grant_types": ["client_credentials"]}),
            vec!["client_credentials"],
        ),
    ] {
        assert_eq!(grants(Dialect::Rfc7591, body.clone(), true), want, "{body}");
    }
    let md = normalise(Dialect::Rfc7591, &obj(json!({"grant_types": ["implicit"]})), true).unwrap();
    assert_eq!(md.response_types, ["id_token"]);
}

fn urls(d: Dialect, body: Value) -> Vec<(UrlKind, String, String)> {
    let md = normalise(d, &obj(body), true).unwrap();
    md.urls.into_iter().map(|u| (u.kind, u.field, u.url)).collect()
}

#[test]
fn every_registered_url_is_collected() {
    let got = urls(
        Dialect::Keycloak,
        json!({"clientId": "c", "rootUrl": "https://r", "adminUrl": "http://a", "webOrigins": ["+", "https://o"],
               "registeredNodes": {"node1": 1},
               "attributes": {"post.logout.redirect.uris": "+##https://p1##https://p2", "backchannel.logout.url": "http://b",
                              "request.uris": "https://q1##https://q2", "saml_assertion_consumer_url_post": "https://acs", "unrelated": "https://x"},
               "protocolMappers": [{"name": "p", "config": {"sectorIdentifierUri": "https://s"}}]}),
    );
    let want = [
        (UrlKind::Browser, "attributes.post.logout.redirect.uris", "https://p1"),
        (UrlKind::Browser, "attributes.post.logout.redirect.uris", "https://p2"),
        (
            UrlKind::Browser,
            "attributes.saml_assertion_consumer_url_post",
            "https://acs",
        ),
        (UrlKind::Origin, "webOrigins", "https://o"),
        (UrlKind::Root, "rootUrl", "https://r"),
        (UrlKind::Server, "adminUrl", "http://a"),
        (UrlKind::Server, "attributes.backchannel.logout.url", "http://b"),
        (UrlKind::Server, "attributes.request.uris", "https://q1"),
        (UrlKind::Server, "attributes.request.uris", "https://q2"),
        (
            UrlKind::Server,
            "protocolMappers[0].config.sectorIdentifierUri",
            "https://s",
        ),
        (UrlKind::Node, "registeredNodes", "node1"),
    ];
    let want: Vec<(UrlKind, String, String)> = want
        .iter()
        .map(|(k, f, u)| (*k, f.to_string(), u.to_string()))
        .collect();
    assert_eq!(got, want);
    let got = urls(
        Dialect::Rfc7591,
        json!({"client_uri": "https://c", "post_logout_redirect_uris": ["https://p"], "initiate_login_uri": "https://i",
               "jwks_uri": "https://j", "sector_identifier_uri": "https://s", "request_uris": ["https://r"],
               "backchannel_logout_uri": "https://b", "backchannel_client_notification_endpoint": "https://n"}),
    );
    assert_eq!(got.iter().filter(|u| u.0 == UrlKind::Browser).count(), 3);
    assert_eq!(got.iter().filter(|u| u.0 == UrlKind::Server).count(), 5);
}

#[test]
fn an_update_is_judged_by_what_it_changes() {
    let current = normalise(
        Dialect::Keycloak,
        &obj(json!({"clientId": "c", "protocolMappers": [{"name": "m", "config": {"a": "1"}}], "attributes": {"x": "1", "backchannel.logout.url": "http://10.0.0.1/l"},
                    "serviceAccountsEnabled": true, "redirectUris": ["https://old/cb"]})),
        false,
    )
    .unwrap();
    let same = normalise(
        Dialect::Keycloak,
        &obj(json!({"clientId": "c", "description": "x", "protocolMappers": [{"name": "m", "config": {"a": 1}}], "attributes": {"x": "1", "backchannel.logout.url": "http://10.0.0.1/l"},
                    "serviceAccountsEnabled": "true", "redirectUris": ["https://old/cb"]})),
        false,
    )
    .unwrap();
    let d = same.changes_from(&current);
    assert!(
        d.present.is_empty() && d.grant_types.is_empty() && d.redirect_uris.is_empty() && d.urls.is_empty(),
        "{d:?}"
    );
    assert_eq!(d.raw_keys.keys().collect::<Vec<_>>(), ["description"]);
    let changed = normalise(
        Dialect::Keycloak,
        &obj(json!({"clientId": "c", "protocolMappers": [{"name": "m", "config": {"a": "2"}}], "attributes": {"x": "2"}, "redirectUris": ["https://old/cb", "https://new/cb"]})),
        false,
    )
    .unwrap();
    let d = changed.changes_from(&current);
    assert!(d.present.contains_key("protocol_mappers") && d.present.contains_key("attributes"));
    assert_eq!(d.redirect_uris, ["https://new/cb"]);
}
