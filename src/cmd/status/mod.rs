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
use crate::pullsecret::{self, Ledger, Secrets, State};
use crate::report::{AccountStatus, NamespaceStatus, StatusReport};
use crate::serviceaccount::{self, LinkState, ServiceAccounts};
use crate::shutdown::Stop;
use crate::stuckpods::{self, ByNamespace, Candidate};

#[derive(Clone, Debug)]
pub(crate) struct StatusOptions {
    pub(crate) run: RunOptions,
    pub(crate) min_remaining: Duration,
    /// Where the ledger of our writes is (see `pullsecret::Ledger`).
    pub(crate) state_namespace: String,
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
    // The same lists as `sync`: namespaces, our Secrets, the ServiceAccounts; and the ledger.
    let reads = async {
        Ok(tokio::join!(
            Ledger::read(&cluster, &opts.state_namespace, secret),
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
    let ((ledger, unread), plan, policy, pods, accounts, secrets) =
        setup(&limits, reads, cluster.hung("listing namespaces")).await?;
    let listed = Listed {
        accounts: Mutex::new(accounts),
        secrets: secrets.map(Mutex::new),
    };
    let mut report = StatusReport::new(opts.run.target.secret_name.clone(), opts.min_remaining);
    report.born_linked_policy = Some(policy);
    report.warnings.extend(unread.map(|e| e.to_string()));
    let plan = plan?;
    let pods = pods.unwrap_or_else(|e| {
        report.warnings.push(health::pods_unseen(&e));
        ByNamespace::new()
    });
    let check = Check {
        cluster: &cluster,
        opts,
        listed: &listed,
        ledger: &ledger,
        now: jiff::Timestamp::now(),
    };
    let timeout = opts.run.pace.timeout;
    report.namespaces = bounded(
        plan,
        opts.run.pace.concurrency,
        limits,
        |ns, _| {
            let stuck = pods.get(&ns.name);
            check.namespace(ns, stuck)
        },
        |ns, _| health::late(&ns.name, timeout),
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

/// One namespace's check, with what every namespace shares.
struct Check<'a> {
    cluster: &'a Cluster,
    opts: &'a StatusOptions,
    listed: &'a Listed,
    ledger: &'a Ledger,
    now: jiff::Timestamp,
}

impl Check<'_> {
    async fn namespace(&self, planned: Planned, pods: Option<&Vec<Candidate>>) -> NamespaceStatus {
        let mut st = NamespaceStatus::new(&planned.name);
        if let Action::Skip(why) = planned.action {
            st.healthy = true;
            st.skipped = Some(why.to_string());
            return st;
        }
        let ns = planned.name.as_str();
        self.secret(ns, &mut st).await;
        self.accounts(ns, &mut st).await;
        let name = self.opts.run.target.secret_name.as_str();
        for pod in pods.into_iter().flatten() {
            let linked = st
                .service_accounts
                .iter()
                .any(|a| a.name == pod.service_account() && a.state == LinkState::Linked);
            if let Some(stuck) = pod.report(name, &st.registries, linked) {
                st.problems.push(health::stuck_pod(&stuck, name));
                st.stuck_pods.push(stuck);
            }
        }
        st.healthy = st.problems.is_empty();
        st
    }

    /// Whose the Secret is, and how one of ours stands.
    async fn secret(&self, ns: &str, st: &mut NamespaceStatus) {
        let name = self.opts.run.target.secret_name.as_str();
        let existing = match self.listed.secret(ns) {
            Some(known) => Ok(known),
            None => Secrets::new(self.cluster, ns, name).get().await,
        };
        let existing = match existing {
            Err(e) => return st.problems.push(e.to_string()),
            Ok(existing) => existing,
        };
        let state = pullsecret::state(existing.as_ref());
        st.problems.extend(health::state_problem(&state, name));
        if let Some(s) = existing.as_ref().filter(|_| state == State::Ours) {
            let health = health::health(s, self.now, self.opts.min_remaining);
            st.registries = health.registries;
            st.expires_at = health.expires_at;
            st.remaining_seconds = health
                .expires_at
                .map(|t| t.as_second() - self.now.as_second());
            st.problems.extend(health.problems);
            let written = self.ledger.of(ns);
            st.problems.extend(health::tamper_problems(
                s,
                &written,
                &self.opts.state_namespace,
            ));
        }
        st.secret = Some(state);
    }

    /// Whether each chosen ServiceAccount references the Secret.
    async fn accounts(&self, ns: &str, st: &mut NamespaceStatus) {
        let target = &self.opts.run.target;
        let name = target.secret_name.as_str();
        let all = matches!(target.service_accounts, ServiceAccounts::All);
        let accounts = match target.service_accounts.names(self.cluster, ns).await {
            Err(e) => return st.problems.push(e.to_string()),
            Ok(accounts) => accounts,
        };
        for sa in accounts {
            // Not listed (or not there when listed): read it.
            let state = match self.listed.account(ns, &sa) {
                Some(known) => Ok(known.link_state(name)),
                None => serviceaccount::link_state(self.cluster, ns, &sa, name).await,
            };
            let state = match state {
                // Listed a moment ago and deleted since: nothing is wrong.
                Ok(LinkState::Missing) if all => LinkState::Missing,
                Ok(state) => {
                    st.problems
                        .extend(health::account_problem(state, &sa, name));
                    state
                }
                Err(e) => {
                    st.problems.push(e.to_string());
                    LinkState::Unknown
                }
            };
            st.service_accounts.push(AccountStatus { name: sa, state });
        }
    }
}
