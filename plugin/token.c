/*
 * The client-credentials grant: build the request (client secret or
 * signed assertion), send it, and read Entra's answer with jansson.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "conf.h"
#include "cred.h"
#include "http.h"
#include "jwt.h"
#include "secret.h"
#include "token.h"

#define MAX_ANSWER	(64 * 1024)
#define MAX_EXPIRES_IN	(366L * 86400)

void
oa2_token_clear(struct oa2_token *tok)
{
	if (tok == NULL)
		return;
	oa2_freezero_str(&tok->access_token);
	tok->expires_at = 0;
}

int
oa2_token_copy(struct oa2_token *dst, const struct oa2_token *src)
{
	oa2_token_clear(dst);
	if (src->access_token != NULL &&
	    (dst->access_token = strdup(src->access_token)) == NULL)
		return OA2_ERR_NOMEM;
	dst->expires_at = src->expires_at;
	return OA2_OK;
}

/*
 * What the codes an app-only token request can meet mean, and what to
 * do about them. Sourced from Microsoft's "Microsoft Entra
 * authentication and authorization error codes" reference
 * (learn.microsoft.com/entra/identity-platform/reference-error-codes).
 */
static const struct {
	long		code;
	const char	*meaning;
} aadsts[] = {
	{ 7000215, "the client secret is wrong: use the secret's Value, "
	    "not its Secret ID" },
	{ 7000222, "the client secret has expired: create a new one" },
	{ 7000218, "neither client_secret nor client_assertion was sent" },
	{ 7000112, "the application is disabled" },
	{ 700016, "no application with this client_id in the tenant: check "
	    "client_id and tenant" },
	{ 700027, "the assertion's signature or certificate thumbprint is "
	    "not known to the application: upload the certificate" },
	{ 700024, "the assertion is not within its valid time range: check "
	    "the clock (and, for a federated token, that its file is "
	    "refreshed)" },
	{ 700023, "the scope, or the assertion's audience, is not valid "
	    "for this token endpoint" },
	{ 700030, "the certificate is not authorized for this application" },
	{ 70002, "the client credentials are not valid" },
	{ 70011, "the scope is invalid: use "
	    "https://outlook.office365.com/.default" },
	{ 1002012, "the scope is invalid: app-only requests need a scope "
	    "ending in /.default" },
	{ 500011, "the resource principal (the scope's API) was not found "
	    "in the tenant" },
	{ 90002, "the tenant does not exist: check tenant and "
	    "authority" },
	{ 9001023, "this grant cannot use the /common or /consumers "
	    "endpoint: name the tenant" },
	/*
	 * Federated credentials (workload identity federation): from
	 * Microsoft's "Important considerations and restrictions for
	 * federated identity credentials" (70021) and the Azure DevOps
	 * workload identity troubleshooting table (the others), both on
	 * learn.microsoft.com; 700212's words are those Entra itself sends.
	 */
	{ 70021, "no federated credential of the application matches the "
	    "token's issuer, subject and audience (or one added minutes ago "
	    "has not reached every server yet)" },
	{ 700211, "no federated credential of the application has the "
	    "token's issuer" },
	{ 700212, "no federated credential of the application has the "
	    "token's audience (use api://AzureADTokenExchange)" },
	{ 700213, "no federated credential of the application has the "
	    "token's subject (compared exactly, case included)" },
	{ 70025, "the application has no federated credentials" },
	{ 700223, "workload identity federation is constrained or disabled "
	    "in this tenant" },
	{ 700238, "the tenant does not allow this issuer to use workload "
	    "identity federation" },
	{ 90024, "Entra is overloaded: try again" },
	{ 90055, "too many requests for this tenant: try again later" },
};

const char *
oa2_aadsts_meaning(long code)
{
	size_t i;

	for (i = 0; i < sizeof(aadsts) / sizeof(aadsts[0]); i++)
		if (aadsts[i].code == code)
			return aadsts[i].meaning;
	return NULL;
}

static int parse_code(long, const char *, size_t, time_t, struct oa2_token *,
    long *, struct oa2_error *);

/* expires_in: a JSON integer or a string of digits, 1 s .. 1 year. */
static int
parse_expires_in(const json_t *v, long *out)
{
	const char *s;
	char *end;
	long n;

	if (json_is_integer(v)) {
		if (json_integer_value(v) < 1 ||
		    json_integer_value(v) > MAX_EXPIRES_IN)
			return -1;
		*out = (long)json_integer_value(v);
		return 0;
	}
	if (!json_is_string(v))
		return -1;
	s = json_string_value(v);
	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	n = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || n < 1 || n > MAX_EXPIRES_IN)
		return -1;
	*out = n;
	return 0;
}

