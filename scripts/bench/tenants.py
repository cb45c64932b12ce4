#!/usr/bin/env python3
"""`sync --tenants` against one token for all, side by side in one run (scripts/bench.sh runs it
after due.py, or alone with BENCH_ONLY_TENANTS=1). Uses bench.py's client and server-side counts.

N namespaces (1,000 by default) for each mode, with a `default` ServiceAccount each:
  one token    `sync -n 'ten1-*'`: the run's own credentials, one ECR token for every namespace.
  10 tenants   `sync -n 'ten10-*' --tenants FILE`: ten rules (by the namespace's last digit, 100
               namespaces each), each its own IAM role, assumed with the run's credentials.
For each: the first pass (everything created), a pass with nothing due, and a pass with
--refresh-all (everything rewritten with new tokens: what a token rotation costs). The STS and
ECR stand-in answers like the real ones: AssumeRole hands each call new credentials, and ECR a
new ~2 KB token on every call. Requests are counted by the server (apiserver_request_total),
STS and ECR calls at the stand-in.

Writes the section between the markers in BENCHMARKS.md (appended if they are missing).
"""

import argparse
import json
import os
import secrets
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "py")]
import bench  # noqa: E402
import due  # noqa: E402
from tenant_aws import TenantAws  # noqa: E402

BEGIN, END = "<!-- tenants:begin -->", "<!-- tenants:end -->"
TENANTS = 10


def rotating_aws():
    """STS and ECR as the real ones answer: new credentials on every AssumeRole, and a new
    ~2 KB token (real passwords are that long) on every GetAuthorizationToken, also for the
    run's own key (the one-token mode)."""
    return TenantAws(lambda _role: secrets.token_urlsafe(1500),
                     base="arn:aws:iam::123456789012:user/ecr-refresh")


def tenants_file(path, prefix):
    rules = []
    for k in range(TENANTS):
        account = f"{k + 1:012d}"
        rules.append(f"  - name: team-{k}\n    namespaces: [\"{prefix}*{k}\"]\n"
                     f"    roleArn: arn:aws:iam::{account}:role/ecr-pull-team-{k}\n")
    with open(path, "w") as f:
        f.write("tenants:\n" + "".join(rules))


def log(msg):
    print(f"tenants: {msg}", file=sys.stderr, flush=True)


def passes(args, api, label, prefix, extra):
    aws = rotating_aws()
    rows = []
    for name, more, expect in (("first pass", [], "created"), ("nothing due", [], "unchanged"),
                               ("--refresh-all", ["--refresh-all"], "updated")):
        bench.wait_idle(args.idle_wait)
        sts, ecr = aws.sts_calls, aws.ecr_calls
        (report, wall, rss), by = due.requests(
            api, lambda: due.one_pass(args, aws, prefix, [*extra, *more], timed=os.path.join(args.out_dir, "tenants.time")))
        got = report["summary"].get(expect, 0)
        if got != args.n or report["summary"].get("failed", 0):
            raise RuntimeError(f"{label} {name}: expected {args.n} {expect}, got {report['summary']}")
        total = sum(by.values())
        rows.append({"mode": label, "pass": name, "requests": total, "per_ns": total / args.n,
                     "writes": due.writes(by), "by": by, "sts_calls": aws.sts_calls - sts,
                     "ecr_calls": aws.ecr_calls - ecr, "wall": wall, "rss_mb": rss})
        log(f"{label} {name}: {total} requests, {wall:.2f} s, STS {rows[-1]['sts_calls']}, ECR {rows[-1]['ecr_calls']}")
    aws.server.shutdown()
    return rows


def markdown(rows, n, command):
    out = [BEGIN, "## Tenants: a token per team against one for all", "",
           f"Measured by `{command}` (scripts/bench/tenants.py), both modes in the same run on the same "
           f"servers: {n:,} namespaces each, the tenant mode with {TENANTS} rules of {n // TENANTS} namespaces, "
           "each its own IAM role. The STS and ECR stand-in hands out new credentials on every AssumeRole "
           "and a new token on every GetAuthorizationToken, as the real services do. Requests are counted "
           "by the server, STS and ECR calls at the stand-in, peak RSS by `/usr/bin/time -v`.", "",
           "| mode | pass | requests | per namespace | writes | STS calls | ECR calls | wall | peak RSS |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['mode']} | {r['pass']} | {r['requests']:,} | {r['per_ns']:.3f} | {r['writes']:,} | "
                   f"{r['sts_calls']} | {r['ecr_calls']} | {r['wall']:.2f} s | {r['rss_mb']:.1f} MB |")
    one = {r["pass"]: r for r in rows if r["mode"] == "one token"}
    ten = {r["pass"]: r for r in rows if r["mode"] != "one token"}
    ratio = lambda p: ten[p]["wall"] / one[p]["wall"] if one[p]["wall"] else 0
    out += ["", f"Tenants cost no extra request to the cluster: the same lists, and one write per due "
            f"namespace. What they add is on the AWS side, once per role and only for roles with something "
            f"due: {ten['first pass']['sts_calls']} AssumeRole and {ten['first pass']['ecr_calls']} "
            f"GetAuthorizationToken calls for a full pass, none for a quiet one. Wall time against one "
            f"token: {ratio('first pass'):.2f}x on the first pass, {ratio('nothing due'):.2f}x with "
            f"nothing due, {ratio('--refresh-all'):.2f}x for a rotation. With nothing due the "
            "difference is the namespace list: with --tenants it is read before our Secrets (each "
            "is judged against its namespace's tenant), without them beside.", END]
    return "\n".join(out) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--markdown", required=True)
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--idle-wait", type=float, default=20)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--command", default="scripts/bench.sh")
    args = p.parse_args()
    if args.n % TENANTS:
        sys.exit(f"--n must be a multiple of {TENANTS}")
    args.kubeconfig = os.environ["ECR_REFRESH_TEST_KUBECONFIG"]
    api = bench.Api(os.environ["ECR_REFRESH_TEST_APISERVER"], os.environ["ECR_REFRESH_TEST_ADMIN_TOKEN"])
    os.makedirs(args.out_dir, exist_ok=True)
    stamp = f"{int(time.time()) % 100000}"
    file = os.path.join(tempfile.mkdtemp(), "tenants.yaml")
    tenants_file(file, f"ten10-{stamp}-")
    # Both sets first: each mode's passes then list the same cluster (pages of 500 namespaces).
    for prefix in (f"ten1-{stamp}-", f"ten10-{stamp}-"):
        log(f"creating {args.n} namespaces {prefix}*")
        bench.create_compare_namespaces(api, prefix, args.n, args.workers)
    # Each mode its own Secret name: the list of our Secrets then holds the same 1,000 in both.
    rows = passes(args, api, "one token", f"ten1-{stamp}-", ["--secret-name", "bench-one"])
    rows += passes(args, api, f"{TENANTS} tenants", f"ten10-{stamp}-",
                   ["--secret-name", "bench-ten", "--tenants", file])
    json.dump(rows, open(os.path.join(args.out_dir, "tenants.json"), "w"), indent=1)
    section = markdown(rows, args.n, args.command)
    print(section)
    due.write_section(args.markdown, BEGIN, END, section)
    quiet = [r for r in rows if r["pass"] == "nothing due"]
    ok = all(r["writes"] == 0 and r["sts_calls"] == 0 and r["ecr_calls"] == 0 for r in quiet)
    full = [r for r in rows if r["mode"] != "one token" and r["pass"] != "nothing due"]
    ok = ok and all(r["sts_calls"] == TENANTS and r["ecr_calls"] == TENANTS for r in full)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
