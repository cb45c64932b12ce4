#!/usr/bin/env python3
"""Due-only passes of `ecr-refresh sync`, run by scripts/bench.sh after bench.py (or alone with
BENCH_ONLY_DUE=1). Uses bench.py's client, server-side request counts and rotating ECR stand-in.

  quiet      N namespaces (10,000 by default), every Secret current: one pass with nothing due.
             Requests per namespace, writes, ECR calls, wall time, peak RSS.
  hour       side by side on 1,000 namespaces, 60 passes each: what main did on every pass
             (rewrite everything: --refresh-all) against the due-only default.
  day        a simulated day with tokens that last 60 s instead of 12 h (1/720 of real time:
             --refresh-before 45s is 9h of 12h, a day is 120 s), 100 namespaces per schedule,
             four side by side: passes back to back, every 0.42 s (5 min of a real day) and
             every 5 s (hourly) with the default 9h window, and every 5 min with a 6h window.
             Writes per namespace of each token (at most 2), and per token lifetime.

Writes the section between the markers in BENCHMARKS.md (appended if they are missing).
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

BEGIN, END = "<!-- due-only:begin -->", "<!-- due-only:end -->"


def env_for(args, ecr):
    env = dict(os.environ)
    env.update(
        KUBECONFIG=args.kubeconfig, AWS_ENDPOINT_URL=ecr.url, AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
    )
    for k in ("AWS_PROFILE", "ECR_REFRESH_CONCURRENCY", "ECR_REFRESH_REFRESH_BEFORE"):
        env.pop(k, None)
    return env


def one_pass(args, ecr, prefix, extra=(), timed=None):
    """Runs one sync over <prefix>*; returns (report, wall seconds, peak RSS MB)."""
    cmd = [args.binary, "sync", "-n", prefix + "*", "-o", "json", "--timeout", "10m", *extra]
    if timed:
        cmd = ["/usr/bin/time", "-v", "-o", timed, *cmd]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, env=env_for(args, ecr))
    wall = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.decode()[-2000:]}")
    rss = None
    if timed:
        rss = int(bench.parse_time_v(timed).get("Maximum resident set size (kbytes)", "0")) / 1024
    return json.loads(r.stdout), wall, rss


def requests(api, fn):
    """Runs fn(); returns its result and the tool's requests by 'VERB resource', counted by the server."""
    before, _, _ = bench.scrape(api)
    out = fn()
    after, _, _ = bench.scrape(api)
    by = {}
    for (verb, res, _code), v in bench.diff(after, before).items():
        if bench.counted(res) and verb != "WATCH" and (verb, res) not in bench.BACKGROUND:
            by[f"{verb} {res}"] = by.get(f"{verb} {res}", 0) + int(v)
    return out, by


def writes(by):
    return sum(v for k, v in by.items() if k.split()[0] in ("APPLY", "PATCH", "CREATE", "POST", "PUT", "UPDATE", "DELETE"))


def summary(report):
    s = report["summary"]
    return {k: s.get(k, 0) for k in ("created", "updated", "unchanged", "failed")}


def quiet(args, api, n):
    prefix = f"due-{n}-"
    log(f"quiet: creating {n} namespaces")
    bench.create_compare_namespaces(api, prefix, n, args.workers)
    ecr = bench.RotatingEcr()
    one_pass(args, ecr, prefix)  # writes everything
    calls = ecr.calls
    bench.wait_idle(args.idle_wait)
    (report, wall, rss), by = requests(api, lambda: one_pass(args, ecr, prefix, timed=os.path.join(args.out_dir, "quiet.time")))
    total = sum(by.values())
    return {
        "n": n, "namespaces_in_cluster": bench.count_namespaces(api), "requests": total, "by": by,
        "per_ns": total / n, "writes": writes(by), "ecr_calls": ecr.calls - calls,
        "wall": wall, "rss_mb": rss, "summary": summary(report),
    }


