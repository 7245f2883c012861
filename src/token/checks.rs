//! The claim checks every reader of a token shares: one comparison of `iss` with the accepted
//! issuers and one of `exp`, `nbf` and `iat` with the clock. Triage (Keycloak's HMAC tokens),
//! verification (bearer tokens), `explain` and the rewrite of Keycloak's `Failed decode token`
//! all call these; each gets a typed fault and words its refusal for what it knows.

use super::claims::Claims;
use crate::error::{Detail, Reason, Refusal};

/// Why a token's `iss` is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerFault<'a> {
    /// No `iss` claim, or an empty one.
    Missing,
    /// An issuer that is none of the accepted ones.
    Other(&'a str),
}

/// Compares `iss` with the accepted issuers.
pub fn issuer<'a, S: AsRef<str>>(iss: Option<&'a str>, accepted: &[S]) -> Result<(), IssuerFault<'a>> {
    match iss {
        Some(iss) if accepted.iter().any(|a| a.as_ref() == iss) => Ok(()),
        Some(iss) if !iss.is_empty() => Err(IssuerFault::Other(iss)),
        _ => Err(IssuerFault::Missing),
    }
}

/// Checks `iss` against the issuers the realm accepts: `iss_missing` without one,
/// `issuer_mismatch` for another.
pub fn check_issuer(iss: Option<&str>, realm: &str, accepted: &[String]) -> Result<(), Refusal> {
    match issuer(iss, accepted) {
        Ok(()) => Ok(()),
        Err(IssuerFault::Other(iss)) => Err(issuer_mismatch(iss, realm, accepted)),
        Err(IssuerFault::Missing) => Err(Refusal::new(
            Reason::IssMissing,
            format!("The token has no iss claim, so it cannot be a token of realm {realm}."),
        )
        .detail(Detail::ExpectedIssuer, accepted.first().cloned().unwrap_or_default())
        .detail(Detail::AcceptedIssuers, accepted.to_vec())),
    }
}

/// The refusal for a token whose `iss` is none of the issuers the realm accepts.
pub fn issuer_mismatch(iss: &str, realm: &str, accepted: &[String]) -> Refusal {
    let shown = accepted
        .iter()
        .map(|a| format!("`{a}`"))
        .collect::<Vec<_>>()
        .join(" or ");
    Refusal::new(
        Reason::IssuerMismatch,
        format!("The token's issuer `{iss}` is not realm {realm}'s issuer at this gateway ({shown})."),
    )
    .detail(Detail::TokenIssuer, iss)
    .detail(Detail::ExpectedIssuer, accepted.first().cloned().unwrap_or_default())
    .detail(Detail::AcceptedIssuers, accepted.to_vec())
}

/// How a token's lifetime claims are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// The gateway's rule for bearer access tokens: `exp` is required (0 is long past), and
    /// `nbf` and `iat` may not lie in the future.
    Bearer,
    /// Keycloak's own rule (`JsonWebToken.isExpired`), which its initial and registration
    /// access tokens are made for: a missing or zero `exp` never expires; `nbf` and `iat` are
    /// not read.
    Keycloak,
}

/// Why a token's lifetime claims refuse it at the given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFault {
    /// No `exp` where the rule requires one.
    ExpMissing,
    /// `exp` (the value given) is past, beyond the leeway.
    Expired(i64),
    /// `nbf` (the value given) is ahead, beyond the leeway.
    NotYetValid(i64),
    /// `iat` (the value given) is ahead, beyond the leeway.
    IssuedInFuture(i64),
}

/// Whether `exp` has passed at `now`, allowing `leeway` seconds of clock skew.
pub fn expired(exp: i64, now: i64, leeway: i64) -> bool {
    exp.saturating_add(leeway) < now
}

/// Checks `exp`, and for bearer tokens `nbf` and `iat`, against `now` with `leeway` seconds
/// of clock skew allowed.
pub fn check_times(c: &Claims, rule: Lifetime, now: i64, leeway: i64) -> Result<(), TimeFault> {
    let ahead = |t: &i64| t.saturating_sub(leeway) > now;
    match rule {
        Lifetime::Keycloak => match c.exp {
            Some(exp) if exp != 0 && expired(exp, now, leeway) => Err(TimeFault::Expired(exp)),
            _ => Ok(()),
        },
        Lifetime::Bearer => {
            let exp = c.exp.ok_or(TimeFault::ExpMissing)?;
            if expired(exp, now, leeway) {
                return Err(TimeFault::Expired(exp));
            }
            if let Some(nbf) = c.nbf.filter(ahead) {
                return Err(TimeFault::NotYetValid(nbf));
            }
            if let Some(iat) = c.iat.filter(ahead) {
                return Err(TimeFault::IssuedInFuture(iat));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(v: serde_json::Value) -> Claims {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn issuer_faults() {
        let accepted = ["http://a/realms/demo", "http://b/realms/demo"];
        assert_eq!(issuer(Some("http://b/realms/demo"), &accepted), Ok(()));
        assert_eq!(issuer(None, &accepted), Err(IssuerFault::Missing));
        assert_eq!(issuer(Some(""), &accepted), Err(IssuerFault::Missing));
        assert_eq!(
            issuer(Some("http://c/realms/demo"), &accepted),
            Err(IssuerFault::Other("http://c/realms/demo"))
        );
    }

    #[test]
    fn bearer_lifetime() {
        let t = 1_000_000;
        let check = |v| check_times(&claims(v), Lifetime::Bearer, t, 30);
        assert_eq!(check(json!({"exp": t - 30, "nbf": t + 30, "iat": t + 30})), Ok(()));
        assert_eq!(check(json!({})), Err(TimeFault::ExpMissing));
        assert_eq!(check(json!({"exp": 0})), Err(TimeFault::Expired(0)));
        assert_eq!(check(json!({"exp": t - 31})), Err(TimeFault::Expired(t - 31)));
        assert_eq!(
            check(json!({"exp": t, "nbf": t + 31})),
            Err(TimeFault::NotYetValid(t + 31))
        );
        assert_eq!(
            check(json!({"exp": t, "iat": t + 31})),
            Err(TimeFault::IssuedInFuture(t + 31))
        );
    }

    #[test]
    fn keycloak_lifetime() {
        let t = 1_000_000;
        let check = |v| check_times(&claims(v), Lifetime::Keycloak, t, 0);
        assert_eq!(check(json!({})), Ok(()));
        assert_eq!(check(json!({"exp": 0})), Ok(()));
        assert_eq!(check(json!({"exp": t, "nbf": t + 99, "iat": t + 99})), Ok(()));
        assert_eq!(check(json!({"exp": t - 1})), Err(TimeFault::Expired(t - 1)));
    }
}
