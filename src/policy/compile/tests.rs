use super::*;

/// A policy file; `version = 1` is added when the text does not set a version itself.
fn src(name: &str, text: &str) -> Source {
    let text = if text.contains("version") {
        text.to_owned()
    } else {
        format!("version = 1\n{text}")
    };
    Source {
        path: PathBuf::from(name),
        text,
    }
}

fn ok(text: &str) -> Snapshot {
    match compile(&[src("p.toml", text)], 1) {
        Ok(s) => s,
        Err(e) => panic!("{}", e.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")),
    }
}

fn errs(text: &str) -> Vec<ConfigError> {
    compile(&[src("p.toml", text)], 1).unwrap_err()
}

#[test]
fn built_in_defaults_match_keycloak() {
    let s = ok("");
    let p = s.for_realm("anything");
    let create = p.op(Operation::Create).unwrap();
    assert_eq!(create.kinds.value, vec![TokenKind::Bearer, TokenKind::InitialAccess]);
    let roles: Vec<String> = create.roles_any.value.iter().map(|r| r.display_in("demo")).collect();
    assert_eq!(
        roles,
        ["realm-management/create-client", "realm-management/manage-clients"]
    );
    let roles: Vec<String> = create.roles_any.value.iter().map(|r| r.display_in("master")).collect();
    assert_eq!(roles, ["master-realm/create-client", "master-realm/manage-clients"]);
    let read: Vec<String> = p
        .op(Operation::Read)
        .unwrap()
        .roles_any
        .value
        .iter()
        .map(|r| r.display_in("demo"))
        .collect();
    assert_eq!(
        read,
        ["realm-management/view-clients", "realm-management/manage-clients"]
    );
    let update: Vec<String> = p
        .op(Operation::Update)
        .unwrap()
        .roles_any
        .value
        .iter()
        .map(|r| r.display_in("demo"))
        .collect();
    assert_eq!(update, ["realm-management/manage-clients"]);
    assert_eq!(
        p.op(Operation::Delete).unwrap().kinds.value,
        vec![TokenKind::Bearer, TokenKind::RegistrationAccess]
    );
    assert!(create.kinds.origin.as_str().starts_with("built-in"));
}

#[test]
fn realm_inherits_from_default_key_by_key() {
    let s = ok(r#"
[default]
providers = ["openid-connect"]
[default.metadata.redirect_uris]
schemes = ["https"]
hosts = ["*.example.com"]

[realms.demo]
providers = ["openid-connect", "default"]
[realms.demo.create]
token_kinds = ["initial_access"]
[realms.demo.metadata.redirect_uris]
loopback = true
"#);
    let demo = s.for_realm("demo");
    assert_eq!(demo.providers.value.len(), 2);
    assert_eq!(
        demo.op(Operation::Create).unwrap().kinds.value,
        vec![TokenKind::InitialAccess]
    );
    assert_eq!(
        demo.op(Operation::Create).unwrap().kinds.origin,
        "realms.demo.create.token_kinds"
    );
    let r = &demo.metadata.redirect.value;
    assert!(r.loopback);
    assert_eq!(r.hosts.as_deref(), Some(&["*.example.com".to_owned()][..]));
    assert_eq!(s.for_realm("other").providers.value.len(), 1);
    assert!(!s.for_realm("other").metadata.redirect.value.loopback);
}

#[test]
fn errors_name_line_and_key() {
    // `src` puts `version = 1` on line 1, so the lines below are one further down.
    let e = errs(
        "[realms.demo]\nproviders = [\"openid-connect\"]\n[realms.demo.create]\ntoken_kinds = [\"bearer\", \"magic\"]\n",
    );
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].position.unwrap().0, 5);
    assert_eq!(e[0].key, "create.token_kinds");
    assert!(e[0].message.contains("magic"));
    let e = errs("[realms.demo.create]\ntoken_kind = [\"bearer\"]\n");
    assert_eq!(e[0].position.unwrap().0, 3);
    assert!(e[0].message.contains("unknown field"));
    let e = errs("[realms.demo.metadata]\nclient_id_pattern = \"[a-\"\n");
    assert_eq!(e[0].key, "metadata.client_id_pattern");
    assert_eq!(e[0].position.unwrap().0, 3);
}