def hour(args, api, n, passes):
    rows = []
    for label, extra in (("rewrite everything (main's pass, --refresh-all)", ["--refresh-all"]),
                         ("due-only (default)", [])):
        prefix = f"hour-{'all' if extra else 'due'}-{n}-"
        log(f"hour: {label}: {n} namespaces, {passes} passes")
        bench.create_compare_namespaces(api, prefix, n, args.workers)
        ecr = bench.RotatingEcr()
        one_pass(args, ecr, prefix)  # the first pass writes everything in both
        calls = ecr.calls
        bench.wait_idle(args.idle_wait)
        t0 = time.monotonic()
        walls, rss = [], 0.0
        def run_all():
            nonlocal rss
            for i in range(passes):
                _, wall, r = one_pass(args, ecr, prefix, extra, timed=os.path.join(args.out_dir, "hour.time"))
                walls.append(wall)
                rss = max(rss, r)
        _, by = requests(api, run_all)
        rows.append({
            "label": label, "n": n, "passes": passes, "requests": sum(by.values()), "writes": writes(by),
            "by": by, "ecr_calls": ecr.calls - calls, "wall_total": time.monotonic() - t0,
            "wall_median": sorted(walls)[len(walls) // 2], "rss_mb": rss,
        })
    return rows


def day(args, api, n, lifetime, day_seconds):
    refresh = lifetime * 3 // 4
    five_min, hourly = 5 * 60 / 720, 3600 / 720
    # (label, seconds between passes, --refresh-before): the default 9h-of-12h window on three
    # schedules, and a 6h window (the widest that writes each namespace at most twice per 12 h).
    schedules = [("back to back", 0.0, refresh), ("every 0.42 s (5 min)", five_min, refresh),
                 ("every 5 s (hourly)", hourly, refresh), ("every 0.42 s (5 min)", five_min, lifetime // 2)]
    results = [None] * len(schedules)

    def run(i, label, every, window):
        prefix = f"day-{i}-{n}-"
        ecr = bench.RotatingEcr(lifetime=lifetime)
        t0 = time.monotonic()
        passes, written = 0, 0
        while time.monotonic() - t0 < day_seconds:
            start = time.monotonic()
            report, _, _ = one_pass(args, ecr, prefix, ["--refresh-before", f"{window}s"])
            s = summary(report)
            written += s["created"] + s["updated"]
            passes += 1
            time.sleep(max(0.0, every - (time.monotonic() - start)))
        elapsed = time.monotonic() - t0
        results[i] = {
            "schedule": label, "window": window, "n": n, "passes": passes, "writes": written, "ecr_calls": ecr.calls,
            "elapsed": elapsed, "per_ns": written / n,
            "per_ns_per_lifetime": written / n / (elapsed / lifetime),
            "per_ns_per_token": written / n / max(ecr.calls, 1),
        }

    for i in range(len(schedules)):
        bench.create_compare_namespaces(api, f"day-{i}-{n}-", n, args.workers)
    log(f"day: {len(schedules)} schedules side by side for {day_seconds} s, tokens last {lifetime} s")
    threads = [threading.Thread(target=run, args=(i, *sched)) for i, sched in enumerate(schedules)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"lifetime": lifetime, "refresh": refresh, "day_seconds": day_seconds, "rows": results}


def log(msg):
    print(f"due: {msg}", file=sys.stderr, flush=True)


def markdown(res, command):
    q, h, d = res["quiet"], res["hour"], res["day"]
    fmt_by = lambda by: ", ".join(f"{k} {v}" for k, v in sorted(by.items())) or "none"
    out = [BEGIN, "## Due-only passes", "",
           f"Measured by `{command}` (scripts/bench/due.py) with the rotating ECR stand-in; requests are "
           "counted by the server (apiserver_request_total), writes are the requests that change an "
           "object, ECR calls are counted at the stand-in, peak RSS by `/usr/bin/time -v`.", "",
           f"### A pass with nothing due, {q['n']:,} namespaces", "",
           "| requests | per namespace | writes | ECR calls | wall | peak RSS | outcome |",
           "|---:|---:|---:|---:|---:|---:|---|",
           f"| {q['requests']} ({fmt_by(q['by'])}) | {q['per_ns']:.4f} | {q['writes']} | {q['ecr_calls']} | "
           f"{q['wall']:.2f} s | {q['rss_mb']:.1f} MB | {q['summary']['unchanged']:,} unchanged |", "",
           f"Targets: at most 0.01 requests per namespace ({'met' if q['per_ns'] <= 0.01 else 'NOT met'}), "
           f"at most 1.5 s ({'met' if q['wall'] <= 1.5 else 'NOT met'}), at most 60 MB "
           f"({'met' if q['rss_mb'] <= 60 else 'NOT met'}). The server held {q['namespaces_in_cluster']:,} "
           "namespaces at the time.", "",
           f"### An hour, side by side: {h[0]['n']:,} namespaces, {h[0]['passes']} passes each", "",
           "| mode | requests | writes | ECR calls | median pass | all passes | peak RSS |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for r in h:
        out.append(f"| {r['label']} | {r['requests']:,} | {r['writes']:,} | {r['ecr_calls']} | "
                   f"{r['wall_median']:.2f} s | {r['wall_total']:.1f} s | {r['rss_mb']:.1f} MB |")
    out += ["", "Every pass after the first. The rewrite row is what main's hourly CronJob did on each "
            "run; one hour of the new every-minute schedule is the due-only row.", "",
            f"### A simulated day: tokens last {d['lifetime']} s, {d['day_seconds']} s (24 h at 1/720)", "",
            "| schedule | `--refresh-before` | passes | writes per namespace | of each token (target ≤ 2) | per token lifetime | ECR calls |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for r in d["rows"]:
        hours = r["window"] * 12 / d["lifetime"]
        out.append(f"| {r['schedule']} | {r['window']} s ({hours:g}h of 12h) | {r['passes']} | {r['per_ns']:.2f} | "
                   f"{r['per_ns_per_token']:.2f} | {r['per_ns_per_lifetime']:.2f} | {r['ecr_calls']} |")
    out += ["", "Each token is written into each namespace once: a write is due only when the Secret is "
            "inside the window, and the pass that writes it fetches one new token for all. Per token "
            "lifetime (12 h of wall time) a namespace is written lifetime / (lifetime - window) times: 4 "
            "with the default 9h window, which keeps at least 8 h of valid token in every namespace if the "
            "CronJob stops; a 6h window writes twice per 12 h but leaves as little as 6 h. Writes do not "
            "depend on the schedule: a Secret is rewritten once per "
            "refresh cycle (lifetime minus window), however often the pass runs.", END]
    return "\n".join(out) + "\n"


def write_section(path, begin, end, section):
    """Puts `section` (which starts with `begin` and ends with `end`) into the file at `path`,
    replacing the old one, or appended."""
    text = open(path).read() if os.path.exists(path) else ""
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end) + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    open(path, "w").write(text)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--markdown", required=True)
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--idle-wait", type=float, default=20)
    p.add_argument("--quiet-n", type=int, default=10000)
    p.add_argument("--hour-n", type=int, default=1000)
    p.add_argument("--hour-passes", type=int, default=60)
    p.add_argument("--day-n", type=int, default=100)
    p.add_argument("--day-seconds", type=int, default=120)
    p.add_argument("--command", default="scripts/bench.sh")
    args = p.parse_args()
    args.kubeconfig = os.environ["ECR_REFRESH_TEST_KUBECONFIG"]
    api = bench.Api(os.environ["ECR_REFRESH_TEST_APISERVER"], os.environ["ECR_REFRESH_TEST_ADMIN_TOKEN"])
    os.makedirs(args.out_dir, exist_ok=True)
    res = {"hour": hour(args, api, args.hour_n, args.hour_passes),
           "day": day(args, api, args.day_n, 60, args.day_seconds),
           "quiet": quiet(args, api, args.quiet_n)}
    json.dump(res, open(os.path.join(args.out_dir, "due.json"), "w"), indent=1)
    section = markdown(res, args.command)
    print(section)
    write_section(args.markdown, BEGIN, END, section)
    q = res["quiet"]
    ok = q["per_ns"] <= 0.01 and q["writes"] == 0 and q["ecr_calls"] == 0 and q["summary"]["unchanged"] == q["n"]
    ok = ok and all(r["per_ns_per_token"] <= 2 for r in res["day"]["rows"])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
