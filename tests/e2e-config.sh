#!/bin/sh
# The config file itself (issue 10, items 2 and 8; issue 11): who may
# change it (its owner and mode, and those of every directory on its
# path, as OpenSSH's safe_path()), one broken account never disables
# the others, and the sentences for a missing file and a bad key.
# Real files, real chown, the real plugin (saslclient) and the tool.
set -eu
. "$(dirname "$0")/lib.sh"
[ -x "$TOOL" ] || { echo "tool not built: $TOOL"; exit 99; }
make_ca
start_tokend
write_config
# login NAME USER: the plugin through saslclient; output in $O/NAME.out
login() {
	if saslclient -m XOAUTH2 -u "$2" > "$O/$1.out" 2>&1; then echo 0; else echo 1; fi > "$O/$1.rc"
	: > "$O/$1.err"
}

run cc check-config
expect cc 0 out "OK    *@contoso.com" "the test bed's config passes check-config"

## Item 8: one bad account does not disable the others.
cp "$T/etc/contoso.secret" "$T/etc/fabrikam.secret"
chmod 600 "$T/etc/fabrikam.secret"
write_config "$(printf ',\n\t{ match = "*@fabrikam.com";\n\t  tenant = "%s";\n\t  client_id = "%s";\n\t  client_secret_file = "%s"; }' \
	"$TENANT" "$CLIENT" "$T/etc/fabrikam.secret")"
cp "$T/etc/contoso.secret" "$T/etc/fabrikam.secret"
line=$(grep -n 'client_secret_file = "'"$T"'/etc/contoso.secret"' "$CONF" | cut -d: -f1)
chmod 644 "$T/etc/contoso.secret"
n=$(token_requests)
login bob bob@fabrikam.com
if [ "$(cat "$O/bob.rc")" = 0 ] && [ "$(token_requests)" = $((n + 1)) ]; then
	pass "a 0644 secret file for *@contoso.com: bob@fabrikam.com still logs in"
else
	fail "a 0644 secret file for *@contoso.com: bob@fabrikam.com still logs in"
	sed 's/^/# /' "$O/bob.out"
fi
login alice alice@contoso.com
expect alice 1 out "$CONF:$line: client_secret_file: secret file $T/etc/contoso.secret is accessible by group or others" \
	"and alice@contoso.com fails with the broken account's file:line sentence"
check "the sentence holds no secret" sh -c "! grep -qF -- '$SECRET' '$O/alice.out'"
run tokbob token bob@fabrikam.com
expect tokbob 0 out "." "sasl-oauth2 token: the good account gives a token"
run tokalice token alice@contoso.com
expect tokalice 78 err "$CONF:$line: client_secret_file: secret file $T/etc/contoso.secret is accessible" \
	"sasl-oauth2 token: the broken account's sentence, 78"
run testalice test alice@contoso.com --no-login
expect testalice 78 out "FAIL  account \"*@contoso.com\" (line" \
	"sasl-oauth2 test: the broken account fails at the config step, 78"
run ccone check-config
expect ccone 78 err "$CONF:$line: client_secret_file: secret file $T/etc/contoso.secret is accessible" \
	"check-config: the broken account's sentence, 78"
expect ccone 78 out "OK    *@fabrikam.com" "check-config: the good account is OK"
expect ccone 78 out "FAIL  *@contoso.com" "check-config: the broken account is FAIL"
# Every broken account is listed: break the second one too (a bad value).
sed -i 's|client_secret_file = "'"$T"'/etc/fabrikam.secret"|client_secret_file = "'"$T"'/etc/fabrikam.secret"; timeout = 0|' "$CONF"
run cctwo check-config
expect cctwo 78 err "$CONF:$line: client_secret_file" "check-config: the first broken account"
expect cctwo 78 err "timeout must be between 1 and 300" "check-config: and the second"
check "check-config: two FAIL lines" [ "$(grep -c '^FAIL' "$O/cctwo.out")" = 2 ]
chmod 600 "$T/etc/contoso.secret"

## Issue 11: a world-readable private key is named private_key:.
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=e2e-config" \
	-keyout "$T/etc/app.key" -out "$T/etc/app.crt" 2>/dev/null
chmod 644 "$T/etc/app.key"
write_config "$(printf ',\n\t{ match = "cert@fabrikam.com";\n\t  tenant = "%s";\n\t  client_id = "%s";\n\t  certificate = "%s";\n\t  private_key = "%s"; }' \
	"$TENANT" "$CERT_CLIENT" "$T/etc/app.crt" "$T/etc/app.key")"
kline=$(grep -n 'private_key = "' "$CONF" | cut -d: -f1)
run cckey check-config
expect cckey 78 err "$CONF:$kline: private_key: private key file $T/etc/app.key is accessible by group or others" \
	"a world-readable private key: file:line: private_key:"
write_config

## Issue 11: a missing file says how to name another, and where the sample is.
run ccmissing -c "$T/etc/nosuch.conf" check-config
expect ccmissing 78 err "cannot open configuration file $T/etc/nosuch.conf: No such file or directory" \
	"a missing config: the file"
expect ccmissing 78 err "SASL_OAUTH2_CONF" "a missing config: names SASL_OAUTH2_CONF"
expect ccmissing 78 err "-c FILE" "a missing config: names -c FILE"
expect ccmissing 78 err "a commented sample is /" "a missing config: the sample's path"
expect ccmissing 78 err "/share/doc/sasl-oauth2/" "a missing config: in the doc directory"

