//! Tenant rules (`--tenants FILE`): which IAM role writes the Secret of each namespace, so a
//! namespace's token pulls only its own team's images. The first rule that matches a namespace
//! wins; a namespace no rule matches is left alone (and pruned by `--prune`).
//!
//! The file is read and checked before any call: whatever is wrong in it is named by file,
//! line and key (exit 2), and nothing is written.

use std::collections::{BTreeMap, HashSet};
use std::io::Read as _;
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::ecr::{AssumeRole, RegionName, RegistrySpec, RoleArn};
use crate::error::{Error, Result};
use crate::k8s_grammar::NamespacePattern;
use crate::k8s_grammar::{validate_dns_label, validate_dns_subdomain, LabelSelector};

/// The annotation on our Secret naming the tenant it was written for.
pub(crate) const TENANT_ANNOTATION: &str = "ecr-refresh/tenant";

/// Far larger than any tenants file: a device that never ends stops here.
const FILE_MAX: u64 = 1 << 20;

/// The rules of a tenants file, in order.
#[derive(Clone, Debug)]
pub(crate) struct Tenants {
    /// The file, as named on the command line, for messages.
    pub(crate) file: String,
    pub(crate) rules: Vec<Tenant>,
}

/// One rule: the namespaces it takes, and as whom and for which registries their token is asked.
#[derive(Clone, Debug)]
pub(crate) struct Tenant {
    pub(crate) name: String,
    include: Vec<NamespacePattern>,
    selector: Option<LabelSelector>,
    exclude: Vec<NamespacePattern>,
    pub(crate) role: AssumeRole,
    /// `None`: the run's region (--region, AWS_REGION, the profile's).
    pub(crate) region: Option<RegionName>,
    pub(crate) registries: Vec<RegistrySpec>,
    /// `None`: the run's --service-account / --all-service-accounts.
    pub(crate) service_accounts: Option<Vec<String>>,
    /// The pull Secret's name in its namespaces; `None`: the run's --secret-name.
    pub(crate) secret_name: Option<String>,
}

impl Tenant {
    fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(name)))
            && self.selector.as_ref().is_none_or(|s| s.matches(labels))
            && !self.exclude.iter().any(|p| p.matches(name))
    }

    /// A short description for reports and errors: the name and the role.
    pub(crate) fn describe(&self) -> String {
        format!("tenant {} (role {})", self.name, self.role.arn.as_str())
    }
}

