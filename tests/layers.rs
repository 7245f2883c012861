//! The crate's layers point one way: a module may use modules of its own layer or below, never
//! one above. The layer of every top-level module of `src/` is listed here; a new module must be
//! placed in the table, and an import that runs upwards fails the test with the file and line.
//! Unit tests (`tests.rs` files and `mod tests` blocks) may use anything.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Bottom first: each line is one layer.
const LAYERS: &[&[&str]] = &[
    &["error", "config", "logwriter", "logformat"],
    &["route", "keycloak", "net", "metrics"],
    &["token"],
    &["policy", "registrar"],
    &["hints", "respond", "app"],
    &["pipeline"],
    &["server", "explain", "doctor"],
    &["cli"],
    &["check"],
];

fn layer_of() -> HashMap<&'static str, usize> {
    let mut map = HashMap::new();
    for (i, layer) in LAYERS.iter().enumerate() {
        for m in *layer {
            map.insert(*m, i);
        }
    }
    map
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file under `src/` belongs to (`None`: the crate root or main.rs).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_owned())
}

/// `crate::X` references outside unit tests, with their line numbers.
fn references(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut cfg_test = false;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            cfg_test = true;
            continue;
        }
        if cfg_test && t.starts_with("mod tests") && t.ends_with('{') {
            break; // the test module runs to the end of the file
        }
        cfg_test = false;
        if t.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((n + 1, name));
            }
            rest = after;
        }
    }
    found
}

#[test]
fn imports_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layers = layer_of();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        if file.file_name().is_some_and(|f| f == "tests.rs") {
            continue;
        }
        let Some(module) = module_of(&src, file) else { continue };
        let Some(&own) = layers.get(module.as_str()) else {
            wrong.push(format!("{}: module `{module}` is not in LAYERS", file.display()));
            continue;
        };
        let text = fs::read_to_string(file).expect("read");
        for (line, used) in references(&text) {
            match layers.get(used.as_str()) {
                Some(&l) if l > own => wrong.push(format!(
                    "{}:{line}: `{module}` (layer {own}) uses `{used}` (layer {l}), a higher layer",
                    file.display()
                )),
                Some(_) => {}
                None => wrong.push(format!("{}:{line}: `crate::{used}` is not in LAYERS", file.display())),
            }
        }
    }
    assert!(wrong.is_empty(), "imports that run upwards:\n{}", wrong.join("\n"));
}

#[test]
fn the_scanner_sees_an_upward_import() {
    let text = "use crate::pipeline::Ctx;\nfn f() { crate::error::Reason::Internal; }\n#[cfg(test)]\nmod tests {\nuse crate::app::App;\n}\n";
    let refs: Vec<String> = references(text).into_iter().map(|(_, m)| m).collect();
    assert_eq!(refs, ["pipeline", "error"]);
}
