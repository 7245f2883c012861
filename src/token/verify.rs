//! Stage 3, verification: bearer tokens are checked against the realm's JWKS with `jsonwebtoken`
//! (aws-lc-rs backend); Keycloak's HMAC tokens pass on after triage.
//!
//! Algorithms come from configuration only; `none` and HS* are refused for bearer tokens
//! whatever the header says. Claims are checked before the key is looked up, so a foreign or
//! expired token never causes a JWKS fetch.

use std::str::FromStr;
use std::sync::Arc;

use http::HeaderMap;
use jsonwebtoken::Algorithm;

use super::cache::{Digest, Entry, TokenCache, digest};
use super::checks::{Lifetime, TimeFault, check_issuer, check_times};
use super::claims::{Claims, Decoded, TokenKind};
use super::jwks::{Jwks, Key};
use super::triage::{Presented, Triaged, extract, rfc3339, triage};
use crate::config::{RealmSettings, Settings};
use crate::error::{Detail, Reason, Refusal};
use crate::metrics::Metrics;
use crate::route::RegRoute;

/// Who is asking, as far as the gateway can tell.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The credential kind.
    pub kind: TokenKind,
    /// Claims: verified for bearer tokens, unverified for HMAC tokens, empty for anonymous.
    pub claims: Arc<Claims>,
    /// Key id of the token, if any.
    pub kid: Option<String>,
    /// Whether the verified-token cache answered.
    pub cached: bool,
}

impl Identity {
    /// No credential.
    pub fn anonymous() -> Self {
        Identity {
            kind: TokenKind::Anonymous,
            claims: Arc::default(),
            kid: None,
            cached: false,
        }
    }
}

/// A bearer token and its cache key.
struct Bearer<'a> {
    text: &'a str,
    key: Digest,
}

/// Verifies bearer tokens and triages the rest.
#[derive(Debug)]
pub struct Verifier {
    settings: Arc<Settings>,
    /// Key sets per realm.
    pub jwks: Arc<Jwks>,
    /// Verified tokens.
    pub cache: Arc<TokenCache>,
    metrics: Metrics,
}

use super::now;

/// Checks the configured algorithm list; `none` and HS* get their own explanation.
pub fn check_alg(alg: &str, allowed: &[Algorithm]) -> Result<Algorithm, Refusal> {
    let refuse = |why: String| {
        Refusal::new(Reason::AlgorithmNotAllowed, why)
            .detail(Detail::Alg, alg)
            .detail(
                Detail::Allowed,
                allowed.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>(),
            )
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(refuse(
            "Algorithm none is never accepted: an unsigned token proves nothing.".into(),
        ));
    }
    if alg.starts_with("HS") {
        return Err(refuse(format!(
            "Algorithm {alg} is never accepted for bearer access tokens: Keycloak signs them with its published RSA/EC keys, and an HMAC token checked against a public key is the classic algorithm-confusion forgery."
        )));
    }
    match Algorithm::from_str(alg) {
        Ok(a) if allowed.contains(&a) => Ok(a),
        _ => Err(refuse(format!(
            "Algorithm {alg} is not allowed by the gateway's configuration (jwt.algorithms)."
        ))),
    }
}

/// The checks of a bearer token made before any key is touched, in the verifier's order: the
/// algorithm (`check_alg`), then the claims (`check_claims`). Returns the algorithm the
/// signature is to be verified with. `explain` runs the same steps.
pub fn check_unkeyed(
    d: &Decoded,
    realm: &str,
    issuers: &[String],
    settings: &Settings,
    leeway: i64,
    now: i64,
) -> Result<Algorithm, Refusal> {
    let alg = check_alg(&d.header.alg, &settings.jwt.algorithms)?;
    check_claims(&d.claims, realm, issuers, &settings.realm(realm), leeway, now)?;
    Ok(alg)
}

/// The key id a bearer token's header names: `kid_missing` without one.
pub fn check_kid(d: &Decoded) -> Result<&str, Refusal> {
    d.header.kid.as_deref().ok_or_else(|| {
        Refusal::new(
            Reason::KidMissing,
            "The bearer token's header has no kid, so no realm key can be chosen for it.",
        )
    })
}

