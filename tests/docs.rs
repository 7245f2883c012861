//! Keeps `docs/errors.md`, `docs/policy.md` and `docs/config.md` in step with the code: every
//! reason code, policy key, settings key and flag documented, and every example valid.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dcr_gateway::config::{FileConfig, Overrides, load};
use dcr_gateway::error::{Reason, Stage};
use dcr_gateway::policy::compile::{Source, compile};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// A fenced code block: its info string (`json`, `toml`, `toml-invalid`, ...), its text, and
/// the 1-based line of its opening fence.
#[derive(Debug, Clone)]
struct Block {
    lang: String,
    text: String,
    line: usize,
}

/// Every fenced block of a Markdown text (fences of three or more backticks at the start of a
/// line, possibly indented).
fn blocks(md: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize, String)> = None;
    for (i, line) in md.lines().enumerate() {
        let t = line.trim_start();
        match &mut open {
            None => {
                if let Some(rest) = t.strip_prefix("```") {
                    let lang = rest.trim_start_matches('`').trim().to_owned();
                    open = Some((lang, i + 1, String::new()));
                }
            }
            Some((lang, start, text)) => {
                if t.starts_with("```") && t.trim_start_matches('`').trim().is_empty() {
                    out.push(Block {
                        lang: lang.clone(),
                        text: std::mem::take(text),
                        line: *start,
                    });
                    open = None;
                } else {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "unclosed code block");
    out
}

/// The Markdown text without its fenced blocks (so headings inside examples are not headings).
fn prose(md: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut inside = false;
    for (i, line) in md.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("```") {
            if inside && t.trim_start_matches('`').trim().is_empty() {
                inside = false;
            } else if !inside {
                inside = true;
            }
            continue;
        }
        if !inside {
            out.push((i + 1, line.to_owned()));
        }
    }
    out
}

/// The sections of a document under `##` headings: heading line → lines until the next `##`.
fn sections(md: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (_, line) in prose(md) {
        if line.starts_with("## ") {
            out.push((line.clone(), Vec::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push(line);
        }
    }
    out
}

/// The section whose `##` heading starts with `prefix`.
fn section<'a>(secs: &'a [(String, Vec<String>)], prefix: &str) -> &'a [String] {
    let found: Vec<_> = secs.iter().filter(|(h, _)| h.starts_with(prefix)).collect();
    assert_eq!(found.len(), 1, "expected one section starting with {prefix:?}");
    &found[0].1
}

/// Whether a `###` heading of the section names `key` in backticks.
fn has_key_heading(lines: &[String], key: &str) -> bool {
    let needle = format!("`{key}`");
    lines.iter().any(|l| l.starts_with("### ") && l.contains(&needle))
}

/// The field names of the structs in a Rust source file: `pub name:` and `pub(crate) name:`
/// lines between `struct Name {` and the closing `}`.
fn struct_fields(src: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in src.lines() {
        let t = line.trim();
        if current.is_none() {
            if let Some(pos) = t.find("struct ")
                && t.ends_with('{')
                && !t.starts_with("//")
            {
                let name = t[pos + 7..]
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                current = Some(name.clone());
                out.insert(name, Vec::new());
            }
            continue;
        }
        if t == "}" {
            current = None;
            continue;
        }
        let rest = t.strip_prefix("pub(crate) ").or_else(|| t.strip_prefix("pub "));
        if let (Some(rest), Some(name)) = (rest, &current)
            && let Some((field, _)) = rest.split_once(':')
            && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            out.get_mut(name).unwrap().push(field.to_owned());
        }
    }
    out
}

fn fields_of<'a>(all: &'a BTreeMap<String, Vec<String>>, name: &str) -> &'a [String] {
    let f = all.get(name).unwrap_or_else(|| panic!("struct {name} not found"));
    assert!(!f.is_empty(), "struct {name} has no fields?");
    f
}

// ---------------------------------------------------------------------------------------------
// docs/errors.md
// ---------------------------------------------------------------------------------------------