impl Tenants {
    /// Reads and checks the file; `session_name` is the run's --role-session-name.
    pub(crate) fn load(path: &Path, session_name: &str) -> Result<Self> {
        let file = path.display().to_string();
        let whole = |reason: String| Error::TenantsFile {
            file: file.clone(),
            line: 0,
            key: String::new(),
            reason,
        };
        let mut text = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(FILE_MAX + 1).read_to_end(&mut text))
            .map_err(|e| {
                whole(format!(
                    "cannot be read: {e} (check the path given to --tenants)"
                ))
            })?;
        if text.len() as u64 > FILE_MAX {
            return Err(whole(
                "is larger than 1 MiB; a tenants file is a few rules".into(),
            ));
        }
        let text = String::from_utf8(text)
            .map_err(|_| whole("is not UTF-8 text; write it as YAML".into()))?;
        Self::parse(&file, &text, session_name)
    }

    /// Parses and checks the YAML text of `file`.
    pub(crate) fn parse(file: &str, text: &str, session_name: &str) -> Result<Self> {
        let at = |line: u64, key: &str, reason: String| Error::TenantsFile {
            file: file.to_string(),
            line,
            key: key.to_string(),
            reason,
        };
        // One line, no snippet: the message goes to logs and reports.
        let options = serde_saphyr::options! { with_snippet: false };
        let raw: RawFile = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
            let line = e.location().map_or(0, |l| l.line());
            let message = e.to_string();
            // The parser's own " at line N, column M" is said once, by us.
            let message = match message.rsplit_once(" at line ") {
                Some((what, place)) if place.starts_with(|c: char| c.is_ascii_digit()) => what,
                _ => message.as_str(),
            };
            at(line, "", message.to_string())
        })?;
        if raw.tenants.value.is_empty() {
            return Err(at(
                raw.tenants.referenced.line(),
                "tenants",
                "lists no tenant; give at least one rule, or leave --tenants out for one token everywhere".into(),
            ));
        }
        let mut names = HashSet::new();
        let mut rules = Vec::new();
        for rule in raw.tenants.value {
            let tenant = rule.check(&at, session_name)?;
            if !names.insert(tenant.name.clone()) {
                return Err(at(
                    rule.name.referenced.line(),
                    "name",
                    format!(
                        "tenant {:?} is named twice; give each rule its own name",
                        tenant.name
                    ),
                ));
            }
            rules.push(tenant);
        }
        Ok(Self {
            file: file.to_string(),
            rules,
        })
    }

    /// The index of the first rule that takes the namespace.
    pub(crate) fn of(&self, name: &str, labels: &BTreeMap<String, String>) -> Option<usize> {
        self.rules.iter().position(|t| t.matches(name, labels))
    }

    /// Some rule looks at labels, so namespaces named with -n must be listed to be placed.
    pub(crate) fn needs_labels(&self) -> bool {
        self.rules.iter().any(|t| t.selector.is_some())
    }

    /// The Secret names the rules use, the run's own (`default`) first: a command runs once per
    /// name (see `cmd::RunOptions::by_secret_name`).
    pub(crate) fn secret_names(&self, default: &str) -> Vec<String> {
        let mut names = vec![default.to_string()];
        for name in self.rules.iter().filter_map(|t| t.secret_name.as_ref()) {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    /// The Secret name of tenant rule `tenant`'s namespaces.
    pub(crate) fn secret_name_of<'a>(&'a self, tenant: usize, default: &'a str) -> &'a str {
        self.rules
            .get(tenant)
            .and_then(|t| t.secret_name.as_deref())
            .unwrap_or(default)
    }

    /// Every ServiceAccount name some rule (or the run, for rules that name none) links.
    pub(crate) fn service_account_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .rules
            .iter()
            .flat_map(|t| t.service_accounts.iter().flatten())
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFile {
    tenants: Spanned<Vec<RawTenant>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTenant {
    name: Spanned<String>,
    #[serde(default)]
    namespaces: Vec<Spanned<String>>,
    namespace_selector: Option<Spanned<String>>,
    #[serde(default)]
    exclude_namespaces: Vec<Spanned<String>>,
    role_arn: Spanned<String>,
    external_id: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    #[serde(default)]
    registries: Vec<Spanned<String>>,
    service_accounts: Option<Vec<Spanned<String>>>,
    secret_name: Option<Spanned<String>>,
}

impl RawTenant {
    fn check(
        &self,
        at: &impl Fn(u64, &str, String) -> Error,
        session_name: &str,
    ) -> Result<Tenant> {
        let field = |v: &Spanned<String>, key: &str, check: &dyn Fn(&str) -> Result<(), String>| {
            check(&v.value)
                .map_err(|why| at(v.referenced.line(), key, format!("{:?}: {why}", v.value)))
        };
        let parse = |v: &Spanned<String>, key: &str| {
            field(v, key, &|s| s.parse::<NamespacePattern>().map(drop))?;
            Ok::<_, Error>(v.value.parse::<NamespacePattern>().expect("checked"))
        };
        let name = &self.name;
        field(name, "name", &|s| validate_dns_label(s))?;
        let whose = |key: &str| format!("{key} of tenant {:?}", name.value);
        if self.namespaces.is_empty() && self.namespace_selector.is_none() {
            return Err(at(
                name.referenced.line(),
                "namespaces",
                format!(
                    "tenant {:?} names no namespaces: give `namespaces` (names or globs) or a `namespaceSelector`",
                    name.value
                ),
            ));
        }
        let include = self
            .namespaces
            .iter()
            .map(|p| parse(p, &whose("namespaces")))
            .collect::<Result<_>>()?;
        let exclude = self
            .exclude_namespaces
            .iter()
            .map(|p| parse(p, &whose("excludeNamespaces")))
            .collect::<Result<_>>()?;
        let selector = match &self.namespace_selector {
            Some(s) => {
                field(s, &whose("namespaceSelector"), &|v| {
                    v.parse::<LabelSelector>().map(drop)
                })?;
                Some(s.value.parse().expect("checked"))
            }
            None => None,
        };
        field(&self.role_arn, &whose("roleArn"), &|v| {
            v.parse::<RoleArn>().map(drop)
        })?;
        let region = match &self.region {
            Some(r) => {
                field(r, &whose("region"), &|v| v.parse::<RegionName>().map(drop))?;
                Some(r.value.parse().expect("checked"))
            }
            None => None,
        };
        let registries = self
            .registries
            .iter()
            .map(|r| {
                field(r, &whose("registries"), &|v| {
                    v.parse::<RegistrySpec>().map(drop)
                })?;
                Ok(r.value.parse().expect("checked"))
            })
            .collect::<Result<_>>()?;
        let service_accounts = match &self.service_accounts {
            Some(names) => {
                for n in names {
                    field(n, &whose("serviceAccounts"), &|v| validate_dns_subdomain(v))?;
                }
                let mut names: Vec<String> = names.iter().map(|n| n.value.clone()).collect();
                names.sort();
                names.dedup();
                Some(names)
            }
            None => None,
        };
        if let Some(n) = &self.secret_name {
            field(n, &whose("secretName"), &|v| validate_dns_subdomain(v))?;
        }
        Ok(Tenant {
            secret_name: self.secret_name.as_ref().map(|n| n.value.clone()),
            name: name.value.clone(),
            include,
            selector,
            exclude,
            role: AssumeRole {
                arn: self.role_arn.value.parse().expect("checked"),
                session_name: session_name.to_string(),
                external_id: self.external_id.as_ref().map(|e| e.value.clone()),
            },
            region,
            registries,
            service_accounts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "tenants.yaml";

    fn parse(text: &str) -> Result<Tenants> {
        Tenants::parse(FILE, text, "ecr-refresh")
    }

    const TWO: &str = "\
tenants:
  - name: team-a
    namespaces: [team-a, team-a-*]
    excludeNamespaces: [team-a-sandbox]
    roleArn: arn:aws:iam::111111111111:role/ecr-pull-team-a
  - name: team-b
    namespaceSelector: team=b
    roleArn: arn:aws:iam::222222222222:role/ecr-pull-team-b
    region: eu-west-1
    registries: [\"333333333333\"]
    serviceAccounts: [default, builder]
    secretName: team-b-ecr
  - name: rest
    namespaces: [\"*\"]
    roleArn: arn:aws:iam::111111111111:role/ecr-pull-shared
";

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let t = parse(TWO).unwrap();
        let none = labels(&[]);
        assert_eq!(t.of("team-a", &none), Some(0));
        assert_eq!(t.of("team-a-web", &none), Some(0));
        // Excluded from team-a, so the catch-all takes it.
        assert_eq!(t.of("team-a-sandbox", &none), Some(2));
        assert_eq!(t.of("web", &labels(&[("team", "b")])), Some(1));
        // A namespace team-a's globs take stays team-a's whatever its labels say.
        assert_eq!(t.of("team-a-x", &labels(&[("team", "b")])), Some(0));
        assert_eq!(t.of("web", &none), Some(2));
        assert!(t.needs_labels());
        assert_eq!(t.service_account_names(), ["builder", "default"]);
        assert_eq!(t.secret_names("awsecr-cred"), ["awsecr-cred", "team-b-ecr"]);
        assert_eq!(t.secret_name_of(1, "awsecr-cred"), "team-b-ecr");
        assert_eq!(t.secret_name_of(0, "awsecr-cred"), "awsecr-cred");
        assert_eq!(t.rules[1].region.as_ref().unwrap().as_str(), "eu-west-1");
        assert_eq!(
            t.rules[0].describe(),
            "tenant team-a (role arn:aws:iam::111111111111:role/ecr-pull-team-a)"
        );

        let only_a = parse(&TWO[..TWO.find("  - name: team-b").unwrap()]).unwrap();
        assert_eq!(only_a.of("web", &none), None);
        assert!(!only_a.needs_labels());
    }

    #[test]
    fn bad_files_name_the_line_and_the_key() {
        let cases: &[(&str, u64, &str, &str)] = &[
            ("tenants: [\n", 1, "", "unclosed"),
            (
                "tenants:\n  - name: a\n    namespaces: [a]\n    roleArn: arn:aws:iam::111111111111:role/x\n    roles: x\n",
                5,
                "",
                "unknown field `roles`",
            ),
            ("tenants:\n  - name: a\n    roleArn: arn:aws:iam::111111111111:role/x\n", 2, "namespaces", "names no namespaces"),
            (
                "tenants:\n  - name: a\n    namespaces: [a]\n    roleArn: role/x\n",
                4,
                "roleArn of tenant \"a\"",
                "expected an IAM role ARN",
            ),
            // Found missing where the rule's mapping ends.
            ("tenants:\n  - name: a\n    namespaces: [a]\n", 3, "", "missing field `roleArn`"),
            (
                "tenants:\n  - name: Team_A\n    namespaces: [a]\n    roleArn: arn:aws:iam::111111111111:role/x\n",
                2,
                "name",
                "\"Team_A\"",
            ),
            (
                "tenants:\n  - name: a\n    namespaces: [\"[a\"]\n    roleArn: arn:aws:iam::111111111111:role/x\n",
                3,
                "namespaces of tenant \"a\"",
                "\"[a\"",
            ),
            (
                "tenants:\n  - name: a\n    namespaceSelector: \"team in b\"\n    roleArn: arn:aws:iam::111111111111:role/x\n",
                3,
                "namespaceSelector of tenant \"a\"",
                "team in b",
            ),
            (
                "tenants:\n  - name: a\n    namespaces: [a]\n    roleArn: arn:aws:iam::111111111111:role/x\n    region: moon-1\n",
                5,
                "region of tenant \"a\"",
                "moon-1",
            ),
            (
                "tenants:\n  - name: a\n    namespaces: [a]\n    roleArn: arn:aws:iam::111111111111:role/x\n    registries: [docker.io]\n",
                5,
                "registries of tenant \"a\"",
                "docker.io",
            ),
            (
                "tenants:\n  - name: a\n    namespaces: [a]\n    roleArn: arn:aws:iam::111111111111:role/x\n  - name: a\n    namespaces: [b]\n    roleArn: arn:aws:iam::111111111111:role/x\n",
                5,
                "name",
                "named twice",
            ),
            ("tenants: []\n", 1, "tenants", "lists no tenant"),
            (
                "tenants:\n  - name: a\n    namespaces: [a]\n    roleArn: arn:aws:iam::111111111111:role/x\n    secretName: Bad_Name\n",
                5,
                "secretName of tenant \"a\"",
                "\"Bad_Name\"",
            ),
            ("", 1, "", ""),
            ("tenant:\n  - name: a\n", 1, "", "unknown field `tenant`"),
        ];
        for (text, line, key, says) in cases {
            let err = parse(text).unwrap_err();
            let Error::TenantsFile {
                file,
                line: l,
                key: k,
                reason,
            } = &err
            else {
                panic!("{text:?}: {err:?}");
            };
            assert_eq!(
                (file.as_str(), l, k.as_str()),
                (FILE, line, *key),
                "{text:?}: {err}"
            );
            assert!(reason.contains(says), "{text:?}: {err}");
            assert!(!reason.contains("at line"), "{text:?}: {err}");
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(FILE), "{err}");
        }
    }

    #[test]
    fn a_file_that_cannot_be_read_is_named() {
        let err = Tenants::load(Path::new("/nonexistent/tenants.yaml"), "s").unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/tenants.yaml"),
            "{err}"
        );
        assert_eq!(err.exit_code(), 2);
        let err = Tenants::load(Path::new("/dev/zero"), "s").unwrap_err();
        assert!(err.to_string().contains("1 MiB"), "{err}");
    }
}
