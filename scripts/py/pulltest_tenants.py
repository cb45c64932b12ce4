# pulltest.sh, tenants: the AWS and registry sides of per-team tokens, in one process.
#
#   AWS:      STS AssumeRole hands each role credentials of its own; ECR GetAuthorizationToken,
#             signed with them, answers AWS:<that role's password> (anything else is refused).
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
import threading
import time
import urllib.parse

aws_port, listen, cert, key, backend, secret = sys.argv[1:7]
roles = sys.argv[7:]
name_of = {r: r.rsplit("/", 1)[1] for r in roles}
password_of = {name: f"pw-{name}-{secret}" for name in name_of.values()}
keys = {}  # access key id -> role name
lock = threading.Lock()


def say(*parts):
    print(*parts, flush=True)


class Aws(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def answer(self, status, ctype, body):
        body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        if self.headers.get("X-Amz-Target", "").endswith(".GetAuthorizationToken"):
            m = re.search(r"Credential=([^/]+)/[^/]+/([^/]+)/", self.headers.get("Authorization", ""))
            with lock:
                role = keys.get(m.group(1)) if m else None
            if role is None:
                say("ecr: refused unknown credentials")
                return self.answer(400, "application/x-amz-json-1.1", json.dumps({
                    "__type": "UnrecognizedClientException",
                    "message": "The security token included in the request is invalid."}))
            region = m.group(2)
            account = next(r.split(":")[4] for r, n in name_of.items() if n == role)
            token = base64.b64encode(f"AWS:{password_of[role]}".encode()).decode()
            say(f"ecr: token for role {role} in {region}")
            return self.answer(200, "application/x-amz-json-1.1", json.dumps({"authorizationData": [{
                "authorizationToken": token, "expiresAt": int(time.time()) + 12 * 3600,
                "proxyEndpoint": f"https://{account}.dkr.ecr.{region}.amazonaws.com"}]}))
        form = dict(urllib.parse.parse_qsl(body))
        arn = form.get("RoleArn", "")
        if form.get("Action") != "AssumeRole" or arn not in name_of:
            say(f"sts: refused {form.get('Action')} {arn}")
            return self.answer(403, "text/xml", "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
                               f"<Message>not authorized to assume {arn}</Message></Error></ErrorResponse>")
        with lock:
            key = f"ASIA{len(keys) + 1:016d}"
            keys[key] = name_of[arn]
        say(f"sts: AssumeRole {arn}")
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        self.answer(200, "text/xml", (
            '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>'
            f"<Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>s-{key}</SecretAccessKey>"
            f"<SessionToken>t-{key}</SessionToken><Expiration>{expires}</Expiration></Credentials>"
            "<AssumedRoleUser><AssumedRoleId>AROAEXAMPLE:ecr-refresh</AssumedRoleId>"
            f"<Arn>{arn}</Arn></AssumedRoleUser></AssumeRoleResult></AssumeRoleResponse>"))


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


aws = http.server.ThreadingHTTPServer(("127.0.0.1", int(aws_port)), Aws)
threading.Thread(target=aws.serve_forever, daemon=True).start()
registry = http.server.ThreadingHTTPServer((listen, 443), Registry)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
registry.socket = ctx.wrap_socket(registry.socket, server_side=True)
say(f"ready: aws on 127.0.0.1:{aws_port}, registry on {listen}:443 for {', '.join(sorted(password_of))}")
registry.serve_forever()
