#!/bin/sh
# A token endpoint that answers with a redirect: the authority names
# something else (a web server, a portal). Never followed; a
# configuration error that names where the redirect points, and never
# remembered as a refusal for failure_backoff (whatever the body says):
# the next login asks again once the config is put right.
set -eu
. "$(dirname "$0")/lib.sh"
serve_redirect() {
	serve redirect "$PYTHON3" "$here/recorder.py" --mode redirect \
		--cert "$T/server.pem" --key "$T/server.key" \
		--location "https://login.example.test/somewhere/else" \
		--record "$T/redirect.record" --port-file "$T/redirect.port"
}
make_ca
serve_redirect
REDIRECT_PORT=$SERVED_PORT
start_tokend
start_dovecot
write_config ",
	{ match = \"*@fabrikam.com\";
	  authority = \"https://127.0.0.1:$REDIRECT_PORT\";
	  tenant = \"$TENANT\";
	  client_id = \"$CLIENT\";
	  client_secret_file = \"$T/etc/contoso.secret\"; }"
USER2=bob@fabrikam.com
login() {
	SASLCLIENT_DEBUG=1 saslclient -m XOAUTH2 -u "$USER2" > "$T/$1.out" 2>&1
}
redirects() { grep -c "^POST " "$T/redirect.record" || true; }
sentence="the token endpoint answered HTTP 302 (a redirect to login.example.test, not followed): the authority is wrong"

if login first; then fail "a redirect fails the login"; else pass "a redirect fails the login"; fi
check "with a sentence naming where it points" grep -qF "$sentence" "$T/first.out"
check "after one request" [ "$(redirects)" = 1 ]
login second || true
check "not remembered: the next login asks again" [ "$(redirects)" = 2 ]
check "(and says the same)" grep -qF "$sentence" "$T/second.out"
check "(never 'remembered')" sh -c "! grep -q remembered '$T/first.out' '$T/second.out'"
# shellcheck disable=SC2086
timeout $((30 * SLOW)) $VALGRIND "$TOOL" token "$USER2" > "$T/tool.out" 2>&1 </dev/null && st=0 || st=$?
check "sasl-oauth2 token: EX_CONFIG ($st)" [ "$st" = 78 ]
check "with the sentence" grep -qF "$sentence" "$T/tool.out"
check "the other account is untouched" imtest_ok "$USER1" XOAUTH2
check "the secret appears in no output" \
	sh -c "! grep -rqF -- '$SECRET' '$T'/*.out '$T/redirect.record'"
finish
