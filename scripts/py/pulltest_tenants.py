# pulltest.sh, tenants: the AWS and registry sides of per-team tokens, in one process.
#
#   AWS:      scripts/py/tenant_aws.py, for ROLE_ARN... only: each role's token is
#             AWS:pw-<role name>-SECRET.
#   registry: a TLS front for a docker-registry without auth, as ECR with repository policies:
#             repository <name>/... is readable only with the password of role <name>
#             (arn:...:role/<name>), /v2/ with any of them; otherwise 401 with a Basic challenge.
#
# python3 pulltest_tenants.py AWS_PORT LISTEN_IP CERT KEY BACKEND_URL SECRET ROLE_ARN...
import base64
import http.client
import http.server
import json
import re
import ssl
import sys
import urllib.parse

from tenant_aws import TenantAws

aws_port, listen, cert, key, backend, secret = sys.argv[1:7]
roles = sys.argv[7:]
name_of = {r: r.rsplit("/", 1)[1] for r in roles}
password_of = {name: f"pw-{name}-{secret}" for name in name_of.values()}


def say(*parts):
    print(*parts, flush=True)


class Registry(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def who(self):
        """The role whose password the request carries, if any."""
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return None
        try:
            user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return None
        return next((n for n, p in password_of.items() if user == "AWS" and p == pw), None)

    def refuse(self, who):
        body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}).encode()
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="ecr-refresh-pulltest-tenants"')
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        say(f"registry: {self.command} {self.path} 401 (as {who})")

    def relay(self):
        who = self.who()
        path = urllib.parse.urlsplit(self.path).path
        m = re.match(r"^/v2/([^/]+)/", path)
        allowed = who is not None and (m is None or m.group(1) == who)
        if not allowed:
            return self.refuse(who)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "host", "connection")}
        u = urllib.parse.urlsplit(backend)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conn.request(self.command, self.path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data) if self.command != "HEAD" else r.getheader("Content-Length") or 0))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        ua = self.headers.get("User-Agent", "").split("/")[0]
        say(f"registry: {self.command} {self.path} {r.status} (as {who}, {ua})")

    do_GET = do_HEAD = relay


TenantAws(password_of.get, roles=roles, port=int(aws_port), say=say)
registry = http.server.ThreadingHTTPServer((listen, 443), Registry)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
registry.socket = ctx.wrap_socket(registry.socket, server_side=True)
say(f"ready: aws on 127.0.0.1:{aws_port}, registry on {listen}:443 for {', '.join(sorted(password_of))}")
registry.serve_forever()