/// The time and audience checks of a bearer token, made before any key is touched.
pub fn check_claims(
    c: &Claims,
    realm: &str,
    issuers: &[String],
    rs: &RealmSettings,
    leeway: i64,
    now: i64,
) -> Result<(), Refusal> {
    check_issuer(c.iss.as_deref(), realm, issuers)?;
    check_times(c, Lifetime::Bearer, now, leeway).map_err(|f| lifetime_refusal(f, leeway, now))?;
    if !rs.audiences.is_empty()
        && !rs
            .audiences
            .iter()
            .any(|a| c.aud.as_ref().is_some_and(|aud| aud.contains(a)))
    {
        return Err(Refusal::new(
            Reason::AudienceMismatch,
            format!("The bearer token's aud does not include any of {:?}.", rs.audiences),
        )
        .detail(Detail::Aud, serde_json::to_value(&c.aud).unwrap_or_default())
        .detail(Detail::Azp, c.azp.clone().unwrap_or_default())
        .detail(Detail::ExpectedAudiences, rs.audiences.clone()));
    }
    if !rs.azp.is_empty() && !c.azp.as_ref().is_some_and(|azp| rs.azp.contains(azp)) {
        return Err(Refusal::new(
            Reason::AzpMismatch,
            format!(
                "The bearer token was issued to client {:?}, not one of {:?}.",
                c.azp.as_deref().unwrap_or("(none)"),
                rs.azp
            ),
        )
        .detail(Detail::Azp, c.azp.clone().unwrap_or_default())
        .detail(Detail::ExpectedAzp, rs.azp.clone()));
    }
    Ok(())
}

/// The refusal of a bearer token whose lifetime claims do not hold at `now`.
fn lifetime_refusal(fault: TimeFault, leeway: i64, now: i64) -> Refusal {
    match fault {
        TimeFault::ExpMissing => Refusal::new(
            Reason::ExpMissing,
            "The bearer token has no exp claim; the gateway requires one.",
        ),
        TimeFault::Expired(exp) => Refusal::new(
            Reason::TokenExpired,
            format!(
                "The bearer token expired at {} ({}s ago).",
                rfc3339(exp),
                now.saturating_sub(exp)
            ),
        )
        .detail(Detail::Exp, exp)
        .detail(Detail::LeewaySeconds, leeway),
        TimeFault::NotYetValid(nbf) => Refusal::new(
            Reason::TokenNotYetValid,
            format!("The bearer token is not valid before {}.", rfc3339(nbf)),
        )
        .detail(Detail::Nbf, nbf),
        TimeFault::IssuedInFuture(iat) => Refusal::new(
            Reason::TokenIssuedInFuture,
            format!(
                "The bearer token says it was issued at {}, in the future: check the clocks.",
                rfc3339(iat)
            ),
        )
        .detail(Detail::Iat, iat),
    }
}

/// Checks that `key` may verify `alg`, then the signature over `header.payload`.
pub fn check_signature(token: &str, d: &Decoded, key: &Key, alg: Algorithm) -> Result<(), Refusal> {
    let unusable = |why: &str| {
        Refusal::new(
            Reason::KeyUnusable,
            format!("Key {} cannot verify this token: {why}.", key.kid),
        )
        .detail(Detail::Kid, key.kid.clone())
        .detail(Detail::Alg, format!("{alg:?}"))
    };
    if alg.family() != key.family {
        return Err(unusable(&format!(
            "it is a {:?} key and the token says {alg:?}",
            key.family
        )));
    }
    if key.alg.is_some_and(|k| k != alg) {
        return Err(unusable(&format!("the key is for {:?} only", key.alg)));
    }
    let (message, rest) = token.split_at(d.signed_len);
    let signature = rest.strip_prefix('.').unwrap_or("");
    let parsed = key
        .rsa
        .as_ref()
        .and_then(|k| k.verify(alg, message.as_bytes(), signature));
    let verified = match parsed {
        Some(ok) => Ok(ok),
        None => jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key.decoding, alg),
    };
    match verified {
        Ok(true) => Ok(()),
        _ => Err(Refusal::new(
            Reason::SignatureInvalid,
            format!("The signature does not verify with realm key {}.", key.kid),
        )
        .detail(Detail::Kid, key.kid.clone())),
    }
}

