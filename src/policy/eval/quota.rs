//! The quota step of policy. `decide` says what to count (the caller and the realm quotas that
//! apply); the pipeline then counts it in the quota store, which may be Redis, and `count`
//! turns the store's answer into the decision: a refusal when the caller or the realm is at its
//! quota, or when a fail-closed store cannot answer.

use std::time::Duration;

use super::{Decision, Eval, Input, caller_key};
use crate::error::{Reason, Refusal};
use crate::policy::quota::{Ask, Quotas, Unavailable};
use crate::policy::snapshot::{QuotaPolicy, RealmPolicy, Rule};

/// A create to count, decided with the rest of the policy.
#[derive(Debug, Clone)]
pub struct QuotaAsk {
    /// The realm from the path.
    pub realm: String,
    /// The caller key.
    pub caller: String,
    /// The per-caller quota.
    pub per_caller: Option<Rule<QuotaPolicy>>,
    /// The realm-wide quota.
    pub per_realm: Option<Rule<QuotaPolicy>>,
    /// Whether the gateway runs in shadow mode.
    pub global_shadow: bool,
}

impl QuotaAsk {
    fn force(&self) -> bool {
        self.global_shadow || self.per_caller.iter().chain(&self.per_realm).all(|r| r.shadow)
    }
}

/// What to count for a create in `policy`, if any quota applies.
pub(super) fn ask(ev: &Eval<'_>, policy: &RealmPolicy, input: &Input<'_>) -> Option<QuotaAsk> {
    if policy.quota.is_none() && policy.realm_quota.is_none() {
        return None;
    }
    Some(QuotaAsk {
        realm: ev.realm.to_owned(),
        caller: caller_key(input.identity, input.peer),
        per_caller: policy.quota.clone(),
        per_realm: policy.realm_quota.clone(),
        global_shadow: ev.global_shadow,
    })
}

/// Counts the create `decision` asks for (when nothing refused it yet) and records the refusal
/// of a quota that is reached, or of a fail-closed store that cannot answer. A shadowed quota
/// counts the create and lets it through.
pub async fn count(decision: &mut Decision, quotas: &Quotas) {
    let Some(ask) = decision.quota.take() else {
        return;
    };
    if decision.refusal.is_some() {
        return;
    }
    let store_ask = Ask {
        realm: &ask.realm,
        caller: &ask.caller,
        per_caller: ask.per_caller.as_ref().map(|r| r.value),
        per_realm: ask.per_realm.as_ref().map(|r| r.value),
        force: ask.force(),
    };
    let taken = quotas.take(&store_ask).await;
    let mut ev = Eval {
        decision: std::mem::take(decision),
        global_shadow: ask.global_shadow,
        realm: &ask.realm,
    };
    match taken {
        Ok(t) => {
            ev.decision.quota_slot = t.slot;
            if let (Some(rule), Some(wait)) = (&ask.per_caller, t.caller_over) {
                let stop = ev.fail(rule, caller_refusal(&ask, rule, wait));
                if stop {
                    *decision = ev.decision;
                    return;
                }
            }
            if let (Some(rule), Some(wait)) = (&ask.per_realm, t.realm_over) {
                ev.fail(rule, realm_refusal(&ask, rule, wait));
            }
        }
        Err(Unavailable(e)) => {
            let r = Refusal::new(
                Reason::QuotaStoreUnavailable,
                format!(
                    "The gateway cannot count this create against the quotas of realm {}: its quota store did not answer.",
                    ask.realm
                ),
            )
            .detail("store_error", e.kind())
            .retry_after(1);
            if let Some(rule) = ask.per_caller.as_ref().or(ask.per_realm.as_ref()) {
                ev.fail(rule, r);
            }
        }
    }
    *decision = ev.decision;
}

fn seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

fn caller_refusal(ask: &QuotaAsk, rule: &Rule<QuotaPolicy>, wait: Duration) -> Refusal {
    // The caller key may hold an unverified `jti`: show a bounded prefix only.
    let caller: String = ask.caller.chars().take(80).collect();
    let secs = seconds(wait).max(1);
    let msg = format!(
        "Caller {caller} has used its quota of {} creates per {}s in realm {}; try again in {secs}s.",
        rule.value.creates,
        rule.value.window.as_secs(),
        ask.realm
    );
    Refusal::new(Reason::QuotaExceeded, msg)
        .detail("caller", caller)
        .detail("creates", rule.value.creates)
        .detail("window_seconds", rule.value.window.as_secs())
        .retry_after(secs)
}

fn realm_refusal(ask: &QuotaAsk, rule: &Rule<QuotaPolicy>, wait: Duration) -> Refusal {
    let secs = seconds(wait).max(1);
    let msg = format!(
        "Realm {} has reached its quota of {} creates per {}s across all callers; try again in {secs}s.",
        ask.realm,
        rule.value.creates,
        rule.value.window.as_secs(),
    );
    Refusal::new(Reason::RealmQuotaExceeded, msg)
        .detail("realm_creates", rule.value.creates)
        .detail("window_seconds", rule.value.window.as_secs())
        .retry_after(secs)
}
