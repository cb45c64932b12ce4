//! The calls: every API call on the pull Secret, and what their answers mean.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::Status;
use tracing::{debug, info, warn};

use super::desired::Desired;
use super::ledger::Written;
use super::{
    Found, LazyDesired, Op, Policy, SecretError, SecretOutcome, SecretStep, State, Wanted,
};
use crate::cluster::{explain_write, is_status, Cluster, Parts, FIELD_MANAGER};
use crate::shutdown::Shield;

/// Our Secret in every namespace that has one (and `wanted` accepts), judged by `judge` as
/// each page arrives (see [`Cluster::list_named`]). With [`Parts::Metadata`], the list carries no
/// type and no payload (see [`Found::of_metadata`]): a tenth of the bytes of whole Secrets.
pub(crate) async fn list_everywhere<T>(
    cluster: &Cluster,
    name: &str,
    parts: Parts,
    wanted: impl Fn(&str) -> bool,
    judge: impl Fn(&Secret) -> T,
) -> Result<HashMap<String, T>, kube::Error> {
    let mut found = HashMap::new();
    let each = |s: Secret| {
        if let Some(ns) = s.metadata.namespace.as_deref().filter(|ns| wanted(ns)) {
            found.insert(ns.to_string(), judge(&s));
        }
    };
    cluster
        .list_named("list secrets", name, parts, each)
        .await?;
    Ok(found)
}

/// What one write did, told from the answer alone.
enum Applied {
    Created,
    Updated,
    /// The apply changed nothing (our last change to it is older than the answer).
    Unchanged,
}

/// What [`Secrets::ensure`] did, and the resourceVersion its write produced (for the ledger).
#[derive(Debug)]
pub(crate) struct Ensured {
    pub(crate) outcome: SecretOutcome,
    /// `None` when nothing was written, or only in a dry run.
    pub(crate) resource_version: Option<String>,
    /// Data keys of someone else's that were removed first.
    pub(crate) removed: Vec<String>,
    /// The uid of the Secret written, for its Event (`None` as for `resource_version`).
    pub(crate) uid: Option<String>,
}

impl Ensured {
    fn left() -> Self {
        Self {
            outcome: SecretOutcome::Unchanged,
            resource_version: None,
            uid: None,
            removed: Vec::new(),
        }
    }
}

/// The outcome of a write sent as a dry run: nothing to record.
fn dry(outcome: SecretOutcome, removed: Vec<String>) -> Ensured {
    Ensured {
        outcome,
        resource_version: None,
        uid: None,
        removed,
    }
}

/// Conditional writes that meet a Secret changed since it was read: read it again and decide
/// again, this many times.
const WRITE_ATTEMPTS: u32 = 3;

/// Every API call on the pull Secret of one namespace.
pub(crate) struct Secrets<'a> {
    cluster: &'a Cluster,
    api: Api<Secret>,
    ns: &'a str,
    name: &'a str,
}

impl<'a> Secrets<'a> {
    pub(crate) fn new(cluster: &'a Cluster, ns: &'a str, name: &'a str) -> Self {
        Self {
            cluster,
            api: Api::namespaced(cluster.client(), ns),
            ns,
            name,
        }
    }

    fn error(&self, op: Op, e: &kube::Error) -> SecretError {
        let terminating =
            |s: &Status| s.is_forbidden() && s.message.contains("because it is being terminated");
        let namespace_missing = |s: &Status| {
            s.is_not_found() && s.details.as_ref().is_some_and(|d| d.kind == "namespaces")
        };
        if is_status(e, terminating) {
            SecretError::Terminating
        } else if is_status(e, namespace_missing) {
            SecretError::NamespaceNotFound
        } else {
            SecretError::Call {
                op,
                secret: self.name.to_string(),
                message: explain_write(e),
            }
        }
    }

    fn not_ours(&self) -> SecretError {
        SecretError::NotOurs {
            secret: self.name.to_string(),
        }
    }

    pub(crate) async fn get(&self) -> Result<Option<Secret>, SecretError> {
        self.cluster
            .call("get secret", || self.api.get_opt(self.name))
            .await
            .map_err(|e| self.error(Op::Read, &e))
    }

