//! Metrics of a `sync` run, pushed to a Prometheus Pushgateway at its end, whatever the outcome,
//! as Prometheus recommends for batch jobs. README "Metrics" lists them.
//!
//! Every run POSTs to one group, `job="ecr-refresh", instance=<--pushgateway-instance>`. A POST
//! replaces only the metric names it carries, so `ecr_refresh_last_success_timestamp_seconds`,
//! sent only by a run that exited 0, survives the failed runs after it; and
//! `ecr_refresh_token_expiry_timestamp_seconds`, sent only by a run that fetched a token, keeps
//! the expiry of the token last written while ECR cannot be reached. Everything else is sent by
//! every run. Nothing secret goes in: counts, times, the exit code and the instance name.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use prometheus::{Encoder, Gauge, GaugeVec, Opts, Registry, TextEncoder};
use tracing::{info, warn};

use crate::cli::GlobalArgs;
use crate::report::{Outcome, RunReport};

/// The `job` label of every pushed group.
pub(crate) const JOB: &str = "ecr-refresh";

/// Where to push the run's metrics.
#[derive(Clone, Debug, Args)]
pub(crate) struct PushArgs {
    /// Push the run's metrics to this Prometheus Pushgateway at the end of every run, failed or
    /// not (e.g. http://pushgateway.monitoring:9091). A failed push is logged and does not
    /// change the exit code
    #[arg(
        help_heading = "Metrics",
        long,
        env = "ECR_REFRESH_PUSHGATEWAY",
        value_name = "URL",
        value_parser = UrlParser
    )]
    pub(crate) pushgateway: Option<http::Uri>,

    /// The `instance` label of the pushed group (job="ecr-refresh") [default: the kube context,
    /// or `in-cluster` in a pod without a kubeconfig; with neither, the push is skipped]
    #[arg(
        help_heading = "Metrics",
        long,
        env = "ECR_REFRESH_PUSHGATEWAY_INSTANCE",
        value_name = "NAME",
        requires = "pushgateway",
        value_parser = parse_instance
    )]
    pub(crate) pushgateway_instance: Option<String>,
}

/// [`parse_url`] for clap, whose own message would quote the value, password and all (it comes
/// from `ECR_REFRESH_PUSHGATEWAY` into pod logs too): the refusal shows it masked.
#[derive(Clone)]
struct UrlParser;

impl clap::builder::TypedValueParser for UrlParser {
    type Value = http::Uri;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<http::Uri, clap::Error> {
        let value = value.to_string_lossy();
        parse_url(&value).map_err(|reason| {
            let arg = arg.map_or_else(|| "--pushgateway".to_string(), ToString::to_string);
            let message = format!(
                "invalid value '{}' for '{arg}': {reason}\n\nFor more information, try '--help'.\n",
                mask_userinfo(&value)
            );
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, message).with_cmd(cmd)
        })
    }
}

/// `https://user:password@host` as `https://***@host`: a user name alone may be a token too.
fn mask_userinfo(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_string(),
    }
}

fn parse_url(s: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = s
        .parse()
        .map_err(|e| format!("{e}; expected a URL such as http://pushgateway:9091"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(
                "expected an http:// or https:// URL such as http://pushgateway:9091".into(),
            )
        }
    }
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    if authority.contains('@') {
        // It would end up in logs and error messages.
        return Err("credentials in the URL are not supported".into());
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if uri.query().is_some() {
        return Err("the URL must not have a query string".into());
    }
    Ok(uri)
}

fn parse_instance(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(s.to_string())
}

/// The default `instance`: the kube context the run used, as cluster.rs picks it, or
/// `in-cluster` when there is no kubeconfig and the pod's environment names the API server.
/// `None` when neither can be told (a kubeconfig that cannot be read, no current context): a
/// laptop's broken run must not be counted under the CronJob's `in-cluster`.
pub(crate) fn default_instance(global: &GlobalArgs) -> Option<String> {
    if let Some(ctx) = &global.context {
        return Some(ctx.clone());
    }
    let kubeconfig = match &global.kubeconfig {
        Some(path) => kube::config::Kubeconfig::read_from(path),
        None if kubeconfig_exists() => kube::config::Kubeconfig::read(),
        None => {
            let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
            return in_cluster.then(|| "in-cluster".to_string());
        }
    };
    kubeconfig
        .ok()
        .and_then(|k| k.current_context)
        .filter(|c| !c.is_empty())
}

/// `KUBECONFIG` or `~/.kube/config` names a kubeconfig, so the run does not use the in-cluster
/// config (kube falls back to it only when there is none).
fn kubeconfig_exists() -> bool {
    std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty())
        || std::env::var_os("HOME")
            .is_some_and(|h| std::path::Path::new(&h).join(".kube/config").exists())
}

