//! The test servers `scripts/test.sh` starts, as the environment names them, and the fixed
//! answers of moto's ECR.

use std::path::PathBuf;

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
pub const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
/// The same registry's dual-stack (IPv6) name, which every Secret holds next to `HOST`.
pub const DUAL_STACK_HOST: &str = "123456789012.dkr-ecr.us-east-1.on.aws";
/// What moto answers: base64 of `AWS:<account>-auth-token`.
pub const PASSWORD: &str = "123456789012-auth-token";
pub const AUTH: &str = "QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu";

pub struct TestEnv {
    pub kubeconfig: PathBuf,
    pub apiserver: String,
    pub admin_token: String,
    pub ecr_endpoint: String,
}

pub fn need(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: the integration tests need the real kube-apiserver and ECR emulator. \
             Run them with scripts/test.sh, which installs and starts both."
        )
    })
}

pub fn env() -> TestEnv {
    TestEnv {
        kubeconfig: need("ECR_REFRESH_TEST_KUBECONFIG").into(),
        apiserver: need("ECR_REFRESH_TEST_APISERVER"),
        admin_token: need("ECR_REFRESH_TEST_ADMIN_TOKEN"),
        ecr_endpoint: need("ECR_REFRESH_TEST_ECR_ENDPOINT"),
    }
}
