//! Compiling the client-metadata and quota sections of a realm: value lists checked against
//! the known names, anchored patterns, redirect-URI rules and quotas.

use std::collections::BTreeSet;

use regex::Regex;
use toml::Spanned;

use super::{Ctx, Layer, first, md_list, rd, su};
use crate::config::ConfigError;
use crate::config::Dur;
use crate::policy::model::{List, MetadataRaw};
use crate::policy::snapshot::{MetadataPolicy, QuotaPolicy, RedirectPolicy, Rule, ServerUrlPolicy};

pub(super) const GRANTS: &[&str] = &[
    "authorization_code",
    "implicit",
    "password",
    "client_credentials",
    "refresh_token",
];
pub(super) const RESPONSES: &[&str] = &["code", "token", "id_token", "none"];
pub(super) const AUTH_METHODS: &[&str] = &[
    "none",
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "tls_client_auth",
    "self_signed_tls_client_auth",
];
const CLIENT_TYPES: &[&str] = &["public", "confidential", "bearer-only"];

// === impl Ctx ===

impl Ctx {
    pub(super) fn known(&mut self, l: &Layer<'_>, list: &List, key: &str, known: &[&str]) -> BTreeSet<String> {
        for v in list.get_ref() {
            let combo_ok = key.ends_with("response_types") && v.split(' ').all(|p| known.contains(&p));
            let urn = key.ends_with("grant_types") && v.starts_with("urn:");
            if !known.contains(&v.as_str()) && !combo_ok && !urn {
                self.err(
                    l.src,
                    list.span(),
                    key,
                    format!("`{v}` is not one of {}", known.join(", ")),
                );
            }
        }
        list.get_ref().iter().cloned().collect()
    }

