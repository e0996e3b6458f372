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
printf '. LOGOUT\r\n' > "$T/logout"
clients=""
i=0
while [ $i -lt $N ]; do
	( imtest_login "user$i@contoso.com" XOAUTH2 "$T/imtest.$i" ) &
	clients="$clients $!"
	i=$((i + 1))
done
bad=0
for p in $clients; do wait "$p" || bad=$((bad + 1)); done
check "every imtest exited cleanly ($bad did not)" [ "$bad" -eq 0 ]

ok=$(grep -l "Authenticated\." "$T"/imtest.* | wc -l)
check "$N imtest clients started at once all logged in ($ok)" [ "$ok" -eq "$N" ]
check "with exactly one token request ($(token_requests))" [ "$(token_requests)" = 1 ]
check "Dovecot logged $N XOAUTH2 logins" \
	[ "$(grep -c 'Login: user=<user[0-9]*@contoso.com>, method=XOAUTH2' "$T/dovecot/log")" -eq "$N" ]
finish
