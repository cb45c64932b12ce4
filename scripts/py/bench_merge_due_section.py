# bench.sh: puts a section (argv 2) into the benchmark report (argv 1), replacing the old one. The
# section is the one between the markers named by argv 3: due-only (the default) or tenants.
import sys
out, due = sys.argv[1], open(sys.argv[2]).read()
name = sys.argv[3] if len(sys.argv) > 3 else "due-only"
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
section = due[due.index(begin):due.index(end) + len(end)] + "\n"
text = open(out).read()
if begin in text and end in text:
    text = text[:text.index(begin)] + section + text[text.index(end) + len(end) + 1:]
else:
    text = text.rstrip("\n") + "\n\n" + section
open(out, "w").write(text)
