use serde_json::json;

use super::*;
use crate::testkit::{TestKey, hmac_token, now, service_account_claims, unsigned_token};
use crate::token::claims::decode;
use crate::token::jwks::parse_key;

const ISS: &str = "http://kc/realms/demo";

fn accepted() -> Vec<String> {
    vec![ISS.to_owned()]
}
const ALGS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256];

fn claims(v: serde_json::Value) -> Claims {
    serde_json::from_value(v).unwrap()
}

#[test]
fn algorithms_from_config_only() {
    assert_eq!(check_alg("RS256", &ALGS).unwrap(), Algorithm::RS256);
    assert_eq!(check_alg("ES256", &ALGS).unwrap(), Algorithm::ES256);
    for bad in ["none", "NONE", "HS256", "HS512", "RS512", "XYZ", ""] {
        assert_eq!(
            check_alg(bad, &ALGS).unwrap_err().reason,
            Reason::AlgorithmNotAllowed,
            "{bad}"
        );
    }
    assert!(check_alg("RS256", &[Algorithm::ES256]).is_err());
}

#[test]
fn claim_rules() {
    let rs = RealmSettings::default();
    let t = 1_000_000;
    let ok = claims(json!({"iss": ISS, "exp": t + 60, "iat": t}));
    assert!(check_claims(&ok, "demo", &accepted(), &rs, 30, t).is_ok());
    let e = check_claims(
        &claims(json!({"iss": "http://other/realms/demo", "exp": t + 60})),
        "demo",
        &accepted(),
        &rs,
        30,
        t,
    )
    .unwrap_err();
    assert_eq!(e.reason, Reason::IssuerMismatch);
    assert_eq!(
        check_claims(&claims(json!({"iss": ISS})), "demo", &accepted(), &rs, 30, t)
            .unwrap_err()
            .reason,
        Reason::ExpMissing
    );
    // expired beyond leeway vs. within leeway
    assert_eq!(
        check_claims(
            &claims(json!({"iss": ISS, "exp": t - 31})),
            "demo",
            &accepted(),
            &rs,
            30,
            t
        )
        .unwrap_err()
        .reason,
        Reason::TokenExpired
    );
    assert!(
        check_claims(
            &claims(json!({"iss": ISS, "exp": t - 29})),
            "demo",
            &accepted(),
            &rs,
            30,
            t
        )
        .is_ok()
    );
    // nbf and iat in the future
    assert_eq!(
        check_claims(
            &claims(json!({"iss": ISS, "exp": t + 600, "nbf": t + 31})),
            "demo",
            &accepted(),
            &rs,
            30,
            t
        )
        .unwrap_err()
        .reason,
        Reason::TokenNotYetValid
    );
    assert!(
        check_claims(
            &claims(json!({"iss": ISS, "exp": t + 600, "nbf": t + 29})),
            "demo",
            &accepted(),
            &rs,
            30,
            t
        )
        .is_ok()
    );
    assert_eq!(
        check_claims(
            &claims(json!({"iss": ISS, "exp": t + 600, "iat": t + 120})),
            "demo",
            &accepted(),
            &rs,
            30,
            t
        )
        .unwrap_err()
        .reason,
        Reason::TokenIssuedInFuture
    );
}

#[test]
fn extreme_time_claims_do_not_overflow() {
    let rs = RealmSettings::default();
    let t = 1_000_000;
    assert!(
        check_claims(
            &claims(json!({"iss": ISS, "exp": i64::MAX, "nbf": i64::MIN, "iat": i64::MIN})),
            "demo",
            &accepted(),
            &rs,
            30,
            t
        )
        .is_ok()
    );
    let e = check_claims(
        &claims(json!({"iss": ISS, "exp": i64::MIN})),
        "demo",
        &accepted(),
        &rs,
        30,
        t,
    )
    .unwrap_err();
    assert_eq!(e.reason, Reason::TokenExpired);
    assert_eq!(
        check_claims(
            &claims(json!({"iss": ISS, "exp": i64::MAX, "nbf": i64::MAX})),
            "demo",
            &accepted(),
            &rs,
            30,
            t
        )
        .unwrap_err()
        .reason,
        Reason::TokenNotYetValid
    );
}

