#!/usr/bin/env python3
"""Serves a directory over HTTPS, as a public issuer URL is served: GET only, JSON content type.

Stands in for the bucket or web server that holds what `ecr-refresh oidc publish` wrote. The
standard library only, so it runs with any python3.

  serve_https.py --bind 127.46.1.1 --port 443 --cert server.crt --key server.key --dir DIR --prefix /c

DIR is served under the URL path --prefix, as `public/` of `oidc publish` is uploaded to the
issuer URL https://<host><prefix>.

Prints "ready" on stdout once it listens; logs each request on stderr.
"""
import argparse
import http.server
import os
import ssl
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, default=443)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--prefix", default="")
    a = p.parse_args()
    prefix = a.prefix.rstrip("/")
    root = os.path.realpath(a.dir)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=root, **kwargs)

        def translate_path(self, path):
            if not path.startswith(prefix + "/"):
                return "/nonexistent"
            return super().translate_path(path[len(prefix):])

        # Published documents are JSON whatever their (extension-less) names.
        def guess_type(self, path):
            return "application/json"

        # No directory listings: a bucket serving only two objects shows nothing else.
        def list_directory(self, path):
            self.send_error(404)
            return None

        def log_message(self, fmt, *args):
            sys.stderr.write("serve_https: " + fmt % args + "\n")

    server = http.server.ThreadingHTTPServer((a.bind, a.port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
