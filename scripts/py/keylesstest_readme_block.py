# keylesstest.sh: the README quick start's first fenced block that contains a word, with the substitutions made.
import re, sys
readme, word, issuer, deploy, image = sys.argv[1:]
text = open(readme).read()
section = text.split("\n## Quick start on a cluster outside AWS\n", 1)[1].split("\n## ", 1)[0]
for indent, body in re.findall(r"\n( *)```[a-z]*\n(.*?)\n\1```", section, re.S):
    if word in body:
        body = "\n".join(l[len(indent):] for l in body.splitlines())
        body = body.replace("https://oidc.example.com/my-cluster", issuer)
        body = body.replace("<path or URL of deploy/>", deploy)
        body = body.replace("123456789012.dkr.ecr.eu-west-1.amazonaws.com/my-repo:tag", image)
        print(body)
        sys.exit(0)
sys.exit(f"no block in the README's quick start contains {word!r}")
