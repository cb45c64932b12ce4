#!/usr/bin/env python3
"""Compares `kubectl kustomize` output with `helm template` output object by object.

    helm-compare.py KUSTOMIZE.yaml HELM.yaml WHAT

Objects are matched by apiVersion, kind, namespace and name. Before comparing, the chart's own
additions are taken away, and only these: Helm's labels (helm.sh/chart,
app.kubernetes.io/instance, app.kubernetes.io/version, app.kubernetes.io/managed-by: Helm) and
the CronJob pod's default nodeSelector kubernetes.io/os: linux. Anything else that differs is a
drift between charts/ecr-refresh and deploy/, printed field by field; exit 1.
"""
import sys

import yaml

HELM_LABELS = {"helm.sh/chart", "app.kubernetes.io/instance", "app.kubernetes.io/version"}
CHART_NODE_SELECTOR = {"kubernetes.io/os": "linux"}
FOLDING = []


def load(path):
    objs = {}
    for doc in yaml.safe_load_all(open(path)):
        if not doc:
            continue
        meta = doc.get("metadata", {})
        key = (doc.get("apiVersion"), doc.get("kind"), meta.get("namespace", ""), meta.get("name"))
        if key in objs:
            sys.exit(f"{path}: {key} twice")
        objs[key] = doc
    return objs


def strip_chart_additions(obj):
    labels = obj.get("metadata", {}).get("labels", {})
    for k in HELM_LABELS:
        labels.pop(k, None)
    if labels.get("app.kubernetes.io/managed-by") == "Helm":
        labels.pop("app.kubernetes.io/managed-by")
    if obj.get("kind") == "CronJob":
        pod = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        if pod.get("nodeSelector") == CHART_NODE_SELECTOR:
            pod.pop("nodeSelector")
    return obj


def diff(a, b, path=""):
    """Yields (path, deploy value, chart value) for every leaf that differs."""
    if isinstance(a, str) and isinstance(b, str) and a != b and a.split() == b.split():
        # The same words: kustomize's YAML parser and Helm's fold a `>-` scalar with more-indented
        # lines (deploy/'s CEL expressions) differently. Not a drift; counted and reported.
        FOLDING.append(path)
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            yield from diff(a.get(k), b.get(k), f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from diff(x, y, f"{path}[{i}]")
    elif a != b:
        yield path, a, b


def main():
    kustomize, helm, what = sys.argv[1:]
    deploy = load(kustomize)
    chart = {k: strip_chart_additions(v) for k, v in load(helm).items()}
    problems = []
    for key in sorted(set(deploy) - set(chart), key=str):
        problems.append(f"only in deploy/: {'/'.join(map(str, key))}")
    for key in sorted(set(chart) - set(deploy), key=str):
        problems.append(f"only in the chart: {'/'.join(map(str, key))}")
    for key in sorted(set(deploy) & set(chart), key=str):
        for path, a, b in diff(deploy[key], chart[key]):
            problems.append(f"{'/'.join(map(str, key))} {path}: deploy/ {a!r}, chart {b!r}")
    if problems:
        print(f"drift ({what}): charts/ecr-refresh and deploy/ differ in {len(problems)} place(s):")
        for p in problems[:40]:
            print(f"  {p}")
        print("deploy/ is the source of truth and the chart reads it through files/deploy: a value")
        print("default in charts/ecr-refresh/values.yaml, or a change templates/objects.yaml makes, no")
        print("longer matches it. Fix the chart (or deploy/), then run scripts/helmtest.sh again.")
        sys.exit(1)
    folding = f" ({len(FOLDING)} folded string(s) differ in whitespace only)" if FOLDING else ""
    print(f"{what}: {len(deploy)} objects, the same in deploy/ and the chart{folding}")


main()
