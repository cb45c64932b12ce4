//! Shared helpers for the integration tests: they need the real kube-apiserver and moto's
//! server that `scripts/test.sh` starts, and fail loudly without them.
//!
//! Each test binary declares `pub mod common;`: the helpers are that crate's public interface,
//! so a helper only some binaries call is not dead code in the others (no `allow(dead_code)`),
//! while a private item here that nothing uses still warns.

pub mod checks;
pub mod cluster;
pub mod env;
pub mod fake_aws;
pub mod fake_ecr;
pub mod fault;
pub mod hangs;
pub mod install;
pub mod oidc;
pub mod proxy;
pub mod report;
pub mod run;
pub mod timing;

pub use checks::*;
pub use cluster::*;
pub use env::*;
pub use hangs::*;
pub use report::*;
pub use run::*;
pub use timing::*;
