//! Shared HTTP plumbing: the boxed body type, the pooled upstream client, and bounded body reads;
//! [`peers`] counts what each client address holds; [`turn`] lets one round's writes leave together.

pub mod ids;
pub mod peers;
pub mod pool;
pub mod turn;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::Settings;

/// Any error a body can produce.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type used for every request and response the gateway handles.
pub type Body = BoxBody<Bytes, BoxError>;

/// The connector behind every outgoing connection: TCP (connect timeout, no Nagle) and TLS
/// from `[upstream_tls]` for `https` URLs.
pub type Connector = HttpsConnector<HttpConnector>;

/// The pooled HTTP(S) client used for JWKS fetches, the registrars and `doctor` (requests
/// forwarded to Keycloak go through [`pool::Pool`]).
pub type HttpClient = Client<Connector, Body>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// The connector: connect timeout, TCP_NODELAY, TLS from `[upstream_tls]` (HTTP/1.1 only).
pub fn connector(settings: &Settings) -> Connector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(settings.timeouts.connect));
    http.set_nodelay(true);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*settings.upstream_tls.0).clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

/// Builds the pooled client: keep-alive, connect timeout, TLS from `[upstream_tls]`.
pub fn client(settings: &Settings) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(settings.timeouts.pool_idle)
        .pool_max_idle_per_host(256)
        .set_host(true)
        .build(connector(settings))
}

/// Why a bounded read failed.
#[derive(Debug)]
pub enum ReadError {
    /// The body is larger than the limit.
    TooLarge,
    /// The body could not be read (client gone, timeout, protocol error).
    Failed(String),
}

/// Reads a whole body, refusing more than `limit` bytes (early, when the length is declared).
pub async fn read_limited<B>(mut body: B, limit: usize) -> Result<Bytes, ReadError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    if body.size_hint().lower() > limit as u64 {
        return Err(ReadError::TooLarge);
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Failed(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ReadError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// [`read_limited`] within `time`: a body that stops arriving (an upstream that sent its head
/// and then stalled) fails with a [`ReadError::Failed`] that names the bound.
pub async fn read_within<B>(body: B, limit: usize, time: Duration) -> Result<Bytes, ReadError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    tokio::time::timeout(time, read_limited(body, limit))
        .await
        .unwrap_or_else(|_| {
            Err(ReadError::Failed(format!(
                "the rest of the body did not arrive within {}ms",
                time.as_millis()
            )))
        })
}

/// GETs `uri` and returns the body when the status is 200, within `timeout` and `limit`.
pub async fn get_bytes(client: &HttpClient, uri: &str, timeout: Duration, limit: usize) -> Result<Bytes, String> {
    let req = http::Request::get(uri)
        .header(http::header::ACCEPT, "application/json")
        .body(empty())
        .map_err(|e| format!("bad URL {uri}: {e}"))?;
    let fetch = async {
        let resp = client.request(req).await.map_err(|e| describe_client_error(&e))?;
        let status = resp.status();
        let body = read_limited(resp.into_body(), limit).await.map_err(|e| match e {
            ReadError::TooLarge => format!("the answer is larger than {limit} bytes"),
            ReadError::Failed(m) => m,
        })?;
        if status != http::StatusCode::OK {
            let snippet = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(format!("HTTP {status}: {snippet}"));
        }
        Ok(body)
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| format!("no answer within {}ms", timeout.as_millis()))?
}

/// A client error with its causes, on one line.
pub fn describe_client_error(e: &hyper_util::client::legacy::Error) -> String {
    describe_error(e)
}

/// An error with its causes, on one line.
pub fn describe_error(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

pin_project_lite::pin_project! {
    /// A body that holds a guard (e.g. a concurrency permit) until it has been fully sent or
    /// dropped, so that "in flight" covers streaming bodies too.
    pub struct Guarded<B, G> {
        #[pin]
        inner: B,
        guard: Option<G>,
    }
}

impl<B, G> Guarded<B, G> {
    /// Wraps `inner`, keeping `guard` alive as long as the body streams.
    pub fn new(inner: B, guard: G) -> Self {
        Guarded {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B: http_body::Body, G> http_body::Body for Guarded<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let std::task::Poll::Ready(None) = &polled {
            this.guard.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Boxes a hyper body (request or response) into the gateway's body type.
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// A body that adds the length of every data frame it yields to a shared counter (the bytes a
/// request sent, read by the log line at the end).
#[derive(Debug)]
pub struct Counted {
    inner: Body,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Counted {
    /// Wraps `inner`, counting into `count`.
    pub fn new(inner: Body, count: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Self {
        Counted { inner, count }
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let n = u64::try_from(data.len()).unwrap_or(u64::MAX);
            self.count.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use http_body::Frame;

    use super::*;

    /// A body that yields one chunk and then never another (nor its end).
    struct Stalls(bool);

    impl http_body::Body for Stalls {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if self.0 {
                return Poll::Pending;
            }
            self.0 = true;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"part")))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_at_its_bound_and_a_whole_one_is_read() {
        let started = tokio::time::Instant::now();
        let Err(ReadError::Failed(why)) = read_within(Stalls(false), 100, Duration::from_secs(3)).await else {
            panic!("a stalled body was read whole");
        };
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert!(why.contains("3000ms"), "{why}");
        let whole = read_within(full(Bytes::from_static(b"whole")), 100, Duration::from_secs(3)).await;
        assert_eq!(whole.ok().as_deref(), Some(&b"whole"[..]));
    }
}
