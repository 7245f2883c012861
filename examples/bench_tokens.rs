//! Mints the key material `bench/compare.sh` needs, with the project's test key code
//! (`testkit`): one RSA-2048 key, its JWKS (served by the nginx stand-in), its public key in PEM
//! (for HAProxy's `jwt_verify`), one token and a file of distinct tokens, all RS256 service-account
//! tokens allowed to create clients in realm `demo`.
//!
//!   cargo run --release --example bench_tokens -- OUT_DIR ISSUER COUNT

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write;
use std::path::PathBuf;

use base64::Engine;
use testkit::{TestKey, jwks, service_account_claims};

#[allow(dead_code)]
#[path = "../tests/support/testkit.rs"]
mod testkit;

fn claims(issuer: &str, i: usize) -> serde_json::Value {
    let mut c = service_account_claims(issuer, "registrar", &["create-client"], 4 * 3600);
    c["jti"] = format!("bench-{i}").into();
    c
}

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str("-----END PUBLIC KEY-----\n");
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(issuer), Some(count)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: bench_tokens OUT_DIR ISSUER COUNT");
        std::process::exit(2);
    };
    let dir = PathBuf::from(dir);
    let count: usize = count.parse().expect("COUNT is a number");
    std::fs::create_dir_all(&dir).unwrap();
    let key = TestKey::rsa("bench", "RS256").unwrap();
    std::fs::write(dir.join("jwks.json"), jwks(&[&key]).to_string()).unwrap();
    std::fs::write(dir.join("pub.pem"), pem(&key.public_der())).unwrap();
    std::fs::write(dir.join("token.txt"), key.token(&claims(&issuer, 0))).unwrap();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let key = std::sync::Arc::new(key);
    let parts: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let key = key.clone();
                let issuer = issuer.clone();
                s.spawn(move || {
                    (0..count)
                        .filter(|i| i % threads == t)
                        .map(|i| key.token(&claims(&issuer, i + 1)))
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("tokens.txt")).unwrap());
    for t in parts.iter().flatten() {
        writeln!(f, "{t}").unwrap();
    }
    f.flush().unwrap();
}
