#!/usr/bin/python3
"""A strict local stand-in for a delegated sign-in provider.

HTTPS on 127.0.0.1, in Microsoft mode (--provider microsoft: refresh
tokens rotate; the device flow is offered) or Google mode (refresh
tokens kept; no device flow for mail; a revocation endpoint). Paths by
their last part, so that the plugin's own derivation of Microsoft's
endpoints from authority and tenant is used as is:

  .../devicecode   POST  device authorization (RFC 8628)
  .../authorize, .../auth  GET  authorization (RFC 6749 + RFC 7636 S256,
                   exact redirect_uri, state echoed); answers 302 to
                   redirect_uri as a browser would follow it
  .../token        POST  device_code, authorization_code, refresh_token
  .../revoke       POST  revocation (RFC 7009)
  /approve?user_code=C&user=M&action=allow|deny|slow_down   the test,
                   acting as the user at the verification page
  /revoke-all?user=M   the user revokes the app (password change)
  /delay?seconds=S     answer each later refresh grant S seconds late
                   (a wider window for processes that race to refresh)
  /hold                hold the next refresh grant, unanswered and not
                   yet judged, until /release; /held says how many are
                   held (a request whose token is replaced meanwhile)

Rotation (Microsoft mode): a refresh grant issues a new refresh token;
the old one stays valid only until the new one has been used once, then
it is refused (invalid_grant, AADSTS70000). That grace is what makes a
client killed between receiving the answer and saving the new token
survivable: the token it still holds on disk is accepted, and no
provider could do better without it (a token refused as soon as its
successor is issued dies with a client killed at that moment). Reuse
after the successor was used is refused, as a strict provider with
reuse detection does. Microsoft's own documentation ("Refresh tokens in
the Microsoft identity platform") is more lenient still: it "doesn't
revoke old refresh tokens when used to fetch new access tokens", they
last until they expire; the stand-in is stricter than the real thing on
purpose, so that a client which wrote a token back in the wrong order,
or lost one, fails here. One line per request goes to --log
(grant, user, result), never a token. Access tokens are RS256 JWTs by
the test issuer key, as tests/tokend.py issues them, with the signed-in
mailbox in tenant_domain (what the test Dovecot checks).
"""

