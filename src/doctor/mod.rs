//! `dcr-gateway doctor`: reads a realm through Keycloak's admin REST API, holds it against the
//! gateway's policy and settings and Keycloak's registration rules, and prints every problem
//! that will make registrations fail, with the fix. Exit 0 clean, 1 findings, 2 usage or
//! connection errors.
//!
//! [`admin`] talks to the admin API, [`gather`] reads what matters into [`facts::Facts`],
//! [`findings`] compares (pure, tested on recorded answers), [`output`] prints.

pub mod admin;
pub mod facts;
pub mod findings;
pub mod gather;
pub mod output;

use std::path::{Path, PathBuf};

use clap::Args;

use crate::config::{Dur, Overrides, Settings, load};
use crate::policy::{Snapshot, store};
use crate::route::Operation;
use crate::token::TokenKind;
use admin::{Admin, Credentials};

/// `dcr-gateway doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Realm to check.
    #[arg(long)]
    pub realm: String,
    /// Policy file or directory [default: the gateway's, else the built-in policy].
    #[arg(long, env = "DCR_GATEWAY_POLICIES", value_name = "PATH")]
    pub policies: Option<PathBuf>,
    /// The gateway's settings file (upstream, public URL, [jwt], [realms]).
    #[arg(long, env = "DCR_GATEWAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Keycloak's base URL as the gateway reaches it [default: from the settings].
    #[arg(long, env = "DCR_GATEWAY_UPSTREAM", value_name = "URL")]
    pub upstream: Option<String>,
    /// The gateway's public URL [default: from the settings].
    #[arg(long, env = "DCR_GATEWAY_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Keycloak's base URL for the admin API [default: the upstream URL].
    #[arg(long, env = "DCR_DOCTOR_ADMIN_URL", value_name = "URL")]
    pub admin_url: Option<String>,
    /// Realm to log in to [default: master for a user, the checked realm for a client].
    #[arg(long, env = "DCR_DOCTOR_ADMIN_REALM", value_name = "REALM")]
    pub admin_realm: Option<String>,
    /// KEY=VALUE file with DCR_DOCTOR_USERNAME/_PASSWORD or DCR_DOCTOR_CLIENT_ID/_CLIENT_SECRET
    /// [default: those environment variables].
    #[arg(long, env = "DCR_DOCTOR_CREDENTIALS", value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// A client meant to register clients (repeatable), besides those named by azp rules.
    #[arg(long = "client", value_name = "CLIENT_ID")]
    pub clients: Vec<String>,
    /// Report initial access tokens expiring sooner than this.
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    pub warn_within: String,
    /// human (default) or json.
    #[arg(long, default_value = "human", value_name = "FORMAT")]
    pub format: String,
}

/// A usage or connection error (exit 2).
#[derive(Debug)]
pub struct Usage(pub String);

fn usage(m: impl Into<String>) -> Usage {
    Usage(m.into())
}

