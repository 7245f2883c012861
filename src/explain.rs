//! `dcr-gateway explain`: the offline answer to "would this be allowed, and if not, what do I
//! change?" — token kind, the claims that matter, the signature result when keys are
//! reachable, every policy rule passed or failed, and the fix. Exit 0 allowed, 1 refused.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::config::{Overrides, Settings, load};
use crate::error::{Detail, Refusal, RuleId};
use crate::hints::{HintCtx, hint};
use crate::policy::metadata::{ClientMetadata, Dialect, normalise};
use crate::policy::{Input, Snapshot, decide, json::parse_object, store};
use crate::route::{Operation, RegRoute};
use crate::token::claims::{Decoded, TokenKind};
use crate::token::jwks::parse_set;
use crate::token::triage::{Presented, Triaged, rfc3339, triage};
use crate::token::verify::{check_signature, check_unkeyed};
use crate::token::{Claims, Identity};

/// `dcr-gateway explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The token, or `-` to read it from standard input.
    #[arg(long)]
    pub token: String,
    /// Realm name.
    #[arg(long)]
    pub realm: String,
    /// create, read, update or delete.
    #[arg(long)]
    pub operation: String,
    /// Provider (openid-connect or default).
    #[arg(long, default_value = "openid-connect")]
    pub provider: String,
    /// Client id in the path (read, update, delete) [default: from the body, else "client"].
    #[arg(long)]
    pub client_id: Option<String>,
    /// JSON body of a create or update.
    #[arg(long, value_name = "FILE")]
    pub body: Option<PathBuf>,
    /// Policy file or directory [default: the built-in policy].
    #[arg(long, value_name = "PATH")]
    pub policies: Option<PathBuf>,
    /// Gateway settings file (issuer, algorithms, leeway, audiences).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Keycloak's URL, to fetch the realm's keys.
    #[arg(long, value_name = "URL", conflicts_with = "jwks")]
    pub upstream: Option<String>,
    /// A JWKS file to check the signature against.
    #[arg(long, value_name = "FILE")]
    pub jwks: Option<PathBuf>,
    /// The public URL tokens are minted through [default: the upstream URL].
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
}

/// A usage error (exit 2).
#[derive(Debug)]
pub struct Usage(pub String);

fn usage(m: impl Into<String>) -> Usage {
    Usage(m.into())
}

fn read_token(arg: &str) -> Result<String, Usage> {
    if arg != "-" {
        return Ok(arg.trim().to_owned());
    }
    let mut s = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
        .map_err(|e| usage(format!("cannot read the token from stdin: {e}")))?;
    Ok(s.trim().trim_start_matches("Bearer ").to_owned())
}

/// What `explain` reads before it judges: the operation, settings, token, body and policy.
struct Inputs {
    op: Operation,
    settings: Settings,
    token: String,
    body: Option<Vec<u8>>,
    snap: Snapshot,
}