/// The group's URL: base64url-encoded instance, so a context such as
/// `arn:aws:eks:eu-west-1:123456789012:cluster/prod` fits in one path segment.
pub(crate) fn group_url(base: &http::Uri, instance: &str) -> String {
    let base = base.to_string();
    let encoded = base64::engine::general_purpose::URL_SAFE.encode(instance);
    format!(
        "{}/metrics/job/{JOB}/instance@base64/{}",
        base.trim_end_matches('/'),
        if encoded.is_empty() { "=" } else { &encoded }
    )
}

/// The run as exposition text (format 0.0.4, which every Pushgateway reads).
pub(crate) fn encode(report: &RunReport, duration: Duration, now: SystemTime) -> String {
    let registry = Registry::new();
    let gauge = |name: &str, help: &str, value: f64| {
        let g = Gauge::with_opts(Opts::new(name, help)).expect("valid metric name");
        g.set(value);
        registry
            .register(Box::new(g))
            .expect("each metric registered once");
    };
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    gauge(
        "ecr_refresh_last_run_timestamp_seconds",
        "When the last run ended (Unix time).",
        now,
    );
    gauge(
        "ecr_refresh_last_run_duration_seconds",
        "How long the last run took.",
        duration.as_secs_f64(),
    );
    gauge(
        "ecr_refresh_last_run_exit_code",
        "Exit code of the last run: 0 ok, 1 some namespaces failed, 2 invalid input, 3 no ECR token, 4 cluster access.",
        f64::from(report.end.exit_code),
    );
    gauge(
        "ecr_refresh_last_run_ecr_calls",
        "ECR GetAuthorizationToken calls in the last run.",
        report.ecr_calls as f64,
    );
    gauge(
        "ecr_refresh_last_run_api_requests",
        "Kubernetes API requests in the last run, retries included.",
        report.end.api_requests as f64,
    );
    gauge(
        "ecr_refresh_last_run_api_retries",
        "Kubernetes API requests retried in the last run.",
        report.end.api_retries as f64,
    );
    let namespaces = GaugeVec::new(
        Opts::new(
            "ecr_refresh_last_run_namespaces",
            "Namespaces by outcome in the last run.",
        ),
        &["outcome"],
    )
    .expect("valid metric");
    let s = &report.summary;
    // Every outcome every time, so a POST overwrites last run's count with 0.
    for (outcome, n) in [
        (Outcome::Created, s.created),
        (Outcome::Updated, s.updated),
        (Outcome::Unchanged, s.unchanged),
        (Outcome::Pruned, s.pruned),
        (Outcome::Skipped, s.skipped),
        (Outcome::Failed, s.failed),
    ] {
        namespaces
            .with_label_values(&[outcome_label(outcome)])
            .set(n as f64);
    }
    registry
        .register(Box::new(namespaces))
        .expect("registered once");
    if let Some(expires) = report.token_expires_at {
        gauge(
            "ecr_refresh_token_expiry_timestamp_seconds",
            "When the earliest ECR token the tool last wrote expires (Unix time).",
            expires.as_second() as f64,
        );
    }
    if report.end.exit_code == crate::error::exit::OK {
        gauge(
            "ecr_refresh_last_success_timestamp_seconds",
            "When the last run that exited 0 ended (Unix time).",
            now,
        );
    }
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("text encoding into memory");
    String::from_utf8(out).expect("exposition text is UTF-8")
}

fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Created => "created",
        Outcome::Updated => "updated",
        Outcome::Unchanged => "unchanged",
        Outcome::Pruned => "pruned",
        Outcome::Skipped => "skipped",
        Outcome::Failed => "failed",
    }
}

/// Pushes the run's metrics if `--pushgateway` was given, unless it was a dry run. Never fails
/// the run: a failed push is a warning.
pub(crate) async fn push(
    args: &PushArgs,
    global: &GlobalArgs,
    report: &RunReport,
    duration: Duration,
) {
    let Some(base) = &args.pushgateway else {
        return;
    };
    if report.dry_run {
        // Nothing was written, so nothing to alert on; a dry run must not pass for a good run.
        info!(pushgateway = %base, "--dry-run: metrics not pushed");
        return;
    }
    let Some(instance) = args
        .pushgateway_instance
        .clone()
        .or_else(|| default_instance(global))
    else {
        warn!(pushgateway = %base, error = "no kube context to name the instance (the kubeconfig cannot be read or names no current context)", "could not push metrics; pass --pushgateway-instance");
        return;
    };
    let url = group_url(base, &instance);
    let body = encode(report, duration, SystemTime::now());
    let timeout = global.request_timeout.get();
    match tokio::time::timeout(timeout, post(&url, body)).await {
        Ok(Ok(())) => info!(pushgateway = %base, instance = %instance, "metrics pushed"),
        Ok(Err(e)) => {
            warn!(pushgateway = %base, instance = %instance, error = %e, "could not push metrics")
        }
        Err(_) => warn!(
            pushgateway = %base,
            instance = %instance,
            error = %format!("timed out after {}", humantime::format_duration(timeout)),
            "could not push metrics"
        ),
    }
}

