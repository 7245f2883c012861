//! Stage 2, token triage: read the `Authorization` header, decode the JWT without verifying it,
//! and tell the kinds apart by the `typ` claim.
//!
//! Bearer tokens go on to verification. Keycloak's initial and registration access tokens are
//! HMAC-signed with a key Keycloak never publishes, so they are only checked for shape, issuer,
//! expiry and fit to the operation, and then left to Keycloak. Refusals here are 401s.

use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::checks::{Lifetime, TimeFault, check_times};
pub use super::checks::{check_issuer, issuer_mismatch};
use super::claims::{Decoded, TokenKind, capitalise, decode};
use crate::error::{Detail, Reason, Refusal};
use crate::route::{Operation, RegRoute};

/// What the `Authorization` header holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    /// No header: anonymous.
    Nothing,
    /// `Basic` credentials (only the `install` provider reads them).
    Basic,
    /// `Bearer <token>`.
    Bearer(&'a str),
}

/// A triaged credential.
#[derive(Debug, Clone)]
pub enum Triaged {
    /// No credential.
    Anonymous,
    /// Basic credentials for the `install` provider; Keycloak checks them.
    Basic,
    /// A bearer access token, still to be verified.
    Bearer(Decoded),
    /// An initial or registration access token, shape-checked, forwarded for Keycloak to verify.
    Hmac(TokenKind, Decoded),
}

fn malformed(why: impl Into<String>) -> Refusal {
    Refusal::new(
        Reason::TokenMalformed,
        format!("The bearer token is malformed: {}.", why.into()),
    )
}

/// Whether `f` holds for every byte, in blocks without early exit so that the compiler can
/// test a block at a time (a token is a kilobyte or more, read on every request).
fn all_bytes(bytes: &[u8], f: impl Fn(u8) -> bool) -> bool {
    bytes.chunks(64).all(|c| c.iter().fold(true, |ok, &b| ok & f(b)))
}