## Item 2: who may change the config.
chmod 664 "$CONF"
run ccgw check-config
expect ccgw 78 err "configuration file $CONF is writable by group or others (mode 0664): run chmod go-w $CONF" \
	"a group-writable config is refused, with the chmod"
login gw "$USER1"
expect gw 1 out "is writable by group or others" "the plugin refuses it too"
chmod 600 "$CONF"
chmod 777 "$T/etc"
run ccdir check-config
expect ccdir 78 err "directory $T/etc (on the path of configuration file $CONF) is writable by group or others (mode 0777): run chmod go-w $T/etc" \
	"a config in a directory anyone may write to is refused"
chmod 1777 "$T/etc"
run ccsticky check-config
expect ccsticky 0 out "OK    *@contoso.com" "a sticky directory (as /tmp) is allowed"
chmod 755 "$T/etc"

if [ "$(id -u)" = 0 ] && id nobody > /dev/null 2>&1; then
	# The attack: a config another user wrote names a file only root
	# may read; root's `token` posted it to the configured authority.
	( umask 077; printf 'ROOT-ONLY-%s\n' "$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')" > "$T/root-only" )
	ROOTONLY=$(cat "$T/root-only")
	mkdir "$T/evil"
	sed "s|$T/etc/contoso.secret|$T/root-only|" "$CONF" > "$T/evil/sasl-oauth2.conf"
	chmod 644 "$T/evil/sasl-oauth2.conf"
	chown nobody "$T/evil/sasl-oauth2.conf"
	run ccevil -c "$T/evil/sasl-oauth2.conf" check-config
	expect ccevil 78 err "configuration file $T/evil/sasl-oauth2.conf is owned by nobody" \
		"as root, a config owned by nobody is refused"
	expect ccevil 78 err "run chown root $T/evil/sasl-oauth2.conf" "with the chown that fixes it"
	run tokevil -c "$T/evil/sasl-oauth2.conf" token "$USER1"
	expect tokevil 78 err "is owned by nobody" "sasl-oauth2 token refuses it"
	check "the root-only file never reached the authority" \
		sh -c "! grep -qF -- '$ROOTONLY' '$T/tokend.record' 2>/dev/null"
	( SASL_OAUTH2_CONF="$T/evil/sasl-oauth2.conf"; export SASL_OAUTH2_CONF; login evil "$USER1" )
	expect evil 1 out "is owned by nobody" "the plugin refuses it"
	chown root "$T/evil/sasl-oauth2.conf"
	chown nobody "$T/evil"
	run ccevildir -c "$T/evil/sasl-oauth2.conf" check-config
	expect ccevildir 78 err "directory $T/evil (on the path of configuration file $T/evil/sasl-oauth2.conf) is owned by nobody" \
		"as root, a config in a directory owned by nobody is refused"
	chown root "$T/evil"
	run ccevilok -c "$T/evil/sasl-oauth2.conf" check-config
	expect ccevilok 0 out "OK    *@contoso.com" "owned by root again, it passes"
	# root's config names a CA file another user owns: that user could
	# put their own CA in it and receive the client secret
	mkdir "$T/cadmin"
	cp "$T/ca.pem" "$T/cadmin/ca.pem"
	chown nobody "$T/cadmin/ca.pem"
	sed "s|$T/ca.pem|$T/cadmin/ca.pem|" "$CONF" > "$T/evil/ca.conf"
	chmod 600 "$T/evil/ca.conf"
	run ccevilca -c "$T/evil/ca.conf" check-config
	expect ccevilca 78 err "CA file $T/cadmin/ca.pem is owned by nobody" \
		"as root, a ca_file owned by nobody is refused"
	expect ccevilca 78 err "run chown root $T/cadmin/ca.pem" "with the chown that fixes it"
	n=$(token_requests)
	run tokevilca -c "$T/evil/ca.conf" token "$USER1"
	expect tokevilca 78 err "CA file $T/cadmin/ca.pem is owned by nobody" "sasl-oauth2 token refuses it"
	check "and asked the endpoint nothing" [ "$(token_requests)" = "$n" ]
	chown root "$T/cadmin/ca.pem"
	run ccevilcaok -c "$T/evil/ca.conf" check-config
	expect ccevilcaok 0 out "OK    *@contoso.com" "the ca_file owned by root again (mode 0644), it passes"
	# nobody may keep a config of their own in a directory of their own
	mkdir "$T/own"
	cp "$CONF" "$T/own/sasl-oauth2.conf"
	cp "$T/ca.pem" "$T/own/ca.pem"
	sed -i "s|$T/ca.pem|$T/own/ca.pem|; s|$T/etc/contoso.secret|$T/own/secret|; s|cache_dir = \"$T/cache\"|cache_dir = \"\"|" \
		"$T/own/sasl-oauth2.conf"
	( umask 077; printf '%s\n' "$SECRET" > "$T/own/secret" )
	chown -R nobody "$T/own"
	chmod 755 "$T/own"
	if setpriv --reuid=65534 --regid=65534 --clear-groups "$TOOL" -c "$T/own/sasl-oauth2.conf" check-config \
		> "$O/ccown.out" 2>&1; then pass "nobody's own config in nobody's own directory passes for nobody"
	else fail "nobody's own config in nobody's own directory passes for nobody"; sed 's/^/# /' "$O/ccown.out"; fi
else
	echo "# SKIP ownership rows: they need root and user nobody"
fi

finish
