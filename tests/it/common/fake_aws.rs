//! STS and ECR in one stand-in, for tenants: STS AssumeRole hands each role its own
//! credentials (and refuses the roles a test names), and ECR answers only requests signed with
//! credentials STS handed out, with a token tied to them: `AWS:<password of that role>`. So a
//! Secret's password shows which role's credentials asked for it. Every call is recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};

use super::standin::serve;

pub struct FakeAws {
    pub url: String,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    /// Role ARN of every AssumeRole, in order.
    assumed: Mutex<Vec<String>>,
    /// (role ARN, region) of every GetAuthorizationToken, in order.
    tokens: Mutex<Vec<(String, String)>>,
    /// Access key id handed out → role ARN.
    keys: Mutex<BTreeMap<String, String>>,
    refused: Mutex<BTreeSet<String>>,
}

/// The password ECR hands to `role`'s credentials.
pub fn password_of(role: &str) -> String {
    let name = role.rsplit('/').next().unwrap_or(role);
    format!("pw-{name}")
}

impl FakeAws {
    pub async fn start() -> Self {
        let state = Arc::new(State::default());
        let url = serve(state.clone(), |s, req| async move { s.answer(req).await });
        Self { url, state }
    }

    /// AssumeRole of `role` is refused from now on (AccessDenied), or allowed again.
    pub fn refuse(&self, role: &str, refused: bool) {
        let mut set = self.state.refused.lock().unwrap();
        if refused {
            set.insert(role.to_string());
        } else {
            set.remove(role);
        }
    }

    /// Every role assumed so far, in order.
    pub fn assumed(&self) -> Vec<String> {
        self.state.assumed.lock().unwrap().clone()
    }

    /// (role, region) of every ECR token handed out so far.
    pub fn tokens(&self) -> Vec<(String, String)> {
        self.state.tokens.lock().unwrap().clone()
    }

    /// Forgets the calls so far.
    pub fn reset_calls(&self) {
        self.state.assumed.lock().unwrap().clear();
        self.state.tokens.lock().unwrap().clear();
    }
}

impl State {
    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let target = req
            .headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        // Credential=<key>/<date>/<region>/<service>/aws4_request
        let credential: Vec<String> = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("Credential=").nth(1))
            .map(|c| c.split('/').map(str::to_string).collect())
            .unwrap_or_default();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body).to_string();
        if target.ends_with("GetAuthorizationToken") {
            self.ecr(&credential)
        } else {
            self.sts(&body)
        }
    }

    fn sts(&self, body: &str) -> Response<Full<Bytes>> {
        let form: BTreeMap<String, String> = body
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), decode(v)))
            .collect();
        let role = form.get("RoleArn").cloned().unwrap_or_default();
        if form.get("Action").map(String::as_str) != Some("AssumeRole") || role.is_empty() {
            return xml(
                400,
                error_xml("InvalidAction", "only AssumeRole is served here"),
            );
        }
        self.assumed.lock().unwrap().push(role.clone());
        if self.refused.lock().unwrap().contains(&role) {
            let message = format!("not authorized to perform sts:AssumeRole on {role}");
            return xml(403, error_xml("AccessDenied", &message));
        }
        // One lock for counting and recording: two AssumeRoles at once (tenants' roles are
        // assumed side by side) could otherwise both take the same key, the second role's
        // overwriting the first's, whose token then came out as the other role's.
        let (n, key) = {
            let mut keys = self.keys.lock().unwrap();
            let n = keys.len();
            let key = format!("ASIA{:016}", n + 1);
            keys.insert(key.clone(), role.clone());
            (n, key)
        };
        let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
        let account = role.split(':').nth(4).unwrap_or_default();
        let body = format!(
            r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>secret-{key}</SecretAccessKey><SessionToken>session-{key}</SessionToken><Expiration>{expires}</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROA{n:016}:ecr-refresh</AssumedRoleId><Arn>arn:aws:sts::{account}:assumed-role/x/ecr-refresh</Arn></AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></AssumeRoleResponse>"#,
            expires = expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        );
        xml(200, body)
    }

    fn ecr(&self, credential: &[String]) -> Response<Full<Bytes>> {
        let (Some(key), Some(region)) = (credential.first(), credential.get(2)) else {
            return json(400, unrecognized());
        };
        let Some(role) = self.keys.lock().unwrap().get(key).cloned() else {
            return json(400, unrecognized());
        };
        self.tokens
            .lock()
            .unwrap()
            .push((role.clone(), region.clone()));
        let account = role.split(':').nth(4).unwrap_or_default();
        let expires_at = jiff::Timestamp::now().as_second() + 12 * 3600;
        let endpoint = format!("https://{account}.dkr.ecr.{region}.amazonaws.com");
        json(
            200,
            super::fake_ecr::FakeEcr::answer(&password_of(&role), expires_at, &endpoint),
        )
    }
}

fn unrecognized() -> String {
    serde_json::json!({
        "__type": "UnrecognizedClientException",
        "message": "The security token included in the request is invalid.",
    })
    .to_string()
}

fn error_xml(code: &str, message: &str) -> String {
    format!(
        r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fake</RequestId></ErrorResponse>"#
    )
}

fn xml(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .header("x-amzn-requestid", "fake")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn json(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-requestid", "fake")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// Form decoding: `+` and `%XX`.
fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}
