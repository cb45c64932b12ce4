//! Getting and checking ECR credentials.

mod client;
mod credentials;
mod registry;
pub(crate) mod token;

pub(crate) use client::EcrClientConfig;
pub(crate) use registry::{registry_host, ExpectedHosts, RegionName, RegistrySpec};
pub(crate) use token::{decode_token, RegionCredential};
