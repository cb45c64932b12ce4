//! `oidc publish` and `oidc check`: the cluster's live issuer documents, made public for IAM,
//! and compared with what is published.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::cluster::{explain, is_status, Cluster, ClusterOptions};
use crate::error::{exit, Error, Result};
use crate::oidc::iam::{self, RoleSpec, Written};
use crate::oidc::{self, fetch, Drift, IssuerUrl, DISCOVERY_PATH, JWKS_PATH};
use crate::shutdown::Stop;

/// What both modes need.
#[derive(Clone, Debug)]
pub(crate) struct OidcOptions {
    pub(crate) cluster: ClusterOptions,
    pub(crate) issuer: IssuerUrl,
}

#[derive(Clone, Debug)]
pub(crate) struct PublishOptions {
    pub(crate) common: OidcOptions,
    pub(crate) out_dir: PathBuf,
    pub(crate) role: RoleSpec,
}

/// What `publish` did, for the report.
pub(crate) struct Published {
    pub(crate) issuer: IssuerUrl,
    pub(crate) cluster_issuer: String,
    pub(crate) kids: Vec<String>,
    pub(crate) files: Vec<PathBuf>,
    pub(crate) steps: String,
    pub(crate) role_arn: String,
}

/// What `check` found.
pub(crate) struct Checked {
    pub(crate) issuer: IssuerUrl,
    pub(crate) kids: Vec<String>,
    pub(crate) drift: Vec<Drift>,
}

/// The cluster's discovery document and keys, as the apiserver serves them now.
struct Live {
    discovery: Value,
    jwks: Value,
    issuer: String,
    keys: Vec<oidc::Key>,
}

/// The whole command's bound: connecting plus two reads, each bounded by --request-timeout.
fn limits_for(opts: &ClusterOptions) -> Duration {
    opts.request_timeout * 6
}

async fn live(opts: &ClusterOptions) -> Result<Live> {
    let stop = Stop::never();
    let pace = crate::cmd::Pace {
        concurrency: 1,
        timeout: limits_for(opts),
        deadline: None,
    };
    let limits = pace.start(&stop);
    let cluster = crate::cmd::connect(opts, &limits).await?;
    let discovery = get(&cluster, DISCOVERY_PATH).await?;
    let jwks = get(&cluster, JWKS_PATH).await?;
    let bad = |what: &str, reason: String| Error::OidcDiscovery {
        server: cluster.server().to_string(),
        message: format!("the cluster's /{what} is not usable: {reason}"),
    };
    let issuer = oidc::issuer_of(&discovery)
        .map_err(|r| bad(DISCOVERY_PATH, r))?
        .to_string();
    let keys = oidc::keys_of(&jwks).map_err(|r| bad(JWKS_PATH, r))?;
    if keys.is_empty() {
        return Err(bad(JWKS_PATH, "it lists no keys".into()));
    }
    Ok(Live {
        discovery,
        jwks,
        issuer,
        keys,
    })
}

/// GETs one of the apiserver's issuer documents.
async fn get(cluster: &Cluster, path: &str) -> Result<Value> {
    let client = cluster.client();
    let result = cluster
        .call(&format!("get /{path}"), || {
            let request = http::Request::get(format!("/{path}"))
                .body(Vec::new())
                .expect("a constant path is a valid URI");
            client.request::<Value>(request)
        })
        .await;
    result.map_err(|e| Error::OidcDiscovery {
        server: cluster.server().to_string(),
        message: if is_status(&e, |s| s.is_not_found()) {
            format!("the apiserver does not serve /{path} (404): it needs ServiceAccountIssuerDiscovery (beta and on by default from 1.20, GA in 1.21) and --service-account-issuer set to an https URL; older clusters cannot use web identity this way (see README \"Without any AWS key\", IAM Roles Anywhere)")
        } else if is_status(&e, |s| s.is_forbidden()) {
            format!("reading /{path} was refused: {} (grant `get` on the nonResourceURLs /{DISCOVERY_PATH} and /{JWKS_PATH}, e.g. the ClusterRole system:service-account-issuer-discovery)", explain(&e))
        } else {
            format!("cannot read /{path}: {}", explain(&e))
        },
    })
}

