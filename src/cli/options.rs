//! From parsed flags to each command's options, with the checks no single flag can make.

use super::args::{
    ArgoCdArgs, AwsArgs, EventArgs, GlobalArgs, LedgerArgs, PruneArgs, PushArgs, RunArgs,
    ScopeArgs, SelectionArgs, StatusArgs, SyncArgs, TargetArgs,
};
use super::values::DurationArg;
use crate::cluster::ClusterOptions;
use crate::cmd::prune::PruneOptions;
use crate::cmd::status::StatusOptions;
use crate::cmd::sync::SyncOptions;
use crate::cmd::{Pace, RunOptions};
use crate::ecr::{AssumeRole, EcrOptions};
use crate::error::{Error, Result};
use crate::events::EventOptions;
use crate::k8s_grammar::PatternList;
use crate::metrics::PushTarget;
use crate::namespaces::Selection;
use crate::pullsecret::MAX_TOKEN_LIFETIME;
use crate::serviceaccount::{ServiceAccounts, Target};
use crate::tenants::Tenants;

/// The session name of commands that assume no role (only `sync` asks ECR).
const DEFAULT_SESSION: &str = "ecr-refresh";

impl SelectionArgs {
    /// The selection, with the --tenants file read and checked; `session_name` is the STS
    /// session each tenant's role is assumed under.
    fn into_selection(self, session_name: &str) -> Result<Selection> {
        let Self {
            namespaces,
            all_namespaces: _,
            exclude_namespaces,
            namespace_selector,
            tenants,
        } = self;
        let tenants = match tenants {
            Some(path) => Some(std::sync::Arc::new(Tenants::load(&path, session_name)?)),
            None => None,
        };
        Ok(Selection {
            include: PatternList::flatten(namespaces),
            exclude: PatternList::flatten(exclude_namespaces),
            label_selector: namespace_selector,
            nothing: false,
            tenants,
            pass: None,
        })
    }
}

impl TargetArgs {
    fn into_target(self) -> Target {
        let Self {
            secret_name,
            mut service_accounts,
            all_service_accounts,
        } = self;
        service_accounts.sort();
        service_accounts.dedup();
        Target {
            secret_name,
            service_accounts: if all_service_accounts {
                ServiceAccounts::All
            } else {
                ServiceAccounts::Named(service_accounts)
            },
        }
    }
}

impl GlobalArgs {
    pub(super) fn cluster(&self) -> ClusterOptions {
        ClusterOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            request_timeout: self.request_timeout.get(),
        }
    }
}

impl PushArgs {
    /// Where to push, if anywhere: the group is named for the kube context the run uses,
    /// unless --pushgateway-instance names it.
    pub(crate) fn into_target(self, global: &GlobalArgs) -> Option<PushTarget> {
        let Self {
            pushgateway,
            pushgateway_instance,
        } = self;
        Some(PushTarget {
            gateway: pushgateway?,
            instance: pushgateway_instance.or_else(|| global.cluster().context_name()),
            timeout: global.request_timeout.get(),
        })
    }
}

impl AwsArgs {
    fn into_options(self) -> EcrOptions {
        let Self {
            registries,
            region,
            profile,
            role_arn,
            role_session_name,
            external_id,
        } = self;
        EcrOptions {
            registries,
            region,
            profile,
            role: role_arn.map(|arn| AssumeRole {
                arn,
                session_name: role_session_name.into(),
                external_id,
            }),
        }
    }
}

impl RunArgs {
    /// The options every command shares, once the timeouts agree.
    fn into_options(
        self,
        global: &GlobalArgs,
        selection: Selection,
        target: TargetArgs,
    ) -> Result<RunOptions> {
        let (request, run) = (global.request_timeout.get(), self.timeout.get());
        if request > run {
            return Err(Error::InvalidInput {
                flag: "--request-timeout",
                value: humantime::format_duration(request).to_string(),
                reason: format!(
                    "longer than --timeout {}; make the whole-run timeout the larger one",
                    humantime::format_duration(run)
                ),
            });
        }
        Ok(RunOptions {
            cluster: global.cluster(),
            selection,
            target: target.into_target(),
            pace: Pace {
                concurrency: self.concurrency.get(),
                timeout: run,
                deadline: None,
            },
        })
    }
}

