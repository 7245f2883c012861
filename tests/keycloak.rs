//! The real-Keycloak suite: the situations people hit, replayed through dcr-gateway against a
//! real Keycloak. Run by scripts/keycloak-suite.sh (via scripts/test), which starts Keycloak,
//! the gateway binary and Prometheus and sets GW_URL, GW_ADMIN_URL, KC_URL, KC_VERSION, PROM_URL.
//! Each test works in realm `demo` with names of its own, or in a realm of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::keycloak::{Admin, Env, call, client_token, env, kid_of, refused, unique, wait_ready};

/// Version-specific expectations, one row per Keycloak line.
struct Expect {
    /// Version prefix.
    line: &'static str,
    /// Keycloak's own status for `Authorization: Bearer ` (empty) on a registration create:
    /// 500 before the CVE-2026-9803 fix (26.4.13 / 26.6.3), then anonymous → Trusted Hosts 403.
    direct_empty_bearer: u16,
    /// `alg` of Keycloak's initial access tokens (HS512 since 24).
    iat_alg: &'static str,
    /// GET of a SAML client on the openid-connect provider with a manage-clients bearer token.
    /// Both lines answer 200: the `Wrong client protocol.` check (400) that the source has for
    /// this path was not reached with a service-account token here.
    saml_on_oidc_read: u16,
    /// Default client scopes of an openid-connect client registered with a `scope` member
    /// (keycloak#50807: only `basic`, none of the realm's defaults; fixed for 26.8).
    scope_member_defaults: &'static [&'static str],
}

const EXPECT: &[Expect] = &[
    Expect {
        line: "26.5.",
        direct_empty_bearer: 500,
        iat_alg: "HS512",
        saml_on_oidc_read: 200,
        scope_member_defaults: &["basic"],
    },
    Expect {
        line: "26.7.",
        direct_empty_bearer: 403,
        iat_alg: "HS512",
        saml_on_oidc_read: 200,
        scope_member_defaults: &["basic"],
    },
];

fn expect(e: &Env) -> &'static Expect {
    EXPECT
        .iter()
        .find(|x| e.version.starts_with(x.line))
        .unwrap_or_else(|| panic!("no expectations for Keycloak {}; add a row to EXPECT", e.version))
}

fn reg(base: &str, realm: &str, provider: &str) -> String {
    format!("{base}/realms/{realm}/clients-registrations/{provider}")
}

