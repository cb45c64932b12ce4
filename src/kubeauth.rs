//! The kubeconfig user's credentials, made ready before the client is built.
//!
//! kube would run an exec plugin itself: twice (for the auth header and for the TLS identity),
//! blocking, with no timeout, and its errors quote the plugin's environment, arguments and
//! output, tokens included. So the plugin runs here, once, as a child that dies with the run,
//! and only its path and exit status are ever printed, as kubectl does. A token is trimmed as
//! kubectl trims a token file; one that still cannot be sent in a header is refused (kube
//! would panic on it).

use std::io::IsTerminal as _;
use std::path::Path;
use std::process::Stdio;

use kube::config::{AuthInfo, ExecConfig, ExecInteractiveMode};
use secrecy::ExposeSecret as _;
use serde::Deserialize;

/// Why the credentials cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// The kubeconfig itself is wrong (a missing file, an unusable token, no such plugin).
    Kubeconfig(String),
    /// The exec plugin ran and gave no usable credential.
    Plugin(String),
}

/// What [`prepare`] and the client built after it wait for, as a person would say it: the
/// files the user names (any may be a FIFO), and the exec plugin.
pub(crate) fn waits_for(auth: &AuthInfo) -> String {
    let files: Vec<String> = [
        ("tokenFile", &auth.token_file),
        ("client-certificate", &auth.client_certificate),
        ("client-key", &auth.client_key),
    ]
    .into_iter()
    .filter_map(|(key, path)| Some(format!("{key} {:?}", path.as_deref()?)))
    .collect();
    let mut steps = Vec::new();
    if !files.is_empty() {
        steps.push(format!("reading the user's {}", files.join(", ")));
    }
    if let Some(command) = auth.exec.as_ref().and_then(|e| e.command.as_deref()) {
        steps.push(format!(
            "waiting for the kubeconfig's exec plugin {command:?}"
        ));
    }
    if steps.is_empty() {
        "building the client".into()
    } else {
        steps.join(" and ")
    }
}

/// Checks and completes `auth` in place: afterwards it holds no exec plugin, and no token
/// kube cannot send.
pub(crate) async fn prepare(auth: &mut AuthInfo) -> Result<(), AuthError> {
    let bad = AuthError::Kubeconfig;
    let files = [
        ("client-certificate", &auth.client_certificate),
        ("client-key", &auth.client_key),
        ("tokenFile", &auth.token_file),
    ];
    for (key, path) in files {
        if let Some(path) = path.as_deref().filter(|p| !Path::new(p).exists()) {
            return Err(bad(format!("the user's {key} {path:?} does not exist")));
        }
    }
    // kube's order: auth-provider, basic auth, token, tokenFile, exec.
    if auth.auth_provider.is_some() || (auth.username.is_some() && auth.password.is_some()) {
        return Ok(());
    }
    if let Some(token) = &auth.token {
        let token = usable_token(token.expose_secret())
            .ok_or_else(|| bad(format!("the user's token {UNUSABLE}")))?;
        auth.token = Some(token.into());
        return Ok(());
    }
    if let Some(path) = &auth.token_file {
        let raw = std::fs::read_to_string(path)
            .map_err(|e| bad(format!("cannot read the user's tokenFile {path:?}: {e}")))?;
        let token = usable_token(&raw)
            .ok_or_else(|| bad(format!("the user's tokenFile {path:?} {UNUSABLE}")))?;
        // kube reads the file again itself: it would send the newline, and a FIFO or `<(…)`
        // has nothing left to give (or blocks).
        if token != raw || !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
            auth.token = Some(token.into());
            auth.token_file = None;
        }
        return Ok(());
    }
    if let Some(exec) = auth.exec.take() {
        use_plugin(auth, exec).await?;
    }
    Ok(())
}

/// Runs the exec plugin once, and puts what it printed in `auth`: a client certificate, or a
/// token kube can send.
async fn use_plugin(auth: &mut AuthInfo, exec: ExecConfig) -> Result<(), AuthError> {
    let status = run_plugin(&exec).await?;
    let command = exec.command.unwrap_or_default();
    if let (Some(cert), Some(key)) = (status.client_certificate_data, status.client_key_data) {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        auth.client_certificate_data = Some(b64.encode(cert));
        auth.client_key_data = Some(b64.encode(key).into());
    } else if let Some(token) = status.token {
        let token = usable_token(&token).ok_or_else(|| {
            AuthError::Plugin(format!(
                "exec plugin {command:?} printed a token that {UNUSABLE}"
            ))
        })?;
        auth.token = Some(token.into());
    } else {
        return Err(AuthError::Plugin(format!(
            "exec plugin {command:?} printed neither a token nor a client certificate"
        )));
    }
    Ok(())
}

const UNUSABLE: &str = "is empty or holds characters an HTTP header cannot carry (not shown)";

/// The token without surrounding whitespace (kubectl trims a token file), if it can be sent.
fn usable_token(raw: &str) -> Option<String> {
    let token = raw.trim();
    let fits = http::HeaderValue::from_str(&format!("Bearer {token}")).is_ok();
    (!token.is_empty() && fits).then(|| token.to_string())
}