pub(crate) async fn publish(opts: &PublishOptions) -> Result<Published> {
    let PublishOptions {
        common: OidcOptions { cluster, issuer },
        out_dir,
        role,
    } = opts;
    let live = live(cluster).await?;
    let change = oidc::issuer_change(&live.issuer, issuer);
    let public = out_dir.join("public");
    let discovery = oidc::public_discovery(&live.discovery, issuer);
    let trust_policy = out_dir.join("trust-policy.json");
    let files = [
        (public.join(DISCOVERY_PATH), &discovery),
        (public.join(JWKS_PATH), &live.jwks),
        (trust_policy.clone(), &role.trust_policy(issuer)),
    ];
    for (path, doc) in &files {
        write_json(path, doc)?;
    }
    let written = Written {
        public_dir: public.display().to_string(),
        trust_policy: trust_policy.display().to_string(),
    };
    Ok(Published {
        issuer: issuer.clone(),
        cluster_issuer: live.issuer,
        kids: live.keys.into_iter().map(|k| k.kid).collect(),
        files: files.into_iter().map(|(p, _)| p).collect(),
        steps: iam::steps(issuer, &change, role, &written),
        role_arn: role.role_arn(),
    })
}

fn write_json(path: &Path, doc: &Value) -> Result<()> {
    let failed = |e: std::io::Error| Error::InvalidInput {
        flag: "--out-dir",
        value: path.display().to_string(),
        reason: format!("cannot write: {e}"),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let mut text = serde_json::to_string_pretty(doc).expect("JSON values serialize");
    text.push('\n');
    std::fs::write(path, text).map_err(failed)
}

pub(crate) async fn check(opts: &OidcOptions) -> Result<Checked> {
    let OidcOptions { cluster, issuer } = opts;
    let live = live(cluster).await?;
    let timeout = cluster.request_timeout;
    let discovery_url = issuer.join(DISCOVERY_PATH);
    let published = fetch::json(&discovery_url, timeout).await;
    let published_issuer = match &published {
        Ok(doc) => oidc::issuer_of(doc).map_err(|reason| Drift::DiscoveryUnavailable {
            url: discovery_url.clone(),
            reason,
        }),
        Err(reason) => Err(Drift::DiscoveryUnavailable {
            url: discovery_url.clone(),
            reason: reason.clone(),
        }),
    };
    // IAM reads the keys where the published document says they are.
    let jwks_url = published
        .as_ref()
        .ok()
        .and_then(|d| d.get("jwks_uri")?.as_str().map(str::to_string))
        .unwrap_or_else(|| issuer.join(JWKS_PATH));
    let published_keys = match fetch::json(&jwks_url, timeout).await {
        Ok(doc) => oidc::keys_of(&doc).map_err(|reason| Drift::JwksUnavailable {
            url: jwks_url.clone(),
            reason,
        }),
        Err(reason) => Err(Drift::JwksUnavailable {
            url: jwks_url.clone(),
            reason,
        }),
    };
    let drift = oidc::drift(
        issuer,
        &live.issuer,
        &live.keys,
        published_issuer,
        published_keys.as_deref().map_err(Clone::clone),
    );
    Ok(Checked {
        issuer: issuer.clone(),
        kids: live.keys.into_iter().map(|k| k.kid).collect(),
        drift,
    })
}

impl Published {
    pub(crate) fn to_text(&self) -> String {
        let mut out = format!(
            "Wrote, from the cluster's live issuer {} (signing keys: {}):\n",
            self.cluster_issuer,
            self.kids.join(", ")
        );
        for f in &self.files {
            out.push_str(&format!("  {}\n", f.display()));
        }
        out.push_str(&self.steps);
        out
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "type": "oidc-publish",
            "issuer": self.issuer.as_str(),
            "cluster_issuer": self.cluster_issuer,
            "kids": self.kids,
            "files": self.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            "role_arn": self.role_arn,
        })
    }
}

impl Checked {
    pub(crate) fn exit_code(&self) -> u8 {
        if self.drift.is_empty() {
            exit::OK
        } else {
            exit::NAMESPACE_FAILED
        }
    }

    pub(crate) fn to_text(&self) -> String {
        if self.drift.is_empty() {
            return format!(
                "ok: {} publishes the cluster's issuer and every signing key ({})\n",
                self.issuer,
                self.kids.join(", ")
            );
        }
        let mut out = format!(
            "drift: {} does not match the cluster ({} problem{}):\n",
            self.issuer,
            self.drift.len(),
            if self.drift.len() == 1 { "" } else { "s" }
        );
        for d in &self.drift {
            out.push_str(&format!("  {}: {d}\n", d.kind()));
        }
        out
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "type": "oidc-check",
            "issuer": self.issuer.as_str(),
            "ok": self.drift.is_empty(),
            "kids": self.kids,
            "drift": self.drift.iter().map(|d| json!({"kind": d.kind(), "message": d.to_string()})).collect::<Vec<_>>(),
        })
    }
}