import argparse
import base64
import hashlib
import http.server
import json
import os
import secrets
import signal
import ssl
import sys
import threading
import time
import urllib.parse

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Provider:
    def __init__(self, conf, provider, log_path):
        self.conf = conf
        self.ms = provider == "microsoft"
        self.log_path = log_path
        self.lock = threading.Lock()
        self.state = threading.Lock()
        with open(conf["issuer_key"], "rb") as f:
            self.issuer = serialization.load_pem_private_key(f.read(), None)
        self.devices = {}       # device_code -> dict
        self.codes = {}         # code -> dict
        self.refresh = {}       # refresh token -> dict(user, scope, state)
        self.interval = int(conf.get("interval", 1))
        self.delay = 0.0        # seconds before a refresh grant's answer
        self.hold = False       # hold the next refresh grant (/hold)
        self.held = 0           # refresh grants held now
        self.release = threading.Event()

    def log(self, grant, user, result):
        with self.lock, open(self.log_path, "a") as f:
            f.write("grant=%s user=%s result=%s\n" % (grant, user, result))

    def error(self, status, error, desc, code=None):
        body = {"error": error, "error_description": desc}
        if self.ms and code is not None:
            body["error_description"] = "AADSTS%d: %s" % (code, desc)
            body["error_codes"] = [code]
        return status, body

    def jwt(self, claims):
        head = {"alg": "RS256", "typ": "JWT", "kid": self.conf["kid"]}
        data = b64url(json.dumps(head).encode()) + "." + \
            b64url(json.dumps(claims).encode())
        sig = self.issuer.sign(data.encode(), padding.PKCS1v15(),
                               hashes.SHA256())
        return data + "." + b64url(sig)

    def issue(self, user, scope, grant):
        now = int(time.time())
        life = int(self.conf.get("lifetime", 3599))
        at = self.jwt({"aud": "https://outlook.office.com",
                       "iss": "https://oauthd.test/", "iat": now - 300,
                       "nbf": now - 300, "exp": now + life,
                       "sub": "sub-" + user, "oid": "oid-" + user,
                       "scp": scope, "tenant_domain": user, "ver": "2.0"})
        answer = {"token_type": "Bearer", "expires_in": life,
                  "access_token": at, "scope": scope}
        scopes = scope.split()
        if grant != "refresh_token" or self.ms:
            rt = "rt-" + secrets.token_urlsafe(24)
            self.refresh[rt] = {"user": user, "scope": scope,
                                "used": False, "parent": None}
            answer["refresh_token"] = rt
        if "openid" in scopes:
            claim = "preferred_username" if self.ms else "email"
            answer["id_token"] = self.jwt({"iss": "https://oauthd.test/",
                                           "aud": self.conf["client_id"],
                                           "iat": now, "exp": now + life,
                                           claim: user})
        return answer

    def client_ok(self, form):
        if form.get("client_id") != self.conf["client_id"]:
            return self.error(400, "invalid_client", "Unknown client.",
                              700016)
        want = self.conf.get("client_secret")
        if want is not None and form.get("client_secret") != want:
            return self.error(401, "invalid_client", "Unauthorized",
                              7000215)
        return None

    def device(self, form):
        bad = self.client_ok(form)
        if bad:
            return bad
        if not self.ms:
            return self.error(400, "invalid_scope", "Invalid scope for "
                              "the device flow.")
        dc = secrets.token_urlsafe(16)
        uc = "".join(secrets.choice("BCDFGHJKLMNPQRSTVWXZ")
                     for _ in range(8))
        self.devices[dc] = {"user_code": uc, "state": "pending",
                            "scope": form.get("scope", ""),
                            "expires": time.time() +
                            int(self.conf.get("device_expires", 900)),
                            "interval": self.interval, "last": 0}
        self.log("devicecode", "-", "ok")
        return 200, {"device_code": dc, "user_code": uc,
                     "verification_uri": "https://oauthd.test/devicelogin",
                     "expires_in": int(self.conf.get("device_expires",
                                                     900)),
                     "interval": self.interval,
                     "message": "To sign in, use a web browser to open "
                     "the page https://oauthd.test/devicelogin and enter "
                     "the code %s to authenticate." % uc}

    def approve(self, q):
        for d in self.devices.values():
            if d["user_code"] == q.get("user_code"):
                d["state"] = q.get("action", "allow")
                d["user"] = q.get("user")
                if d["state"] == "expire":
                    d["expires"] = 0
                return 200, {"ok": True}
        return 404, {"error": "no such user code"}

    def token(self, form):
        grant = form.get("grant_type", "")
        bad = self.client_ok(form)
        if bad:
            self.log(grant, "-", "error:invalid_client")
            return bad
        if grant == DEVICE_GRANT:
            d = self.devices.get(form.get("device_code", ""))
            if d is None:
                return self.error(400, "invalid_grant", "Unknown device "
                                  "code.", 70000)
            now = time.time()
            if now > d["expires"]:
                self.log(grant, "-", "error:expired_token")
                return self.error(400, "expired_token", "The device code "
                                  "has expired.", 70020)
            # polling faster than the interval is refused (RFC 8628 3.5)
            early = now - d["last"] < d["interval"] - 0.2
            d["last"] = now
            if d["state"] == "slow_down" or early:
                d["interval"] += 5 if d["state"] == "slow_down" else 0
                if d["state"] == "slow_down":
                    d["state"] = "pending"
                self.log(grant, "-", "error:slow_down")
                return self.error(400, "slow_down", "Slow down.", 70000)
            if d["state"] == "pending":
                self.log(grant, "-", "error:authorization_pending")
                return self.error(400, "authorization_pending", "The user "
                                  "has not yet authenticated.", 70016)
            if d["state"] == "deny":
                self.log(grant, "-", "error:access_denied")
                return self.error(400, "authorization_declined", "The user "
                                  "declined the request.", 70019)
            del self.devices[form["device_code"]]
            self.log(grant, d["user"], "ok")
            return 200, self.issue(d["user"], d["scope"], grant)
        if grant == "authorization_code":
            c = self.codes.pop(form.get("code", ""), None)
            if c is None or c["expires"] < time.time():
                self.log(grant, "-", "error:invalid_grant")
                return self.error(400, "invalid_grant", "Malformed auth "
                                  "code.", 70008)
            if form.get("redirect_uri") != c["redirect_uri"]:
                self.log(grant, c["user"], "error:redirect_uri")
                return self.error(400, "invalid_grant", "redirect_uri does "
                                  "not match.", 50148)
            v = form.get("code_verifier", "")
            if not 43 <= len(v) <= 128 or \
                    b64url(hashlib.sha256(v.encode()).digest()) != \
                    c["challenge"]:
                self.log(grant, c["user"], "error:pkce")
                return self.error(400, "invalid_grant", "The code_verifier "
                                  "does not match the code_challenge.",
                                  501481)
            self.log(grant, c["user"], "ok")
            return 200, self.issue(c["user"], c["scope"], grant)
        if grant == "refresh_token":
            rt = form.get("refresh_token", "")
            r = self.refresh.get(rt)
            if r is None or r.get("revoked"):
                self.log(grant, "-", "error:invalid_grant")
                if self.ms:
                    return self.error(400, "invalid_grant", "The refresh "
                                      "token has expired due to "
                                      "inactivity.", 700082)
                return self.error(400, "invalid_grant",
                                  "Token has been expired or revoked.")
            if self.ms and "scope" not in form:
                return self.error(400, "invalid_request", "The request "
                                  "body must contain 'scope'.", 900144)
            if self.ms and r.get("superseded"):
                self.log(grant, r["user"], "error:reused")
                return self.error(400, "invalid_grant", "The refresh token "
                                  "was already used.", 70000)
            if r["parent"] is not None:
                # its parent is refused from now on
                p = self.refresh.get(r["parent"])
                if p is not None:
                    p["superseded"] = True
                r["parent"] = None
            answer = self.issue(r["user"], r["scope"], grant)
            if "refresh_token" in answer:
                self.refresh[answer["refresh_token"]]["parent"] = rt
            self.log(grant, r["user"], "ok rotated=%d" %
                     ("refresh_token" in answer))
            return 200, answer
        return self.error(400, "unsupported_grant_type", "Unsupported "
                          "grant type.", 70003)

    def authorize(self, q):
        cc = self.conf
        try:
            if q.get("client_id") != cc["client_id"]:
                raise ValueError("unknown client_id")
            if q.get("response_type") != "code":
                raise ValueError("response_type must be code")
            ru = q.get("redirect_uri", "")
            u = urllib.parse.urlsplit(ru)
            if u.scheme != "http" or u.hostname != "127.0.0.1" or \
                    not u.port or u.path not in ("", "/"):
                raise ValueError("redirect_uri not a loopback URI")
            if q.get("code_challenge_method") != "S256" or \
                    len(q.get("code_challenge", "")) != 43:
                raise ValueError("PKCE S256 required")
            if not q.get("state"):
                raise ValueError("no state")
        except ValueError as e:
            self.log("authorize", "-", "error:" + str(e).replace(" ", "_"))
            return 400, {"error": "invalid_request",
                         "error_description": str(e)}, None
        user = cc.get("browser_user") or q.get("login_hint")
        sep = "&" if "?" in ru else "?"
        if cc.get("browser_action") == "deny":
            loc = ru + sep + urllib.parse.urlencode(
                {"error": "access_denied", "state": q["state"]})
            self.log("authorize", user, "denied")
            return 302, {}, loc
        code = secrets.token_urlsafe(24)
        self.codes[code] = {"user": user, "scope": q.get("scope", ""),
                            "redirect_uri": ru,
                            "challenge": q["code_challenge"],
                            "expires": time.time() + 600}
        state = q["state"] if cc.get("browser_action") != "bad_state" \
            else "forged"
        self.log("authorize", user, "ok")
        return 302, {}, ru + sep + urllib.parse.urlencode(
            {"code": code, "state": state})

    def revoke(self, form):
        rt = form.get("token", "")
        r = self.refresh.get(rt)
        if r is not None:
            r["revoked"] = True
        self.log("revoke", r["user"] if r else "-", "ok")
        return 200, {}

    def revoke_all(self, q):
        for r in self.refresh.values():
            if r["user"] == q.get("user"):
                r["revoked"] = True
        self.log("revoke-all", q.get("user"), "ok")
        return 200, {}