/// `bytes` as text when every byte is visible ASCII or a tab (what `HeaderValue::to_str` accepts).
fn visible_ascii(bytes: &[u8]) -> Option<&str> {
    if !all_bytes(bytes, |b| (b' '..0x7f).contains(&b) || b == b'\t') {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

/// Reads the one `Authorization` header.
pub fn extract(headers: &HeaderMap) -> Result<Presented<'_>, Refusal> {
    let mut all = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = all.next() else {
        return Ok(Presented::Nothing);
    };
    if all.next().is_some() {
        return Err(malformed("the request has more than one Authorization header"));
    }
    let value =
        visible_ascii(value.as_bytes()).ok_or_else(|| malformed("the Authorization header is not visible ASCII"))?;
    let cut = value.find(|c: char| c.is_ascii_whitespace()).unwrap_or(value.len());
    let (scheme, rest) = value.split_at(cut);
    if scheme.eq_ignore_ascii_case("bearer") {
        if rest.starts_with(|c: char| c != ' ') {
            return Err(malformed("the scheme and the token must be separated by one space"));
        }
        let rest = rest.get(1..).unwrap_or("");
        if rest.is_empty() {
            return Err(malformed("`Authorization: Bearer` has no token after it"));
        }
        // Visible ASCII already: the only whitespace left is space and tab, both at or below 0x20.
        if !all_bytes(rest.as_bytes(), |b| b > b' ') {
            return Err(malformed(
                "the token contains whitespace (write exactly `Bearer <token>`, one space)",
            ));
        }
        return Ok(Presented::Bearer(rest));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        return Ok(Presented::Basic);
    }
    // A value sent without a scheme would be the token itself: never echo more than a prefix.
    let shown: String = match scheme.char_indices().nth(16) {
        Some((i, _)) => format!("{}…", &scheme[..i]),
        None => scheme.to_owned(),
    };
    Err(Refusal::new(
        Reason::AuthSchemeUnsupported,
        format!(
            "The Authorization scheme `{shown}` is not supported on the registration endpoint; send `Bearer <token>`."
        ),
    )
    .detail(Detail::Scheme, shown))
}

/// Decodes a presented credential and sorts it by kind. `issuers` are the issuers the realm
/// accepts for this request (the first is the configured one).
pub fn triage(
    presented: Presented<'_>,
    route: &RegRoute,
    issuers: &[String],
    leeway: i64,
    now: i64,
) -> Result<Triaged, Refusal> {
    let token = match presented {
        Presented::Nothing => return Ok(Triaged::Anonymous),
        Presented::Basic if route.provider == "install" => return Ok(Triaged::Basic),
        Presented::Basic => {
            return Err(Refusal::new(
                Reason::AuthSchemeUnsupported,
                "Basic credentials are read only by the `install` provider; Keycloak would treat this request as anonymous. Send `Bearer <token>`.",
            )
            .detail(Detail::Scheme, "Basic"))
        }
        Presented::Bearer(t) => t,
    };
    let decoded = decode(token).map_err(|e| malformed(e.0))?;
    let kind = match decoded.claims.typ.as_deref() {
        Some("Bearer") => return Ok(Triaged::Bearer(decoded)),
        Some("InitialAccessToken") => TokenKind::InitialAccess,
        Some("RegistrationAccessToken") => TokenKind::RegistrationAccess,
        other => {
            let shown = other.map(|t| format!("`{t}`")).unwrap_or_else(|| "missing".to_owned());
            return Err(Refusal::new(
                Reason::TokenTypeUnsupported,
                format!("The token's typ claim is {shown}; the registration endpoint accepts only Bearer access tokens, initial access tokens and registration access tokens."),
            )
            .detail(Detail::Typ, other.unwrap_or_default()));
        }
    };
    check_hmac(kind, &decoded, route, issuers, leeway, now)?;
    Ok(Triaged::Hmac(kind, decoded))
}

/// The checks the gateway can make on a token it cannot verify.
fn check_hmac(
    kind: TokenKind,
    d: &Decoded,
    route: &RegRoute,
    issuers: &[String],
    leeway: i64,
    now: i64,
) -> Result<(), Refusal> {
    if !matches!(d.header.alg.as_str(), "HS256" | "HS384" | "HS512") {
        return Err(Refusal::new(
            Reason::HmacAlgorithmExpected,
            format!(
                "{} from Keycloak is HMAC-signed (HS256/HS384/HS512), but this one says alg `{}`.",
                capitalise(kind.phrase()),
                d.header.alg
            ),
        )
        .detail(Detail::Alg, d.header.alg.clone())
        .detail(Detail::TokenKind, kind.as_str()));
    }
    check_issuer(d.claims.iss.as_deref(), &route.realm, issuers)
        .map_err(|r| r.detail(Detail::TokenKind, kind.as_str()))?;
    if let Err(TimeFault::Expired(exp)) = check_times(&d.claims, Lifetime::Keycloak, now, leeway) {
        return Err(Refusal::new(
            Reason::TokenExpired,
            format!(
                "{} expired at {} (Unix time {exp}).",
                capitalise(kind.phrase()),
                rfc3339(exp)
            ),
        )
        .detail(Detail::Exp, exp)
        .detail(Detail::TokenKind, kind.as_str()));
    }
    let fits = match kind {
        TokenKind::InitialAccess => {
            matches!(route.operation, Operation::Create | Operation::Preflight)
        }
        _ => !matches!(route.operation, Operation::Create),
    };
    if !fits {
        let why = match kind {
            TokenKind::InitialAccess => {
                "an initial access token can only create clients; read, update and delete need the registration access token returned when the client was created"
            }
            _ => {
                "a registration access token cannot create clients (Keycloak would silently treat the request as anonymous); create with an initial access token or a bearer token"
            }
        };
        return Err(Refusal::new(
            Reason::TokenKindMismatch,
            format!("Wrong token for {}: {why}.", route.operation.as_str()),
        )
        .detail(Detail::TokenKind, kind.as_str())
        .detail(Detail::Operation, route.operation.as_str()));
    }
    Ok(())
}

/// Formats Unix seconds as RFC 3339 UTC (`2026-11-28T03:46:17Z`).
pub fn rfc3339(secs: i64) -> String {
    let secs = secs.clamp(-62_167_219_200, 253_402_300_799); // years 0000..=9999
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