fn header_alg(token: &str) -> String {
    use base64::Engine;
    let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').next().unwrap())
        .unwrap();
    serde_json::from_slice::<Value>(&h).unwrap()["alg"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A gateway started in this process in front of the same Keycloak, with its own policy; its
/// public URL is its own address, so tokens must be minted through it.
struct Inproc {
    gw: dcr_gateway::Gateway,
    base: String,
    _dir: tempfile::TempDir,
}

async fn inproc(e: &Env, policy: &str) -> Inproc {
    inproc_with(e, policy, |_, _| {}).await
}

async fn inproc_tuned(e: &Env, policy: &str, tweak: impl FnOnce(&mut dcr_gateway::Settings)) -> Inproc {
    inproc_with(e, policy, |s, _| tweak(s)).await
}

async fn inproc_with(e: &Env, policy: &str, tweak: impl FnOnce(&mut dcr_gateway::Settings, &Path)) -> Inproc {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.toml"), policy).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s = support::settings(&e.kc, Some(dir.path()));
    s.listen = ([127, 0, 0, 1], port).into();
    s.public_url = format!("http://127.0.0.1:{port}").parse().unwrap();
    s.jwks.min_refetch_interval = Duration::from_secs(1);
    tweak(&mut s, dir.path());
    let gw = support::gateway(s).await;
    Inproc {
        base: format!("http://{}", gw.addr),
        gw,
        _dir: dir,
    }
}

/// Everything Keycloak allows, so that Keycloak's own refusals come back (rewritten).
const PERMISSIVE: &str = r#"
version = 1
[default]
providers = ["openid-connect", "default", "nope"]
[default.create]
token_kinds = ["bearer", "initial_access", "anonymous"]
roles_any = []
"#;

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn registration_passes_through_with_service_account_and_initial_access_token() {
    let e = env();
    let token = client_token(&e.gw, "demo", "registrar", "registrar-secret").await;
    let id = unique("through");
    let a = call(
        "POST",
        &reg(&e.gw, "demo", "default"),
        Some(&token),
        Some(&json!({"clientId": id})),
    )
    .await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let admin = Admin::login(&e.gw).await;
    let (_, iat) = admin.create_iat("demo", 600, 5).await;
    assert_eq!(
        header_alg(&iat),
        expect(&e).iat_alg,
        "Keycloak's initial access tokens are HMAC-signed"
    );
    let body = json!({"client_name": unique("iat"), "redirect_uris": ["http://127.0.0.1:33418/callback"]});
    let a = call("POST", &reg(&e.gw, "demo", "openid-connect"), Some(&iat), Some(&body)).await;
    assert_eq!(
        a.status,
        201,
        "an HS512 initial access token passes through: {}",
        String::from_utf8_lossy(&a.body)
    );
    let v = a.json();
    assert!(v["registration_client_uri"].as_str().unwrap().starts_with(&e.gw), "{v}");
    assert!(a.headers["location"].to_str().unwrap().starts_with(&e.gw));
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn forum_case_missing_role_then_granted() {
    let e = env();
    let admin = Admin::login(&e.gw).await;
    let client = unique("forum");
    let uuid = admin.create_service_client("demo", &client, "forum-secret").await;
    let token = client_token(&e.gw, "demo", &client, "forum-secret").await;
    let target = unique("testing_create_client");
    let a = call(
        "POST",
        &reg(&e.gw, "demo", "default"),
        Some(&token),
        Some(&json!({"clientId": target})),
    )
    .await;
    let v = refused(&a, 403, "missing_role");
    let hint = v["hint"].as_str().unwrap();
    for needle in [
        "realm-management",
        "create-client",
        "Service account roles",
        &client,
        "new token",
    ] {
        assert!(hint.contains(needle), "hint lacks {needle:?}: {hint}");
    }
    assert!(
        a.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    assert_eq!(
        admin.clients_named("demo", &target).await,
        0,
        "the refused request never reached Keycloak"
    );
    // Apply the fix the hint names, fetch a new token, and try again.
    admin.grant("demo", &uuid, "realm-management", "create-client").await;
    let token = client_token(&e.gw, "demo", &client, "forum-secret").await;
    let a = call(
        "POST",
        &reg(&e.gw, "demo", "default"),
        Some(&token),
        Some(&json!({"clientId": target})),
    )
    .await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(admin.clients_named("demo", &target).await, 1);
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn keycloaks_own_forbidden_is_rewritten() {
    let e = env();
    let gw = inproc(&e, PERMISSIVE).await;
    let token = client_token(&gw.base, "demo", "norole", "norole-secret").await;
    let a = call(
        "POST",
        &reg(&gw.base, "demo", "default"),
        Some(&token),
        Some(&json!({"clientId": unique("kcforbidden")})),
    )
    .await;
    let v = refused(&a, 403, "missing_role");
    assert_eq!(v["upstream"]["status"], 403);
    assert_eq!(v["upstream"]["body"]["error_description"], "Forbidden");
    assert!(v["hint"].as_str().unwrap().contains("realm-management"), "{v}");
    gw.gw.shutdown().await;
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn redirect_uri_policy_on_openid_connect() {
    let e = env();
    let admin = Admin::login(&e.gw).await;
    let token = client_token(&e.gw, "demo", "registrar", "registrar-secret").await;
    let evil = unique("evil");
    let a = call(
        "POST",
        &reg(&e.gw, "demo", "openid-connect"),
        Some(&token),
        Some(&json!({"client_name": evil, "redirect_uris": ["https://evil.com/cb"]})),
    )
    .await;
    let v = refused(&a, 400, "redirect_uri_not_allowed");
    assert_eq!(v["error"], "invalid_redirect_uri");
    assert_eq!(v["details"]["value"], "https://evil.com/cb");
    assert_eq!(admin.clients_named("demo", &evil).await, 0, "never reached Keycloak");
    let good = unique("good");
    let body = json!({"client_name": good, "redirect_uris": ["https://app.example.com/cb"], "grant_types": ["authorization_code", "refresh_token"]});
    let a = call("POST", &reg(&e.gw, "demo", "openid-connect"), Some(&token), Some(&body)).await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(admin.clients_named("demo", &good).await, 1);
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn initial_access_tokens_exhausted_and_deleted() {
    let e = env();
    let admin = Admin::login(&e.gw).await;
    let url = reg(&e.gw, "demo", "openid-connect");
    let body = || json!({"client_name": unique("iat"), "redirect_uris": ["http://127.0.0.1:4000/cb"]});
    let (_, once) = admin.create_iat("demo", 600, 1).await;
    assert_eq!(call("POST", &url, Some(&once), Some(&body())).await.status, 201);
    let a = call("POST", &url, Some(&once), Some(&body())).await;
    let v = refused(&a, 401, "initial_token_exhausted");
    assert_eq!(
        v["upstream"]["body"]["error_description"],
        "No remaining count on initial access token"
    );
    assert!(v["hint"].as_str().unwrap().contains("clients-initial-access"));
    let (_, fresh) = admin.create_iat("demo", 600, 1).await;
    assert_eq!(
        call("POST", &url, Some(&fresh), Some(&body())).await.status,
        201,
        "the fix works"
    );
    let (id, doomed) = admin.create_iat("demo", 600, 5).await;
    admin.delete_iat("demo", &id).await;
    let v = refused(
        &call("POST", &url, Some(&doomed), Some(&body())).await,
        401,
        "initial_token_not_found",
    );
    assert_eq!(v["upstream"]["status"], 401);
    let (_, fresh) = admin.create_iat("demo", 600, 1).await;
    assert_eq!(
        call("POST", &url, Some(&fresh), Some(&body())).await.status,
        201,
        "the fix works"
    );
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn registration_access_tokens_rotate() {
    let e = env();
    let admin = Admin::login(&e.gw).await;
    let (_, iat) = admin.create_iat("demo", 600, 1).await;
    let name = unique("rat");
    let a = call(
        "POST",
        &reg(&e.gw, "demo", "openid-connect"),
        Some(&iat),
        Some(&json!({"client_name": name, "redirect_uris": ["http://127.0.0.1:4000/cb"]})),
    )
    .await;
    assert_eq!(a.status, 201);
    let created = a.json();
    let id = created["client_id"].as_str().unwrap().to_owned();
    let rat1 = created["registration_access_token"].as_str().unwrap().to_owned();
    let url = format!("{}/{id}", reg(&e.gw, "demo", "openid-connect"));
    let a = call("GET", &url, Some(&rat1), None).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let update = json!({"client_id": id, "client_name": format!("{name}-renamed"), "redirect_uris": ["http://127.0.0.1:4000/cb"]});
    let a = call("PUT", &url, Some(&rat1), Some(&update)).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let rat2 = a.json()["registration_access_token"].as_str().unwrap().to_owned();
    assert_ne!(rat1, rat2, "Keycloak rotates the token on update");
    let v = refused(
        &call("PUT", &url, Some(&rat1), Some(&update)).await,
        401,
        "registration_token_invalid",
    );
    assert!(v["hint"].as_str().unwrap().contains("latest"), "{v}");
    assert_eq!(call("DELETE", &url, Some(&rat2), None).await.status, 204);
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn key_rotation_is_followed_without_restart() {
    let e = env();
    let admin = Admin::login(&e.gw).await;
    let realm = unique("rotation");
    let realm_id = admin.create_realm(&realm, json!({})).await;
    let uuid = admin.create_service_client(&realm, "registrar", "rot-secret").await;
    admin.grant(&realm, &uuid, "realm-management", "create-client").await;
    let url = reg(&e.gw, &realm, "openid-connect");
    let body = || json!({"client_name": unique("rot"), "redirect_uris": ["http://127.0.0.1:4000/cb"]});
    let old = client_token(&e.gw, &realm, "registrar", "rot-secret").await;
    assert_eq!(call("POST", &url, Some(&old), Some(&body())).await.status, 201);
    let old_providers: Vec<String> = admin
        .components(&realm, "org.keycloak.keys.KeyProvider")
        .await
        .iter()
        .filter(|c| c["providerId"] == "rsa-generated")
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    admin.add_rsa_key(&realm, &realm_id, "rsa-rotated", 200).await;
    let new = client_token(&e.gw, &realm, "registrar", "rot-secret").await;
    assert_ne!(kid_of(&old), kid_of(&new), "the new token is signed by the new key");
    tokio::time::sleep(Duration::from_millis(1100)).await; // past min_refetch_interval
    let a = call("POST", &url, Some(&new), Some(&body())).await;
    assert_eq!(
        a.status,
        201,
        "new kid accepted without a restart: {}",
        String::from_utf8_lossy(&a.body)
    );
    for id in old_providers {
        admin.delete_component(&realm, &id).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a = call("POST", &url, Some(&old), Some(&body())).await;
    let v = refused(&a, 401, "kid_unknown");
    assert!(v["error_description"].as_str().unwrap().contains(&kid_of(&old)), "{v}");
    assert_eq!(call("POST", &url, Some(&new), Some(&body())).await.status, 201);
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn issuer_mismatch_names_hostname_and_public_url() {
    let e = env();
    let direct = client_token(&e.kc, "demo", "registrar", "registrar-secret").await;
    let a = call(
        "POST",
        &reg(&e.gw, "demo", "default"),
        Some(&direct),
        Some(&json!({"clientId": unique("iss")})),
    )
    .await;
    let v = refused(&a, 401, "issuer_mismatch");
    let hint = v["hint"].as_str().unwrap();
    assert!(hint.contains("KC_HOSTNAME") && hint.contains("--public-url"), "{hint}");
    assert!(v["error_description"].as_str().unwrap().contains(&e.kc), "{v}");
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn anonymous_refused_by_policy_or_by_trusted_hosts() {
    let e = env();
    let body = json!({"client_name": unique("anon"), "redirect_uris": ["http://127.0.0.1:4000/cb"]});
    let v = refused(
        &call("POST", &reg(&e.gw, "demo", "openid-connect"), None, Some(&body)).await,
        403,
        "anonymous_not_allowed",
    );
    assert_eq!(
        v["error"], "insufficient_scope",
        "the status and error Keycloak itself answers: {v}"
    );
    assert!(v["hint"].as_str().unwrap().contains("initial access token"), "{v}");
    let gw = inproc(&e, PERMISSIVE).await;
    let v = refused(
        &call("POST", &reg(&gw.base, "demo", "openid-connect"), None, Some(&body)).await,
        403,
        "trusted_host_rejected",
    );
    assert_eq!(v["upstream"]["status"], 403);
    let hint = v["hint"].as_str().unwrap();
    assert!(
        hint.contains("KC_PROXY_HEADERS") && hint.contains("Trusted Hosts"),
        "{hint}"
    );
    gw.gw.shutdown().await;
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn keycloak_policies_and_metadata_refusals_are_rewritten() {
    let e = env();
    let gw = inproc(&e, PERMISSIVE).await;
    let admin = Admin::login(&gw.base).await;
    let (_, iat) = admin.create_iat("demo", 600, 20).await;
    let oidc = reg(&gw.base, "demo", "openid-connect");
    let kc = reg(&gw.base, "demo", "default");
    let v = refused(
        &call(
            "POST",
            &oidc,
            Some(&iat),
            Some(&json!({"client_name": "s", "scope": "nonexistent-scope"})),
        )
        .await,
        403,
        "client_scope_rejected",
    );
    assert!(v["hint"].as_str().unwrap().contains("Allowed Client Scopes"));
    let mapper = json!({"clientId": unique("mapper"), "protocolMappers": [{"name": "x", "protocol": "openid-connect", "protocolMapper": "oidc-hardcoded-claim-mapper", "config": {"claim.name": "a", "claim.value": "b"}}]});
    refused(
        &call("POST", &kc, Some(&iat), Some(&mapper)).await,
        403,
        "protocol_mapper_rejected",
    );
    let dup = unique("dup");
    assert_eq!(
        call("POST", &kc, Some(&iat), Some(&json!({"clientId": dup})))
            .await
            .status,
        201
    );
    let v = refused(
        &call("POST", &kc, Some(&iat), Some(&json!({"clientId": dup}))).await,
        400,
        "client_id_in_use",
    );
    assert!(v["hint"].as_str().unwrap().contains(&dup));
    assert_eq!(
        call("POST", &kc, Some(&iat), Some(&json!({"clientId": format!("{dup}-2")})))
            .await
            .status,
        201,
        "the fix works"
    );
    let v = refused(
        &call(
            "POST",
            &oidc,
            Some(&iat),
            Some(&json!({"client_name": "u", "resource": "x"})),
        )
        .await,
        400,
        "unrecognized_field",
    );
    assert_eq!(v["details"]["field"], "resource");
    // The gateway refuses fragments itself; an invalid percent-escape only Keycloak catches.
    refused(
        &call(
            "POST",
            &oidc,
            Some(&iat),
            Some(&json!({"client_name": "f", "redirect_uris": ["https://a.example.com/cb#x"]})),
        )
        .await,
        400,
        "redirect_uri_fragment",
    );
    let v = refused(
        &call(
            "POST",
            &oidc,
            Some(&iat),
            Some(&json!({"client_name": "f", "redirect_uris": ["https://a.example.com/%zz"]})),
        )
        .await,
        400,
        "invalid_redirect_uri",
    );
    assert_eq!(
        v["upstream"]["body"]["error_description"],
        "A redirect URI is not a valid URI"
    );

    refused(
        &call(
            "POST",
            &oidc,
            Some(&iat),
            Some(&json!({"client_name": "m", "token_endpoint_auth_method": "private_key_jwt"})),
        )
        .await,
        400,
        "client_metadata_invalid",
    );
    refused(
        &call(
            "POST",
            &oidc,
            Some(&iat),
            Some(&json!({"client_id": "mine", "client_name": "i"})),
        )
        .await,
        400,
        "client_id_included",
    );
    refused(
        &call("POST", &reg(&gw.base, "demo", "nope"), Some(&iat), Some(&json!({}))).await,
        404,
        "provider_not_found",
    );
    let manager = client_token(&gw.base, "demo", "manager", "manager-secret").await;
    refused(
        &call("GET", &format!("{kc}/{}", unique("ghost")), Some(&manager), None).await,
        404,
        "client_not_found",
    );
    // Reading a SAML client on the OIDC endpoint (see EXPECT).
    let saml = unique("saml");
    admin
        .call(
            "POST",
            "/demo/clients",
            Some(&json!({"clientId": saml, "protocol": "saml", "enabled": true})),
        )
        .await;
    let a = call("GET", &format!("{oidc}/{saml}"), Some(&manager), None).await;
    match expect(&e).saml_on_oidc_read {
        400 => drop(refused(&a, 400, "wrong_client_protocol")),
        status => assert_eq!(
            a.status.as_u16(),
            status,
            "Keycloak {}: {}",
            e.version,
            String::from_utf8_lossy(&a.body)
        ),
    }
    gw.gw.shutdown().await;
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn max_clients_https_required_and_client_policies() {
    let e = env();
    let gw = inproc(&e, PERMISSIVE).await;
    let admin = Admin::login(&gw.base).await;
    let realm = unique("limits");
    let realm_id = admin.create_realm(&realm, json!({})).await;
    let count = admin
        .call("GET", &format!("/{realm}/clients?max=1000"), None)
        .await
        .json()
        .as_array()
        .unwrap()
        .len();
    admin
        .add_component(&realm, json!({"name": "Max Clients Limit", "providerId": "max-clients", "providerType": "org.keycloak.services.clientregistration.policy.ClientRegistrationPolicy", "subType": "authenticated", "parentId": realm_id, "config": {"max-clients": [count.to_string()]}}))
        .await;
    let (_, iat) = admin.create_iat(&realm, 600, 5).await;
    let v = refused(
        &call(
            "POST",
            &reg(&gw.base, &realm, "openid-connect"),
            Some(&iat),
            Some(&json!({"client_name": "over"})),
        )
        .await,
        403,
        "max_clients_reached",
    );
    assert!(v["hint"].as_str().unwrap().contains("Max Clients Limit"));
    let strict = unique("strict");
    admin.create_realm(&strict, json!({"sslRequired": "all"})).await;
    let (_, iat) = admin.create_iat(&strict, 600, 5).await;
    refused(
        &call(
            "POST",
            &reg(&gw.base, &strict, "openid-connect"),
            Some(&iat),
            Some(&json!({"client_name": "plain"})),
        )
        .await,
        403,
        "https_required",
    );
    // A Client Policy (the newer mechanism) refuses with only an error code as description.
    let policed = unique("policed");
    admin.create_realm(&policed, json!({})).await;
    let profile = json!({"profiles": [{"name": "no-implicit", "description": "test", "executors": [{"executor": "reject-implicit-grant", "configuration": {"auto-configure": "false"}}]}]});
    assert_eq!(
        admin
            .call("PUT", &format!("/{policed}/client-policies/profiles"), Some(&profile))
            .await
            .status,
        204
    );
    let policy = json!({"policies": [{"name": "dcr-no-implicit", "description": "test", "enabled": true, "profiles": ["no-implicit"],
        "conditions": [{"condition": "client-updater-context", "configuration": {"update-client-source": ["ByInitialAccessToken"]}}]}]});
    assert_eq!(
        admin
            .call("PUT", &format!("/{policed}/client-policies/policies"), Some(&policy))
            .await
            .status,
        204
    );
    let (_, iat) = admin.create_iat(&policed, 600, 5).await;
    let body = json!({"client_name": "implicit", "redirect_uris": ["https://a.example.com/cb"], "grant_types": ["implicit"], "response_types": ["token"]});
    let v = refused(
        &call(
            "POST",
            &reg(&gw.base, &policed, "openid-connect"),
            Some(&iat),
            Some(&body),
        )
        .await,
        403,
        "client_policy_rejected",
    );
    assert_eq!(v["upstream"]["body"]["error_description"], "invalid_client_metadata");
    assert!(v["hint"].as_str().unwrap().contains("Client policies"), "{v}");
    gw.gw.shutdown().await;
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn read_update_delete_with_bearer_roles() {
    let e = env();
    let manager = client_token(&e.gw, "demo", "manager", "manager-secret").await;
    let registrar = client_token(&e.gw, "demo", "registrar", "registrar-secret").await;
    let id = unique("rud");
    let kc = reg(&e.gw, "demo", "default");
    assert_eq!(
        call("POST", &kc, Some(&manager), Some(&json!({"clientId": id})))
            .await
            .status,
        201
    );
    let one = format!("{kc}/{id}");
    let v = refused(&call("GET", &one, Some(&registrar), None).await, 403, "missing_role");
    assert!(v["hint"].as_str().unwrap().contains("view-clients"), "{v}");
    assert_eq!(call("GET", &one, Some(&manager), None).await.status, 200);
    refused(
        &call("PUT", &one, Some(&manager), Some(&json!({"clientId": "other"}))).await,
        400,
        "client_id_mismatch",
    );
    assert_eq!(
        call(
            "PUT",
            &one,
            Some(&manager),
            Some(&json!({"clientId": id, "description": "updated"}))
        )
        .await
        .status,
        200
    );
    assert_eq!(call("DELETE", &one, Some(&manager), None).await.status, 204);
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn explain_works_on_real_tokens() {
    let e = env();
    let token = client_token(&e.gw, "demo", "registrar", "registrar-secret").await;
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let run = |op: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dcr-gateway"))
            .args([
                "explain",
                "--token",
                &token,
                "--realm",
                "demo",
                "--operation",
                op,
                "--provider",
                "default",
            ])
            .args(["--upstream", &e.kc, "--public-url", &e.gw, "--policies"])
            .arg(&policies)
            .output()
            .unwrap()
    };
    let ok = run("create");
    let text = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{text}");
    assert!(text.contains("signature:  valid"), "{text}");
    let no = run("update");
    let text = String::from_utf8_lossy(&no.stdout);
    assert_eq!(no.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL") && text.contains("manage-clients") && text.contains("kcadm.sh add-roles"),
        "{text}"
    );
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn empty_bearer_per_version() {
    let e = env();
    let row = expect(&e);
    let req = |base: &str| {
        http::Request::post(reg(base, "demo", "openid-connect"))
            .header("authorization", "Bearer ")
            .header("content-type", "application/json")
            .body(dcr_gateway::net::full("{}"))
            .unwrap()
    };
    let direct = support::send(req(&e.kc)).await;
    assert_eq!(
        direct.status.as_u16(),
        row.direct_empty_bearer,
        "Keycloak {} itself",
        e.version
    );
    refused(&support::send(req(&e.gw)).await, 401, "token_malformed");
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn zz_prometheus_scrapes_the_gateway() {
    let e = env();
    let prom = e.prom.clone().expect("PROM_URL");
    wait_ready(&e.gw_admin).await;
    let query = |q: String| {
        let prom = prom.clone();
        async move {
            let url = format!(
                "{prom}/api/v1/query?query={}",
                q.replace('{', "%7B")
                    .replace('}', "%7D")
                    .replace('"', "%22")
                    .replace('=', "%3D")
                    .replace(',', "%2C")
            );
            call("GET", &url, None, None).await.json()["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    };
    let wanted = [
        "up{job=\"dcr-gateway\"}".to_owned(),
        "dcr_gateway_requests_total{route=\"registration\",operation=\"create\",status_class=\"2xx\"}".to_owned(),
        "dcr_gateway_decisions_total{realm=\"demo\",decision=\"deny\",reason=\"missing_role\"}".to_owned(),
        "dcr_gateway_decisions_total{realm=\"demo\",decision=\"allow\"}".to_owned(),
        "dcr_gateway_jwks_fetches_total{realm=\"demo\",result=\"success\"}".to_owned(),
        "dcr_gateway_jwks_keys{realm=\"demo\"}".to_owned(),
        "dcr_gateway_policy_reloads_total{result=\"success\"}".to_owned(),
        "dcr_gateway_token_verifications_total{result=\"valid\"}".to_owned(),
        "dcr_gateway_request_duration_seconds_bucket".to_owned(),
        "dcr_gateway_decisions_total{realm=\"demo\",decision=\"allow\",outcome=\"succeeded\"}".to_owned(),
        "dcr_gateway_decisions_total{realm=\"demo\",decision=\"deny\",outcome=\"refused_by_gateway\"}".to_owned(),
        "dcr_gateway_http_requests_total{method=\"POST\"}".to_owned(),
        "dcr_gateway_upstream_duration_seconds_bucket{route=\"registration\"}".to_owned(),
        "dcr_gateway_jwks_fetch_duration_seconds_count{realm=\"demo\",result=\"success\"}".to_owned(),
        "dcr_gateway_build_info".to_owned(),
        "dcr_gateway_policy_last_reload_success".to_owned(),
        "process_resident_memory_bytes{job=\"dcr-gateway\"}".to_owned(),
        "process_open_fds{job=\"dcr-gateway\"}".to_owned(),
    ];
    for q in wanted {
        let mut found = Vec::new();
        for _ in 0..40 {
            found = query(q.clone()).await;
            if !found.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(!found.is_empty(), "Prometheus has no series for {q}");
        if q.starts_with("up") {
            assert_eq!(found[0]["value"][1], "1", "target up");
        }
    }
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn failed_decode_token_is_told_apart() {
    let e = env();
    let admin = Admin::login(&e.gw).await;
    let realm = unique("decode");
    admin.create_realm(&realm, json!({})).await;
    let uuid = admin.create_service_client(&realm, "registrar", "dec-secret").await;
    admin.grant(&realm, &uuid, "realm-management", "create-client").await;
    let url = reg(&e.gw, &realm, "openid-connect");
    let body = || json!({"client_name": unique("dec"), "redirect_uris": ["http://127.0.0.1:4000/cb"]});

    // Revoked: the gateway verifies the token, Keycloak refuses it, a fresh key set still holds
    // the key, so the cause is revocation.
    let token = client_token(&e.gw, &realm, "registrar", "dec-secret").await;
    let revoke = support::keycloak::form(
        &format!("{}/realms/{realm}/protocol/openid-connect/revoke", e.gw),
        &[
            ("client_id", "registrar"),
            ("client_secret", "dec-secret"),
            ("token", &token),
        ],
    )
    .await;
    assert_eq!(revoke.status, 200, "{}", String::from_utf8_lossy(&revoke.body));
    tokio::time::sleep(Duration::from_millis(1100)).await; // let a refetch be allowed
    let v = refused(
        &call("POST", &url, Some(&token), Some(&body())).await,
        401,
        "token_revoked",
    );
    assert_eq!(v["upstream"]["body"]["error_description"], "Failed decode token");
    let fresh = client_token(&e.gw, &realm, "registrar", "dec-secret").await;
    assert_eq!(
        call("POST", &url, Some(&fresh), Some(&body())).await.status,
        201,
        "a new token works"
    );

    // Expired initial access token, presented inside the gateway's leeway: Keycloak's own
    // refusal ("Failed decode token") is diagnosed as expiry.
    let (_, short) = admin.create_iat(&realm, 1, 5).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let v = refused(
        &call("POST", &url, Some(&short), Some(&body())).await,
        401,
        "token_expired",
    );
    assert_eq!(v["upstream"]["status"], 401);

    // The realm's HMAC key deleted: every initial access token it signed dies.
    let (_, doomed) = admin.create_iat(&realm, 600, 5).await;
    for c in admin.components(&realm, "org.keycloak.keys.KeyProvider").await {
        if c["providerId"] == "hmac-generated" {
            admin.delete_component(&realm, c["id"].as_str().unwrap()).await;
        }
    }
    let v = refused(
        &call("POST", &url, Some(&doomed), Some(&body())).await,
        401,
        "hmac_token_rejected",
    );
    assert!(v["hint"].as_str().unwrap().contains("clients-initial-access"), "{v}");
    let d = v["error_description"].as_str().unwrap();
    assert!(
        d.contains("altered") && d.contains("rotated away or deleted") && !d.contains("probably"),
        "{d}"
    );
    let (_, replacement) = admin.create_iat(&realm, 600, 5).await;
    assert_eq!(
        call("POST", &url, Some(&replacement), Some(&body())).await.status,
        201,
        "the fix works"
    );
}

// --- issue 17: side doors, each stored by Keycloak when sent directly, refused through the gateway

const DOORS: &str = r#"
version = 1
[default.metadata]
grant_types = ["authorization_code", "refresh_token"]
forbidden_fields = ["protocol_mappers"]
[default.metadata.redirect_uris]
schemes = ["https"]
hosts = ["*.example.com"]
"#;

/// A realm of its own with a registrar (create-client, manage-clients), an in-process gateway
/// enforcing `DOORS`, an admin session on Keycloak directly, and a bearer token for each side.
struct Doors {
    realm: String,
    gw: Inproc,
    admin: Admin,
    direct: String,
    through: String,
}

async fn doors(e: &Env) -> Doors {
    let admin = Admin::login(&e.kc).await;
    let realm = unique("doors");
    admin.create_realm(&realm, json!({})).await;
    let uuid = admin.create_service_client(&realm, "registrar", "doors-secret").await;
    for role in ["create-client", "manage-clients"] {
        admin.grant(&realm, &uuid, "realm-management", role).await;
    }
    let gw = inproc(e, DOORS).await;
    Doors {
        direct: client_token(&e.kc, &realm, "registrar", "doors-secret").await,
        through: client_token(&gw.base, &realm, "registrar", "doors-secret").await,
        realm,
        gw,
        admin,
    }
}

impl Doors {
    /// Creates directly on Keycloak (must succeed) and returns the stored client as admin sees it.
    async fn stored(&self, e: &Env, provider: &str, body: &Value) -> Value {
        let a = call(
            "POST",
            &reg(&e.kc, &self.realm, provider),
            Some(&self.direct),
            Some(body),
        )
        .await;
        assert_eq!(a.status, 201, "direct {body}: {}", String::from_utf8_lossy(&a.body));
        let v = a.json();
        let id = v["clientId"].as_str().or(v["client_id"].as_str()).unwrap().to_owned();
        let uuid = self.admin.client_uuid(&self.realm, &id).await.unwrap();
        let mut rep = self
            .admin
            .call("GET", &format!("/{}/clients/{uuid}", self.realm), None)
            .await
            .json();
        rep["secret"] = v["secret"].clone();
        rep
    }

    /// The same body through the gateway: refused with `reason`, and never created.
    async fn refused_through(&self, provider: &str, body: &Value, reason: &str, field: &str) {
        let before = self.count().await;
        let a = call(
            "POST",
            &reg(&self.gw.base, &self.realm, provider),
            Some(&self.through),
            Some(body),
        )
        .await;
        let v = refused(&a, 400, reason);
        assert_eq!(v["details"]["field"], field, "{v}");
        let rule = v["details"]["rule"].as_str().unwrap();
        let by_policy = rule.starts_with("default.metadata");
        assert!(by_policy || rule == "built-in.metadata.server_urls", "{v}");
        assert_eq!(self.count().await, before, "{body} reached Keycloak");
    }

    async fn count(&self) -> usize {
        let a = self
            .admin
            .call("GET", &format!("/{}/clients?max=1000", self.realm), None)
            .await;
        a.json().as_array().map(Vec::len).unwrap_or(0)
    }
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn side_door_grant_flags_and_response_types() {
    let e = env();
    let d = doors(&e).await;
    let grants = "standardFlowEnabled/implicitFlowEnabled/directAccessGrantsEnabled/serviceAccountsEnabled/authorizationServicesEnabled/attributes";
    // Item 1: the device grant in three spellings Keycloak reads as on.
    for (i, v) in [json!("TRUE"), json!("True"), json!(true)].into_iter().enumerate() {
        let body = json!({"clientId": unique(&format!("dev{i}")), "attributes": {"oauth2.device.authorization.grant.enabled": v}});
        let rep = d.stored(&e, "default", &body).await;
        let stored = rep["attributes"]["oauth2.device.authorization.grant.enabled"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(stored.eq_ignore_ascii_case("true"), "{rep}");
        if i == 0 {
            // Keycloak really runs the device flow for "TRUE".
            let a = support::keycloak::form(
                &format!("{}/realms/{}/protocol/openid-connect/auth/device", e.kc, d.realm),
                &[
                    ("client_id", rep["clientId"].as_str().unwrap()),
                    ("client_secret", rep["secret"].as_str().unwrap()),
                ],
            )
            .await;
            assert_eq!(
                a.status,
                200,
                "device authorization: {}",
                String::from_utf8_lossy(&a.body)
            );
            assert!(a.json()["device_code"].is_string());
        }
        d.refused_through("default", &body, "grant_type_not_allowed", grants)
            .await;
    }
    for (attr, v) in [
        ("oauth2.jwt.authorization.grant.enabled", "True"),
        ("oidc.ciba.grant.enabled", "TRUE"),
        ("standard.token.exchange.enabled", "tRuE"),
    ] {
        let body = json!({"clientId": unique("attr"), "attributes": {attr: v}});
        assert_eq!(d.stored(&e, "default", &body).await["attributes"][attr], v);
        d.refused_through("default", &body, "grant_type_not_allowed", grants)
            .await;
    }
    // Jackson reads the string "TRUE" into serviceAccountsEnabled.
    let body = json!({"clientId": unique("sa"), "serviceAccountsEnabled": "TRUE", "implicitFlowEnabled": 1});
    let rep = d.stored(&e, "default", &body).await;
    assert_eq!(
        (
            rep["serviceAccountsEnabled"].clone(),
            rep["implicitFlowEnabled"].clone()
        ),
        (json!(true), json!(true))
    );
    d.refused_through("default", &body, "grant_type_not_allowed", grants)
        .await;
    // Item 2: response types that switch on the implicit flow whatever grant_types says.
    for rt in [json!(["token"]), json!(["code id_token"]), json!(["id_token token"])] {
        let body = json!({"client_name": unique("rt"), "redirect_uris": ["https://app.example.com/cb"], "grant_types": ["authorization_code"], "response_types": rt});
        assert_eq!(
            d.stored(&e, "openid-connect", &body).await["implicitFlowEnabled"],
            true,
            "{rt}"
        );
        d.refused_through(
            "openid-connect",
            &body,
            "grant_type_not_allowed",
            "grant_types/response_types",
        )
        .await;
    }
    let ok = json!({"client_name": unique("ok"), "redirect_uris": ["https://app.example.com/cb"], "grant_types": ["authorization_code", "refresh_token"]});
    let a = call(
        "POST",
        &reg(&d.gw.base, &d.realm, "openid-connect"),
        Some(&d.through),
        Some(&ok),
    )
    .await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    d.gw.gw.shutdown().await;
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn side_door_urls_browsers_and_keycloak_follow() {
    let e = env();
    let d = doors(&e).await;
    let browser = [
        (
            json!({"clientId": unique("saml"), "protocol": "saml", "attributes": {"saml_assertion_consumer_url_post": "https://evil.com/acs"}}),
            "attributes.saml_assertion_consumer_url_post",
        ),
        (
            json!({"clientId": unique("plr"), "attributes": {"post.logout.redirect.uris": "https://app.example.com/bye##https://evil.com/y"}}),
            "attributes.post.logout.redirect.uris",
        ),
        (
            json!({"clientId": unique("root"), "rootUrl": "https://evil.com"}),
            "rootUrl",
        ),
        (
            json!({"clientId": unique("fcl"), "frontchannelLogout": true, "attributes": {"frontchannel.logout.url": "https://evil.com/fc"}}),
            "attributes.frontchannel.logout.url",
        ),
    ];
    for (body, field) in &browser {
        d.stored(&e, "default", body).await;
        d.refused_through("default", body, "browser_url_not_allowed", field)
            .await;
    }
    let body = json!({"client_name": unique("oplr"), "redirect_uris": ["https://app.example.com/cb"], "post_logout_redirect_uris": ["https://evil.com/bye"]});
    d.stored(&e, "openid-connect", &body).await;
    d.refused_through(
        "openid-connect",
        &body,
        "browser_url_not_allowed",
        "post_logout_redirect_uris",
    )
    .await;
    let server = [
        (
            json!({"clientId": unique("adm"), "adminUrl": "http://169.254.169.254/latest"}),
            "adminUrl",
        ),
        (
            json!({"clientId": unique("bcl"), "attributes": {"backchannel.logout.url": "http://2130706433:8080/logout"}}),
            "attributes.backchannel.logout.url",
        ),
    ];
    for (body, field) in &server {
        d.stored(&e, "default", body).await;
        d.refused_through("default", body, "server_url_not_allowed", field)
            .await;
    }
    let body = json!({"client_name": unique("obcl"), "redirect_uris": ["https://app.example.com/cb"], "backchannel_logout_uri": "http://[::ffff:127.0.0.1]:9000/logout"});
    let rep = d.stored(&e, "openid-connect", &body).await;
    assert_eq!(
        rep["attributes"]["backchannel.logout.url"],
        "http://[::ffff:127.0.0.1]:9000/logout"
    );
    d.refused_through(
        "openid-connect",
        &body,
        "server_url_not_allowed",
        "backchannel_logout_uri",
    )
    .await;
    d.gw.gw.shutdown().await;
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn side_door_updates_keep_what_is_there() {
    let e = env();
    let d = doors(&e).await;
    let id = unique("kcreg");
    let mapper = json!({"name": "dept", "protocol": "openid-connect", "protocolMapper": "oidc-usermodel-attribute-mapper",
                        "config": {"user.attribute": "dept", "claim.name": "dept", "access.token.claim": "true", "jsonType.label": "String"}});
    let body = json!({"clientId": id, "redirectUris": ["https://app.example.com/cb"], "protocolMappers": [mapper]});
    d.stored(&e, "default", &body).await;
    let url = format!("{}/{id}", reg(&d.gw.base, &d.realm, "default"));
    let mappers = |rep: &Value| {
        rep["protocolMappers"]
            .as_array()
            .map(|m| m.iter().map(|x| x["config"]["claim.name"].clone()).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    // Keycloak's own CLI through the gateway: kcreg.sh update ID -s description=x.
    let out = kcreg(&e, &d, &["update", &id, "-s", "description=viakcreg", "-o", "-c"]).await;
    assert!(
        out.status.success(),
        "kcreg.sh update failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (printed["description"].clone(), mappers(&printed)),
        (json!("viakcreg"), vec![json!("dept")])
    );
    // The same by hand: read, edit, write back, through the gateway.
    let mut current = call("GET", &url, Some(&d.through), None).await.json();
    assert_eq!(mappers(&current), [json!("dept")], "{current}");
    current["description"] = json!("x");
    let a = call("PUT", &url, Some(&d.through), Some(&current)).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let after = a.json();
    assert_eq!(
        (after["description"].clone(), mappers(&after)),
        (json!("x"), vec![json!("dept")])
    );
    // Changing the mapper is refused through the gateway (and stored when sent directly).
    let mut changed = after.clone();
    changed["protocolMappers"][0]["config"]["claim.name"] = json!("roles");
    let v = refused(
        &call("PUT", &url, Some(&d.through), Some(&changed)).await,
        400,
        "field_forbidden",
    );
    let hint = v["hint"].as_str().unwrap();
    assert!(
        hint.contains("exactly as the client has it now") && hint.contains("\"protocolMappers\": []"),
        "{hint}"
    );
    let now = call("GET", &url, Some(&d.through), None).await.json();
    assert_eq!(mappers(&now), [json!("dept")], "the refused update changed nothing");
    let direct = format!("{}/{id}", reg(&e.kc, &d.realm, "default"));
    let a = call("PUT", &direct, Some(&d.direct), Some(&changed)).await;
    assert_eq!(
        (a.status.as_u16(), mappers(&a.json())),
        (200, vec![json!("roles")]),
        "stored directly"
    );
    // What the hint says about Keycloak holds: leaving protocolMappers out keeps them, [] deletes.
    let a = call(
        "PUT",
        &direct,
        Some(&d.direct),
        Some(&json!({"clientId": id, "description": "y"})),
    )
    .await;
    assert_eq!((a.status.as_u16(), mappers(&a.json())), (200, vec![json!("roles")]));
    let a = call(
        "PUT",
        &direct,
        Some(&d.direct),
        Some(&json!({"clientId": id, "protocolMappers": []})),
    )
    .await;
    assert_eq!((a.status.as_u16(), mappers(&a.json()).len()), (200, 0));
    d.gw.gw.shutdown().await;
}

/// Runs Keycloak's `kcreg.sh` (from the distribution the suite started) against the in-process
/// gateway, authenticated as the registrar's service account, without a config file.
async fn kcreg(e: &Env, d: &Doors, args: &[&str]) -> std::process::Output {
    let cache =
        std::env::var("DCR_CACHE").unwrap_or_else(|_| format!("{}/.cache/dcr-gateway", std::env::var("HOME").unwrap()));
    let bin = format!("{cache}/keycloak/keycloak-{}/bin/kcreg.sh", e.version);
    assert!(
        Path::new(&bin).exists(),
        "{bin} is missing: scripts/keycloak.sh fetch {}",
        e.version
    );
    let java = std::process::Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/keycloak.sh"))
        .args(["java-home", &e.version])
        .output()
        .unwrap();
    let java_home = String::from_utf8(java.stdout).unwrap().trim().to_owned();
    let mut cmd = std::process::Command::new(bin);
    cmd.args(args)
        .args([
            "--no-config",
            "--server",
            &d.gw.base,
            "--realm",
            &d.realm,
            "--client",
            "registrar",
            "--secret",
            "doors-secret",
        ])
        .env("JAVA_HOME", java_home)
        .env("HOME", d.gw._dir.path());
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// Issue 17 item 4: a manage-clients service account writes clients through the admin REST API.
/// Sent to Keycloak directly, the off-policy client and the redirect change are stored; through
/// the gateway they are refused by the realm's rules (and the spellings by the path check),
/// while an administrator's session (admin-cli, like kcadm.sh; the console is the same rule) is
/// forwarded.
#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn admin_api_client_writes_are_governed_per_caller() {
    let e = env();
    let direct = client_token(&e.kc, "demo", "manager", "manager-secret").await;
    let through = client_token(&e.gw, "demo", "manager", "manager-secret").await;
    let admin = Admin::login(&e.kc).await;
    let mapper = json!({"name": "pwn", "protocol": "openid-connect", "protocolMapper": "oidc-hardcoded-claim-mapper",
        "config": {"claim.name": "roles", "claim.value": "admin", "jsonType.label": "String", "access.token.claim": "true"}});
    let evil =
        |id: &str| json!({"clientId": id, "redirectUris": ["https://evil.com/*"], "protocolMappers": [mapper.clone()]});

    // Directly: stored, mapper and all.
    let id = unique("admin-direct");
    let a = call(
        "POST",
        &format!("{}/admin/realms/demo/clients", e.kc),
        Some(&direct),
        Some(&evil(&id)),
    )
    .await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(admin.clients_named("demo", &id).await, 1);
    // Through the gateway: refused by the rule, never stored.
    let id = unique("admin-gw");
    let a = call(
        "POST",
        &format!("{}/admin/realms/demo/clients", e.gw),
        Some(&through),
        Some(&evil(&id)),
    )
    .await;
    let v = refused(&a, 400, "redirect_uri_not_allowed");
    assert_eq!(v["details"]["rule"], "realms.demo.metadata.redirect_uris", "{v}");
    let good_redirect =
        json!({"clientId": id, "redirectUris": ["https://app.example.com/cb"], "protocolMappers": [mapper.clone()]});
    let a = call(
        "POST",
        &format!("{}/admin/realms/demo/clients", e.gw),
        Some(&through),
        Some(&good_redirect),
    )
    .await;
    let v = refused(&a, 400, "field_forbidden");
    assert_eq!(v["details"]["rule"], "realms.demo.metadata.forbidden_fields", "{v}");
    for path in [
        "/admin/realms/demo/clients/",
        "/admin/realms/demo//clients",
        "/admin/realms/demo/client%73",
    ] {
        let a = call("POST", &format!("{}{path}", e.gw), Some(&through), Some(&evil(&id))).await;
        refused(&a, 400, "path_malformed");
    }
    assert_eq!(
        admin.clients_named("demo", &id).await,
        0,
        "an off-policy admin write was stored"
    );

    // A client within the rules goes through; moving its redirect to evil.com does not.
    let ok = json!({"clientId": id, "redirectUris": ["https://app.example.com/cb"]});
    let a = call(
        "POST",
        &format!("{}/admin/realms/demo/clients", e.gw),
        Some(&through),
        Some(&ok),
    )
    .await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let uuid = admin.client_uuid("demo", &id).await.unwrap();
    let moved = json!({"redirectUris": ["https://evil.com/cb"]});
    let one = format!("/admin/realms/demo/clients/{uuid}");
    let a = call("PUT", &format!("{}{one}", e.gw), Some(&through), Some(&moved)).await;
    refused(&a, 400, "redirect_uri_not_allowed");
    let a = call(
        "POST",
        &format!("{}{one}/protocol-mappers/models", e.gw),
        Some(&through),
        Some(&mapper),
    )
    .await;
    refused(&a, 400, "field_forbidden");
    let a = call(
        "POST",
        &format!("{}{one}/scope-mappings/realm", e.gw),
        Some(&through),
        Some(&json!([])),
    )
    .await;
    refused(&a, 403, "admin_write_refused");
    let stored = admin.call("GET", &format!("/demo/clients/{uuid}"), None).await.json();
    assert_eq!(
        stored["redirectUris"],
        json!(["https://app.example.com/cb"]),
        "{stored}"
    );
    assert_eq!(stored["protocolMappers"].as_array().map_or(0, Vec::len), 0, "{stored}");
    // The same PUT sent directly is stored: the gateway is what stood in the way.
    let a = call("PUT", &format!("{}{one}", e.kc), Some(&direct), Some(&moved)).await;
    assert_eq!(a.status, 204, "{}", String::from_utf8_lossy(&a.body));
    let stored = admin.call("GET", &format!("/demo/clients/{uuid}"), None).await.json();
    assert_eq!(stored["redirectUris"], json!(["https://evil.com/cb"]), "{stored}");

    // An administrator's own session is forwarded (by_caller), through the same gateway.
    let through_admin = Admin::login(&e.gw).await;
    let id = unique("admin-console");
    let a = through_admin.call("POST", "/demo/clients", Some(&evil(&id))).await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(admin.clients_named("demo", &id).await, 1);
}

/// Two gateway replicas behind one public address (as behind a load balancer), counting quotas in
/// the suite's Redis (`REDIS_URL`).
async fn redis_replica(e: &Env, policy: &str, prefix: &str) -> Inproc {
    let url = std::env::var("REDIS_URL").expect("REDIS_URL: scripts/keycloak-suite.sh starts Redis");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.toml"), policy).unwrap();
    let mut s = support::settings(&e.kc, Some(dir.path()));
    s.public_url = e.gw.parse().unwrap();
    let text = format!("backend = \"redis\"\nurl = \"{url}\"\nkey_prefix = \"{prefix}\"\n");
    s.quota_store = dcr_gateway::config::store::build(&toml::from_str(&text).unwrap()).unwrap();
    let gw = support::gateway(s).await;
    wait_ready(&format!("http://{}", gw.admin_addr)).await;
    Inproc {
        base: format!("http://{}", gw.addr),
        gw,
        _dir: dir,
    }
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn two_replicas_share_quotas_on_redis() {
    let e = env();
    let policy = r#"
version = 1
[default.create]
token_kinds = ["bearer", "initial_access"]
[realms.demo.quota]
creates = 2
window = "1h"
realm_creates = 3
"#;
    let prefix = format!("{}:", unique("kc-suite"));
    let replicas = [
        redis_replica(&e, policy, &prefix).await,
        redis_replica(&e, policy, &prefix).await,
    ];
    let public = e.gw.trim_start_matches("http://").to_owned();
    let name = unique("shared-quota");
    let create = |i: usize, iat: String| {
        let addr = replicas[i % 2].gw.addr;
        let public = public.clone();
        let body = json!({"client_name": name, "redirect_uris": ["http://127.0.0.1:4000/cb"]});
        async move {
            let mut r = support::req(
                "POST",
                addr,
                "/realms/demo/clients-registrations/openid-connect",
                Some(&iat),
                Some(&body),
            );
            // What the load balancer in front of both replicas forwards.
            r.headers_mut().insert("host", public.parse().unwrap());
            support::send(r).await
        }
    };
    let admin = Admin::login(&e.gw).await;
    let (_, first) = admin.create_iat("demo", 600, 10).await;
    for i in 0..2 {
        let a = create(i, first.clone()).await;
        assert_eq!(a.status, 201, "create {i}: {}", String::from_utf8_lossy(&a.body));
    }
    // The caller's quota of 2 holds across both replicas...
    refused(&create(2, first.clone()).await, 429, "quota_exceeded");
    // ...and minting a new initial access token (a new caller) runs into the realm-wide cap.
    let (_, second) = admin.create_iat("demo", 600, 10).await;
    assert_eq!(create(3, second.clone()).await.status, 201);
    let (_, third) = admin.create_iat("demo", 600, 10).await;
    let v = refused(&create(4, third).await, 429, "realm_quota_exceeded");
    assert_eq!(v["details"]["realm_creates"], 3, "{v}");
    assert_eq!(
        admin.clients_named("demo", &name).await,
        3,
        "Keycloak stored exactly the quota"
    );
    for r in replicas {
        r.gw.shutdown().await;
    }
}

/// Successful key fetches of `realm` by the in-process gateway so far.
async fn key_fetches(ip: &Inproc, realm: &str) -> f64 {
    let (_, text) = support::admin(&ip.gw, "/metrics").await;
    support::token_kit::sample(
        &text,
        &format!(r#"dcr_gateway_jwks_fetches_total{{realm="{realm}",result="success"}}"#),
    )
    .unwrap_or(0.0)
}

async fn until_fetches_exceed(ip: &Inproc, realm: &str, n: f64) {
    for _ in 0..300 {
        if key_fetches(ip, realm).await > n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no key fetch of {realm} beyond {n}");
}

/// Rotation on a real Keycloak, with no refusal window: a key added right after the gateway's
/// start-up fetch, and one added right after a scheduled refresh, are accepted at once (the
/// on-demand refetch budget is their own); a realm created after the gateway started (its
/// fetches failed and back off) is fetched at once when its first token arrives.
#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn rotation_after_start_after_a_refresh_and_a_realm_created_after_start() {
    let e = env();
    let admin = Admin::login(&e.gw).await;
    let (early, late) = (unique("rotstart"), unique("rotlate"));
    let early_id = admin.create_realm(&early, json!({})).await;
    let uuid = admin.create_service_client(&early, "registrar", "rot-secret").await;
    admin.grant(&early, &uuid, "realm-management", "create-client").await;
    let policy = format!(
        "version = 1\n[realms.{early}]\nproviders = [\"openid-connect\"]\n[realms.{late}]\nproviders = [\"openid-connect\"]\n"
    );
    let ip = inproc_tuned(&e, &policy, |s| {
        s.jwks.min_refetch_interval = Duration::from_secs(5);
        s.jwks.refresh_interval = Duration::from_secs(6);
    })
    .await;
    until_fetches_exceed(&ip, &early, 0.0).await;
    let body = || json!({"client_name": unique("rot"), "redirect_uris": ["http://127.0.0.1:4000/cb"]});
    let url = reg(&ip.base, &early, "openid-connect");

    // Right after the start-up fetch.
    admin.add_rsa_key(&early, &early_id, "rsa-after-start", 200).await;
    let t1 = client_token(&ip.base, &early, "registrar", "rot-secret").await;
    let a = call("POST", &url, Some(&t1), Some(&body())).await;
    assert_eq!(
        a.status,
        201,
        "a key added after start: {}",
        String::from_utf8_lossy(&a.body)
    );

    // Right after a scheduled refresh, once the on-demand refetch of the first key is past
    // `min_refetch_interval` (on-demand refetches are rate-limited among themselves; scheduled
    // refreshes do not use their budget).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let n = key_fetches(&ip, &early).await;
    until_fetches_exceed(&ip, &early, n).await;
    admin.add_rsa_key(&early, &early_id, "rsa-after-refresh", 300).await;
    let t2 = client_token(&ip.base, &early, "registrar", "rot-secret").await;
    assert_ne!(kid_of(&t1), kid_of(&t2));
    let a = call("POST", &url, Some(&t2), Some(&body())).await;
    assert_eq!(
        a.status,
        201,
        "a key added after a refresh: {}",
        String::from_utf8_lossy(&a.body)
    );

    // A realm the policy names, created only now.
    admin.create_realm(&late, json!({})).await;
    let uuid = admin.create_service_client(&late, "registrar", "late-secret").await;
    admin.grant(&late, &uuid, "realm-management", "create-client").await;
    let t3 = client_token(&ip.base, &late, "registrar", "late-secret").await;
    let a = call(
        "POST",
        &reg(&ip.base, &late, "openid-connect"),
        Some(&t3),
        Some(&body()),
    )
    .await;
    assert_eq!(
        a.status,
        201,
        "a realm created after start: {}",
        String::from_utf8_lossy(&a.body)
    );
    ip.gw.shutdown().await;
}

/// The gateway's anonymous mode: the registrar service account of realm `demo` as its credential.
const ANONYMOUS: &str = r#"
version = 1
[realms.demo]
providers = ["openid-connect"]
[realms.demo.anonymous]
redirect_hosts = ["app.example.com"]
"#;

fn registrar(s: &mut dcr_gateway::Settings, dir: &Path) {
    let secret = dir.join("registrar-secret");
    std::fs::write(&secret, "registrar-secret\n").unwrap();
    s.realms.insert(
        "demo".into(),
        dcr_gateway::config::RealmSettings {
            registrar: Some(dcr_gateway::config::RegistrarSettings {
                client_id: Some("registrar".into()),
                secret_file: Some(secret),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
}

fn jwt_payload(token: &str) -> Value {
    use base64::Engine;
    let p = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).unwrap())
        .unwrap();
    serde_json::from_slice(&p).unwrap()
}

async fn default_scopes(admin: &Admin, client_id: &str) -> Vec<String> {
    let uuid = admin.client_uuid("demo", client_id).await.unwrap();
    let a = admin
        .call("GET", &format!("/demo/clients/{uuid}/default-client-scopes"), None)
        .await;
    let mut names: Vec<String> = a
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn anonymous_mode_registers_with_trusted_hosts_closed_and_keeps_realm_default_scopes() {
    let e = env();
    let gw = inproc_with(&e, ANONYMOUS, registrar).await;
    wait_ready(&format!("http://{}", gw.gw.admin_addr)).await;
    let name = unique("anon-mcp");
    let body = json!({"client_name": name, "redirect_uris": ["http://127.0.0.1:33418/callback"],
                      "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
                      "token_endpoint_auth_method": "none", "scope": "openid profile", "resource": "https://mcp.example.com/"});
    let direct = call("POST", &reg(&e.kc, "demo", "openid-connect"), None, Some(&body)).await;
    assert_eq!(
        direct.status,
        400,
        "Keycloak refuses the unknown member: {}",
        String::from_utf8_lossy(&direct.body)
    );
    let mut known = body.clone();
    known.as_object_mut().unwrap().remove("resource");
    let direct = call("POST", &reg(&e.kc, "demo", "openid-connect"), None, Some(&known)).await;
    let text = String::from_utf8_lossy(&direct.body).into_owned();
    // With `scope`, Keycloak's anonymous policies refuse it too, Allowed Client Scopes or
    // Trusted Hosts first (the order of the realm's policy components is not fixed).
    assert_eq!(direct.status, 403, "{text}");
    assert!(
        text.contains("rejected request to client-registration service"),
        "{text}"
    );
    known.as_object_mut().unwrap().remove("scope");
    let direct = call("POST", &reg(&e.kc, "demo", "openid-connect"), None, Some(&known)).await;
    let text = String::from_utf8_lossy(&direct.body).into_owned();
    assert_eq!(direct.status, 403, "Trusted Hosts stays closed: {text}");
    assert!(text.contains("Trusted Hosts"), "{text}");
    let a = call("POST", &reg(&gw.base, "demo", "openid-connect"), None, Some(&body)).await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.headers["dcr-gateway-dropped-members"], "scope, resource");
    let v = a.json();
    let client_id = v["client_id"].as_str().unwrap().to_owned();
    assert_eq!(v["token_endpoint_auth_method"], "none");
    let rat = v["registration_access_token"].as_str().unwrap();
    assert_eq!(
        jwt_payload(rat)["registration_auth"],
        "authenticated",
        "the client is governed by Keycloak's authenticated policy set from now on"
    );
    let admin = Admin::login(&e.gw).await;
    let scopes = default_scopes(&admin, &client_id).await;
    for s in ["basic", "profile", "email", "roles"] {
        assert!(
            scopes.iter().any(|x| x == s),
            "realm default scope {s} missing: {scopes:?}"
        );
    }
    // What the dropped member would have done (keycloak#50807), measured on this version.
    let (_, iat) = admin.create_iat("demo", 600, 1).await;
    let kept = json!({"client_name": unique("scope-kept"), "redirect_uris": ["http://127.0.0.1:1/cb"], "token_endpoint_auth_method": "none", "scope": "profile"});
    let a = call("POST", &reg(&e.gw, "demo", "openid-connect"), Some(&iat), Some(&kept)).await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let kept_id = a.json()["client_id"].as_str().unwrap().to_owned();
    assert_eq!(default_scopes(&admin, &kept_id).await, expect(&e).scope_member_defaults);
    // An off-policy redirect URI never reaches Keycloak, and is answered as Keycloak would.
    let evil = json!({"client_name": unique("evil"), "redirect_uris": ["https://evil.example/cb"], "token_endpoint_auth_method": "none"});
    let a = call("POST", &reg(&gw.base, "demo", "openid-connect"), None, Some(&evil)).await;
    let v = refused(&a, 403, "redirect_uri_not_allowed");
    assert_eq!(v["error"], "insufficient_scope");
    assert_eq!(
        admin.clients_named("demo", evil["client_name"].as_str().unwrap()).await,
        0
    );
    gw.gw.shutdown().await;
}

/// Sends `method url` with a bearer token, raw body and extra headers.
async fn call_with(method: &str, url: &str, token: &str, headers: &[(&str, &str)], body: &str) -> support::Answer {
    let mut b = http::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {token}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    support::send(b.body(dcr_gateway::net::full(body.to_owned())).unwrap()).await
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn issuer_through_the_gateway_with_the_default_public_url() {
    let e = env();
    // public_url left at its default, the upstream URL: the issue's "normal deployment".
    let ip = inproc_tuned(&e, PERMISSIVE, |s| s.public_url = s.upstream.clone()).await;
    assert_eq!(ip.gw.settings().public_url.as_string(), e.kc);
    let url = reg(&ip.base, "demo", "openid-connect");
    let body = || json!({"client_name": unique("dflt-iss"), "redirect_uris": ["http://127.0.0.1:4000/cb"]});
    // A service-account token obtained through the gateway carries the gateway's host.
    let token = client_token(&ip.base, "demo", "registrar", "registrar-secret").await;
    let iss = jwt_payload(&token)["iss"].as_str().unwrap().to_owned();
    assert_eq!(
        iss,
        format!("{}/realms/demo", ip.base),
        "Keycloak follows the forwarded host"
    );
    let a = call("POST", &url, Some(&token), Some(&body())).await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    // So does an initial access token created through the gateway.
    let admin = Admin::login(&ip.base).await;
    let (_, iat) = admin.create_iat("demo", 600, 1).await;
    assert_eq!(jwt_payload(&iat)["iss"], iss);
    let a = call("POST", &url, Some(&iat), Some(&body())).await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    // A token minted at Keycloak's own address has the configured issuer (public_url), so the
    // gateway lets it through; Keycloak refuses it for this host, and the rewrite says why.
    let direct = client_token(&e.kc, "demo", "registrar", "registrar-secret").await;
    let v = refused(
        &call("POST", &url, Some(&direct), Some(&body())).await,
        401,
        "issuer_mismatch",
    );
    assert_eq!(v["upstream"]["body"]["error_description"], "Failed decode token", "{v}");
    assert!(v["error_description"].as_str().unwrap().contains(&iss), "{v}");
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn a_deleted_clients_registration_token_is_told_from_a_rotated_one() {
    let e = env();
    let admin = Admin::login(&e.gw).await;
    let (_, iat) = admin.create_iat("demo", 600, 1).await;
    let name = unique("gone");
    let a = call(
        "POST",
        &reg(&e.gw, "demo", "openid-connect"),
        Some(&iat),
        Some(&json!({"client_name": name, "redirect_uris": ["http://127.0.0.1:4000/cb"]})),
    )
    .await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let id = a.json()["client_id"].as_str().unwrap().to_owned();
    let rat1 = a.json()["registration_access_token"].as_str().unwrap().to_owned();
    let url = format!("{}/{id}", reg(&e.gw, "demo", "openid-connect"));
    let update = json!({"client_id": id, "client_name": name, "redirect_uris": ["http://127.0.0.1:4000/cb"]});
    let a = call("PUT", &url, Some(&rat1), Some(&update)).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let rat2 = a.json()["registration_access_token"].as_str().unwrap().to_owned();
    // Rotated: the client is there, the token is not its current one.
    let rotated = refused(
        &call("GET", &url, Some(&rat1), None).await,
        401,
        "registration_token_invalid",
    );
    assert!(
        rotated["error_description"].as_str().unwrap().contains("still exists"),
        "{rotated}"
    );
    assert_eq!(call("DELETE", &url, Some(&rat2), None).await.status, 204);
    // Deleted: Keycloak answers exactly as for the rotated token; the gateway tells them apart.
    for (method, body) in [("GET", None), ("PUT", Some(&update)), ("DELETE", None)] {
        let v = refused(
            &call(method, &url, Some(&rat2), body).await,
            401,
            "registration_client_gone",
        );
        let kc = v["upstream"]["body"]["error_description"].as_str().unwrap();
        assert!(
            kc.starts_with("Not authorized to"),
            "{method}: Keycloak's own answer: {v}"
        );
        let d = v["error_description"].as_str().unwrap();
        assert!(
            d.contains(&id) && d.contains("no longer exists") && !d.contains("replaced"),
            "{d}"
        );
    }
}

#[tokio::test]
#[ignore = "needs a real Keycloak: scripts/keycloak-suite.sh"]
async fn text_plain_and_an_unknown_origin_are_explained() {
    let e = env();
    let admin = Admin::login(&e.gw).await;
    let (_, iat) = admin.create_iat("demo", 600, 5).await;
    let url = reg(&e.gw, "demo", "openid-connect");
    let name = unique("ct");
    let body = json!({"client_name": name, "redirect_uris": ["http://127.0.0.1:4000/cb"]}).to_string();
    let a = call_with("POST", &url, &iat, &[("content-type", "text/plain")], &body).await;
    let v = refused(&a, 415, "content_type_unsupported");
    assert_eq!(v["details"]["content_type"], "text/plain", "{v}");
    assert!(
        v["error_description"].as_str().unwrap().contains("application/json"),
        "{v}"
    );
    assert_eq!(admin.clients_named("demo", &name).await, 0);
    // Keycloak 26.5+ checks a browser Origin against the credential's allowed web origins.
    let name = unique("origin");
    let body = json!({"client_name": name, "redirect_uris": ["http://127.0.0.1:4000/cb"]}).to_string();
    let headers = [("content-type", "application/json"), ("origin", "https://evil.example")];
    let a = call_with("POST", &url, &iat, &headers, &body).await;
    let v = refused(&a, 403, "origin_rejected");
    assert_eq!(v["upstream"]["body"]["error"], "Invalid origin", "{v}");
    assert_eq!(v["details"]["origin"], "https://evil.example", "{v}");
    assert_eq!(
        admin.clients_named("demo", &name).await,
        0,
        "Keycloak refuses the origin without keeping the client"
    );
}
