//! Compiling `[realms.NAME.anonymous]` (safe defaults for public clients, always enforced) and
//! `[*.cors]`.

use std::collections::BTreeSet;
use std::time::Duration;

use regex::Regex;

use super::sections::{AUTH_METHODS, GRANTS, RESPONSES};
use super::{Ctx, Layer, first};
use crate::policy::anonymous::{AnonymousPolicy, CorsPolicy};
use crate::policy::model::{AnonymousRaw, List, QuotaRaw};
use crate::policy::snapshot::{MetadataPolicy, QuotaPolicy, RedirectPolicy, Rule};

/// Grant types allowed by default: a public client's browser flow.
const DEFAULT_GRANTS: &[&str] = &["authorization_code", "refresh_token"];
/// Members Keycloak itself would call or load, or that make no sense for a public client.
pub(super) const DEFAULT_FORBIDDEN: &[&str] = &[
    "jwks_uri",
    "jwks",
    "sector_identifier_uri",
    "request_uris",
    "backchannel_logout_uri",
    "backchannel_client_notification_endpoint",
    "frontchannel_logout_uri",
    "client_secret",
    "tls_client_auth_subject_dn",
];
/// Letters, digits, spaces and a little punctuation: no markup, quotes or control characters.
/// (Not `{1,100}`: a bounded repetition of Unicode classes compiles past the size limit.)
const DEFAULT_NAME_PATTERN: &str = r"[\p{L}\p{N} ._:()@+/-]+";

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

// === impl Ctx ===

