//! Stage 4, policy: provider, token kind, roles, scopes, azp, client metadata and quota, in that
//! order, against one pinned snapshot. Shadowed rules are recorded and evaluation goes on; the
//! first enforced failure is the decision.

use std::net::IpAddr;

use tokio::time::Instant;

use super::metadata::{ClientMetadata, Dialect, wire_name};
use super::quota::Quotas;
use super::snapshot::{MetadataPolicy, OpPolicy, RealmPolicy, Rule, Snapshot};
use super::uri;
use crate::error::{Reason, Refusal};
use crate::pipeline::route::{Operation, RegRoute};
use crate::token::{Identity, TokenKind};

/// What the policy stage knows about a request.
pub struct Input<'a> {
    /// The classified route.
    pub route: &'a RegRoute,
    /// The caller.
    pub identity: &'a Identity,
    /// Normalised client metadata (create and update on JSON providers).
    pub metadata: Option<(&'a ClientMetadata, Dialect)>,
    /// The peer address (for anonymous quotas).
    pub peer: IpAddr,
}

/// The outcome of policy evaluation.
#[derive(Debug, Default)]
pub struct Decision {
    /// The enforced refusal, if any.
    pub refusal: Option<Refusal>,
    /// Refusals that shadowed rules would have made.
    pub shadowed: Vec<Refusal>,
    /// The rule that decided (the refusing one, else the first shadowed one).
    pub rule: Option<String>,
}

impl Decision {
    /// `allow`, `deny` or `shadow_deny`.
    pub fn label(&self) -> &'static str {
        match (&self.refusal, self.shadowed.is_empty()) {
            (Some(_), _) => "deny",
            (None, false) => "shadow_deny",
            (None, true) => "allow",
        }
    }
}

struct Eval<'a> {
    decision: Decision,
    global_shadow: bool,
    realm: &'a str,
}

impl Eval<'_> {
    /// Records a failed rule; returns true when evaluation must stop (an enforced refusal).
    fn fail<T>(&mut self, rule: &Rule<T>, refusal: Refusal) -> bool {
        let refusal = refusal.detail("rule", rule.origin.clone());
        if self.decision.rule.is_none() {
            self.decision.rule = Some(rule.origin.clone());
        }
        if rule.shadow || self.global_shadow {
            self.decision.shadowed.push(refusal);
            false
        } else {
            self.decision.rule = Some(rule.origin.clone());
            self.decision.refusal = Some(refusal);
            true
        }
    }
}

/// Evaluates the snapshot for one request. Takes a quota slot when the create is allowed.
pub fn decide(snap: &Snapshot, input: &Input<'_>, global_shadow: bool, quotas: &Quotas) -> Decision {
    let route = input.route;
    let policy = snap.for_realm(&route.realm);
    let mut ev = Eval {
        decision: Decision::default(),
        global_shadow,
        realm: &route.realm,
    };
    if !policy.providers.value.contains(&route.provider) && provider(&mut ev, policy, route) {
        return ev.decision;
    }
    let Some(op) = policy.op(route.operation) else {
        return ev.decision;
    };
    if kinds(&mut ev, op, input) || bearer(&mut ev, op, input) {
        return ev.decision;
    }
    if let Some((md, dialect)) = input.metadata
        && (metadata(&mut ev, &policy.metadata, md, dialect) || client_id_fits(&mut ev, route, md, dialect))
    {
        return ev.decision;
    }
    if route.operation == Operation::Create
        && let Some(q) = &policy.quota
    {
        quota(&mut ev, q, input, quotas);
    }
    ev.decision
}

