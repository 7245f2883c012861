//! Keycloak's client registration policies (Trusted Hosts, Allowed Client Scopes, Max Clients,
//! Allowed Protocol Mapper Types, Consent Required) against what the gateway lets through, and
//! whether Keycloak trusts the gateway's forwarded headers for anonymous registration.

use super::{Ctx, Finding, Severity, finding};
use crate::doctor::facts::{Component, Facts, Forwarded, Seen};
use crate::error::{Detail, Reason, Refusal};
use crate::token::TokenKind;

/// Runs the registration-policy checks.
pub(super) fn check(facts: &Facts, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let Some(all) = facts.registration_policies.known() else {
        return;
    };
    let sets = ctx.policy_sets();
    let anonymous = ctx.creates_with(TokenKind::Anonymous);
    let in_set = |set: &'static str| all.iter().filter(move |c| c.sub_type == set);
    if anonymous {
        trusted_hosts(
            facts,
            ctx,
            in_set("anonymous")
                .filter(|c| c.provider_id == "trusted-hosts")
                .collect(),
            out,
        );
    } else if !in_set("anonymous").any(|c| c.provider_id == "trusted-hosts") {
        out.push(finding(
            "anonymous.open_at_keycloak",
            Severity::Notice,
            "Trusted Hosts",
            format!("Realm {} has no Trusted Hosts policy for anonymous registration: anyone who reaches Keycloak directly (not through the gateway) can register clients without a token.", ctx.realm),
            "Add it back: Clients → Client registration → Anonymous access policies → Create policy → Trusted Hosts (leave the list empty to refuse every anonymous request), or make Keycloak reachable only through the gateway.",
        ));
    }
    for set in sets {
        for c in in_set(set) {
            match c.provider_id.as_str() {
                "allowed-client-templates" => scopes(facts, ctx, c, out),
                "max-clients" => max_clients(facts, c, ctx, out),
                "allowed-protocol-mappers" => mappers(c, ctx, out),
                "consent-required" => consent(c, ctx, out),
                _ => {}
            }
        }
    }
}

fn label(c: &Component) -> String {
    let set = if c.sub_type == "anonymous" {
        "Anonymous"
    } else {
        "Authenticated"
    };
    format!("{set} access policy '{}'", c.name)
}

fn trusted_hosts(facts: &Facts, ctx: &Ctx<'_>, th: Vec<&Component>, out: &mut Vec<Finding>) {
    let Some(c) = th.first() else {
        out.push(finding(
            "anonymous.no_trusted_hosts",
            Severity::Notice,
            "Trusted Hosts",
            format!("The gateway lets anonymous callers register in realm {}, and Keycloak has no Trusted Hosts policy: Keycloak accepts anonymous registrations from any address, so the gateway's policy is the only gate.", ctx.realm),
            "Keep Keycloak reachable only through the gateway, or add a Trusted Hosts policy (Clients → Client registration → Anonymous access policies).",
        ));
        return;
    };
    let hosts = c.list("trusted-hosts");
    let host_check = c.flag("host-sending-registration-request-must-match", true);
    let uri_check = c.flag("client-uris-must-match", true);
    if host_check && hosts.is_empty() {
        out.push(finding(
            "anonymous.trusted_hosts_refuse_all",
            Severity::Error,
            label(c),
            "The gateway lets anonymous callers register, but Keycloak's Trusted Hosts list is empty while 'Host Sending Client Registration Request Must Match' is on: Keycloak refuses every anonymous registration (403 \"Policy 'Trusted Hosts' rejected request to client-registration service. Details: Host not trusted.\").",
            ctx.hint_of(Reason::TrustedHostRejected),
        ));
    }
    if uri_check {
        let r = &ctx.policy.metadata.redirect.value;
        let mut untrusted: Vec<String> = match &r.hosts {
            None => vec!["any host (the gateway's policy sets no redirect_uris.hosts)".into()],
            Some(h) => h.iter().filter(|p| !trusted(hosts, p)).cloned().collect(),
        };
        if r.loopback && !hosts.iter().any(|h| matches!(h.as_str(), "localhost" | "127.0.0.1")) {
            untrusted.push("loopback (127.0.0.1 / localhost)".into());
        }
        if !untrusted.is_empty() {
            out.push(finding(
                "anonymous.redirect_hosts_untrusted",
                Severity::Warning,
                label(c),
                format!(
                    "'Client URIs Must Match' is on, and the gateway allows anonymous redirect URIs on {} which Trusted Hosts [{}] does not cover: Keycloak refuses those registrations (\"URI doesn't match any trusted host or trusted domain\").",
                    untrusted.join(", "),
                    hosts.join(", ")
                ),
                format!("{} Or narrow [realms.{}.metadata.redirect_uris] hosts in the gateway's policy to the trusted ones.", ctx.hint_of(Reason::TrustedUriRejected), ctx.realm),
            ));
        }
    }
    if host_check {
        forwarded(facts, ctx, c, out);
    }
}

