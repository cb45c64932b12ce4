//! Events that namespace owners see with `kubectl describe` and `kubectl get events`: why our
//! Secret could not be written, a link that was refused, a pod stuck on a pull, and (Normal)
//! the Secret's creation and a Warning that has cleared.
//!
//! What to say is judged from the run's report ([`notices`]) and what to write from one list
//! of our own Warnings and Recovereds ([`plan`]); both are pure. [`record`] does the I/O. A
//! pass that wrote nothing and met nothing wrong says nothing and lists nothing. A condition
//! that persists is written at most once per `repeat_after` (default 1h): the first time as a
//! new Event, then as a `series` update of the same Event, as the Kubernetes event recorder
//! does. A SecretCreated is created under its fixed name; one already there says it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use tracing::{debug, warn};

use crate::cluster::{explain_write, is_status, Cluster, FIELD_MANAGER};
use crate::pullsecret::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::report::{NamespaceReport, RunReport, SecretTrouble};
use crate::serviceaccount::ServiceAccountOutcome;

/// `reportingController` of every Event we write (`kubectl get events` shows it as the source;
/// core/v1 calls it `reportingComponent`).
pub(crate) const CONTROLLER: &str = "ecr-refresh";

/// `condition` on a Warning or Recovered (what the pass lists), `created` on a SecretCreated.
const EVENT_LABEL: &str = "ecr-refresh/event";

/// Whether and how often `sync` writes Events.
#[derive(Clone, Debug)]
pub(crate) struct EventOptions {
    pub(crate) enabled: bool,
    /// A condition that persists is written again at most this often.
    pub(crate) repeat_after: Duration,
    /// `reportingInstance`: the pod's name in the CronJob (HOSTNAME), else the host's.
    pub(crate) instance: String,
}

impl EventOptions {
    pub(crate) fn instance() -> String {
        std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "ecr-refresh".into())
            .chars()
            .take(128)
            .collect()
    }
}

/// The kinds of object an Event of ours is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Secret,
    ServiceAccount,
    Pod,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Secret => "Secret",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::Pod => "Pod",
        }
    }
}

/// Why an Event is written: its `reason`, as the README's "For namespace owners" lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Reason {
    /// Our Secret's name is taken by a Secret that is not ours (or of another type).
    SecretNameTaken,
    /// The Secret could not be written or refreshed.
    SecretNotRefreshed,
    /// A ServiceAccount could not be given the Secret in `imagePullSecrets`.
    LinkFailed,
    /// A pod waits on a pull because it was created before its ServiceAccount listed the Secret.
    StuckWithoutPullSecret,
    /// Prune removed the Secret (and our entry): the namespace is no longer selected.
    SecretRemoved,
    /// Normal: the Secret was created in this namespace.
    SecretCreated,
    /// Normal: a Warning of ours about this object no longer holds.
    Recovered,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::SecretNameTaken => "SecretNameTaken",
            Reason::SecretNotRefreshed => "SecretNotRefreshed",
            Reason::LinkFailed => "LinkFailed",
            Reason::StuckWithoutPullSecret => "StuckWithoutPullSecret",
            Reason::SecretRemoved => "SecretRemoved",
            Reason::SecretCreated => "SecretCreated",
            Reason::Recovered => "Recovered",
        }
    }

    fn warning(self) -> bool {
        !matches!(self, Reason::SecretCreated | Reason::Recovered)
    }

    /// A Warning, or its Recovered: what the list of our Events is for. A SecretCreated is
    /// not listed (there is one per namespace in the first hour of an install): it is created
    /// under its fixed name, and one already there says it.
    fn condition(self) -> bool {
        self != Reason::SecretCreated
    }

    fn label(self) -> &'static str {
        if self.condition() {
            "condition"
        } else {
            "created"
        }
    }

    /// `action`: what the tool was doing.
    fn action(self) -> &'static str {
        match self {
            Reason::LinkFailed => "Link",
            Reason::StuckWithoutPullSecret => "Heal",
            Reason::SecretRemoved => "Prune",
            _ => "Sync",
        }
    }
}

