//! The strict JSON parser: never panics; whatever it accepts, serde_json reads the same way
//! (so the gateway and Keycloak's Jackson see one object), and it has no duplicate keys.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(obj) = dcr_gateway::policy::json::parse_object(data) {
        let plain: serde_json::Value = serde_json::from_slice(data).expect("accepted body is JSON");
        assert_eq!(plain, serde_json::Value::Object(obj), "strict and plain parse differ");
    }
});
