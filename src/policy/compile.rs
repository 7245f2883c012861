//! Compiling policy files into one checked `Snapshot`: parse every file, resolve each realm as
//! built-in defaults ← `[default]` ← `[realms.NAME]`, validate every value and contradiction,
//! and fail as a whole (every error with file, line and key) or succeed as a whole.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use toml::Spanned;

use super::model::{List, MetadataRaw, OpRaw, PolicyFile, RealmRaw, RedirectRaw, ServerUrlsRaw};
use super::snapshot::{ClientRef, OpPolicy, RealmPolicy, RoleRef, Rule, Snapshot};
use crate::config::load::{line_col, parse_toml};
use crate::config::{ConfigError, Mode};
use crate::keycloak;
use crate::route::Operation;
use crate::token::TokenKind;

/// One policy file's path and text.
#[derive(Debug, Clone)]
pub struct Source {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its contents.
    pub text: String,
}

/// One section (`[default]` or `[realms.X]`) in one file.
struct Layer<'a> {
    origin: String,
    src: &'a Source,
    raw: &'a RealmRaw,
}

struct Ctx {
    errors: Vec<ConfigError>,
}

/// SHA-256 over every file's path and text, hex, first 16 characters.
pub fn checksum(sources: &[Source]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for s in sources {
        ctx.update(s.path.to_string_lossy().as_bytes());
        ctx.update(&[0]);
        ctx.update(s.text.as_bytes());
        ctx.update(&[0]);
    }
    ctx.finish()
        .as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An error about a whole file (no position).
fn whole_file(src: &Source, message: &str) -> ConfigError {
    ConfigError {
        file: Some(src.path.clone()),
        position: None,
        key: "version".into(),
        message: message.to_owned(),
    }
}

/// Compiles the sources into a snapshot of the given generation.
pub fn compile(sources: &[Source], generation: u64) -> Result<Snapshot, Vec<ConfigError>> {
    let mut ctx = Ctx { errors: Vec::new() };
    let mut parsed = Vec::new();
    for s in sources {
        if s.text.trim().is_empty() {
            // A file caught truncated (`: > file`, an editor mid-save) must never govern.
            ctx.errors.push(whole_file(s, "the policy file is empty; write `version = 1` and the rules (an empty file is refused so that a file caught while being rewritten never applies)"));
            continue;
        }
        match parse_toml::<PolicyFile>(&s.text, &s.path) {
            Ok(f) => parsed.push((s, f)),
            Err(e) => ctx.errors.push(e),
        }
    }
    let mut default: Option<Layer<'_>> = None;
    let mut realms: BTreeMap<&str, Layer<'_>> = BTreeMap::new();
    for (src, file) in &parsed {
        match &file.version {
            Some(v) if *v.get_ref() != 1 => ctx.err(src, v.span(), "version", "only version 1 exists".into()),
            Some(_) => {}
            None => ctx.errors.push(whole_file(
                src,
                "`version = 1` is required at the top of every policy file (a file without it may be a prefix caught mid-write)",
            )),
        }
        if let Some(d) = &file.default {
            if let Some(prev) = &default {
                ctx.err(
                    src,
                    d.span(),
                    "default",
                    format!("[default] is already defined in {}", prev.src.path.display()),
                );
            }
            default = Some(Layer {
                origin: "default".into(),
                src,
                raw: d.get_ref(),
            });
        }
        for (name, r) in &file.realms {
            if let Some(prev) = realms.get(name.as_str()) {
                ctx.err(
                    src,
                    r.span(),
                    &format!("realms.{name}"),
                    format!("realm {name} is already defined in {}", prev.src.path.display()),
                );
            }
            realms.insert(
                name,
                Layer {
                    origin: format!("realms.{name}"),
                    src,
                    raw: r.get_ref(),
                },
            );
        }
    }
    let default_policy = ctx.realm("default", &[default.as_ref()].into_iter().flatten().collect::<Vec<_>>());
    let mut compiled = HashMap::new();
    for (name, layer) in &realms {
        let layers: Vec<&Layer<'_>> = [Some(layer), default.as_ref()].into_iter().flatten().collect();
        compiled.insert((*name).to_owned(), ctx.realm(name, &layers));
    }
    if !ctx.errors.is_empty() {
        return Err(ctx.errors);
    }
    Ok(Snapshot {
        generation,
        checksum: checksum(sources),
        sources: sources.iter().map(|s| s.path.clone()).collect(),
        default: default_policy,
        realms: compiled,
    })
}

/// The first layer that sets a value, with its origin; most specific layer first.
fn first<'a, T>(
    layers: &[&'a Layer<'a>],
    get: impl Fn(&'a RealmRaw) -> Option<&'a T>,
) -> Option<(&'a T, &'a Layer<'a>)> {
    layers.iter().find_map(|l| get(l.raw).map(|v| (v, *l)))
}

fn md_list(r: &RealmRaw, get: fn(&MetadataRaw) -> Option<&List>) -> Option<&List> {
    r.metadata.as_ref().and_then(get)
}

fn rd(r: &RealmRaw) -> Option<&RedirectRaw> {
    r.metadata.as_ref().and_then(|m| m.redirect_uris.as_ref())
}

fn su(r: &RealmRaw) -> Option<&ServerUrlsRaw> {
    r.metadata.as_ref().and_then(|m| m.server_urls.as_ref())
}

fn op_raw(r: &RealmRaw, op: Operation) -> Option<&OpRaw> {
    match op {
        Operation::Create => r.create.as_ref(),
        Operation::Read => r.read.as_ref(),
        Operation::Update => r.update.as_ref(),
        Operation::Delete => r.delete.as_ref(),
        Operation::Preflight => None,
    }
}

// === impl Ctx ===

impl Ctx {
    fn err(&mut self, src: &Source, span: std::ops::Range<usize>, key: &str, message: String) {
        self.errors.push(ConfigError {
            file: Some(src.path.clone()),
            position: Some(line_col(&src.text, span.start)),
            key: key.to_owned(),
            message,
        });
    }

    fn mode_for(&self, layers: &[&Layer<'_>], section: impl Fn(&RealmRaw) -> Option<Mode>) -> bool {
        // Most specific layer first; within a layer the section's own mode beats the layer's.
        let m = layers.iter().find_map(|l| section(l.raw).or(l.raw.mode));
        m == Some(Mode::Shadow)
    }

    fn realm(&mut self, name: &str, layers: &[&Layer<'_>]) -> RealmPolicy {
        let providers = match first(layers, |r| r.providers.as_ref()) {
            Some((list, l)) => {
                for p in list.get_ref() {
                    if p.is_empty()
                        || !p
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    {
                        self.err(
                            l.src,
                            list.span(),
                            "providers",
                            format!("`{p}` is not a provider id (e.g. openid-connect, default)"),
                        );
                    }
                }
                Rule::new(
                    list.get_ref().iter().cloned().collect(),
                    format!("{}.providers", l.origin),
                )
            }
            None => Rule::new(
                ["openid-connect", "default"].map(String::from).into(),
                "built-in.providers",
            ),
        }
        .shadow(self.mode_for(layers, |_| None));
        let ops = Operation::GOVERNED.map(|op| self.op(op, layers));
        RealmPolicy {
            name: name.to_owned(),
            providers,
            ops,
            metadata: self.metadata(layers),
            quota: self.quota(layers),
            admin: self.admin_api(layers),
            realm_quota: self.realm_quota(layers),
            anonymous: self.anonymous(name, layers),
            cors: self.cors(layers),
        }
    }

    fn op(&mut self, op: Operation, layers: &[&Layer<'_>]) -> OpPolicy {
        let key = op.as_str();
        let shadow = self.mode_for(layers, |r| op_raw(r, op).and_then(|o| o.mode));
        let kinds = match first(layers, |r| op_raw(r, op).and_then(|o| o.token_kinds.as_ref())) {
            Some((list, l)) => {
                let mut kinds = Vec::new();
                for k in list.get_ref() {
                    match TokenKind::parse(k) {
                        Some(TokenKind::InitialAccess) if op != Operation::Create => self.err(l.src, list.span(), &format!("{key}.token_kinds"), format!("Keycloak never accepts an initial access token to {key} a client")),
                        Some(TokenKind::RegistrationAccess) if op == Operation::Create => self.err(l.src, list.span(), &format!("{key}.token_kinds"), "Keycloak treats a registration access token on create as anonymous; allow `anonymous` instead if that is meant".into()),
                        Some(kind) => kinds.push(kind),
                        None => self.err(l.src, list.span(), &format!("{key}.token_kinds"), format!("`{k}` is not a token kind (bearer, initial_access, registration_access, anonymous)")),
                    }
                }
                Rule::new(kinds, format!("{}.{key}.token_kinds", l.origin))
            }
            None => {
                let default = match op {
                    Operation::Create => vec![TokenKind::Bearer, TokenKind::InitialAccess],
                    _ => vec![TokenKind::Bearer, TokenKind::RegistrationAccess],
                };
                Rule::new(default, format!("built-in.{key}.token_kinds"))
            }
        };
        let roles_any = match first(layers, |r| op_raw(r, op).and_then(|o| o.roles_any.as_ref())) {
            Some((list, l)) => Rule::new(
                self.roles(l, list, &format!("{key}.roles_any")),
                format!("{}.{key}.roles_any", l.origin),
            ),
            None => {
                let roles = keycloak::roles_for(op)
                    .iter()
                    .map(|n| RoleRef {
                        client: Some(ClientRef::Management),
                        role: (*n).to_owned(),
                    })
                    .collect();
                Rule::new(roles, format!("built-in.{key}.roles_any"))
            }
        };
        let roles_all = self.optional_roles(layers, op, "roles_all", |o| o.roles_all.as_ref());
        let scopes = self.plain_list(layers, op, "scopes", |o| o.scopes.as_ref());
        let azp = self.plain_list(layers, op, "azp", |o| o.azp.as_ref());
        let needs_bearer = !roles_all.value.is_empty() || !scopes.value.is_empty() || !azp.value.is_empty();
        if needs_bearer
            && !kinds.value.contains(&TokenKind::Bearer)
            && let Some((list, l)) = first(layers, |r| op_raw(r, op).and_then(|o| o.token_kinds.as_ref()))
        {
            self.err(
                l.src,
                list.span(),
                &format!("{key}.token_kinds"),
                "roles, scopes and azp apply to bearer tokens, which this list does not allow".into(),
            );
        }
        OpPolicy {
            kinds: kinds.shadow(shadow),
            roles_any: roles_any.shadow(shadow),
            roles_all: roles_all.shadow(shadow),
            scopes: scopes.shadow(shadow),
            azp: azp.shadow(shadow),
        }
    }

    fn optional_roles(
        &mut self,
        layers: &[&Layer<'_>],
        op: Operation,
        field: &str,
        get: impl Fn(&OpRaw) -> Option<&List>,
    ) -> Rule<Vec<RoleRef>> {
        let key = format!("{}.{field}", op.as_str());
        match first(layers, |r| op_raw(r, op).and_then(&get)) {
            Some((list, l)) => Rule::new(self.roles(l, list, &key), format!("{}.{key}", l.origin)),
            None => Rule::new(Vec::new(), format!("built-in.{key}")),
        }
    }

    fn plain_list(
        &mut self,
        layers: &[&Layer<'_>],
        op: Operation,
        field: &str,
        get: impl Fn(&OpRaw) -> Option<&List>,
    ) -> Rule<Vec<String>> {
        let key = format!("{}.{field}", op.as_str());
        match first(layers, |r| op_raw(r, op).and_then(&get)) {
            Some((list, l)) => {
                if list.get_ref().iter().any(String::is_empty) {
                    self.err(l.src, list.span(), &key, "empty names are not allowed".into());
                }
                Rule::new(list.get_ref().clone(), format!("{}.{key}", l.origin))
            }
            None => Rule::new(Vec::new(), format!("built-in.{key}")),
        }
    }

    fn roles(&mut self, l: &Layer<'_>, list: &Spanned<Vec<String>>, key: &str) -> Vec<RoleRef> {
        let mut out = Vec::new();
        for r in list.get_ref() {
            match RoleRef::parse(r) {
                Some(role) => out.push(role),
                None => self.err(
                    l.src,
                    list.span(),
                    key,
                    format!("`{r}` is not a role (write `client/role`, `$management/role` or a realm role)"),
                ),
            }
        }
        out
    }
}

mod admin;
mod anonymous;
mod sections;

#[cfg(test)]
mod tests;
