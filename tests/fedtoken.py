#!/usr/bin/python3
"""Make a federated token for the tests: a JWT as a Kubernetes
service-account token projected by Azure Workload Identity looks,
signed RS256 by a test issuer's key (the Entra stand-in, tokend.py,
holds the public half).

fedtoken.py KEY ISSUER SUBJECT [--aud A] [--exp-in SECONDS] [--kid K]
prints the token (no newline) on standard output.
"""

import argparse
import base64
import json
import sys
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("key", help="the issuer's private key (PEM)")
    ap.add_argument("issuer")
    ap.add_argument("subject")
    ap.add_argument("--aud", default="api://AzureADTokenExchange")
    ap.add_argument("--exp-in", type=int, default=3600,
                    help="seconds from now to exp (negative: expired)")
    ap.add_argument("--kid", default="fed1")
    args = ap.parse_args()
    with open(args.key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    now = int(time.time())
    head = {"alg": "RS256", "kid": args.kid}
    claims = {"aud": [args.aud], "iss": args.issuer, "sub": args.subject,
              "iat": min(now, now + args.exp_in - 60),
              "nbf": min(now, now + args.exp_in - 60),
              "exp": now + args.exp_in,
              "kubernetes.io": {"namespace": "mail",
                                "serviceaccount": {"name": "postfix"}}}
    data = b64url(json.dumps(head).encode()) + "." + \
        b64url(json.dumps(claims).encode())
    sig = key.sign(data.encode(), padding.PKCS1v15(), hashes.SHA256())
    sys.stdout.write(data + "." + b64url(sig))


if __name__ == "__main__":
    main()
