//! Stage 4, policy: provider, token kind, roles, scopes, azp, client metadata and quota, in that
//! order, against one pinned snapshot. Shadowed rules are recorded and evaluation goes on; the
//! first enforced failure is the decision.

use std::net::IpAddr;

use super::metadata::{ClientMetadata, Dialect};
use super::snapshot::{OpPolicy, RealmPolicy, Rule, Snapshot};
use crate::error::{Detail, Reason, Refusal, RuleId};
use crate::route::{Operation, RegRoute};
use crate::token::claims::capitalise;
use crate::token::{Identity, TokenKind};
use anonymous::anonymous_refusal;
pub use anonymous::{anonymous_rules, lends_credential};
pub use fields::check_redirect;
use fields::{client_id_fits, metadata};
pub use quota::{QuotaAsk, count};

/// What the policy stage knows about a request.
#[derive(Debug)]
pub struct Input<'a> {
    /// The classified route.
    pub route: &'a RegRoute,
    /// The caller.
    pub identity: &'a Identity,
    /// Normalised client metadata (create and update on JSON providers).
    pub metadata: Option<(&'a ClientMetadata, Dialect)>,
    /// On an update: the client as Keycloak holds it now, read with the caller's credential.
    /// The metadata rules then judge only what the update changes.
    pub current: Option<&'a ClientMetadata>,
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
    pub rule: Option<RuleId>,
    /// The create to count against quotas (by `quota::count`), when quotas apply.
    pub quota: Option<QuotaAsk>,
    /// The create counted against a quota; refund it if Keycloak does not accept the create.
    pub quota_slot: Option<super::quota::Slot>,
    /// Anonymous creates in the realm's current anonymous window, after this one was counted.
    pub anonymous_realm_used: Option<u32>,
    /// The refusal judged the whole body (the anonymous rules): reading the client as Keycloak
    /// holds it cannot change it.
    pub conclusive: bool,
}

/// What policy made of a request: the `decision` label of metrics and audit lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let through.
    Allow,
    /// Refused.
    Deny,
    /// Let through, but a shadowed rule would have refused it.
    ShadowDeny,
}

impl Verdict {
    /// `allow`, `deny` or `shadow_deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::ShadowDeny => "shadow_deny",
        }
    }
}

impl Decision {
    /// Deny when a rule refused, shadow deny when only shadowed rules did, else allow.
    pub fn verdict(&self) -> Verdict {
        match (&self.refusal, self.shadowed.is_empty()) {
            (Some(_), _) => Verdict::Deny,
            (None, false) => Verdict::ShadowDeny,
            (None, true) => Verdict::Allow,
        }
    }

