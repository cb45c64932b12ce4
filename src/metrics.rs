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
use http_body_util::{BodyExt, Full};
use prometheus::{Encoder, Gauge, GaugeVec, Opts, Registry, TextEncoder};
use tracing::{info, warn};

use crate::report::{Outcome, RunReport};

/// The `job` label of every pushed group.
pub(crate) const JOB: &str = "ecr-refresh";

/// Where to push the run's metrics, resolved before the run.
#[derive(Clone, Debug)]
pub(crate) struct PushTarget {
    /// The Pushgateway's base URL.
    pub(crate) gateway: http::Uri,
    /// The group's `instance` label; `None` when it cannot be told, and the push is skipped.
    pub(crate) instance: Option<String>,
    /// How long the push may take.
    pub(crate) timeout: Duration,
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
pub(crate) fn encode(
    report: &RunReport,
    exit_code: u8,
    duration: Duration,
    now: SystemTime,
) -> String {
    let registry = Registry::new();
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    for (name, help, value) in gauges(report, exit_code, duration, now) {
        let g = Gauge::with_opts(Opts::new(name, help)).expect("valid metric name");
        g.set(value);
        registry
            .register(Box::new(g))
            .expect("each metric registered once");
    }
    registry
        .register(Box::new(namespaces(report)))
        .expect("registered once");
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("text encoding into memory");
    String::from_utf8(out).expect("exposition text is UTF-8")
}

/// The run's gauges of one value each, as (name, help, value): the token's expiry only when
/// a token was fetched, the last success only when the run exited 0.
fn gauges(
    report: &RunReport,
    exit_code: u8,
    duration: Duration,
    now: f64,
) -> Vec<(&'static str, &'static str, f64)> {
    let mut gauges = vec![
        (
            "ecr_refresh_last_run_timestamp_seconds",
            "When the last run ended (Unix time).",
            now,
        ),
        (
            "ecr_refresh_last_run_duration_seconds",
            "How long the last run took.",
            duration.as_secs_f64(),
        ),
        (
            "ecr_refresh_last_run_exit_code",
            "Exit code of the last run: 0 ok, 1 some namespaces failed, 2 invalid input, 3 no ECR token, 4 cluster access.",
            f64::from(exit_code),
        ),
        (
            "ecr_refresh_last_run_ecr_calls",
            "ECR GetAuthorizationToken calls in the last run.",
            report.ecr_calls as f64,
        ),
        (
            "ecr_refresh_last_run_api_requests",
            "Kubernetes API requests in the last run, retries included.",
            report.end.api_requests as f64,
        ),
        (
            "ecr_refresh_last_run_api_retries",
            "Kubernetes API requests retried in the last run.",
            report.end.api_retries as f64,
        ),
    ];
    if let Some(expires) = report.token_expires_at {
        gauges.push((
            "ecr_refresh_token_expiry_timestamp_seconds",
            "When the earliest ECR token the tool last wrote expires (Unix time).",
            expires.as_second() as f64,
        ));
    }
    if exit_code == crate::error::exit::OK {
        gauges.push((
            "ecr_refresh_last_success_timestamp_seconds",
            "When the last run that exited 0 ended (Unix time).",
            now,
        ));
    }
    gauges
}

/// Namespaces by outcome: every outcome every time, so a POST overwrites last run's count
/// with 0.
fn namespaces(report: &RunReport) -> GaugeVec {
    let namespaces = GaugeVec::new(
        Opts::new(
            "ecr_refresh_last_run_namespaces",
            "Namespaces by outcome in the last run.",
        ),
        &["outcome"],
    )
    .expect("valid metric");
    let s = &report.summary;
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
    namespaces
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

/// Pushes the run's metrics, unless it was a dry run. Never fails the run: a failed push is a
/// warning.
pub(crate) async fn push(
    target: &PushTarget,
    report: &RunReport,
    exit_code: u8,
    duration: Duration,
) {
    let base = &target.gateway;
    if report.dry_run {
        // Nothing was written, so nothing to alert on; a dry run must not pass for a good run.
        info!(pushgateway = %base, "--dry-run: metrics not pushed");
        return;
    }
    let Some(instance) = target.instance.clone() else {
        warn!(pushgateway = %base, error = "no kube context to name the instance (the kubeconfig cannot be read or names no current context)", "could not push metrics; pass --pushgateway-instance");
        return;
    };
    let url = group_url(base, &instance);
    let body = encode(report, exit_code, duration, SystemTime::now());
    let timeout = target.timeout;
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

    fn report() -> RunReport {
        let mut r = RunReport::new("sync", "awsecr-cred".into(), false);
        r.namespaces = vec![
            NamespaceReport::failed("a", "boom".into()),
            NamespaceReport::skipped("b", "terminating"),
        ];
        r.finish(&Default::default(), std::time::Instant::now(), None);
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
        let text = encode(&report(), 1, Duration::from_millis(1500), now);
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
        let mut r = report();
        r.token_expires_at = Some(jiff::Timestamp::from_second(1_700_040_000).unwrap());
        let text = encode(&r, 0, Duration::ZERO, now);
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
}
