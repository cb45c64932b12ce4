# check-packaging.sh: sets the one images: entry of a copy of deploy/kustomization.yaml to another image.
import sys, yaml
k = yaml.safe_load(open(sys.argv[1]))
images = k.get("images") or []
if len(images) != 1:
    sys.exit(f"expected one images: entry, found {len(images)}")
images[0]["newName"] = "registry.example.test/team/ecr-refresh"
images[0]["newTag"] = "9.9.9"
yaml.safe_dump(k, open(sys.argv[1], "w"))
