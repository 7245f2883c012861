use super::*;

fn reg(method: Method, path: &str) -> Result<Route, Refusal> {
    classify(&method, path, "")
}

fn ok(method: Method, path: &str) -> RegRoute {
    match reg(method, path) {
        Ok(Route::Registration(r)) => r,
        other => panic!("{path}: {other:?}"),
    }
}

fn bad(method: Method, path: &str) -> Reason {
    match reg(method, path) {
        Err(r) => r.reason,
        other => panic!("{path} should be refused: {other:?}"),
    }
}

#[test]
fn operations_from_method_and_shape() {
    let r = ok(Method::POST, "/realms/demo/clients-registrations/default");
    assert_eq!(
        (r.realm.as_str(), r.provider.as_str(), r.client_id, r.operation),
        ("demo", "default", None, Operation::Create)
    );
    let r = ok(Method::GET, "/realms/demo/clients-registrations/openid-connect/abc");
    assert_eq!((r.client_id.as_deref(), r.operation), (Some("abc"), Operation::Read));
    assert_eq!(
        ok(Method::PUT, "/realms/demo/clients-registrations/default/abc").operation,
        Operation::Update
    );
    assert_eq!(
        ok(Method::DELETE, "/realms/demo/clients-registrations/default/abc").operation,
        Operation::Delete
    );
    assert_eq!(
        ok(Method::OPTIONS, "/realms/demo/clients-registrations/openid-connect").operation,
        Operation::Preflight
    );
}

#[test]
fn decoded_names() {
    let r = ok(Method::GET, "/realms/my%20realm/clients-registrations/default/a%40b");
    assert_eq!(r.realm, "my realm");
    assert_eq!(r.client_id.as_deref(), Some("a@b"));
}

#[test]
fn other_paths_pass() {
    for p in [
        "/",
        "/realms/demo/protocol/openid-connect/token",
        "/admin/realms/demo/clients",
        "/realms/demo/account",
    ] {
        assert_eq!(reg(Method::GET, p).unwrap(), Route::Other, "{p}");
    }
}

#[test]
fn malformed_paths_refused() {
    for p in [
        "/realms//clients-registrations/default",
        "/realms/demo/clients-registrations/",
        "/realms/demo/clients-registrations",
        "/realms/demo/clients-registrations/default/",
        "/realms/demo/clients-registrations/default/a/b",
        "/realms/demo/clients-registrations/default/a%2Fb",
        "/realms/demo/clients-registrations/default/%2e%2e",
        "/realms/demo/clients-registrations/./default",
        "/realms/demo/x/../clients-registrations/default",
        "/realms/demo/clients%2Dregistrations/default",
        "/realms/demo/Clients-Registrations/default",
        "/realms/demo/clients-registrations;a=b/default",
        "/realms/demo\\clients-registrations/default",
        "//realms/demo/clients-registrations/default",
        "/realms/demo/clients-registrations/default/%zz",
        "/realms/demo/clients-regi%73trations%2Fdefault",
        "/realms/demo%0Aforged/clients-registrations/default",
        "/realms/demo/clients-registrations/default/a%09b",
    ] {
        assert_eq!(bad(Method::POST, p), Reason::PathMalformed, "{p}");
    }
}

#[test]
fn wrong_methods_refused() {
    assert_eq!(
        bad(Method::GET, "/realms/demo/clients-registrations/default"),
        Reason::MethodNotAllowed
    );
    assert_eq!(
        bad(Method::POST, "/realms/demo/clients-registrations/default/abc"),
        Reason::MethodNotAllowed
    );
    assert_eq!(
        bad(Method::PATCH, "/realms/demo/clients-registrations/default/abc"),
        Reason::MethodNotAllowed
    );
}

#[test]
fn prefix() {
    let r = classify(
        &Method::POST,
        "/auth/realms/demo/clients-registrations/default",
        "/auth",
    )
    .unwrap();
    assert!(matches!(r, Route::Registration(_)));
    let e = classify(&Method::POST, "/realms/demo/clients-registrations/default", "/auth").unwrap_err();
    assert_eq!(e.reason, Reason::PathMalformed);
}