/// What one object should be told this pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Notice {
    pub(crate) namespace: String,
    pub(crate) kind: Kind,
    pub(crate) name: String,
    /// Known from the lists (pods); read before writing otherwise.
    pub(crate) uid: Option<String>,
    /// Where there is no such object (a Secret never written): this ServiceAccount instead.
    pub(crate) else_on: Option<String>,
    pub(crate) reason: Reason,
    pub(crate) note: String,
}

impl Notice {
    /// The Event's name: one per object and reason, so a repeat finds it.
    pub(crate) fn event_name(&self) -> String {
        let suffix = format!(
            ".{}.{}",
            self.kind.as_str().to_lowercase(),
            self.reason.as_str().to_lowercase()
        );
        let room = 253 - suffix.len();
        let object: String = self.name.chars().take(room).collect();
        format!("{}{suffix}", object.trim_end_matches(['.', '-']))
    }

    /// The names of the Warnings that a Recovered about the same object clears.
    fn cleared_warnings(&self) -> Vec<String> {
        let reasons: &[Reason] = match self.kind {
            Kind::Secret => &[Reason::SecretNameTaken, Reason::SecretNotRefreshed],
            Kind::ServiceAccount => &[Reason::LinkFailed],
            Kind::Pod => &[],
        };
        reasons
            .iter()
            .map(|&reason| {
                Notice {
                    reason,
                    ..self.clone()
                }
                .event_name()
            })
            .collect()
    }
}

/// What the report says each object should be told: Warnings for what went wrong, a Normal for
/// each Secret created; and the objects written this pass, which may have recovered.
pub(crate) fn notices(report: &RunReport, secret: &str) -> (Vec<Notice>, Vec<Notice>) {
    let (mut said, mut recovered) = (Vec::new(), Vec::new());
    for ns in &report.namespaces {
        let secret = ns.secret_name.as_deref().unwrap_or(secret);
        namespace_notices(ns, secret, &mut said, &mut recovered);
    }
    (said, recovered)
}