def make_handler(prov):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, fmt, *args):
            pass

        def send(self, status, body, location=None):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            if location:
                self.send_header("Location", location)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            u = urllib.parse.urlsplit(self.path)
            q = dict(urllib.parse.parse_qsl(u.query))
            with prov.state:
                if u.path == "/approve":
                    answer = prov.approve(q)
                elif u.path == "/revoke-all":
                    answer = prov.revoke_all(q)
                elif u.path == "/delay":
                    prov.delay = float(q.get("seconds", "0"))
                    answer = (200, {"ok": True})
                elif u.path == "/hold":
                    prov.hold = True
                    prov.release.clear()
                    answer = (200, {"ok": True})
                elif u.path == "/held":
                    answer = (200, {"held": prov.held})
                elif u.path == "/release":
                    prov.release.set()
                    answer = (200, {"ok": True})
                elif u.path.endswith("/authorize") or \
                        u.path.endswith("/auth"):
                    answer = prov.authorize(q)
                else:
                    answer = (404, {"error": "not_found"})
            self.send(*answer)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            if self.headers.get("Content-Type", "").split(";")[0] != \
                    "application/x-www-form-urlencoded":
                return self.send(400, {"error": "invalid_request",
                                       "error_description": "not a form"})
            raw = self.rfile.read(length).decode()
            pairs = urllib.parse.parse_qsl(raw, keep_blank_values=True,
                                           strict_parsing=True)
            form = dict(pairs)
            if len(form) != len(pairs):
                return self.send(400, {"error": "invalid_request",
                                       "error_description": "repeated "
                                       "parameter"})
            path = urllib.parse.urlsplit(self.path).path
            if path.endswith("/token") and prov.delay > 0 and \
                    form.get("grant_type") == "refresh_token":
                time.sleep(prov.delay)  # outside the lock: others go on
            if path.endswith("/token") and \
                    form.get("grant_type") == "refresh_token":
                with prov.state:
                    hold, prov.hold = prov.hold, False
                    if hold:
                        prov.held += 1
                if hold:        # outside the lock: others go on
                    prov.release.wait(600)
                    with prov.state:
                        prov.held -= 1
            with prov.state:
                if path.endswith("/devicecode"):
                    answer = prov.device(form)
                elif path.endswith("/token"):
                    answer = prov.token(form)
                elif path.endswith("/revoke"):
                    answer = prov.revoke(form)
                else:
                    answer = (404, {"error": "not_found"})
            self.send(*answer)
    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--provider", choices=["microsoft", "google"],
                    required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    with open(args.config) as f:
        conf = json.load(f)
    prov = Provider(conf, args.provider, args.log)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), None)
    server.daemon_threads = True
    server.RequestHandlerClass = make_handler(prov)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    with open(args.port_file + ".tmp", "w") as f:
        f.write("%d\n" % server.server_address[1])
    os.rename(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
