//! RSA verification keys parsed once per algorithm. `jsonwebtoken` rebuilds the RSA key from its
//! modulus and exponent on every verification, and with it the Montgomery context of the
//! modulus, which costs about as much as the signature check itself; a parsed key keeps both.
//! Same algorithms and checks as `jsonwebtoken`'s aws-lc-rs verifiers (2048–8192-bit moduli).

use std::sync::OnceLock;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;

const ALGS: [(Algorithm, &RsaParameters); 6] = [
    (Algorithm::RS256, &signature::RSA_PKCS1_2048_8192_SHA256),
    (Algorithm::RS384, &signature::RSA_PKCS1_2048_8192_SHA384),
    (Algorithm::RS512, &signature::RSA_PKCS1_2048_8192_SHA512),
    (Algorithm::PS256, &signature::RSA_PSS_2048_8192_SHA256),
    (Algorithm::PS384, &signature::RSA_PSS_2048_8192_SHA384),
    (Algorithm::PS512, &signature::RSA_PSS_2048_8192_SHA512),
];

/// An RSA public key, parsed on first use for each algorithm.
pub struct ParsedRsa {
    n: Vec<u8>,
    e: Vec<u8>,
    by_alg: [OnceLock<Option<ParsedPublicKey>>; 6],
}

impl std::fmt::Debug for ParsedRsa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedRsa").finish_non_exhaustive()
    }
}

// === impl ParsedRsa ===

impl ParsedRsa {
    /// A key from its big-endian modulus and exponent.
    pub fn new(n: Vec<u8>, e: Vec<u8>) -> Self {
        ParsedRsa {
            n,
            e,
            by_alg: [const { OnceLock::new() }; 6],
        }
    }

    /// Whether `signature` (base64url) signs `message` under `alg`; `None` when `alg` is not an
    /// RSA algorithm or the key does not parse (the caller then asks `jsonwebtoken`).
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &str) -> Option<bool> {
        let i = ALGS.iter().position(|(a, _)| *a == alg)?;
        let parsed = self.by_alg[i].get_or_init(|| {
            RsaPublicKeyComponents { n: &self.n, e: &self.e }
                .to_parsed_public_key(ALGS[i].1)
                .ok()
        });
        let key = parsed.as_ref()?;
        let Ok(sig) = URL_SAFE_NO_PAD.decode(signature) else {
            return Some(false);
        };
        Some(key.verify_sig(message, &sig).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::TestKey;

    fn parsed(key: &TestKey) -> ParsedRsa {
        let jwk = key.jwk();
        let b = |f: &str| URL_SAFE_NO_PAD.decode(jwk[f].as_str().unwrap()).unwrap();
        ParsedRsa::new(b("n"), b("e"))
    }

    #[test]
    fn verifies_what_jsonwebtoken_verifies() {
        for alg in ["RS256", "PS256"] {
            let key = TestKey::rsa("k", alg).unwrap();
            let token = key.token(&serde_json::json!({"sub": "x"}));
            let (message, sig) = token.rsplit_once('.').unwrap();
            let p = parsed(&key);
            let a: Algorithm = alg.parse().unwrap();
            assert_eq!(p.verify(a, message.as_bytes(), sig), Some(true), "{alg}");
            // Twice: the second check uses the key parsed by the first.
            assert_eq!(p.verify(a, message.as_bytes(), sig), Some(true), "{alg}");
            assert_eq!(p.verify(a, b"other.message", sig), Some(false), "{alg}");
            assert_eq!(p.verify(a, message.as_bytes(), "not base64!"), Some(false), "{alg}");
            let other = if alg == "RS256" {
                Algorithm::PS256
            } else {
                Algorithm::RS256
            };
            assert_eq!(p.verify(other, message.as_bytes(), sig), Some(false), "{alg}");
            assert_eq!(p.verify(Algorithm::ES256, message.as_bytes(), sig), None);
        }
    }
}
