use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use serde_json::{Value, json};

use super::*;

const ISS: &str = "http://kc/realms/demo";

fn accepted() -> Vec<String> {
    vec![ISS.to_owned()]
}
const NOW: i64 = 1_800_000_000;

fn jwt(header: Value, claims: Value) -> String {
    let e = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!("{}.{}.c2lnbmF0dXJl", e(&header), e(&claims))
}

fn route(op: Operation) -> RegRoute {
    let client_id = (op != Operation::Create).then(|| "c1".to_owned());
    RegRoute {
        realm: "demo".into(),
        provider: "openid-connect".into(),
        client_id,
        operation: op,
    }
}

fn hs(typ: &str, exp: i64) -> String {
    jwt(
        json!({"alg":"HS512","typ":"JWT","kid":"h1"}),
        json!({"typ": typ, "iss": ISS, "aud": ISS, "exp": exp, "iat": NOW - 10, "jti": "j1"}),
    )
}

fn run(token: &str, op: Operation) -> Result<Triaged, Refusal> {
    triage(Presented::Bearer(token), &route(op), &accepted(), 30, NOW)
}

fn headers(v: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(AUTHORIZATION, HeaderValue::from_static(v));
    h
}

#[test]
fn header_forms() {
    assert_eq!(extract(&HeaderMap::new()).unwrap(), Presented::Nothing);
    assert_eq!(extract(&headers("Bearer abc")).unwrap(), Presented::Bearer("abc"));
    assert_eq!(extract(&headers("bEaReR abc")).unwrap(), Presented::Bearer("abc"));
    assert_eq!(extract(&headers("Basic dXNlcjpwYXNz")).unwrap(), Presented::Basic);
    for bad in ["Bearer", "Bearer ", "Bearer  abc", "Bearer a b", "Bearer\tabc"] {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(bad).unwrap());
        assert_eq!(extract(&h).unwrap_err().reason, Reason::TokenMalformed, "{bad:?}");
    }
    assert_eq!(
        extract(&headers("Digest x")).unwrap_err().reason,
        Reason::AuthSchemeUnsupported
    );
    let bare = extract(&headers("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl")).unwrap_err();
    assert!(
        !bare.description.contains("c2lnbmF0dXJl"),
        "the token is not echoed: {}",
        bare.description
    );
    let mut two = headers("Bearer a");
    two.append(AUTHORIZATION, HeaderValue::from_static("Bearer b"));
    assert_eq!(extract(&two).unwrap_err().reason, Reason::TokenMalformed);
}

#[test]
fn kinds_by_typ() {
    let bearer = jwt(json!({"alg":"RS256","kid":"k"}), json!({"typ":"Bearer","iss":ISS}));
    assert!(matches!(run(&bearer, Operation::Create).unwrap(), Triaged::Bearer(_)));
    assert!(matches!(
        run(&hs("InitialAccessToken", 0), Operation::Create).unwrap(),
        Triaged::Hmac(TokenKind::InitialAccess, _)
    ));
    assert!(matches!(
        run(&hs("RegistrationAccessToken", 0), Operation::Update).unwrap(),
        Triaged::Hmac(TokenKind::RegistrationAccess, _)
    ));
    for typ in [json!("ID"), json!("Refresh"), Value::Null] {
        let t = jwt(json!({"alg":"RS256"}), json!({"typ": typ, "iss": ISS}));
        assert_eq!(
            run(&t, Operation::Create).unwrap_err().reason,
            Reason::TokenTypeUnsupported
        );
    }
    assert!(matches!(
        triage(Presented::Nothing, &route(Operation::Create), &accepted(), 30, NOW).unwrap(),
        Triaged::Anonymous
    ));
}

