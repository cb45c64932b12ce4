# STS and ECR for tenants, on one port (imported by scripts/py/pulltest_tenants.py and
# scripts/bench/tenants.py): STS AssumeRole hands each call new credentials of that role; ECR
# GetAuthorizationToken, signed with credentials STS handed out, answers
# AWS:<password_of(role name)> for that role's account (unknown credentials are refused).
import base64
import http.server
import json
import re
import threading
import time
import urllib.parse


class TenantAws:
    def __init__(self, password_of, roles=None, port=0, say=lambda *a: None, base=None):
        """password_of(role name) -> the ECR password for it; roles: the ARNs STS assumes (None:
        any); say: where each call is told; base: the ARN whose token credentials STS did not
        hand out get (None: they are refused)."""
        outer = self
        self.lock = threading.Lock()
        self.sts_calls = 0
        self.ecr_calls = 0
        self.keys = {}  # access key id -> role ARN

        class Handler(http.server.BaseHTTPRequestHandler):
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
                    return self.ecr()
                form = dict(urllib.parse.parse_qsl(body))
                arn = form.get("RoleArn", "")
                if form.get("Action") != "AssumeRole" or not arn or (roles is not None and arn not in roles):
                    say(f"sts: refused {form.get('Action')} {arn}")
                    return self.answer(403, "text/xml", "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
                                       f"<Message>not authorized to assume {arn}</Message></Error></ErrorResponse>")
                with outer.lock:
                    outer.sts_calls += 1
                    key = f"ASIA{len(outer.keys) + 1:016d}"
                    outer.keys[key] = arn
                say(f"sts: AssumeRole {arn}")
                expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
                self.answer(200, "text/xml", (
                    '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>'
                    f"<Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>s-{key}</SecretAccessKey>"
                    f"<SessionToken>t-{key}</SessionToken><Expiration>{expires}</Expiration></Credentials>"
                    "<AssumedRoleUser><AssumedRoleId>AROAEXAMPLE:ecr-refresh</AssumedRoleId>"
                    f"<Arn>{arn}</Arn></AssumedRoleUser></AssumeRoleResult></AssumeRoleResponse>"))

            def ecr(self):
                m = re.search(r"Credential=([^/]+)/[^/]+/([^/]+)/", self.headers.get("Authorization", ""))
                with outer.lock:
                    arn = outer.keys.get(m.group(1), base) if m else None
                    outer.ecr_calls += arn is not None
                if arn is None:
                    say("ecr: refused unknown credentials")
                    return self.answer(400, "application/x-amz-json-1.1", json.dumps({
                        "__type": "UnrecognizedClientException",
                        "message": "The security token included in the request is invalid."}))
                region, name, account = m.group(2), arn.rsplit("/", 1)[1], arn.split(":")[4]
                token = base64.b64encode(f"AWS:{password_of(name)}".encode()).decode()
                say(f"ecr: token for role {name} in {region}")
                self.answer(200, "application/x-amz-json-1.1", json.dumps({"authorizationData": [{
                    "authorizationToken": token, "expiresAt": int(time.time()) + 12 * 3600,
                    "proxyEndpoint": f"https://{account}.dkr.ecr.{region}.amazonaws.com"}]}))

        class Server(http.server.ThreadingHTTPServer):
            # socketserver's default backlog is 5: ten tenants' calls at once would overflow it,
            # and each dropped SYN costs the client a second.
            request_queue_size = 128

        self.server = Server(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