fn namespace_notices(
    ns: &NamespaceReport,
    secret: &str,
    said: &mut Vec<Notice>,
    recovered: &mut Vec<Notice>,
) {
    let notice = |kind, name: &str, reason, note: String| Notice {
        namespace: ns.name.clone(),
        kind,
        name: name.to_string(),
        uid: None,
        else_on: None,
        reason,
        note: clip(note),
    };
    let until = ns.held.map_or(String::new(), |t| {
        format!("; the token in it now expires at {t}")
    });
    match &ns.secret_trouble {
        Some(SecretTrouble::NameTaken(e)) => said.push(notice(
            Kind::Secret,
            secret,
            Reason::SecretNameTaken,
            format!("{e}. ecr-refresh writes no ECR pull credentials here until this Secret is renamed or removed (or a cluster admin takes it over with --force)"),
        )),
        Some(SecretTrouble::NotWritten(e)) => said.push(Notice {
            else_on: Some("default".into()),
            ..notice(
                Kind::Secret,
                secret,
                Reason::SecretNotRefreshed,
                format!("{e}{until}. The next pass tries again; if this persists, tell the cluster admin"),
            )
        }),
        None => {}
    }
    match ns.secret {
        Some(crate::pullsecret::SecretOutcome::Created) => said.push(Notice {
            uid: ns.secret_uid.clone(),
            ..notice(
                Kind::Secret,
                secret,
                Reason::SecretCreated,
                format!("created {secret} with an ECR token; ecr-refresh keeps it fresh and lists it in the imagePullSecrets of the ServiceAccounts it links"),
            )
        }),
        Some(crate::pullsecret::SecretOutcome::Deleted) => said.push(Notice {
            else_on: Some("default".into()),
            ..notice(
                Kind::Secret,
                secret,
                Reason::SecretRemoved,
                format!("ecr-refresh removed {secret} and its imagePullSecrets entries: this namespace is no longer among those it keeps (its selection, or an ecr-refresh/opt-out annotation). Pods here get no ECR credentials from ecr-refresh now; ask the cluster admin if that is wrong"),
            )
        }),
        Some(crate::pullsecret::SecretOutcome::Updated) => recovered.push(Notice {
            uid: ns.secret_uid.clone(),
            ..notice(
                Kind::Secret,
                secret,
                Reason::Recovered,
                format!("{secret} holds a fresh ECR token again"),
            )
        }),
        _ => {}
    }
    for sa in &ns.service_accounts {
        match (&sa.outcome, &sa.error) {
            (ServiceAccountOutcome::Failed, Some(e)) if sa.name != "*" => said.push(notice(
                Kind::ServiceAccount,
                &sa.name,
                Reason::LinkFailed,
                format!("could not list {secret} in imagePullSecrets: {e}. Pods of this ServiceAccount get no ECR credentials from ecr-refresh until this is fixed"),
            )),
            (ServiceAccountOutcome::Linked, _) => recovered.push(notice(
                Kind::ServiceAccount,
                &sa.name,
                Reason::Recovered,
                format!("imagePullSecrets lists {secret} again"),
            )),
            _ => {}
        }
    }
    for pod in &ns.stuck_pods {
        if pod.action == crate::stuckpods::PodAction::Deleted {
            continue;
        }
        said.push(Notice {
            uid: Some(pod.uid.clone()),
            ..notice(
                Kind::Pod,
                &pod.name,
                Reason::StuckWithoutPullSecret,
                format!(
                    "waits in {} on {}: it was created before its ServiceAccount listed {secret}, and a pod's imagePullSecrets are fixed when it is created. {}",
                    pod.reason, pod.image, pod.why
                ),
            )
        });
    }
}

/// An Event's note holds at most 1 kB.
fn clip(note: String) -> String {
    if note.len() <= 1024 {
        return note;
    }
    let mut end = 1021;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &note[..end])
}

/// One of our Events as listed: its type and when it was last written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) warning: bool,
    /// `series.count` (1 for a singleton).
    pub(crate) count: i32,
    pub(crate) last: jiff::Timestamp,
}

impl Seen {
    fn of(event: &Event) -> Option<((String, String), Self)> {
        let key = (
            event.metadata.namespace.clone()?,
            event.metadata.name.clone()?,
        );
        let (count, last) = match &event.series {
            Some(s) => (s.count, s.last_observed_time.0),
            None => (1, event.event_time.as_ref()?.0),
        };
        let warning = event.type_.as_deref() == Some("Warning");
        Some((
            key,
            Self {
                warning,
                count,
                last,
            },
        ))
    }
}

/// Our Events as listed, by (namespace, name).
pub(crate) type Listed = HashMap<(String, String), Seen>;

/// What to write for one notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Write {
    Create(Notice),
    /// The Event is there and last written over `repeat_after` ago: count one more.
    Repeat {
        notice: Notice,
        count: i32,
    },
}