int
oa2_token_printable(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > OA2_TOKEN_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (s[i] <= 0x20 || s[i] >= 0x7f)
			return 0;
	return 1;
}

/*
 * Entra's error body -> "token request refused (HTTP 401):
 * invalid_client: AADSTS7000215 (meaning): first line of the
 * description", sanitised; permanent or transient.
 */
static int
parse_error(long status, json_t *root, long *codep, struct oa2_error *err)
{
	const char *error, *desc, *meaning = NULL, *p;
	char e[64], d[200], codes[32] = "";
	size_t dlen;
	json_t *v;
	long code = 0;
	int transient;

	v = json_object_get(root, "error");
	error = json_is_string(v) ? json_string_value(v) : "unknown_error";
	v = json_object_get(root, "error_description");
	desc = json_is_string(v) ? json_string_value(v) : "";
	dlen = strcspn(desc, "\r\n");		/* the first line only */
	v = json_array_get(json_object_get(root, "error_codes"), 0);
	if (json_is_integer(v) && json_integer_value(v) > 0 &&
	    json_integer_value(v) < 100000000)
		code = (long)json_integer_value(v);
	else if (strncmp(desc, "AADSTS", 6) == 0 &&
	    desc[6] >= '0' && desc[6] <= '9') {
		errno = 0;
		code = strtol(desc + 6, NULL, 10);
		if (errno != 0 || code >= 100000000)
			code = 0;
	}
	*codep = code;
	if (code > 0) {
		snprintf(codes, sizeof(codes), ": AADSTS%ld", code);
		meaning = oa2_aadsts_meaning(code);
	}
	/* "AADSTS7000215: Invalid client secret..." -> "Invalid client..." */
	if (strncmp(desc, "AADSTS", 6) == 0 &&
	    (p = strstr(desc, ": ")) != NULL && (size_t)(p - desc) < dlen) {
		dlen -= (size_t)(p + 2 - desc);
		desc = p + 2;
	}
	oa2_sanitize(e, sizeof(e), error, strlen(error), 48);
	oa2_sanitize(d, sizeof(d), desc, dlen, 160);
	transient = status == 429 || status >= 500 ||
	    strcmp(error, "temporarily_unavailable") == 0;
	return oa2_seterr(err, transient ? OA2_ERR_TRANSIENT : OA2_ERR_DENIED,
	    "token request refused (HTTP %ld): %s%s%s%s%s%s%s", status, e,
	    codes, meaning != NULL ? " (" : "", meaning != NULL ? meaning : "",
	    meaning != NULL ? ")" : "", *d != '\0' ? ": " : "", d);
}

/*
 * A redirect is never followed: the token endpoint does not move, so
 * the authority names something else (a web server, a captive portal).
 * A configuration error, not a refusal: never remembered.
 */
static int
redirect_error(long status, const char *location, struct oa2_error *err)
{
	return oa2_seterr(err, OA2_ERR_CONFIG, "the token endpoint answered "
	    "HTTP %ld (a redirect%s%s, not followed): the authority is wrong",
	    status, location != NULL && *location != '\0' ? " to " : "",
	    location != NULL ? location : "");
}

int
oa2_token_parse(long status, const char *body, size_t len, time_t now,
    struct oa2_token *out, struct oa2_error *err)
{
	long code;

	return parse_code(status, body, len, now, out, &code, err);
}

/* oa2_token_parse, and the AADSTS code of a refusal into *codep (or 0). */
static int
parse_code(long status, const char *body, size_t len, time_t now,
    struct oa2_token *out, long *codep, struct oa2_error *err)
{
	json_t *root, *tok, *type;
	long expires_in;
	int r;

