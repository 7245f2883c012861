//! Reads a realm through the admin API, plus three probes outside it: the discovery document
//! through the gateway's public URL (issuer), the same document with probe `X-Forwarded-*` /
//! `Forwarded` headers (does Keycloak trust them from here?), and the JWKS from the upstream.

use http::{HeaderMap, HeaderValue};
use serde_json::Value;

use super::admin::{Admin, CallError, get};
use super::facts::{
    ClientRep, Component, Facts, Forwarded, IssuerSeen, Keys, RealmRep, Registrar, Seen, client_policies, names,
    profiles,
};
use crate::config::Settings;
use crate::net::HttpClient;

/// Registration-policy components' provider type.
pub const POLICY_TYPE: &str = "org.keycloak.services.clientregistration.policy.ClientRegistrationPolicy";

/// A host name that cannot exist (RFC 2606), used to see whether Keycloak honours forwarded headers.
pub const PROBE_HOST: &str = "dcr-doctor-probe.invalid";

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn seen<T>(r: Result<T, CallError>, path: &str) -> Seen<T> {
    match r {
        Ok(v) => Seen::Known(v),
        Err(CallError::Forbidden(_)) => Seen::Forbidden(path.to_owned()),
        Err(e) => Seen::Unknown(e.to_string()),
    }
}

fn parse<T: serde::de::DeserializeOwned + Default>(v: Value) -> T {
    serde_json::from_value(v).unwrap_or_default()
}

/// Reads everything; fails only when the realm itself cannot be read.
pub async fn gather(
    admin: &Admin,
    http: &HttpClient,
    s: &Settings,
    realm: &str,
    wanted: &[(String, String)],
    now: i64,
) -> Result<Facts, String> {
    let r = format!("/{}", enc(realm));
    let realm_rep: RealmRep = match admin.json(&r).await {
        Ok(v) => parse(v),
        Err(CallError::NotFound) => return Err(format!("Keycloak has no realm '{realm}'")),
        Err(e) => return Err(format!("cannot read realm '{realm}': {e}")),
    };
    let clients = admin.all(&format!("{r}/clients")).await;
    let mgmt_id = clients.as_ref().ok().and_then(|l| {
        l.iter()
            .find(|c| c["clientId"] == crate::keycloak::management_client(realm))
            .and_then(|c| c["id"].as_str().map(str::to_owned))
    });
    let mut registrars = Vec::new();
    for (name, origin) in wanted {
        registrars.push(registrar(admin, &r, name, origin, mgmt_id.as_deref()).await);
    }
    let pol = format!("{r}/components?type={POLICY_TYPE}");
    let registration_policies = seen(
        admin.json(&pol).await.map(parse::<Vec<Component>>),
        "{realm}/components",
    );
    let default_scopes = seen(
        admin
            .json(&format!("{r}/default-default-client-scopes"))
            .await
            .map(|v| names(&v)),
        "{realm}/default-default-client-scopes",
    );
    let optional_scopes = seen(
        admin
            .json(&format!("{r}/default-optional-client-scopes"))
            .await
            .map(|v| names(&v)),
        "{realm}/default-optional-client-scopes",
    );
    let iats = seen(
        admin.json(&format!("{r}/clients-initial-access")).await.map(parse),
        "{realm}/clients-initial-access",
    );
    let keys = seen(
        admin.json(&format!("{r}/keys")).await.map(parse::<Keys>),
        "{realm}/keys",
    );
    let client_policies = seen(
        admin
            .json(&format!("{r}/client-policies/policies"))
            .await
            .map(|v| client_policies(&v)),
        "{realm}/client-policies/policies",
    );
    let profiles = seen(
        admin
            .json(&format!("{r}/client-policies/profiles?include-global-profiles=true"))
            .await
            .map(|v| profiles(&v)),
        "{realm}/client-policies/profiles",
    );
    let jwks_uri = s.jwks_uri_for(realm);
    let jwks = crate::net::get_bytes(http, &jwks_uri, s.jwks.fetch_timeout, 1 << 20)
        .await
        .and_then(|b| crate::token::jwks::parse_set(&b))
        .map(|(keys, _)| {
            let mut kids: Vec<String> = keys.keys().cloned().collect();
            kids.sort();
            kids
        });
    Ok(Facts {
        realm: realm.to_owned(),
        realm_rep,
        client_count: seen(clients.map(|l| l.len()), "{realm}/clients"),
        registrars,
        registration_policies,
        default_scopes,
        optional_scopes,
        iats,
        keys,
        client_policies,
        profiles,
        issuer: issuer(http, s, realm).await,
        forwarded: forwarded(http, s, realm).await,
        jwks,
        jwks_uri,
        now,
    })
}