/// The groups of reason codes: each `Stage`'s title and its codes, in declaration order.
fn error_groups() -> Vec<(String, Vec<String>)> {
    Stage::ALL
        .iter()
        .map(|stage| {
            let codes = Reason::ALL.iter().filter(|r| r.stage() == *stage);
            (stage.title().to_owned(), codes.map(|r| r.code().to_owned()).collect())
        })
        .collect()
}

/// One `### \`code\`` section of errors.md: its lines, and the blocks inside it.
struct CodeSection {
    code: String,
    group: String,
    text: Vec<String>,
    blocks: Vec<Block>,
}

fn code_sections(md: &str) -> Vec<CodeSection> {
    let lines: Vec<&str> = md.lines().collect();
    let all_blocks = blocks(md);
    let mut out: Vec<CodeSection> = Vec::new();
    let mut group = String::new();
    let mut inside = false;
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if t.starts_with("```") {
            inside = !(inside && t.trim_start_matches('`').trim().is_empty());
        }
        if inside && !t.starts_with("```") {
            if let Some(s) = out.last_mut() {
                s.text.push((*line).to_owned());
            }
            continue;
        }
        if let Some(h) = line.strip_prefix("## ") {
            group = h.trim().to_owned();
            out.push(CodeSection {
                code: String::new(),
                group: group.clone(),
                text: Vec::new(),
                blocks: Vec::new(),
            });
            continue;
        }
        if let Some(h) = line.strip_prefix("### ") {
            let code = h
                .trim()
                .strip_prefix('`')
                .and_then(|r| r.strip_suffix('`'))
                .unwrap_or_else(|| panic!("errors.md line {}: heading {h:?} is not `code`", i + 1));
            out.push(CodeSection {
                code: code.to_owned(),
                group: group.clone(),
                text: Vec::new(),
                blocks: Vec::new(),
            });
            continue;
        }
        if let Some(s) = out.last_mut() {
            s.text.push((*line).to_owned());
        }
    }
    // Attach blocks by line position.
    let starts: Vec<(usize, usize)> = {
        let mut v = Vec::new();
        let mut idx = 0;
        let mut inside = false;
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            if t.starts_with("```") {
                inside = !(inside && t.trim_start_matches('`').trim().is_empty());
            }
            if !inside && (line.starts_with("## ") || line.starts_with("### ")) {
                v.push((i + 1, idx));
                idx += 1;
            }
        }
        v
    };
    for b in all_blocks {
        if let Some((_, idx)) = starts.iter().rev().find(|(l, _)| *l < b.line) {
            out[*idx].blocks.push(b);
        }
    }
    out.retain(|s| !s.code.is_empty());
    out
}

#[test]
fn errors_md_lists_every_reason_in_order() {
    let md = read("docs/errors.md");
    let documented: Vec<String> = code_sections(&md).into_iter().map(|s| s.code).collect();
    let codes: Vec<String> = Reason::ALL.iter().map(|r| r.code().to_owned()).collect();
    let missing: Vec<&String> = codes.iter().filter(|c| !documented.contains(c)).collect();
    let extra: Vec<&String> = documented.iter().filter(|c| !codes.contains(c)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/errors.md: missing {missing:?}, not reason codes {extra:?}"
    );
    assert_eq!(
        documented, codes,
        "docs/errors.md lists the codes in another order than Reason::ALL"
    );
}

#[test]
fn errors_md_groups_follow_error_rs() {
    let md = read("docs/errors.md");
    let mut doc_groups: Vec<(String, Vec<String>)> = Vec::new();
    for s in code_sections(&md) {
        match doc_groups.last_mut() {
            Some((g, codes)) if *g == s.group => codes.push(s.code),
            _ => doc_groups.push((s.group, vec![s.code])),
        }
    }
    let src_groups = error_groups();
    assert_eq!(
        doc_groups.len(),
        src_groups.len(),
        "docs/errors.md has {} groups of codes, src/error.rs {}",
        doc_groups.len(),
        src_groups.len()
    );
    for ((dh, dc), (sh, sc)) in doc_groups.iter().zip(&src_groups) {
        assert_eq!(
            dh.to_lowercase(),
            sh.to_lowercase(),
            "docs/errors.md heading {dh:?} should be the src/error.rs section {sh:?}"
        );
        assert_eq!(dc, sc, "codes under {dh:?}");
    }
}