	memset(out, 0, sizeof(*out));
	*codep = 0;
	if (status >= 300 && status < 400)
		return redirect_error(status, NULL, err);
	root = body != NULL ?
	    json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
	if (!json_is_object(root)) {
		json_decref(root);
		if (status == 200)
			return oa2_seterr(err, OA2_ERR_RESPONSE, "the token "
			    "endpoint answered HTTP 200 with a body that is "
			    "not a JSON object (or not valid JSON)");
		return oa2_seterr(err, status == 429 || status >= 500 ?
		    OA2_ERR_TRANSIENT : OA2_ERR_RESPONSE, "the token endpoint "
		    "answered HTTP %ld with a non-JSON body%s", status,
		    status == 404 ? " (check authority and tenant)" : "");
	}
	if (status != 200) {
		r = parse_error(status, root, codep, err);
		goto out;
	}
	r = OA2_ERR_RESPONSE;
	tok = json_object_get(root, "access_token");
	type = json_object_get(root, "token_type");
	if (!json_is_string(tok)) {
		oa2_seterr(err, r, "the token endpoint's answer has no "
		    "access_token");
		goto out;
	}
	if (!oa2_token_printable(json_string_value(tok),
	    json_string_length(tok))) {
		oa2_seterr(err, r, "the token endpoint sent an access_token "
		    "that is empty, too long, or holds spaces or control "
		    "characters");
		goto out;
	}
	if (!json_is_string(type)) {
		oa2_seterr(err, r, "the token endpoint's answer has no "
		    "token_type");
		goto out;
	}
	if (strcasecmp(json_string_value(type), "Bearer") != 0) {
		char t[40];

		oa2_sanitize(t, sizeof(t), json_string_value(type),
		    json_string_length(type), 32);
		oa2_seterr(err, r, "the token endpoint sent a token_type "
		    "other than Bearer: \"%s\"", t);
		goto out;
	}
	if (json_object_get(root, "expires_in") == NULL) {
		oa2_seterr(err, r, "the token endpoint's answer has no "
		    "expires_in");
		goto out;
	}
	if (parse_expires_in(json_object_get(root, "expires_in"),
	    &expires_in) != 0) {
		oa2_seterr(err, r, "the token endpoint sent an expires_in "
		    "that is not a number of seconds between 1 and one year");
		goto out;
	}
	if ((out->access_token = strdup(json_string_value(tok))) == NULL) {
		r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
		goto out;
	}
	out->expires_at = now + expires_in;
	r = OA2_OK;
 out:
	/*
	 * We hold the only reference to root, so the string buffers are
	 * ours to overwrite: wipe the token inside it before it is freed.
	 * (jansson's lexer frees its own scratch copy unwiped; the process
	 * allocator is not ours to replace from inside a plugin.)
	 */
	tok = json_object_get(root, "access_token");
	if (json_is_string(tok))
		oa2_wipe((char *)json_string_value(tok),
		    json_string_length(tok));
	json_decref(root);
	return r;
}

