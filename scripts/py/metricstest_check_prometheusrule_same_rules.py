# metricstest.sh: deploy/prometheusrule.yaml holds the same rules as deploy/alerts.yaml.
import sys, yaml
plain = yaml.safe_load(open(sys.argv[1]))
docs = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d]
if len(docs) != 1 or docs[0].get("kind") != "PrometheusRule" or docs[0].get("apiVersion") != "monitoring.coreos.com/v1":
    sys.exit("prometheusrule.yaml must hold exactly one monitoring.coreos.com/v1 PrometheusRule")
if docs[0]["spec"]["groups"] != plain["groups"]:
    sys.exit("spec.groups differs from alerts.yaml's groups: change both the same way")
