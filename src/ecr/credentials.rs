//! AWS credentials: the profile the user chose, resolving the chain once per run, and whose
//! credentials they are (for the freshness fingerprint).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{chain, Error, Result};

/// Who credentials belong to, for the freshness fingerprint, without any call. A long-term key
/// (no session token) is its own identity: a short hash of the key id (not secret, but no need
/// to spread it). Temporary credentials get a new key id every session, so for them the account
/// that owns them, which AWS encodes in the key id; if it cannot be decoded, the key hash again
/// (fresh only within that session: safe, only costly).
pub(crate) fn identity_of(access_key_id: &str, temporary: bool) -> String {
    match account_of_key(access_key_id).filter(|_| temporary) {
        Some(account) => format!("account:{account}"),
        None => {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(access_key_id.as_bytes());
            let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            format!("key:{hex}")
        }
    }
}

/// The account id in an access key id: base32 after the 4-letter prefix (AKIA, ASIA, ...), then
/// bits 7..47 of the first 6 bytes.
fn account_of_key(key_id: &str) -> Option<u64> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let body = key_id.get(4..)?.as_bytes();
    if body.len() < 10 {
        return None;
    }
    // 10 base32 characters are 50 bits: more than the 48 needed.
    let mut bits: u64 = 0;
    for c in &body[..10] {
        let v = ALPHABET.iter().position(|a| a == c)? as u64;
        bits = (bits << 5) | v;
    }
    let first_six_bytes = bits >> 2;
    Some((first_six_bytes & 0x7fff_ffff_ff80) >> 7)
}

/// Resolves the credential chain once and hands out the same credentials until they are about
/// to expire, so the freshness fingerprint and the token call cost one resolution, not two.
#[derive(Debug)]
pub(super) struct ResolveOnce {
    inner: aws_credential_types::provider::SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Option<aws_credential_types::Credentials>>,
}

impl ResolveOnce {
    pub(super) fn new(inner: aws_credential_types::provider::SharedCredentialsProvider) -> Self {
        Self {
            inner,
            cached: Default::default(),
        }
    }
}

impl aws_credential_types::provider::ProvideCredentials for ResolveOnce {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            let mut cached = self.cached.lock().await;
            let soon = std::time::SystemTime::now() + Duration::from_secs(300);
            if let Some(c) = cached
                .as_ref()
                .filter(|c| c.expiry().is_none_or(|e| e > soon))
            {
                return Ok(c.clone());
            }
            // The SDK reads files (a web identity token, the profile) with blocking reads.
            let inner = self.inner.clone();
            let fresh =
                crate::shutdown::detached(async move { inner.provide_credentials().await }).await?;
            *cached = Some(fresh.clone());
            Ok(fresh)
        })
    }
}

/// The profile chosen with `--profile` (or `ECR_REFRESH_PROFILE`), else `AWS_PROFILE`, checked
/// against the shared config and credentials files: naming one that is not there is bad input,
/// not a quiet fall-back to other credentials.
pub(super) async fn selected_profile(flag_value: Option<&str>) -> Result<Option<String>> {
    let (name, flag) = match flag_value {
        Some(p) => (p.to_string(), "--profile"),
        None => match std::env::var("AWS_PROFILE") {
            Ok(p) if !p.is_empty() => (p, "AWS_PROFILE"),
            _ => return Ok(None),
        },
    };
    let bad = |reason: String| Error::InvalidInput {
        flag,
        value: name.clone(),
        reason,
    };
    #[allow(deprecated)] // ProfileFiles::default() is what the SDK itself reads
    let files = aws_config::profile::profile_file::ProfileFiles::default();
    let profiles = aws_config::profile::load(
        &aws_types::os_shim_internal::Fs::real(),
        &aws_types::os_shim_internal::Env::real(),
        &files,
        None,
    )
    .await
    .map_err(|e| bad(format!("cannot read the AWS config files: {}", chain(&e))))?;
    if profiles.get_profile(&name).is_none() {
        // The SDK read an unreadable or non-UTF-8 file as empty: say that, not "no such profile".
        if let Some(e) = unreadable_config_file() {
            return Err(e);
        }
        return Err(bad(
            "no such profile in the AWS config or credentials file (~/.aws/config, ~/.aws/credentials, or AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE); see `aws configure list-profiles`".into(),
        ));
    }
    Ok(Some(name))
}

