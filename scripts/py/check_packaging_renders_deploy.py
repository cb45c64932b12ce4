# check-packaging.sh: deploy/ rendered as it is holds exactly its files' objects; rendered with another image, the CronJob runs that image.
import sys, yaml
root, as_is, image = sys.argv[1:]
def load(path):
    return [d for d in yaml.safe_load_all(open(path)) if d]
def key(d):
    return (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])
def image_of(docs):
    cj = [d for d in docs if d["kind"] == "CronJob"]
    return [c["image"] for c in cj[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]]
source = load(f"{root}/rbac.yaml") + load(f"{root}/admission-policy.yaml") + load(f"{root}/cronjob.yaml")
rendered = load(as_is)
if sorted(map(key, rendered)) != sorted(map(key, source)):
    sys.exit(f"renders {sorted(map(key, rendered))}, expected {sorted(map(key, source))}")
by_key = {key(d): d for d in rendered}
for d in source:
    if by_key[key(d)] != d:
        sys.exit(f"{key(d)} differs from the file it comes from; keep images: newTag equal to the tag in cronjob.yaml")
got = image_of(load(image))
if got != ["registry.example.test/team/ecr-refresh:9.9.9"]:
    sys.exit(f"images: did not set the CronJob's image: {got}")
