//! Token triage: any `Authorization` value (and any token text) is read, decoded and sorted by
//! kind without panicking, for every operation; a token is never both refused and accepted.
#![no_main]

use dcr_gateway::route::{Operation, RegRoute};
use dcr_gateway::token::claims::decode;
use dcr_gateway::token::triage::{extract, triage};
use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use libfuzzer_sys::fuzz_target;

const ISS: &str = "http://kc/realms/demo";

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    if let Ok(text) = std::str::from_utf8(rest) {
        let _ = decode(text);
    }
    let Ok(value) = HeaderValue::from_bytes(rest) else {
        return;
    };
    let mut h = HeaderMap::new();
    h.insert(AUTHORIZATION, value);
    if sel & 0x80 != 0 {
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer x.y.z"));
    }
    let Ok(presented) = extract(&h) else { return };
    let op = Operation::GOVERNED[usize::from(sel) % 4];
    let provider = if sel & 0x40 != 0 { "install" } else { "openid-connect" };
    let route = RegRoute {
        realm: "demo".into(),
        provider: provider.into(),
        client_id: (op != Operation::Create).then(|| "c".into()),
        operation: op,
    };
    let now = i64::from(sel) * 1_000_000;
    let _ = triage(presented, &route, &[ISS.to_owned()], 30, now);
});
