#!/bin/sh
# Many client processes starting together with an empty cache make one
# token request between them (flock single flight), and all log in.
set -eu
. "$(dirname "$0")/lib.sh"
testbed
N=${CLIENTS:-50}
# a slow endpoint widens the window in which the processes race
tokend_mode "slow:0.5"

# wait only for the clients: a bare "wait" would also wait for tokend
clients=""
i=0
while [ $i -lt $N ]; do
	( printf '. LOGOUT\r\n' > "$T/logout.$i"
	  timeout $((60 * SLOW)) $WRAP "$IMTEST" -s -p "$IMAPS_PORT" -m XOAUTH2 -a "user$i@contoso.com" \
		-f "$T/logout.$i" 127.0.0.1 > "$T/imtest.$i" 2>&1 </dev/null ) &
	clients="$clients $!"
	i=$((i + 1))
done
for p in $clients; do wait "$p" || true; done

ok=$(grep -l "Authenticated\." "$T"/imtest.* | wc -l)
check "$N imtest clients started at once all logged in ($ok)" [ "$ok" -eq "$N" ]
check "with exactly one token request ($(token_requests))" [ "$(token_requests)" = 1 ]
check "Dovecot logged $N XOAUTH2 logins" \
	[ "$(grep -c 'Login: user=<user[0-9]*@contoso.com>, method=XOAUTH2' "$T/dovecot/log")" -eq "$N" ]
finish
