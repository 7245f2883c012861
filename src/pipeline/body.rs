//! Stage 4b, body: registration bodies (create and update) are read whole, under a limit, and
//! parsed strictly into the normalised client metadata; every other body streams untouched.

use serde_json::{Map, Value};

use crate::error::{Detail, Reason, Refusal};
use crate::net::{Body, ReadError, full, read_limited};
use crate::policy::json::parse_object;
use crate::policy::metadata::{ClientMetadata, Dialect, normalise};
use crate::route::{Operation, RegRoute};

/// How much of a registration body is read, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest body.
    pub bytes: usize,
    /// Longest time to receive it.
    pub time: std::time::Duration,
}

/// A registration body the gateway read: the normalised view, its dialect and the parsed object.
pub type Parsed = (ClientMetadata, Dialect, Map<String, Value>);

/// Reads and parses the body when policy needs it; returns the body to forward.
pub async fn read(route: &RegRoute, body: Body, limits: Limits) -> Result<(Body, Option<Parsed>), Refusal> {
    let limit = limits.bytes;
    if !matches!(route.operation, Operation::Create | Operation::Update) {
        return Ok((body, None));
    }
    let secs = limits.time.as_secs_f64();
    let read = tokio::time::timeout(limits.time, read_limited(body, limit))
        .await
        .map_err(|_| {
            Refusal::new(
                Reason::BodyTimeout,
                format!("The registration body did not arrive within {secs}s."),
            )
            .detail(Detail::Timeout, format!("{}ms", limits.time.as_millis()))
        })?;
    let bytes = read.map_err(|e| match e {
        ReadError::TooLarge => Refusal::new(
            Reason::BodyTooLarge,
            format!("The registration body is larger than {limit} bytes."),
        )
        .detail(Detail::LimitBytes, limit),
        ReadError::Failed(m) => Refusal::new(Reason::BodyNotJson, format!("The request body could not be read: {m}.")),
    })?;
    let metadata = match Dialect::of(&route.provider) {
        Some(dialect) => {
            let object = parse_object(&bytes)?;
            let md = normalise(dialect, &object, route.operation == Operation::Create)?;
            Some((md, dialect, object))
        }
        None => None,
    };
    Ok((full(bytes), metadata))
}
