use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::route::Operation;
use crate::token::Claims;

fn route(op: Operation) -> RegRoute {
    RegRoute {
        realm: "demo".into(),
        provider: "default".into(),
        client_id: (op != Operation::Create).then(|| "c1".into()),
        operation: op,
    }
}

fn id(kind: TokenKind, claims: serde_json::Value) -> Identity {
    Identity {
        kind,
        claims: Arc::new(serde_json::from_value::<Claims>(claims).unwrap()),
        kid: Some("k1".into()),
        cached: false,
    }
}

const SEEN: &str = "http://gw:8000/realms/demo";
const SEEN_ORIGIN: &str = "http://gw:8000";

fn classify_kc(status: u16, body: serde_json::Value, op: Operation, identity: &Identity) -> Refusal {
    let r = route(op);
    let k = Known {
        route: &r,
        identity,
        metadata: None,
        sent: &crate::pipeline::ctx::Sent::default(),
        seen_origin: SEEN_ORIGIN,
    };
    let (e, _) = parse_error(body.to_string().as_bytes());
    classify(status, &e, &k)
}

#[test]
fn catalogue() {
    let anon = id(TokenKind::Anonymous, json!({}));
    let bearer = id(
        TokenKind::Bearer,
        json!({"azp": "registrar", "resource_access": {"account": {"roles": ["view-profile"]}}}),
    );
    let iat = id(TokenKind::InitialAccess, json!({}));
    let rat = id(TokenKind::RegistrationAccess, json!({"registration_auth": "anonymous"}));
    let e = |error: &str, desc: &str| json!({"error": error, "error_description": desc});
    let cases: Vec<(u16, serde_json::Value, Operation, &Identity, Reason)> = vec![
        (
            403,
            e("insufficient_scope", "Forbidden"),
            Operation::Create,
            &bearer,
            Reason::MissingRole,
        ),
        (
            401,
            e("invalid_token", "Failed decode token"),
            Operation::Create,
            &bearer,
            Reason::TokenRejected,
        ),
        (
            401,
            e("invalid_token", "Invalid type of token"),
            Operation::Create,
            &bearer,
            Reason::InvalidTokenType,
        ),
        (
            401,
            e("invalid_token", "Initial Access Token not found"),
            Operation::Create,
            &iat,
            Reason::InitialTokenNotFound,
        ),
        (
            401,
            e("invalid_token", "No remaining count on initial access token"),
            Operation::Create,
            &iat,
            Reason::InitialTokenExhausted,
        ),
        (
            401,
            e("invalid_token", "Expired initial access token"),
            Operation::Create,
            &iat,
            Reason::InitialTokenExpired,
        ),
        (
            401,
            e("invalid_token", "Not initial access token allowed"),
            Operation::Read,
            &iat,
            Reason::InitialTokenWrongOperation,
        ),
        (
            401,
            e(
                "invalid_token",
                "Not authorized to update client. Maybe missing token or bad token type.",
            ),
            Operation::Update,
            &rat,
            Reason::RegistrationTokenInvalid,
        ),
        (
            401,
            e(
                "invalid_token",
                "Not authorized to view client. Not valid token or client credentials provided.",
            ),
            Operation::Read,
            &anon,
            Reason::NotAuthorized,
        ),
        (
            403,
            e(
                "insufficient_scope",
                "Policy 'Trusted Hosts' rejected request to client-registration service. Details: Host not trusted.",
            ),
            Operation::Create,
            &anon,
            Reason::TrustedHostRejected,
        ),
        (
            403,
            e(
                "insufficient_scope",
                "Policy 'Trusted Hosts' rejected request to client-registration service. Details: URI doesn't match any trusted host or trusted domain",
            ),
            Operation::Create,
            &anon,
            Reason::TrustedUriRejected,
        ),
        (
            403,
            e(
                "insufficient_scope",
                "Policy 'Allowed Client Scopes' rejected request to client-registration service. Details: Not permitted to use specified clientScope",
            ),
            Operation::Create,
            &iat,
            Reason::ClientScopeRejected,
        ),
        (
            403,
            e(
                "insufficient_scope",
                "Policy 'Max Clients Limit' rejected request to client-registration service. Details: It's allowed to have max 200 clients per realm",
            ),
            Operation::Create,
            &anon,
            Reason::MaxClientsReached,
        ),
        (
            403,
            e(
                "insufficient_scope",
                "Policy 'Allowed Protocol Mapper Types' rejected request to client-registration service. Details: ProtocolMapper type not allowed",
            ),
            Operation::Create,
            &iat,
            Reason::ProtocolMapperRejected,
        ),
        (
            403,
            e(
                "insufficient_scope",
                "Policy 'Consent Required' rejected request to client-registration service. Details: Not permitted to update consentRequired to false",
            ),
            Operation::Update,
            &rat,
            Reason::RegistrationPolicyRejected,
        ),
        (
            403,
            e("insufficient_scope", "invalid_client_metadata"),
            Operation::Create,
            &iat,
            Reason::ClientPolicyRejected,
        ),
        (
            403,
            e("invalid_request", "HTTPS required"),
            Operation::Create,
            &iat,
            Reason::HttpsRequired,
        ),
        (
            400,
            e("invalid_redirect_uri", "Redirect URIs must not contain an URI fragment"),
            Operation::Create,
            &iat,
            Reason::InvalidRedirectUri,
        ),
        (
            400,
            e("invalid_client_metadata", "Client Identifier in use"),
            Operation::Create,
            &iat,
            Reason::ClientIdInUse,
        ),
        (
            400,
            e("invalid_client_metadata", "Client Identifier modified"),
            Operation::Update,
            &rat,
            Reason::ClientIdModified,
        ),
        (
            400,
            e("invalid_client_metadata", "Client Identifier included"),
            Operation::Create,
            &iat,
            Reason::ClientIdIncluded,
        ),
        (
            400,
            e("invalid_client_metadata", "Client metadata invalid"),
            Operation::Create,
            &iat,
            Reason::ClientMetadataInvalid,
        ),
        (
            400,
            e("invalid_client", "Wrong client protocol."),
            Operation::Read,
            &bearer,
            Reason::WrongClientProtocol,
        ),
        (
            404,
            e("invalid_request", "Client not found"),
            Operation::Read,
            &bearer,
            Reason::ClientNotFound,
        ),
        (
            404,
            json!({"error": "RESTEASY003210: Could not find resource for full path"}),
            Operation::Create,
            &bearer,
            Reason::KeycloakError,
        ),
        (
            404,
            json!({"error": "Client registration provider not found"}),
            Operation::Create,
            &bearer,
            Reason::ProviderNotFound,
        ),
        (
            404,
            json!({"error": "Realm does not exist"}),
            Operation::Create,
            &bearer,
            Reason::RealmNotFound,
        ),
        (
            400,
            json!({"error": "Invalid json representation for OIDCClientRepresentation. Unrecognized field \"resource\" at line 1 column 32."}),
            Operation::Create,
            &iat,
            Reason::UnrecognizedField,
        ),
        (
            500,
            json!({"error": "unknown_error"}),
            Operation::Create,
            &bearer,
            Reason::KeycloakServerError,
        ),
        (
            409,
            e("conflict", "odd"),
            Operation::Create,
            &bearer,
            Reason::KeycloakError,
        ),
    ];
    for (status, body, op, who, want) in cases {
        let r = classify_kc(status, body.clone(), op, who);
        assert_eq!(r.reason, want, "{status} {body}");
    }
}

