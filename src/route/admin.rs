//! Stage 1, routing of Keycloak's admin REST API: which requests create or change a client
//! (the client itself, its protocol mappers, scope mappings, client scopes, roles, secrets,
//! certificates, …), so that policy governs them as it governs registrations.
//!
//! Keycloak (Quarkus, RESTEasy Reactive) may read one path in several spellings. The gateway
//! reads every path generously — percent-decoded, `;` parameters dropped, `\` as `/`, empty
//! and `.` segments dropped, `..` resolved, any letter case — and when that reading is an admin
//! client write, the path must also be written in the one plain form, or it is refused with
//! `path_malformed`. A write no spelling of which Keycloak could route to a client resource is
//! left to `other_paths`.

use http::Method;

use crate::error::{Detail, Reason, Refusal};

/// What an admin write targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminTarget {
    /// `POST /admin/realms` (a realm import may hold clients).
    RealmImport,
    /// `POST …/clients`: a `ClientRepresentation`, created.
    ClientCreate,
    /// `PUT …/clients/{id}`: a `ClientRepresentation`, applied as a partial update.
    ClientUpdate,
    /// `DELETE …/clients/{id}`.
    ClientDelete,
    /// `POST`/`PUT` on `…/clients/{id}/protocol-mappers/…`: one mapper or a list.
    ProtocolMappers,
    /// Any other write under `…/clients/{id}/{sub}` (scope mappings, client scopes, roles,
    /// secrets, certificates, authorization, …), or a mapper removal.
    ClientSub(String),
    /// Writes under `…/client-scopes`, `…/default-default-client-scopes`,
    /// `…/default-optional-client-scopes` or `…/partialImport`.
    Realm(String),
}

impl AdminTarget {
    /// The stable name used in `admin_api.allow`, details and logs.
    pub fn name(&self) -> String {
        match self {
            AdminTarget::RealmImport => "realm-import".into(),
            AdminTarget::ClientCreate => "client.create".into(),
            AdminTarget::ClientUpdate => "client.update".into(),
            AdminTarget::ClientDelete => "client.delete".into(),
            AdminTarget::ProtocolMappers => "client.protocol-mappers".into(),
            AdminTarget::ClientSub(s) => format!("client.{s}"),
            AdminTarget::Realm(s) => s.clone(),
        }
    }
}

/// A classified admin write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRoute {
    /// Realm from the path (`None` for a realm import).
    pub realm: Option<String>,
    /// What is written.
    pub target: AdminTarget,
    /// The method, as sent.
    pub method: Method,
}