/// Reads credentials from `file` (KEY=VALUE lines) or the environment.
pub fn credentials(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Credentials, Usage> {
    let from_file = match file {
        Some(p) => Some(
            std::fs::read_to_string(p).map_err(|e| usage(format!("cannot read credentials {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let get = |k: &str| -> Option<String> {
        match &from_file {
            Some(text) => text.lines().find_map(|l| {
                let (key, v) = l.trim().split_once('=')?;
                (key.trim() == k).then(|| v.trim().trim_matches('"').to_owned())
            }),
            None => env(k),
        }
        .filter(|v| !v.is_empty())
    };
    let user = (get("DCR_DOCTOR_USERNAME"), get("DCR_DOCTOR_PASSWORD"));
    let client = (get("DCR_DOCTOR_CLIENT_ID"), get("DCR_DOCTOR_CLIENT_SECRET"));
    match (user, client) {
        ((Some(_), _), (Some(_), _)) => Err(usage(
            "give either DCR_DOCTOR_USERNAME or DCR_DOCTOR_CLIENT_ID, not both",
        )),
        ((Some(username), Some(password)), _) => Ok(Credentials::User { username, password }),
        (_, (Some(client_id), Some(secret))) => Ok(Credentials::Client { client_id, secret }),
        ((Some(_), None), _) => Err(usage("DCR_DOCTOR_USERNAME is set but DCR_DOCTOR_PASSWORD is not")),
        (_, (Some(_), None)) => Err(usage("DCR_DOCTOR_CLIENT_ID is set but DCR_DOCTOR_CLIENT_SECRET is not")),
        _ => Err(usage(
            "no admin credentials: set DCR_DOCTOR_USERNAME and DCR_DOCTOR_PASSWORD (a user, logged in through admin-cli), or DCR_DOCTOR_CLIENT_ID and DCR_DOCTOR_CLIENT_SECRET (a service account with view-realm and view-clients), in the environment or in --credentials FILE",
        )),
    }
}

/// The clients meant to register: `azp` rules of the policy and settings, then `--client`.
pub fn registrars(snap: &Snapshot, s: &Settings, realm: &str, extra: &[String]) -> Vec<(String, String)> {
    let p = snap.for_realm(realm);
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |n: &str, origin: String| {
        if !out.iter().any(|(x, _)| x == n) {
            out.push((n.to_owned(), origin));
        }
    };
    if let Some(op) = p.op(Operation::Create)
        && op.kinds.value.contains(&TokenKind::Bearer)
    {
        for a in &op.azp.value {
            add(a, op.azp.origin.to_string());
        }
    }
    for a in &s.realm(realm).azp {
        add(a, format!("[realms.{realm}] azp in the gateway's settings"));
    }
    // Anonymous mode: the gateway registers with its own service account.
    if p.anonymous.is_some()
        && let Some(id) = s.realm(realm).registrar.as_ref().and_then(|r| r.client_id.as_deref())
    {
        add(
            id,
            format!("[realms.{realm}.registrar] client_id, the gateway's own credential for anonymous registration"),
        );
    }
    for c in extra {
        add(c, "--client".into());
    }
    out
}

/// Runs `doctor`: the report and the exit status (0 clean, 1 findings).
pub fn run(a: &DoctorArgs) -> Result<(String, u8), Usage> {
    let json = match a.format.as_str() {
        "human" => false,
        "json" => true,
        f => return Err(usage(format!("--format must be human or json, not `{f}`"))),
    };
    let warn_within = a
        .warn_within
        .parse::<Dur>()
        .map_err(|e| usage(format!("--warn-within: {e}")))?;
    let over = Overrides {
        upstream: a.upstream.clone(),
        public_url: a.public_url.clone(),
        policies: a.policies.clone(),
        ..Overrides::default()
    };
    let settings = load(a.config.as_deref(), &over).map_err(|e| usage(e.to_string()))?;
    let path = a.policies.clone().or_else(|| settings.policies_path());
    let snap = store::load(path.as_deref(), 1)
        .map_err(|errs| usage(errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")))?;
    let creds = credentials(a.credentials.as_deref(), |k| std::env::var(k).ok())?;
    let admin_url = a
        .admin_url
        .clone()
        .unwrap_or_else(|| settings.upstream.as_string())
        .trim_end_matches('/')
        .to_owned();
    let admin_realm = a.admin_realm.clone().unwrap_or_else(|| match creds {
        Credentials::User { .. } => "master".into(),
        Credentials::Client { .. } => a.realm.clone(),
    });
    let login = match &creds {
        Credentials::User { username, .. } => format!("user {username} of realm {admin_realm}"),
        Credentials::Client { client_id, .. } => format!("client {client_id} of realm {admin_realm}"),
    };
    let wanted = registrars(&snap, &settings, &a.realm, &a.clients);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| usage(format!("cannot start the runtime: {e}")))?;
    let facts = rt.block_on(async {
        let http = crate::net::client(&settings);
        let admin = Admin::login(
            http.clone(),
            &admin_url,
            &admin_realm,
            &creds,
            settings.timeouts.response,
        )
        .await
        .map_err(Usage)?;
        gather::gather(&admin, &http, &settings, &a.realm, &wanted, crate::token::now())
            .await
            .map_err(Usage)
    })?;
    let policy = snap.for_realm(&a.realm);
    let ctx = findings::Ctx {
        realm: &a.realm,
        policy,
        settings: &settings,
        warn_within: i64::try_from(warn_within.0.as_secs()).unwrap_or(i64::MAX),
    };
    let found = findings::evaluate(&facts, &ctx);
    let header = output::Header {
        realm: &a.realm,
        admin_url: &admin_url,
        login: &login,
        checked: checked(&facts, &ctx, &wanted),
    };
    let code = output::exit_code(&found);
    let text = if json {
        let mut s = serde_json::to_string_pretty(&output::json(&header, &found)).unwrap_or_default();
        s.push('\n');
        s
    } else {
        output::human(&header, &found)
    };
    Ok((text, code))
}

fn checked(f: &facts::Facts, ctx: &findings::Ctx<'_>, wanted: &[(String, String)]) -> Vec<String> {
    let kinds: Vec<&str> = ctx.create_kinds().iter().map(|k| k.as_str()).collect();
    let mut out = vec![format!(
        "gateway: public URL {}, upstream {}, policy {} lets {} create clients",
        ctx.settings.public_url,
        ctx.settings.upstream,
        if ctx.policy.name == "default" {
            "[default]".to_owned()
        } else {
            format!("[realms.{}]", ctx.policy.name)
        },
        if kinds.is_empty() {
            "nobody".to_owned()
        } else {
            kinds.join(", ")
        }
    )];
    out.push(if wanted.is_empty() {
        "registering clients: none named (azp rules in the policy, or --client ID)".to_owned()
    } else {
        format!(
            "registering clients: {}",
            wanted
                .iter()
                .map(|(n, o)| format!("{n} ({o})"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    if let facts::Seen::Known(i) = &f.issuer {
        out.push(format!("issuer: {} {}", i.issuer, i.via));
    }
    if let facts::Seen::Known(fw) = &f.forwarded {
        out.push(format!(
            "forwarded headers from this address: {}",
            match fw {
                facts::Forwarded::XForwarded => "Keycloak honours X-Forwarded-*",
                facts::Forwarded::Forwarded => "Keycloak honours Forwarded",
                facts::Forwarded::Ignored => "Keycloak ignores them",
                facts::Forwarded::Pinned => "cannot tell (issuer pinned)",
            }
        ));
    }
    out.push(format!(
        "keys: JWKS at {} {}",
        f.jwks_uri,
        match &f.jwks {
            Ok(k) => format!("has {} key(s)", k.len()),
            Err(e) => format!("unreachable ({e})"),
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let v: Vec<(String, String)> = pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        move |k| v.iter().find(|(a, _)| a == k).map(|(_, b)| b.clone())
    }

    #[test]
    fn credentials_from_environment_and_file() {
        let user = credentials(
            None,
            env(&[("DCR_DOCTOR_USERNAME", "admin"), ("DCR_DOCTOR_PASSWORD", "pw")]),
        )
        .unwrap();
        assert_eq!(
            user,
            Credentials::User {
                username: "admin".into(),
                password: "pw".into()
            }
        );
        let client = credentials(
            None,
            env(&[("DCR_DOCTOR_CLIENT_ID", "doc"), ("DCR_DOCTOR_CLIENT_SECRET", "s")]),
        )
        .unwrap();
        assert_eq!(
            client,
            Credentials::Client {
                client_id: "doc".into(),
                secret: "s".into()
            }
        );
        for bad in [
            vec![],
            vec![("DCR_DOCTOR_USERNAME", "admin")],
            vec![("DCR_DOCTOR_CLIENT_ID", "doc")],
            vec![
                ("DCR_DOCTOR_USERNAME", "a"),
                ("DCR_DOCTOR_PASSWORD", "p"),
                ("DCR_DOCTOR_CLIENT_ID", "c"),
            ],
        ] {
            assert!(credentials(None, env(&bad)).is_err(), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("creds");
        std::fs::write(
            &f,
            "# doctor\nDCR_DOCTOR_CLIENT_ID = doc\nDCR_DOCTOR_CLIENT_SECRET=\"s e\"\n",
        )
        .unwrap();
        // A file replaces the environment entirely.
        let c = credentials(Some(&f), env(&[("DCR_DOCTOR_USERNAME", "admin")])).unwrap();
        assert_eq!(
            c,
            Credentials::Client {
                client_id: "doc".into(),
                secret: "s e".into()
            }
        );
        assert!(credentials(Some(&dir.path().join("missing")), env(&[])).is_err());
    }
}