#[test]
fn plain_text_bodies() {
    let (e, raw) = parse_error(b"Unrecognized field \"resource\" (class x), not marked as ignorable");
    assert_eq!(
        raw,
        json!("Unrecognized field \"resource\" (class x), not marked as ignorable")
    );
    let r = route(Operation::Create);
    let who = id(TokenKind::InitialAccess, json!({}));
    let k = Known {
        route: &r,
        identity: &who,
        metadata: None,
        sent: &crate::pipeline::ctx::Sent::default(),
        seen_origin: SEEN_ORIGIN,
    };
    let out = classify(400, &e, &k);
    assert_eq!(out.reason, Reason::UnrecognizedField);
    assert_eq!(out.details["field"], "resource");
}

#[test]
fn failed_decode_is_told_apart() {
    let r = route(Operation::Create);
    let base = Refusal::new(Reason::TokenRejected, "x");
    let far = crate::testkit::now() + 600;
    let cases = [
        (
            id(
                TokenKind::Bearer,
                json!({"iss": "http://127.0.0.1:8080/realms/demo", "exp": far}),
            ),
            None,
            Reason::IssuerMismatch,
        ),
        (
            id(TokenKind::Bearer, json!({"iss": SEEN, "exp": far})),
            Some(false),
            Reason::KidUnknown,
        ),
        (
            id(TokenKind::Bearer, json!({"iss": SEEN, "exp": far})),
            Some(true),
            Reason::TokenRevoked,
        ),
        (
            id(TokenKind::InitialAccess, json!({"iss": SEEN, "exp": 0})),
            None,
            Reason::HmacTokenRejected,
        ),
        (
            id(TokenKind::RegistrationAccess, json!({"iss": SEEN, "exp": 100})),
            None,
            Reason::TokenExpired,
        ),
    ];
    for (who, held, want) in cases {
        let k = Known {
            route: &r,
            identity: &who,
            metadata: None,
            sent: &crate::pipeline::ctx::Sent::default(),
            seen_origin: SEEN_ORIGIN,
        };
        assert_eq!(diagnose_decode_failure(base.clone(), &k, held).reason, want);
    }
}

#[test]
fn locations_move_to_public_url() {
    let origins = "http://keycloak:8080";
    assert_eq!(
        public_location(
            "http://keycloak:8080/realms/demo/clients-registrations/openid-connect/x",
            origins,
            "https://sso.example.com"
        )
        .as_deref(),
        Some("https://sso.example.com/realms/demo/clients-registrations/openid-connect/x")
    );
    assert_eq!(public_location("http://keycloak:80800/x", origins, "https://p"), None);
    assert_eq!(public_location("https://sso.example.com/x", origins, "https://p"), None);
}