impl Ctx {
    pub(super) fn anonymous(&mut self, name: &str, layers: &[&Layer<'_>]) -> Option<AnonymousPolicy> {
        for l in layers.iter().filter(|l| l.origin == "default") {
            if let Some(a) = &l.raw.anonymous {
                self.err(l.src, a.span(), "default.anonymous", "anonymous registration is set per realm, under [realms.NAME.anonymous], beside the realm's registrar credential in the gateway config".into());
            }
        }
        let l = layers.iter().find(|l| l.origin != "default")?;
        let spanned = l.raw.anonymous.as_ref()?;
        let a = spanned.get_ref();
        if a.enabled == Some(false) {
            return None;
        }
        let origin = format!("{}.anonymous", l.origin);
        let rule = |key: &str, v| Rule::new(v, format!("{origin}.{key}"));
        let builtin = |key: &str, v| Rule::new(v, format!("built-in.anonymous.{key}"));
        let list = |ctx: &mut Ctx, v: &Option<List>, key: &str, known: &[&str], default: &[&str]| match v {
            Some(list) => rule(key, ctx.known(l, list, &format!("anonymous.{key}"), known)),
            None => builtin(key, set(default)),
        };
        let grant_types = list(self, &a.grant_types, "grant_types", GRANTS, DEFAULT_GRANTS);
        let response_types = list(self, &a.response_types, "response_types", RESPONSES, &["code", "none"]);
        let auth_methods = list(
            self,
            &a.token_endpoint_auth_methods,
            "token_endpoint_auth_methods",
            AUTH_METHODS,
            &["none"],
        );
        if let Some(f) = a.forbidden_fields.as_ref() {
            for bad in f.get_ref().iter().filter(|x| !crate::policy::metadata::known_field(x)) {
                self.err(
                    l.src,
                    f.span(),
                    "anonymous.forbidden_fields",
                    format!("`{bad}` is not a member of an RFC 7591 body"),
                );
            }
        }
        let forbidden = match &a.forbidden_fields {
            Some(f) => rule("forbidden_fields", f.get_ref().iter().cloned().collect()),
            None => builtin("forbidden_fields", set(DEFAULT_FORBIDDEN)),
        };
        let scopes = a
            .scopes
            .as_ref()
            .map(|s| rule("scopes", s.get_ref().iter().cloned().collect()));
        let name_pattern = self.anon_pattern(l, a, &origin);
        let hosts: Vec<String> = a
            .redirect_hosts
            .as_ref()
            .map(|h| h.get_ref().iter().map(|x| x.to_ascii_lowercase()).collect())
            .unwrap_or_default();
        if let Some(h) = &a.redirect_hosts {
            for p in h.get_ref().iter().filter(|p| !super::sections::host_pattern(p)) {
                self.err(
                    l.src,
                    h.span(),
                    "anonymous.redirect_hosts",
                    format!("`{p}` is not a host or `*.domain` pattern"),
                );
            }
        }
        let loopback = a.loopback.unwrap_or(true);
        if !loopback && hosts.is_empty() {
            self.err(l.src, spanned.span(), &origin, "with loopback = false, redirect_hosts must name at least one https host, or no redirect URI could ever be registered".into());
        }
        let max = a.max_redirect_uris.as_ref().map(|m| *m.get_ref()).unwrap_or(5);
        let redirect = RedirectPolicy {
            schemes: Some(set(&["https"])),
            hosts: Some(hosts.clone()),
            loopback,
            wildcards: false,
            max: Some(max),
        };
        let redirect_origin = if a.redirect_hosts.is_some() || a.loopback.is_some() {
            format!("{origin}.redirect_hosts")
        } else {
            "built-in.anonymous.redirect_hosts".to_owned()
        };
        let metadata = MetadataPolicy {
            redirect: Rule::new(redirect, redirect_origin),
            // Forbidden outright below (forbidden_fields); the realm's own rule still applies.
            server_urls: Rule::new(
                crate::policy::snapshot::ServerUrlPolicy::default(),
                "built-in.anonymous.server_urls",
            ),
            grant_types: Some(grant_types),
            response_types: Some(response_types),
            client_types: None,
            auth_methods: Some(auth_methods),
            scopes,
            forbidden_fields: Some(forbidden),
            client_id_pattern: None,
            client_name_pattern: name_pattern,
        };
        let quota = self.anon_quota(l, a.quota.as_ref(), &format!("{origin}.quota"), "quota", 10);
        let realm_quota = self.anon_quota(
            l,
            a.realm_quota.as_ref(),
            &format!("{origin}.realm_quota"),
            "realm_quota",
            100,
        );
        let _ = name;
        Some(AnonymousPolicy {
            origin,
            metadata,
            quota,
            realm_quota,
            drop_unknown: a.drop_unknown_members.unwrap_or(true),
            scope_member: a.scope_member.unwrap_or_default(),
            registration_access: a.registration_access.unwrap_or(true),
            redirect_hosts: hosts,
            loopback,
        })
    }

    fn anon_pattern(&mut self, l: &Layer<'_>, a: &AnonymousRaw, origin: &str) -> Option<Rule<Regex>> {
        let (text, id) = match &a.client_name_pattern {
            Some(p) => (p.get_ref().as_str(), format!("{origin}.client_name_pattern")),
            None => (
                DEFAULT_NAME_PATTERN,
                "built-in.anonymous.client_name_pattern".to_owned(),
            ),
        };
        match regex::RegexBuilder::new(&format!("^(?:{text})$"))
            .size_limit(1 << 20)
            .build()
        {
            Ok(re) => Some(Rule::new(re, id)),
            Err(e) => {
                let span = a.client_name_pattern.as_ref().map(|p| p.span()).unwrap_or(0..0);
                self.err(
                    l.src,
                    span,
                    "anonymous.client_name_pattern",
                    format!("not a valid regular expression: {e}"),
                );
                None
            }
        }
    }

    fn anon_quota(
        &mut self,
        l: &Layer<'_>,
        q: Option<&QuotaRaw>,
        id: &str,
        key: &str,
        creates: u32,
    ) -> Rule<QuotaPolicy> {
        let default = QuotaPolicy {
            creates,
            window: Duration::from_secs(3600),
        };
        let Some(q) = q else {
            return Rule::new(default, format!("built-in.anonymous.{key}"));
        };
        if q.mode.is_some() {
            self.err(
                l.src,
                0..0,
                &format!("anonymous.{key}.mode"),
                "anonymous rules are always enforced (the gateway lends them its own credential)".into(),
            );
        }
        if let Some(c) = q.creates.as_ref().filter(|c| *c.get_ref() == 0) {
            self.err(
                l.src,
                c.span(),
                &format!("anonymous.{key}.creates"),
                "must be at least 1 (to stop anonymous registration, set enabled = false)".into(),
            );
        }
        if let Some(w) = q.window.as_ref().filter(|w| w.get_ref().0.as_secs() == 0) {
            self.err(
                l.src,
                w.span(),
                &format!("anonymous.{key}.window"),
                "must be at least 1s".into(),
            );
        }
        let v = QuotaPolicy {
            creates: q.creates.as_ref().map(|c| *c.get_ref()).unwrap_or(default.creates),
            window: q.window.as_ref().map(|w| w.get_ref().0).unwrap_or(default.window),
        };
        Rule::new(v, id.to_owned())
    }

    pub(super) fn cors(&mut self, layers: &[&Layer<'_>]) -> Option<CorsPolicy> {
        let (list, l) = first(layers, |r| r.cors.as_ref().and_then(|c| c.origins.as_ref()))?;
        let mut origins = BTreeSet::new();
        for o in list.get_ref() {
            match normalise_origin(o) {
                Some(n) => {
                    origins.insert(n);
                }
                None => self.err(l.src, list.span(), "cors.origins", format!("`{o}` is not an origin (write scheme://host[:port], e.g. https://app.example.com, without a path; `*` is not accepted)")),
            }
        }
        let max_age = first(layers, |r| r.cors.as_ref().and_then(|c| c.max_age.as_ref()))
            .map(|(d, _)| d.get_ref().0)
            .unwrap_or(Duration::from_secs(600));
        Some(CorsPolicy {
            origins: Rule::new(origins, format!("{}.cors.origins", l.origin)),
            max_age,
        })
    }
}

/// `scheme://host[:port]` in lower case, or `None` when `o` is not an origin.
pub(super) fn normalise_origin(o: &str) -> Option<String> {
    let lower = o.to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://")?;
    let ok = matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', '*', ' '])
        && rest.parse::<http::uri::Authority>().is_ok();
    ok.then_some(lower)
}
