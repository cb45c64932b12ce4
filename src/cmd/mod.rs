//! One module per subcommand, and what they share.

pub mod completions;
pub mod prune;
pub mod status;
pub mod sync;

use std::future::Future;

use futures::StreamExt;

use crate::cluster::Cluster;
use crate::serviceaccount::{self, SaError};

/// The Secret a command works on, and the ServiceAccounts that use it.
#[derive(Clone, Debug)]
pub struct Target {
    pub secret_name: String,
    pub service_accounts: ServiceAccounts,
}

#[derive(Clone, Debug)]
pub enum ServiceAccounts {
    Named(Vec<String>),
    /// Every ServiceAccount in the namespace, listed at run time.
    All,
}

impl Target {
    pub async fn service_accounts(
        &self,
        cluster: &Cluster,
        ns: &str,
    ) -> Result<Vec<String>, SaError> {
        match &self.service_accounts {
            ServiceAccounts::Named(names) => Ok(names.clone()),
            ServiceAccounts::All => serviceaccount::list_names(cluster, ns).await,
        }
    }
}

/// Runs `work` on every item, `concurrency` at a time; whatever has not finished by
/// `deadline` gets `late(item)` instead, so a run never outlives its --timeout. Each result
/// ticks the progress line (shown only at a terminal, see `progress`).
pub async fn bounded<I, R, F, Fut>(
    items: Vec<I>,
    concurrency: usize,
    deadline: tokio::time::Instant,
    work: F,
    late: impl Fn(&I) -> R,
) -> Vec<R>
where
    F: Fn(I) -> Fut,
    Fut: Future<Output = R>,
    I: Clone,
    R: crate::progress::Tally,
{
    let work = &work;
    let late = &late;
    let mut progress = crate::progress::Progress::start(items.len());
    futures::stream::iter(items)
        .map(|item| async move {
            let fallback = item.clone();
            match tokio::time::timeout_at(deadline, work(item)).await {
                Ok(r) => r,
                Err(_) => late(&fallback),
            }
        })
        .buffer_unordered(concurrency)
        .inspect(|r| progress.tick(r))
        .collect()
        .await
}
