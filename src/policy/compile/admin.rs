//! Compiling `[*.admin_api]`: whose admin writes are governed, what governed callers may write,
//! and their rule set (their own `admin_api.metadata`, else the realm's `metadata`).

use super::{Ctx, Layer, first};
use crate::policy::admin_api::{AdminPolicy, AdminWrites, DEFAULT_ALLOW};
use crate::policy::model::RealmRaw;
use crate::policy::snapshot::Rule;

/// Names `admin_api.allow` accepts: the fixed targets and `client.<sub-resource>`.
fn known_target(name: &str) -> bool {
    matches!(
        name,
        "realm-import"
            | "client.create"
            | "client.update"
            | "client.delete"
            | "client.protocol-mappers"
            | "client-scopes"
            | "default-default-client-scopes"
            | "default-optional-client-scopes"
            | "partial-import"
    ) || name
        .strip_prefix("client.")
        .is_some_and(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
}

// === impl Ctx ===

impl Ctx {
    pub(super) fn admin_api(&mut self, layers: &[&Layer<'_>]) -> AdminPolicy {
        let shadow = self.mode_for(layers, |_| None);
        let writes = match first(layers, |r| r.admin_api.as_ref().and_then(|a| a.writes.as_ref())) {
            Some((w, l)) => {
                let v = AdminWrites::parse(w.get_ref()).unwrap_or_else(|| {
                    self.err(
                        l.src,
                        w.span(),
                        "admin_api.writes",
                        format!("`{}` is not one of by_caller, govern, forward, refuse", w.get_ref()),
                    );
                    AdminWrites::ByCaller
                });
                Rule::new(v, format!("{}.admin_api.writes", l.origin))
            }
            None => Rule::new(AdminWrites::ByCaller, "built-in.admin_api.writes"),
        }
        .shadow(shadow);
        let console_clients = match first(layers, |r| {
            r.admin_api.as_ref().and_then(|a| a.console_clients.as_ref())
        }) {
            Some((list, l)) => Rule::new(
                list.get_ref().clone(),
                format!("{}.admin_api.console_clients", l.origin),
            ),
            None => Rule::new(
                vec!["security-admin-console".into(), "admin-cli".into()],
                "built-in.admin_api.console_clients",
            ),
        };
        let allow = match first(layers, |r| r.admin_api.as_ref().and_then(|a| a.allow.as_ref())) {
            Some((list, l)) => {
                for name in list.get_ref().iter().filter(|n| !known_target(n)) {
                    self.err(l.src, list.span(), "admin_api.allow", format!("`{name}` is not an admin write (e.g. client.delete, client.scope-mappings, client-scopes, partial-import)"));
                }
                Rule::new(list.get_ref().iter().cloned().collect(), format!("{}.admin_api.allow", l.origin))
            }
            None => Rule::new(DEFAULT_ALLOW.iter().map(|s| (*s).to_owned()).collect(), "built-in.admin_api.allow"),
        }
        .shadow(shadow);
        AdminPolicy {
            writes,
            console_clients,
            allow,
            metadata: self.admin_metadata(layers),
        }
    }

    /// `admin_api.metadata` layered like `metadata` (rule ids `….admin_api.metadata.…`), or the
    /// realm's own metadata rules when no layer has one.
    fn admin_metadata(&mut self, layers: &[&Layer<'_>]) -> crate::policy::snapshot::MetadataPolicy {
        let own: Vec<(RealmRaw, String, &Layer<'_>)> = layers
            .iter()
            .filter_map(|l| {
                let md = l.raw.admin_api.as_ref()?.metadata.clone()?;
                let raw = RealmRaw {
                    mode: l.raw.mode,
                    metadata: Some(md),
                    ..RealmRaw::default()
                };
                Some((raw, format!("{}.admin_api", l.origin), *l))
            })
            .collect();
        if own.is_empty() {
            return self.metadata(layers);
        }
        let synthetic: Vec<Layer<'_>> = own
            .iter()
            .map(|(raw, origin, l)| Layer {
                origin: origin.clone(),
                src: l.src,
                raw,
            })
            .collect();
        let refs: Vec<&Layer<'_>> = synthetic.iter().collect();
        self.metadata(&refs)
    }
}