impl Inputs {
    fn read(a: &ExplainArgs) -> Result<Self, Usage> {
        let op = Operation::parse(&a.operation)
            .filter(|o| *o != Operation::Preflight)
            .ok_or_else(|| usage("--operation must be create, read, update or delete"))?;
        let over = Overrides {
            upstream: a.upstream.clone(),
            public_url: a.public_url.clone(),
            policies: a.policies.clone(),
            ..Overrides::default()
        };
        let settings = load(a.config.as_deref(), &over).map_err(|e| usage(e.to_string()))?;
        let token = read_token(&a.token)?;
        let body = match &a.body {
            Some(p) => Some(std::fs::read(p).map_err(|e| usage(format!("cannot read {}: {e}", p.display())))?),
            None => None,
        };
        let policies = match &a.policies {
            Some(p) => Some(p.clone()),
            None => settings.policies_path(),
        };
        let snap = store::load(policies.as_deref(), 1)
            .map_err(|errs| usage(errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")))?;
        Ok(Inputs {
            op,
            settings,
            token,
            body,
            snap,
        })
    }
}

/// How far the checks got: the caller once the token was read, and the first refusal.
struct Judged {
    identity: Option<Identity>,
    refusal: Option<Refusal>,
}

impl Judged {
    fn refused(identity: Option<Identity>, r: Refusal) -> Self {
        Judged {
            identity,
            refusal: Some(r),
        }
    }
}

/// Runs `explain`; `Ok(true)` when the request would be allowed.
pub fn run(a: &ExplainArgs, out: &mut String) -> Result<bool, Usage> {
    let inputs = Inputs::read(a)?;
    let judged = judge(a, &inputs, out)?;
    let public = inputs.settings.public_url.as_string();
    let upstream = inputs.settings.upstream.as_string();
    let claims = judged.identity.as_ref().map(|i| &*i.claims);
    let ctx = HintCtx {
        realm: Some(&a.realm),
        operation: Some(inputs.op),
        provider: Some(&a.provider),
        kind: judged.identity.as_ref().map(|i| i.kind),
        azp: claims.and_then(Claims::client),
        username: claims.and_then(|c| c.preferred_username.as_deref()),
        public_url: &public,
        upstream: &upstream,
    };
    match &judged.refusal {
        Some(r) => Ok(verdict(out, r, &ctx)),
        None => {
            let _ = writeln!(
                out,
                "\nverdict:    ALLOWED by the gateway; Keycloak still checks the token and its own registration policies"
            );
            Ok(true)
        }
    }
}

/// The body, the token (triage, then the verifier's own steps) and the policy, in the
/// gateway's order; each step's outcome is written to `out`.
fn judge(a: &ExplainArgs, inputs: &Inputs, out: &mut String) -> Result<Judged, Usage> {
    let metadata = match parse_metadata(a, inputs) {
        Ok(m) => m,
        Err(r) => return Ok(Judged::refused(None, r)),
    };
    let route = route(a, inputs.op, metadata.as_ref());
    let issuer = explain_issuers(&inputs.settings, &a.realm, &inputs.token);
    let leeway = i64::try_from(inputs.settings.jwt.leeway.as_secs()).unwrap_or(0);
    let now = crate::token::now();
    let triaged = match triage(Presented::Bearer(&inputs.token), &route, &issuer, leeway, now) {
        Ok(t) => t,
        Err(r) => {
            let _ = writeln!(out, "token:      refused before any policy rule");
            return Ok(Judged::refused(None, r));
        }
    };
    let (kind, d) = match triaged {
        Triaged::Bearer(d) => (TokenKind::Bearer, d),
        Triaged::Hmac(k, d) => (k, d),
        Triaged::Anonymous | Triaged::Basic => return Err(usage("no token given")),
    };
    describe_token(out, kind, &d, &issuer, now);
    let identity = Identity {
        kind,
        claims: Arc::new(d.claims.clone()),
        kid: d.header.kid.clone(),
        cached: false,
    };
    if kind == TokenKind::Bearer {
        let checked = check_unkeyed(&d, &a.realm, &issuer, &inputs.settings, leeway, now)
            .and_then(|alg| signature(out, a, &inputs.settings, &inputs.token, &d, alg));
        if let Err(r) = checked {
            return Ok(Judged::refused(Some(identity), r));
        }
    } else {
        let _ = writeln!(
            out,
            "signature:  not checkable outside Keycloak (HMAC key never published); shape, issuer and expiry checked"
        );
    }
    let refusal = policy(out, inputs, &route, &identity, metadata.as_ref());
    Ok(Judged {
        identity: Some(identity),
        refusal,
    })
}

/// The body's client metadata, normalised as the gateway does, on JSON providers.
fn parse_metadata(a: &ExplainArgs, inputs: &Inputs) -> Result<Option<(ClientMetadata, Dialect)>, Refusal> {
    match (&inputs.body, Dialect::of(&a.provider)) {
        (Some(b), Some(d)) => {
            let md = parse_object(b).and_then(|m| normalise(d, &m, inputs.op == Operation::Create))?;
            Ok(Some((md, d)))
        }
        _ => Ok(None),
    }
}

/// The route a request with these arguments would take; read, update and delete name a client
/// (`--client-id`, else the body's, else `client`).
fn route(a: &ExplainArgs, op: Operation, metadata: Option<&(ClientMetadata, Dialect)>) -> RegRoute {
    let client_id = (op != Operation::Create).then(|| {
        a.client_id
            .clone()
            .or_else(|| metadata.and_then(|(m, _)| m.client_id.clone()))
            .unwrap_or_else(|| "client".into())
    });
    RegRoute {
        realm: a.realm.clone(),
        provider: a.provider.clone(),
        client_id,
        operation: op,
    }
}

/// Every rule runs shadowed here so all failures show; the few always-enforced checks (the
/// update's client id) land in the decision's `refusal`. Returns the first failure.
fn policy(
    out: &mut String,
    inputs: &Inputs,
    route: &RegRoute,
    identity: &Identity,
    metadata: Option<&(ClientMetadata, Dialect)>,
) -> Option<Refusal> {
    let input = Input {
        route,
        identity,
        metadata: metadata.map(|(m, d)| (m, *d)),
        current: None,
        peer: [127, 0, 0, 1].into(),
    };
    let decision = decide(&inputs.snap, &input, true);
    let failed: Vec<Refusal> = decision.refusal.iter().chain(&decision.shadowed).cloned().collect();
    rules(out, &inputs.snap, route, identity.kind, metadata.is_some(), &failed);
    failed.into_iter().next()
}

/// The issuers the gateway would accept: the configured ones and, unless `[realms.R] issuer`
/// pins them, the token's own when it names this realm (the gateway accepts the issuer Keycloak
/// derives from the host a request arrives at; `explain` has no request to derive it from).
fn explain_issuers(settings: &crate::config::Settings, realm: &str, token: &str) -> Vec<String> {
    let mut out = settings.issuers_for(realm);
    let own = crate::token::claims::decode(token)
        .ok()
        .and_then(|d| d.claims.iss)
        .filter(|i| {
            i.ends_with(&format!("/realms/{realm}")) && (i.starts_with("http://") || i.starts_with("https://"))
        });
    if let Some(own) = own.filter(|o| !settings.issuer_pinned(realm) && !out.contains(o)) {
        out.push(own);
    }
    out
}

fn describe_token(out: &mut String, kind: TokenKind, d: &Decoded, issuers: &[String], now: i64) {
    let issuer = issuers.first().map(String::as_str).unwrap_or("-");
    let c: &Claims = &d.claims;
    let _ = writeln!(
        out,
        "token:      {} (alg {}, kid {})",
        kind.phrase(),
        d.header.alg,
        d.header.kid.as_deref().unwrap_or("-")
    );
    let iss = c.iss.as_deref().unwrap_or("-");
    let mark = match issuers.iter().position(|i| i == iss) {
        Some(0) => "matches the configured issuer".to_owned(),
        Some(_) => format!("accepted when the request arrives at that host; configured: {issuer}"),
        None => format!("DIFFERS from the expected {}", issuers.join(" or ")),
    };
    let _ = writeln!(out, "issuer:     {iss} ({mark})");
    match c.exp {
        Some(0) => {
            let _ = writeln!(out, "expires:    never (exp 0)");
        }
        Some(exp) => {
            let _ = writeln!(
                out,
                "expires:    {} ({})",
                rfc3339(exp),
                if exp >= now {
                    format!("in {}s", exp.saturating_sub(now))
                } else {
                    format!("{}s ago", now.saturating_sub(exp))
                }
            );
        }
        None => {
            let _ = writeln!(out, "expires:    (no exp claim)");
        }
    }
    if let Some(azp) = c.client() {
        let _ = writeln!(
            out,
            "client:     {azp}{}",
            c.preferred_username
                .as_deref()
                .map(|u| format!(" (user {u})"))
                .unwrap_or_default()
        );
    }
    if kind == TokenKind::Bearer {
        let roles = c.role_names();
        let _ = writeln!(
            out,
            "roles:      {}",
            if c.resource_access.is_none() {
                "(no resource_access claim)".to_owned()
            } else {
                roles.join(", ")
            }
        );
        let _ = writeln!(out, "scope:      {}", c.scope.as_deref().unwrap_or("-"));
    }
}

fn signature(
    out: &mut String,
    a: &ExplainArgs,
    settings: &crate::config::Settings,
    token: &str,
    d: &Decoded,
    alg: jsonwebtoken::Algorithm,
) -> Result<(), Refusal> {
    let kid = d.header.kid.clone().unwrap_or_default();
    let (body, source) = if let Some(p) = &a.jwks {
        (std::fs::read(p).map_err(|e| e.to_string()), p.display().to_string())
    } else if a.upstream.is_some() || a.config.is_some() {
        let uri = settings.jwks_uri_for(&a.realm);
        (fetch(settings, &uri), uri)
    } else {
        let _ = writeln!(out, "signature:  not checked (give --jwks FILE or --upstream URL)");
        return Ok(());
    };
    let keys = match body.and_then(|b| parse_set(&b)) {
        Ok((keys, _)) => keys,
        Err(e) => {
            let _ = writeln!(out, "signature:  not checked: keys unavailable from {source}: {e}");
            return Ok(());
        }
    };
    let Some(key) = keys.get(&kid) else {
        return Err(Refusal::new(
            crate::error::Reason::KidUnknown,
            format!("Key {kid} is not in realm {}'s JWKS ({source}).", a.realm),
        )
        .detail(Detail::Kid, kid)
        .detail(Detail::JwksUri, source));
    };
    check_signature(token, d, key, alg)?;
    let _ = writeln!(out, "signature:  valid (key {kid} from {source})");
    Ok(())
}

fn fetch(settings: &crate::config::Settings, uri: &str) -> Result<Vec<u8>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let client = crate::net::client(settings);
        crate::net::get_bytes(&client, uri, settings.jwks.fetch_timeout, 1 << 20)
            .await
            .map(|b| b.to_vec())
    })
}

