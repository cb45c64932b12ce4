//! Getting and checking ECR credentials.

mod client;
mod credentials;
mod registry;
mod token;

pub use client::EcrClientConfig;
pub use credentials::identity_of;
pub use registry::{registry_host, ExpectedHosts, RegionName, RegistrySpec};
pub use token::{decode_token, Login, RegionCredential, TokenError};
