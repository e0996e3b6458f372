"""Probe the Entra stand-in (tokend.py) with hand-made requests and print
"ok - ..." / "not ok - ..." lines: it must accept exactly what Entra
accepts, so a plugin bug cannot hide behind a lenient test endpoint.

Usage: tokend-probe.py PORT CA_FILE TENANT CLIENT SECRET CERT_CLIENT
       APP_CRT APP_KEY"""
import base64
import hashlib
import json
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

(port, cafile, tenant, client, secret, cert_client, crt, key) = sys.argv[1:9]
URL = "https://127.0.0.1:%s/%s/oauth2/v2.0/token" % (port, tenant)
SCOPE = "https://outlook.office365.com/.default"
ATYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ctx = ssl.create_default_context(cafile=cafile)
with open(crt, "rb") as f:
    der = x509.load_pem_x509_certificate(f.read()).public_bytes(
        serialization.Encoding.DER)
with open(key, "rb") as f:
    app_key = serialization.load_pem_private_key(f.read(), None)
failed = 0


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def post(form, url=URL, ctype="application/x-www-form-urlencoded",
         raw=None):
    body = raw if raw is not None else urllib.parse.urlencode(form).encode()
    req = urllib.request.Request(url, body, {"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def assertion(alg="PS256", thumb=None, aud=URL, iss=cert_client,
              sub=cert_client, nbf=0, exp=300, jti=None, signer=None,
              tamper=False):
    now = int(time.time())
    field = "x5t#S256" if alg == "PS256" else "x5t"
    if thumb is None:
        thumb = b64url((hashlib.sha256 if alg == "PS256" else
                        hashlib.sha1)(der).digest())
    head = {"alg": alg, "typ": "JWT", field: thumb}
    claims = {"aud": aud, "iss": iss, "sub": sub, "jti": jti or
              str(uuid.uuid4()), "nbf": now + nbf, "iat": now + nbf,
              "exp": now + exp}
    signing = (b64url(json.dumps(head).encode()) + "." +
               b64url(json.dumps(claims).encode()))
    pad = (padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
           if alg == "PS256" else padding.PKCS1v15())
    sig = (signer or app_key).sign(signing.encode(), pad, hashes.SHA256())
    if tamper:  # well-formed claims the signature was not made over
        claims["exp"] += 1
        signing = (b64url(json.dumps(head).encode()) + "." +
                   b64url(json.dumps(claims).encode()))
    return signing + "." + b64url(sig)


def cert_form(a, **kw):
    form = {"grant_type": "client_credentials", "client_id": cert_client,
            "scope": SCOPE, "client_assertion_type": ATYPE,
            "client_assertion": a}
    form.update(kw)
    return form


def secret_form(**kw):
    form = {"grant_type": "client_credentials", "client_id": client,
            "client_secret": secret, "scope": SCOPE}
    form.update(kw)
    return form


def expect(name, result, code):
    """code None: a token; else the AADSTS code Entra answers."""
    global failed
    status, body = result
    if code is None:
        good = (status == 200 and body.get("token_type") == "Bearer" and
                body.get("access_token") and
                isinstance(body.get("expires_in"), int))
    else:
        good = (status >= 400 and body.get("error_codes") == [code] and
                "AADSTS%d:" % code in body.get("error_description", ""))
    if not good:
        failed += 1
    print("%sok - %s" % ("" if good else "not ", name))
    if not good:
        print("#   HTTP %d %s" % (status, json.dumps(body)[:300]))


other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
expect("a client secret gets a token", post(secret_form()), None)
expect("a PS256 assertion gets a token", post(cert_form(assertion())), None)
expect("an RS256 assertion gets a token",
       post(cert_form(assertion("RS256"))), None)
jti = str(uuid.uuid4())
post(cert_form(assertion(jti=jti)))
expect("a replayed jti is refused", post(cert_form(assertion(jti=jti))),
       700027)
expect("a wrong secret: AADSTS7000215",
       post(secret_form(client_secret="nope")), 7000215)
expect("an expired secret: AADSTS7000222",
       post(secret_form(client_secret="expired-secret")), 7000222)
expect("an unknown tenant: AADSTS90002",
       post(secret_form(), url=URL.replace(tenant, "nowhere.example")),
       90002)
expect("/common is refused: AADSTS9001023",
       post(secret_form(), url=URL.replace(tenant, "common")), 9001023)
expect("an unknown client: AADSTS700016",
       post(secret_form(client_id=str(uuid.uuid4()))), 700016)
expect("a wrong grant_type: AADSTS70003",
       post(secret_form(grant_type="password")), 70003)
expect("a wrong scope: AADSTS1002012",
       post(secret_form(scope="https://graph.microsoft.com/.default")),
       1002012)
expect("JSON instead of a form is refused",
       post(None, ctype="application/json", raw=b"{}"), 900144)
expect("a duplicated parameter is refused", post(None, raw=(
    urllib.parse.urlencode(secret_form()) + "&scope=" + SCOPE).encode()),
    90015)
expect("secret and assertion together are refused",
       post(cert_form(assertion(), client_secret=secret)), 90014)
no_cred = secret_form()
del no_cred["client_secret"]
expect("no credential at all: AADSTS7000218", post(no_cred), 7000218)
expect("a wrong client_assertion_type is refused",
       post(cert_form(assertion(), client_assertion_type="jwt")), 50027)
expect("a malformed assertion is refused",
       post(cert_form("not.a.jwt")), 50027)
expect("a tampered assertion fails signature validation",
       post(cert_form(assertion(tamper=True))), 700027)
expect("another key's signature fails",
       post(cert_form(assertion(signer=other))), 700027)
expect("a SHA-256 thumbprint in x5t finds no key", post(cert_form(
    assertion("RS256", thumb=b64url(hashlib.sha256(der).digest())))),
    700027)
expect("an unknown thumbprint finds no key", post(cert_form(
    assertion(thumb=b64url(hashlib.sha256(b"x").digest())))), 700027)


def rehead(a, head):
    """The claims and signature of assertion a under another header."""
    _, claims, sig = a.split(".")
    return b64url(json.dumps(head).encode()) + "." + claims + "." + sig


S256 = b64url(hashlib.sha256(der).digest())
expect("alg none is refused", post(cert_form(rehead(assertion(), {
    "alg": "none", "typ": "JWT", "x5t#S256": S256}).rsplit(".", 1)[0] +
    ".")), 700027)
expect("an RS256 signature under alg PS256 fails", post(cert_form(rehead(
    assertion("RS256"), {"alg": "PS256", "typ": "JWT", "x5t#S256": S256}))),
    700027)
expect("a wrong audience: AADSTS700023",
       post(cert_form(assertion(aud="https://example.com/token"))), 700023)
expect("iss differing from client_id: AADSTS700021",
       post(cert_form(assertion(iss=client))), 700021)
expect("sub differing from client_id: AADSTS700021",
       post(cert_form(assertion(sub=client))), 700021)
expect("an expired assertion: AADSTS700024",
       post(cert_form(assertion(nbf=-3600, exp=-1200))), 700024)
expect("an assertion from the future: AADSTS700024",
       post(cert_form(assertion(nbf=3600, exp=3900))), 700024)
expect("a day-long assertion: AADSTS700024",
       post(cert_form(assertion(exp=86400))), 700024)
print("# probe: %d failed" % failed)
sys.exit(1 if failed else 0)
