//! Registry hosts against the real apiserver: every ECR host form (standard, FIPS, dual-stack, in
//! every partition) is written and recognised as current, and what `status` would call "not an
//! ECR registry" or "further out than an ECR token lasts" is never written; several regions and
//! accounts share one Secret, with one token call per region. The fake ECR gives the answers
//! moto cannot (any proxyEndpoint, expiry).

use crate::common;

use common::fake_ecr::FakeEcr;
use common::*;

/// Makes the fake ECR answer `body`, and expects `sync` to refuse it, naming `named`.
async fn assert_refused(ecr: &FakeEcr, body: String, named: &str) {
    ecr.set_body(body);
    assert_token_refused(&ecr.url, named).await;
}

#[tokio::test]
async fn sync_refuses_a_proxy_endpoint_status_would_call_not_ecr() {
    let _suite = suite::shared().await;
    let ecr = FakeEcr::start(String::new()).await;
    let in_12h = now() + 12 * 3600;
    // (proxyEndpoint, what the error must name)
    let cases = [
        // The host of this URL is evil.example.com; the ECR name is only its user name.
        (
            "https://123456789012.dkr.ecr.us-east-1.amazonaws.com@evil.example.com",
            "evil.example.com",
        ),
        ("evil.example.com", "evil.example.com"),
        ("https://evil.example.com/", "evil.example.com"),
        (":443", ":443"),
        ("[::1]:5000", "[::1]"),
        // An ECR host with a port: no image reference would ever match it.
        (
            "https://123456789012.dkr.ecr.us-east-1.amazonaws.com:443",
            ":443",
        ),
        // Another region's registry, for a token asked of us-east-1.
        (
            "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "eu-west-1",
        ),
        // Look-alikes of the grammar: dual-stack label with the IPv4 suffix, wrong partition.
        (
            "https://123456789012.dkr-ecr.us-east-1.amazonaws.com",
            "123456789012.dkr-ecr.us-east-1.amazonaws.com",
        ),
        (
            "https://123456789012.dkr.ecr.us-east-1.c2s.ic.gov",
            "123456789012.dkr.ecr.us-east-1.c2s.ic.gov",
        ),
    ];
    for (endpoint, named) in cases {
        assert_refused(&ecr, FakeEcr::answer("pw", in_12h, endpoint), named).await;
    }
}

#[tokio::test]
async fn sync_refuses_an_expiry_further_out_than_an_ecr_token_lasts() {
    let _suite = suite::shared().await;
    let ecr = FakeEcr::start(String::new()).await;
    let body = FakeEcr::token_body("pw", now() + 100 * 3600, ACCOUNT, REGION);
    assert_refused(&ecr, body, "further out than an ECR token lasts").await;
}

#[tokio::test]
async fn dual_stack_hosts_are_written_and_a_second_pass_finds_them_current() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("dualstack").await;
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("pw")).await;
    // Another account's registry in GovCloud, asked for by its dual-stack FIPS name.
    let other = "210987654321.dkr-ecr-fips.us-gov-west-1.on.aws";
    let sync = || {
        Run::sync().env("AWS_ENDPOINT_URL", &ecr.url).args([
            "-n",
            &ns,
            "--registry",
            other,
            "--refresh-before",
            "1h",
            "-o",
            "json",
        ])
    };
    sync().run().assert_code(0);
    assert_eq!(ecr.calls(), 2, "one token per region");
    let expected = [
        "123456789012.dkr-ecr.us-east-1.on.aws",
        HOST,
        "210987654321.dkr-ecr-fips.us-gov-west-1.on.aws",
        "210987654321.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
    ];
    let secret = get_secret(&client, &ns, "awsecr-cred").await.unwrap();
    let auths = dockerconfig(&secret)["auths"].clone();
    let mut hosts: Vec<&str> = auths
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    hosts.sort();
    assert_eq!(hosts, expected);
    for h in expected {
        assert_eq!(auths[h]["password"], "pw", "{h}");
    }
    let annotations = secret.metadata.annotations.unwrap();
    assert_eq!(annotations["ecr-refresh/registries"], expected.join(","));

    // The freshness check finds it current: no token fetched, nothing written.
    let out = sync().run();
    out.assert_code(0);
    assert_eq!(ecr.calls(), 2, "a current Secret needs no new token");
    assert_eq!(outcome(&out.json(), &ns)["outcome"], "unchanged");

    // `status` calls every one of them an ECR registry.
    let out = Run::bare().args(["status", "-n", &ns, "-o", "json"]).run();
    out.assert_code(0);
    let st = outcome(&out.json(), &ns).clone();
    assert_eq!(st["healthy"], true, "{st:#}");
    assert_eq!(st["registries"], serde_json::json!(expected));
}