impl SyncArgs {
    /// Checks what no single flag can check alone, and builds the options.
    pub(crate) fn into_options(self, global: &GlobalArgs) -> Result<SyncOptions> {
        // Destructured so a flag that nothing uses fails to compile.
        let Self {
            scope: ScopeArgs { selection, target },
            aws,
            run,
            ledger: LedgerArgs { state_namespace },
            service_account_wait,
            force,
            dry_run,
            refresh_before,
            refresh_all,
            prune,
            delete_stuck_pods,
            events,
            argocd: ArgoCdArgs { argocd_namespace },
            // Pushed by `crate::run` once the report is done, whatever the outcome.
            metrics: _,
        } = self;
        let session_name = String::from(aws.role_session_name.clone());
        let selection = selection.into_selection(&session_name)?;
        if let (Some(tenants), Some(registry)) = (&selection.tenants, aws.registries.first()) {
            return Err(Error::InvalidInput {
                flag: "--registry",
                value: registry.to_string(),
                reason: format!(
                    "with --tenants each tenant names its own registries (the `registries` key in {}); leave --registry out",
                    tenants.file
                ),
            });
        }
        let run = run.into_options(global, selection, target)?;
        let refresh_before = refresh_before.get();
        // ECR tokens last 12 hours: a larger window would refresh on every run.
        if refresh_before >= MAX_TOKEN_LIFETIME {
            return Err(Error::InvalidInput {
                flag: "--refresh-before",
                value: humantime::format_duration(refresh_before).to_string(),
                reason: "ECR tokens last 12h, so this would rewrite every Secret on every run; use less than 12h (the default is 9h), or --refresh-all to rewrite everything once".into(),
            });
        }
        Ok(SyncOptions {
            run,
            aws: aws.into_options(),
            force,
            dry_run,
            service_account_wait: service_account_wait.get(),
            refresh_before,
            refresh_all,
            prune,
            delete_stuck_pods,
            state_namespace,
            events: events.into_options(),
            argocd_namespace,
        })
    }
}

impl StatusArgs {
    pub(crate) fn into_options(self, global: &GlobalArgs) -> Result<StatusOptions> {
        let Self {
            scope: ScopeArgs { selection, target },
            run,
            ledger: LedgerArgs { state_namespace },
            min_remaining,
            argocd: ArgoCdArgs { argocd_namespace },
        } = self;
        Ok(StatusOptions {
            run: run.into_options(global, selection.into_selection(DEFAULT_SESSION)?, target)?,
            state_namespace,
            argocd_namespace,
            min_remaining: min_remaining.map(DurationArg::get).unwrap_or_default(),
        })
    }
}

impl EventArgs {
    fn into_options(self) -> EventOptions {
        EventOptions {
            enabled: !self.no_events,
            repeat_after: self.event_repeat.get(),
            instance: EventOptions::instance(),
        }
    }
}

impl PruneArgs {
    pub(crate) fn into_options(self, global: &GlobalArgs) -> Result<PruneOptions> {
        let ScopeArgs { selection, target } = self.scope;
        // Keep nothing: every namespace is "no longer selected".
        let selection = if self.uninstall {
            Selection::none()
        } else {
            selection.into_selection(DEFAULT_SESSION)?
        };
        Ok(PruneOptions {
            run: self.run.into_options(global, selection, target)?,
            dry_run: self.dry_run,
            uninstall: self.uninstall,
            events: self.events.into_options(),
            argocd_namespace: self.argocd.argocd_namespace,
            state_namespace: self.ledger.state_namespace,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{parse, sync, Command};

    #[test]
    fn repeatable_and_comma_separated() {
        let a = sync(&[
            "-n",
            "team-*",
            "-n",
            "a,b",
            "-x",
            "team-b",
            "--service-account",
            "default,builder",
        ]);
        let sel = a.scope.selection.into_selection("s").unwrap();
        let ns: Vec<_> = sel.include.iter().map(|p| p.as_str()).collect();
        assert_eq!(ns, ["team-*", "a", "b"]);
        assert_eq!(sel.exclude.len(), 1);
        assert_eq!(a.scope.target.service_accounts, ["default", "builder"]);
    }

    #[test]
    fn commas_inside_braces_and_brackets_belong_to_the_glob() {
        let a = sync(&["-n", "{a,b}-*,x-[a,b]", "-x", "{c,d}"]);
        let sel = a.scope.selection.into_selection("s").unwrap();
        let ns: Vec<_> = sel.include.iter().map(|p| p.as_str()).collect();
        assert_eq!(ns, ["{a,b}-*", "x-[a,b]"]);
        assert!(sel.matches("b-1") && sel.matches("x-a") && !sel.matches("x-c"));
        assert!(!sel.matches("c") && !sel.matches("d") && !sel.matches("c-1"));
    }

    #[test]
    fn cross_flag_checks() {
        let cli = parse(&["sync", "--request-timeout", "10m", "--timeout", "1m"]).unwrap();
        let Command::Sync(a) = cli.command else {
            unreachable!()
        };
        let err = a.into_options(&cli.global).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--request-timeout"));

        let cli = parse(&["sync", "--refresh-before", "12h"]).unwrap();
        let Command::Sync(a) = cli.command else {
            unreachable!()
        };
        assert!(a
            .into_options(&cli.global)
            .unwrap_err()
            .to_string()
            .contains("--refresh-before"));
    }

    #[test]
    fn uninstall_selects_nothing_to_keep() {
        let cli = parse(&["prune", "--uninstall"]).unwrap();
        let Command::Prune(a) = cli.command else {
            unreachable!()
        };
        let opts = a.into_options(&cli.global).unwrap();
        assert!(!opts.run.selection.matches("default"));
        assert!(!opts.run.selection.matches("anything"));
    }
}
