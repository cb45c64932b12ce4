#!/usr/bin/env python3
"""An STS stand-in that verifies web identity tokens as AWS does, then lets moto issue the
credentials.

moto's own AssumeRoleWithWebIdentity accepts any token, so it cannot show that a wrong one is
refused. This server checks the token first, against an IAM OIDC provider registered for
--provider-url, the way STS documents it:
  - RS256 signature, with the key named by `kid` in the JWKS that the provider URL publishes
    (<url>/.well-known/openid-configuration, then its jwks_uri, both fetched over HTTPS and
    checked against --ca-file);
  - iss equal to the provider URL;
  - aud containing the provider's client id, sts.amazonaws.com;
  - sub equal to the ServiceAccount the role trusts (--subject, or the role's trust policy
    given with --trust-policy: the file `ecr-refresh oidc publish` writes, whose Federated
    principal must name this provider and whose StringEquals conditions are enforced);
  - exp in the future and nbf not in the future.
A token that passes is forwarded unchanged to moto's STS, whose temporary credentials are
returned; with moto's IAM checks on (--setup-role turns them on), moto's ECR then accepts only
requests signed with credentials moto issued. moto then also wants every STS call signed, so
the forwarded call is signed with a key of the stand-in's own IAM user, allowed nothing but
sts:AssumeRoleWithWebIdentity. Anything else gets STS's error XML.

Runs with moto's venv (it needs `cryptography`, a moto dependency, and boto3 for --setup-role):
  sts_standin.py --bind 127.0.0.1 --port P --moto http://127.0.0.1:M \
      --provider-url https://127.46.1.1/c --subject system:serviceaccount:kube-system:ecr-refresh \
      --ca-file ca.crt --setup-role ecr-refresh
Prints "ready" on stdout once it listens; logs each decision on stderr.
"""
import argparse
import base64
import http.server
import json
import ssl
import sys
import time
import urllib.parse
import urllib.request
import uuid

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers

AUDIENCE = "sts.amazonaws.com"


class Refused(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def b64url(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def fetch_json(url, ctx):
    with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
        return json.load(r)


def verify(token, args, ctx):
    """The token's claims, or Refused saying why, as STS words it."""
    try:
        head_b64, body_b64, sig_b64 = token.split(".")
        header = json.loads(b64url(head_b64))
        claims = json.loads(b64url(body_b64))
        signature = b64url(sig_b64)
    except Exception:
        raise Refused(400, "InvalidIdentityToken", "The web identity token is not a well-formed JWT")
    # STS first finds the provider by iss; an unregistered iss has no provider.
    if claims.get("iss") != args.provider_url:
        raise Refused(400, "InvalidIdentityToken",
                      f"No OpenIDConnect provider found in your account for {claims.get('iss')}")
    if header.get("alg") != "RS256":
        raise Refused(400, "InvalidIdentityToken", f"Unsupported signing algorithm {header.get('alg')}")
    try:
        discovery = fetch_json(args.provider_url + "/.well-known/openid-configuration", ctx)
        jwks = fetch_json(discovery["jwks_uri"], ctx)
    except Exception as e:
        raise Refused(400, "InvalidIdentityToken",
                      f"Couldn't retrieve verification key from your identity provider: {e}")
    kid = header.get("kid")
    keys = [k for k in jwks.get("keys", []) if k.get("kid") == kid and k.get("kty") == "RSA"]
    if not keys:
        raise Refused(400, "InvalidIdentityToken",
                      f"Couldn't retrieve verification key from your identity provider: no key with kid {kid} in {discovery['jwks_uri']}")
    k = keys[0]
    public = RSAPublicNumbers(int.from_bytes(b64url(k["e"]), "big"),
                              int.from_bytes(b64url(k["n"]), "big")).public_key()
    try:
        public.verify(signature, f"{head_b64}.{body_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise Refused(400, "InvalidIdentityToken", "Couldn't verify the token's signature")
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if AUDIENCE not in auds:
        raise Refused(400, "InvalidIdentityToken", "Incorrect token audience")
    now = time.time()
    if not isinstance(claims.get("exp"), (int, float)) or claims["exp"] <= now:
        raise Refused(400, "ExpiredTokenException", "Token expired")
    if isinstance(claims.get("nbf"), (int, float)) and claims["nbf"] > now:
        raise Refused(400, "InvalidIdentityToken", "Token is not valid yet (nbf)")
    # The role's trust policy: StringEquals on <provider>:sub (and :aud, with --trust-policy).
    conditions = args.conditions or {"sub": args.subject}
    for claim, want in conditions.items():
        got = claims.get(claim)
        if want != got and not (isinstance(got, list) and want in got):
            raise Refused(403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")
    return claims


def trust_conditions(path, provider_url):
    """The claims a trust policy (as `oidc publish` writes it) requires, by claim name; exits
    if it does not trust this provider for AssumeRoleWithWebIdentity."""
    provider = provider_url[len("https://"):]
    for st in json.load(open(path))["Statement"]:
        if st.get("Effect") != "Allow" or st.get("Action") != "sts:AssumeRoleWithWebIdentity":
            continue
        federated = st.get("Principal", {}).get("Federated", "")
        if federated != f"arn:aws:iam::123456789012:oidc-provider/{provider}":
            sys.exit(f"sts_standin: {path} trusts {federated!r}, not the provider {provider}")
        eq = st.get("Condition", {}).get("StringEquals", {})
        want = {k[len(provider) + 1:]: v for k, v in eq.items() if k.startswith(provider + ":")}
        if "sub" not in want or want.get("aud") != AUDIENCE:
            sys.exit(f"sts_standin: {path} must require {provider}:sub and {provider}:aud = {AUDIENCE}")
        return want
    sys.exit(f"sts_standin: {path} has no Allow of sts:AssumeRoleWithWebIdentity")


def error_xml(code, message):
    kind = "Sender"
    return (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>{kind}</Type>'
            f"<Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>").encode()


def setup_role(args):
    """The role moto issues credentials for, allowed ECR reads, and the stand-in's own key;
    then moto's IAM checks on. Returns that key."""
    import boto3
    iam = boto3.client("iam", endpoint_url=args.moto, region_name="us-east-1",
                       aws_access_key_id="setup", aws_secret_access_key="setup")
    provider = args.provider_url[len("https://"):]
    trust = json.load(open(args.trust_policy)) if args.trust_policy else {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
        "Principal": {"Federated": f"arn:aws:iam::123456789012:oidc-provider/{provider}"},
        "Condition": {"StringEquals": {f"{provider}:sub": args.subject, f"{provider}:aud": AUDIENCE}}}]}
    iam.create_role(RoleName=args.setup_role, AssumeRolePolicyDocument=json.dumps(trust))
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken", "ecr:BatchGetImage",
                                      "ecr:GetDownloadUrlForLayer"], "Resource": "*"}]}
    iam.put_role_policy(RoleName=args.setup_role, PolicyName="ecr-read-only",
                        PolicyDocument=json.dumps(policy))
    iam.create_user(UserName="sts-standin")
    iam.put_user_policy(UserName="sts-standin", PolicyName="exchange", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="sts-standin")["AccessKey"]
    req = urllib.request.Request(args.moto + "/moto-api/reset-auth", data=b"0",
                                 headers={"Content-Type": "text/plain"}, method="POST")
    urllib.request.urlopen(req, timeout=5).read()
    return key["AccessKeyId"], key["SecretAccessKey"]