/// Whether a gateway host pattern is covered by Trusted Hosts entries (exact, or a `*.domain`
/// entry covering it).
fn trusted(entries: &[String], pattern: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    entries.iter().any(|e| {
        let e = e.to_ascii_lowercase();
        if e == p {
            return true;
        }
        match e.strip_prefix("*.") {
            Some(domain) => {
                let host = p.strip_prefix("*.").unwrap_or(&p);
                host == domain || host.ends_with(&format!(".{domain}"))
            }
            None => false,
        }
    })
}

fn forwarded(facts: &Facts, ctx: &Ctx<'_>, c: &Component, out: &mut Vec<Finding>) {
    match &facts.forwarded {
        Seen::Known(Forwarded::XForwarded | Forwarded::Forwarded) => {}
        Seen::Known(Forwarded::Ignored) => out.push(finding(
            "anonymous.forwarded_headers_ignored",
            Severity::Warning,
            label(c),
            format!("Keycloak at {} ignored X-Forwarded-Host and Forwarded sent from the address doctor runs on, so it does not read the X-Forwarded-For the gateway sets either (if the gateway runs there too): Trusted Hosts sees the gateway's address for every anonymous caller, and refuses them all, or admits them all if that address is trusted.", ctx.settings.upstream),
            ctx.hint_of(Reason::TrustedHostRejected),
        )),
        Seen::Known(Forwarded::Pinned) | Seen::Forbidden(_) | Seen::Unknown(_) => out.push(finding(
            "anonymous.forwarded_headers_unknown",
            Severity::Notice,
            label(c),
            "Whether Keycloak reads the gateway's X-Forwarded-For cannot be seen: the admin API does not show the proxy-headers setting, and the issuer is pinned (KC_HOSTNAME or the realm's Frontend URL), so the forwarded-header probe cannot tell.".to_owned(),
            "Check that Keycloak runs with --proxy-headers xforwarded (KC_PROXY_HEADERS) and --proxy-trusted-addresses <gateway address>, then register anonymously once and compare the address in the CLIENT_REGISTER event (Realm settings → Events) with the caller's.",
        )),
    }
}

fn scopes(facts: &Facts, ctx: &Ctx<'_>, c: &Component, out: &mut Vec<Finding>) {
    let mut allowed: Vec<String> = c.list("allowed-client-scopes").to_vec();
    if c.flag("allow-default-scopes", true) {
        for s in [&facts.default_scopes, &facts.optional_scopes] {
            match s.known() {
                Some(l) => allowed.extend(l.iter().cloned()),
                None => return,
            }
        }
    }
    let (refused, severity, what): (Vec<String>, _, _) = match &ctx.policy.metadata.scopes {
        Some(rule) => (
            rule.value.iter().filter(|s| !allowed.contains(s)).cloned().collect(),
            Severity::Error,
            format!("the gateway allows them ({})", rule.origin),
        ),
        // Any scope passes the gateway: name the one MCP clients always send.
        None => (
            ["openid"]
                .iter()
                .filter(|s| !allowed.iter().any(|a| a == *s))
                .map(|s| s.to_string())
                .collect(),
            Severity::Warning,
            "the gateway's policy lets any scope through (no metadata.scopes), and MCP clients request `openid`"
                .to_owned(),
        ),
    };
    if refused.is_empty() {
        return;
    }
    let r = Refusal::new(Reason::ClientScopeRejected, "").detail(Detail::RequestedScopes, refused.join(" "));
    out.push(finding(
        "keycloak_policy.client_scopes",
        severity,
        label(c),
        format!(
            "Keycloak refuses registrations requesting {} (\"Not permitted to use specified clientScope\"), but {what}. Allowed here: {}.",
            refused.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "),
            allowed.join(", ")
        ),
        format!(
            "{} To allow them, add them to the allowed-client-scopes of policy '{}', or leave them out of the gateway's metadata.scopes.",
            ctx.hint_as(&r, None, if c.sub_type == "anonymous" { TokenKind::Anonymous } else { TokenKind::InitialAccess }),
            c.name
        ),
    ));
}