fn rules(out: &mut String, snap: &Snapshot, route: &RegRoute, kind: TokenKind, body: bool, failed: &[Refusal]) {
    let p = snap.for_realm(&route.realm);
    let section = if p.name == "default" {
        "[default] and built-in".to_owned()
    } else {
        format!("[realms.{}]", p.name)
    };
    let _ = writeln!(
        out,
        "\nrules for {} in realm {} (policy {section}):",
        route.operation.as_str(),
        route.realm
    );
    let mut ids = vec![p.providers.origin.clone()];
    if let Some(op) = p.op(route.operation) {
        ids.push(op.kinds.origin.clone());
        if kind == TokenKind::Bearer {
            ids.extend(
                [
                    &op.roles_any.origin,
                    &op.roles_all.origin,
                    &op.scopes.origin,
                    &op.azp.origin,
                ]
                .into_iter()
                .cloned(),
            );
        }
    }
    if body {
        let m = &p.metadata;
        ids.push(m.redirect.origin.clone());
        ids.push(m.server_urls.origin.clone());
        for r in [
            &m.grant_types,
            &m.response_types,
            &m.auth_methods,
            &m.scopes,
            &m.client_types,
            &m.forbidden_fields,
        ]
        .into_iter()
        .flatten()
        {
            ids.push(r.origin.clone());
        }
        for r in [&m.client_id_pattern, &m.client_name_pattern].into_iter().flatten() {
            ids.push(r.origin.clone());
        }
    }
    for id in ids {
        match failed.iter().find(|r| r.rule.as_ref() == Some(&id)) {
            Some(r) => {
                let _ = writeln!(out, "  FAIL  {id:<44} {}", r.description);
            }
            None => {
                let _ = writeln!(out, "  pass  {id}");
            }
        }
    }
    for r in failed
        .iter()
        .filter(|r| r.rule.as_ref().is_some_and(RuleId::is_built_in_update))
    {
        let _ = writeln!(out, "  FAIL  {:<44} {}", "built-in.update.client_id", r.description);
    }
}

fn verdict(out: &mut String, r: &Refusal, ctx: &HintCtx<'_>) -> bool {
    let _ = writeln!(
        out,
        "\nverdict:    REFUSED ({} {}, reason {})",
        r.status().as_u16(),
        r.reason.oauth_error(),
        r.reason.code()
    );
    let _ = writeln!(out, "why:        {}", r.description);
    let _ = writeln!(out, "fix:        {}", hint(r, ctx));
    false
}
