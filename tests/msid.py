#!/usr/bin/python3
"""A local stand-in for Azure's three managed-identity endpoints.

Plain HTTP on 127.0.0.1 (as the real ones are plain HTTP on the host or
the link-local metadata address), one path prefix per protocol, each
checked as strictly as the real endpoint checks it and answering in its
JSON shapes:

  /imds/metadata/identity/oauth2/token  the VM instance metadata service:
      GET only; "Metadata: true" required; a request carrying
      X-Forwarded-For refused; api-version required (2018-02-01 or later);
      resource must be Exchange Online's; client_id (user-assigned) must
      be one assigned to the "VM", else 400 "Identity not found" (also
      for a system-assigned request when the VM has none); expires_in and
      expires_on as strings, like IMDS.
  /app/token  App Service / Functions: X-IDENTITY-HEADER must be the
      configured value; api-version=2019-08-01; expires_on a number.
  /arc/metadata/identity/oauth2/token  the Azure Arc agent: "Metadata:
      true" and api-version=2020-06-01; a request without Authorization
      gets 401 "WWW-Authenticate: Basic realm=PATH", PATH a fresh key file
      written into the configured key directory; the repeated request
      must carry "Authorization: Basic KEY" with that key (used once).
      System-assigned only.

Tokens are RS256 JWTs signed by the test issuer key, with the claims the
test Dovecot validates (as tests/tokend.py issues them). One line per
request goes to --log (protocol, identity, result: never a key or a
token). A control file, re-read on every request, selects fault modes:
{"mode": "no_identity" | "arc_realm_outside" | "arc_key_big" |
"arc_no_challenge" | "503" | "expires_on_string" | "redirect",
"count": N}; with "count", the fault applies to the next N requests
only: "503" with count 1 is one transient failure, then success.
"""

import argparse
import base64
import http.server
import json
import os
import secrets
import signal
import sys
import threading
import time
import urllib.parse

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