#[test]
fn errors_md_sections_match_the_code() {
    let md = read("docs/errors.md");
    let sections = code_sections(&md);
    let by_code: BTreeMap<&str, Reason> = Reason::ALL.iter().map(|r| (r.code(), *r)).collect();
    let rewrites: Vec<String> = Reason::ALL
        .iter()
        .filter(|r| r.stage() == Stage::Keycloak)
        .map(|r| r.code().to_owned())
        .collect();
    for s in &sections {
        let code = s.code.as_str();
        let Some(reason) = by_code.get(code) else {
            continue; // reported by errors_md_lists_every_reason_in_order
        };
        let first = s
            .text
            .iter()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("{code}: empty section"));
        let expected = format!("Status {} · error `{}`", reason.status().as_u16(), reason.oauth_error());
        assert_eq!(first.trim(), expected, "{code}: the first line must be the status line");
        for part in ["**Cause.**", "**Fix.**"] {
            assert!(
                s.text.iter().any(|l| l.starts_with(part)),
                "{code}: no paragraph starting with {part}"
            );
        }
        let cause = s.text.iter().position(|l| l.starts_with("**Cause.**")).unwrap();
        let fix = s.text.iter().position(|l| l.starts_with("**Fix.**")).unwrap();
        assert!(cause < fix, "{code}: Cause must come before Fix");
        let json: Vec<&Block> = s.blocks.iter().filter(|b| b.lang == "json").collect();
        assert_eq!(json.len(), 1, "{code}: expected exactly one ```json example");
        let v: Value = serde_json::from_str(&json[0].text)
            .unwrap_or_else(|e| panic!("{code}: the example (line {}) is not JSON: {e}", json[0].line));
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("{code}: example is not an object"));
        assert_eq!(
            obj.get("reason").and_then(Value::as_str),
            Some(code),
            "{code}: example reason"
        );
        assert_eq!(
            obj.get("error").and_then(Value::as_str),
            Some(reason.oauth_error()),
            "{code}: example error"
        );
        for key in ["error_description", "hint", "request_id"] {
            assert!(
                obj.get(key)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.trim().is_empty()),
                "{code}: example needs a non-empty string `{key}`"
            );
        }
        assert!(
            obj.get("details").is_some_and(Value::is_object),
            "{code}: example needs a `details` object"
        );
        let allowed = [
            "error",
            "error_description",
            "hint",
            "reason",
            "details",
            "upstream",
            "request_id",
        ];
        for key in obj.keys() {
            assert!(
                allowed.contains(&key.as_str()),
                "{code}: `{key}` is not a field of the response shape"
            );
        }
        if rewrites.iter().any(|c| c == code) {
            let up = obj
                .get("upstream")
                .unwrap_or_else(|| panic!("{code}: a rewritten answer needs `upstream`"));
            assert!(
                up.get("status")
                    .and_then(Value::as_u64)
                    .is_some_and(|s| (400..600).contains(&s)),
                "{code}: upstream.status must be Keycloak's error status"
            );
            assert!(
                up.get("body").is_some_and(|b| !b.is_null()),
                "{code}: upstream.body must hold Keycloak's answer"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// docs/policy.md
// ---------------------------------------------------------------------------------------------

/// Which `##` section of policy.md documents the keys of each struct in src/policy/model.rs.
const POLICY_SECTIONS: &[(&str, &str)] = &[
    ("PolicyFile", "## Top level"),
    ("RealmRaw", "## `[default]` and `[realms.NAME]`"),
    ("OpRaw", "## Operations"),
    ("MetadataRaw", "## `[*.metadata]`"),
    ("RedirectRaw", "## `[*.metadata.redirect_uris]`"),
    ("ServerUrlsRaw", "## `[*.metadata.server_urls]`"),
    ("QuotaRaw", "## `[*.quota]`"),
    ("AdminApiRaw", "## `[*.admin_api]`"),
    ("AnonymousRaw", "## `[realms.NAME.anonymous]`"),
    ("CorsRaw", "## `[*.cors]`"),
];

#[test]
fn policy_md_documents_every_key() {
    let md = read("docs/policy.md");
    let secs = sections(&md);
    let structs = struct_fields(&read("src/policy/model.rs"));
    for name in structs.keys() {
        assert!(
            POLICY_SECTIONS.iter().any(|(s, _)| s == name),
            "src/policy/model.rs has a new struct {name}: give it a section in docs/policy.md and add it to POLICY_SECTIONS"
        );
    }
    let mut missing = Vec::new();
    for (name, heading) in POLICY_SECTIONS {
        let lines = section(&secs, heading);
        for field in fields_of(&structs, name) {
            if !has_key_heading(lines, field) {
                missing.push(format!("{name}.{field} (under {heading:?})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/policy.md lacks a `### \\`key\\`` heading for: {missing:?}"
    );
}

#[test]
fn policy_md_examples_compile() {
    let md = read("docs/policy.md");
    let mut valid = 0;
    let mut invalid = 0;
    for b in blocks(&md) {
        // Examples show fragments of a file; every file starts with `version = 1`.
        let text = if b.text.lines().any(|l| l.trim_start().starts_with("version")) {
            b.text.clone()
        } else {
            format!("version = 1\n{}", b.text)
        };
        let source = Source {
            path: PathBuf::from(format!("docs/policy.md:{}", b.line)),
            text,
        };
        match b.lang.as_str() {
            "toml" => {
                if let Err(errors) = compile(&[source], 1) {
                    let msgs: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    panic!(
                        "docs/policy.md: the toml block at line {} does not compile:\n{}",
                        b.line,
                        msgs.join("\n")
                    );
                }
                valid += 1;
            }
            "toml-invalid" => {
                assert!(
                    compile(&[source], 1).is_err(),
                    "docs/policy.md: the toml-invalid block at line {} compiles",
                    b.line
                );
                invalid += 1;
            }
            _ => {}
        }
    }
    assert!(valid >= 5 && invalid >= 1, "docs/policy.md should show policy examples");
}

// ---------------------------------------------------------------------------------------------
// docs/config.md
// ---------------------------------------------------------------------------------------------

/// Which `##` section of config.md documents the keys of each settings struct.
const CONFIG_SECTIONS: &[(&str, &str, &str)] = &[
    ("src/config/mod.rs", "FileConfig", "## Top-level keys"),
    ("src/config/mod.rs", "FileTimeouts", "## `[timeouts]`"),
    ("src/config/mod.rs", "FileJwt", "## `[jwt]`"),
    ("src/config/mod.rs", "FileJwks", "## `[jwks]`"),
    ("src/config/mod.rs", "RealmSettings", "## `[realms.NAME]`"),
    ("src/config/mod.rs", "RegistrarSettings", "## `[realms.NAME.registrar]`"),
    ("src/config/tls.rs", "ServerTlsFile", "## `[tls]`"),
    ("src/config/tls.rs", "UpstreamTlsFile", "## `[upstream_tls]`"),
    ("src/config/store.rs", "FileQuotaStore", "## `[quota_store]`"),
    ("src/config/store.rs", "QuotaStoreTlsFile", "## `[quota_store.tls]`"),
];

#[test]
fn config_md_documents_every_key() {
    let md = read("docs/config.md");
    let secs = sections(&md);
    let mut missing = Vec::new();
    for (file, name, heading) in CONFIG_SECTIONS {
        let structs = struct_fields(&read(file));
        let lines = section(&secs, heading);
        for field in fields_of(&structs, name) {
            if !has_key_heading(lines, field) {
                missing.push(format!("{name}.{field} (under {heading:?})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/config.md lacks a `### \\`key\\`` heading for: {missing:?}"
    );
}

/// The `ServeArgs` fields of src/cli.rs as flags, with their environment variables.
fn serve_flags() -> Vec<(String, Option<String>)> {
    let src = read("src/cli.rs");
    let start = src.find("pub struct ServeArgs {").expect("ServeArgs in src/cli.rs");
    let body = &src[start..];
    let body = &body[..body.find("\n}").expect("end of ServeArgs")];
    let mut out = Vec::new();
    let mut env = None;
    for line in body.lines() {
        let t = line.trim();
        if t.starts_with("#[arg(") {
            env = t
                .split_once("env = \"")
                .and_then(|(_, r)| r.split_once('"'))
                .map(|(e, _)| e.to_owned());
        }
        if let Some(rest) = t.strip_prefix("pub ")
            && let Some((field, _)) = rest.split_once(':')
        {
            out.push((format!("--{}", field.replace('_', "-")), env.take()));
        }
    }
    assert!(out.len() >= 5, "ServeArgs parsed badly: {out:?}");
    out
}

#[test]
fn config_md_documents_every_flag_and_variable() {
    let md = read("docs/config.md");
    for (flag, env) in serve_flags() {
        assert!(
            md.contains(&format!("`{flag}")),
            "docs/config.md does not document {flag}"
        );
        if let Some(env) = env {
            assert!(
                md.contains(&format!("`{env}`")),
                "docs/config.md does not document {env}"
            );
        }
    }
}

fn loads(text: &str, name: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path: &Path = &dir.path().join(name);
    std::fs::write(path, text).map_err(|e| e.to_string())?;
    load(Some(path), &Overrides::default())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn config_md_examples_are_valid() {
    let md = read("docs/config.md");
    let all = blocks(&md);
    let toml: Vec<&Block> = all.iter().filter(|b| b.lang == "toml").collect();
    assert!(!toml.is_empty(), "docs/config.md has no toml examples");
    for b in &toml {
        // Keys and types, also for blocks that name TLS files which do not exist here.
        if let Err(e) = toml::from_str::<FileConfig>(&b.text) {
            panic!(
                "docs/config.md: the toml block at line {} is not valid settings: {e}",
                b.line
            );
        }
        let needs_files = b.text.lines().any(|l| {
            let t = l.trim();
            t == "[tls]" || t == "[upstream_tls]" || t == "[quota_store.tls]" || t.starts_with("password_file")
        });
        if !needs_files && let Err(e) = loads(&b.text, "example.toml") {
            panic!("docs/config.md: the toml block at line {} does not load: {e}", b.line);
        }
    }
}

#[test]
fn config_md_full_example_loads_and_is_full() {
    let md = read("docs/config.md");
    let heading = md
        .lines()
        .position(|l| l.trim() == "## Full example")
        .expect("docs/config.md has a `## Full example` section")
        + 1;
    let full = blocks(&md)
        .into_iter()
        .find(|b| b.lang == "toml" && b.line > heading)
        .expect("a toml block after `## Full example`");
    if let Err(e) = loads(&full.text, "gateway.toml") {
        panic!("docs/config.md: the full example does not load: {e}");
    }
    let keys: Vec<String> = full
        .text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let present = |k: &str| {
        keys.iter().any(|l| {
            l.strip_prefix(k).is_some_and(|r| r.trim_start().starts_with('='))
                || *l == format!("[{k}]")
                || l.starts_with(&format!("[{k}."))
        })
    };
    let mut missing = Vec::new();
    for (file, name, _) in CONFIG_SECTIONS {
        if name.contains("Tls") {
            continue; // shown in their own blocks: they need real files
        }
        let structs = struct_fields(&read(file));
        for field in fields_of(&structs, name) {
            if matches!(field.as_str(), "tls" | "upstream_tls" | "password_file") {
                continue;
            }
            if !present(field) {
                missing.push(format!("{name}.{field}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the full example in docs/config.md lacks {missing:?}"
    );
}

#[test]
fn helpers_read_struct_fields() {
    let f = struct_fields(
        "/// doc\n#[derive(Debug)]\npub struct A {\n    /// x\n    pub(crate) one: u8,\n    #[serde(default)]\n    pub two_b: Vec<u8>,\n}\nstruct B {\n    pub c: u8,\n}\n",
    );
    assert_eq!(f["A"], ["one", "two_b"]);
    assert_eq!(f["B"], ["c"]);
    let b = blocks("x\n```toml-invalid\na = 1\n```\n\n  ```json\n  {}\n  ```\n");
    assert_eq!(b.len(), 2);
    assert_eq!((b[0].lang.as_str(), b[0].text.as_str()), ("toml-invalid", "a = 1\n"));
    assert_eq!(b[1].lang, "json");
}

#[test]
fn doctor_md_documents_every_flag_and_variable() {
    use clap::CommandFactory;
    let md = read("docs/doctor.md");
    let cmd = dcr_gateway::cli::Cli::command();
    let doctor = cmd.find_subcommand("doctor").expect("doctor subcommand");
    let mut n = 0;
    for a in doctor.get_arguments() {
        let Some(long) = a.get_long() else { continue };
        n += 1;
        assert!(
            md.contains(&format!("`--{long}")),
            "docs/doctor.md does not document --{long}"
        );
        if let Some(env) = a.get_env() {
            let env = env.to_string_lossy();
            assert!(
                md.contains(&format!("`{env}`")),
                "docs/doctor.md does not document {env}"
            );
        }
    }
    assert!(n >= 8, "doctor has {n} flags");
    for v in [
        "DCR_DOCTOR_USERNAME",
        "DCR_DOCTOR_PASSWORD",
        "DCR_DOCTOR_CLIENT_ID",
        "DCR_DOCTOR_CLIENT_SECRET",
    ] {
        assert!(md.contains(&format!("`{v}`")), "docs/doctor.md does not document {v}");
    }
}

// ---------------------------------------------------------------------------------------------
// docs/errors.md examples: the description names the fix; description and hint are the code's
// ---------------------------------------------------------------------------------------------

/// The refusal an example shows, rebuilt: its reason, details, rule and upstream answer, with
/// its `error_description` as the stage's text; and the context its details name.
fn example_texts(code: &str, v: &Value, reason: Reason) -> (String, String) {
    use dcr_gateway::error::{Detail, Refusal, RuleId, UpstreamAnswer};
    use dcr_gateway::hints::HintCtx;
    use dcr_gateway::route::Operation;
    use dcr_gateway::token::TokenKind;
    let details = v["details"].as_object().cloned().unwrap_or_default();
    let text = |k: &str| details.get(k).and_then(Value::as_str);
    let mut r = Refusal::new(reason, v["error_description"].as_str().unwrap_or_default());
    for (k, val) in &details {
        if !["realm", "operation", "provider", "token_kind", "rule"].contains(&k.as_str())
            || k == "realm" && code.starts_with("realm_quota")
        {
            let key = Detail::from_key(k).unwrap_or_else(|| panic!("{code}: `{k}` is not a detail key"));
            r = r.detail(key, val.clone());
        }
    }
    if let Some(rule) = text("rule") {
        r = r.with_rule(RuleId::new(rule));
    }
    if let Some(up) = v.get("upstream") {
        r.upstream = Some(Box::new(UpstreamAnswer {
            status: up["status"].as_u64().unwrap_or(400) as u16,
            body: up["body"].clone(),
        }));
    }
    if let Some(secs) = v["hint"]
        .as_str()
        .and_then(|h| h.split("Wait ").nth(1))
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.parse().ok())
    {
        r = r.retry_after(secs);
    }
    let ctx = HintCtx {
        realm: text("realm"),
        operation: text("operation").and_then(Operation::parse),
        provider: text("provider"),
        kind: text("token_kind").and_then(TokenKind::parse),
        azp: None,
        username: None,
        public_url: "https://sso.example.com",
        upstream: "http://keycloak:8080",
    };
    let body = dcr_gateway::respond::body_json(&r, &ctx, "r");
    (
        body["error_description"].as_str().unwrap_or_default().to_owned(),
        body["hint"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Each example's `error_description` names the fix in one or two sentences, and both it and
/// the `hint` are what the gateway writes for that refusal. `DCR_DOCS_BLESS=1` rewrites them.
#[test]
fn errors_md_examples_name_the_fix_and_match_the_code() {
    use dcr_gateway::hints::{names_action, sentences};
    let path = root().join("docs/errors.md");
    let md = read("docs/errors.md");
    let by_code: BTreeMap<&str, Reason> = Reason::ALL.iter().map(|r| (r.code(), *r)).collect();
    let bless = std::env::var("DCR_DOCS_BLESS").is_ok_and(|v| v == "1");
    let mut out = md.clone();
    let mut failures = Vec::new();
    for s in code_sections(&md) {
        let Some(&reason) = by_code.get(s.code.as_str()) else {
            continue;
        };
        for b in s.blocks.iter().filter(|b| b.lang == "json") {
            let Ok(v) = serde_json::from_str::<Value>(&b.text) else {
                continue;
            };
            let desc = v["error_description"].as_str().unwrap_or_default();
            let hint = v["hint"].as_str().unwrap_or_default();
            let (want_desc, want_hint) = example_texts(&s.code, &v, reason);
            if bless {
                let q = |x: &str| serde_json::to_string(x).unwrap();
                out = out.replacen(
                    &format!("\"error_description\": {}", q(desc)),
                    &format!("\"error_description\": {}", q(&want_desc)),
                    1,
                );
                out = out.replacen(
                    &format!("\"hint\": {}", q(hint)),
                    &format!("\"hint\": {}", q(&want_hint)),
                    1,
                );
                continue;
            }
            if !names_action(desc) || sentences(desc) > 2 {
                failures.push(format!(
                    "{}: error_description does not name the fix in one or two sentences: {desc}",
                    s.code
                ));
            }
            if desc != want_desc {
                failures.push(format!(
                    "{}: error_description\n  docs: {desc}\n  code: {want_desc}",
                    s.code
                ));
            }
            if hint != want_hint {
                failures.push(format!("{}: hint\n  docs: {hint}\n  code: {want_hint}", s.code));
            }
            for t in [desc, hint] {
                if t.contains("(not known)") {
                    failures.push(format!(
                        "{}: a detail the text reads is missing from the example: {t}",
                        s.code
                    ));
                }
            }
        }
    }
    if bless {
        std::fs::write(&path, out).unwrap();
        return;
    }
    assert!(
        failures.is_empty(),
        "{} (DCR_DOCS_BLESS=1 rewrites them)\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The series `src/metrics.rs` (prefixed `dcr_gateway_`) and `src/metrics/process.rs` register.
fn registered_metrics() -> std::collections::BTreeSet<String> {
    let own = read("src/metrics.rs");
    let re = regex::Regex::new(
        r#"(?:(?:counter|gauge_vec|hist)\(\s*&reg,|(?:Opts|IntGauge|Gauge|IntCounter)::new\()\s*"([a-z0-9_]+)""#,
    )
    .unwrap();
    let mut out: std::collections::BTreeSet<String> = re
        .captures_iter(&own)
        .map(|c| format!("dcr_gateway_{}", &c[1]))
        .collect();
    let process = read("src/metrics/process.rs");
    let re = regex::Regex::new(r#""(process_[a-z0-9_]+)""#).unwrap();
    out.extend(re.captures_iter(&process).map(|c| c[1].to_owned()));
    assert!(out.len() >= 35, "src/metrics.rs parsed badly: {out:?}");
    out
}

#[test]
fn metrics_md_lists_every_series_and_no_other() {
    let md = read("docs/metrics.md");
    let registered = registered_metrics();
    let re = regex::Regex::new(r"(?m)^\| `((?:dcr_gateway|process)_[a-z0-9_]+)` \|").unwrap();
    let documented: std::collections::BTreeSet<String> = re.captures_iter(&md).map(|c| c[1].to_owned()).collect();
    let missing: Vec<_> = registered.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&registered).collect();
    assert!(missing.is_empty(), "docs/metrics.md has no table row for: {missing:?}");
    assert!(
        stale.is_empty(),
        "docs/metrics.md lists series the code does not register: {stale:?}"
    );
    // Every `outcome` value the code can give is explained.
    for outcome in [
        "succeeded",
        "refused_by_keycloak",
        "upstream_error",
        "refused_by_gateway",
        "answered_by_gateway",
    ] {
        assert!(
            md.contains(&format!("| `{outcome}` |")),
            "docs/metrics.md does not explain outcome {outcome}"
        );
    }
}