async fn registrar(admin: &Admin, r: &str, name: &str, origin: &str, mgmt: Option<&str>) -> Registrar {
    let mut out = Registrar {
        name: name.to_owned(),
        origin: origin.to_owned(),
        client: unknown_("not looked up"),
        service_account: unknown_("no client"),
        effective: unknown_("no service account"),
        effective_realm: unknown_("no service account"),
        granted: unknown_("no service account"),
        default_scopes: unknown_("no client"),
        example_resource_access: unknown_("no service account"),
    };
    let found = admin.json(&format!("{r}/clients?clientId={}", enc(name))).await;
    let client = match found {
        Ok(v) => match v.as_array().and_then(|l| l.iter().find(|c| c["clientId"] == name)) {
            Some(c) => parse::<ClientRep>(c.clone()),
            None => {
                out.client = unknown_("no such client");
                return out;
            }
        },
        Err(e) => {
            out.client = seen(Err(e), "{realm}/clients");
            return out;
        }
    };
    let id = client.id.clone();
    out.default_scopes = seen(
        admin
            .json(&format!("{r}/clients/{id}/default-client-scopes"))
            .await
            .map(|v| names(&v)),
        "{realm}/clients/{id}/default-client-scopes",
    );
    let sa_enabled = client.service_accounts_enabled;
    out.client = Seen::Known(client);
    if !sa_enabled {
        out.service_account = unknown_("service accounts are off");
        return out;
    }
    let sa = match admin.json(&format!("{r}/clients/{id}/service-account-user")).await {
        Ok(v) => v,
        Err(e) => {
            out.service_account = seen(Err(e), "{realm}/clients/{id}/service-account-user");
            return out;
        }
    };
    let uid = sa["id"].as_str().unwrap_or_default().to_owned();
    out.service_account = Seen::Known(sa["username"].as_str().unwrap_or_default().to_owned());
    out.effective_realm = seen(
        admin
            .json(&format!("{r}/users/{uid}/role-mappings/realm/composite"))
            .await
            .map(|v| names(&v)),
        "{realm}/users/{id}/role-mappings/realm/composite",
    );
    let example = format!("{r}/clients/{id}/evaluate-scopes/generate-example-access-token?scope=&userId={uid}");
    out.example_resource_access = seen(
        admin
            .json(&example)
            .await
            .map(|t| t.get("resource_access").cloned().unwrap_or(Value::Null)),
        "{realm}/clients/{id}/evaluate-scopes/generate-example-access-token",
    );
    let Some(m) = mgmt else {
        out.effective = unknown_("the management client was not found");
        out.granted = unknown_("the management client was not found");
        return out;
    };
    out.effective = seen(
        admin
            .json(&format!("{r}/users/{uid}/role-mappings/clients/{m}/composite"))
            .await
            .map(|v| names(&v)),
        "{realm}/users/{id}/role-mappings/clients/{id}/composite",
    );
    out.granted = seen(
        admin
            .json(&format!(
                "{r}/clients/{id}/evaluate-scopes/scope-mappings/{m}/granted?scope=&userId={uid}"
            ))
            .await
            .map(|v| names(&v)),
        "{realm}/clients/{id}/evaluate-scopes/scope-mappings/{id}/granted",
    );
    out
}

