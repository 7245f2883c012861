//! Token kinds, the JWS header and claims the gateway reads, and the unverified decode of a JWT.
//!
//! Decoding here proves nothing: it only tells token kinds apart and reads claims for triage,
//! policy and diagnosis. Bearer tokens are verified afterwards in `verify`.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// Which credential a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// An access token (`typ: Bearer`), RS/PS/ES-signed, verified at the gateway.
    Bearer,
    /// Keycloak's initial access token (`typ: InitialAccessToken`), HMAC-signed.
    InitialAccess,
    /// Keycloak's registration access token (`typ: RegistrationAccessToken`), HMAC-signed.
    RegistrationAccess,
    /// No `Authorization` header (or Basic on the `install` provider).
    Anonymous,
}

impl TokenKind {
    /// Every kind, in policy order.
    pub const ALL: [TokenKind; 4] = [
        TokenKind::Bearer,
        TokenKind::InitialAccess,
        TokenKind::RegistrationAccess,
        TokenKind::Anonymous,
    ];

    /// The name used in policy files, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Bearer => "bearer",
            TokenKind::InitialAccess => "initial_access",
            TokenKind::RegistrationAccess => "registration_access",
            TokenKind::Anonymous => "anonymous",
        }
    }

    /// Parses a policy name.
    pub fn parse(s: &str) -> Option<TokenKind> {
        TokenKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kind without an article ("initial access token").
    pub fn noun(self) -> &'static str {
        self.phrase().trim_start_matches("an ").trim_start_matches("a ")
    }

    /// A phrase for messages ("an initial access token").
    pub fn phrase(self) -> &'static str {
        match self {
            TokenKind::Bearer => "a bearer access token",
            TokenKind::InitialAccess => "an initial access token",
            TokenKind::RegistrationAccess => "a registration access token",
            TokenKind::Anonymous => "no token (anonymous)",
        }
    }
}

/// `s` with its first letter upper-cased.
pub fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The JWS header fields the gateway reads.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Header {
    /// Signature algorithm as written (`RS256`, `HS512`, `none`, ...). Never trusted for choice.
    #[serde(default)]
    pub alg: String,
    /// Key id.
    pub kid: Option<String>,
    /// Media type of the JWS (`JWT`); not the token kind.
    pub typ: Option<String>,
}

/// Roles of one client or of the realm.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct RoleList {
    /// Role names.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `aud`: one string or a list.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `value` is one of the audiences.
    pub fn contains(&self, value: &str) -> bool {
        match self {
            Audience::One(a) => a == value,
            Audience::Many(list) => list.iter().any(|a| a == value),
        }
    }
}

/// The claims the gateway reads from any of Keycloak's tokens.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Claims {
    /// Keycloak's token kind: `Bearer`, `InitialAccessToken`, `RegistrationAccessToken`, ...
    pub typ: Option<String>,
    /// Issuer.
    pub iss: Option<String>,
    /// Subject.
    pub sub: Option<String>,
    /// Authorized party: the client the token was issued to.
    pub azp: Option<String>,
    /// Audience.
    pub aud: Option<Audience>,
    /// Expiry (Unix seconds; 0 on Keycloak's HMAC tokens means never).
    pub exp: Option<i64>,
    /// Not before.
    pub nbf: Option<i64>,
    /// Issued at.
    pub iat: Option<i64>,
    /// Token id (the initial access token's id in Keycloak).
    pub jti: Option<String>,
    /// Space-separated scopes.
    pub scope: Option<String>,
    /// Keycloak's `client_id` claim on service-account tokens.
    pub client_id: Option<String>,
    /// User name (`service-account-<client>` for service accounts).
    pub preferred_username: Option<String>,
    /// Client roles by client id.
    pub resource_access: Option<HashMap<String, RoleList>>,
    /// Realm roles.
    pub realm_access: Option<RoleList>,
    /// On registration access tokens: `anonymous` or `authenticated`.
    pub registration_auth: Option<String>,
}

impl Claims {
    /// Whether the token holds client role `role` of client `client`.
    pub fn has_client_role(&self, client: &str, role: &str) -> bool {
        self.resource_access
            .as_ref()
            .and_then(|m| m.get(client))
            .is_some_and(|r| r.roles.iter().any(|x| x == role))
    }

