use serde_json::json;

use super::*;
use crate::testkit::TestKey;

#[test]
fn bad_keys_are_skipped_not_fatal() {
    let good = TestKey::rsa("good", "RS256").unwrap();
    let ec = TestKey::ec("ec").unwrap();
    let doc = json!({"keys": [
        good.jwk(),
        ec.jwk(),
        {"kid": "enc", "kty": "RSA", "use": "enc", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"},
        {"kid": "hmac", "kty": "oct", "k": "c2VjcmV0"},
        {"kid": "junk", "kty": "RSA"},
        {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
        "not even an object"
    ]});
    let (keys, skipped) = parse_set(doc.to_string().as_bytes()).unwrap();
    let mut kids: Vec<_> = keys.keys().cloned().collect();
    kids.sort();
    assert_eq!(kids, ["ec", "good"]);
    assert_eq!(skipped.len(), 5, "{skipped:?}");
    assert_eq!(keys["ec"].alg, Some(Algorithm::ES256));
    assert_eq!(keys["good"].family, AlgorithmFamily::Rsa);
}

#[test]
fn whole_document_errors() {
    assert!(parse_set(b"not json").is_err());
    assert!(parse_set(b"{\"nokeys\": []}").is_err());
    let (keys, _) = parse_set(b"{\"keys\": []}").unwrap();
    assert!(keys.is_empty());
}

#[test]
fn alg_must_fit_key_type() {
    let good = TestKey::rsa("k", "RS256").unwrap();
    let mut jwk = good.jwk();
    jwk["alg"] = json!("ES256");
    assert!(parse_key(&jwk).is_err());
}