fn unknown_<T>(why: &str) -> Seen<T> {
    Seen::Unknown(why.to_owned())
}

fn discovery(base: &str, realm: &str) -> String {
    format!("{base}/realms/{}/.well-known/openid-configuration", enc(realm))
}

async fn issuer_at(http: &HttpClient, url: &str, h: &HeaderMap, s: &Settings) -> Result<String, String> {
    let raw = get(http, url, h, s.timeouts.response).await?;
    if raw.status != http::StatusCode::OK {
        return Err(format!("HTTP {}", raw.status.as_u16()));
    }
    let v: Value = serde_json::from_slice(&raw.body).map_err(|e| format!("not JSON: {e}"))?;
    v["issuer"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "no issuer in the discovery document".to_owned())
}

/// The issuer through the public URL; when the gateway does not forward discovery (or is not
/// reachable from here), the upstream is asked with the headers the gateway would send.
async fn issuer(http: &HttpClient, s: &Settings, realm: &str) -> Seen<IssuerSeen> {
    let public = s.public_url.as_string();
    let direct = issuer_at(http, &discovery(&public, realm), &HeaderMap::new(), s).await;
    if let Ok(issuer) = direct {
        return Seen::Known(IssuerSeen {
            issuer,
            via: format!("through the public URL {public}"),
        });
    }
    let mut h = HeaderMap::new();
    let authority = &s.public_url.authority;
    if let Ok(v) = HeaderValue::from_str(authority) {
        if s.preserve_host {
            h.insert(http::header::HOST, v.clone());
        }
        h.insert("x-forwarded-host", v);
    }
    if let Ok(v) = HeaderValue::from_str(&s.public_url.scheme) {
        h.insert("x-forwarded-proto", v);
    }
    let upstream = s.upstream.as_string();
    match issuer_at(http, &discovery(&upstream, realm), &h, s).await {
        Ok(issuer) => Seen::Known(IssuerSeen {
            issuer,
            via: format!(
                "at the upstream {upstream} with the headers the gateway sends ({public} gave: {})",
                direct.err().unwrap_or_default()
            ),
        }),
        Err(e) => Seen::Unknown(format!("discovery unreachable: {e}")),
    }
}

async fn forwarded(http: &HttpClient, s: &Settings, realm: &str) -> Seen<Forwarded> {
    let url = discovery(&s.upstream.as_string(), realm);
    if issuer_at(http, &url, &HeaderMap::new(), s).await.is_err() {
        return Seen::Unknown("the upstream's discovery document is unreachable".into());
    }
    let mut x = HeaderMap::new();
    x.insert("x-forwarded-host", HeaderValue::from_static(PROBE_HOST));
    if issuer_at(http, &url, &x, s).await.is_ok_and(|i| i.contains(PROBE_HOST)) {
        return Seen::Known(Forwarded::XForwarded);
    }
    let mut f = HeaderMap::new();
    f.insert("forwarded", HeaderValue::from_static("host=dcr-doctor-probe.invalid"));
    if issuer_at(http, &url, &f, s).await.is_ok_and(|i| i.contains(PROBE_HOST)) {
        return Seen::Known(Forwarded::Forwarded);
    }
    // Unpinned, the issuer follows the Host of the request: probe with another Host.
    let mut h = HeaderMap::new();
    h.insert(http::header::HOST, HeaderValue::from_static(PROBE_HOST));
    match issuer_at(http, &url, &h, s).await {
        Ok(i) if i.contains(PROBE_HOST) => Seen::Known(Forwarded::Ignored),
        // Pinned (or strict about the host): the issuer does not follow the request.
        Ok(_) | Err(_) => Seen::Known(Forwarded::Pinned),
    }
}