    /// How the Secret stands now, read on its own (when the cluster-wide list was not made);
    /// `written` is the ledger's word on it.
    pub(crate) async fn find(
        &self,
        written: &Written,
        wanted: &Wanted,
        policy: Policy,
    ) -> Result<Found, SecretError> {
        let existing = self.get().await?;
        Ok(Found::of(
            existing.as_ref(),
            written,
            wanted,
            policy,
            jiff::Timestamp::now(),
        ))
    }

    /// Makes the Secret hold what `lazy` fetches, if a write is due. `found` is how it stood
    /// when listed or read. Whose it is, is decided by our label before anything is written, and every write is conditional on what was read (a
    /// create, or an apply with the resourceVersion read): a Secret that changed since is read
    /// again and judged again.
    pub(crate) async fn ensure(
        &self,
        written: &Written,
        lazy: &LazyDesired,
        policy: Policy,
        mut found: Found,
        shield: &Shield,
    ) -> Result<Ensured, SecretError> {
        for attempt in 1..=WRITE_ATTEMPTS {
            if let Some(outcome) = self.write_if_due(lazy, policy, &found, shield).await? {
                return Ok(outcome);
            }
            debug!(
                namespace = self.ns,
                attempt, "secret changed since it was read; reading it again"
            );
            found = self.find(written, &lazy.wanted, policy).await?;
        }
        Err(SecretError::Call {
            op: Op::Write,
            secret: self.name.to_string(),
            message: format!("it kept changing under us ({WRITE_ATTEMPTS} conflicts in a row); the next run will retry"),
        })
    }

    /// Leaves the Secret, refuses it, or writes it; `None` when it changed since `found`.
    async fn write_if_due(
        &self,
        lazy: &LazyDesired,
        policy: Policy,
        found: &Found,
        shield: &Shield,
    ) -> Result<Option<Ensured>, SecretError> {
        let step = found.step(policy);
        let due = match (step, &found.due) {
            (SecretStep::Refuse, _) => return Err(self.refusal(&found.state)),
            (SecretStep::Leave, _) | (_, None) => {
                debug!(namespace = self.ns, "secret is current");
                return Ok(Some(Ensured::left()));
            }
            (_, Some(due)) => due,
        };
        // Everything below writes, so get the token first: a failed fetch writes nothing.
        let desired = lazy.get().await.map_err(SecretError::Token)?;
        debug!(namespace = self.ns, reason = %due, "secret is due");
        // The server refuses to change a Secret's type in place: delete exactly the object we
        // saw, then create ours. The shield is held from that delete until this function
        // returns, after the create, so neither --timeout nor a signal leaves the namespace
        // without a Secret in between.
        let _delete_to_create = match (step, &found.state) {
            (SecretStep::Replace, State::WrongType(found_type)) => {
                let held = shield.hold().await;
                warn!(namespace = self.ns, secret = self.name, found = %found_type, "--force: replacing secret of the wrong type");
                match self
                    .delete_seen(&found.seen, Op::Replace, policy.dry_run)
                    .await
                {
                    Err(SecretError::Changed) => return Ok(None),
                    other => other?,
                }
                if policy.dry_run {
                    // The delete did not persist, so a dry-run create would still meet the old
                    // one.
                    return Ok(Some(dry(SecretOutcome::Updated, Vec::new())));
                }
                Some(held)
            }
            _ => None,
        };
        let mut seen = found.seen.resource_version.clone();
        let removed = found.strays.clone();
        if !removed.is_empty() && step == SecretStep::Apply {
            // The admission policy refuses our apply while they are there, and an apply never
            // removes another manager's fields: remove them first, from exactly what was read.
            warn!(namespace = self.ns, secret = self.name, keys = ?removed, "removing data keys ecr-refresh does not write");
            match self
                .remove_keys(seen.as_deref(), &removed, policy.dry_run)
                .await
            {
                Err(SecretError::Changed) => return Ok(None),
                Err(e) => return Err(e),
                // The dry-run removal did not persist, so a dry-run apply would meet the keys.
                Ok(_) if policy.dry_run => return Ok(Some(dry(SecretOutcome::Updated, removed))),
                Ok(rv) => seen = rv,
            }
        }
        let written = self.write(&desired, policy, &found.state, seen).await;
        let (outcome, stored) = match written? {
            None => return Ok(None),
            Some((Applied::Unchanged, stored)) => {
                debug!(namespace = self.ns, "secret is current");
                (SecretOutcome::Unchanged, stored)
            }
            // A Secret of the wrong type replaced: there was one before.
            Some((Applied::Created, stored)) if found.state != State::Missing => {
                (SecretOutcome::Updated, stored)
            }
            Some((Applied::Created, stored)) => (SecretOutcome::Created, stored),
            Some((Applied::Updated, stored)) => (SecretOutcome::Updated, stored),
        };
        // Removing keys changed it even when the apply did not.
        let outcome = match outcome {
            SecretOutcome::Unchanged if !removed.is_empty() => SecretOutcome::Updated,
            other => other,
        };
        if outcome != SecretOutcome::Unchanged {
            info!(namespace = self.ns, secret = self.name, outcome = ?outcome, reason = %due, dry_run = policy.dry_run, "secret written");
        }
        Ok(Some(Ensured {
            outcome,
            resource_version: stored.resource_version.filter(|_| !policy.dry_run),
            uid: stored.uid.filter(|_| !policy.dry_run),
            removed,
        }))
    }