/// The shared config and credentials files as the SDK finds them, each with what names it: the
/// variable, else its default under the home folder.
fn config_files() -> [(&'static str, PathBuf); 2] {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    [
        ("AWS_CONFIG_FILE", "the AWS config file", ".aws/config"),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "the AWS credentials file",
            ".aws/credentials",
        ),
    ]
    .map(|(var, default_name, default)| {
        match std::env::var_os(var).filter(|v| !v.is_empty()) {
            Some(set) => (var, PathBuf::from(set)),
            None => (default_name, home.join(default)),
        }
    })
}

/// The files [`config_files`] names, for a message.
pub(super) fn describe_config_files() -> String {
    config_files()
        .iter()
        .map(|(name, path)| format!("{:?} ({name})", path.display().to_string()))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// An AWS config file is bad input, and which one.
fn bad_file(var: &'static str, path: &Path, reason: String) -> Error {
    Error::InvalidInput {
        flag: var,
        value: path.display().to_string(),
        reason,
    }
}

/// Bigger than any AWS config file: a device that does not end (`/dev/zero`) stops here.
const CONFIG_FILE_MAX: u64 = 1 << 20;

/// Refuses a config file that is a device with no end, before the SDK reads it: it would read
/// `/dev/zero` until memory runs out. Regular files and FIFOs are left to the SDK, which reads
/// them (a FIFO gives its content only once); so is `/dev/null`, which is empty.
pub(super) fn refuse_endless_config_files() -> Result<()> {
    use std::io::Read as _;
    use std::os::unix::fs::FileTypeExt as _;
    for (var, path) in config_files() {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let kind = meta.file_type();
        if kind.is_file() || kind.is_fifo() || kind.is_dir() {
            continue;
        }
        let mut head = Vec::new();
        let read = std::fs::File::open(&path)
            .and_then(|f| f.take(CONFIG_FILE_MAX + 1).read_to_end(&mut head));
        let reason = match read {
            Err(e) => format!("cannot be read: {e}"),
            Ok(n) if n as u64 > CONFIG_FILE_MAX => {
                "cannot be read as an AWS config file: it is a device that gives more than 1 MiB"
                    .into()
            }
            Ok(_) => continue,
        };
        return Err(bad_file(var, &path, reason));
    }
    Ok(())
}

/// A regular config file that the SDK read as empty (after a warning): one it cannot read, or
/// one that is not UTF-8 text.
fn unreadable_config_file() -> Option<Error> {
    config_files().into_iter().find_map(|(var, path)| {
        let reason = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => format!("cannot be read: {e}"),
            // A FIFO was read by the SDK already; only a regular file can be read again.
            Ok(meta) if !meta.is_file() => return None,
            Ok(_) => match std::fs::read(&path) {
                Err(e) => format!("cannot be read: {e}"),
                Ok(bytes) if std::str::from_utf8(&bytes).is_err() => {
                    "cannot be parsed: it is not UTF-8 text (the AWS SDK reads it as empty)".into()
                }
                Ok(_) => return None,
            },
        };
        Some(bad_file(var, &path, reason))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_is_read_from_the_access_key_id() {
        // The example from AWS's own key format write-ups.
        assert_eq!(
            account_of_key("ASIAY34FZKBOKMUTVV7A"),
            Some(609_629_065_308)
        );
        assert_eq!(account_of_key("AKIA0"), None);
        assert_eq!(account_of_key("AKIA1111111111111111"), None);
    }

    #[test]
    fn identity_is_the_account_for_temporary_keys_and_a_key_hash_otherwise() {
        assert_eq!(
            identity_of("ASIAY34FZKBOKMUTVV7A", true),
            "account:609629065308"
        );
        let long_term = identity_of("AKIAY34FZKBOKMUTVV7A", false);
        assert!(
            long_term.starts_with("key:") && long_term.len() == 20,
            "{long_term}"
        );
        assert!(!long_term.contains("Y34FZKBOKMUTVV7A"));
        assert_ne!(long_term, identity_of("AKIAY34FZKBOKMUTVV7B", false));
        // Undecodable temporary keys fall back to the hash.
        assert!(identity_of("ASIA1111111111111111", true).starts_with("key:"));
    }
}
