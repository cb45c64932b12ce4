//! Read, patch, and retry when the ServiceAccount changed in between.

use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, Patch, PatchParams};
use kube::Resource as _;
use serde_json::{json, Value};
use tracing::{debug, info};

use super::{get, Listed, SaError, ServiceAccountOutcome};
use crate::cluster::{explain_write, is_status, Cluster, FIELD_MANAGER};

const CONFLICT_RETRIES: u32 = 5;
const POLL: Duration = Duration::from_millis(500);
/// Sent with this content type by hand rather than as kube's `Patch::Json` (its `jsonpatch`
/// feature): the operations are plain JSON made and unit-tested in `plan.rs`, and the typed
/// form would add json-patch and jsonptr only to be serialized back into the same bytes.
const JSON_PATCH: &str = "application/json-patch+json";

/// One ServiceAccount to edit, and how to write it.
pub(super) struct Edit<'a> {
    pub(super) cluster: &'a Cluster,
    pub(super) ns: &'a str,
    pub(super) name: &'a str,
    pub(super) dry_run: bool,
}

/// What one attempt leaves to the next.
#[derive(Default)]
struct Attempts {
    /// The resourceVersion of a read whose patch got a 422, and the server's words: if a re-read
    /// shows it unchanged, the 422 was not our test op failing but a real refusal.
    refused: Option<(String, String)>,
    /// What a patch whose answer was lost (then retried and refused) did, if it was applied:
    /// finding nothing left to do afterwards means it was.
    maybe_done: Option<ServiceAccountOutcome>,
}

impl Edit<'_> {
    /// Read, patch, retry when it changed meanwhile. `plan` turns the ServiceAccount as read
    /// into patch operations (none: nothing to write) and what they do, which is returned.
    /// `known` is the ServiceAccount as already listed; `keep_waiting` says whether a missing
    /// one is waited for.
    pub(super) async fn run(
        &self,
        mut known: Option<Listed>,
        keep_waiting: impl Fn() -> bool,
        plan: impl Fn(&ServiceAccount) -> (Vec<Value>, ServiceAccountOutcome),
    ) -> Result<ServiceAccountOutcome, SaError> {
        let mut attempts = Attempts::default();
        for attempt in 1..=CONFLICT_RETRIES {
            let sa = match known.take() {
                Some(listed) => ServiceAccount::from(listed),
                None => self.read(&keep_waiting).await?,
            };
            let rv = sa.metadata.resource_version.clone().unwrap_or_default();
            let (changes, change) = plan(&sa);
            if changes.is_empty() {
                return Ok(attempts.maybe_done.unwrap_or(change));
            }
            attempts.refuse_again(&rv, self.name)?;
            let (result, sent) = self.patch(&rv, changes).await;
            match result {
                Ok(()) => {
                    info!(
                        namespace = self.ns,
                        service_account = self.name,
                        dry_run = self.dry_run,
                        "updated imagePullSecrets"
                    );
                    return Ok(change);
                }
                Err(e) => attempts.failed(e, rv, change, sent > 1, self.name)?,
            }
            debug!(
                namespace = self.ns,
                service_account = self.name,
                attempt,
                "service account changed meanwhile; re-reading"
            );
        }
        Err(SaError::Update {
            service_account: self.name.to_string(),
            message: format!("it kept changing under us ({CONFLICT_RETRIES} conflicts in a row); the next run will retry"),
        })
    }

    /// Reads it, waiting for it to appear while `keep_waiting` says so.
    async fn read(&self, keep_waiting: impl Fn() -> bool) -> Result<ServiceAccount, SaError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.cluster.client(), self.ns);
        loop {
            match get(self.cluster, &api, self.name).await? {
                Some(sa) => return Ok(sa),
                None if keep_waiting() => {
                    debug!(
                        namespace = self.ns,
                        service_account = self.name,
                        "waiting for service account"
                    );
                    tokio::time::sleep(POLL).await;
                }
                None => return Err(missing(self.name)),
            }
        }
    }

    /// Sends `changes` as one JSON patch, guarded by a `test` of the resourceVersion read.
    /// Also says how many times it was sent: more than once, an answer was lost.
    async fn patch(&self, rv: &str, changes: Vec<Value>) -> (Result<(), kube::Error>, u32) {
        let client = self.cluster.client();
        let url = ServiceAccount::url_path(&(), Some(self.ns));
        let pp = PatchParams {
            dry_run: self.dry_run,
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        let mut patch =
            vec![json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv})];
        patch.extend(changes);
        let (result, sent) = self
            .cluster
            .call_counted("patch service account", || {
                let request = kube::core::Request::new(url.clone())
                    // Serialized as the bare document; the content type is set below.
                    .patch(self.name, &pp, &Patch::Merge(&patch))
                    .map(|mut r| {
                        r.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static(JSON_PATCH),
                        );
                        r
                    });
                let client = client.clone();
                async move {
                    client
                        .request::<ServiceAccount>(request.map_err(kube::Error::BuildRequest)?)
                        .await
                }
            })
            .await;
        (result.map(drop), sent)
    }
}

impl Attempts {
    /// A 422 for this very resourceVersion again: the server refuses the change itself.
    fn refuse_again(&mut self, rv: &str, name: &str) -> Result<(), SaError> {
        match self.refused.take() {
            Some((refused_rv, message)) if refused_rv == rv => Err(SaError::Update {
                service_account: name.to_string(),
                message,
            }),
            _ => Ok(()),
        }
    }

    /// A failed patch: `Ok` when another attempt may succeed. `resent`: the patch went out more
    /// than once, so an earlier send may have been applied.
    fn failed(
        &mut self,
        e: kube::Error,
        rv: String,
        change: ServiceAccountOutcome,
        resent: bool,
        name: &str,
    ) -> Result<(), SaError> {
        // A failed `test` op is a 422 (not a 409), with no detail to tell it apart: so re-read,
        // and the resourceVersion says which it was.
        if is_status(&e, |s| s.code == 422 || s.is_conflict()) {
            if is_status(&e, |s| s.code == 422) {
                self.refused = Some((rv, explain_write(&e)));
            }
            if resent {
                self.maybe_done = Some(change);
            }
            return Ok(());
        }
        if is_status(&e, |s| s.is_not_found()) {
            return Err(missing(name));
        }
        Err(SaError::Update {
            service_account: name.to_string(),
            message: explain_write(&e),
        })
    }
}

/// Not there; [`super::link`] says how long it was waited for.
fn missing(name: &str) -> SaError {
    SaError::Missing {
        service_account: name.to_string(),
        waited: String::new(),
    }
}
