//! Every reason's description names an action in one or two sentences, and no description or
//! hint reads a detail key the reason does not require.

use super::*;
use crate::error::{Detail, Refusal};
use crate::hints::{hint, take_missing};

fn ctx(kind: TokenKind, op: Operation) -> HintCtx<'static> {
    HintCtx {
        realm: Some("demo"),
        operation: Some(op),
        provider: Some("openid-connect"),
        kind: Some(kind),
        azp: Some("norole"),
        username: Some("service-account-norole"),
        public_url: "https://sso.example.com",
        upstream: "http://keycloak:8080",
    }
}

/// A refusal as a stage makes it: a fact without the fix, and the reason's required details.
fn refusal(reason: Reason) -> Refusal {
    let mut r = Refusal::new(reason, "The gateway found a problem with this request.");
    for key in required_details(reason) {
        r = r.detail(*key, format!("sample-{key}"));
    }
    r
}

#[test]
fn every_reason_names_its_fix_in_one_or_two_sentences() {
    let ctxs = [
        ctx(TokenKind::Bearer, Operation::Create),
        ctx(TokenKind::InitialAccess, Operation::Create),
        ctx(TokenKind::RegistrationAccess, Operation::Update),
        ctx(TokenKind::Anonymous, Operation::Read),
    ];
    let mut failures = Vec::new();
    for &reason in Reason::ALL {
        for c in &ctxs {
            take_missing();
            let r = refusal(reason);
            let text = describe(&r, c);
            let h = hint(&r, c);
            let f = fix(&r, c);
            let code = reason.code();
            let missing = take_missing();
            if !missing.is_empty() {
                failures.push(format!("{code}: reads detail keys {missing:?} not in required_details"));
            }
            if !names_action(&text) {
                failures.push(format!("{code}: no action in {text:?}"));
            }
            if sentences(&text) > 2 {
                failures.push(format!("{code}: {} sentences in {text:?}", sentences(&text)));
            }
            for t in [&text, &h] {
                if t.contains("(not known)") || required_details(reason).iter().any(|k| t.contains(&format!("<{k}>"))) {
                    failures.push(format!("{code}: placeholder in {t}"));
                }
            }
            if !names_action(&f) || sentences(&f) != 1 {
                failures.push(format!("{code}: fix {f:?}"));
            }
        }
    }
    failures.dedup();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_forum_case_reads_as_the_issue_asks() {
    let r = Refusal::new(
        Reason::MissingRole,
        "Client 'norole' lacks the realm-management role create-client needed to create clients in realm demo.",
    )
    .detail(Detail::RolesNeededAny, vec!["realm-management/create-client"]);
    let text = describe(&r, &ctx(TokenKind::Bearer, Operation::Create));
    assert_eq!(
        text,
        "Client 'norole' lacks the realm-management role create-client needed to create clients in realm demo. Assign realm-management/create-client under Clients → norole → Service account roles, then request a new token."
    );
}

#[test]
fn a_description_that_names_its_fix_is_kept() {
    let r = Refusal::new(
        Reason::AnonymousNotAllowed,
        "Anonymous registration is not enabled in realm demo: register with an initial access token.",
    );
    assert_eq!(
        describe(&r, &ctx(TokenKind::Anonymous, Operation::Create)),
        r.description
    );
}

#[test]
fn names_action_wants_an_imperative() {
    for yes in [
        "Assign it.",
        "The role is missing: assign it under Clients.",
        "Wait 3s; then retry.",
        "It expired. Request a new token.",
        "Retry later; operators: check Redis.",
    ] {
        assert!(names_action(yes), "{yes}");
    }
    for no in [
        "The token has expired.",
        "Keycloak could use another key.",
        "The path `send` is wrong.",
        "Clients that request tokens.",
        "",
    ] {
        assert!(!names_action(no), "{no}");
    }
}

#[test]
fn sentences_are_counted_outside_code_and_abbreviations() {
    assert_eq!(sentences("One. Two."), 2);
    assert_eq!(sentences("Use e.g. `a. B` here."), 1);
    assert_eq!(sentences("Keycloak 26.5.6 said no. Use 26.7.3."), 2);
    assert_eq!(sentences("A. B. C."), 3);
}