/// What to write, given what our Events already say. Pure.
/// - A Warning is written when no Event of ours says it, or when the one that does was last
///   written `repeat_after` ago or more (then as its series' next count).
/// - A SecretCreated is always sent: it is not listed, and its fixed name keeps it once.
/// - A Recovered is written only where a Warning of ours about the object is newer than our
///   last Recovered about it.
pub(crate) fn plan(
    said: Vec<Notice>,
    recovered: Vec<Notice>,
    listed: &Listed,
    now: jiff::Timestamp,
    repeat_after: Duration,
) -> Vec<Write> {
    let seen = |n: &Notice| listed.get(&(n.namespace.clone(), n.event_name()));
    let due = |n: Notice| match seen(&n) {
        _ if !n.reason.condition() => Some(Write::Create(n)),
        None => Some(Write::Create(n)),
        Some(s) if elapsed(s.last, now) >= repeat_after => Some(Write::Repeat {
            count: s.count + 1,
            notice: n,
        }),
        Some(_) => None,
    };
    // A set: a pass that fails everywhere has a Warning and a candidate in every namespace.
    let warned_about: HashSet<(String, String)> = said
        .iter()
        .filter(|n| n.reason.warning())
        .map(|n| (n.namespace.clone(), n.name.clone()))
        .collect();
    let mut writes: Vec<Write> = said.into_iter().filter_map(due).collect();
    for n in recovered {
        // Still wrong in another way this pass: not recovered.
        if warned_about.contains(&(n.namespace.clone(), n.name.clone())) {
            continue;
        }
        let last_warning = n
            .cleared_warnings()
            .into_iter()
            .filter_map(|w| listed.get(&(n.namespace.clone(), w)))
            .filter(|s| s.warning)
            .map(|s| s.last)
            .max();
        let Some(warned) = last_warning else { continue };
        match seen(&n) {
            Some(s) if s.last >= warned => {}
            Some(s) => writes.push(Write::Repeat {
                count: s.count + 1,
                notice: n,
            }),
            None => writes.push(Write::Create(n)),
        }
    }
    writes
}

fn elapsed(then: jiff::Timestamp, now: jiff::Timestamp) -> Duration {
    let secs = now.as_second() - then.as_second();
    Duration::from_secs(secs.max(0) as u64)
}

/// How many Events a pass created and updated, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub(crate) created: usize,
    pub(crate) repeated: usize,
}

