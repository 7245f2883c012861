//! The quota step of policy. `decide` says what to count (the caller and the realm quotas that
//! apply); the pipeline then counts it in the quota store, which may be Redis, and `count`
//! turns the store's answer into the decision: a refusal when the caller or the realm is at its
//! quota, or when a fail-closed store cannot answer.

use std::net::IpAddr;
use std::time::Duration;

use super::{Decision, Eval, Input, caller_key};
use crate::error::{Detail, Reason, Refusal};
use crate::policy::anonymous::AnonymousPolicy;
use crate::policy::quota::{Ask, Key, Limits, Quotas, Unavailable, digest};
use crate::policy::snapshot::{QuotaPolicy, RealmPolicy, Rule};

/// The counter a quota rule counts creates in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Counter {
    /// `[*.quota]`: one caller (`azp`, initial access token id, or address).
    Caller(String),
    /// `[*.realm_quota]`: every create in the realm.
    Realm,
    /// The anonymous `quota`: anonymous creates from one client address.
    AnonymousAddress(IpAddr),
    /// The anonymous `realm_quota`: anonymous creates in the realm.
    AnonymousRealm,
}

impl Counter {
    fn key(&self, realm: &str) -> Key {
        match self {
            Counter::Caller(c) => digest(b'c', realm, c),
            Counter::Realm => digest(b'r', realm, ""),
            Counter::AnonymousAddress(ip) => digest(b'a', realm, &ip.to_string()),
            Counter::AnonymousRealm => digest(b'A', realm, ""),
        }
    }
}

/// One quota rule a create is counted against.
#[derive(Debug, Clone)]
pub struct Counted {
    /// Where it counts.
    pub counter: Counter,
    /// The rule, with its limit.
    pub rule: Rule<QuotaPolicy>,
    /// Enforced even in shadow mode (the anonymous quotas).
    pub always: bool,
}

impl Counted {
    fn shadowed(&self, global_shadow: bool) -> bool {
        self.rule.shadow || (global_shadow && !self.always)
    }
}

/// A create to count, decided with the rest of the policy.
#[derive(Debug, Clone)]
pub struct QuotaAsk {
    /// The realm from the path.
    pub realm: String,
    /// The quotas that apply, in the order their refusals are reported.
    pub counted: Vec<Counted>,
    /// Whether the gateway runs in shadow mode.
    pub global_shadow: bool,
}

impl QuotaAsk {
    fn force(&self) -> bool {
        self.counted.iter().all(|c| c.shadowed(self.global_shadow))
    }
}

/// What to count for a create in `policy`, if any quota applies; `anonymous` when the create is
/// governed by the realm's anonymous rules.
pub(super) fn ask(
    ev: &Eval<'_>,
    policy: &RealmPolicy,
    input: &Input<'_>,
    anonymous: Option<&AnonymousPolicy>,
) -> Option<QuotaAsk> {
    let mut counted = Vec::new();
    let mut add = |counter, rule: &Option<Rule<QuotaPolicy>>, always| {
        if let Some(rule) = rule {
            counted.push(Counted {
                counter,
                rule: rule.clone(),
                always,
            });
        }
    };
    if policy.quota.is_some() {
        // The key is written only for a quota that counts it.
        add(
            Counter::Caller(caller_key(input.identity, input.peer)),
            &policy.quota,
            false,
        );
    }
    add(Counter::Realm, &policy.realm_quota, false);
    if let Some(a) = anonymous {
        add(Counter::AnonymousAddress(input.peer), &Some(a.quota.clone()), true);
        add(Counter::AnonymousRealm, &Some(a.realm_quota.clone()), true);
    }
    (!counted.is_empty()).then(|| QuotaAsk {
        realm: ev.realm.to_owned(),
        counted,
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
        limits: ask
            .counted
            .iter()
            .map(|c| Limits {
                key: c.counter.key(&ask.realm),
                policy: c.rule.value,
            })
            .collect(),
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
            for (i, c) in ask.counted.iter().enumerate() {
                if c.counter == Counter::AnonymousRealm {
                    ev.decision.anonymous_realm_used = t.used.get(i).copied();
                }
                let Some(wait) = t.waits.get(i).copied().flatten() else {
                    continue;
                };
                if fail(&mut ev, c, refusal(&ask, c, wait)) {
                    break;
                }
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
            .detail(Detail::StoreError, e.kind())
            .retry_after(1);
            if let Some(c) = ask.counted.first() {
                fail(&mut ev, c, r);
            }
        }
    }
    *decision = ev.decision;
}

/// Records `r` for `c`'s rule; true when it refuses (not shadowed).
fn fail(ev: &mut Eval<'_>, c: &Counted, r: Refusal) -> bool {
    let shadow = ev.global_shadow;
    ev.global_shadow = shadow && !c.always;
    let stop = ev.fail(&c.rule, r);
    ev.global_shadow = shadow;
    stop
}

fn refusal(ask: &QuotaAsk, c: &Counted, wait: Duration) -> Refusal {
    match &c.counter {
        Counter::Caller(caller) => caller_refusal(ask, caller, &c.rule, wait),
        Counter::Realm => realm_refusal(ask, &c.rule, wait),
        Counter::AnonymousAddress(ip) => {
            let msg = format!(
                "This address ({ip}) has registered {} clients anonymously in realm {} within {}s, the most allowed; try again in {}s, or register with an initial access token.",
                c.rule.value.creates,
                ask.realm,
                c.rule.value.window.as_secs(),
                seconds(wait).max(1)
            );
            anonymous_refusal(&c.rule, msg, wait, "address")
        }
        Counter::AnonymousRealm => {
            let msg = format!(
                "Realm {} has taken its {} anonymous registrations per {}s; try again in {}s, or register with an initial access token.",
                ask.realm,
                c.rule.value.creates,
                c.rule.value.window.as_secs(),
                seconds(wait).max(1)
            );
            anonymous_refusal(&c.rule, msg, wait, "realm")
        }
    }
}

fn anonymous_refusal(rule: &Rule<QuotaPolicy>, msg: String, wait: Duration, scope: &str) -> Refusal {
    Refusal::new(Reason::QuotaExceeded, msg)
        .detail(Detail::Quota, scope)
        .detail(Detail::Creates, rule.value.creates)
        .detail(Detail::WindowSeconds, rule.value.window.as_secs())
        .retry_after(seconds(wait).max(1))
}

fn seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

fn caller_refusal(ask: &QuotaAsk, caller: &str, rule: &Rule<QuotaPolicy>, wait: Duration) -> Refusal {
    // The caller key may hold an unverified `jti`: show a bounded prefix only.
    let caller: String = caller.chars().take(80).collect();
    let secs = seconds(wait).max(1);
    let msg = format!(
        "Caller {caller} has used its quota of {} creates per {}s in realm {}; try again in {secs}s.",
        rule.value.creates,
        rule.value.window.as_secs(),
        ask.realm
    );
    Refusal::new(Reason::QuotaExceeded, msg)
        .detail(Detail::Caller, caller)
        .detail(Detail::Creates, rule.value.creates)
        .detail(Detail::WindowSeconds, rule.value.window.as_secs())
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
        .detail(Detail::RealmCreates, rule.value.creates)
        .detail(Detail::WindowSeconds, rule.value.window.as_secs())
        .retry_after(secs)
}