fn max_clients(facts: &Facts, c: &Component, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let Some(&count) = facts.client_count.known() else {
        return;
    };
    let max: usize = c
        .list("max-clients")
        .first()
        .and_then(|m| m.parse().ok())
        .unwrap_or(200);
    let severity = if count >= max {
        Severity::Error
    } else if count * 10 >= max * 9 {
        Severity::Warning
    } else {
        return;
    };
    out.push(finding(
        "keycloak_policy.max_clients",
        severity,
        label(c),
        format!(
            "Realm {} has {count} clients (built-in ones count) and '{}' allows {max}: {}",
            ctx.realm,
            c.name,
            if count >= max {
                "Keycloak refuses every further registration (\"It's allowed to have max N clients per realm\")."
            } else {
                "registrations will soon be refused."
            }
        ),
        ctx.hint_of(Reason::MaxClientsReached),
    ));
}

fn mappers(c: &Component, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let forbidden = ctx
        .policy
        .metadata
        .forbidden_fields
        .as_ref()
        .is_some_and(|f| f.value.contains("protocol_mappers"));
    if forbidden {
        return;
    }
    out.push(finding(
        "keycloak_policy.protocol_mappers",
        Severity::Notice,
        label(c),
        format!("The gateway lets protocol mappers through (metadata.forbidden_fields lacks protocol_mappers), and Keycloak refuses any mapper type but {} (\"ProtocolMapper type not allowed\").", c.list("allowed-protocol-mapper-types").join(", ")),
        format!("{} Or refuse them at the gateway: forbidden_fields = [\"protocol_mappers\"] under [realms.{}.metadata].", ctx.hint_of(Reason::ProtocolMapperRejected), ctx.realm),
    ));
}

fn consent(c: &Component, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let (field, message) = if c.provider_id == "consent-required" {
        ("consentRequired", "Not permitted to update consentRequired to false")
    } else {
        ("full_scope_allowed", "Not permitted to enable fullScopeAllowed")
    };
    let forbidden = ctx
        .policy
        .metadata
        .forbidden_fields
        .as_ref()
        .is_some_and(|f| f.value.contains(field));
    let default_provider = ctx.policy.providers.value.contains("default");
    if forbidden || !default_provider {
        return;
    }
    out.push(finding(
        "keycloak_policy.consent_required",
        Severity::Notice,
        label(c),
        format!("Clients registered through this set get {} set by Keycloak, and an update on the `default` provider that changes it back is refused (\"{message}\"); the gateway lets such updates through.", if field == "consentRequired" { "consentRequired=true" } else { "fullScopeAllowed=false" }),
        format!("Refuse the field at the gateway (forbidden_fields = [\"{field}\"] under [realms.{}.metadata]) so callers get the reason before Keycloak, or remove '{}' under Clients → Client registration.", ctx.realm, c.name),
    ));
}

#[cfg(test)]
mod tests {
    use super::trusted;

    #[test]
    fn trusted_host_entries_cover_patterns() {
        let e = vec!["*.example.com".to_owned(), "app.test".to_owned()];
        assert!(trusted(&e, "*.example.com"));
        assert!(trusted(&e, "a.example.com"));
        assert!(trusted(&e, "example.com"));
        assert!(trusted(&e, "APP.test"));
        assert!(!trusted(&e, "*.test"));
        assert!(!trusted(&e, "badexample.com"));
    }
}
