//! The text shown below the flags in `--help`: examples, and the exit codes.

// The exit codes are those of `crate::error::exit`.

pub(super) const SYNC_EXAMPLES: &str = "\
Examples:
  # every namespace but kube-*, with the AWS profile 'ecr'
  ecr-refresh sync -x 'kube-*' --profile ecr --region eu-west-1

  # two teams, no permission to list namespaces needed, JSON for CI
  ecr-refresh sync -n team-a -n team-b -o json

  # see what would change, without persisting anything
  ecr-refresh sync --dry-run

  # rewrite every Secret now with a new token, due or not
  ecr-refresh sync --refresh-all

";

pub(super) const STATUS_EXAMPLES: &str = "\
Examples:
  # fail a deploy pipeline if team-a's credentials expire within 2 hours
  ecr-refresh status -n team-a --min-remaining 2h

  # everything, as JSON for monitoring
  ecr-refresh status -o json

";

pub(super) const PRUNE_EXAMPLES: &str = "\
Examples:
  # narrowed sync to team-*: clean up everywhere else
  ecr-refresh prune -n 'team-*' --dry-run
  ecr-refresh prune -n 'team-*'

  # uninstall: remove ecr-refresh's Secret and entries from every namespace
  ecr-refresh prune --uninstall

";

pub(super) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  every selected namespace succeeded (or was skipped because it is terminating)
  1  some namespaces (or Argo CD Secrets) failed (status: some are unhealthy); the others were
     still processed; or the report could not be written to stdout
  2  invalid input (flag, env variable, kubeconfig or context), or stdout is closed; nothing
     was written
  3  could not get a usable ECR token; nothing was written. With --tenants: a tenant's token
     failed (the report names it and its role); only its namespaces went without
  4  could not reach or authenticate to the cluster, or list namespaces; nothing was written";