async fn post(url: &str, body: String) -> Result<(), String> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("no CA certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<Bytes>>(https);
    let request = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| {
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        msg
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
        .unwrap_or_default();
    Err(format!(
        "{status}: {}",
        body.chars().take(300).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::NamespaceReport;

    fn report(exit_code: u8) -> RunReport {
        let mut r = RunReport::new("sync", "awsecr-cred".into(), false);
        r.namespaces = vec![
            NamespaceReport::failed("a", "boom".into()),
            NamespaceReport::skipped("b", "terminating"),
        ];
        r.finish(&Default::default(), std::time::Instant::now());
        r.end.exit_code = exit_code;
        r.ecr_calls = 1;
        r
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn a_failed_run_carries_no_last_success() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let text = encode(&report(1), Duration::from_millis(1500), now);
        assert_eq!(value(&text, "ecr_refresh_last_run_exit_code"), Some(1.0));
        assert_eq!(
            value(&text, "ecr_refresh_last_run_duration_seconds"),
            Some(1.5)
        );
        assert_eq!(
            value(
                &text,
                r#"ecr_refresh_last_run_namespaces{outcome="failed"}"#
            ),
            Some(1.0)
        );
        // Zero counts are sent too, so they replace the previous run's.
        assert_eq!(
            value(
                &text,
                r#"ecr_refresh_last_run_namespaces{outcome="created"}"#
            ),
            Some(0.0)
        );
        assert_eq!(value(&text, "ecr_refresh_last_run_ecr_calls"), Some(1.0));
        assert_eq!(
            value(&text, "ecr_refresh_last_run_timestamp_seconds"),
            Some(1.7e9)
        );
        assert!(!text.contains("ecr_refresh_last_success_timestamp_seconds"));
        assert!(!text.contains("ecr_refresh_token_expiry_timestamp_seconds"));
    }

    #[test]
    fn a_good_run_carries_last_success_and_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut r = report(0);
        r.token_expires_at = Some(jiff::Timestamp::from_second(1_700_040_000).unwrap());
        let text = encode(&r, Duration::ZERO, now);
        assert_eq!(
            value(&text, "ecr_refresh_last_success_timestamp_seconds"),
            Some(1.7e9)
        );
        assert_eq!(
            value(&text, "ecr_refresh_token_expiry_timestamp_seconds"),
            Some(1_700_040_000.0)
        );
        assert!(text.contains("# TYPE ecr_refresh_last_run_exit_code gauge"));
    }

    #[test]
    fn group_url_encodes_the_instance() {
        let base: http::Uri = "http://gw:9091/".parse().unwrap();
        assert_eq!(
            group_url(&base, "arn:aws:eks:eu-west-1:1:cluster/prod?"),
            "http://gw:9091/metrics/job/ecr-refresh/instance@base64/YXJuOmF3czpla3M6ZXUtd2VzdC0xOjE6Y2x1c3Rlci9wcm9kPw=="
        );
        let prefixed: http::Uri = "https://mon.example/push".parse().unwrap();
        assert_eq!(
            group_url(&prefixed, "prod"),
            "https://mon.example/push/metrics/job/ecr-refresh/instance@base64/cHJvZA=="
        );
    }

    #[test]
    fn url_checks() {
        assert!(parse_url("http://gw:9091").is_ok());
        for bad in [
            "gw:9091",
            "ftp://gw",
            "http://user:pass@gw:9091",
            "http://gw/?x=1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert!(parse_url("http://user:pass@gw:9091")
            .unwrap_err()
            .contains("credentials"));
        assert!(parse_instance(" ").is_err());
    }

    #[test]
    fn the_refusal_masks_credentials() {
        assert_eq!(
            mask_userinfo("https://admin:PW@gw:9091/x"),
            "https://***@gw:9091/x"
        );
        assert_eq!(mask_userinfo("http://TOKEN@gw"), "http://***@gw");
        assert_eq!(mask_userinfo("a:b@@c d"), "***@c d");
        assert_eq!(mask_userinfo("http://gw:9091/a@b"), "http://gw:9091/a@b");
        use clap::Parser as _;
        let args = [
            "ecr-refresh",
            "sync",
            "--pushgateway",
            "https://admin:PW@gw",
        ];
        let err = crate::cli::Cli::try_parse_from(args).err().unwrap();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        let err = err.to_string();
        assert!(!err.contains("PW"), "{err}");
        assert!(
            err.contains("invalid value 'https://***@gw' for '--pushgateway <URL>'"),
            "{err}"
        );
        assert!(
            err.contains("credentials in the URL are not supported"),
            "{err}"
        );
    }
}