fn provider(ev: &mut Eval<'_>, policy: &RealmPolicy, route: &RegRoute) -> bool {
    let allowed: Vec<&String> = policy.providers.value.iter().collect();
    let r = Refusal::new(
        Reason::ProviderNotAllowed,
        format!(
            "Provider `{}` is not allowed in realm {}; allowed: {}.",
            route.provider,
            route.realm,
            join(&allowed)
        ),
    )
    .detail("provider", route.provider.clone())
    .detail(
        "allowed_providers",
        allowed.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    );
    ev.fail(&policy.providers, r)
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

fn kinds(ev: &mut Eval<'_>, op: &OpPolicy, input: &Input<'_>) -> bool {
    let kind = input.identity.kind;
    if op.kinds.value.contains(&kind) {
        return false;
    }
    let allowed: Vec<&str> = op.kinds.value.iter().map(|k| k.as_str()).collect();
    let operation = input.route.operation.as_str();
    let (reason, what) = if kind == TokenKind::Anonymous {
        (
            Reason::AnonymousNotAllowed,
            format!("Anonymous requests may not {operation} clients in realm {}", ev.realm),
        )
    } else {
        (
            Reason::TokenKindNotAllowed,
            format!(
                "{} may not {operation} clients in realm {}",
                capitalise(kind.phrase()),
                ev.realm
            ),
        )
    };
    let allowed_text = if allowed.is_empty() {
        "nothing".to_owned()
    } else {
        allowed.join(", ")
    };
    let r = Refusal::new(reason, format!("{what}; allowed: {allowed_text}."))
        .detail("token_kind", kind.as_str())
        .detail("allowed_token_kinds", allowed);
    ev.fail(&op.kinds, r)
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn bearer(ev: &mut Eval<'_>, op: &OpPolicy, input: &Input<'_>) -> bool {
    if input.identity.kind != TokenKind::Bearer {
        return false;
    }
    let c = &input.identity.claims;
    let realm = ev.realm.to_owned();
    let has = |r: &super::snapshot::RoleRef| match r.client_in(&realm) {
        Some(client) => c.has_client_role(&client, &r.role),
        None => c.has_realm_role(&r.role),
    };
    let base = |reason: Reason, msg: String| {
        Refusal::new(reason, msg)
            .detail("azp", c.client().unwrap_or_default())
            .detail("token_roles", c.role_names())
            .detail("operation", input.route.operation.as_str())
    };
    let who = c
        .client()
        .map(|a| format!("client '{a}'"))
        .unwrap_or_else(|| "this token".into());
    let verb = input.route.operation.as_str();
    if !op.roles_any.value.is_empty() && !op.roles_any.value.iter().any(has) {
        let needed: Vec<String> = op.roles_any.value.iter().map(|r| r.display_in(&realm)).collect();
        let reason = roles_reason(c, &op.roles_any.value);
        let msg = format!(
            "The token of {who} has none of the roles {} needed to {verb} clients in realm {realm}.",
            needed.join(" or ")
        );
        let r = base(reason, msg)
            .detail("roles_needed_any", needed.clone())
            .with_scope(needed.join(" "));
        if ev.fail(&op.roles_any, r) {
            return true;
        }
    }
    let missing: Vec<String> = op
        .roles_all
        .value
        .iter()
        .filter(|r| !has(r))
        .map(|r| r.display_in(&realm))
        .collect();
    if !missing.is_empty() {
        let reason = roles_reason(c, &op.roles_all.value);
        let msg = format!(
            "The token of {who} lacks the roles {} needed to {verb} clients in realm {realm}.",
            missing.join(", ")
        );
        let r = base(reason, msg)
            .detail("roles_needed_all", missing.clone())
            .with_scope(missing.join(" "));
        if ev.fail(&op.roles_all, r) {
            return true;
        }
    }
    let scopes: Vec<&str> = c.scopes().collect();
    let missing: Vec<String> = op
        .scopes
        .value
        .iter()
        .filter(|s| !scopes.contains(&s.as_str()))
        .cloned()
        .collect();
    if !missing.is_empty() {
        let msg = format!(
            "The token of {who} lacks the scopes {} needed to {verb} clients.",
            missing.join(" ")
        );
        let r = base(Reason::MissingScope, msg)
            .detail("scopes_needed", missing.clone())
            .detail("token_scopes", scopes.clone())
            .with_scope(missing.join(" "));
        if ev.fail(&op.scopes, r) {
            return true;
        }
    }
    if !op.azp.value.is_empty() && !c.azp.as_ref().is_some_and(|a| op.azp.value.contains(a)) {
        let msg = format!(
            "Tokens issued to {who} may not {verb} clients; allowed clients: {}.",
            op.azp.value.join(", ")
        );
        let r = base(Reason::AzpNotAllowed, msg).detail("allowed_azp", op.azp.value.clone());
        if ev.fail(&op.azp, r) {
            return true;
        }
    }
    false
}

/// `roles_not_in_token` when client roles are needed and the token has no `resource_access` at
/// all (a scope problem, not a role mapping one); otherwise `missing_role`.
fn roles_reason(c: &crate::token::Claims, needed: &[super::snapshot::RoleRef]) -> Reason {
    if c.resource_access.is_none() && needed.iter().any(|r| r.client.is_some()) {
        Reason::RolesNotInToken
    } else {
        Reason::MissingRole
    }
}

fn field_refusal(
    reason: Reason,
    dialect: Dialect,
    field: &str,
    value: impl Into<serde_json::Value>,
    msg: String,
) -> Refusal {
    Refusal::new(reason, msg)
        .detail("field", wire_name(dialect, field))
        .detail("value", value)
}

fn subset(
    ev: &mut Eval<'_>,
    rule: &Option<Rule<std::collections::BTreeSet<String>>>,
    values: &[String],
    reason: Reason,
    field: &str,
    dialect: Dialect,
) -> bool {
    let Some(rule) = rule else { return false };
    for v in values {
        if !rule.value.contains(v) {
            let allowed: Vec<&String> = rule.value.iter().collect();
            let msg = format!(
                "`{v}` is not an allowed value of {}; allowed: {}.",
                wire_name(dialect, field),
                join(&allowed)
            );
            let r = field_refusal(reason, dialect, field, v.clone(), msg)
                .detail("allowed", allowed.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            if ev.fail(rule, r) {
                return true;
            }
        }
    }
    false
}

fn metadata(ev: &mut Eval<'_>, p: &MetadataPolicy, md: &ClientMetadata, d: Dialect) -> bool {
    if redirects(ev, &p.redirect, md, d) {
        return true;
    }
    let auth = [md.auth_method.clone()];
    let client_type = [md.client_type.to_owned()];
    if subset(
        ev,
        &p.grant_types,
        &md.grant_types,
        Reason::GrantTypeNotAllowed,
        "grant_types",
        d,
    ) || subset(
        ev,
        &p.response_types,
        &md.response_types,
        Reason::ResponseTypeNotAllowed,
        "response_types",
        d,
    ) || subset(
        ev,
        &p.auth_methods,
        &auth,
        Reason::AuthMethodNotAllowed,
        "token_endpoint_auth_method",
        d,
    ) || subset(ev, &p.scopes, &md.scopes, Reason::ScopeNotAllowed, "scopes", d)
        || subset(
            ev,
            &p.client_types,
            &client_type,
            Reason::ClientTypeNotAllowed,
            "client_type",
            d,
        )
    {
        return true;
    }
    if let Some(rule) = &p.forbidden_fields {
        for f in rule
            .value
            .iter()
            .filter(|f| md.present.contains(*f) || md.raw_keys.contains(*f))
        {
            let msg = format!(
                "Field `{}` may not be set when registering clients here.",
                wire_name(d, f)
            );
            if ev.fail(rule, field_refusal(Reason::FieldForbidden, d, f, true, msg)) {
                return true;
            }
        }
    }
    for (rule, value, reason, field) in [
        (
            &p.client_id_pattern,
            &md.client_id,
            Reason::ClientIdPattern,
            "client_id",
        ),
        (
            &p.client_name_pattern,
            &md.client_name,
            Reason::ClientNamePattern,
            "client_name",
        ),
    ] {
        if let (Some(rule), Some(v)) = (rule, value)
            && !rule.value.is_match(v)
        {
            let msg = format!(
                "{} `{v}` does not match the required pattern {}.",
                wire_name(d, field),
                rule.value.as_str()
            );
            if ev.fail(
                rule,
                field_refusal(reason, d, field, v.clone(), msg).detail("pattern", rule.value.as_str()),
            ) {
                return true;
            }
        }
    }
    false
}

fn redirects(ev: &mut Eval<'_>, rule: &Rule<super::snapshot::RedirectPolicy>, md: &ClientMetadata, d: Dialect) -> bool {
    let p = &rule.value;
    if let Some(max) = p.max.filter(|m| md.redirect_uris.len() > *m) {
        let msg = format!(
            "{} redirect URIs are requested; at most {max} are allowed.",
            md.redirect_uris.len()
        );
        if ev.fail(
            rule,
            field_refusal(
                Reason::TooManyRedirectUris,
                d,
                "redirect_uris",
                md.redirect_uris.len(),
                msg,
            )
            .detail("max", max),
        ) {
            return true;
        }
    }
    for u in &md.redirect_uris {
        if let Some(r) = check_redirect(p, u, d)
            && ev.fail(rule, r)
        {
            return true;
        }
    }
    false
}

/// The refusal for one redirect URI, if it breaks a rule.
pub fn check_redirect(p: &super::snapshot::RedirectPolicy, u: &str, d: Dialect) -> Option<Refusal> {
    let bad = |reason, msg: String| Some(field_refusal(reason, d, "redirect_uris", u, msg));
    let parsed = match uri::parse(u) {
        Ok(p) => p,
        Err(why) => {
            return bad(
                Reason::RedirectUriMalformed,
                format!("Redirect URI `{u}` is malformed: {why}."),
            );
        }
    };
    if parsed.fragment {
        return bad(
            Reason::RedirectUriFragment,
            format!("Redirect URI `{u}` has a fragment (#...), which OAuth forbids."),
        );
    }
    if uri::DANGEROUS_SCHEMES.contains(&parsed.scheme.as_str()) {
        return bad(
            Reason::RedirectUriNotAllowed,
            format!(
                "Redirect URI `{u}` uses scheme `{}`, which is never allowed (it runs code or reads local data in the browser).",
                parsed.scheme
            ),
        );
    }
    if parsed.wildcard && !p.wildcards {
        return bad(
            Reason::RedirectUriNotAllowed,
            format!("Redirect URI `{u}` contains a wildcard (*); list exact URIs."),
        );
    }
    let web = parsed.scheme == "http" || parsed.scheme == "https";
    if web && p.loopback && uri::is_loopback(&parsed.host) {
        return None;
    }
    if let Some(schemes) = p.schemes.as_ref().filter(|s| !s.contains(&parsed.scheme)) {
        let allowed: Vec<String> = schemes.iter().cloned().collect();
        let loopback = if p.loopback {
            " (http/https on loopback is also allowed)"
        } else {
            ""
        };
        return Some(
            field_refusal(
                Reason::RedirectUriNotAllowed,
                d,
                "redirect_uris",
                u,
                format!(
                    "Redirect URI `{u}` uses scheme `{}`; allowed: {}{loopback}.",
                    parsed.scheme,
                    allowed.join(", ")
                ),
            )
            .detail("allowed_schemes", allowed),
        );
    }
    if let Some(hosts) = p
        .hosts
        .as_ref()
        .filter(|h| web && !h.iter().any(|pat| uri::host_matches(pat, &parsed.host)))
    {
        let loopback = if p.loopback {
            "; loopback hosts are also allowed"
        } else {
            ""
        };
        return Some(
            field_refusal(
                Reason::RedirectUriNotAllowed,
                d,
                "redirect_uris",
                u,
                format!(
                    "Redirect URI `{u}` has host `{}`, which is not allowed; allowed hosts: {}{loopback}.",
                    parsed.host,
                    hosts.join(", ")
                ),
            )
            .detail("allowed_hosts", hosts.clone()),
        );
    }
    None
}

fn client_id_fits(ev: &mut Eval<'_>, route: &RegRoute, md: &ClientMetadata, d: Dialect) -> bool {
    if route.operation != Operation::Update {
        return false;
    }
    let path_id = route.client_id.as_deref().unwrap_or_default();
    if md.client_id.as_deref() == Some(path_id) {
        return false;
    }
    let wire = wire_name(d, "client_id");
    let msg = match &md.client_id {
        Some(body_id) => format!(
            "The body's {wire} `{body_id}` differs from the client id `{path_id}` in the path; Keycloak refuses that with \"Client Identifier modified\"."
        ),
        None => format!("An update must repeat the client id in the body: add \"{wire}\": \"{path_id}\"."),
    };
    let rule = Rule::new((), "built-in.update.client_id".to_owned());
    let r = Refusal::new(Reason::ClientIdMismatch, msg)
        .detail("field", wire)
        .detail("path_client_id", path_id);
    let shadow_before = ev.global_shadow;
    ev.global_shadow = false;
    let stop = ev.fail(&rule, r);
    ev.global_shadow = shadow_before;
    stop
}

/// The quota caller key: `azp`, initial access token id, or source address.
pub fn caller_key(identity: &Identity, peer: IpAddr) -> String {
    let c = &identity.claims;
    match identity.kind {
        TokenKind::Bearer => format!("azp:{}", c.client().unwrap_or("?")),
        TokenKind::InitialAccess => format!("iat:{}", c.jti.as_deref().unwrap_or("?")),
        _ => format!("ip:{peer}"),
    }
}

fn quota(ev: &mut Eval<'_>, rule: &Rule<super::snapshot::QuotaPolicy>, input: &Input<'_>, quotas: &Quotas) {
    let caller = caller_key(input.identity, input.peer);
    let now = Instant::now();
    let over = if ev.decision.refusal.is_none() {
        quotas.take(ev.realm, &caller, rule.value, now).err()
    } else {
        None
    };
    if let Some(wait) = over {
        let secs = wait.as_secs().max(1);
        let msg = format!(
            "Caller {caller} has used its quota of {} creates per {}s in realm {}; try again in {secs}s.",
            rule.value.creates,
            rule.value.window.as_secs(),
            ev.realm
        );
        let r = Refusal::new(Reason::QuotaExceeded, msg)
            .detail("caller", caller)
            .detail("creates", rule.value.creates)
            .detail("window_seconds", rule.value.window.as_secs())
            .retry_after(secs);
        ev.fail(rule, r);
    }
}

#[cfg(test)]
mod tests;
