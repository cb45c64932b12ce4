#!/usr/bin/env python3
"""Prints the chart's values as a Markdown table, from charts/ecr-refresh/values.yaml.

    helm-values-table.py VALUES.yaml

A key is documented by the `# -- ` comment block right above it (continued by `# ` lines); its
default is the value in the file, as JSON. A key with such a comment is one row (its children
are part of its default); a mapping without one is described through its children. A value
without any description fails, so every value is in the README's table.
"""
import json
import re
import sys

import yaml


def descriptions(path):
    """{dotted key: description} from `# --` comment blocks, by indentation."""
    out, stack, pending = {}, [], None
    for line in open(path):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped.startswith("# -- "):
            pending = stripped[5:]
            continue
        if stripped.startswith("# ") and pending is not None:
            pending += " " + stripped[2:]
            continue
        m = re.match(r"^(\s*)([A-Za-z0-9_./-]+):", line)
        if not m or stripped.startswith("-"):
            pending = None if not stripped else pending
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
        if pending is not None:
            out[".".join(k for _, k in stack)] = pending
        pending = None
    return out


def rows(values, desc, prefix=""):
    for key, value in values.items():
        path = f"{prefix}{key}"
        if path in desc:
            yield path, value, desc[path]
        elif isinstance(value, dict) and value:
            yield from rows(value, desc, path + ".")
        else:
            sys.exit(f"{sys.argv[1]}: `{path}` has no `# -- ` description above it")


def main():
    path = sys.argv[1]
    desc = descriptions(path)
    values = yaml.safe_load(open(path))
    print("| Value | Default | Description |")
    print("|---|---|---|")
    for key, value, text in rows(values, desc):
        default = json.dumps(value) if not isinstance(value, str) else json.dumps(value)
        print(f"| `{key}` | `{default}` | {text.replace('|', '&#124;')} |")


main()