#[test]
fn hmac_checks() {
    // exp 0 = never; future exp fine; past exp refused.
    assert!(run(&hs("InitialAccessToken", 0), Operation::Create).is_ok());
    assert!(run(&hs("InitialAccessToken", NOW + 60), Operation::Create).is_ok());
    let e = run(&hs("InitialAccessToken", NOW - 3600), Operation::Create).unwrap_err();
    assert_eq!(e.reason, Reason::TokenExpired);
    assert!(
        e.description.contains("expired at 2027-01-15T07:00:00Z"),
        "{}",
        e.description
    );
    // wrong issuer
    let t = jwt(
        json!({"alg":"HS512"}),
        json!({"typ":"InitialAccessToken","iss":"http://other/realms/demo","exp":0}),
    );
    let e = run(&t, Operation::Create).unwrap_err();
    assert_eq!(e.reason, Reason::IssuerMismatch);
    assert!(e.description.contains("http://other/realms/demo") && e.description.contains(ISS));
    // not HMAC
    let t = jwt(
        json!({"alg":"RS256"}),
        json!({"typ":"InitialAccessToken","iss":ISS,"exp":0}),
    );
    assert_eq!(
        run(&t, Operation::Create).unwrap_err().reason,
        Reason::HmacAlgorithmExpected
    );
}

#[test]
fn kind_fits_operation() {
    for op in [Operation::Read, Operation::Update, Operation::Delete] {
        assert_eq!(
            run(&hs("InitialAccessToken", 0), op).unwrap_err().reason,
            Reason::TokenKindMismatch
        );
        assert!(run(&hs("RegistrationAccessToken", 0), op).is_ok());
    }
    let e = run(&hs("RegistrationAccessToken", 0), Operation::Create).unwrap_err();
    assert_eq!(e.reason, Reason::TokenKindMismatch);
    assert!(e.description.contains("anonymous"));
}

#[test]
fn basic_only_on_install() {
    let mut r = route(Operation::Read);
    assert_eq!(
        triage(Presented::Basic, &r, &accepted(), 30, NOW).unwrap_err().reason,
        Reason::AuthSchemeUnsupported
    );
    r.provider = "install".into();
    assert!(matches!(
        triage(Presented::Basic, &r, &accepted(), 30, NOW).unwrap(),
        Triaged::Basic
    ));
}

#[test]
fn malformed_tokens() {
    for t in ["abc", "a.b", "a.b.c.d", "e30.e30.!!", "x.e30.c2ln"] {
        assert_eq!(
            run(t, Operation::Create).unwrap_err().reason,
            Reason::TokenMalformed,
            "{t}"
        );
    }
}

#[test]
fn dates() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_795_837_643), "2026-11-28T03:47:23Z");
}

#[test]
fn a_token_without_iss_is_told_apart_from_a_wrong_one() {
    let accepted = vec![ISS.to_owned(), "http://gw/realms/demo".to_owned()];
    assert!(check_issuer(Some("http://gw/realms/demo"), "demo", &accepted).is_ok());
    for missing in [None, Some("")] {
        let e = check_issuer(missing, "demo", &accepted).unwrap_err();
        assert_eq!(e.reason, Reason::IssMissing);
        assert!(!e.description.contains("``"), "{}", e.description);
    }
    let e = check_issuer(Some("http://other/realms/demo"), "demo", &accepted).unwrap_err();
    assert_eq!(e.reason, Reason::IssuerMismatch);
    assert!(
        e.description.contains(ISS) && e.description.contains("http://gw/realms/demo"),
        "{}",
        e.description
    );
    assert_eq!(e.details["accepted_issuers"], serde_json::json!(accepted));
}

#[test]
fn the_blockwise_checks_agree_with_to_str_and_is_ascii_whitespace() {
    // Every byte value, at the start, in the middle of a long token and at its end.
    let long = "a".repeat(200);
    for b in 0..=255u8 {
        for at in [0, 100, 199, 64, 63] {
            let mut bytes = long.clone().into_bytes();
            bytes[at] = b;
            let Ok(v) = HeaderValue::from_bytes(&bytes) else {
                continue;
            };
            assert_eq!(visible_ascii(v.as_bytes()), v.to_str().ok(), "byte {b:#x} at {at}");
            let spaced = bytes.iter().any(|b| b.is_ascii_whitespace());
            if v.to_str().is_ok() {
                assert_eq!(!all_bytes(&bytes, |b| b > b' '), spaced, "byte {b:#x} at {at}");
            }
        }
    }
    let tab = headers("Bearer abc\tdef");
    assert_eq!(extract(&tab).unwrap_err().reason, Reason::TokenMalformed);
}