    /// Whether the token holds realm role `role`.
    pub fn has_realm_role(&self, role: &str) -> bool {
        self.realm_access
            .as_ref()
            .is_some_and(|r| r.roles.iter().any(|x| x == role))
    }

    /// Scopes from the `scope` claim.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.as_deref().unwrap_or("").split_ascii_whitespace()
    }

    /// The client behind the token: `azp`, else `client_id`.
    pub fn client(&self) -> Option<&str> {
        self.azp.as_deref().or(self.client_id.as_deref())
    }

    /// All roles as `client/role` and plain realm roles (for messages).
    pub fn role_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(ra) = &self.resource_access {
            let mut clients: Vec<_> = ra.iter().collect();
            clients.sort_by(|a, b| a.0.cmp(b.0));
            for (client, list) in clients {
                out.extend(list.roles.iter().map(|r| format!("{client}/{r}")));
            }
        }
        if let Some(realm) = &self.realm_access {
            out.extend(realm.roles.iter().cloned());
        }
        out
    }
}

/// A JWT split and decoded without verification.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The header.
    pub header: Header,
    /// The claims.
    pub claims: Claims,
    /// Length of `header.payload` (the signed message) in the token text.
    pub signed_len: usize,
}

/// Why a token could not be decoded (a specific, human sentence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

fn b64(part: &str, what: &str) -> Result<Vec<u8>, DecodeError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| DecodeError(format!("the {what} is not base64url")))
}

/// Splits `token` into three base64url parts and decodes header and claims.
pub fn decode(token: &str) -> Result<Decoded, DecodeError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        let n = token.split('.').count();
        return Err(DecodeError(format!(
            "a JWT has three dot-separated parts; this value has {n}"
        )));
    };
    if h.is_empty() || p.is_empty() {
        return Err(DecodeError("the header or payload part is empty".into()));
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(DecodeError("the signature is not base64url".into()));
    }
    let header: Header = serde_json::from_slice(&b64(h, "header")?)
        .map_err(|e| DecodeError(format!("the header is not a JSON object with a string alg: {e}")))?;
    let claims: Claims = serde_json::from_slice(&b64(p, "payload")?)
        .map_err(|e| DecodeError(format!("the payload is not a JSON object with well-typed claims: {e}")))?;
    Ok(Decoded {
        header,
        claims,
        signed_len: h.len() + 1 + p.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn decodes_keycloak_shapes() {
        let t = format!(
            "{}.{}.c2ln",
            enc(&serde_json::json!({"alg":"HS512","typ":"JWT","kid":"k1"})),
            enc(
                &serde_json::json!({"typ":"InitialAccessToken","exp":0,"iss":"http://x/realms/demo","aud":"http://x/realms/demo"})
            )
        );
        let d = decode(&t).unwrap();
        assert_eq!(d.header.alg, "HS512");
        assert_eq!(d.claims.typ.as_deref(), Some("InitialAccessToken"));
        assert_eq!(d.claims.exp, Some(0));
        assert!(d.claims.aud.unwrap().contains("http://x/realms/demo"));
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(decode("abc").unwrap_err().0.contains("three"));
        assert!(decode("a.b.c.d").unwrap_err().0.contains("three"));
        assert!(decode("!!.e30.c2ln").is_err());
        let bad_exp = format!(
            "{}.{}.x",
            enc(&serde_json::json!({"alg":"RS256"})),
            enc(&serde_json::json!({"exp":"soon"}))
        );
        assert!(decode(&bad_exp).unwrap_err().0.contains("well-typed"));
        let not_obj = format!(
            "{}.{}.x",
            enc(&serde_json::json!({"alg":"RS256"})),
            URL_SAFE_NO_PAD.encode(b"[1]")
        );
        assert!(decode(&not_obj).is_err());
    }

    #[test]
    fn roles() {
        let c: Claims = serde_json::from_value(serde_json::json!({
            "resource_access": {"realm-management": {"roles": ["create-client"]}},
            "realm_access": {"roles": ["offline_access"]}, "scope": "openid profile"
        }))
        .unwrap();
        assert!(c.has_client_role("realm-management", "create-client"));
        assert!(!c.has_client_role("realm-management", "manage-clients"));
        assert!(c.has_realm_role("offline_access"));
        assert_eq!(c.scopes().collect::<Vec<_>>(), ["openid", "profile"]);
        assert_eq!(c.role_names(), ["realm-management/create-client", "offline_access"]);
    }
}
