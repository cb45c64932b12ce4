//! `status`: a read-only health check of every selected namespace.

mod health;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;

use super::{bounded, connect, list_accounts, list_secrets, setup, RunOptions};
use crate::argocd;
use crate::bornlinked;
use crate::cluster::{Cluster, Parts};
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
    /// Also check our Argo CD Secrets there (see `argocd`).
    pub(crate) argocd_namespace: Option<String>,
}

impl crate::progress::Tally for NamespaceStatus {
    fn failed(&self) -> bool {
        !self.healthy && self.skipped.is_none()
    }
}

/// Checks (with --tenants whose rules name other Secret names, each name in turn).
pub(crate) async fn run(opts: &StatusOptions) -> Result<StatusReport> {
    // Read-only: a signal may end it at once, so there is no stop to honour.
    let never = &Stop::never();
    super::per_secret_name(&opts.run, never, |run| async move {
        let opts = StatusOptions {
            run,
            ..opts.clone()
        };
        run_one(&opts, never).await
    })
    .await
}

/// [`run`], for one Secret name.
async fn run_one(opts: &StatusOptions, never: &Stop) -> Result<StatusReport> {
    let started = Instant::now();
    let limits = opts.run.pace.start(never);
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
            list_secrets(&cluster, &opts.run, Parts::Whole, Secret::clone)
        ))
    };
    let ((ledger, unread), plan, policy, pods, mut accounts, mut secrets) =
        setup(&limits, reads, cluster.hung("listing namespaces")).await?;
    let mut report = StatusReport::new(opts.run.target.secret_name.clone(), opts.min_remaining);
    if policy == bornlinked::PolicyState::Installed {
        let links = opts.run.service_accounts(None);
        match bornlinked::coverage(&cluster, &links).await {
            Ok(c) => {
                report.warnings.extend(c.mismatch(&links));
                report.born_linked_service_accounts = Some(c);
            }
            Err(why) => report.warnings.push(format!(
                "which ServiceAccounts the born-linked policy links: {why}"
            )),
        }
    }
    report.born_linked_policy = Some(policy);
    report.warnings.extend(unread.map(|e| e.to_string()));
    let plan = plan?;
    let mut pods = pods.unwrap_or_else(|e| {
        report.warnings.push(health::pods_unseen(&e));
        ByNamespace::new()
    });
    let inputs: Vec<Input> = plan
        .into_iter()
        .map(|planned| Input {
            secret: secrets.as_mut().map(|s| s.remove(&planned.name)),
            accounts: accounts.remove(&planned.name).unwrap_or_default(),
            pods: pods.remove(&planned.name).unwrap_or_default(),
            planned,
        })
        .collect();
    let check = Check {
        cluster: &cluster,
        opts,
        ledger: &ledger,
        now: jiff::Timestamp::now(),
    };
    let timeout = opts.run.pace.timeout;
    report.namespaces = bounded(
        inputs,
        opts.run.pace.concurrency,
        limits,
        |input, _| check.namespace(input),
        |name, _| health::late(name, timeout),
    )
    .await;
    if let Some(ns) = opts.argocd_namespace.as_deref() {
        if opts.run.is_first_pass() {
            report.argocd = Some(argocd_status(&cluster, opts, ns, &report.namespaces).await);
        }
    }
    report.finish(cluster.stats(), started);
    Ok(report)
}

/// Argo CD's Secrets: those the ledger records, and one per host our pull Secrets name (so a
/// lost ledger still shows a missing one).
async fn argocd_status(
    cluster: &Cluster,
    opts: &StatusOptions,
    namespace: &str,
    namespaces: &[NamespaceStatus],
) -> argocd::ArgoCdStatus {
    let key = argocd::ledger_key(namespace);
    let (ledger, _unread) = Ledger::read(cluster, &opts.state_namespace, &key).await;
    let hosts: BTreeSet<String> = namespaces
        .iter()
        .filter(|n| n.secret == Some(State::Ours) && n.tenant.is_none())
        .flat_map(|n| n.registries.iter().cloned())
        .collect();
    argocd::status(cluster, namespace, &ledger, &hosts, opts.min_remaining).await
}

/// One namespace's share of the lists, handed to its check by value.
struct Input {
    planned: Planned,
    /// Our Secret: `None` when not listed (read on its own), `Some(None)` when the list showed
    /// none.
    secret: Option<Option<Secret>>,
    /// The ServiceAccounts listed there, by name; one not here is read on its own.
    accounts: HashMap<String, serviceaccount::Listed>,
    /// Pods waiting on a pull without our Secret.
    pods: Vec<Candidate>,
}

impl super::Named for Input {
    fn name(&self) -> &str {
        &self.planned.name
    }
}

/// One namespace's check, with what every namespace shares.
struct Check<'a> {
    cluster: &'a Cluster,
    opts: &'a StatusOptions,
    ledger: &'a Ledger,
    now: jiff::Timestamp,
}

impl Check<'_> {
    async fn namespace(&self, input: Input) -> NamespaceStatus {
        let Input {
            planned,
            secret,
            mut accounts,
            pods,
        } = input;
        let mut st = NamespaceStatus::new(&planned.name);
        st.tenant = self.opts.run.tenant_name(planned.tenant);
        if let Action::Skip(why) = planned.action {
            st.healthy = true;
            st.skipped = Some(why.to_string());
            return st;
        }
        let ns = planned.name.as_str();
        self.secret(ns, secret, &mut st).await;
        self.accounts(ns, planned.tenant, &mut accounts, &mut st)
            .await;
        let name = self.opts.run.target.secret_name.as_str();
        for pod in &pods {
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
    async fn secret(&self, ns: &str, listed: Option<Option<Secret>>, st: &mut NamespaceStatus) {
        let name = self.opts.run.target.secret_name.as_str();
        let existing = match listed {
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
            if self.opts.run.selection.tenants.is_some() {
                st.problems
                    .extend(health::tenant_problem(s, st.tenant.as_deref()));
            }
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
    async fn accounts(
        &self,
        ns: &str,
        tenant: Option<usize>,
        listed: &mut HashMap<String, serviceaccount::Listed>,
        st: &mut NamespaceStatus,
    ) {
        let name = self.opts.run.target.secret_name.as_str();
        let service_accounts = self.opts.run.service_accounts(tenant);
        let all = matches!(service_accounts, ServiceAccounts::All);
        let accounts = match service_accounts.names(self.cluster, ns).await {
            Err(e) => return st.problems.push(e.to_string()),
            Ok(accounts) => accounts,
        };
        for sa in accounts {
            // Not listed (or not there when listed): read it.
            let state = match listed.remove(&sa) {
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
