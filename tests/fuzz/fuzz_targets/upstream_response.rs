//! The upstream connection's response reader against any bytes Keycloak (or whatever answers
//! in its place) might send: a loopback server answers one request with the input, in one or
//! two writes, then closes. The reader must never panic or hang, and a body it reports whole
//! must be whole: a `Content-Length` body that ends without an error has exactly that length.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use dcr_gateway::config::load::{Overrides, load};
use dcr_gateway::net::pool::Pool;
use dcr_gateway::net::{connector, empty, read_limited};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderValue, Method, Request};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct Harness {
    rt: tokio::runtime::Runtime,
    listener: TcpListener,
    pool: std::sync::Arc<Pool>,
    base: String,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let over = Overrides {
            upstream: Some(base.clone()),
            ..Overrides::default()
        };
        let settings = load(None, &over).expect("settings");
        let pool = rt.block_on(async { Pool::new(&settings.upstream, connector(&settings), Duration::from_secs(60)) });
        Harness { rt, listener, pool, base }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, answer)) = data.split_first() else { return };
    let h = harness();
    let head_request = sel & 1 == 1;
    let split = usize::from(sel >> 1).min(answer.len());
    h.rt.block_on(async {
        let server = async {
            let (mut sock, _) = h.listener.accept().await.expect("accept");
            let mut seen = Vec::new();
            let mut chunk = [0u8; 4096];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&chunk[..n]),
                }
            }
            for part in [&answer[..split], &answer[split..]] {
                if sock.write_all(part).await.is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
            let _ = sock.shutdown().await;
        };
        let client = async {
            let method = if head_request { Method::HEAD } else { Method::GET };
            let mut req = Request::builder()
                .method(method)
                .uri(format!("{}/realms/demo/x", h.base))
                .body(empty())
                .expect("request");
            // A fresh connection for every input: the one before was closed by its server.
            req.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
            // A bound past libFuzzer's -timeout (10 s): a reader that hangs still fails as a hang.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            let Some(Ok(resp)) = h.pool.send_by(req, deadline).await else { return };
            let status = resp.status();
            let declared = resp
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|_| !resp.headers().contains_key(TRANSFER_ENCODING));
            let bodiless = head_request || status.is_informational() || status == 204 || status == 304;
            if let Ok(body) = read_limited(resp.into_body(), 1 << 20).await
                && let Some(n) = declared
                && !bodiless
            {
                assert_eq!(body.len(), n, "a Content-Length body reported whole is not that long");
            }
        };
        let both = async { tokio::join!(server, client) };
        tokio::time::timeout(Duration::from_secs(5), both)
            .await
            .expect("the exchange neither ended nor failed within 5 s");
    });
});
