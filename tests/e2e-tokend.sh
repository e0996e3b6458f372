#!/bin/sh
# The Entra stand-in is as strict as Entra: hand-made requests (good and
# bad secrets, tenants, grants, scopes, forms, and client assertions with
# wrong signatures, thumbprints, audiences, issuers, times and replayed
# jti) get the answers Microsoft documents (tests/tokend-probe.py).
set -eu
. "$(dirname "$0")/lib.sh"
"$PYTHON3" -c 'import cryptography' 2>/dev/null || skip "python3-cryptography is not installed"
make_ca
start_tokend
"$PYTHON3" "$here/tokend-probe.py" "$TOKEND_PORT" "$T/ca.pem" "$TENANT" \
	"$CLIENT" "$SECRET" "$CERT_CLIENT" "$T/app.crt" "$T/app.key" > "$T/probe.out" 2>&1 || true
cat "$T/probe.out"
npass=$(grep -c '^ok - ' "$T/probe.out" || true)
nfail=$(grep -c '^not ok - ' "$T/probe.out" || true)
check "the probe ran to its end" grep -q '^# probe: ' "$T/probe.out"
check "tokend logged every refusal with its AADSTS code" \
	grep -q "result=error:700023:bad-assertion-700023" "$T/tokend.log"
finish
