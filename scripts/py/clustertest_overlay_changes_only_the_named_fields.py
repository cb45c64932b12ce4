# clustertest.sh: the test overlay's objects differ from deploy/'s only in the fields it names.
import sys, yaml
base, over, image = sys.argv[1:]
load = lambda p: {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(p)) if d}
base, over = load(base), load(over)
assert base.keys() == over.keys(), f"objects differ: {sorted(base)} vs {sorted(over)}"
for key, b in base.items():
    o = over[key]
    if key[0] == "CronJob":
        orig = b["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        pod = o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        o["spec"]["schedule"] = b["spec"]["schedule"]            # schedule: every minute
        assert pod.pop("hostNetwork") is True                    # hostNetwork
        (c,) = [c for c in pod["containers"] if c["name"] == "ecr-refresh"]
        (bc,) = [c for c in orig["containers"] if c["name"] == "ecr-refresh"]
        assert c["image"] == image, c["image"]                   # image
        c["image"] = bc["image"]
        named = {"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "AWS_ENDPOINT_URL", "AWS_REGION"}
        c["env"] = [e for e in c["env"] if e["name"] not in named]
        c["env"] += [e for e in bc["env"] if e["name"] == "AWS_REGION"]
        key_of = lambda e: e["name"]
        c["env"].sort(key=key_of); bc["env"] = sorted(bc["env"], key=key_of)
    if o != b:
        sys.exit(f"{key} differs from deploy/ beyond the named changes")
print("only the named changes")
