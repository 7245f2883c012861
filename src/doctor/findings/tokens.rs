//! Tokens and keys: the issuer seen through the public URL, initial access tokens, the realm's
//! signing algorithm against `[jwt] algorithms`, and the JWKS as the gateway fetches it.

use super::{Ctx, Finding, Severity, finding};
use crate::doctor::facts::{Facts, Seen};
use crate::error::{Detail, Reason, Refusal};
use crate::token::TokenKind;

/// Issuer through the gateway's public URL versus the one the gateway expects.
pub(super) fn issuer(facts: &Facts, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let expected = ctx.settings.issuer_for(ctx.realm);
    match &facts.issuer {
        Seen::Known(seen) if seen.issuer != expected => {
            let r = Refusal::new(Reason::IssuerMismatch, "")
                .detail(Detail::TokenIssuer, seen.issuer.clone())
                .detail(Detail::ExpectedIssuer, expected.clone());
            out.push(finding(
                "issuer.mismatch",
                Severity::Error,
                &expected,
                format!("Keycloak reports issuer `{}` {}, but the gateway expects `{expected}`: every bearer token minted that way is refused with issuer_mismatch, and Keycloak answers \"Failed decode token\" to tokens minted through another host.", seen.issuer, seen.via),
                ctx.hint(&r, None),
            ));
        }
        Seen::Known(_) => {}
        Seen::Unknown(why) | Seen::Forbidden(why) => out.push(finding(
            "issuer.unchecked",
            Severity::Warning,
            &expected,
            format!(
                "The issuer could not be read through the public URL {} nor at the upstream: {why}.",
                ctx.settings.public_url
            ),
            format!(
                "Check that Keycloak's discovery document answers at {}/realms/{}/.well-known/openid-configuration.",
                ctx.settings.public_url, ctx.realm
            ),
        )),
    }
}

/// Initial access tokens: expired, expiring within `warn_within`, used up or nearly.
pub(super) fn initial_access(facts: &Facts, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    if !ctx.creates_with(TokenKind::InitialAccess) {
        return;
    }
    let Some(iats) = facts.iats.known() else {
        return;
    };
    let mut usable = 0;
    for t in iats {
        let exp = (t.expiration > 0).then(|| t.timestamp.saturating_add(t.expiration));
        let subject = format!("initial access token {}", t.id);
        let new_iat = ctx.hint_of(Reason::InitialTokenExpired);
        match exp {
            Some(e) if e <= facts.now => {
                out.push(finding(
                    "initial_access.expired",
                    Severity::Warning,
                    &subject,
                    format!("It expired {}s ago ({} uses left); Keycloak answers \"Failed decode token\" to it and deletes it at its next clean-up.", facts.now - e, t.remaining_count),
                    new_iat,
                ));
                continue;
            }
            Some(e) if e - facts.now < ctx.warn_within => out.push(finding(
                "initial_access.expiring",
                Severity::Warning,
                &subject,
                format!("It expires in {}s.", e - facts.now),
                new_iat.clone(),
            )),
            _ => {}
        }
        if t.remaining_count <= 0 || (t.count > 1 && t.remaining_count * 10 <= t.count) {
            out.push(finding(
                "initial_access.used_up",
                Severity::Warning,
                &subject,
                format!(
                    "{} of its {} uses are left; then Keycloak answers \"No remaining count on initial access token\".",
                    t.remaining_count.max(0),
                    t.count
                ),
                ctx.hint_of(Reason::InitialTokenExhausted),
            ));
        }
        if t.remaining_count > 0 {
            usable += 1;
        }
    }
    let others = ctx.creates_with(TokenKind::Bearer) || ctx.creates_with(TokenKind::Anonymous);
    if usable == 0 && !others {
        out.push(finding(
            "initial_access.none_usable",
            Severity::Error,
            format!("realm {}", ctx.realm),
            "The gateway lets only initial access tokens create clients, and the realm has none that is unexpired with uses left.",
            ctx.hint_of(Reason::InitialTokenExpired),
        ));
    }
}

/// The algorithm Keycloak signs access tokens with (the registrars' override, else the realm's).
fn algorithms(facts: &Facts) -> Vec<(String, String)> {
    let realm = facts
        .realm_rep
        .default_signature_algorithm
        .clone()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "RS256".into());
    let mut out = vec![(realm, format!("realm {}", facts.realm))];
    for r in &facts.registrars {
        if let Some(c) = r.client.known()
            && let Some(a) = c
                .attributes
                .get("access.token.signed.response.alg")
                .and_then(|v| v.as_str())
            && !a.is_empty()
            && !out.iter().any(|(x, _)| x == a)
        {
            out.push((a.to_owned(), format!("client {}", r.name)));
        }
    }
    out
}

/// Signing algorithm versus `[jwt] algorithms`, an active key for it, and that key in the JWKS.
pub(super) fn signing(facts: &Facts, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let allowed: Vec<String> = ctx.settings.jwt.algorithms.iter().map(|a| format!("{a:?}")).collect();
    if let Err(e) = &facts.jwks {
        let r = Refusal::new(Reason::JwksUnavailable, "")
            .detail(Detail::JwksUri, facts.jwks_uri.clone())
            .detail(Detail::LastError, e.clone());
        out.push(finding(
            "jwks.unreachable",
            Severity::Error,
            &facts.jwks_uri,
            format!("The gateway cannot fetch realm {}'s keys from {}: {e}. It refuses every bearer token of the realm with jwks_unavailable.", ctx.realm, facts.jwks_uri),
            ctx.hint(&r, None),
        ));
    }
    for (alg, whose) in algorithms(facts) {
        if !allowed.contains(&alg) {
            let r = Refusal::new(Reason::AlgorithmNotAllowed, "").detail(Detail::Allowed, allowed.join(", "));
            out.push(finding(
                "signing.algorithm_not_allowed",
                Severity::Error,
                &whose,
                format!("Access tokens of {whose} are signed with {alg}, which the gateway's [jwt] algorithms ({}) does not accept: it refuses them with algorithm_not_allowed.", allowed.join(", ")),
                format!("{} Or add {alg} to [jwt] algorithms in the gateway's settings.", ctx.hint(&r, None)),
            ));
        }
        let Some(keys) = facts.keys.known() else {
            continue;
        };
        let Some(kid) = keys.active.get(&alg) else {
            out.push(finding(
                "signing.no_active_key",
                Severity::Notice,
                &whose,
                format!("Access tokens of {whose} are to be signed with {alg}, but the realm has no active {alg} key yet: Keycloak generates a fallback key when it first signs with {alg} (RSA and EC algorithms), which the gateway then fetches by its kid."),
                format!("Add a key provider for {alg} (Realm settings → Keys → Add provider: rsa-generated for RS*/PS*, ecdsa-generated for ES*, eddsa-generated for EdDSA), or pick an algorithm with an active key under Realm settings → Tokens → Default signature algorithm."),
            ));
            continue;
        };
        if let Ok(kids) = &facts.jwks
            && !kids.contains(kid)
        {
            let r = Refusal::new(Reason::KidUnknown, "")
                .detail(Detail::Kid, kid.clone())
                .detail(Detail::JwksUri, facts.jwks_uri.clone());
            out.push(finding(
                "jwks.signing_key_missing",
                Severity::Error,
                &whose,
                format!("The active {alg} key {kid} is not in the JWKS the gateway fetches from {} (it has {}): tokens signed with it are refused with kid_unknown.", facts.jwks_uri, kids.join(", ")),
                ctx.hint(&r, None),
            ));
        }
    }
}