static double
elapsed(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) +
	    (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* One credential's request, with one retry of a transient refusal. */
int
oa2_token_fetch_cred(const struct oa2_account *acct, const struct oa2_log *lg,
    time_t now, struct oa2_token *out, long *code, struct oa2_error *err)
{
	struct oa2_http_request req;
	struct oa2_http_response resp = { .retry_after = -1 };
	struct oa2_grant g;
	struct timespec t0, ts;
	long wait;
	int r, attempt;

	memset(out, 0, sizeof(*out));
	*code = 0;
	if (acct->kind == NULL)
		return oa2_seterr(err, OA2_ERR_CREDENTIAL, "account %s has no "
		    "usable credential", acct->match);
	if (acct->kind->fetch != NULL) {
		r = acct->kind->fetch(acct, acct->mailbox, lg, now,
		    acct->timeout, out, code, err);
		goto done;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (attempt = 0; attempt < 2; attempt++) {
		/* a new grant (a fresh assertion) for each attempt */
		memset(&g, 0, sizeof(g));
		if ((r = acct->kind->grant(acct, acct->mailbox, now, &g,
		    err)) != 0) {
			oa2_grant_clear(&g);
			return r;
		}
		memset(&req, 0, sizeof(req));
		req.url = g.url != NULL ? g.url : acct->token_url;
		req.body = g.form;
		req.bodylen = g.formlen;
		if (acct->ca != NULL) {
			req.ca_data = acct->ca->data;
			req.ca_len = acct->ca->len;
			req.ca_name = acct->ca->path;
		}
		req.timeout = acct->timeout - (long)elapsed(&t0);
		if (req.timeout < 1)
			req.timeout = 1;
		req.max_body = MAX_ANSWER;
		if (acct->client_id != NULL)
			oa2_log(lg, OA2_LOG_DEBUG, "requesting a token for "
			    "client_id %s from %s", acct->client_id, req.url);
		else
			oa2_log(lg, OA2_LOG_DEBUG, "requesting a token for "
			    "account %s (%s) from %s", acct->match,
			    acct->kind->name, req.url);
		r = oa2_http_post(&req, &resp, err);
		oa2_grant_clear(&g);
		if (r == 0 && resp.status >= 300 && resp.status < 400)
			r = redirect_error(resp.status, resp.location, err);
		else if (r == 0)
			r = parse_code(resp.status, resp.body, resp.len,
			    now, out, code, err);
		wait = resp.retry_after >= 0 ? resp.retry_after : 1;
		oa2_http_response_clear(&resp);
		/*
		 * One retry of a transient refusal, and only when the wait
		 * and a second request still fit within the timeout (plus
		 * the one second a second request is always allowed).
		 */
		if (r != OA2_ERR_TRANSIENT || attempt == 1 ||
		    elapsed(&t0) + (double)wait + 1 >= (double)acct->timeout)
			break;
		oa2_log(lg, OA2_LOG_WARNING, "%s; retrying in %ld s", err->msg,
		    wait);
		ts.tv_sec = wait;
		ts.tv_nsec = 0;
		while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
			;
		now += (time_t)(elapsed(&t0) + 0.5);
	}
 done:
	if (r == OA2_ERR_DENIED && err != NULL && acct->kind->explain != NULL)
		acct->kind->explain(acct, err);
	if (r == 0)
		oa2_log(lg, OA2_LOG_INFO, "got a token for account %s, expires "
		    "in %ld s", acct->match, (long)(out->expires_at - now));
	return r;
}

/*
 * The AADSTS codes by which the endpoint refuses the credential itself
 * (not the client, tenant, scope or clock): after one of them the next
 * credential is tried. From Microsoft's error code reference and the
 * Azure SDK's troubleshooting tables.
 */
int
oa2_aadsts_credential(long code)
{
	switch (code) {
	case 7000215:	/* invalid client secret */
	case 7000222:	/* expired client secret */
	case 70002:	/* error validating the credentials */
	case 700027:	/* assertion signature / thumbprint not known */
	case 700030:	/* certificate not authorized */
	case 5002730:	/* unsupported key for the signing algorithm */
		return 1;
	default:
		return 0;
	}
}

/* "AADSTS7000222: the client secret has expired..." for a refusal. */
static void
refusal(char *buf, size_t len, long code)
{
	const char *m = oa2_aadsts_meaning(code);

	snprintf(buf, len, "AADSTS%ld%s%s", code, m != NULL ? ": " : "",
	    m != NULL ? m : "");
}

/*
 * Weak, so that tests/test-cache.c can put a counting stub in its place
 * while still linking the rest of this file from the core library.
 *
 * With a next credential (rollover), a refusal of the one in use for a
 * credential reason (oa2_aadsts_credential) makes the same call try the
 * other one at once; when that works, the two are swapped for good (for
 * this process, until the config is loaded again): acct changes, which
 * its callers allow by holding acct->lock (cache.c) or by being the
 * only thread (the tool).
 */
__attribute__((weak)) int
oa2_token_fetch(const struct oa2_account *cacct, const struct oa2_log *lg,
    time_t now, struct oa2_token *out, struct oa2_error *err)
{
	struct oa2_account *acct = (struct oa2_account *)cacct;
	struct oa2_error local;
	char first[200], second[200];
	long code, code2;
	int r;

	if (err == NULL)
		err = &local;
	r = oa2_token_fetch_cred(acct, lg, now, out, &code, err);
	if (r != OA2_ERR_DENIED || !oa2_aadsts_credential(code) ||
	    !oa2_account_has_next(acct))
		return r;
	refusal(first, sizeof(first), code);
	oa2_log(lg, OA2_LOG_INFO, "%s of account %s was refused (%s); trying "
	    "%s", oa2_account_cred_name(acct, 0), acct->match, first,
	    oa2_account_cred_name(acct, 1));
	oa2_account_rotate(acct);
	r = oa2_token_fetch_cred(acct, lg, now, out, &code2, err);
	if (r == 0) {
		oa2_log(lg, OA2_LOG_WARNING, "%s of account %s was refused "
		    "(%s); %s works%s", oa2_account_cred_name(acct, 1),
		    acct->match, first, oa2_account_cred_name(acct, 0),
		    acct->rotated ? ": make it current (move it to the "
		    "current key and remove the next_ one)" : "");
		return r;
	}
	oa2_account_rotate(acct);	/* back: the other one is first */
	if (r == OA2_ERR_DENIED && code2 > 0) {
		refusal(second, sizeof(second), code2);
		return oa2_seterr(err, r, "both credentials of account %s "
		    "were refused: %s (%s) and %s (%s)", acct->match,
		    oa2_account_cred_name(acct, 0), first,
		    oa2_account_cred_name(acct, 1), second);
	}
	oa2_sanitize(second, sizeof(second), err->msg, strlen(err->msg),
	    sizeof(second) - 1);
	return oa2_seterr(err, r, "%s of account %s was refused (%s), and "
	    "%s failed: %s", oa2_account_cred_name(acct, 0), acct->match,
	    first, oa2_account_cred_name(acct, 1), second);
}