RESOURCE = "https://outlook.office365.com"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Msi:
    def __init__(self, conf, log_path, control_path):
        self.conf = conf
        self.log_path = log_path
        self.control_path = control_path
        self.lock = threading.Lock()
        self.arc_keys = {}          # key -> path, issued and not yet used
        self.faults = {}
        with open(conf["issuer_key"], "rb") as f:
            self.issuer = serialization.load_pem_private_key(f.read(), None)

    def mode(self):
        """The fault mode for this request; with "count", for the next
        N requests only (counted per content of the control file)."""
        try:
            with open(self.control_path) as f:
                text = f.read()
            ctl = json.loads(text)
            mode = str(ctl.get("mode", ""))
            count = ctl.get("count")
        except (OSError, ValueError, AttributeError):
            return ""
        if mode and isinstance(count, int):
            with self.lock:
                used = self.faults.get(text, 0)
                if used >= count:
                    return ""
                self.faults[text] = used + 1
        return mode

    def log(self, proto, identity, result):
        with self.lock, open(self.log_path, "a") as f:
            f.write("%.3f protocol=%s identity=%s result=%s\n"
                    % (time.time(), proto, identity, result))

    def record(self, kind, value):
        if self.conf.get("record") and value:
            with self.lock, open(self.conf["record"], "a") as f:
                f.write("%s %s\n" % (kind, value))

    def token(self, client_id):
        conf = self.conf
        now = int(time.time())
        lifetime = conf.get("lifetime", 3599)
        claims = {
            "aud": RESOURCE,
            "iss": "https://sts.windows.net/%s/" % conf["tenant_id"],
            "iat": now - 300, "nbf": now - 300, "exp": now + lifetime,
            "sub": "mi-" + client_id, "oid": "mi-" + client_id,
            "tid": conf["tenant_id"], "appid": client_id,
            "roles": ["IMAP.AccessAsApp", "SMTP.SendAsApp"],
            "xms_mirid": "/subscriptions/x/resourcegroups/mail/providers/"
                         "Microsoft.ManagedIdentity/" + client_id,
            "tenant_domain": "app@" + conf["domain"], "ver": "1.0"}
        head = {"alg": "RS256", "typ": "JWT", "kid": conf["kid"]}
        data = b64url(json.dumps(head).encode()) + "." + \
            b64url(json.dumps(claims).encode())
        sig = self.issuer.sign(data.encode(), padding.PKCS1v15(),
                               hashes.SHA256())
        tok = data + "." + b64url(sig)
        self.record("token", tok)
        return tok, now, lifetime

    def identity(self, client_id, mode):
        """The client id of the identity asked for, or None."""
        if client_id is None:
            if mode == "no_identity":
                return None
            return self.conf["system_client_id"]
        if client_id in self.conf.get("user_assigned", []):
            return client_id
        return None

    @staticmethod
    def one(q, name):
        v = q.get(name)
        if v is None:
            return None
        if len(v) != 1:
            raise ValueError(name)
        return v[0]

    def imds(self, headers, q, mode):
        if headers.get("X-Forwarded-For") is not None:
            return 400, {"error": "invalid_request",
                         "error_description": "Request contains an "
                         "X-Forwarded-For header"}, "xff"
        if headers.get("Metadata") != "true":
            return 400, {"error": "invalid_request",
                         "error_description": "Required metadata header "
                         "not specified"}, "no-metadata"
        ver = self.one(q, "api-version")
        if ver is None:
            return 400, {"error": "invalid_request",
                         "error_description": "Required query variable "
                         "'api-version' is missing"}, "no-api-version"
        if ver < "2018-02-01":
            return 400, {"error": "invalid_request",
                         "error_description": "Invalid api-version"}, \
                "bad-api-version"
        if self.one(q, "resource") != RESOURCE:
            return 400, {"error": "invalid_resource",
                         "error_description": "AADSTS500011: The resource "
                         "principal named %s was not found in the tenant"
                         % self.one(q, "resource")}, "bad-resource"
        if self.one(q, "object_id") or self.one(q, "msi_res_id"):
            return 400, {"error": "invalid_request",
                         "error_description": "Identity not found"}, \
                "unexpected-id"
        cid = self.identity(self.one(q, "client_id"), mode)
        if cid is None:
            return 400, {"error": "invalid_request",
                         "error_description": "Identity not found"}, \
                "identity-not-found"
        tok, now, life = self.token(cid)
        return 200, {"access_token": tok, "refresh_token": "",
                     "expires_in": str(life), "expires_on": str(now + life),
                     "ext_expires_in": str(life), "not_before": str(now),
                     "resource": RESOURCE, "token_type": "Bearer"}, \
            "ok id=" + cid

    def app(self, headers, q, mode):
        want = self.conf["app_service_header"]
        got = headers.get("X-IDENTITY-HEADER")
        if got is None or not secrets.compare_digest(got, want):
            return 401, {"statusCode": 401, "message": "The "
                         "X-IDENTITY-HEADER header is missing or does not "
                         "match"}, "bad-header"
        if self.one(q, "api-version") != "2019-08-01":
            return 400, {"statusCode": 400, "message": "api-version "
                         "2019-08-01 is required"}, "bad-api-version"
        if self.one(q, "resource") != RESOURCE:
            return 500, {"statusCode": 500, "message": "An unexpected "
                         "error occured while fetching the AAD Token."}, \
                "bad-resource"
        cid = self.identity(self.one(q, "client_id"), mode)
        if cid is None:
            return 400, {"statusCode": 400, "message": "No Managed "
                         "Identity found for specified ClientId/ResourceId/"
                         "PrincipalId."}, "identity-not-found"
        tok, now, life = self.token(cid)
        exp = str(now + life) if mode == "expires_on_string" else now + life
        return 200, {"access_token": tok, "expires_on": exp,
                     "resource": RESOURCE, "token_type": "Bearer",
                     "client_id": cid}, "ok id=" + cid

    def arc(self, headers, q, mode):
        if headers.get("Metadata") != "true":
            return 400, {"error": "invalid_request",
                         "error_description": "Required metadata header "
                         "not specified"}, "no-metadata", ()
        if self.one(q, "api-version") != "2020-06-01":
            return 400, {"error": "invalid_request",
                         "error_description": "Invalid api-version"}, \
                "bad-api-version", ()
        if self.one(q, "resource") != RESOURCE:
            return 400, {"error": "invalid_resource",
                         "error_description": "bad resource"}, \
                "bad-resource", ()
        if self.one(q, "client_id") is not None:
            return 400, {"error": "invalid_request",
                         "error_description": "User assigned identities "
                         "are not supported"}, "user-assigned", ()
        auth = headers.get("Authorization")
        if auth is None:
            if mode == "arc_no_challenge":
                return 401, {"error": "unauthorized"}, "no-challenge", ()
            keydir = self.conf["arc_key_dir"]
            if mode == "arc_realm_outside":
                keydir = self.conf["arc_outside_dir"]
            name = secrets.token_hex(16) + ".key"
            path = os.path.join(keydir, name)
            key = secrets.token_urlsafe(32)
            if mode == "arc_key_big":
                key = key + "A" * 5000
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            with os.fdopen(fd, "w") as f:
                f.write(key)
            with self.lock:
                self.arc_keys[key] = path
            return 401, {"error": "unauthorized",
                         "error_description": "basic auth required"}, \
                "challenge", [("WWW-Authenticate", "Basic realm=" + path)]
        if not auth.startswith("Basic "):
            return 401, {"error": "unauthorized"}, "bad-scheme", ()
        key = auth[6:]
        with self.lock:
            path = self.arc_keys.pop(key, None)
        if path is None:
            return 401, {"error": "unauthorized",
                         "error_description": "invalid key"}, "bad-key", ()
        try:
            os.unlink(path)
        except OSError:
            pass
        cid = self.identity(None, mode)
        if cid is None:
            return 400, {"error": "invalid_request",
                         "error_description": "Identity not found"}, \
                "identity-not-found", ()
        tok, now, life = self.token(cid)
        return 200, {"access_token": tok, "expires_in": life,
                     "expires_on": str(now + life), "not_before": str(now),
                     "resource": RESOURCE, "token_type": "Bearer"}, \
            "ok id=" + cid, ()


