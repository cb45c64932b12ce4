//! `status`: a read-only health check of every selected namespace.

mod health;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;

use super::{bounded, connect, list_accounts, list_secrets, setup, RunOptions};
use crate::bornlinked;
use crate::cluster::Cluster;
use crate::error::Result;
use crate::namespaces::{self, Action, Planned, Scope};
use crate::pullsecret::{self, Secrets, State};
use crate::report::{AccountStatus, NamespaceStatus, StatusReport};
use crate::serviceaccount::{self, LinkState, ServiceAccounts};
use crate::shutdown::Stop;
use crate::stuckpods::{self, ByNamespace, Candidate};

#[derive(Clone, Debug)]
pub(crate) struct StatusOptions {
    pub(crate) run: RunOptions,
    pub(crate) min_remaining: Duration,
}

impl crate::progress::Tally for NamespaceStatus {
    fn failed(&self) -> bool {
        !self.healthy && self.skipped.is_none()
    }
}

pub(crate) async fn run(opts: &StatusOptions) -> Result<StatusReport> {
    let started = Instant::now();
    // Read-only: a signal may end it at once, so there is no stop to honour.
    let never = Stop::never();
    let limits = opts.run.pace.start(&never);
    let cluster = connect(&opts.run.cluster, &limits).await?;
    let secret = opts.run.target.secret_name.as_str();
    let selection = &opts.run.selection;
    let literal = selection.literal_names();
    // The same lists as `sync`: namespaces, our Secrets, the ServiceAccounts.
    let reads = async {
        Ok(tokio::join!(
            namespaces::plan(&cluster, selection, Scope::Selected),
            bornlinked::state(&cluster),
            stuckpods::find(&cluster, secret, literal.as_deref(), |ns| {
                selection.matches(ns)
            }),
            list_accounts(&cluster, &opts.run),
            // Whole Secrets: the diagnostics read the payload.
            list_secrets(&cluster, &opts.run, false, Secret::clone)
        ))
    };
    let (plan, policy, pods, accounts, secrets) =
        setup(&limits, reads, cluster.hung("listing namespaces")).await?;
    let listed = Listed {
        accounts: Mutex::new(accounts),
        secrets: secrets.map(Mutex::new),
    };
    let mut report = StatusReport::new(opts.run.target.secret_name.clone(), opts.min_remaining);
    report.born_linked_policy = Some(policy);
    let plan = plan?;
    let pods = pods.unwrap_or_else(|e| {
        report.warnings.push(format!(
            "could not look at pods, so stuck pods are not reported: {e}"
        ));
        ByNamespace::new()
    });
    let now = jiff::Timestamp::now();
    let late = |ns: &Planned, _| NamespaceStatus {
        problems: vec![format!(
            "not checked before the run deadline (--timeout {})",
            humantime::format_duration(opts.run.pace.timeout)
        )],
        ..NamespaceStatus::new(&ns.name)
    };
    report.namespaces = bounded(
        plan,
        opts.run.pace.concurrency,
        limits,
        |ns, _| {
            let stuck = pods.get(&ns.name);
            check(&cluster, opts, &listed, ns, now, stuck)
        },
        late,
    )
    .await;
    report.finish(cluster.stats(), started);
    Ok(report)
}

/// What the cluster-wide lists found, taken out namespace by namespace.
struct Listed {
    accounts: Mutex<HashMap<(String, String), serviceaccount::Listed>>,
    /// `None`: not listed, so each namespace reads its own.
    secrets: Option<Mutex<HashMap<String, Secret>>>,
}

impl Listed {
    /// Our Secret in `ns`: `Some(None)` when the list showed none, `None` when not listed.
    fn secret(&self, ns: &str) -> Option<Option<Secret>> {
        let secrets = self.secrets.as_ref()?;
        Some(secrets.lock().unwrap_or_else(|e| e.into_inner()).remove(ns))
    }

    fn account(&self, ns: &str, name: &str) -> Option<serviceaccount::Listed> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        accounts.remove(&(ns.to_string(), name.to_string()))
    }
}

async fn check(
    cluster: &Cluster,
    opts: &StatusOptions,
    listed: &Listed,
    planned: Planned,
    now: jiff::Timestamp,
    pods: Option<&Vec<Candidate>>,
) -> NamespaceStatus {
    let mut st = NamespaceStatus::new(&planned.name);
    if let Action::Skip(why) = planned.action {
        st.healthy = true;
        st.skipped = Some(why.to_string());
        return st;
    }
    let ns = planned.name.as_str();
    let name = opts.run.target.secret_name.as_str();
    let existing = match listed.secret(ns) {
        Some(known) => Ok(known),
        None => Secrets::new(cluster, ns, name).get().await,
    };
    match existing {
        Err(e) => st.problems.push(e.to_string()),
        Ok(existing) => {
            let state = pullsecret::state(existing.as_ref());
            match &state {
                State::Missing => st.problems.push(format!("secret {name} is missing")),
                State::Foreign => st
                    .problems
                    .push(format!("secret {name} is not managed by ecr-refresh")),
                State::WrongType(_) => st.problems.push(format!(
                    "secret {name} is not of type {}",
                    pullsecret::SECRET_TYPE
                )),
                State::Ours => {}
            }
            if let Some(s) = existing.as_ref().filter(|_| state == State::Ours) {
                let health = health::health(s, now, opts.min_remaining);
                st.registries = health.registries;
                st.expires_at = health.expires_at;
                st.remaining_seconds = health.expires_at.map(|t| t.as_second() - now.as_second());
                st.problems.extend(health.problems);
            }
            st.secret = Some(state);
        }
    }
    let all = matches!(opts.run.target.service_accounts, ServiceAccounts::All);
    match opts.run.target.service_accounts.names(cluster, ns).await {
        Err(e) => st.problems.push(e.to_string()),
        Ok(accounts) => {
            for sa in accounts {
                // Not listed (or not there when listed): read it.
                let state = match listed.account(ns, &sa) {
                    Some(known) => Ok(known.link_state(name)),
                    None => serviceaccount::link_state(cluster, ns, &sa, name).await,
                };
                let state = match state {
                    Ok(LinkState::Unlinked) => {
                        st.problems
                            .push(format!("service account {sa} does not reference {name}"));
                        LinkState::Unlinked
                    }
                    // Listed a moment ago and deleted since: nothing is wrong.
                    Ok(LinkState::Missing) if all => LinkState::Missing,
                    Ok(LinkState::Missing) => {
                        st.problems.push(format!("service account {sa} is missing"));
                        LinkState::Missing
                    }
                    Ok(state) => state,
                    Err(e) => {
                        st.problems.push(e.to_string());
                        LinkState::Unknown
                    }
                };
                st.service_accounts.push(AccountStatus { name: sa, state });
            }
        }
    }
    for pod in pods.into_iter().flatten() {
        let linked = st
            .service_accounts
            .iter()
            .any(|a| a.name == pod.service_account() && a.state == LinkState::Linked);
        if let Some(stuck) = pod.report(name, &st.registries, linked) {
            st.problems.push(format!(
                "pod {} waits in {} on {}: its spec lacks {name}; {}",
                stuck.name, stuck.reason, stuck.image, stuck.why
            ));
            st.stuck_pods.push(stuck);
        }
    }
    st.healthy = st.problems.is_empty();
    st
}
