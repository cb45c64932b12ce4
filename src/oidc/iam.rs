//! The IAM side of web identity, with the values filled in: the role's trust policy, and the
//! steps a person runs, each with the AWS documentation page it follows.

use serde_json::{json, Value};

use super::{IssuerChange, IssuerUrl, AUDIENCE, DISCOVERY_PATH, JWKS_PATH};

/// AWS's managed policy for pulling from ECR: GetAuthorizationToken for the tool, and the
/// read calls the kubelet's pull makes with the token.
pub(crate) const ECR_READ_ONLY: &str = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly";

/// Who may assume the role, and what for.
#[derive(Clone, Debug)]
pub(crate) struct RoleSpec {
    pub(crate) account_id: String,
    pub(crate) role_name: String,
    pub(crate) namespace: String,
    pub(crate) service_account: String,
}

impl RoleSpec {
    pub(crate) fn provider_arn(&self, url: &IssuerUrl) -> String {
        format!(
            "arn:aws:iam::{}:oidc-provider/{}",
            self.account_id,
            url.provider_id()
        )
    }

    pub(crate) fn role_arn(&self) -> String {
        format!("arn:aws:iam::{}:role/{}", self.account_id, self.role_name)
    }

    pub(crate) fn subject(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }

    /// Only this ServiceAccount's tokens, and only those minted for STS.
    pub(crate) fn trust_policy(&self, url: &IssuerUrl) -> Value {
        let id = url.provider_id();
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": self.provider_arn(url)},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        format!("{id}:sub"): self.subject(),
                        format!("{id}:aud"): AUDIENCE,
                    }
                }
            }]
        })
    }
}

/// Where `publish` wrote its files, as the steps name them.
pub(crate) struct Written {
    pub(crate) public_dir: String,
    pub(crate) trust_policy: String,
}

