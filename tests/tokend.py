#!/usr/bin/python3
"""A local stand-in for the Microsoft Entra ID v2.0 token endpoint.

HTTPS on 127.0.0.1, POST /{tenant}/oauth2/v2.0/token only, checked as
strictly as Entra checks it (form encoding, grant type, tenant, client,
secret or signed client assertion, scope), answering in Entra's JSON
shapes, and issuing RS256 JWT access tokens signed by a test issuer key.

One line per token request goes to --log (tenant, client, result: never
a secret or a token). A control file, re-read on every request, selects
fault modes for failure tests: {"mode": "hang" | "slow:N" | "html500" |
"429:N" | "503:N" | "badjson" | "no_access_token" | "no_expires_in" |
"expires_in_string" | "expires_in_absurd" | "token_type_mac" |
"expires_in_garbage" | "token_crlf" | "token_soh" | "huge" | "wrong_key" |
"wrong_domain" | "expired_token" | "lifetime:N" | "clock_skew" | "size:N",
"count": N}. "size:N" pads the access token with a claim to N bytes (as
long as Entra's, 1.5-3 KB, for the bench). "clock_skew" judges client assertions as if the clock were two
hours ahead (AADSTS700024). With "count", the fault applies to the next N
well-formed token requests only (counted per content of the control
file), then the endpoint behaves normally again: "503:1" with count 1 is
one transient failure followed by success.

Federated credentials (workload identity federation): a client may list
"federated": [{"issuer": I, "subject": S, "audiences":
["api://AzureADTokenExchange"]}], and the config's "federation_issuers"
maps each issuer I to the PEM file of its public key (standing in for
the issuer's OIDC discovery document and JWKS). A client_assertion
whose iss is not the client's own id and whose header names no
certificate thumbprint is judged as Entra judges a federated one: a record with its issuer (AADSTS700211), then its
subject (700213), then its audience (700212), the signature by the
issuer's key (RS256 only), then nbf and exp (700024); the control
mode "refuse_sub:S" refuses a federated token of subject S as if its
record had been deleted (700213). "scope" may be a
list of the scopes accepted (a national cloud's, for the cloud tests).
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
import uuid

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SKEW = 300


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    if not isinstance(text, str) or any(c in text for c in "+/= \n"):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Entra:
    def __init__(self, conf, log_path, control_path):
        self.conf = conf
        self.log_path = log_path
        self.control_path = control_path
        self.lock = threading.Lock()
        self.jtis = set()
        self.faults = {}
        with open(conf["issuer_key"], "rb") as f:
            self.issuer = serialization.load_pem_private_key(f.read(), None)
        self.wrong = rsa.generate_private_key(public_exponent=65537,
                                              key_size=2048)
        # the public keys of the issuers of federated tokens
        self.fed_keys = {}
        for iss, path in conf.get("federation_issuers", {}).items():
            with open(path, "rb") as f:
                self.fed_keys[iss] = serialization.load_pem_public_key(
                    f.read())
        # thumbprints of every client's registered certificates
        self.certs = {}
        for cid, client in conf["clients"].items():
            for path in client.get("certs", []):
                with open(path, "rb") as f:
                    cert = x509.load_pem_x509_certificate(f.read())
                der = cert.public_bytes(serialization.Encoding.DER)
                self.certs.setdefault(cid, []).append({
                    "x5t": b64url(hashlib.sha1(der).digest()),
                    "x5t#S256": b64url(hashlib.sha256(der).digest()),
                    "key": cert.public_key()})

    def peek(self):
        """The fault mode in the control file, without counting a use."""
        try:
            with open(self.control_path) as f:
                return str(json.load(f).get("mode", ""))
        except (OSError, ValueError, AttributeError):
            return ""

    def control(self):
        """The fault mode for this request, from the control file."""
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

    def record(self, kind, value):
        """With "record" in the config, keep every credential received
        and token issued (one "KIND VALUE" line each), so that a test can
        look for them in everything the plugin and the tool printed."""
        if self.conf.get("record") and value:
            with self.lock, open(self.conf["record"], "a") as f:
                f.write("%s %s\n" % (kind, value))

    def log(self, tenant, client, result):
        with self.lock, open(self.log_path, "a") as f:
            f.write("%.3f tenant=%s client=%s result=%s\n"
                    % (time.time(), tenant, client, result))

    @staticmethod
    def error(status, error, code, text):
        return status, {
            "error": error,
            "error_description": "AADSTS%d: %s\r\nTrace ID: %s\r\n"
                                 "Correlation ID: %s\r\nTimestamp: %s"
                                 % (code, text, uuid.uuid4(), uuid.uuid4(),
                                    time.strftime("%Y-%m-%d %H:%M:%SZ")),
            "error_codes": [code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
            "error_uri": "https://login.microsoftonline.com/error?code=%d"
                         % code}

    def check_assertion(self, cid, token_url, assertion, seen=None):
        """None when the assertion is good, else an error answer."""
        bad_sig = self.error(401, "invalid_client", 700027,
                             "Client assertion failed signature "
                             "validation.")
        try:
            head_b64, claims_b64, sig_b64 = assertion.split(".")
            head = json.loads(unb64url(head_b64))
            claims = json.loads(unb64url(claims_b64))
            sig = unb64url(sig_b64)
        except ValueError:
            return self.error(400, "invalid_request", 50027,
                              "JWT token is invalid or malformed.")
        alg = head.get("alg")
        if head.get("typ") not in (None, "JWT"):
            return bad_sig
        if alg == "PS256":
            field = "x5t#S256"
            pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                              salt_length=32)
        elif alg == "RS256":
            field = "x5t"
            pad = padding.PKCS1v15()
        else:
            return bad_sig
        thumb = head.get(field)
        # a SHA-256 digest in x5t is a classic mistake: Entra rejects it
        matches = [c for c in self.certs.get(cid, []) if c[field] == thumb]
        if not matches:
            return self.error(401, "invalid_client", 700027,
                              "Client assertion contains an invalid "
                              "signature. [Reason - The key was not found.,"
                              " Thumbprint of key used by client: '%s']"
                              % thumb)
        if seen is not None:
            # which registered certificate (1, 2, ...): for rollover tests
            seen["n"] = self.certs[cid].index(matches[0]) + 1
        try:
            matches[0]["key"].verify(
                sig, (head_b64 + "." + claims_b64).encode(), pad,
                hashes.SHA256())
        except InvalidSignature:
            return bad_sig
        if claims.get("aud") != token_url:
            return self.error(401, "invalid_client", 700023,
                              "Client assertion audience claim does not "
                              "match Realm issuer.")
        if claims.get("iss") != cid or claims.get("sub") != cid:
            return self.error(401, "invalid_client", 700021,
                              "Client assertion application identifier "
                              "doesn't match 'client_id' parameter.")
        now = time.time()
        if self.peek() == "clock_skew":
            now += 7200
        nbf, exp = claims.get("nbf"), claims.get("exp")
        if (not isinstance(nbf, int) or not isinstance(exp, int)
                or nbf > now + SKEW or exp < now - SKEW or exp - nbf > 3600):
            return self.error(401, "invalid_client", 700024,
                              "Client assertion is not within its valid "
                              "time range.")
        jti = claims.get("jti")
        with self.lock:
            if not isinstance(jti, str) or not jti or jti in self.jtis:
                return self.error(401, "invalid_client", 700027,
                                  "Client assertion failed signature "
                                  "validation. [Reason - The jti claim "
                                  "is missing or was used before.]")
            self.jtis.add(jti)
        return None

    def check_federated(self, cid, client, assertion):
        """None when the federated token is good, else an error answer
        and a short reason for the log."""
        try:
            head_b64, claims_b64, sig_b64 = assertion.split(".")
            head = json.loads(unb64url(head_b64))
            claims = json.loads(unb64url(claims_b64))
            sig = unb64url(sig_b64)
            if not isinstance(head, dict) or not isinstance(claims, dict):
                raise ValueError("not an object")
        except ValueError:
            return self.error(400, "invalid_request", 50027,
                              "JWT token is invalid or malformed."), \
                "malformed"
        records = client.get("federated", [])
        if not records:
            return self.error(400, "invalid_client", 70025,
                              "The client '%s' has no configured "
                              "federated identity credentials." % cid), \
                "no-federated-credentials"
        iss, sub, aud = claims.get("iss"), claims.get("sub"), \
            claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        records = [r for r in records if r["issuer"] == iss]
        if not records:
            return self.error(400, "invalid_request", 700211,
                              "No matching federated identity record "
                              "found for presented assertion issuer '%s'."
                              % iss), "wrong-issuer"
        if self.peek() == "refuse_sub:%s" % sub:
            records = []
        records = [r for r in records if r["subject"] == sub]
        if not records:
            return self.error(400, "invalid_request", 700213,
                              "No matching federated identity record "
                              "found for presented assertion subject '%s'."
                              % sub), "wrong-subject"
        if not any(a in r["audiences"] for r in records for a in auds):
            return self.error(400, "invalid_request", 700212,
                              "No matching federated identity record "
                              "found for presented assertion audience "
                              "'%s'." % ", ".join(map(str, auds))), \
                "wrong-audience"
        key = self.fed_keys.get(iss)
        try:
            if head.get("alg") != "RS256" or key is None:
                raise InvalidSignature()
            key.verify(sig, (head_b64 + "." + claims_b64).encode(),
                       padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return self.error(401, "invalid_client", 700027,
                              "Client assertion failed signature "
                              "validation."), "bad-signature"
        now = time.time()
        nbf, exp = claims.get("nbf", claims.get("iat")), claims.get("exp")
        if (not isinstance(exp, int) or exp < now - SKEW or
                (nbf is not None and (not isinstance(nbf, int) or
                                      nbf > now + SKEW))):
            return self.error(400, "invalid_client", 700024,
                              "Client assertion is not within its valid "
                              "time range. Current time: %s, expiry time "
                              "of assertion %s." % (
                                  time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                time.gmtime(now)),
                                  time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                time.gmtime(exp))
                                  if isinstance(exp, int) else "-")), \
                "expired"
        return None, "ok"

    def issue(self, tenant, cid, mode):
        conf = self.conf
        now = int(time.time())
        lifetime = conf.get("lifetime", 3599)
        if mode.startswith("lifetime:"):
            lifetime = int(mode.split(":")[1])
        tinfo = conf["tenants"][tenant]
        start = now - 7200 if mode == "expired_token" else now
        domain = "fabrikam.com" if mode == "wrong_domain" else tinfo["domain"]
        claims = {
            "aud": "https://outlook.office.com",
            "iss": "https://sts.windows.net/%s/" % tinfo["id"],
            # like Entra, iat and nbf 5 minutes back: a mail server whose
            # clock is a little behind must not see a token from the future
            "iat": start - 300, "nbf": start - 300, "exp": start + lifetime,
            "sub": "sp-" + cid, "oid": "sp-" + cid, "tid": tinfo["id"],
            "appid": cid, "roles": conf["clients"][cid].get(
                "roles", ["IMAP.AccessAsApp", "SMTP.SendAsApp"]),
            "tenant_domain": "app@" + domain,
            "ver": "1.0"}
        head = {"alg": "RS256", "typ": "JWT", "kid": conf["kid"]}
        key = self.wrong if mode == "wrong_key" else self.issuer

        def signing(claims):
            return b64url(json.dumps(head).encode()) + "." + \
                b64url(json.dumps(claims).encode())
        if mode.startswith("size:"):
            # the longest "xms_pad" claim that keeps the token <= N bytes
            # (the signature's length does not depend on what is signed)
            want = int(mode.split(":")[1])
            siglen = len(b64url(b"\0" * (key.key_size // 8)))
            lo, hi = 0, want
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if len(signing(dict(claims, xms_pad="p" * mid))) + 1 + \
                        siglen <= want:
                    lo = mid
                else:
                    hi = mid - 1
            if lo > 0:
                claims["xms_pad"] = "p" * lo
        data = signing(claims)
        sig = key.sign(data.encode(), padding.PKCS1v15(), hashes.SHA256())
        token = data + "." + b64url(sig)
        self.record("token", token)
        answer = {"token_type": "Bearer", "expires_in": lifetime,
                  "ext_expires_in": lifetime, "access_token": token}
        if mode == "no_access_token":
            del answer["access_token"]
        elif mode == "no_expires_in":
            del answer["expires_in"]
        elif mode == "expires_in_string":
            answer["expires_in"] = str(lifetime)
        elif mode == "expires_in_absurd":
            answer["expires_in"] = 10 ** 12
        elif mode == "expires_in_garbage":
            answer["expires_in"] = "soon"
        elif mode == "token_type_mac":
            answer["token_type"] = "mac"
        elif mode == "token_crlf":
            answer["access_token"] = token[:20] + "\r\nX" + token[20:]
        elif mode == "token_soh":
            answer["access_token"] = token[:20] + "\x01" + token[20:]
        return 200, answer

    def handle(self, path, headers, body, token_url, seen):
        """None and the client id when the request is good, else an
        error answer and a short reason; seen["client"] gets the
        client_id sent and seen["credential"] the assertion's alg, for
        the log."""
        parts = path.split("/")
        if (len(parts) != 5 or parts[0] != "" or parts[2:] !=
                ["oauth2", "v2.0", "token"]):
            return self.error(404, "invalid_request", 90099,
                              "Unknown endpoint."), "bad-path", "-"
        tenant = parts[1]
        ctype = headers.get("Content-Type", "").split(";")[0].strip()
        if ctype != "application/x-www-form-urlencoded":
            return self.error(400, "invalid_request", 900144,
                              "The request body must contain the "
                              "following parameter: 'grant_type'."), \
                "bad-content-type", tenant
        try:
            pairs = urllib.parse.parse_qsl(body.decode("ascii"),
                                           keep_blank_values=True,
                                           strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            return self.error(400, "invalid_request", 900144,
                              "Malformed request body."), "bad-form", tenant
        form = {}
        for k, v in pairs:
            if k in form:
                return self.error(400, "invalid_request", 90015,
                                  "Requested query string is too long or "
                                  "has duplicate parameter '%s'." % k), \
                    "duplicate-param", tenant
            form[k] = v
        cid = form.get("client_id", "-")
        seen["client"] = cid
        for k in ("client_secret", "client_assertion"):
            self.record(k, form.get(k))
        if tenant.lower() in ("common", "organizations", "consumers"):
            return self.error(400, "invalid_request", 9001023,
                              "The grant type is not supported over the "
                              "/common or /consumers endpoints."), \
                "common", tenant
        if tenant not in self.conf["tenants"]:
            return self.error(400, "invalid_request", 90002,
                              "Tenant '%s' not found. Check to make sure "
                              "you have the correct tenant ID and are "
                              "signing into the correct cloud." % tenant), \
                "unknown-tenant", tenant
        if form.get("grant_type") != "client_credentials":
            return self.error(400, "unsupported_grant_type", 70003,
                              "The app requested an unsupported grant "
                              "type."), "bad-grant", tenant
        client = self.conf["clients"].get(cid)
        tenants = self.conf["tenants"]
        if client is None or tenants[client["tenant"]]["id"] != \
                tenants[tenant]["id"]:
            return self.error(400, "unauthorized_client", 700016,
                              "Application with identifier '%s' was not "
                              "found in the directory '%s'."
                              % (cid, tenant)), "unknown-client", tenant
        if "client_secret" in form and "client_assertion" in form:
            return self.error(400, "invalid_request", 90014,
                              "Only one credential may be sent."), \
                "two-credentials", tenant
        if "client_secret" in form:
            if form["client_secret"] in client.get("expired_secrets", []):
                return self.error(401, "invalid_client", 7000222,
                                  "The provided client secret keys for app "
                                  "'%s' are expired." % cid), \
                    "expired-secret", tenant
            if form["client_secret"] not in client.get("secrets", []):
                return self.error(401, "invalid_client", 7000215,
                                  "Invalid client secret provided. Ensure "
                                  "the secret being sent in the request is "
                                  "the client secret value, not the client "
                                  "secret ID."), "wrong-secret", tenant
            # which registered secret (1, 2, ...): for rollover tests
            seen["n"] = client["secrets"].index(form["client_secret"]) + 1
        elif "client_assertion" in form:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                return self.error(400, "invalid_request", 50027,
                                  "Invalid client_assertion_type."), \
                    "bad-assertion-type", tenant
            try:
                parts = form["client_assertion"].split(".")
                head = json.loads(unb64url(parts[0]))
                iss = json.loads(unb64url(parts[1])).get("iss")
                thumb = "x5t" in head or "x5t#S256" in head
            except (ValueError, IndexError, AttributeError, TypeError):
                iss, thumb = cid, True
            if iss != cid and not thumb:
                # not the app's own assertion (which names its
                # certificate's thumbprint): a federated token
                bad, why = self.check_federated(cid, client,
                                                form["client_assertion"])
                if bad is not None:
                    return bad, "federated-" + why, tenant
                seen["credential"] = "federated"
                seen["sub"] = json.loads(unb64url(form[
                    "client_assertion"].split(".")[1])).get("sub")
            else:
                bad = self.check_assertion(cid, token_url,
                                           form["client_assertion"], seen)
                if bad is not None:
                    return bad, "bad-assertion-%s" % \
                        bad[1]["error_codes"][0], tenant
                seen["credential"] = json.loads(unb64url(
                    form["client_assertion"].split(".")[0]))["alg"]
        else:
            return self.error(401, "invalid_client", 7000218,
                              "The request body must contain the following "
                              "parameter: 'client_assertion' or "
                              "'client_secret'."), "no-credential", tenant
        scopes = self.conf.get("scope",
                               "https://outlook.office365.com/.default")
        if form.get("scope") not in (scopes if isinstance(scopes, list)
                                     else [scopes]):
            return self.error(400, "invalid_scope", 1002012,
                              "The provided value for scope %s is not "
                              "valid." % form.get("scope")), \
                "bad-scope", tenant
        seen["scope"] = form.get("scope")
        return None, cid, tenant


def make_handler(entra, port):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # no 40 ms Nagle/delayed-ACK stall on every answer
        disable_nagle_algorithm = True
        server_version = "tokend"

        def log_message(self, fmt, *args):
            pass

        def send(self, status, body, ctype="application/json",
                 extra=()):
            data = body if isinstance(body, bytes) else \
                json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store, no-cache")
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.send(*Entra.error(405, "invalid_request", 900561,
                                   "The endpoint only accepts POST "
                                   "requests."))

        def do_POST(self):
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length < 65536:
                self.close_connection = True
                return self.send(*Entra.error(
                    411 if length < 0 else 413, "invalid_request", 900144,
                    "Bad Content-Length."))
            body = self.rfile.read(length)
            token_url = "https://127.0.0.1:%d%s" % (port, self.path)
            seen = {"client": "-"}
            answer, cid, tenant = entra.handle(self.path, self.headers,
                                               body, token_url, seen)
            if answer is not None:
                entra.log(tenant, seen["client"], "error:%s:%s" % (
                    answer[1]["error_codes"][0], cid))
                return self.send(*answer)
            mode = entra.control()
            if mode == "hang":
                entra.log(tenant, cid, "hang")
                time.sleep(3600)
                return
            if mode.startswith("slow:"):
                time.sleep(float(mode.split(":")[1]))
            if mode == "html500":
                entra.log(tenant, cid, "html500")
                return self.send(500, b"<html><body>Internal Server Error"
                                 b"</body></html>", "text/html")
            for code in ("429", "503"):
                if mode.startswith(code + ":"):
                    entra.log(tenant, cid, "transient:" + code)
                    status, err = Entra.error(int(code),
                                              "temporarily_unavailable",
                                              50196, "The server is busy.")
                    return self.send(int(code), err, extra=[
                        ("Retry-After", mode.split(":")[1])])
            if mode == "badjson":
                entra.log(tenant, cid, "badjson")
                return self.send(200, b"{\"token_type\": \"Bearer\", ")
            if mode == "huge":
                entra.log(tenant, cid, "huge")
                return self.send(200, b"{\"x\":\"" + b"A" * (8 << 20) +
                                 b"\"}")
            status, answer = entra.issue(tenant, cid, mode)
            entra.log(tenant, cid, "ok credential=%s n=%d scope=%s%s" % (
                seen.get("credential", "secret"), seen.get("n", 1),
                seen.get("scope"), " sub=%s" % seen["sub"]
                if "sub" in seen else ""))
            self.send(status, answer)
    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--cert", required=True, help="server certificate PEM")
    ap.add_argument("--key", required=True, help="server key PEM")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--pid-file")
    ap.add_argument("--log", required=True)
    ap.add_argument("--control", default="/nonexistent",
                    help="fault-mode file, re-read on every request")
    ap.add_argument("--token-lifetime", type=int,
                    help="expires_in and token lifetime in seconds "
                    "(default: the config's \"lifetime\", else 3599)")
    args = ap.parse_args()
    with open(args.config) as f:
        conf = json.load(f)
    if args.token_lifetime is not None:
        conf["lifetime"] = args.token_lifetime
    entra = Entra(conf, args.log, args.control)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), None)
    server.daemon_threads = True
    server.request_queue_size = 512
    port = server.server_address[1]
    server.RequestHandlerClass = make_handler(entra, port)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *a: (server.server_close(),
                                              os._exit(0)))
    if args.pid_file:
        with open(args.pid_file, "w") as f:
            f.write("%d\n" % os.getpid())
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write("%d\n" % port)
        os.rename(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
