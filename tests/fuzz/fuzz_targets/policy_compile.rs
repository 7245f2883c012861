//! Policy compile: any text as one or two policy files compiles or fails with errors, never
//! panics; a success is a snapshot that describes itself.
#![no_main]

use std::path::PathBuf;

use dcr_gateway::policy::compile::{Source, compile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut sources = vec![];
    match text.split_once("\n#---\n") {
        Some((a, b)) => {
            sources.push(Source {
                path: PathBuf::from("a.toml"),
                text: a.to_owned(),
            });
            sources.push(Source {
                path: PathBuf::from("b.toml"),
                text: b.to_owned(),
            });
        }
        None => sources.push(Source {
            path: PathBuf::from("a.toml"),
            text: text.to_owned(),
        }),
    }
    match compile(&sources, 1) {
        Ok(snap) => {
            let _ = snap.describe();
        }
        Err(errors) => assert!(!errors.is_empty(), "a failed compile names its errors"),
    }
});