/// The steps, in order, as text for a person to follow.
pub(crate) fn steps(
    url: &IssuerUrl,
    change: &IssuerChange,
    role: &RoleSpec,
    written: &Written,
) -> String {
    let Written {
        public_dir,
        trust_policy,
    } = written;
    let mut out = String::new();
    let mut step = 0;
    let mut next = |out: &mut String, title: &str| {
        step += 1;
        out.push_str(&format!("\n{step}. {title}\n"));
    };
    out.push_str(&format!("Web identity for {url}\n"));

    next(&mut out, "Serve the two documents publicly over HTTPS");
    if *change == IssuerChange::AlreadyPublic {
        out.push_str("   The cluster already issues tokens with this issuer: no apiserver change is needed.\n   If your provider serves this URL (AKS, GKE and others do), there is nothing to upload.\n   If you serve it yourself, upload as below.\n");
    }
    out.push_str(&format!(
        "   Upload the contents of {public_dir}/ so that these URLs answer with them\n   (Content-Type: application/json):\n     {}\n     {}\n",
        url.join(DISCOVERY_PATH),
        url.join(JWKS_PATH),
    ));
    out.push_str("   S3: new buckets block public ACLs; make the two objects readable with a bucket policy\n   (s3:GetObject for \"*\" on these keys) or serve the bucket through CloudFront, not --acl public-read.\n");
    out.push_str(&format!(
        "   Then: ecr-refresh oidc check --issuer-url {url}\n"
    ));

    match change {
        IssuerChange::AlreadyPublic => {}
        IssuerChange::TrailingSlash { cluster } => {
            next(&mut out, "Fix the apiserver's issuer");
            out.push_str(&format!(
                "   The cluster's issuer is {cluster:?}, which differs from {url} only by the trailing\n   slash; the iss claim must equal the provider URL exactly. Set\n     --service-account-issuer={url}\n     --service-account-issuer={cluster}\n     --service-account-jwks-uri={}\n",
                url.join(JWKS_PATH)
            ));
        }
        IssuerChange::Add { cluster } => {
            next(
                &mut out,
                "Make the apiserver issue tokens with the public issuer",
            );
            out.push_str(&format!(
                "   The cluster's issuer is {cluster}. Change the kube-apiserver flags to (order matters:\n   the first issuer signs new tokens, the second keeps accepting tokens already issued):\n     --service-account-issuer={url}\n     --service-account-issuer={cluster}\n     --service-account-jwks-uri={}\n   Keep --api-audiences as it is; if it is unset, set --api-audiences={cluster}, since it\n   defaults to the first issuer and in-cluster clients' tokens would stop being accepted.\n   https://kubernetes.io/docs/tasks/configure-pod-container/configure-service-account/#service-account-issuer-discovery\n",
                url.join(JWKS_PATH)
            ));
        }
    }

    next(
        &mut out,
        "Register the issuer as an IAM OIDC identity provider",
    );
    out.push_str(&format!(
        "   aws iam create-open-id-connect-provider --url {url} --client-id-list {AUDIENCE}\n   No --thumbprint-list is needed when the URL's certificate is from a publicly trusted CA\n   (IAM then trusts its own CA library). With a private CA, pass the SHA-1 thumbprint of\n   the top intermediate CA: https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_providers_create_oidc_verify-thumbprint.html\n   https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_providers_create_oidc.html\n"
    ));

    next(
        &mut out,
        "Create the role that the CronJob's ServiceAccount may assume",
    );
    out.push_str(&format!(
        "   {trust_policy} trusts only {} with audience {AUDIENCE}.\n   aws iam create-role --role-name {} --assume-role-policy-document file://{trust_policy}\n   aws iam attach-role-policy --role-name {} --policy-arn {ECR_READ_ONLY}\n   https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_create_for-idp_oidc.html\n",
        role.subject(),
        role.role_name,
        role.role_name,
    ));

    next(
        &mut out,
        "Deploy with the web-identity component (no AWS key in the cluster)",
    );
    out.push_str(&format!(
        "   In your kustomization: components: [<deploy/>/web-identity], with AWS_ROLE_ARN set to\n     {}\n   kubectl apply -k <your kustomization>\n   https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithWebIdentity.html\n",
        role.role_arn()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role() -> RoleSpec {
        RoleSpec {
            account_id: "123456789012".into(),
            role_name: "ecr-refresh".into(),
            namespace: "kube-system".into(),
            service_account: "ecr-refresh".into(),
        }
    }

    #[test]
    fn the_trust_policy_names_one_service_account_and_the_sts_audience() {
        let url: IssuerUrl = "https://oidc.example.com/c".parse().unwrap();
        let p = role().trust_policy(&url);
        let st = &p["Statement"][0];
        assert_eq!(
            st["Principal"]["Federated"],
            "arn:aws:iam::123456789012:oidc-provider/oidc.example.com/c"
        );
        assert_eq!(st["Action"], "sts:AssumeRoleWithWebIdentity");
        let eq = &st["Condition"]["StringEquals"];
        assert_eq!(
            eq["oidc.example.com/c:sub"],
            "system:serviceaccount:kube-system:ecr-refresh"
        );
        assert_eq!(eq["oidc.example.com/c:aud"], "sts.amazonaws.com");
    }

    #[test]
    fn the_apiserver_change_puts_the_public_issuer_first() {
        let url: IssuerUrl = "https://oidc.example.com/c".parse().unwrap();
        let written = Written {
            public_dir: "out/public".into(),
            trust_policy: "out/trust-policy.json".into(),
        };
        let change = IssuerChange::Add {
            cluster: "https://kubernetes.default.svc".into(),
        };
        let text = steps(&url, &change, &role(), &written);
        let first = text
            .find("--service-account-issuer=https://oidc.example.com/c\n")
            .unwrap();
        let second = text
            .find("--service-account-issuer=https://kubernetes.default.svc\n")
            .unwrap();
        assert!(first < second, "{text}");
        assert!(
            text.contains("--service-account-jwks-uri=https://oidc.example.com/c/openid/v1/jwks")
        );
        assert!(text.contains("aws iam create-open-id-connect-provider --url https://oidc.example.com/c --client-id-list sts.amazonaws.com"));
        assert!(text.contains("file://out/trust-policy.json"));
        assert!(text.contains(ECR_READ_ONLY));

        let public = steps(&url, &IssuerChange::AlreadyPublic, &role(), &written);
        assert!(public.contains("no apiserver change is needed"), "{public}");
        assert!(!public.contains("--service-account-issuer="), "{public}");
    }
}