// === impl Verifier ===

impl Verifier {
    /// A verifier over the given key sets and cache.
    pub fn new(settings: Arc<Settings>, jwks: Arc<Jwks>, cache: Arc<TokenCache>, metrics: Metrics) -> Self {
        Verifier {
            settings,
            jwks,
            cache,
            metrics,
        }
    }

    /// Reads, triages and (for bearer tokens) verifies the request's credential. `issuers` are
    /// the issuers the realm accepts for this request (see `pipeline::upstream::accepted_issuers`).
    pub async fn authenticate(
        &self,
        route: &RegRoute,
        headers: &HeaderMap,
        issuers: &[String],
    ) -> Result<Identity, Refusal> {
        let presented = extract(headers)?;
        let leeway = i64::try_from(self.settings.jwt.leeway.as_secs()).unwrap_or(0);
        let now = now();
        // The cache key, computed once: looked up here, stored under after a verification.
        let key = match presented {
            Presented::Bearer(token) => Some(digest(token)),
            _ => None,
        };
        if let Some(d) = &key
            && let Some(id) = self.cached(route, d, now, leeway)
            && id.claims.iss.as_deref().is_some_and(|i| issuers.iter().any(|a| a == i))
        {
            return Ok(id);
        }
        let issuer = issuers;
        match triage(presented, route, issuer, leeway, now)? {
            Triaged::Anonymous | Triaged::Basic => Ok(Identity::anonymous()),
            Triaged::Hmac(kind, d) => Ok(Identity {
                kind,
                kid: d.header.kid,
                claims: Arc::new(d.claims),
                cached: false,
            }),
            Triaged::Bearer(d) => {
                let (Presented::Bearer(token), Some(key)) = (presented, key) else {
                    return Err(Refusal::new(Reason::Internal, "bearer without token"));
                };
                let token = Bearer { text: token, key };
                // Boxed: the verification future is large, and the cached path above should not carry it.
                let result = Box::pin(self.verify(route, token, d, issuer, leeway, now)).await;
                match &result {
                    Ok(_) => self.metrics.verified(false).inc(),
                    Err(r) => self
                        .metrics
                        .verifications
                        .with_label_values(&["invalid", r.reason.code()])
                        .inc(),
                }
                result
            }
        }
    }

    fn cached(&self, route: &RegRoute, d: &Digest, now: i64, leeway: i64) -> Option<Identity> {
        let e = self.cache.get(d, now, leeway)?;
        let keys = self.jwks.realm(&route.realm).ok()?;
        if !keys.is_fresh() {
            return None; // past max_staleness: the full path answers jwks_unavailable
        }
        if *e.realm != *route.realm || !keys.holds(&e.kid) {
            if !keys.holds(&e.kid) {
                self.cache.remove(d);
            }
            return None;
        }
        self.metrics.verified(true).inc();
        Some(Identity {
            kind: TokenKind::Bearer,
            claims: e.claims,
            kid: Some(e.kid.to_string()),
            cached: true,
        })
    }

    async fn verify(
        &self,
        route: &RegRoute,
        token: Bearer<'_>,
        d: Decoded,
        issuer: &[String],
        leeway: i64,
        now: i64,
    ) -> Result<Identity, Refusal> {
        let alg = check_unkeyed(&d, &route.realm, issuer, &self.settings, leeway, now)?;
        let kid = check_kid(&d)?.to_owned();
        let keys = self.jwks.realm(&route.realm)?;
        let key = keys.key(&kid).await?;
        check_signature(token.text, &d, &key, alg)?;
        keys.mark_verified();
        let claims = Arc::new(d.claims);
        if let Some(exp) = claims.exp {
            let entry = Entry {
                realm: route.realm.as_str().into(),
                kid: kid.as_str().into(),
                exp,
                claims: claims.clone(),
            };
            self.cache.insert(token.key, entry, now);
        }
        Ok(Identity {
            kind: TokenKind::Bearer,
            claims,
            kid: Some(kid),
            cached: false,
        })
    }
}

#[cfg(test)]
mod tests;
