//! Client-metadata rules of the policy stage: redirect URIs, grant and response types, auth
//! methods, scopes, client type, forbidden fields, id and name patterns, and the update check
//! that the body repeats the path's client id.

use std::collections::BTreeSet;

use super::{Eval, join};
use crate::error::{Detail, Reason, Refusal};
use crate::policy::metadata::{ClientMetadata, Dialect, NORMALISED_FIELDS, UrlKind, UrlRef, wire_name};
use crate::policy::snapshot::{MetadataPolicy, RedirectPolicy, Rule, ServerUrlPolicy};
use crate::policy::{address, uri};
use crate::route::{Operation, RegRoute};

fn field_refusal(
    reason: Reason,
    dialect: Dialect,
    field: &str,
    value: impl Into<serde_json::Value>,
    msg: String,
) -> Refusal {
    Refusal::new(reason, msg)
        .detail(Detail::Field, wire_name(dialect, field))
        .detail(Detail::Value, value)
}

fn subset(
    ev: &mut Eval<'_>,
    rule: &Option<Rule<BTreeSet<String>>>,
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
            let r = field_refusal(reason, dialect, field, v.clone(), msg).detail(
                Detail::Allowed,
                allowed.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            );
            if ev.fail(rule, r) {
                return true;
            }
        }
    }
    false
}

pub(super) fn metadata(ev: &mut Eval<'_>, p: &MetadataPolicy, md: &ClientMetadata, d: Dialect) -> bool {
    redirects(ev, &p.redirect, md, d)
        || urls(ev, p, md, d)
        || value_lists(ev, p, md, d)
        || forbidden(ev, p, md, d)
        || patterns(ev, p, md, d)
}

/// Grant types, response types, auth method, scopes and client type against their allowed lists.
fn value_lists(ev: &mut Eval<'_>, p: &MetadataPolicy, md: &ClientMetadata, d: Dialect) -> bool {
    // Empty means "not set by this update" (Keycloak's partial updates): nothing to check.
    let auth: Vec<String> = [md.auth_method.clone()].into_iter().filter(|s| !s.is_empty()).collect();
    let client_type: Vec<String> = [md.client_type.to_owned()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
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
    false
}

/// Fields the policy forbids, set to a value that does something.
fn forbidden(ev: &mut Eval<'_>, p: &MetadataPolicy, md: &ClientMetadata, d: Dialect) -> bool {
    if let Some(rule) = &p.forbidden_fields {
        for f in rule.value.iter().filter(|f| {
            match NORMALISED_FIELDS.contains(&f.as_str()) || f.starts_with("attributes.") {
                true => md.present.contains_key(*f), // set to a value that does something
                false => md.raw_keys.contains_key(*f),
            }
        }) {
            let msg = format!(
                "Field `{}` may not be set or changed through client registration here.",
                wire_name(d, f)
            );
            if ev.fail(rule, field_refusal(Reason::FieldForbidden, d, f, true, msg)) {
                return true;
            }
        }
    }
    false
}

/// `client_id` and `client_name` against their required patterns.
fn patterns(ev: &mut Eval<'_>, p: &MetadataPolicy, md: &ClientMetadata, d: Dialect) -> bool {
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
                field_refusal(reason, d, field, v.clone(), msg).detail(Detail::Pattern, rule.value.as_str()),
            ) {
                return true;
            }
        }
    }
    false
}