/// Segments of the generous reading of `decoded` (the path decoded repeatedly): `;…` dropped,
/// dots resolved.
fn generous(decoded: &str) -> Vec<&str> {
    let mut segs: Vec<&str> = Vec::new();
    for seg in decoded.split(['/', '\\']) {
        let seg = seg.split(';').next().unwrap_or("");
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    segs
}

/// Whether a segment of `path`, however generously decoded, could read `admin`: without an
/// escape the segments are pieces of the path as written, so the word must be in it (any case).
/// A cheap test that spares every other write the decoding and splitting.
fn may_name_admin(path: &str) -> bool {
    path.contains('%') || path.as_bytes().windows(5).any(|w| w.eq_ignore_ascii_case(b"admin"))
}

/// Whether the method could change something (anything but GET, HEAD, OPTIONS as written).
fn is_write(m: &Method) -> bool {
    !matches!(m.as_str(), "GET" | "HEAD" | "OPTIONS")
}

/// The target of `rest` (the segments after `/admin/realms/{realm}`), lower-cased keywords.
fn target_of(rest: &[&str], method: &Method) -> Option<AdminTarget> {
    let kw: Vec<String> = rest.iter().map(|s| s.to_ascii_lowercase()).collect();
    let first = kw.first()?.as_str();
    match first {
        "clients" => Some(match (kw.len(), method.as_str()) {
            (1, _) => AdminTarget::ClientCreate,
            (2, "PUT") => AdminTarget::ClientUpdate,
            (2, "DELETE") => AdminTarget::ClientDelete,
            (2, _) => AdminTarget::ClientSub(String::new()),
            (_, "POST" | "PUT") if kw[2] == "protocol-mappers" => AdminTarget::ProtocolMappers,
            _ => AdminTarget::ClientSub(kw[2].clone()),
        }),
        "client-scopes" | "default-default-client-scopes" | "default-optional-client-scopes" => {
            Some(AdminTarget::Realm(first.to_owned()))
        }
        "partialimport" => Some(AdminTarget::Realm("partial-import".into())),
        _ => None,
    }
}

fn malformed(path: &str, canonical: &str) -> Refusal {
    Refusal::new(
        Reason::PathMalformed,
        "The admin API path is not written plainly: Keycloak could read it as a write to a client, so it must have no encoded or repeated separators, dot segments, ;parameters, trailing slash or other letter case.",
    )
    .detail(Detail::Path, path)
    .detail(Detail::Area, "admin")
    .detail(Detail::Expected, canonical)
}

/// Classifies an admin write. `Ok(None)`: not a write any spelling of which reaches a client.
pub fn classify(method: &Method, path: &str, prefix: &str) -> Result<Option<AdminRoute>, Refusal> {
    if !is_write(method) || !may_name_admin(path) {
        return Ok(None);
    }
    let decoded = super::decode_generously(path);
    let segs = generous(&decoded);
    let prefix_segs: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
    let n = prefix_segs.len();
    let is = |i: usize, word: &str| segs.get(i).is_some_and(|s| s.eq_ignore_ascii_case(word));
    let prefixed = segs.len() >= n + 2
        && segs[..n]
            .iter()
            .zip(&prefix_segs)
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
        && is(n, "admin")
        && is(n + 1, "realms");
    if !prefixed {
        return Ok(None);
    }
    let (realm, target) = match segs.len() - n {
        2 => (None, AdminTarget::RealmImport),
        3 => return Ok(None), // the realm itself (its representation holds no clients)
        _ => match target_of(&segs[n + 3..], method) {
            Some(t) => (Some(segs[n + 2].to_owned()), t),
            None => return Ok(None),
        },
    };
    // The one plain spelling: keywords literal (as Keycloak's resources spell them), escapes
    // only inside names (the realm, ids), and no separator hidden in a name.
    let is_name = |i: usize| i == n + 2 || i == n + 4 || i >= n + 6;
    let canonical: Vec<String> = segs
        .iter()
        .enumerate()
        .map(|(i, s)| match s.to_ascii_lowercase().as_str() {
            _ if is_name(i) => (*s).to_owned(),
            "partialimport" => "partialImport".to_owned(),
            kw => kw.to_owned(),
        })
        .collect();
    let expected = format!("/{}", canonical.join("/"));
    let plain = !path.contains([';', '\\']) && !path.contains("//") && !path.ends_with('/');
    let raw: Vec<&str> = path.split('/').skip(1).collect();
    let same = plain
        && raw.len() == canonical.len()
        && raw.iter().zip(&canonical).enumerate().all(|(i, (r, c))| {
            if is_name(i) {
                super::decode_lossy(r) == *c
            } else {
                r == c
            }
        });
    if !same {
        return Err(malformed(path, &expected));
    }
    Ok(Some(AdminRoute {
        realm,
        target,
        method: method.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(method: &str, path: &str) -> Result<Option<AdminRoute>, Refusal> {
        classify(&Method::from_bytes(method.as_bytes()).unwrap(), path, "")
    }

    #[test]
    fn plain_client_writes_are_classified() {
        let r = c("POST", "/admin/realms/demo/clients").unwrap().unwrap();
        assert_eq!(
            (r.realm.as_deref(), r.target),
            (Some("demo"), AdminTarget::ClientCreate)
        );
        let r = c("PUT", "/admin/realms/demo/clients/1f2e").unwrap().unwrap();
        assert_eq!(r.target, AdminTarget::ClientUpdate);
        let r = c("POST", "/admin/realms/demo/clients/1f2e/protocol-mappers/models")
            .unwrap()
            .unwrap();
        assert_eq!(r.target, AdminTarget::ProtocolMappers);
        let r = c("POST", "/admin/realms/demo/clients/1f2e/protocol-mappers/add-models")
            .unwrap()
            .unwrap();
        assert_eq!(r.target, AdminTarget::ProtocolMappers);
        let r = c("PUT", "/admin/realms/demo/clients/1f2e/default-client-scopes/abc")
            .unwrap()
            .unwrap();
        assert_eq!(r.target.name(), "client.default-client-scopes");
        let r = c("POST", "/admin/realms/demo/clients/1f2e/scope-mappings/realm")
            .unwrap()
            .unwrap();
        assert_eq!(r.target.name(), "client.scope-mappings");
        let r = c("POST", "/admin/realms/demo/partialImport").unwrap().unwrap();
        assert_eq!(r.target.name(), "partial-import");
        let r = c("POST", "/admin/realms").unwrap().unwrap();
        assert_eq!(r.target, AdminTarget::RealmImport);
        let r = c("POST", "/admin/realms/My%20Realm/clients").unwrap().unwrap();
        assert_eq!(r.realm.as_deref(), Some("My Realm"));
        let r = c("post", "/admin/realms/demo/clients").unwrap().unwrap();
        assert_eq!(r.method.as_str(), "post");
    }

    #[test]
    fn reads_and_other_areas_are_not() {
        for (m, p) in [
            ("GET", "/admin/realms/demo/clients"),
            ("OPTIONS", "/admin/realms/demo/clients"),
            ("PUT", "/admin/realms/demo"),
            ("POST", "/admin/realms/demo/users"),
            ("POST", "/admin/realms/demo/clients-initial-access"),
            ("POST", "/realms/demo/protocol/openid-connect/token"),
        ] {
            assert_eq!(c(m, p).unwrap(), None, "{m} {p}");
        }
    }

    #[test]
    fn the_word_admin_is_found_in_any_case_and_behind_escapes() {
        assert!(!may_name_admin("/realms/demo/clients-registrations/default"));
        assert!(!may_name_admin("/realms/adm/in/clients"));
        for p in [
            "/admin/realms",
            "/x/ADMIN/realms",
            "/AdMiN",
            "/%61dmin/realms",
            "/adm%69n",
            "/a%2564min",
        ] {
            assert!(may_name_admin(p), "{p}");
        }
        // An escaped keyword still reaches the full check (and is refused there as unplain).
        let e = c("POST", "/%61dmin/realms/demo/clients").unwrap_err();
        assert_eq!(e.reason, Reason::PathMalformed);
        assert_eq!(c("POST", "/realms/demo/clients-registrations/default").unwrap(), None);
    }

    #[test]
    fn every_other_spelling_is_refused() {
        for p in [
            "/admin/realms/demo/clients/",
            "/admin/realms/demo//clients",
            "//admin/realms/demo/clients",
            "/admin/realms/demo/./clients",
            "/admin/realms/demo/x/../clients",
            "/admin/realms/demo/clients;x=1",
            "/admin;x=1/realms/demo/clients",
            "/admin/realms/demo/Clients",
            "/ADMIN/realms/demo/clients",
            "/admin/realms/demo/client%73",
            "/admin/realms/demo/%63lients",
            "/admin/realms/demo%2Fclients",
            "/admin/realms/demo/clients%2F1f2e",
            "/admin\\realms/demo/clients",
            "/admin/realms/demo/clients/1f2e/Protocol-Mappers/models",
            "/admin/realms/demo/clients/%2e%2e/clients",
            "/admin/realms/demo/client%2573",
            "/admin/realms/demo/clients%252F0b1c",
        ] {
            let e = c("POST", p).unwrap_err();
            assert_eq!(e.reason, Reason::PathMalformed, "{p}");
            assert_eq!(e.details["area"], "admin", "{p}");
        }
    }
}
