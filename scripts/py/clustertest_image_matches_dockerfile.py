# clustertest.sh: the OCI layout (argv 2), read back, is the Dockerfile's final stage with the static binary, and runs as deploy/cronjob.yaml's runAsUser.
import hashlib, json, re, sys, tarfile
dockerfile, layout, binary, base, base_config, cronjob = sys.argv[1:]
fail = []
# The final stage: the lines after the last FROM, continuations joined, comments dropped.
text = re.sub(r"\\\n", " ", open(dockerfile).read())
lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
froms = [i for i, l in enumerate(lines) if l.upper().startswith("FROM ")]
stage = lines[froms[-1]:]
if stage[0].split()[1] != base:
    fail.append(f"the final stage is FROM {stage[0].split()[1]}; scripts/clustertest.sh only knows what {base} holds")
want = json.loads(base_config)
copies = {}
for l in stage[1:]:
    op, _, rest = l.partition(" ")
    op = op.upper()
    if op == "COPY":
        args = rest.split()
        flags = [a for a in args if a.startswith("--")]
        src, dest = [a for a in args if not a.startswith("--")]
        if flags != ["--from=build"] or src != "/ecr-refresh":
            fail.append(f"COPY {rest}: the image is assembled from the static binary alone")
        copies[dest.lstrip("/")] = src
    elif op == "USER":
        want["User"] = rest
    elif op in ("ENTRYPOINT", "CMD"):
        want[op.capitalize() if op == "CMD" else "Entrypoint"] = json.loads(rest)
    else:
        fail.append(f"{op} in the final stage is not reproduced by scripts/clustertest.sh")
index = json.load(open(f"{layout}/index.json"))
blob = lambda d: open(f"{layout}/blobs/" + d["digest"].replace(":", "/"), "rb")
manifest = json.load(blob(index["manifests"][0]))
config = json.load(blob(manifest["config"]))["config"]
for key in sorted(set(want) | set(config)):
    if want.get(key) != config.get(key):
        fail.append(f"image config {key}: {config.get(key)!r}, the Dockerfile says {want.get(key)!r}")
layers = manifest["layers"]
if len(layers) != 1:
    fail.append(f"{len(layers)} layers")
members = {m.name.lstrip("./"): m for m in tarfile.open(fileobj=blob(layers[0]), mode="r:gz")}
files = {n: m for n, m in members.items() if not m.isdir()}
expected = {"etc/ssl/certs/ca-certificates.crt", "etc/passwd", "etc/group"} | set(copies)
if set(files) != expected:
    fail.append(f"image files {sorted(files)}, expected {sorted(expected)}")
tar = tarfile.open(fileobj=blob(layers[0]), mode="r:gz")
for dest in copies:
    m = files.get(dest)
    if m is None:
        continue
    got = hashlib.sha256(tar.extractfile(tar.getmember("./" + dest)).read()).hexdigest()
    if got != hashlib.sha256(open(binary, "rb").read()).hexdigest():
        fail.append(f"/{dest} is not the static binary")
    if m.mode & 0o777 != 0o755 or (m.uid, m.gid) != (0, 0):
        fail.append(f"/{dest}: mode {oct(m.mode)} owner {m.uid}:{m.gid}, COPY gives 0755 root")
uid, _, gid = config.get("User", "").partition(":")
if not uid.isdigit() or int(uid) == 0:
    fail.append(f"the image runs as {config.get('User')!r}: it must be a numeric non-root user (runAsNonRoot)")
passwd = tar.extractfile(tar.getmember("./etc/passwd")).read().decode()
if uid.isdigit() and not any(l.split(":")[2] == uid for l in passwd.splitlines()):
    fail.append(f"uid {uid} is not in the image's /etc/passwd")
run_as = re.search(r"runAsUser: (\d+)", open(cronjob).read())
if not run_as or run_as.group(1) != uid:
    fail.append(f"deploy/cronjob.yaml runAsUser {run_as and run_as.group(1)} differs from the image's user {uid}")
if b"BEGIN CERTIFICATE" not in tar.extractfile(tar.getmember("./etc/ssl/certs/ca-certificates.crt")).read():
    fail.append("the CA bundle holds no certificate")
print("\n".join(fail) or "image matches the Dockerfile's final stage")
sys.exit(1 if fail else 0)