/// Writes the Events the report calls for. Never fails the run: what could not be written is
/// returned as a warning for the report.
pub(crate) async fn record(
    cluster: &Cluster,
    report: &RunReport,
    secret: &str,
    opts: &EventOptions,
    concurrency: usize,
) -> Result<Recorded, String> {
    let (said, recovered) = notices(report, secret);
    if said.is_empty() && recovered.is_empty() {
        return Ok(Recorded::default());
    }
    let mut namespaces: Vec<&str> = said
        .iter()
        .filter(|n| n.reason.condition())
        .chain(&recovered)
        .map(|n| n.namespace.as_str())
        .collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    // Only SecretCreated to tell (a first install): nothing to look up.
    let listed = if namespaces.is_empty() {
        Listed::new()
    } else {
        list_ours(cluster, &namespaces).await?
    };
    let now = jiff::Timestamp::now();
    let writes = plan(said, recovered, &listed, now, opts.repeat_after);
    let mut done = Recorded::default();
    let mut failed = Vec::new();
    // As many at once as namespaces are worked on: a failure in every namespace of a large
    // cluster is thousands of Events in its first pass.
    let results: Vec<(bool, Result<(), String>)> = futures::stream::iter(writes)
        .map(|w| async move {
            match &w {
                Write::Create(n) => (true, create(cluster, n, now, opts).await),
                Write::Repeat { notice, count } => {
                    (false, repeat(cluster, notice, *count, now, opts).await)
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    for (created, result) in results {
        match result {
            Ok(()) if created => done.created += 1,
            Ok(()) => done.repeated += 1,
            Err(e) => failed.push(e),
        }
    }
    debug!(created = done.created, repeated = done.repeated, "events");
    match failed.first() {
        None => Ok(done),
        Some(first) => Err(format!(
            "{} of {} events could not be written, the first: {first}",
            failed.len(),
            failed.len() + done.created + done.repeated
        )),
    }
}

/// Every Warning and Recovered of ours, by their labels, in one paged list (a handful: one per
/// object with a condition in the last hour or so); where a cluster-wide list is refused
/// (deploy/namespaced-rbac.yaml), one in each of `namespaces`.
async fn list_ours(cluster: &Cluster, namespaces: &[&str]) -> Result<Listed, String> {
    let everywhere: Api<Event> = Api::all(cluster.client());
    match list_in(cluster, &everywhere).await {
        Err(e) if is_status(&e, |s| s.is_forbidden()) => {
            let mut listed = Listed::new();
            for ns in namespaces {
                let api: Api<Event> = Api::namespaced(cluster.client(), ns);
                let found = list_in(cluster, &api).await;
                listed.extend(found.map_err(|e| unwritten("listing events.k8s.io/v1 events", &e))?);
            }
            Ok(listed)
        }
        found => found.map_err(|e| unwritten("listing events.k8s.io/v1 events", &e)),
    }
}

async fn list_in(cluster: &Cluster, api: &Api<Event>) -> Result<Listed, kube::Error> {
    let mut lp = ListParams::default()
        .labels(&format!(
            "{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{EVENT_LABEL}=condition"
        ))
        .limit(500);
    let mut listed = Listed::new();
    loop {
        let page = cluster.call("listing events", || api.list(&lp)).await?;
        listed.extend(page.items.iter().filter_map(Seen::of));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => lp.continue_token = Some(token),
            _ => return Ok(listed),
        }
    }
}

fn unwritten(what: &str, e: &kube::Error) -> String {
    let why = if is_status(e, |s| s.is_not_found() || s.code == 404) {
        "the server does not serve events.k8s.io/v1 (Kubernetes 1.19+); no Events are written"
            .to_string()
    } else if is_status(e, |s| s.is_forbidden()) {
        format!(
            "{}; grant create, patch and list on events.k8s.io events (rbac.yaml), or turn Events off with --no-events",
            explain_write(e)
        )
    } else {
        explain_write(e)
    };
    warn!("{what}: {why}");
    format!("{what}: {why}")
}

/// Creates the Event, about the object as it is now (its uid, so `kubectl describe` shows it).
async fn create(
    cluster: &Cluster,
    n: &Notice,
    now: jiff::Timestamp,
    opts: &EventOptions,
) -> Result<(), String> {
    let Some(regarding) = regarding(cluster, n).await? else {
        return Ok(());
    };
    let event = Event {
        metadata: ObjectMeta {
            name: Some(n.event_name()),
            namespace: Some(n.namespace.clone()),
            labels: Some(
                [
                    (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
                    (EVENT_LABEL.to_string(), n.reason.label().to_string()),
                ]
                .into(),
            ),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        reporting_controller: Some(CONTROLLER.into()),
        reporting_instance: Some(opts.instance.clone()),
        action: Some(n.reason.action().into()),
        reason: Some(n.reason.as_str().into()),
        type_: Some(
            if n.reason.warning() {
                "Warning"
            } else {
                "Normal"
            }
            .into(),
        ),
        note: Some(n.note.clone()),
        regarding: Some(regarding),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(cluster.client(), &n.namespace);
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match cluster
        .call("creating event", || api.create(&pp, &event))
        .await
    {
        Ok(_) => Ok(()),
        // Made since the list (another pass): it says the same.
        Err(e) if is_status(&e, |s| s.is_already_exists()) => Ok(()),
        Err(e) => Err(unwritten(
            &format!("creating event {}/{}", n.namespace, n.event_name()),
            &e,
        )),
    }
}

/// Counts one more occurrence on the Event's series (its other fields cannot change).
async fn repeat(
    cluster: &Cluster,
    n: &Notice,
    count: i32,
    now: jiff::Timestamp,
    opts: &EventOptions,
) -> Result<(), String> {
    let api: Api<Event> = Api::namespaced(cluster.client(), &n.namespace);
    let series = EventSeries {
        count,
        last_observed_time: MicroTime(now),
    };
    let patch = serde_json::json!({ "series": series });
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let name = n.event_name();
    let patch = Patch::Merge(&patch);
    match cluster
        .call("updating event", || api.patch(&name, &pp, &patch))
        .await
    {
        Ok(_) => Ok(()),
        // Expired since the list (events live an hour by default): say it anew.
        Err(e) if is_status(&e, |s| s.is_not_found()) => create(cluster, n, now, opts).await,
        Err(e) => Err(unwritten(
            &format!("updating event {}/{name}", n.namespace),
            &e,
        )),
    }
}

/// The object the Event is about, with its uid; `None` when it is gone (nothing to say).
async fn regarding(cluster: &Cluster, n: &Notice) -> Result<Option<ObjectReference>, String> {
    let reference = |kind: Kind, name: &str, uid: String| ObjectReference {
        api_version: Some("v1".into()),
        kind: Some(kind.as_str().into()),
        namespace: Some(n.namespace.clone()),
        name: Some(name.to_string()),
        uid: Some(uid),
        ..Default::default()
    };
    if let Some(uid) = &n.uid {
        return Ok(Some(reference(n.kind, &n.name, uid.clone())));
    }
    let uid = match n.kind {
        Kind::Secret => uid_of::<Secret>(cluster, &n.namespace, &n.name).await?,
        Kind::ServiceAccount => uid_of::<ServiceAccount>(cluster, &n.namespace, &n.name).await?,
        Kind::Pod => uid_of::<Pod>(cluster, &n.namespace, &n.name).await?,
    };
    if let Some(uid) = uid {
        return Ok(Some(reference(n.kind, &n.name, uid)));
    }
    let Some(sa) = &n.else_on else {
        return Ok(None);
    };
    Ok(uid_of::<ServiceAccount>(cluster, &n.namespace, sa)
        .await?
        .map(|uid| reference(Kind::ServiceAccount, sa, uid)))
}

async fn uid_of<K>(cluster: &Cluster, ns: &str, name: &str) -> Result<Option<String>, String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(cluster.client(), ns);
    match cluster
        .call("reading the object of an event", || {
            api.get_metadata_opt(name)
        })
        .await
    {
        Ok(meta) => Ok(meta.and_then(|m| m.metadata.uid)),
        Err(e) => Err(format!(
            "reading {ns}/{name} for its event: {}",
            explain_write(&e)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn notice(ns: &str, kind: Kind, name: &str, reason: Reason) -> Notice {
        Notice {
            namespace: ns.into(),
            kind,
            name: name.into(),
            uid: None,
            else_on: None,
            reason,
            note: "n".into(),
        }
    }

    fn listed(items: &[(&Notice, bool, i32, i64)]) -> Listed {
        items
            .iter()
            .map(|(n, warning, count, last)| {
                (
                    (n.namespace.clone(), n.event_name()),
                    Seen {
                        warning: *warning,
                        count: *count,
                        last: at(*last),
                    },
                )
            })
            .collect()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_warning_is_created_then_held_back_for_the_hour_then_counted_in_its_series() {
        let taken = notice("a", Kind::Secret, "awsecr-cred", Reason::SecretNameTaken);
        let none = Listed::new();
        assert_eq!(
            plan(vec![taken.clone()], vec![], &none, at(0), HOUR),
            [Write::Create(taken.clone())]
        );
        let once = listed(&[(&taken, true, 1, 0)]);
        assert!(plan(vec![taken.clone()], vec![], &once, at(300), HOUR).is_empty());
        assert!(plan(vec![taken.clone()], vec![], &once, at(3599), HOUR).is_empty());
        assert_eq!(
            plan(vec![taken.clone()], vec![], &once, at(3600), HOUR),
            [Write::Repeat {
                notice: taken.clone(),
                count: 2
            }]
        );
        let twice = listed(&[(&taken, true, 2, 3600)]);
        assert_eq!(
            plan(vec![taken.clone()], vec![], &twice, at(7300), HOUR),
            [Write::Repeat {
                notice: taken,
                count: 3
            }]
        );
    }

    #[test]
    fn recovered_is_said_once_and_only_after_a_warning_of_ours() {
        let sa = notice("a", Kind::ServiceAccount, "default", Reason::Recovered);
        let failed = notice("a", Kind::ServiceAccount, "default", Reason::LinkFailed);
        // Never warned: a routine link says nothing.
        assert!(plan(vec![], vec![sa.clone()], &Listed::new(), at(0), HOUR).is_empty());
        // Warned: once.
        let warned = listed(&[(&failed, true, 1, 0)]);
        assert_eq!(
            plan(vec![], vec![sa.clone()], &warned, at(10), HOUR),
            [Write::Create(sa.clone())]
        );
        let said = listed(&[(&failed, true, 1, 0), (&sa, false, 1, 10)]);
        assert!(plan(vec![], vec![sa.clone()], &said, at(20), HOUR).is_empty());
        // Warned again after that recovery: the recovery's series counts one more.
        let again = listed(&[(&failed, true, 2, 30), (&sa, false, 1, 10)]);
        assert_eq!(
            plan(vec![], vec![sa.clone()], &again, at(40), HOUR),
            [Write::Repeat {
                notice: sa.clone(),
                count: 2
            }]
        );
        // Still wrong in another way this pass: no recovery.
        let other = notice("a", Kind::ServiceAccount, "default", Reason::LinkFailed);
        assert!(plan(vec![other], vec![sa], &warned, at(10), HOUR).is_empty());
        // A Secret's recovery clears its own Warnings, not a ServiceAccount's.
        let secret = notice("a", Kind::Secret, "default", Reason::Recovered);
        assert!(plan(vec![], vec![secret], &warned, at(10), HOUR).is_empty());
    }

    #[test]
    fn secret_created_is_always_sent_its_fixed_name_keeps_it_once() {
        let created = notice("a", Kind::Secret, "awsecr-cred", Reason::SecretCreated);
        // Not in the list (it holds only conditions): sent, and a 409 says it is there.
        let listed = listed(&[(&created, false, 1, 0)]);
        assert_eq!(
            plan(vec![created.clone()], vec![], &listed, at(10), HOUR),
            [Write::Create(created)]
        );
    }

    #[test]
    fn event_names_are_one_per_object_kind_and_reason_and_valid() {
        let a = notice("a", Kind::Secret, "default", Reason::Recovered).event_name();
        let b = notice("a", Kind::ServiceAccount, "default", Reason::Recovered).event_name();
        assert_eq!(a, "default.secret.recovered");
        assert_ne!(a, b);
        let long = notice(
            "a",
            Kind::Pod,
            &"x".repeat(253),
            Reason::StuckWithoutPullSecret,
        );
        let name = long.event_name();
        assert_eq!(name.len(), 253);
        assert!(name.ends_with(".pod.stuckwithoutpullsecret"));
    }

    #[test]
    fn an_event_refused_by_rbac_names_the_grant_and_the_flag_that_turns_events_off() {
        let refused = kube::Error::Api(Box::new(
            kube::core::Status::failure(
                r#"events.events.k8s.io is forbidden: User "u" cannot list resource "events" in API group "events.k8s.io" at the cluster scope"#,
                "Forbidden",
            )
            .with_code(403),
        ));
        let why = unwritten("listing events", &refused);
        assert!(
            why.contains("grant create, patch and list on events.k8s.io events"),
            "{why}"
        );
        assert!(
            why.ends_with("or turn Events off with --no-events"),
            "{why}"
        );
    }

    #[test]
    fn a_note_is_clipped_to_a_kilobyte_on_a_char_boundary() {
        let note = clip("é".repeat(600));
        assert!(note.len() <= 1024, "{}", note.len());
        assert!(note.ends_with("..."));
        assert_eq!(clip("short".into()), "short");
    }
}
