# keylesstest.sh: the README's kustomization, with the test image and clustertest's loopback patch.
import sys, yaml
src, dst, image, sts = sys.argv[1:]
k = yaml.safe_load(open(src))
doc = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
doc.update(k)
name, tag = image.rsplit(":", 1)
doc["images"] = [{"name": "ghcr.io/ecr-refresh/ecr-refresh", "newName": name, "newTag": tag}]
doc["patches"] = doc.get("patches", []) + [{"path": "loopback.yaml"}]
yaml.safe_dump(doc, open(dst, "w"), sort_keys=False)