    pub(super) fn metadata(&mut self, layers: &[&Layer<'_>]) -> MetadataPolicy {
        let shadow = self.mode_for(layers, |r| r.metadata.as_ref().and_then(|m| m.mode));
        let set = |ctx: &mut Ctx, get: fn(&MetadataRaw) -> Option<&List>, key: &str, known: Option<&[&str]>| {
            first(layers, |r| md_list(r, get)).map(|(list, l)| {
                let v = match known {
                    Some(k) => ctx.known(l, list, &format!("metadata.{key}"), k),
                    None => list.get_ref().iter().cloned().collect(),
                };
                Rule::new(v, format!("{}.metadata.{key}", l.origin)).shadow(shadow)
            })
        };
        let grant_types = set(self, |m| m.grant_types.as_ref(), "grant_types", Some(GRANTS));
        let response_types = set(self, |m| m.response_types.as_ref(), "response_types", Some(RESPONSES));
        let auth_methods = set(
            self,
            |m| m.token_endpoint_auth_methods.as_ref(),
            "token_endpoint_auth_methods",
            Some(AUTH_METHODS),
        );
        let scopes = set(self, |m| m.scopes.as_ref(), "scopes", None);
        let client_types = set(self, |m| m.client_types.as_ref(), "client_types", Some(CLIENT_TYPES));
        if let Some((list, l)) = first(layers, |r| md_list(r, |m| m.forbidden_fields.as_ref())) {
            for f in list
                .get_ref()
                .iter()
                .filter(|f| !crate::policy::metadata::known_field(f))
            {
                self.err(l.src, list.span(), "metadata.forbidden_fields", format!("`{f}` is not a field of either body dialect, a normalised name (e.g. protocol_mappers, service_accounts, jwks_uri, attributes) nor attributes.<name> of a client attribute the gateway reads"));
            }
        }
        let forbidden_fields = set(self, |m| m.forbidden_fields.as_ref(), "forbidden_fields", None);
        let client_id_pattern = self.pattern(layers, "client_id_pattern", |m| m.client_id_pattern.as_ref(), shadow);
        let client_name_pattern = self.pattern(
            layers,
            "client_name_pattern",
            |m| m.client_name_pattern.as_ref(),
            shadow,
        );
        MetadataPolicy {
            redirect: self.redirect(layers, shadow),
            server_urls: self.server_urls(layers, shadow),
            grant_types,
            response_types,
            auth_methods,
            scopes,
            client_types,
            forbidden_fields,
            client_id_pattern,
            client_name_pattern,
        }
    }

    fn pattern(
        &mut self,
        layers: &[&Layer<'_>],
        key: &str,
        get: fn(&MetadataRaw) -> Option<&Spanned<String>>,
        shadow: bool,
    ) -> Option<Rule<Regex>> {
        let (p, l) = first(layers, |r| r.metadata.as_ref().and_then(get))?;
        match regex::RegexBuilder::new(&format!("^(?:{})$", p.get_ref()))
            .size_limit(1 << 20)
            .build()
        {
            Ok(re) => Some(Rule::new(re, format!("{}.metadata.{key}", l.origin)).shadow(shadow)),
            Err(e) => {
                self.err(
                    l.src,
                    p.span(),
                    &format!("metadata.{key}"),
                    format!("not a valid regular expression: {e}"),
                );
                None
            }
        }
    }

    fn server_urls(&mut self, layers: &[&Layer<'_>], shadow: bool) -> Rule<ServerUrlPolicy> {
        let Some((_, l)) = first(layers, su) else {
            return Rule::new(ServerUrlPolicy::default(), "built-in.metadata.server_urls").shadow(shadow);
        };
        let origin = format!("{}.metadata.server_urls", l.origin);
        let mut policy = ServerUrlPolicy::default();
        if let Some((s, sl)) = first(layers, |r| su(r).and_then(|x| x.schemes.as_ref())) {
            if let Some(bad) = s
                .get_ref()
                .iter()
                .find(|x| !matches!(x.to_ascii_lowercase().as_str(), "http" | "https"))
            {
                let msg = format!("`{bad}` is not http or https; Keycloak calls only http(s) URLs");
                self.err(sl.src, s.span(), "metadata.server_urls.schemes", msg);
            }
            policy.schemes = s.get_ref().iter().map(|x| x.to_ascii_lowercase()).collect();
        }
        if let Some((h, hl)) = first(layers, |r| su(r).and_then(|x| x.hosts.as_ref())) {
            for p in h.get_ref().iter().filter(|p| !host_pattern(p)) {
                let msg = format!("`{p}` is not a host or `*.domain` pattern");
                self.err(hl.src, h.span(), "metadata.server_urls.hosts", msg);
            }
            policy.hosts = Some(h.get_ref().iter().map(|x| x.to_ascii_lowercase()).collect());
        }
        if let Some((v, _)) = first(layers, |r| su(r).and_then(|x| x.private_addresses.as_ref())) {
            policy.private_addresses = *v;
        }
        Rule::new(policy, origin).shadow(shadow)
    }

    fn redirect(&mut self, layers: &[&Layer<'_>], shadow: bool) -> Rule<RedirectPolicy> {
        let Some((_, l)) = first(layers, rd) else {
            return Rule::new(RedirectPolicy::default(), "built-in.metadata.redirect_uris").shadow(shadow);
        };
        let origin = format!("{}.metadata.redirect_uris", l.origin);
        let schemes = first(layers, |r| rd(r).and_then(|x| x.schemes.as_ref()));
        let hosts = first(layers, |r| rd(r).and_then(|x| x.hosts.as_ref()));
        if let Some((h, hl)) = hosts {
            for p in h.get_ref() {
                if !host_pattern(p) {
                    self.err(
                        hl.src,
                        h.span(),
                        "metadata.redirect_uris.hosts",
                        format!("`{p}` is not a host or `*.domain` pattern"),
                    );
                }
            }
            if let Some((s, _)) = schemes
                && !s.get_ref().iter().any(|x| x == "http" || x == "https")
            {
                self.err(
                    hl.src,
                    h.span(),
                    "metadata.redirect_uris.hosts",
                    "hosts apply to http(s) URIs, but schemes allows neither http nor https".into(),
                );
            }
        }
        let policy = RedirectPolicy {
            schemes: schemes.map(|(s, _)| s.get_ref().iter().map(|x| x.to_ascii_lowercase()).collect()),
            hosts: hosts.map(|(h, _)| h.get_ref().iter().map(|x| x.to_ascii_lowercase()).collect()),
            loopback: first(layers, |r| rd(r).and_then(|x| x.loopback.as_ref()))
                .map(|(v, _)| *v)
                .unwrap_or(false),
            wildcards: first(layers, |r| rd(r).and_then(|x| x.wildcards.as_ref()))
                .map(|(v, _)| *v)
                .unwrap_or(false),
            max: first(layers, |r| rd(r).and_then(|x| x.max.as_ref())).map(|(v, _)| *v.get_ref()),
        };
        Rule::new(policy, origin).shadow(shadow)
    }

    /// One quota limit from the first layers that set its count and window; errors name `key`.
    fn limit(
        &mut self,
        layers: &[&Layer<'_>],
        creates: Option<(&Spanned<u32>, &Layer<'_>)>,
        window: Option<(&Spanned<Dur>, &Layer<'_>)>,
        key: &str,
    ) -> Option<QuotaPolicy> {
        let (c, cl) = creates?;
        let Some((w, wl)) = window else {
            let (_, l) = first(layers, |r| r.quota.as_ref())?;
            self.errors.push(ConfigError {
                file: Some(l.src.path.clone()),
                position: None,
                key: format!("{}.quota", l.origin),
                message: format!("`{key}` needs a window (`window`)"),
            });
            return None;
        };
        if *c.get_ref() == 0 {
            self.err(
                cl.src,
                c.span(),
                &format!("quota.{key}"),
                "must be at least 1 (to forbid creating, set create.token_kinds = [])".into(),
            );
        }
        if w.get_ref().0.as_secs() == 0 {
            self.err(wl.src, w.span(), "quota.window", "must be at least 1s".into());
        }
        Some(QuotaPolicy {
            creates: *c.get_ref(),
            window: w.get_ref().0,
        })
    }

    pub(super) fn quota(&mut self, layers: &[&Layer<'_>]) -> Option<Rule<QuotaPolicy>> {
        let (_, l) = first(layers, |r| r.quota.as_ref())?;
        let shadow = self.mode_for(layers, |r| r.quota.as_ref().and_then(|q| q.mode));
        let creates = first(layers, |r| r.quota.as_ref().and_then(|q| q.creates.as_ref()));
        let realm = first(layers, |r| r.quota.as_ref().and_then(|q| q.realm_creates.as_ref()));
        if creates.is_none() && realm.is_none() {
            self.errors.push(ConfigError {
                file: Some(l.src.path.clone()),
                position: None,
                key: format!("{}.quota", l.origin),
                message: "a quota needs `creates` and `window`, or `realm_creates` and a window".into(),
            });
            return None;
        }
        let window = first(layers, |r| r.quota.as_ref().and_then(|q| q.window.as_ref()));
        let q = self.limit(layers, creates, window, "creates")?;
        Some(Rule::new(q, format!("{}.quota", l.origin)).shadow(shadow))
    }

    /// The realm-wide quota: `realm_creates` per `realm_window` (default `window`).
    pub(super) fn realm_quota(&mut self, layers: &[&Layer<'_>]) -> Option<Rule<QuotaPolicy>> {
        let (_, l) = first(layers, |r| r.quota.as_ref())?;
        let shadow = self.mode_for(layers, |r| r.quota.as_ref().and_then(|q| q.mode));
        let creates = first(layers, |r| r.quota.as_ref().and_then(|q| q.realm_creates.as_ref()));
        let window = first(layers, |r| r.quota.as_ref().and_then(|q| q.realm_window.as_ref()))
            .or_else(|| first(layers, |r| r.quota.as_ref().and_then(|q| q.window.as_ref())));
        let q = self.limit(layers, creates, window, "realm_creates")?;
        Some(Rule::new(q, format!("{}.quota", l.origin)).shadow(shadow))
    }
}

/// A host or `*.domain` pattern: no other `*`, `/` or `:`, a dot unless `localhost`.
pub(super) fn host_pattern(p: &str) -> bool {
    let rest = p.strip_prefix("*.").unwrap_or(p);
    !(rest.is_empty()
        || rest.contains('*')
        || rest.contains('/')
        || rest.contains(':')
        || !rest.contains('.') && rest != "localhost")
}