/// What an exec plugin prints: an `ExecCredential` (client.authentication.k8s.io).
#[derive(Deserialize)]
struct ExecCredential {
    status: Option<ExecStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecStatus {
    token: Option<String>,
    client_certificate_data: Option<String>,
    client_key_data: Option<String>,
}

/// Runs the plugin as kubectl does (its stderr goes to ours, stdin only when interactive),
/// and reads its credential. The child is killed if this future is dropped.
async fn run_plugin(exec: &ExecConfig) -> Result<ExecStatus, AuthError> {
    let Some(command) = exec.command.as_deref() else {
        return Err(AuthError::Kubeconfig(
            "the user's exec plugin has no command".into(),
        ));
    };
    let mut cmd = plugin_command(exec, command);
    let child = cmd.spawn().map_err(|e| {
        let hint = exec
            .install_hint
            .as_deref()
            .map_or(String::new(), |h| format!(" ({})", h.trim()));
        AuthError::Kubeconfig(format!(
            "the user's exec plugin {command:?} cannot be started: {e}{hint}"
        ))
    })?;
    let plugin_failed = |what: String| {
        AuthError::Plugin(format!(
            "exec plugin {command:?} {what} (its output is not shown: it may hold a credential)"
        ))
    };
    // Abandoned (deadline, signal): the plugin goes, and whatever it started.
    let guard = child.id().map(KillOnDrop);
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| plugin_failed(format!("could not be read: {e}")))?;
    std::mem::forget(guard);
    if !out.status.success() {
        use std::os::unix::process::ExitStatusExt as _;
        let how = match (out.status.code(), out.status.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            (None, None) => "failed".to_string(),
        };
        return Err(plugin_failed(how));
    }
    serde_json::from_slice::<ExecCredential>(&out.stdout)
        .ok()
        .and_then(|c| c.status)
        .ok_or_else(|| plugin_failed("printed no ExecCredential JSON with a status".into()))
}

/// The plugin's command line and environment, as kubectl sets them: stdin only when
/// interactive, `KUBERNETES_EXEC_INFO` describing the call.
fn plugin_command(exec: &ExecConfig, command: &str) -> tokio::process::Command {
    let interactive =
        exec.interactive_mode != Some(ExecInteractiveMode::Never) && std::io::stdin().is_terminal();
    let mut cmd = tokio::process::Command::new(command);
    cmd.args(exec.args.iter().flatten());
    for var in exec.env.iter().flatten() {
        if let (Some(name), Some(value)) = (var.get("name"), var.get("value")) {
            cmd.env(name, value);
        }
    }
    for name in exec.drop_env.iter().flatten() {
        cmd.env_remove(name);
    }
    let cluster = exec.cluster.as_ref().filter(|_| exec.provide_cluster_info);
    let info = serde_json::json!({
        "apiVersion": exec.api_version,
        "kind": "ExecCredential",
        "spec": {"interactive": interactive, "cluster": cluster},
    });
    cmd.env("KUBERNETES_EXEC_INFO", info.to_string())
        .stdin(if interactive {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// Kills a process and its descendants when dropped.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        crate::children::kill_with_descendants(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_trimmed_and_refused_when_a_header_cannot_carry_them() {
        assert_eq!(usable_token("abc\n").as_deref(), Some("abc"));
        assert_eq!(usable_token("  abc \r\n").as_deref(), Some("abc"));
        assert_eq!(usable_token("a\nb"), None);
        assert_eq!(usable_token("\n"), None);
    }

    fn plugin(script: &str) -> AuthInfo {
        let exec = ExecConfig {
            api_version: Some("client.authentication.k8s.io/v1".into()),
            command: Some("sh".into()),
            args: Some(vec![
                "-c".into(),
                script.into(),
                "--client-secret=ARGSECRET".into(),
            ]),
            env: Some(vec![[("name", "VAULT_TOKEN"), ("value", "ENVSECRET")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()]),
            interactive_mode: Some(ExecInteractiveMode::Never),
            ..ExecConfig::default()
        };
        AuthInfo {
            exec: Some(exec),
            ..AuthInfo::default()
        }
    }

    #[tokio::test]
    async fn a_plugin_token_becomes_the_token_once() {
        let mut auth = plugin(r#"printf '%s' '{"status":{"token":"tok\n"}}'"#);
        prepare(&mut auth).await.expect("token");
        assert_eq!(
            auth.token
                .as_ref()
                .map(|t| t.expose_secret().to_string())
                .as_deref(),
            Some("tok")
        );
        assert!(auth.exec.is_none());
    }

    #[tokio::test]
    async fn plugin_errors_name_the_command_and_status_only() {
        for script in [
            r#"echo '{"status":{"token":"PRINTEDSECRET"}}'; echo "$VAULT_TOKEN" >&2; exit 1"#,
            "echo PRINTEDSECRET",
            r#"printf '%s' '{"status":{"token":"PRINTED\nSECRET"}}'"#,
        ] {
            let err = prepare(&mut plugin(script)).await.expect_err(script);
            let AuthError::Plugin(msg) = &err else {
                panic!("{err:?}")
            };
            assert!(msg.starts_with(r#"exec plugin "sh" "#), "{msg}");
            for secret in ["SECRET", "--client", "VAULT"] {
                assert!(!msg.contains(secret), "{msg}");
            }
        }
        let mut missing = plugin("");
        missing.exec.as_mut().unwrap().command = Some("/nonexistent/plugin".into());
        let err = prepare(&mut missing).await.expect_err("no such plugin");
        assert!(
            matches!(&err, AuthError::Kubeconfig(m) if m.contains("/nonexistent/plugin")),
            "{err:?}"
        );
    }
}
