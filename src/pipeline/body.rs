//! Stage 4a, body: registration bodies (create and update) are read whole, under a limit, and
//! parsed strictly into the normalised client metadata; every other body streams untouched.

use crate::error::{Reason, Refusal};
use crate::net::{Body, ReadError, full, read_limited};
use crate::pipeline::route::{Operation, RegRoute};
use crate::policy::json::parse_object;
use crate::policy::metadata::{ClientMetadata, Dialect, normalise};

/// Reads and parses the body when policy needs it; returns the body to forward.
pub async fn read(
    route: &RegRoute,
    body: Body,
    limit: usize,
) -> Result<(Body, Option<(ClientMetadata, Dialect)>), Refusal> {
    if !matches!(route.operation, Operation::Create | Operation::Update) {
        return Ok((body, None));
    }
    let bytes = read_limited(body, limit).await.map_err(|e| match e {
        ReadError::TooLarge => Refusal::new(
            Reason::BodyTooLarge,
            format!("The registration body is larger than {limit} bytes."),
        )
        .detail("limit_bytes", limit),
        ReadError::Failed(m) => Refusal::new(Reason::BodyNotJson, format!("The request body could not be read: {m}.")),
    })?;
    let metadata = match Dialect::of(&route.provider) {
        Some(dialect) => Some((normalise(dialect, &parse_object(&bytes)?)?, dialect)),
        None => None,
    };
    Ok((full(bytes), metadata))
}
