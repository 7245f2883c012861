//! The HTTP/1.1 fast path against hyper, on any bytes a client might send on a connection:
//! the requests the gateway reads from them (the fast path's while it takes them, then hyper's
//! for the rest) must be exactly the requests hyper alone reads — method, target, version,
//! header lines in order, body — and bytes the fast path declines must stay as they were.
#![no_main]

use std::sync::OnceLock;

use dcr_gateway::fuzzing::http1_fast_path::compare;
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Err(difference) = runtime().block_on(compare(data)) {
        panic!("{difference}");
    }
});