    /// Removes the data keys `keys` with one JSON patch, conditional on `seen` (the
    /// resourceVersion read; a conflict means it changed since). The resourceVersion after it.
    async fn remove_keys(
        &self,
        seen: Option<&str>,
        keys: &[String],
        dry_run: bool,
    ) -> Result<Option<String>, SecretError> {
        let Some(seen) = seen else {
            return Err(SecretError::Changed);
        };
        // A resourceVersion in the patched object is a precondition: 409 if it changed.
        let mut patch = vec![
            serde_json::json!({"op": "replace", "path": "/metadata/resourceVersion", "value": seen}),
        ];
        patch.extend(keys.iter().map(|k| {
            let pointer = k.replace('~', "~0").replace('/', "~1");
            serde_json::json!({"op": "remove", "path": format!("/data/{pointer}")})
        }));
        let pp = PatchParams {
            dry_run,
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        let client = self.cluster.client();
        let stored: Secret = self
            .cluster
            .call("remove secret keys", || {
                let request = kube::core::Request::new(self.api.resource_url())
                    // Serialized as the bare document; the content type is set below.
                    .patch(self.name, &pp, &Patch::Merge(&patch))
                    .map(|mut r| {
                        r.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/json-patch+json"),
                        );
                        r
                    });
                let client = client.clone();
                async move {
                    client
                        .request::<Secret>(request.map_err(kube::Error::BuildRequest)?)
                        .await
                }
            })
            .await
            .map_err(|e| self.write_error(&e))?;
        Ok(stored.metadata.resource_version)
    }

    /// Why someone else's Secret, or one of the wrong type, is left alone (without --force).
    fn refusal(&self, state: &State) -> SecretError {
        match state {
            State::WrongType(found) => SecretError::WrongType {
                secret: self.name.to_string(),
                found: found.clone(),
            },
            _ => self.not_ours(),
        }
    }

    /// Applies `desired` over the Secret as found (`state`, resourceVersion `seen`); `None`
    /// when it changed since. Also the resourceVersion the write produced.
    async fn write(
        &self,
        desired: &Desired,
        policy: Policy,
        state: &State,
        seen: Option<String>,
    ) -> Result<Option<(Applied, ObjectMeta)>, SecretError> {
        let mut secret = desired.object(self.name, self.ns);
        // None there (or just deleted): an apply without force creates it, and conflicts with
        // one that someone else made since (a POST would be surer, but RBAC cannot allow a
        // create by name); with --force it is taken anyway. Ours, or taken over with --force:
        // forced, so fields someone else edited come back, but only if it is still the object
        // we judged.
        let force = policy.force || *state == State::Ours;
        if matches!(state, State::Ours | State::Foreign) {
            secret.metadata.resource_version = seen;
        }
        match self.apply(&secret, force, policy.dry_run).await {
            Err(SecretError::Changed) => Ok(None),
            other => other.map(Some),
        }
    }

