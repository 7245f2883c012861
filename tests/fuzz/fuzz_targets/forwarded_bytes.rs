//! The property the gateway's promise rests on: for any body the gateway would forward, the
//! bytes forwarded are exactly the bytes it checked. The body stage reads a registration body
//! (create or update, both dialects); when it lets the body on, the body it hands to the
//! upstream stage must be byte-for-byte the input, and re-reading those bytes must give the
//! very metadata policy judged.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use dcr_gateway::net::full;
use dcr_gateway::pipeline::body::{Limits, read};
use dcr_gateway::policy::json::parse_object;
use dcr_gateway::policy::metadata::normalise;
use dcr_gateway::route::{Operation, RegRoute};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else { return };
    let create = sel & 1 == 0;
    let provider = ["openid-connect", "default", "install", "saml2-entity-descriptor"][usize::from(sel >> 1) % 4];
    let route = RegRoute {
        realm: "demo".into(),
        provider: provider.into(),
        client_id: (!create).then(|| "c".into()),
        operation: if create { Operation::Create } else { Operation::Update },
    };
    let limits = Limits {
        bytes: 64 * 1024,
        time: Duration::from_secs(5),
    };
    let input = Bytes::copy_from_slice(body);
    rt().block_on(async {
        let Ok((forwarded, checked)) = read(&route, full(input.clone()), limits).await else {
            return;
        };
        let sent = forwarded.collect().await.expect("in-memory body").to_bytes();
        assert_eq!(sent, input, "forwarded bytes differ from the checked bytes");
        if let Some((md, dialect, object)) = checked {
            let parsed = parse_object(&sent).expect("checked body parses");
            assert_eq!(parsed, object, "the object handed on is not the forwarded body's");
            let again = normalise(dialect, &parsed, create).expect("checked body normalises");
            assert_eq!(
                again, md,
                "the forwarded bytes mean something other than what was checked"
            );
        }
    });
});
