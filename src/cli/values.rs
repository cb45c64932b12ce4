//! Flag values with rules of their own. clap parses each through `FromStr`, so a bad value fails
//! at parse time, with the flag named, before anything runs.

use std::str::FromStr;
use std::time::Duration;

use crate::k8s_grammar::validate_dns_subdomain;

/// The longest duration any flag takes. A CronJob pass never needs more, and a bound keeps
/// deadline arithmetic (`now + timeout`, `timeout * 4`) far from overflow. Messages say "24h".
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// A duration such as 30s, 2m or 1h30m, at most [`MAX_DURATION`]. With `NONZERO`, zero is
/// refused too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DurationArg<const NONZERO: bool = false>(Duration);

/// A timeout: zero would fail every request.
pub(crate) type Timeout = DurationArg<true>;

impl<const NONZERO: bool> DurationArg<NONZERO> {
    pub(crate) fn get(self) -> Duration {
        self.0
    }
}

impl<const NONZERO: bool> FromStr for DurationArg<NONZERO> {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = humantime::parse_duration(s)
            .map_err(|e| format!("{e}; expected a duration such as 30s, 2m or 1h30m"))?;
        if d > MAX_DURATION {
            return Err("must be at most 24h".into());
        }
        if NONZERO && d.is_zero() {
            return Err("must be longer than zero".into());
        }
        Ok(Self(d))
    }
}

/// How many namespaces to process at once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Concurrency(usize);

impl Concurrency {
    const MAX: usize = 1024;

    pub(crate) fn get(self) -> usize {
        self.0
    }
}

impl FromStr for Concurrency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().parse::<i64>() {
            Ok(n) if (1..=Self::MAX as i64).contains(&n) => Ok(Self(n as usize)),
            _ => Err(format!("must be a whole number from 1 to {}", Self::MAX)),
        }
    }
}

/// An STS role session name, as AssumeRole accepts it.
#[derive(Clone, Debug)]
pub(crate) struct SessionName(String);

impl From<SessionName> for String {
    fn from(name: SessionName) -> Self {
        name.0
    }
}

impl FromStr for SessionName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (2..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=,.@-_".contains(&b));
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err("use 2 to 64 letters, digits or =,.@-_".into())
        }
    }
}

/// A Secret or ServiceAccount name. A checked `String` rather than a newtype: `crate::run`
/// hands the Secret name to the reports, which hold it as a `String`.
pub(crate) fn object_name(s: &str) -> Result<String, String> {
    validate_dns_subdomain(s)?;
    Ok(s.to_string())
}

/// A namespace's name (a DNS label).
pub(crate) fn namespace_name(s: &str) -> Result<String, String> {
    crate::k8s_grammar::validate_dns_label(s)?;
    Ok(s.to_string())
}

/// [`parse_url`] for clap, whose own message would quote the value, password and all (it comes
/// from `ECR_REFRESH_PUSHGATEWAY` into pod logs too): the refusal shows it masked.
#[derive(Clone)]
pub(crate) struct PushgatewayUrl;

impl clap::builder::TypedValueParser for PushgatewayUrl {
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

pub(crate) fn parse_instance(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let err = super::super::Cli::try_parse_from(args).err().unwrap();
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
