//! Credentials: triage by kind, bearer-token verification against a cached JWKS, and the
//! verified-token cache.

pub mod cache;
pub mod checks;
pub mod claims;
pub mod jwks;
pub mod triage;
pub mod verify;

pub use claims::{Claims, TokenKind};

/// The current Unix time in seconds.
pub fn now() -> i64 {
    i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap_or(i64::MAX)
}
pub use verify::{Identity, Verifier};
