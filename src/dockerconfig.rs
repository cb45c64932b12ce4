//! The `.dockerconfigjson` payload of the pull Secret.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::ecr::RegionCredential;
use crate::sensitive::Sensitive;

/// The data key of a `kubernetes.io/dockerconfigjson` Secret.
pub(crate) const DATA_KEY: &str = ".dockerconfigjson";

#[derive(Serialize, Deserialize)]
struct DockerConfig {
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Serialize, Deserialize)]
struct AuthEntry {
    username: String,
    password: String,
    auth: String,
}

/// Builds `{"auths":{"<host>":{"username","password","auth"}}}` for every host. Hosts are
/// sorted, so the same credentials always give the same bytes and an unchanged Secret is seen
/// as unchanged.
pub(crate) fn build(credentials: &[RegionCredential]) -> Sensitive<Vec<u8>> {
    let mut auths = BTreeMap::new();
    for cred in credentials {
        let user = &cred.login.username;
        let password = cred.login.password.expose();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        for host in &cred.hosts {
            auths.insert(
                host.clone(),
                AuthEntry {
                    username: user.clone(),
                    password: password.clone(),
                    auth: auth.clone(),
                },
            );
        }
    }
    let json = serde_json::to_vec(&DockerConfig { auths }).expect("string maps always serialize");
    Sensitive::new(json)
}

/// The registry hosts a payload covers (sorted), or `None` if it is not a complete docker config.
pub(crate) fn hosts(payload: &[u8]) -> Option<Vec<String>> {
    let config: DockerConfig = serde_json::from_slice(payload).ok()?;
    Some(config.auths.into_keys().collect())
}

/// The hosts under `auths`, whatever their entries hold; `None` if there is no such map.
pub(crate) fn named_hosts(payload: &[u8]) -> Option<Vec<String>> {
    #[derive(Deserialize)]
    struct Hosts {
        auths: BTreeMap<String, serde::de::IgnoredAny>,
    }
    let config: Hosts = serde_json::from_slice(payload).ok()?;
    Some(config.auths.into_keys().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecr::decode_token;
    use crate::ecr::token::Login;
    use base64::engine::general_purpose::STANDARD;
    use proptest::prelude::*;

    fn cred(password: &str, hosts: &[&str]) -> RegionCredential {
        RegionCredential {
            login: Login {
                username: "AWS".into(),
                password: Sensitive::new(password.into()),
            },
            expires_at: None,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    #[test]
    fn builds_the_expected_document() {
        let payload = build(&[cred("p:w", &["b.example", "a.example"])]);
        let v: serde_json::Value = serde_json::from_slice(payload.expose()).unwrap();
        let entry = &v["auths"]["a.example"];
        assert_eq!(entry["username"], "AWS");
        assert_eq!(entry["password"], "p:w");
        assert_eq!(entry["auth"], STANDARD.encode("AWS:p:w"));
        assert_eq!(v["auths"]["b.example"], *entry);
        assert_eq!(hosts(payload.expose()).unwrap(), ["a.example", "b.example"]);
    }

    #[test]
    fn each_region_keeps_its_own_password() {
        let payload = build(&[cred("one", &["a"]), cred("two", &["b"])]);
        let v: serde_json::Value = serde_json::from_slice(payload.expose()).unwrap();
        assert_eq!(v["auths"]["a"]["password"], "one");
        assert_eq!(v["auths"]["b"]["password"], "two");
    }

    proptest! {
        // Arbitrary bytes never panic the decoder.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_token(&String::from_utf8_lossy(&bytes));
            let _ = decode_token(&STANDARD.encode(&bytes));
        }

        // Whatever a valid token holds comes back out of the payload unchanged.
        #[test]
        fn token_round_trips_through_payload(user in "[A-Za-z0-9]{1,8}", password in "[ -~]{1,64}", host in "[a-z0-9.-]{1,40}") {
            let token = STANDARD.encode(format!("{user}:{password}"));
            let login = decode_token(&token).unwrap();
            let payload = build(&[RegionCredential { login, expires_at: None, hosts: vec![host.clone()] }]);
            let v: serde_json::Value = serde_json::from_slice(payload.expose()).unwrap();
            prop_assert_eq!(v["auths"][&host]["auth"].as_str().unwrap(), token.as_str());
            prop_assert_eq!(v["auths"][&host]["password"].as_str().unwrap(), password.as_str());
            prop_assert_eq!(v["auths"][&host]["username"].as_str().unwrap(), user.as_str());
        }
    }
}