def signed_headers(url, body, key):
    """SigV4 headers for POSTing `body` to moto's STS with `key`."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    req = AWSRequest(method="POST", url=url, data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(*key), "sts", "us-east-1").add_auth(req)
    return dict(req.headers.items())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--moto", required=True)
    p.add_argument("--provider-url", required=True)
    p.add_argument("--subject")
    p.add_argument("--trust-policy")
    p.add_argument("--ca-file", required=True)
    p.add_argument("--setup-role")
    args = p.parse_args()
    if bool(args.subject) == bool(args.trust_policy):
        p.error("give one of --subject and --trust-policy")
    args.conditions = trust_conditions(args.trust_policy, args.provider_url) if args.trust_policy else None
    ctx = ssl.create_default_context(cafile=args.ca_file)
    key = setup_role(args) if args.setup_role else None

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            form = urllib.parse.parse_qs(body.decode())
            action = (form.get("Action") or [""])[0]
            try:
                if action != "AssumeRoleWithWebIdentity":
                    raise Refused(400, "InvalidAction", f"this stand-in serves AssumeRoleWithWebIdentity only, not {action!r}")
                claims = verify((form.get("WebIdentityToken") or [""])[0], args, ctx)
            except Refused as r:
                sys.stderr.write(f"sts_standin: refused: {r.code}: {r.message}\n")
                return self.answer(r.status, error_xml(r.code, r.message))
            sys.stderr.write(f"sts_standin: accepted token of {claims['sub']}\n")
            url = args.moto + "/"
            headers = {"Content-Type": self.headers.get("Content-Type", "application/x-www-form-urlencoded")}
            if key:
                headers = signed_headers(url, body, key)
            req = urllib.request.Request(url, data=body, method="POST", headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return self.answer(r.status, r.read())
            except urllib.error.HTTPError as e:
                return self.answer(e.code, e.read())

        def answer(self, status, payload):
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, fmt, *a):
            pass

    server = http.server.ThreadingHTTPServer((args.bind, args.port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
