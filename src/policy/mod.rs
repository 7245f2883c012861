//! Registration policy: who may do what in which realm, and what client metadata is acceptable,
//! from hot-reloaded TOML compiled into one atomically swapped snapshot.

pub mod address;
pub mod admin_api;
pub mod anonymous;
pub mod coerce;
pub mod compile;
pub mod eval;
pub mod json;
pub mod members;
pub mod metadata;
pub mod model;
pub mod quota;
pub mod snapshot;
pub mod store;
pub mod uri;
pub mod watch;

pub use eval::{Decision, Input, Verdict, decide, finish, precheck};
pub use quota::Quotas;
pub use snapshot::Snapshot;
pub use store::{PolicyStore, Reloaded, Trigger};
