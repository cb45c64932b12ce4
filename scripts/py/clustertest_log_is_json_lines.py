# clustertest.sh, keylesstest.sh: a pod log is JSON lines ending with the report, whose exit_code is argv 2 ("nonzero": any failure).
import json, sys
path, want = sys.argv[1:]
lines = open(path).read().splitlines()
assert lines, "empty log"
docs = []
for n, line in enumerate(lines, 1):
    try:
        d = json.loads(line)
    except ValueError as e:
        sys.exit(f"line {n} is not JSON ({e}): {line[:200]}")
    assert isinstance(d, dict), f"line {n} is not an object"
    docs.append(d)
reports = [d for d in docs if d.get("type") == "report"]
assert len(reports) == 1, f"{len(reports)} report lines"
# The report ends the log. It is the only stdout line and every other line is a stderr log
# event; the runtime reads the two through separate pipes and does not keep their order, so an
# event written just before the report (the fatal error, the SIGTERM warning) may land after it.
# Nothing may be logged after the report: no event is later than the run's end, its first
# event plus duration_seconds (the clock starts before the first event; 0.5 s slack).
from datetime import datetime
at = next(i for i, d in enumerate(docs) if d.get("type") == "report")
r = docs[at]
events = [d for d in docs if d is not r]
for d in events:
    assert "level" in d and "timestamp" in d, f"neither the report nor a log event: {json.dumps(d)[:200]}"
ts = lambda d: datetime.fromisoformat(d["timestamp"].replace("Z", "+00:00")).timestamp()
if events:
    end = ts(events[0]) + r["duration_seconds"] + 0.5
    for d in docs[at + 1:]:
        assert ts(d) <= end, f"logged after the report (run ended by {end:.3f}): {json.dumps(d)[:200]}"
for f in ("schema_version", "command", "summary", "namespaces", "registries", "token_expires_at", "error", "exit_code", "api_requests", "duration_seconds"):
    assert f in r, f"report lacks {f}"
code = r["exit_code"]
assert (code != 0) if want == "nonzero" else code == int(want), f"exit_code {code}, expected {want}"
print(f"{len(lines)} lines, all JSON objects; report: exit_code {code}, summary {json.dumps(r['summary'])}")