/// A bare account ID maps to its partition's host in every partition, with the dual-stack twin
/// where the partition has one; `status` finds each Secret healthy.
#[tokio::test]
async fn every_partition_gets_its_own_registry_hosts() {
    let _suite = suite::shared().await;
    let client = admin().await;
    let ecr = FakeEcr::start(String::new()).await;
    // (region, ECR's proxyEndpoint host suffix, the hosts written for --registry 210987654321)
    let cases: [(&str, &str, &[&str]); 4] = [
        (
            "us-iso-east-1",
            "c2s.ic.gov",
            &["210987654321.dkr.ecr.us-iso-east-1.c2s.ic.gov"],
        ),
        (
            "eusc-de-east-1",
            "amazonaws.eu",
            &["210987654321.dkr.ecr.eusc-de-east-1.amazonaws.eu"],
        ),
        (
            "cn-north-1",
            "amazonaws.com.cn",
            &[
                "210987654321.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn",
                "210987654321.dkr.ecr.cn-north-1.amazonaws.com.cn",
            ],
        ),
        (
            "eu-isoe-west-1",
            "cloud.adc-e.uk",
            &["210987654321.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk"],
        ),
    ];
    for (region, suffix, wanted) in cases {
        let ns = TestNs::new("partition").await.name;
        let own = format!("{ACCOUNT}.dkr.ecr.{region}.{suffix}");
        ecr.set_body(FakeEcr::answer(
            "pw",
            now() + 12 * 3600,
            &format!("https://{own}"),
        ));
        Run::sync()
            .env("AWS_ENDPOINT_URL", &ecr.url)
            .env("AWS_REGION", region)
            .args(["-n", &ns, "--registry", "210987654321"])
            .run()
            .assert_code(0);
        let secret = get_secret(&client, &ns, "awsecr-cred").await.unwrap();
        let auths = dockerconfig(&secret)["auths"].clone();
        let hosts: Vec<&String> = auths.as_object().unwrap().keys().collect();
        assert!(hosts.contains(&&own), "{region}: {hosts:?}");
        for w in wanted {
            assert!(
                hosts.iter().any(|h| h == w),
                "{region}: {w} missing from {hosts:?}"
            );
        }
        let out = Run::bare().args(["status", "-n", &ns, "-o", "json"]).run();
        let st = outcome(&out.json(), &ns).clone();
        assert_eq!(st["healthy"], true, "{region}: {st:#}");
        out.assert_code(0);
    }
    let regions: Vec<String> = ecr.signed().into_iter().map(|(r, _)| r).collect();
    assert_eq!(
        regions,
        [
            "us-iso-east-1",
            "eusc-de-east-1",
            "cn-north-1",
            "eu-isoe-west-1"
        ],
        "each token is asked of the region itself"
    );
}

#[tokio::test]
async fn several_regions_and_accounts_in_one_secret_against_moto() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("multi").await;
    let out = Run::sync()
        .args([
            "-n",
            &ns,
            "--registry",
            "111111111111",
            "--registry",
            "222222222222.dkr.ecr.eu-west-1.amazonaws.com,333333333333.dkr.ecr.eu-west-1.amazonaws.com",
            "-o",
            "json",
        ])
        .run();
    out.assert_code(0);
    let report = out.json();
    assert_eq!(report["ecr_calls"], 2, "one call per region: {report:#}");
    let secret = get_secret(&client, &ns, "awsecr-cred").await.unwrap();
    let auths = dockerconfig(&secret)["auths"].clone();
    let hosts: Vec<&String> = auths.as_object().unwrap().keys().collect();
    assert_eq!(
        hosts,
        [
            "111111111111.dkr-ecr.us-east-1.on.aws",
            "111111111111.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr-ecr.us-east-1.on.aws",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "222222222222.dkr-ecr.eu-west-1.on.aws",
            "222222222222.dkr.ecr.eu-west-1.amazonaws.com",
            "333333333333.dkr-ecr.eu-west-1.on.aws",
            "333333333333.dkr.ecr.eu-west-1.amazonaws.com",
        ]
    );
    for host in hosts {
        assert_eq!(auths[host]["username"], "AWS", "{host}");
        assert_eq!(auths[host]["password"], PASSWORD, "{host}");
    }
}

#[tokio::test]
async fn exactly_one_token_call_per_region() {
    let _suite = suite::shared().await;
    let (client, base, names) = TestNs::group("perregion", ["0", "1", "2"]).await;
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("pw")).await;
    let out = Run::sync()
        .env("AWS_ENDPOINT_URL", &ecr.url)
        .args([
            "-n",
            &format!("{base}-*"),
            "--registry",
            "111111111111,222222222222.dkr.ecr.eu-west-1.amazonaws.com,333333333333.dkr.ecr.ap-south-1.amazonaws.com,444444444444.dkr.ecr.eu-west-1.amazonaws.com",
            "-o",
            "json",
        ])
        .run();
    out.assert_code(0);
    let mut regions: Vec<String> = ecr.signed().into_iter().map(|(r, _)| r).collect();
    regions.sort();
    assert_eq!(
        regions,
        ["ap-south-1", "eu-west-1", "us-east-1"],
        "three namespaces, three regions, three calls"
    );
    for n in &names {
        let s = get_secret(&client, n, "awsecr-cred").await.unwrap();
        assert_eq!(
            dockerconfig(&s)["auths"].as_object().unwrap().len(),
            10,
            "{n}"
        );
    }
}