    /// A conflict on a conditional write means the Secret changed since it was read.
    fn write_error(&self, e: &kube::Error) -> SecretError {
        if is_status(e, |s| s.is_conflict()) {
            SecretError::Changed
        } else {
            self.error(Op::Write, e)
        }
    }

    /// Deletes our Secret as `seen` (uid + resourceVersion preconditions), so a Secret
    /// changed or replaced since is left alone.
    pub(crate) async fn delete(&self, seen: &Secret, dry_run: bool) -> Result<(), SecretError> {
        self.delete_seen(&seen.metadata, Op::Delete, dry_run).await
    }

    async fn delete_seen(
        &self,
        seen: &ObjectMeta,
        op: Op,
        dry_run: bool,
    ) -> Result<(), SecretError> {
        let dp = DeleteParams {
            dry_run,
            preconditions: Some(Preconditions {
                uid: seen.uid.clone(),
                resource_version: seen.resource_version.clone(),
            }),
            ..Default::default()
        };
        let (result, sent) = self
            .cluster
            .call_counted("delete secret", || self.api.delete(self.name, &dp))
            .await;
        match result {
            Ok(_) => Ok(()),
            // An earlier attempt whose answer was lost deleted it: that is success.
            Err(e) if sent > 1 && is_status(&e, |s| self.secret_not_found(s)) => {
                debug!(
                    namespace = self.ns,
                    secret = self.name,
                    "a retried delete found it gone"
                );
                Ok(())
            }
            Err(e) => Err(match op {
                Op::Replace => self.write_error(&e),
                _ => self.error(op, &e),
            }),
        }
    }

    /// A 404 about our Secret itself, not about its namespace.
    fn secret_not_found(&self, s: &Status) -> bool {
        s.is_not_found() && s.details.as_ref().is_none_or(|d| d.kind == "secrets")
    }

    /// Server-side apply of `secret`. Forced, it is conditional on the resourceVersion it
    /// carries (409 if the Secret changed since). Without force the server creates it (201),
    /// or refuses (409) if anyone else set fields to other values. Sent raw: kube's
    /// `Api::patch` hides the status code and the Date header, which tell an apply that
    /// changed nothing.
    async fn apply(
        &self,
        secret: &Secret,
        force: bool,
        dry_run: bool,
    ) -> Result<(Applied, ObjectMeta), SecretError> {
        let mut pp = PatchParams::apply(FIELD_MANAGER);
        pp.force = force;
        pp.dry_run = dry_run;
        let client = self.cluster.client();
        // A retried apply may follow one that was applied but whose answer was lost: then the
        // server's answer to the retry says "200, unchanged", and only the clock tells.
        let started = std::time::Instant::now();
        let (answer, sent) = self
            .cluster
            .call_counted("apply secret", || async {
                let request = kube::core::Request::new(self.api.resource_url())
                    .patch(self.name, &pp, &Patch::Apply(secret))
                    .map_err(kube::Error::BuildRequest)?;
                let response = client.send(request.map(kube::client::Body::from)).await?;
                let code = response.status().as_u16();
                let date = response
                    .headers()
                    .get("date")
                    .and_then(|v| v.to_str().ok())
                    .and_then(http_date);
                let body = response.into_body().collect_bytes().await?;
                if code >= 400 {
                    return Err(api_error(code, &body));
                }
                let stored: Secret =
                    serde_json::from_slice(&body).map_err(kube::Error::SerdeError)?;
                Ok((code, date, stored))
            })
            .await;
        let (took, retried) = (started.elapsed(), sent > 1);
        let (code, date, stored) = answer.map_err(|e| self.write_error(&e))?;
        let applied = match code {
            201 => Applied::Created,
            _ if retried && created_within(&stored, date, took) => Applied::Created,
            _ if unchanged(&stored, date, took) => Applied::Unchanged,
            _ => Applied::Updated,
        };
        Ok((applied, stored.metadata))
    }
}

