//! Findings on admin API answers recorded from real Keycloak servers by
//! scripts/doctor-fixtures.sh (tests/fixtures/doctor/VERSION/), one realm with one deliberately
//! broken thing of each kind.

use std::path::PathBuf;

use serde_json::Value;

use super::*;
use crate::config::{Overrides, load};
use crate::doctor::facts::*;
use crate::policy::compile::{Source, compile};

const VERSIONS: &[&str] = &["26.5.6", "26.7.3"];

fn dir(v: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/doctor")
        .join(v)
}

fn read(v: &str, name: &str) -> Value {
    let p = dir(v).join(format!("{name}.json"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn registrar(v: &str, name: &str) -> Registrar {
    Registrar {
        name: name.into(),
        origin: "--client".into(),
        client: Seen::Known(parse(read(v, &format!("client-{name}")))),
        service_account: Seen::Known(read(v, &format!("sa-{name}"))["username"].as_str().unwrap().into()),
        effective: Seen::Known(names(&read(v, &format!("effective-{name}")))),
        effective_realm: Seen::Known(names(&read(v, &format!("realm-effective-{name}")))),
        granted: Seen::Known(names(&read(v, &format!("granted-{name}")))),
        default_scopes: Seen::Known(names(&read(v, &format!("default-scopes-{name}")))),
        example_resource_access: Seen::Known(
            read(v, &format!("example-token-{name}"))
                .get("resource_access")
                .cloned()
                .unwrap_or(Value::Null),
        ),
    }
}

/// The realm as recorded, seen through a gateway whose issuer and keys match.
fn facts(v: &str, clients: &[&str]) -> Facts {
    let wk = read(v, "well-known");
    let certs = read(v, "certs");
    Facts {
        realm: "doc".into(),
        realm_rep: parse(read(v, "realm")),
        client_count: Seen::Known(read(v, "clients").as_array().unwrap().len()),
        registrars: clients.iter().map(|c| registrar(v, c)).collect(),
        registration_policies: Seen::Known(parse(read(v, "components-registration"))),
        default_scopes: Seen::Known(names(&read(v, "default-default-client-scopes"))),
        optional_scopes: Seen::Known(names(&read(v, "default-optional-client-scopes"))),
        iats: Seen::Known(parse(read(v, "initial-access"))),
        keys: Seen::Known(parse(read(v, "keys"))),
        client_policies: Seen::Known(client_policies(&read(v, "client-policies"))),
        profiles: Seen::Known(profiles(&read(v, "client-profiles"))),
        issuer: Seen::Known(IssuerSeen {
            issuer: wk["issuer"].as_str().unwrap().into(),
            via: "through the public URL".into(),
        }),
        forwarded: Seen::Known(Forwarded::XForwarded),
        jwks: Ok(certs["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()),
        jwks_uri: "http://kc/realms/doc/protocol/openid-connect/certs".into(),
        now: read(v, "initial-access")[0]["timestamp"].as_i64().unwrap() + 10,
    }
}

/// Settings whose public URL gives the recorded issuer.
fn settings(v: &str, toml: &str) -> Settings {
    let issuer = read(v, "well-known")["issuer"].as_str().unwrap().to_owned();
    let public = issuer.trim_end_matches("/realms/doc").to_owned();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g.toml");
    std::fs::write(&p, toml).unwrap();
    let over = Overrides {
        public_url: Some(public),
        ..Overrides::default()
    };
    load(Some(&p), &over).unwrap()
}

fn policy(text: &str) -> crate::policy::Snapshot {
    let text = if text.contains("version") {
        text.to_owned()
    } else {
        format!("version = 1\n{text}")
    };
    compile(
        &[Source {
            path: "p.toml".into(),
            text,
        }],
        1,
    )
    .unwrap()
}

/// Everything Keycloak's defaults accept, so that each test shows only what it breaks.
const CLEAN: &str = r#"
[realms.doc]
providers = ["openid-connect"]
[realms.doc.create]
token_kinds = ["bearer"]
roles_any = ["$management/create-client", "$management/manage-clients"]
[realms.doc.metadata]
scopes = ["email", "profile"]
forbidden_fields = ["protocol_mappers"]
token_endpoint_auth_methods = ["client_secret_basic"]
[realms.doc.metadata.redirect_uris]
schemes = ["https"]
hosts = ["*.example.com"]
"#;

fn run(v: &str, f: &Facts, policy_text: &str) -> Vec<Finding> {
    let s = settings(v, "");
    let snap = policy(policy_text);
    let ctx = Ctx {
        realm: "doc",
        policy: snap.for_realm("doc"),
        settings: &s,
        warn_within: 86400,
    };
    evaluate(f, &ctx)
}

fn ids(found: &[Finding]) -> Vec<&'static str> {
    found.iter().map(|f| f.id).collect()
}

/// The recorded realm's client policy refuses loopback and public clients; drop it for tests of
/// other things.
fn without_client_policies(mut f: Facts) -> Facts {
    f.client_policies = Seen::Known(Vec::new());
    f
}

#[test]
fn registrars_holding_the_role_directly_through_a_group_or_a_composite_are_clean() {
    for v in VERSIONS {
        let f = without_client_policies(facts(v, &["registrar", "viagroup", "composite"]));
        let found = run(v, &f, CLEAN);
        assert!(found.iter().all(|x| x.severity == Severity::Notice), "{v}: {found:#?}");
    }
}

#[test]
fn forum_case_service_account_without_create_client() {
    for v in VERSIONS {
        let f = without_client_policies(facts(v, &["norole"]));
        let found = run(v, &f, CLEAN);
        assert_eq!(ids(&found), ["client.missing_role"], "{v}: {found:#?}");
        let fix = &found[0].fix;
        assert!(
            fix.contains("Clients → norole → Service account roles → Assign role → filter by clients → realm-management → create-client"),
            "{fix}"
        );
        assert!(
            fix.contains("kcadm.sh add-roles -r doc --uusername service-account-norole"),
            "{fix}"
        );
        assert!(
            found[0].problem.contains("effective realm-management roles"),
            "{}",
            found[0].problem
        );
    }
}

#[test]
fn roles_missing_from_the_token_name_the_cause() {
    for v in VERSIONS {
        let f = without_client_policies(facts(v, &["noscope", "noroles"]));
        let found = run(v, &f, CLEAN);
        assert_eq!(
            ids(&found),
            ["client.roles_not_in_token", "client.roles_not_in_token"],
            "{v}: {found:#?}"
        );
        assert!(
            found[0].problem.contains("Full scope allowed is off"),
            "{}",
            found[0].problem
        );
        assert!(
            found[1].problem.contains("`roles` client scope"),
            "{}",
            found[1].problem
        );
        assert!(found[0].fix.contains("Full scope allowed"), "{}", found[0].fix);
    }
}

/// Marks as forbidden what a service account with only view-realm and view-clients could not
/// read on that version (recorded in viewer-access.json).
fn as_viewer(v: &str, f: &mut Facts) {
    let denied: Vec<String> = read(v, "viewer-access")
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["status"] != 200)
        .map(|x| x["path"].as_str().unwrap().split('?').next().unwrap().to_owned())
        .collect();
    let no = |p: &str| denied.iter().any(|d| d == p);
    for r in &mut f.registrars {
        let composite = "/{realm}/users/{id}/role-mappings/clients/{id}/composite";
        if no(composite) {
            r.effective = Seen::Forbidden(composite.into());
        }
        let example = "/{realm}/clients/{id}/evaluate-scopes/generate-example-access-token";
        if no(example) {
            r.example_resource_access = Seen::Forbidden(example.into());
        }
        assert!(!no("/{realm}/clients/{id}/evaluate-scopes/scope-mappings/{id}/granted"));
    }
}

#[test]
fn with_only_view_realm_and_view_clients() {
    for v in VERSIONS {
        let mut f = without_client_policies(facts(v, &["registrar", "norole", "noscope"]));
        as_viewer(v, &mut f);
        let found = run(v, &f, CLEAN);
        let got = ids(&found);
        // 26.5 lets view-clients generate the example token, which shows the missing role;
        // 26.7 does not, and doctor says it could not tell.
        if *v == "26.5.6" {
            assert_eq!(
                got,
                ["client.missing_role", "client.roles_not_in_token", "doctor.unreadable"],
                "{v}: {found:#?}"
            );
            assert_eq!(found[0].subject, "norole");
        } else {
            assert_eq!(
                got,
                ["client.roles_not_in_token", "doctor.unreadable"],
                "{v}: {found:#?}"
            );
            assert!(
                found[1]
                    .problem
                    .contains("Whether the service accounts of registrar, norole"),
                "{}",
                found[1].problem
            );
        }
        let noscope = found.iter().find(|x| x.id == "client.roles_not_in_token").unwrap();
        assert_eq!(noscope.subject, "noscope");
        assert!(noscope.problem.contains("Full scope allowed is off"));
    }
}

#[test]
fn lightweight_access_tokens_hide_the_role_from_the_gateway() {
    for v in VERSIONS {
        let mut f = without_client_policies(facts(v, &["registrar"]));
        let r = &mut f.registrars[0];
        if let Seen::Known(c) = &mut r.client {
            c.attributes.insert(
                "client.use.lightweight.access.token.enabled".into(),
                Value::String("true".into()),
            );
        }
        // What the example token of such a client holds: no resource_access.
        r.example_resource_access = Seen::Known(Value::Null);
        let found = run(v, &f, CLEAN);
        assert_eq!(ids(&found), ["client.roles_not_in_token"], "{v}: {found:#?}");
        assert!(
            found[0].problem.contains("lightweight access tokens"),
            "{}",
            found[0].problem
        );
    }
}

#[test]
fn client_policy_executors_against_the_gateways_redirect_and_client_rules() {
    for v in VERSIONS {
        let f = facts(v, &[]);
        // The recorded profile: secure-redirect-uris-enforcer with every option off, and
        // confidential-client, for registrations by bearer, initial access token or anonymous.
        let loose = format!("{CLEAN}loopback = true\n")
            .replace("token_endpoint_auth_methods = [\"client_secret_basic\"]\n", "");
        let found = run(v, &f, &loose);
        assert_eq!(
            ids(&found),
            ["client_policy.redirect_uris", "client_policy.public_clients"],
            "{v}: {found:#?}"
        );
        assert!(
            found[0].problem.contains("allow-ipv4-loopback-address is off"),
            "{}",
            found[0].problem
        );
        assert!(
            found[0].problem.contains("made ByAuthenticatedUser"),
            "{}",
            found[0].problem
        );
        // The gateway's own rules already refuse both: nothing to report.
        assert!(run(v, &f, CLEAN).iter().all(|x| x.severity == Severity::Notice));
    }
}

#[test]
fn initial_access_tokens_expiring_expired_and_used_up() {
    for v in VERSIONS {
        let mut f = without_client_policies(facts(v, &[]));
        let iat = CLEAN.replace("token_kinds = [\"bearer\"]", "token_kinds = [\"initial_access\"]");
        // Recorded: one never-expiring single-use token, one for 600 s with 20 uses.
        let found = run(v, &f, &iat);
        assert_eq!(ids(&found), ["initial_access.expiring"], "{v}: {found:#?}");
        f.now += 3600;
        assert_eq!(ids(&run(v, &f, &iat)), ["initial_access.expired"]);
        if let Seen::Known(l) = &mut f.iats {
            l[0].remaining_count = 0;
        }
        let found = run(v, &f, &iat);
        assert_eq!(
            ids(&found),
            [
                "initial_access.none_usable",
                "initial_access.expired",
                "initial_access.used_up"
            ],
            "{found:#?}"
        );
        assert!(found[2].fix.contains("\"count\":10"), "{}", found[2].fix);
        // Tokens the gateway does not accept for create are not its concern.
        assert!(run(v, &f, CLEAN).iter().all(|x| x.severity == Severity::Notice));
    }
}

#[test]
fn registration_policies_scopes_max_clients_mappers() {
    for v in VERSIONS {
        let mut f = without_client_policies(facts(v, &[]));
        let any_scope = CLEAN.replace("scopes = [\"email\", \"profile\"]\n", "");
        let found = run(v, &f, &any_scope);
        assert_eq!(ids(&found), ["keycloak_policy.client_scopes"], "{v}: {found:#?}");
        assert_eq!(found[0].severity, Severity::Warning);
        assert!(found[0].problem.contains("`openid`"));
        assert!(
            found[0]
                .fix
                .contains("Authenticated access policies → Allowed Client Scopes"),
            "{}",
            found[0].fix
        );
        let explicit = CLEAN.replace("[\"email\", \"profile\"]", "[\"email\", \"mcp:tools\"]");
        let found = run(v, &f, &explicit);
        assert_eq!(ids(&found), ["keycloak_policy.client_scopes"]);
        assert_eq!(found[0].severity, Severity::Error);
        assert!(found[0].problem.contains("`mcp:tools`") && !found[0].problem.contains("`email`"));
        let mappers = CLEAN.replace("forbidden_fields = [\"protocol_mappers\"]\n", "");
        assert_eq!(ids(&run(v, &f, &mappers)), ["keycloak_policy.protocol_mappers"]);
        // Max Clients is in the anonymous set: it counts once the gateway lets anonymous in.
        let anon = CLEAN.replace("[\"bearer\"]", "[\"bearer\", \"anonymous\"]");
        f.client_count = Seen::Known(200);
        let found = run(v, &f, &anon);
        assert!(ids(&found).contains(&"keycloak_policy.max_clients"), "{found:#?}");
        assert!(
            ids(&found).contains(&"anonymous.trusted_hosts_refuse_all"),
            "{found:#?}"
        );
    }
}

#[test]
fn issuer_signing_and_keys() {
    for v in VERSIONS {
        let mut f = without_client_policies(facts(v, &[]));
        f.issuer = Seen::Known(IssuerSeen {
            issuer: "http://keycloak:8080/realms/doc".into(),
            via: "through the public URL".into(),
        });
        let found = run(v, &f, CLEAN);
        assert_eq!(ids(&found), ["issuer.mismatch"]);
        assert!(found[0].fix.contains("KC_HOSTNAME"), "{}", found[0].fix);
        let mut f = without_client_policies(facts(v, &[]));
        f.realm_rep.default_signature_algorithm = Some("RS512".into());
        assert_eq!(
            ids(&run(v, &f, CLEAN)),
            ["signing.algorithm_not_allowed", "signing.no_active_key"]
        );
        let mut f = without_client_policies(facts(v, &[]));
        f.jwks = Ok(vec!["other".into()]);
        assert_eq!(ids(&run(v, &f, CLEAN)), ["jwks.signing_key_missing"]);
        f.jwks = Err("connection refused".into());
        let found = run(v, &f, CLEAN);
        assert_eq!(ids(&found), ["jwks.unreachable"]);
        assert!(found[0].fix.contains("connection refused"));
    }
}

#[test]
fn anonymous_trusted_hosts_and_forwarded_headers() {
    for v in VERSIONS {
        let mut f = without_client_policies(facts(v, &[]));
        let anon = CLEAN.replace("[\"bearer\"]", "[\"anonymous\"]");
        let found = run(v, &f, &anon);
        assert_eq!(
            ids(&found),
            [
                "anonymous.trusted_hosts_refuse_all",
                "anonymous.redirect_hosts_untrusted"
            ],
            "{v}: {found:#?}"
        );
        if let Seen::Known(l) = &mut f.registration_policies {
            let th = l.iter_mut().find(|c| c.provider_id == "trusted-hosts").unwrap();
            th.config
                .insert("trusted-hosts".into(), vec!["*.example.com".into(), "10.0.0.7".into()]);
        }
        assert!(run(v, &f, &anon).iter().all(|x| x.severity == Severity::Notice));
        f.forwarded = Seen::Known(Forwarded::Ignored);
        assert_eq!(ids(&run(v, &f, &anon)), ["anonymous.forwarded_headers_ignored"]);
        f.forwarded = Seen::Known(Forwarded::Pinned);
        assert_eq!(ids(&run(v, &f, &anon)), ["anonymous.forwarded_headers_unknown"]);
        // Not letting anonymous in, with Trusted Hosts gone: Keycloak itself is open.
        if let Seen::Known(l) = &mut f.registration_policies {
            l.retain(|c| c.provider_id != "trusted-hosts");
        }
        assert_eq!(ids(&run(v, &f, CLEAN)), ["anonymous.open_at_keycloak"]);
    }
}

#[test]
fn every_id_is_documented() {
    let doc = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/doctor.md")).unwrap();
    for id in IDS {
        assert!(
            doc.contains(&format!("`{id}`")),
            "docs/doctor.md does not document {id}"
        );
    }
}
