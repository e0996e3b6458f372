#!/usr/bin/python3
"""A local stand-in for Google's OAuth 2.0 token endpoint, for service
accounts with domain-wide delegation (the JWT bearer grant, RFC 7523 2.1).

HTTPS on 127.0.0.1, POST /token only, checked as strictly as Google
checks it: form encoding, grant_type, the assertion's RS256 signature
against the public half of the key named by its kid (of the service
account named by iss), aud (this endpoint's URL), iat and exp (at most
one hour apart, within five minutes of now), scope (allowed for the
service account's client id, as in the Admin console's domain-wide
delegation), sub (a mailbox of a domain allowed to the client id) and
replay (an assertion is good once). Errors come in Google's JSON shape
({"error", "error_description"}) with Google's texts.

The access tokens are RS256 JWTs signed by the test issuer key, so that
the test Dovecot can check them locally: "email" is the mailbox (sub),
so a token is good for that mailbox only. Real Google tokens are opaque.

Config (JSON): {"issuer_key": PEM path, "kid": "k1", "lifetime": 3599,
"record": path (optional: every assertion received and token issued),
"mailboxes": ["alice@example.org", ...],
"clients": {"<client_id>": {"email": "<client_email>",
  "keys": {"<private_key_id>": "<public key PEM path>"},
  "scopes": ["https://mail.google.com/"], "domains": ["example.org"],
  "disabled": false}}}.

One line per request goes to --log (client, sub, result: never an
assertion or a token). A control file, re-read on every request, holds
{"mode": "clock_skew"} (judge as if the clock were two hours ahead) or
{"mode": "503"} (Google busy).
"""

import argparse
import base64
import hashlib
import http.server
import json
import os
import signal
import ssl
import sys
import threading
import time
import urllib.parse

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SKEW = 300
# Google's own texts (error_description), as its token endpoint sends them
UNAUTHORIZED = ("Client is unauthorized to retrieve access tokens using "
                "this method, or client not authorized for any of the "
                "scopes requested.")
BAD_SUB = "Invalid email or User ID"
BAD_SIG = "Invalid JWT Signature."
BAD_TIME = ("Invalid JWT: Token must be a short-lived token (60 minutes) "
            "and in a reasonable timeframe. Check your iat and exp values "
            "in the JWT claim.")
NO_ACCOUNT = "Invalid grant: account not found"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    if not isinstance(text, str) or any(c in text for c in "+/= \n"):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def error(status, err, desc):
    return status, {"error": err, "error_description": desc}


