/*
 * What the files of the sasl-oauth2 command share (tools/sasl-oauth2.c
 * defines these).
 */
#ifndef OA2_TOOL_H
#define OA2_TOOL_H

/* The program's name for messages ("sasl-oauth2"). */
extern const char *progname;

/* The sysexits code for a core error code (OA2_ERR_*). */
int exit_code(int code);

/*
 * A usage error: the printf-formatted sentence (or the usage lines when
 * fmt is NULL) on stderr. Returns EX_USAGE.
 */
int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * sasl-oauth2 certificate new [options] PREFIX (tools/certificate.c);
 * av[0] is "certificate". Returns a sysexits code.
 */
int cmd_certificate(int ac, char **av);

/*
 * sasl-oauth2 login|logout [options] MAILBOX (tools/login.c); av[0] is
 * "login" or "logout". Returns a sysexits code.
 */
int cmd_login(int ac, char **av);

#endif
