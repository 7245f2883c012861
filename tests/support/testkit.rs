//! Test and benchmark support: signing keys made at run time, their JWKs, and tokens signed with
//! them (RS256, PS256, ES256, and HMAC for Keycloak-style internal tokens and forgeries).
//!
//! Nothing here is used by the gateway itself; it lives in the library so that unit tests,
//! integration tests and benchmarks share one implementation.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};

enum Signer {
    Rsa(RsaKeyPair, &'static dyn signature::RsaEncoding),
    Ec(EcdsaKeyPair),
}

/// A signing key with its public JWK.
pub struct TestKey {
    /// Key id.
    pub kid: String,
    /// JWS `alg` this key signs with.
    pub alg: &'static str,
    signer: Signer,
    jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The current Unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

// === impl TestKey ===

impl TestKey {
    /// A fresh RSA-2048 key signing with `RS256` or `PS256`.
    pub fn rsa(kid: &str, alg: &'static str) -> Result<Self, String> {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|e| e.to_string())?;
        let pk = pair.public_key();
        let jwk = json!({
            "kid": kid, "kty": "RSA", "alg": alg, "use": "sig",
            "n": b64(pk.modulus().big_endian_without_leading_zero()),
            "e": b64(pk.exponent().big_endian_without_leading_zero()),
        });
        let enc: &'static dyn signature::RsaEncoding = match alg {
            "PS256" => &signature::RSA_PSS_SHA256,
            _ => &signature::RSA_PKCS1_SHA256,
        };
        Ok(TestKey {
            kid: kid.to_owned(),
            alg,
            signer: Signer::Rsa(pair, enc),
            jwk,
        })
    }

    /// A fresh P-256 key signing with `ES256`.
    pub fn ec(kid: &str) -> Result<Self, String> {
        let pair = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|e| e.to_string())?;
        let point = pair.public_key().as_ref().to_vec();
        if point.len() != 65 {
            return Err("unexpected EC point".into());
        }
        let jwk = json!({
            "kid": kid, "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        });
        Ok(TestKey {
            kid: kid.to_owned(),
            alg: "ES256",
            signer: Signer::Ec(pair),
            jwk,
        })
    }

    /// The public JWK.
    pub fn jwk(&self) -> Value {
        self.jwk.clone()
    }

    /// The public key bytes an attacker would find published: DER (SubjectPublicKeyInfo) for RSA,
    /// the uncompressed point for EC. Used to forge HS256 tokens keyed with it.
    pub fn public_der(&self) -> Vec<u8> {
        match &self.signer {
            Signer::Rsa(pair, _) => pair
                .public_key()
                .as_der()
                .map(|d| d.as_ref().to_vec())
                .unwrap_or_default(),
            Signer::Ec(pair) => pair.public_key().as_ref().to_vec(),
        }
    }

    /// Signs `claims` under a standard header (`alg`, `kid`, `typ: JWT`).
    pub fn token(&self, claims: &Value) -> String {
        self.sign(&json!({"alg": self.alg, "typ": "JWT", "kid": self.kid}), claims)
    }

    /// Signs `claims` under an arbitrary header.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let msg = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = match &self.signer {
            Signer::Rsa(pair, enc) => {
                let mut out = vec![0; pair.public_modulus_len()];
                match pair.sign(*enc, &rng, msg.as_bytes(), &mut out) {
                    Ok(()) => out,
                    Err(_) => Vec::new(),
                }
            }
            Signer::Ec(pair) => pair
                .sign(&rng, msg.as_bytes())
                .map(|s| s.as_ref().to_vec())
                .unwrap_or_default(),
        };
        format!("{msg}.{}", b64(&sig))
    }
}

/// A JWKS document holding the given keys.
pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

/// An HMAC-signed token (`HS256`, `HS384` or `HS512`) under `header`, keyed with `secret`.
pub fn hmac_token(secret: &[u8], header: &Value, claims: &Value) -> String {
    let alg = match header.get("alg").and_then(Value::as_str) {
        Some("HS384") => aws_lc_rs::hmac::HMAC_SHA384,
        Some("HS512") => aws_lc_rs::hmac::HMAC_SHA512,
        _ => aws_lc_rs::hmac::HMAC_SHA256,
    };
    let msg = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let tag = aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(alg, secret), msg.as_bytes());
    format!("{msg}.{}", b64(tag.as_ref()))
}

/// An unsigned token (`alg: none`, empty signature).
pub fn unsigned_token(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    )
}

/// Claims of a Keycloak-like service-account access token for `realm` at `issuer`.
pub fn service_account_claims(issuer: &str, azp: &str, roles: &[&str], ttl: i64) -> Value {
    let t = now();
    json!({
        "exp": t + ttl, "iat": t, "jti": format!("trrtcc:{t}"), "iss": issuer,
        "aud": ["realm-management", "account"], "sub": "00000000-0000-0000-0000-000000000001",
        "typ": "Bearer", "azp": azp, "scope": "profile email",
        "resource_access": { "realm-management": { "roles": roles } },
        "realm_access": { "roles": ["offline_access", "uma_authorization"] },
        "preferred_username": format!("service-account-{azp}"), "client_id": azp,
    })
}

/// Claims of a Keycloak-like initial (`InitialAccessToken`) or registration access token.
pub fn internal_claims(issuer: &str, typ: &str, exp: i64) -> Value {
    json!({ "exp": exp, "iat": now(), "jti": format!("{typ}-{}", now()), "iss": issuer, "aud": issuer, "typ": typ })
}