fn redirects(ev: &mut Eval<'_>, rule: &Rule<RedirectPolicy>, md: &ClientMetadata, d: Dialect) -> bool {
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
            .detail(Detail::Max, max),
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
pub fn check_redirect(p: &RedirectPolicy, u: &str, d: Dialect) -> Option<Refusal> {
    check_browser(p, u, d, None)
}

/// The browser-facing URLs and origins go by the redirect rules; the URLs Keycloak calls by
/// the server URL rules.
fn urls(ev: &mut Eval<'_>, p: &MetadataPolicy, md: &ClientMetadata, d: Dialect) -> bool {
    for u in &md.urls {
        let stop = match u.kind {
            UrlKind::Browser | UrlKind::Origin => {
                check_browser(&p.redirect.value, &u.url, d, Some(u)).is_some_and(|r| ev.fail(&p.redirect, r))
            }
            UrlKind::Root => {
                check_browser(&p.redirect.value, &u.url, d, Some(u)).is_some_and(|r| ev.fail(&p.redirect, r))
                    || check_root(&p.server_urls.value, u).is_some_and(|r| ev.fail(&p.server_urls, r))
            }
            UrlKind::Server | UrlKind::Node => {
                check_server(&p.server_urls.value, u).is_some_and(|r| ev.fail(&p.server_urls, r))
            }
        };
        if stop {
            return true;
        }
    }
    false
}

/// A path-only reference (`/app`), which Keycloak resolves against the client's `rootUrl`.
fn relative(u: &str) -> bool {
    u.starts_with('/') && !u.starts_with("//") && !u.contains('\\')
}

fn check_browser(p: &RedirectPolicy, u: &str, d: Dialect, at: Option<&UrlRef>) -> Option<Refusal> {
    let (label, field) = match at {
        None => (format!("Redirect URI `{u}`"), wire_name(d, "redirect_uris").to_owned()),
        Some(r) => (format!("`{}` value `{u}`", r.field), r.field.clone()),
    };
    let bad = |reason, msg: String| {
        let reason = if at.is_some() {
            Reason::BrowserUrlNotAllowed
        } else {
            reason
        };
        Some(
            Refusal::new(reason, msg)
                .detail(Detail::Field, field.clone())
                .detail(Detail::Value, u),
        )
    };
    if let Some(r) = at {
        if r.kind == UrlKind::Browser && relative(u) {
            return None;
        }
        if r.kind == UrlKind::Origin && u == "*" {
            return match p.wildcards {
                true => None,
                false => bad(
                    Reason::BrowserUrlNotAllowed,
                    format!("{label} allows every origin; list exact origins."),
                ),
            };
        }
    }
    let parsed = match uri::parse(u) {
        Ok(p) => p,
        Err(why) => {
            return bad(Reason::RedirectUriMalformed, format!("{label} is malformed: {why}."));
        }
    };
    if parsed.fragment {
        return bad(
            Reason::RedirectUriFragment,
            format!("{label} has a fragment (#...), which OAuth forbids."),
        );
    }
    if uri::DANGEROUS_SCHEMES.contains(&parsed.scheme.as_str()) {
        return bad(
            Reason::RedirectUriNotAllowed,
            format!(
                "{label} uses scheme `{}`, which is never allowed (it runs code or reads local data in the browser).",
                parsed.scheme
            ),
        );
    }
    if parsed.wildcard && !p.wildcards {
        return bad(
            Reason::RedirectUriNotAllowed,
            format!("{label} contains a wildcard (*); list exact URIs."),
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
        let msg = format!(
            "{label} uses scheme `{}`; allowed: {}{loopback}.",
            parsed.scheme,
            allowed.join(", ")
        );
        return bad(Reason::RedirectUriNotAllowed, msg).map(|r| r.detail(Detail::AllowedSchemes, allowed));
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
        let msg = format!(
            "{label} has host `{}`, which is not allowed; allowed hosts: {}{loopback}.",
            parsed.host,
            hosts.join(", ")
        );
        return bad(Reason::RedirectUriNotAllowed, msg).map(|r| r.detail(Detail::AllowedHosts, hosts.clone()));
    }
    None
}

/// `rootUrl` may not point inside either, since Keycloak calls relative server URLs (a relative
/// `adminUrl` already on the client) under it: the private-address part of the server rule
/// applies to http(s) root URLs, not its schemes or hosts.
fn check_root(p: &ServerUrlPolicy, at: &UrlRef) -> Option<Refusal> {
    let parsed = uri::parse(&at.url).ok()?;
    let web = parsed.scheme == "http" || parsed.scheme == "https";
    if !web || p.private_addresses || address::internal(&parsed.host).is_none() {
        return None;
    }
    let lenient = ServerUrlPolicy {
        schemes: ["http", "https"].into_iter().map(str::to_owned).collect(),
        hosts: None,
        private_addresses: false,
    };
    check_server(&lenient, at)
}

/// The refusal for one URL Keycloak would call, if it breaks the server URL rules.
pub(super) fn check_server(p: &ServerUrlPolicy, at: &UrlRef) -> Option<Refusal> {
    let u = at.url.as_str();
    let target = match at.kind {
        UrlKind::Node => format!("http://{u}"),
        _ => u.to_owned(),
    };
    let label = match at.kind {
        UrlKind::Node => format!("`{}` host `{u}`", at.field),
        _ => format!("`{}` value `{u}`", at.field),
    };
    let bad = |msg: String| {
        Some(
            Refusal::new(Reason::ServerUrlNotAllowed, msg)
                .detail(Detail::Field, at.field.clone())
                .detail(Detail::Value, u),
        )
    };
    let parsed = match uri::parse(&target) {
        Ok(p) => p,
        Err(why) => return bad(format!("{label} is malformed: {why}; Keycloak calls this URL itself.")),
    };
    if !p.schemes.contains(&parsed.scheme) {
        let allowed: Vec<&String> = p.schemes.iter().collect();
        return bad(format!(
            "{label} uses scheme `{}`; URLs Keycloak calls may use {}.",
            parsed.scheme,
            join(&allowed)
        ));
    }
    if parsed.wildcard {
        return bad(format!(
            "{label} contains a wildcard (*); Keycloak calls exact URLs only."
        ));
    }
    if let Some(hosts) = p
        .hosts
        .as_ref()
        .filter(|h| !h.iter().any(|pat| uri::host_matches(pat, &parsed.host)))
    {
        let msg = format!(
            "{label} has host `{}`, which Keycloak may not be made to call; allowed hosts: {}.",
            parsed.host,
            hosts.join(", ")
        );
        return bad(msg).map(|r| r.detail(Detail::AllowedHosts, hosts.clone()));
    }
    if !p.private_addresses
        && let Some(why) = address::internal(&parsed.host)
    {
        let msg = format!(
            "{label} has host `{}`, {why}: Keycloak would call it from inside its own network (server-side request forgery).",
            parsed.host
        );
        return bad(msg).map(|r| r.detail(Detail::Host, parsed.host.clone()));
    }
    None
}

pub(super) fn client_id_fits(ev: &mut Eval<'_>, route: &RegRoute, md: &ClientMetadata, d: Dialect) -> bool {
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
        .detail(Detail::Field, wire)
        .detail(Detail::PathClientId, path_id);
    let shadow_before = ev.global_shadow;
    ev.global_shadow = false;
    let stop = ev.fail(&rule, r);
    ev.global_shadow = shadow_before;
    stop
}