/// The server keeps our field manager's timestamp when an apply changes nothing, and sets it
/// while handling a request that does. Both it and the answer's Date header are in whole
/// seconds of the server's clock, and a write by this request is stamped at most `took` before
/// the Date, so only a gap of more than `took` + 1 s proves the apply changed nothing. A pass
/// within about 2 s of the last write therefore reports an update.
fn unchanged(stored: &Secret, date: Option<jiff::Timestamp>, took: Duration) -> bool {
    let ours = stored.metadata.managed_fields.iter().flatten().find(|m| {
        m.manager.as_deref() == Some(FIELD_MANAGER) && m.operation.as_deref() == Some("Apply")
    });
    match (ours.and_then(|m| m.time.as_ref()), date) {
        (Some(changed), Some(now)) => {
            (now.as_second() - changed.0.as_second()) as f64 > took.as_secs_f64() + 1.0
        }
        _ => false,
    }
}

/// Created while our attempts were under way (`took`, on the server's clock as in
/// [`unchanged`]): an earlier attempt made it. Anyone else's would have made our apply conflict.
fn created_within(stored: &Secret, date: Option<jiff::Timestamp>, took: Duration) -> bool {
    match (stored.metadata.creation_timestamp.as_ref(), date) {
        (Some(created), Some(now)) => {
            (now.as_second() - created.0.as_second()) as f64 <= took.as_secs_f64() + 1.0
        }
        _ => false,
    }
}

fn http_date(value: &str) -> Option<jiff::Timestamp> {
    jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()
}

/// An error answer as kube would report it: the server's Status, or one made from the body.
fn api_error(code: u16, body: &[u8]) -> kube::Error {
    let status = serde_json::from_slice::<Status>(body).unwrap_or_else(|_| {
        Status::failure(String::from_utf8_lossy(body).trim(), "").with_code(code)
    });
    kube::Error::Api(status.boxed())
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::desired;
    use super::*;

    #[test]
    fn unchanged_only_when_our_last_change_is_clearly_older_than_the_answer() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
        let date = http_date("Fri, 27 Nov 2026 03:08:02 GMT");
        assert_eq!(date, Some("2026-11-27T03:08:02Z".parse().unwrap()));
        let entry = |manager: &str, at: &str| ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Apply".into()),
            time: Some(Time(at.parse().unwrap())),
            ..Default::default()
        };
        let mut s = desired(10_000).object("awsecr-cred", "ns");
        let fast = Duration::from_millis(20);
        s.metadata.managed_fields = Some(vec![
            entry("kubectl", "2026-11-27T03:08:02Z"),
            entry(FIELD_MANAGER, "2026-11-27T02:08:02Z"),
        ]);
        assert!(unchanged(&s, date, fast));
        assert!(!unchanged(&s, None, fast));
        // Stamped in this second or the one before: possibly by this very request.
        for at in ["2026-11-27T03:08:02Z", "2026-11-27T03:08:01Z"] {
            s.metadata.managed_fields = Some(vec![entry(FIELD_MANAGER, at)]);
            assert!(!unchanged(&s, date, fast), "{at}");
        }
        s.metadata.managed_fields = Some(vec![entry(FIELD_MANAGER, "2026-11-27T03:08:00Z")]);
        assert!(unchanged(&s, date, fast));
        // A slow answer widens the window.
        assert!(!unchanged(&s, date, Duration::from_millis(1500)));
        s.metadata.managed_fields = None;
        assert!(!unchanged(&s, date, fast));
    }

    #[test]
    fn error_answers_become_api_errors() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Apply failed with 1 conflict","reason":"Conflict","code":409}"#;
        assert!(is_status(&api_error(409, body), |s| s.is_conflict()));
        let e = api_error(502, b"<html>bad gateway</html>");
        assert!(is_status(&e, |s| s.code == 502 && s.message.contains("bad gateway")));
    }
}
