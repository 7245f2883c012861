//! Credentials: triage by kind, bearer-token verification against a cached JWKS, and the
//! verified-token cache.

pub mod cache;
pub mod claims;
pub mod jwks;
pub mod triage;
pub mod verify;

pub use claims::{Claims, TokenKind};
pub use verify::{Identity, Verifier};
