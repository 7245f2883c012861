//! An initial access token kept in a file by the operator (re-read on every use, so a new token
//! is picked up without a restart). Shape and expiry are checked; Keycloak checks the rest.

use std::path::PathBuf;

use crate::token::claims::decode;
use crate::token::now;
use crate::token::triage::rfc3339;

/// An initial access token file.
#[derive(Debug)]
pub struct IatFile {
    path: PathBuf,
}

impl IatFile {
    /// A token file at `path`.
    pub fn new(path: PathBuf) -> Self {
        IatFile { path }
    }

    /// The token, or why it cannot be used.
    pub fn token(&self) -> Result<String, String> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read the initial access token file {}: {e}", self.path.display()))?;
        let token = text.trim().to_owned();
        let d = decode(&token).map_err(|e| {
            format!(
                "the initial access token file {} holds no JWT: {}",
                self.path.display(),
                e.0
            )
        })?;
        if d.claims.typ.as_deref() != Some("InitialAccessToken") {
            return Err(format!(
                "the token in {} is not an initial access token (typ {:?})",
                self.path.display(),
                d.claims.typ
            ));
        }
        match d.claims.exp {
            Some(exp) if exp != 0 && exp < now() => Err(format!(
                "the initial access token in {} expired at {}",
                self.path.display(),
                rfc3339(exp)
            )),
            _ => Ok(token),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn jwt(claims: serde_json::Value) -> String {
        let e = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.c2ln",
            e(&serde_json::json!({"alg": "HS512", "typ": "JWT"})),
            e(&claims)
        )
    }

    #[test]
    fn checks_kind_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("iat");
        let f = IatFile::new(p.clone());
        assert!(f.token().unwrap_err().contains("cannot read"));
        let good = jwt(serde_json::json!({"typ": "InitialAccessToken", "exp": 0}));
        std::fs::write(&p, format!("{good}\n")).unwrap();
        assert_eq!(f.token().unwrap(), good);
        std::fs::write(&p, jwt(serde_json::json!({"typ": "InitialAccessToken", "exp": 1}))).unwrap();
        assert!(f.token().unwrap_err().contains("expired at 1970-01-01T00:00:01Z"));
        std::fs::write(&p, jwt(serde_json::json!({"typ": "Bearer", "exp": 0}))).unwrap();
        assert!(f.token().unwrap_err().contains("not an initial access token"));
        std::fs::write(&p, "garbage").unwrap();
        assert!(f.token().unwrap_err().contains("no JWT"));
    }
}