#[test]
fn audience_and_azp() {
    let rs = RealmSettings {
        audiences: vec!["registrar-api".into()],
        azp: vec!["registrar".into()],
        ..Default::default()
    };
    let t = 1_000_000;
    let good = claims(json!({"iss": ISS, "exp": t + 60, "aud": ["x", "registrar-api"], "azp": "registrar"}));
    assert!(check_claims(&good, "demo", &accepted(), &rs, 0, t).is_ok());
    let bad_aud = claims(json!({"iss": ISS, "exp": t + 60, "aud": "account", "azp": "registrar"}));
    assert_eq!(
        check_claims(&bad_aud, "demo", &accepted(), &rs, 0, t)
            .unwrap_err()
            .reason,
        Reason::AudienceMismatch
    );
    let bad_azp = claims(json!({"iss": ISS, "exp": t + 60, "aud": "registrar-api", "azp": "evil"}));
    assert_eq!(
        check_claims(&bad_azp, "demo", &accepted(), &rs, 0, t)
            .unwrap_err()
            .reason,
        Reason::AzpMismatch
    );
}

#[test]
fn signatures() {
    for key in [
        TestKey::rsa("r1", "RS256").unwrap(),
        TestKey::rsa("p1", "PS256").unwrap(),
        TestKey::ec("e1").unwrap(),
    ] {
        let token = key.token(&service_account_claims(ISS, "registrar", &["create-client"], 60));
        let d = decode(&token).unwrap();
        let k = parse_key(&key.jwk()).unwrap();
        let alg = Algorithm::from_str(key.alg).unwrap();
        assert!(check_signature(&token, &d, &k, alg).is_ok(), "{}", key.alg);
        // Splice in other claims: the signature must fail.
        let mut forged = service_account_claims(ISS, "registrar", &["manage-clients"], 60);
        forged["exp"] = json!(now() + 60);
        let parts: Vec<&str> = token.split('.').collect();
        let other = key.token(&forged);
        let spliced = format!("{}.{}.{}", parts[0], other.split('.').nth(1).unwrap(), parts[2]);
        let d2 = decode(&spliced).unwrap();
        assert_eq!(
            check_signature(&spliced, &d2, &k, alg).unwrap_err().reason,
            Reason::SignatureInvalid
        );
    }
}

#[test]
fn key_must_fit_algorithm() {
    let rsa = TestKey::rsa("r1", "RS256").unwrap();
    let ec = TestKey::ec("e1").unwrap();
    let token = ec.token(&service_account_claims(ISS, "x", &[], 60));
    let d = decode(&token).unwrap();
    let e = check_signature(&token, &d, &parse_key(&rsa.jwk()).unwrap(), Algorithm::ES256).unwrap_err();
    assert_eq!(e.reason, Reason::KeyUnusable);
    let token = rsa.token(&service_account_claims(ISS, "x", &[], 60));
    let d = decode(&token).unwrap();
    let e = check_signature(&token, &d, &parse_key(&rsa.jwk()).unwrap(), Algorithm::PS256).unwrap_err();
    assert_eq!(e.reason, Reason::KeyUnusable);
}

#[test]
fn algorithm_confusion_forgery_fails() {
    // HS256 keyed with the realm's RSA public key: refused by algorithm before any key is used.
    let rsa = TestKey::rsa("r1", "RS256").unwrap();
    let claims = service_account_claims(ISS, "x", &["manage-clients"], 60);
    let forged = hmac_token(
        &rsa.public_der(),
        &json!({"alg":"HS256","kid":"r1","typ":"JWT"}),
        &claims,
    );
    let d = decode(&forged).unwrap();
    assert_eq!(
        check_alg(&d.header.alg, &ALGS).unwrap_err().reason,
        Reason::AlgorithmNotAllowed
    );
    // Even past the algorithm check, an RSA key never verifies HS256.
    let e = check_signature(&forged, &d, &parse_key(&rsa.jwk()).unwrap(), Algorithm::HS256).unwrap_err();
    assert_eq!(e.reason, Reason::KeyUnusable);
    let none = unsigned_token(&claims);
    let d = decode(&none).unwrap();
    assert_eq!(
        check_alg(&d.header.alg, &ALGS).unwrap_err().reason,
        Reason::AlgorithmNotAllowed
    );
}