#[test]
fn contradictions_refused() {
    let e = errs("[realms.demo.read]\ntoken_kinds = [\"initial_access\"]\n");
    assert!(e[0].message.contains("never accepts an initial access token"));
    let e = errs("[realms.demo.create]\ntoken_kinds = [\"registration_access\"]\n");
    assert!(e[0].message.contains("anonymous"));
    let e = errs("[realms.demo.create]\ntoken_kinds = [\"initial_access\"]\nscopes = [\"x\"]\n");
    assert!(e[0].message.contains("bearer tokens"));
    let e =
        errs("[realms.demo.metadata.redirect_uris]\nschemes = [\"com.example.app\"]\nhosts = [\"*.example.com\"]\n");
    assert!(e[0].message.contains("neither http nor https"));
    let e = errs("[realms.demo.quota]\ncreates = 0\nwindow = \"1h\"\n");
    assert_eq!(e[0].key, "quota.creates");
    let e = errs("[realms.demo.quota]\ncreates = 5\n");
    assert!(e[0].message.contains("needs a window"), "{}", e[0]);
    let e = errs("[realms.demo.quota]\nmode = \"shadow\"\n");
    assert!(e[0].message.contains("realm_creates"), "{}", e[0]);
    let e = errs("[realms.demo.quota]\nrealm_creates = 0\nrealm_window = \"1h\"\n");
    assert_eq!(e[0].key, "quota.realm_creates");
    let e = errs("[realms.demo.metadata]\ngrant_types = [\"authorisation_code\"]\n");
    assert!(e[0].message.contains("authorisation_code"));
    let e = errs("[realms.demo.metadata.redirect_uris]\nhosts = [\"*example.com\"]\n");
    assert!(e[0].message.contains("*example.com"));
    let e = errs("[realms.demo.metadata]\nforbidden_fields = [\"protocolMapers\"]\n");
    assert!(e[0].message.contains("protocolMapers"), "{}", e[0]);
    assert!(
        compile(
            &[src(
                "p.toml",
                "[realms.demo.metadata]\nforbidden_fields = [\"protocolMappers\", \"jwks_uri\", \"service_accounts\"]\n"
            )],
            1
        )
        .is_ok()
    );
}

#[test]
fn duplicates_across_files_refused() {
    let a = src("a.toml", "[realms.demo]\nproviders = [\"default\"]\n");
    let b = src("b.toml", "[realms.demo]\nproviders = [\"openid-connect\"]\n");
    let e = compile(&[a, b], 1).unwrap_err();
    assert!(e[0].message.contains("a.toml"), "{}", e[0]);
    assert_eq!(e[0].file.as_deref(), Some(std::path::Path::new("b.toml")));
}

#[test]
fn all_errors_reported_at_once() {
    let a = src("a.toml", "[realms.x]\nproviders = 3\n");
    let b = src("b.toml", "[realms.y.create]\ntoken_kinds = [\"nope\"]\n");
    assert_eq!(compile(&[a, b], 1).unwrap_err().len(), 2);
}

#[test]
fn shadow_modes() {
    let s = ok(
        "[realms.demo]\nmode = \"shadow\"\n[realms.demo.metadata]\nmode = \"enforce\"\ngrant_types = [\"authorization_code\"]\n",
    );
    let demo = s.for_realm("demo");
    assert!(demo.op(Operation::Create).unwrap().roles_any.shadow);
    assert!(!demo.metadata.grant_types.as_ref().unwrap().shadow);
    // A realm's own mode beats a section mode inherited from [default].
    let s = ok("[default.create]\nmode = \"shadow\"\n[realms.demo]\nmode = \"enforce\"\n");
    assert!(!s.for_realm("demo").op(Operation::Create).unwrap().kinds.shadow);
    assert!(s.for_realm("other").op(Operation::Create).unwrap().kinds.shadow);
}

#[test]
fn checksum_changes_with_content() {
    let a = checksum(&[src("a.toml", "x")]);
    assert_ne!(a, checksum(&[src("a.toml", "y")]));
    assert_eq!(a.len(), 16);
}

#[test]
fn version_is_required_and_an_empty_file_is_an_error() {
    for text in [
        "",
        "   \n\n",
        "# only a comment\n",
        "[realms.demo]\nproviders = [\"default\"]\n",
    ] {
        let e = compile(
            &[Source {
                path: PathBuf::from("p.toml"),
                text: text.to_owned(),
            }],
            1,
        )
        .unwrap_err();
        assert!(e.iter().any(|e| e.key == "version"), "{text:?}: {e:?}");
    }
    let e = compile(&[src("a.toml", "version = 1\n"), src("b.toml", "version = 2\n")], 1).unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
}

#[test]
fn admin_api_defaults_and_own_rule_set() {
    let s = ok("[realms.demo.metadata.redirect_uris]\nhosts = [\"a.example\"]\n");
    let a = &s.for_realm("demo").admin;
    assert_eq!(a.writes.value, crate::policy::admin_api::AdminWrites::ByCaller);
    assert_eq!(a.console_clients.value, ["security-admin-console", "admin-cli"]);
    assert!(a.allow.value.contains("client.delete"));
    assert_eq!(a.metadata.redirect.origin, "realms.demo.metadata.redirect_uris");
    let s = ok(
        "[realms.demo.admin_api]\nwrites = \"govern\"\n[realms.demo.admin_api.metadata.redirect_uris]\nhosts = [\"b.example\"]\n",
    );
    let a = &s.for_realm("demo").admin;
    assert_eq!(a.writes.value, crate::policy::admin_api::AdminWrites::Govern);
    assert_eq!(
        a.metadata.redirect.origin,
        "realms.demo.admin_api.metadata.redirect_uris"
    );
    let e = errs("[realms.demo.admin_api]\nwrites = \"sometimes\"\nallow = [\"client.Nope\"]\n");
    assert_eq!(e.len(), 2, "{e:?}");
}
