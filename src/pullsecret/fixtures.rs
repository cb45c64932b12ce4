//! Test objects shared by the tests of `pullsecret`.

use super::desired::Desired;
use crate::ecr::token::Login;
use crate::ecr::{ExpectedHosts, RegionCredential};
use crate::sensitive::Sensitive;

pub(super) const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

pub(super) fn desired(expires: i64) -> Desired {
    Desired::new(
        &[RegionCredential {
            login: Login {
                username: "AWS".into(),
                password: Sensitive::new("pw".into()),
            },
            expires_at: Some(jiff::Timestamp::from_second(expires).unwrap()),
            hosts: own_names(),
        }],
        "region=us-east-1",
        None,
    )
}

/// Both names of the caller's own registry, as a Secret holds them.
pub(super) fn own_names() -> Vec<String> {
    let names =
        crate::ecr::RegistryHost::standard("123456789012", &"us-east-1".parse().unwrap()).names();
    assert_eq!(names[0], HOST);
    names
}

pub(super) fn expected(requested: &[&str]) -> ExpectedHosts {
    ExpectedHosts {
        requested: requested.iter().map(|h| h.to_string()).collect(),
        default_region: "us-east-1".parse().unwrap(),
    }
}