def make_handler(msi):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        server_version = "msid"

        def log_message(self, fmt, *args):
            pass

        def send(self, status, body, extra=()):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type",
                             "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            self.close_connection = True
            self.send(405, {"error": "invalid_request",
                            "error_description": "GET only"})

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            try:
                q = urllib.parse.parse_qs(url.query, keep_blank_values=True,
                                          strict_parsing=bool(url.query))
            except ValueError:
                q = None
            mode = msi.mode()
            proto = {"/imds/metadata/identity/oauth2/token": "imds",
                     "/app/token": "app",
                     "/arc/metadata/identity/oauth2/token": "arc"}.get(
                         url.path)
            ident = (q or {}).get("client_id", ["system"])[0]
            if proto is None or q is None:
                msi.log(proto, ident, "not-found")
                return self.send(404, {"error": "not_found"})
            if mode == "503":
                msi.log(proto, ident, "503")
                return self.send(503, {"error": "service_unavailable",
                                       "error_description": "busy"},
                                 [("Retry-After", "1")])
            if mode == "redirect":
                msi.log(proto, ident, "redirect")
                return self.send(302, {}, [("Location",
                                            "http://127.0.0.1:1/x")])
            try:
                if proto == "imds":
                    status, body, result = msi.imds(self.headers, q, mode)
                    extra = ()
                elif proto == "app":
                    status, body, result = msi.app(self.headers, q, mode)
                    extra = ()
                else:
                    status, body, result, extra = msi.arc(self.headers, q,
                                                          mode)
            except ValueError as e:
                status, body, result, extra = 400, {
                    "error": "invalid_request",
                    "error_description": "repeated parameter %s" % e}, \
                    "repeated", ()
            msi.log(proto, ident, result)
            self.send(status, body, extra)
    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--log", required=True)
    ap.add_argument("--control", default="/nonexistent")
    args = ap.parse_args()
    with open(args.config) as f:
        conf = json.load(f)
    msi = Msi(conf, args.log, args.control)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port),
                                             make_handler(msi))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *a: (server.server_close(),
                                              os._exit(0)))
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write("%d\n" % server.server_address[1])
        os.rename(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
