/*
 * Workload identity federation: client_assertion_file names a file
 * holding a JWT that another identity provider issued (a Kubernetes
 * service-account token projected by Azure Workload Identity, a GitHub
 * Actions OIDC token, any OIDC issuer) and that the app registration
 * trusts as a federated credential. Each token request reads the file
 * afresh (the kubelet rotates it) and sends its token, as it is, as
 * client_assertion in the client-credentials grant. The token is never
 * kept, cached or logged; the file is held to a secret file's rules.
 */
#include "config.h"

#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "cred.h"
#include "http.h"
#include "jwt.h"
#include "secret.h"

/* Kubernetes and GitHub tokens are 1-3 KB; a JWT of 16 KB is no token. */
#define MAX_FEDERATED_TOKEN	(16 * 1024)

static const char *const keys[] = { "client_assertion_file", NULL };

/* What load keeps in a->data. */
struct fed {
	char	*path;
};

const char *
oa2_federated_path(const struct oa2_account *a)
{
	const struct fed *f = a->data;

	return a->kind == &oa2_cred_federated && f != NULL ? f->path : NULL;
}

/* "2026-11-30 15:04:05 UTC" */
static void
fmt_utc(time_t t, char *buf, size_t len)
{
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, len, "%lld", (long long)t);
}

int
oa2_federated_read(const char *path, time_t now, char **out, size_t *outlen,
    struct oa2_jwt_info *info, struct oa2_error *err)
{
	struct oa2_jwt_info local;
	char *buf = NULL, when[40], why[OA2_ERRMSG_MAX];
	size_t len = 0, n;
	int r;

	*out = NULL;
	*outlen = 0;
	if (info == NULL)
		info = &local;
	memset(info, 0, sizeof(*info));
	if ((r = oa2_read_file(path, "federated token file", 1,
	    MAX_FEDERATED_TOKEN, &buf, &len, err)) != 0) {
		if (r == OA2_ERR_NOMEM)
			return r;
		if (access(path, F_OK) == 0)
			return OA2_ERR_CREDENTIAL;	/* its own sentence */
		snprintf(why, sizeof(why), "%s", err->msg);
		return oa2_seterr(err, OA2_ERR_CREDENTIAL, "%s: is the token "
		    "projector (the kubelet, for Azure Workload Identity) "
		    "running and the path right?", why);
	}
	n = len;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
	    buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		n--;
	if (n == 0) {
		r = oa2_seterr(err, OA2_ERR_CREDENTIAL, "federated token file "
		    "%s is empty: is the token projector running?", path);
		goto out;
	}
	if ((r = oa2_jwt_peek(buf, n, info, err)) != 0) {
		if (r == OA2_ERR_NOMEM)
			goto out;
		snprintf(why, sizeof(why), "%s", err->msg);
		r = oa2_seterr(err, OA2_ERR_CREDENTIAL, "the federated token "
		    "in %s is not a JWT: %s", path, why);
		goto out;
	}
	if (info->exp != 0 && info->exp <= now) {
		fmt_utc(info->exp, when, sizeof(when));
		r = oa2_seterr(err, OA2_ERR_CREDENTIAL, "the federated token "
		    "in %s expired at %s: is the token projector running?",
		    path, when);
		goto out;
	}
	buf[n] = '\0';
	*out = buf;
	*outlen = n;
	buf = NULL;	/* transferred */
	r = OA2_OK;
 out:
	if (buf != NULL)
		oa2_freezero(buf, len);
	return r;
}

static int
fed_load(struct oa2_loader *ld, const config_setting_t *g,
    struct oa2_account *a)
{
	const config_setting_t *s = config_setting_get_member(g,
	    "client_assertion_file");
	struct fed *f;
	const char *v = NULL;
	int r;

	if ((r = oa2_conf_string(ld, g, "client_assertion_file", &v)) != 0)
		return r;
	if (*v != '/')
		return oa2_conf_fail(ld, s, OA2_ERR_CONFIG,
		    "client_assertion_file must be an absolute path");
	/*
	 * The file is not read here: it is read on every token request,
	 * and a token projector that has not yet written it (at boot)
	 * must not disable the account until the config is reloaded.
	 */
	if ((f = calloc(1, sizeof(*f))) == NULL ||
	    (f->path = strdup(v)) == NULL) {
		free(f);
		return oa2_seterr(ld->err, OA2_ERR_NOMEM, "out of memory");
	}
	a->data = f;
	return OA2_OK;
}

static void
fed_clear(struct oa2_account *a)
{
	struct fed *f = a->data;

	if (f == NULL)
		return;
	free(f->path);
	free(f);
	a->data = NULL;
}

/* The file's path, not its content: the token in it rotates. */
static int
fed_cache_id(const struct oa2_account *a, EVP_MD_CTX *ctx)
{
	const char *path = oa2_federated_path(a);

	if (path == NULL)
		return 0;
	return EVP_DigestUpdate(ctx, "federated", 10) &&
	    EVP_DigestUpdate(ctx, path, strlen(path) + 1);
}

static int
fed_grant(const struct oa2_account *a, const char *mailbox, time_t now,
    struct oa2_grant *g, struct oa2_error *err)
{
	const char *path = oa2_federated_path(a);
	char *token = NULL;
	size_t len = 0;
	int r;

	(void)mailbox;
	if (path == NULL)
		return oa2_seterr(err, OA2_ERR_CREDENTIAL, "account %s has no "
		    "federated token file", a->match);
	if ((r = oa2_federated_read(path, now, &token, &len, NULL,
	    err)) != 0)
		return r;
	if ((r = oa2_grant_client_credentials(a, g, err)) == 0 &&
	    (oa2_form_add(&g->form, &g->formlen, "client_assertion_type",
	    OA2_ASSERTION_TYPE) != 0 ||
	    oa2_form_add(&g->form, &g->formlen, "client_assertion",
	    token) != 0))
		r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
	oa2_freezero(token, len + 1);
	return r;
}

/*
 * The file as it is now: device, inode, modification time and size.
 * The kubelet's rotation (a new file renamed into place, or a new
 * directory behind a symbolic link) changes the inode.
 */
static void
fed_input_id(const struct oa2_account *a, char *buf, size_t len)
{
	const char *path = oa2_federated_path(a);
	struct stat st;

	if (path == NULL || stat(path, &st) == -1) {
		*buf = '\0';
		return;
	}
	oa2_file_id_text(st.st_dev, st.st_ino, &st.st_mtim, st.st_size, buf,
	    len);
}

static void
fed_describe(const struct oa2_account *a, char *buf, size_t len)
{
	const char *path = oa2_federated_path(a);

	snprintf(buf, len, "federated token file %s",
	    path != NULL ? path : "?");
}

const struct oa2_cred_kind oa2_cred_federated = {
	.name = "federated token",
	.keys = keys,
	.flags = OA2_CRED_CLIENT,
	.load = fed_load,
	.clear = fed_clear,
	.cache_id = fed_cache_id,
	.grant = fed_grant,
	.describe = fed_describe,
	.input_id = fed_input_id,
};
