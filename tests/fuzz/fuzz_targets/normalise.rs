//! Both body dialects' normaliser, on create and on update: never panics on any object the
//! strict parser accepts, and is deterministic.
#![no_main]

use dcr_gateway::policy::json::parse_object;
use dcr_gateway::policy::metadata::{Dialect, normalise};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(obj) = parse_object(data) else { return };
    for dialect in [Dialect::Rfc7591, Dialect::Keycloak] {
        for create in [true, false] {
            let a = normalise(dialect, &obj, create);
            let b = normalise(dialect, &obj, create);
            match (a, b) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) => assert_eq!(a.reason, b.reason),
                _ => panic!("normalise is not deterministic"),
            }
        }
    }
});