    /// `allow`, `deny` or `shadow_deny`.
    pub fn label(&self) -> &'static str {
        self.verdict().as_str()
    }

    /// A copy of what `precheck` found (the caller rules), to `finish` a second time without
    /// running them again: an update judged again by what it changes.
    pub fn caller_part(&self) -> Decision {
        Decision {
            refusal: self.refusal.clone(),
            shadowed: self.shadowed.clone(),
            rule: self.rule.clone(),
            ..Decision::default()
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
        let refusal = refusal.with_rule(rule.origin.clone());
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

/// Evaluates the snapshot for one request. An allowed create says what to count against quotas
/// (`Decision::quota`), for `quota::count` to count in the store.
pub fn decide(snap: &Snapshot, input: &Input<'_>, global_shadow: bool) -> Decision {
    let caller = precheck(snap, input, global_shadow);
    if caller.refusal.is_some() {
        return caller;
    }
    finish(caller, snap, input, global_shadow)
}

/// The rules that need no body (provider, token kind, roles, scopes, `azp`), so that a request
/// they refuse is answered before its body is read. Continue with `finish`; they run once.
pub fn precheck(snap: &Snapshot, input: &Input<'_>, global_shadow: bool) -> Decision {
    let route = input.route;
    let mut ev = Eval {
        decision: Decision::default(),
        global_shadow,
        realm: &route.realm,
    };
    caller_rules(&mut ev, snap.for_realm(&route.realm), input);
    ev.decision
}

/// The rules on the body, and what to count against quotas, after a `precheck` that did not
/// refuse.
pub fn finish(caller: Decision, snap: &Snapshot, input: &Input<'_>, global_shadow: bool) -> Decision {
    let route = input.route;
    let policy = snap.for_realm(&route.realm);
    let mut ev = Eval {
        decision: caller,
        global_shadow,
        realm: &route.realm,
    };
    // Lent the gateway's credential: the anonymous rules first (their answer names what the
    // mode forbids, not only what the realm's rules would accept instead).
    let anon = anonymous_rules(policy, input);
    if let (Some(a), Some((md, dialect))) = (anon, input.metadata) {
        // Lent the gateway's credential: always enforced, shadow mode or not.
        let filled = ClientMetadata {
            // Empty values do nothing: Keycloak's own answers echo some, clients send them back.
            raw_keys: md
                .raw_keys
                .iter()
                .filter(|(_, v)| super::metadata::non_empty(Some(v)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..md.clone()
        };
        let shadow = std::mem::replace(&mut ev.global_shadow, false);
        let stop = metadata(&mut ev, &a.metadata, &filled, dialect);
        ev.global_shadow = shadow;
        if stop {
            ev.decision.conclusive = true;
            return ev.decision;
        }
    }
    if let Some((md, dialect)) = input.metadata {
        let changes = input.current.map(|c| md.changes_from(c));
        let judged = changes.as_ref().unwrap_or(md);
        if metadata(&mut ev, &policy.metadata, judged, dialect) || client_id_fits(&mut ev, route, md, dialect) {
            return ev.decision;
        }
    }
    if route.operation == Operation::Create {
        ev.decision.quota = quota::ask(&ev, policy, input, anon);
    }
    ev.decision
}

/// Evaluates metadata rules alone (admin REST API writes, which have no registration
/// operation, token-kind or role rules of their own: Keycloak checks the admin's roles).
pub fn decide_metadata(
    rules: &super::snapshot::MetadataPolicy,
    realm: &str,
    md: &ClientMetadata,
    global_shadow: bool,
) -> Decision {
    let mut ev = Eval {
        decision: Decision::default(),
        global_shadow,
        realm,
    };
    metadata(&mut ev, rules, md, Dialect::Keycloak);
    ev.decision
}

/// The rules that need no body: provider, token kind, roles, scopes, `azp`. True when an
/// enforced rule refused.
fn caller_rules(ev: &mut Eval<'_>, policy: &RealmPolicy, input: &Input<'_>) -> bool {
    let route = input.route;
    if !policy.providers.value.contains(&route.provider) && provider(ev, policy, route) {
        return true;
    }
    let Some(op) = policy.op(route.operation) else {
        return false;
    };
    kinds(ev, policy, op, input) || bearer(ev, op, input)
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
    .detail(Detail::Provider, route.provider.clone())
    .detail(
        Detail::AllowedProviders,
        allowed.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    );
    ev.fail(&policy.providers, r)
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

fn kinds(ev: &mut Eval<'_>, policy: &RealmPolicy, op: &OpPolicy, input: &Input<'_>) -> bool {
    let kind = input.identity.kind;
    if op.kinds.value.contains(&kind) {
        return false;
    }
    let operation = input.route.operation;
    if kind == TokenKind::Anonymous && operation == Operation::Create && policy.anonymous.is_some() {
        if input.route.provider == "openid-connect" {
            return false; // the anonymous rules apply instead
        }
        let r = Refusal::new(
            Reason::AnonymousNotAllowed,
            format!(
                "Anonymous registration in realm {} accepts only the openid-connect provider (RFC 7591): POST …/realms/{}/clients-registrations/openid-connect.",
                ev.realm, ev.realm
            ),
        )
        .detail(Detail::TokenKind, kind.as_str());
        let rule = Rule::new((), format!("realms.{}.anonymous", ev.realm));
        let shadow = std::mem::replace(&mut ev.global_shadow, false);
        let stop = ev.fail(&rule, r);
        ev.global_shadow = shadow;
        return stop;
    }
    let allowed: Vec<&str> = op.kinds.value.iter().map(|k| k.as_str()).collect();
    let operation = operation.as_str();
    if kind == TokenKind::Anonymous {
        return ev.fail(&op.kinds, anonymous_refusal(ev.realm, operation, &allowed));
    }
    let what = format!(
        "{} may not {operation} clients in realm {}",
        capitalise(kind.phrase()),
        ev.realm
    );
    let reason = Reason::TokenKindNotAllowed;
    let allowed_text = if allowed.is_empty() {
        "nothing".to_owned()
    } else {
        allowed.join(", ")
    };
    let r = Refusal::new(reason, format!("{what}; allowed: {allowed_text}."))
        .detail(Detail::TokenKind, kind.as_str())
        .detail(Detail::AllowedTokenKinds, allowed);
    ev.fail(&op.kinds, r)
}

/// The rules on a bearer token's roles, scopes and `azp`, in that order. True when an enforced
/// rule refused.
fn bearer(ev: &mut Eval<'_>, op: &OpPolicy, input: &Input<'_>) -> bool {
    if input.identity.kind != TokenKind::Bearer {
        return false;
    }
    let c = &input.identity.claims;
    let caller = Caller {
        c,
        realm: ev.realm,
        verb: input.route.operation.as_str(),
    };
    roles(ev, &op.roles_any, Need::Any, &caller)
        || roles(ev, &op.roles_all, Need::All, &caller)
        || scopes(ev, op, &caller)
        || azp(ev, op, &caller)
}

/// The bearer token the role, scope and `azp` rules judge.
struct Caller<'a> {
    c: &'a crate::token::Claims,
    realm: &'a str,
    /// The operation.
    verb: &'static str,
}

impl Caller<'_> {
    /// `client '<azp>'`, or `this token`: written only into a refusal, so not built for a
    /// request the rules let through.
    fn who(&self) -> String {
        self.c
            .client()
            .map(|a| format!("client '{a}'"))
            .unwrap_or_else(|| "this token".into())
    }

    fn has(&self, r: &super::snapshot::RoleRef) -> bool {
        match r.client_in(self.realm) {
            Some(client) => self.c.has_client_role(client, &r.role),
            None => self.c.has_realm_role(&r.role),
        }
    }

    /// A refusal with the details every caller rule records.
    fn refusal(&self, reason: Reason, msg: String) -> Refusal {
        Refusal::new(reason, msg)
            .detail(Detail::Azp, self.c.client().unwrap_or_default())
            .detail(Detail::TokenRoles, self.c.role_names())
            .detail(Detail::Operation, self.verb)
    }
}

/// How a role rule reads its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// `roles_any`: at least one of the roles.
    Any,
    /// `roles_all`: every role.
    All,
}

/// A `roles_any` or `roles_all` rule. True when an enforced rule refused.
fn roles(ev: &mut Eval<'_>, rule: &Rule<Vec<super::snapshot::RoleRef>>, need: Need, caller: &Caller<'_>) -> bool {
    let realm = caller.realm;
    // What the refusal names: every role of `roles_any`, the missing ones of `roles_all`.
    let named: Vec<String> = match need {
        Need::Any if rule.value.iter().any(|r| caller.has(r)) => return false,
        Need::Any => rule.value.iter().map(|r| r.display_in(realm)).collect(),
        Need::All => rule
            .value
            .iter()
            .filter(|r| !caller.has(r))
            .map(|r| r.display_in(realm))
            .collect(),
    };
    if named.is_empty() {
        return false;
    }
    let (who, verb) = (caller.who(), caller.verb);
    let (msg, detail) = match need {
        Need::Any => (
            format!(
                "The token of {who} has none of the roles {} needed to {verb} clients in realm {realm}.",
                named.join(" or ")
            ),
            Detail::RolesNeededAny,
        ),
        Need::All => (
            format!(
                "The token of {who} lacks the roles {} needed to {verb} clients in realm {realm}.",
                named.join(", ")
            ),
            Detail::RolesNeededAll,
        ),
    };
    let r = caller
        .refusal(roles_reason(caller.c, &rule.value), msg)
        .detail(detail, named.clone())
        .with_scope(named.join(" "));
    ev.fail(rule, r)
}

/// The `scopes` rule. True when an enforced rule refused.
fn scopes(ev: &mut Eval<'_>, op: &OpPolicy, caller: &Caller<'_>) -> bool {
    if op.scopes.value.is_empty() {
        return false;
    }
    let scopes: Vec<&str> = caller.c.scopes().collect();
    let missing: Vec<String> = op
        .scopes
        .value
        .iter()
        .filter(|s| !scopes.contains(&s.as_str()))
        .cloned()
        .collect();
    if missing.is_empty() {
        return false;
    }
    let msg = format!(
        "The token of {} lacks the scopes {} needed to {} clients.",
        caller.who(),
        missing.join(" "),
        caller.verb
    );
    let r = caller
        .refusal(Reason::MissingScope, msg)
        .detail(Detail::ScopesNeeded, missing.clone())
        .detail(Detail::TokenScopes, scopes.clone())
        .with_scope(missing.join(" "));
    ev.fail(&op.scopes, r)
}

/// The `azp` rule. True when an enforced rule refused.
fn azp(ev: &mut Eval<'_>, op: &OpPolicy, caller: &Caller<'_>) -> bool {
    let allowed = &op.azp.value;
    if allowed.is_empty() || caller.c.azp.as_ref().is_some_and(|a| allowed.contains(a)) {
        return false;
    }
    let msg = format!(
        "Tokens issued to {} may not {} clients; allowed clients: {}.",
        caller.who(),
        caller.verb,
        allowed.join(", ")
    );
    let r = caller
        .refusal(Reason::AzpNotAllowed, msg)
        .detail(Detail::AllowedAzp, allowed.clone());
    ev.fail(&op.azp, r)
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

/// The quota caller key: `azp`, initial access token id, or source address.
pub fn caller_key(identity: &Identity, peer: IpAddr) -> String {
    let c = &identity.claims;
    match identity.kind {
        TokenKind::Bearer => format!("azp:{}", c.client().unwrap_or("?")),
        TokenKind::InitialAccess => format!("iat:{}", c.jti.as_deref().unwrap_or("?")),
        _ => format!("ip:{peer}"),
    }
}

mod anonymous;
mod fields;
pub mod quota;

#[cfg(test)]
mod tests;
