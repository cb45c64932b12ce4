//! Shared helpers for the integration tests: they need the real kube-apiserver and moto's
//! server that `scripts/test.sh` starts, and fail loudly without them.
//!
//! One test binary holds them all, so a helper that no test uses warns as dead code.

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
pub mod standin;
pub mod suite;
pub mod timing;

pub use checks::*;
pub use cluster::*;
pub use env::*;
pub use hangs::*;
pub use report::*;
pub use run::*;
pub use standin::blackhole;
pub use timing::*;