class Google:
    def __init__(self, conf, log_path, control_path):
        self.conf = conf
        self.log_path = log_path
        self.control_path = control_path
        self.lock = threading.Lock()
        self.seen = set()
        with open(conf["issuer_key"], "rb") as f:
            self.issuer = serialization.load_pem_private_key(f.read(), None)
        self.by_email = {}
        for cid, client in conf["clients"].items():
            keys = {}
            for kid, path in client.get("keys", {}).items():
                with open(path, "rb") as f:
                    keys[kid] = serialization.load_pem_public_key(f.read())
            self.by_email[client["email"]] = (cid, client, keys)
        self.mailboxes = [m.lower() for m in conf.get("mailboxes", [])]

    def mode(self):
        try:
            with open(self.control_path) as f:
                return str(json.load(f).get("mode", ""))
        except (OSError, ValueError, AttributeError):
            return ""

    def record(self, kind, value):
        if self.conf.get("record") and value:
            with self.lock, open(self.conf["record"], "a") as f:
                f.write("%s %s\n" % (kind, value))

    def log(self, client, sub, result):
        with self.lock, open(self.log_path, "a") as f:
            f.write("%.3f client=%s sub=%s result=%s\n"
                    % (time.time(), client, sub, result))

    def check(self, assertion, token_url, seen):
        """None when the assertion is good, else (answer, reason)."""
        try:
            head_b64, claims_b64, sig_b64 = assertion.split(".")
            head = json.loads(unb64url(head_b64))
            claims = json.loads(unb64url(claims_b64))
            sig = unb64url(sig_b64)
            if not isinstance(head, dict) or not isinstance(claims, dict):
                raise ValueError("not objects")
        except ValueError:
            return error(400, "invalid_grant",
                         "Invalid JWT: malformed."), "malformed"
        found = self.by_email.get(claims.get("iss"))
        if found is None or found[1].get("disabled"):
            return error(400, "invalid_grant", NO_ACCOUNT), "no-account"
        cid, client, keys = found
        seen["client"] = cid
        seen["sub"] = str(claims.get("sub", "-"))
        if head.get("alg") != "RS256" or head.get("typ") not in (None, "JWT"):
            return error(400, "invalid_grant", BAD_SIG), "bad-alg"
        key = keys.get(head.get("kid"))
        if key is None:
            # a deleted or rotated key: Google no longer knows the kid
            return error(400, "invalid_grant", BAD_SIG), "unknown-kid"
        try:
            key.verify(sig, (head_b64 + "." + claims_b64).encode(),
                       padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return error(400, "invalid_grant", BAD_SIG), "bad-signature"
        if claims.get("aud") != token_url:
            return error(400, "invalid_grant",
                         "Invalid JWT: Failed audience check. The right "
                         "audience is %s" % token_url), "bad-aud"
        now = time.time()
        if self.mode() == "clock_skew":
            now += 7200
        iat, exp = claims.get("iat"), claims.get("exp")
        if (not isinstance(iat, int) or not isinstance(exp, int)
                or iat > now + SKEW or exp < now - SKEW
                or exp <= iat or exp - iat > 3600):
            return error(400, "invalid_grant", BAD_TIME), "bad-time"
        digest = hashlib.sha256(assertion.encode()).hexdigest()
        with self.lock:
            if digest in self.seen:
                return error(400, "invalid_grant",
                             "Invalid JWT: the assertion was used before."), \
                    "replay"
            self.seen.add(digest)
        scopes = claims.get("scope")
        if not isinstance(scopes, str) or not scopes.split() or \
                any(s not in client.get("scopes", [])
                    for s in scopes.split()):
            return error(401, "unauthorized_client", UNAUTHORIZED), \
                "not-delegated"
        sub = claims.get("sub")
        if not isinstance(sub, str) or sub.lower() not in self.mailboxes or \
                sub.lower().rpartition("@")[2] not in \
                client.get("domains", []):
            return error(400, "invalid_grant", BAD_SUB), "bad-sub"
        seen["scope"] = scopes
        return None

    def issue(self, sub, scope):
        now = int(time.time())
        lifetime = self.conf.get("lifetime", 3599)
        claims = {"iss": "https://accounts.google.com",
                  "aud": "googled-test", "iat": now - 300, "nbf": now - 300,
                  "exp": now + lifetime,
                  "sub": str(100000 + self.mailboxes.index(sub.lower())),
                  "email": sub.lower(), "scope": scope}
        head = {"alg": "RS256", "typ": "JWT", "kid": self.conf["kid"]}
        data = b64url(json.dumps(head).encode()) + "." + \
            b64url(json.dumps(claims).encode())
        sig = self.issuer.sign(data.encode(), padding.PKCS1v15(),
                               hashes.SHA256())
        token = data + "." + b64url(sig)
        self.record("token", token)
        return 200, {"access_token": token, "expires_in": lifetime,
                     "token_type": "Bearer"}

    def handle(self, path, headers, body, token_url, seen):
        if path != "/token":
            return error(404, "invalid_request", "Not Found"), "bad-path"
        ctype = headers.get("Content-Type", "").split(";")[0].strip()
        if ctype != "application/x-www-form-urlencoded":
            return error(400, "invalid_request",
                         "Bad Request"), "bad-content-type"
        try:
            pairs = urllib.parse.parse_qsl(body.decode("ascii"),
                                           keep_blank_values=True,
                                           strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            return error(400, "invalid_request", "Bad Request"), "bad-form"
        form = {}
        for k, v in pairs:
            if k in form:
                return error(400, "invalid_request",
                             "Duplicate parameter %s" % k), "duplicate"
            form[k] = v
        self.record("assertion", form.get("assertion"))
        if form.get("grant_type") != GRANT:
            return error(400, "unsupported_grant_type",
                         "Invalid grant_type: %s"
                         % form.get("grant_type", "")), "bad-grant"
        if set(form) != {"grant_type", "assertion"}:
            return error(400, "invalid_request",
                         "Unexpected parameters"), "extra-params"
        return self.check(form["assertion"], token_url, seen)


def make_handler(google, port):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        server_version = "googled"

        def log_message(self, fmt, *args):
            pass

        def send(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; "
                             "charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.send(*error(405, "invalid_request", "Method Not Allowed"))

        def do_POST(self):
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length < 65536:
                self.close_connection = True
                return self.send(*error(413, "invalid_request",
                                        "Bad Content-Length"))
            body = self.rfile.read(length)
            token_url = "https://127.0.0.1:%d%s" % (port, self.path)
            seen = {"client": "-", "sub": "-"}
            if google.mode() == "503":
                google.log("-", "-", "transient:503")
                return self.send(*error(503, "internal_failure",
                                        "Backend Error"))
            bad = google.handle(self.path, self.headers, body, token_url,
                                seen)
            if bad is not None:
                answer, reason = bad
                google.log(seen["client"], seen["sub"], "error:" + reason)
                return self.send(*answer)
            status, answer = google.issue(seen["sub"], seen["scope"])
            google.log(seen["client"], seen["sub"], "ok")
            self.send(status, answer)
    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--cert", required=True, help="server certificate PEM")
    ap.add_argument("--key", required=True, help="server key PEM")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--log", required=True)
    ap.add_argument("--control", default="/nonexistent")
    args = ap.parse_args()
    with open(args.config) as f:
        conf = json.load(f)
    google = Google(conf, args.log, args.control)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), None)
    server.daemon_threads = True
    port = server.server_address[1]
    server.RequestHandlerClass = make_handler(google, port)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *a: (server.server_close(),
                                              os._exit(0)))
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write("%d\n" % port)
        os.rename(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
