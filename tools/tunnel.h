/*
 * `sasl-oauth2 tunnel`: a pre-authenticated IMAP or POP3 session on
 * stdin and stdout for clients that know no OAuth (fetchmail's plugin,
 * mutt's and neomutt's tunnel, mbsync's Tunnel).
 */
#ifndef OA2_TUNNEL_H
#define OA2_TUNNEL_H

#include "error.h"

struct oa2_tunnel_opts {
	const char	*config;	/* -c FILE, or NULL for the default */
	const char	*ca_file;	/* --ca-file: the mail server's CA, or NULL */
	const char	*mech;		/* --mech: "XOAUTH2" (NULL) or "OAUTHBEARER" */
};

/*
 * Run the tunnel for argv[0..argc-1], the words after "tunnel":
 * imap|pop3 USER [HOST[:PORT] [PORT]]. Logs in with the token of
 * USER's account (same config, cache and back-off as the plugin), then
 * relays bytes between stdin/stdout and the server until either side
 * closes. On failure the client reads "* BYE sentence" (IMAP) or
 * "-ERR sentence" (POP3), and the sentence goes to stderr and, when
 * stderr is not a terminal, to syslog. Returns a sysexits code.
 */
int oa2_tunnel(const struct oa2_tunnel_opts *o, const struct oa2_log *lg,
    int argc, char **argv);

#endif
