# bench.sh: puts the due-only section (argv 2) into the benchmark report (argv 1), replacing the old one.
import sys
out, due = sys.argv[1], open(sys.argv[2]).read()
begin, end = "<!-- due-only:begin -->", "<!-- due-only:end -->"
section = due[due.index(begin):due.index(end) + len(end)] + "\n"
text = open(out).read()
if begin in text and end in text:
    text = text[:text.index(begin)] + section + text[text.index(end) + len(end) + 1:]
else:
    text = text.rstrip("\n") + "\n\n" + section
open(out, "w").write(text)
