/*
 * The SASL plugin libsasl2 loads: a small loader, linked only against
 * libc, so that a process that never uses XOAUTH2 or OAUTHBEARER pays
 * next to nothing for it (libsasl2 loads every plugin of its directory
 * into every client). The mechanisms live in the implementation object
 * sasl-oauth2-impl.so (plugin/impl.c, mech.c and the core, with
 * libcurl, OpenSSL, libconfig and jansson), which this file dlopen()s:
 *
 * - at plug_init when the process may still chroot or change identity
 *   (effective uid 0, a setuid/setgid/file-capability program, or any
 *   capability) and the configuration file exists: Postfix calls
 *   sasl_client_init as root and chroots after it, so the
 *   configuration, secrets, keys and CA bundle are read then, exactly
 *   as without this loader; libsasl2 then gets the implementation's
 *   own mechanism table and calls it directly;
 * - otherwise on the first sasl_client_start of either mechanism: such
 *   a process cannot lose access to the files in between, and without
 *   a configuration file there is nothing to read before a chroot.
 * The SASL option oauth2_preload (or $SASL_OAUTH2_PRELOAD) says yes for
 * a host that confines itself without privileges (Landlock, a user
 * namespace), or no for a root program that never chroots.
 *
 * docs/loading.md has the rules and the measurements.
 */
#include "config.h"

#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/capability.h>
#endif

#include <sasl/sasl.h>
#include <sasl/saslplug.h>

#include "confpath.h"

#ifndef OA2_IMPL_PATH
#define OA2_IMPL_PATH "/usr/lib/sasl-oauth2/sasl-oauth2-impl.so"
#endif
#define IMPL_NAME	"sasl-oauth2-impl.so"
#define NMECHS		2

typedef int impl_init_fn(const sasl_utils_t *, int, int *,
    sasl_client_plug_t **, int *);

int sasl_client_plug_init(const sasl_utils_t *, int, int *,
    sasl_client_plug_t **, int *);

/*
 * The loader's state. The implementation is never dlclose'd: libsasl2
 * may unload this object at sasl_client_done, and a later
 * sasl_client_init loads it again and finds the implementation already
 * mapped (dlopen returns the same handle).
 */
static struct {
	pthread_mutex_t		lock;
	void			*handle;	/* the implementation */
	impl_init_fn		*init;
	const sasl_utils_t	*utils;		/* plug_init's, for a later init */
	int			maxversion;
	sasl_client_plug_t	*impl;		/* its table once initialised */
	int			ready;		/* impl set (atomic read) */
	int			pending_frees;	/* mech_free calls still due */
	char			why[600];	/* why the load failed */
	char			absent[300];	/* the config file that did not
						   exist at plug_init, when that
						   alone deferred the load */
} shim = { PTHREAD_MUTEX_INITIALIZER, NULL, NULL, NULL, 0, NULL, 0, 0,
    "", "" };

/*
 * Whether the process could still chroot, drop privileges or change
 * identity after plug_init, and so lose access to the files.
 */
static int
may_still_chroot(void)
{
	if (geteuid() == 0 || getauxval(AT_SECURE) != 0)
		return 1;
#ifdef __linux__
	{
		struct __user_cap_header_struct h;
		struct __user_cap_data_struct d[2];

		memset(&h, 0, sizeof(h));
		memset(d, 0, sizeof(d));
		h.version = _LINUX_CAPABILITY_VERSION_3;
		if (syscall(SYS_capget, &h, d) != 0)
			return 1;
		return (d[0].permitted | d[1].permitted |
		    d[0].effective | d[1].effective) != 0;
	}
#else
	return 1;
#endif
}

/* The SASL option name of this plugin's, or NULL. */
static const char *
sasl_option(const sasl_utils_t *utils, const char *name)
{
	const char *v = NULL;
	unsigned len;

	if (utils->getopt == NULL || utils->getopt(utils->getopt_context,
	    "XOAUTH2", name, &v, &len) != SASL_OK)
		return NULL;
	return v;
}

/* 1, 0 or -1 for a yes, a no or anything else (unset) in v. */
static int
yes_no(const char *v)
{
	static const char *const yes[] = { "1", "yes", "true", "on", NULL };
	static const char *const no[] = { "0", "no", "false", "off", NULL };
	int i;

	for (i = 0; v != NULL && yes[i] != NULL; i++)
		if (strcasecmp(v, yes[i]) == 0)
			return 1;
	for (i = 0; v != NULL && no[i] != NULL; i++)
		if (strcasecmp(v, no[i]) == 0)
			return 0;
	return -1;
}

/*
 * The SASL option oauth2_preload, else $SASL_OAUTH2_PRELOAD: 1 (load at
 * plug_init), 0 (on first use) or -1 (unset: the process decides). The
 * environment's yes is taken in a setuid program too (it only makes
 * the loading earlier), its no is not.
 */
static int
preload_option(const sasl_utils_t *utils)
{
	int v = yes_no(sasl_option(utils, "oauth2_preload"));

	if (v == -1 && (v = yes_no(getenv("SASL_OAUTH2_PRELOAD"))) == 0 &&
	    secure_getenv("SASL_OAUTH2_PRELOAD") == NULL)
		v = -1;		/* the environment's no, in a setuid program */
	return v;
}

/*
 * Whether the configuration file is certainly not there (ENOENT,
 * ENOTDIR): then a process that may chroot has nothing to read before
 * it, and loads nothing. Its path goes to shim.absent.
 */
static int
config_absent(const sasl_utils_t *utils)
{
	const char *path = oa2_config_path(sasl_option(utils,
	    "oauth2_config"));
	struct stat st;

	if (stat(path, &st) == 0 || (errno != ENOENT && errno != ENOTDIR))
		return 0;
	snprintf(shim.absent, sizeof(shim.absent), "%s", path);
	return 1;
}

/*
 * Where the implementation is: beside this plugin's real path when it
 * is there (the build tree, where the tests point SASL_PATH at the
 * plugin; only whoever can write the directory libsasl2 loaded this
 * plugin from can put it there), else where make install put it.
 */
static void
impl_path(char *buf, size_t len)
{
	char real[PATH_MAX], *slash;
	Dl_info info;

	snprintf(buf, len, "%s", OA2_IMPL_PATH);
	if (dladdr((void *)sasl_client_plug_init, &info) == 0 ||
	    info.dli_fname == NULL || realpath(info.dli_fname, real) == NULL ||
	    (slash = strrchr(real, '/')) == NULL)
		return;
	slash[1] = '\0';
	if (strlen(real) + sizeof(IMPL_NAME) > sizeof(real))
		return;
	strcat(real, IMPL_NAME);
	if (access(real, F_OK) == 0)
		snprintf(buf, len, "%s", real);
}

/* dlopen the implementation once; 0, or -1 with shim.why set. */
static int
load_impl(void)
{
	char path[PATH_MAX];
	const char *e;

	if (shim.handle != NULL)
		return 0;
	impl_path(path, sizeof(path));
	if ((shim.handle = dlopen(path, RTLD_LAZY | RTLD_LOCAL)) == NULL) {
		e = dlerror();
		/* dlerror's sentence starts with the path */
		snprintf(shim.why, sizeof(shim.why), "cannot load the "
		    "implementation: %.500s", e != NULL ? e : path);
		return -1;
	}
	shim.init = (impl_init_fn *)dlsym(shim.handle, "oa2_impl_plug_init");
	if (shim.init == NULL) {
		snprintf(shim.why, sizeof(shim.why), "%.250s has no "
		    "oa2_impl_plug_init: it does not match this plugin", path);
		shim.handle = NULL;	/* kept mapped; not used */
		return -1;
	}
	return 0;
}

/* The implementation's table, initialised; 0, or -1 with shim.why. */
static int
start_impl(const sasl_utils_t *utils, int maxversion)
{
	int version, count, r;

	if (load_impl() != 0)
		return -1;
	r = shim.init(utils, maxversion, &version, &shim.impl, &count);
	if (r != SASL_OK || count != NMECHS || shim.impl == NULL) {
		snprintf(shim.why, sizeof(shim.why), "its implementation "
		    "failed to start (%s)", sasl_errstring(r, NULL, NULL));
		shim.impl = NULL;
		return -1;
	}
	shim.pending_frees = NMECHS;
	__atomic_store_n(&shim.ready, 1, __ATOMIC_RELEASE);
	return 0;
}

/* Index of a mechanism of the loader's table, from its glob_context. */
static const int mech_index[NMECHS] = { 0, 1 };

static int
lazy_new(void *glob, sasl_client_params_t *params, void **conn_context)
{
	int i = *(const int *)glob, r = 0, unmapped = 0;
	char why[sizeof(shim.why)], absent[sizeof(shim.absent)];
	char msg[sizeof(why) + sizeof(absent) + 128];

	if (!__atomic_load_n(&shim.ready, __ATOMIC_ACQUIRE)) {
		pthread_mutex_lock(&shim.lock);
		if (!shim.ready)
			r = start_impl(shim.utils, shim.maxversion);
		memcpy(why, shim.why, sizeof(why));
		memcpy(absent, shim.absent, sizeof(absent));
		unmapped = shim.handle == NULL && absent[0] != '\0';
		pthread_mutex_unlock(&shim.lock);
		if (r != 0) {
			if (unmapped)	/* most likely a chroot since then */
				snprintf(msg, sizeof(msg), "XOAUTH2 and "
				    "OAUTHBEARER are unavailable: %.300s did "
				    "not exist when this program started, so "
				    "the plugin loaded nothing then, and now it "
				    "%s; restart the program (Postfix: postfix "
				    "reload)", absent, why);
			else
				snprintf(msg, sizeof(msg), "XOAUTH2 and "
				    "OAUTHBEARER are unavailable: %s; "
				    "reinstall sasl-oauth2 (Debian: "
				    "libsasl2-modules-oauth2)", why);
			params->utils->seterror(params->utils->conn,
			    SASL_NOLOG, "%s", msg);
			params->utils->log(params->utils->conn, SASL_LOG_ERR,
			    "sasl-oauth2: %s", msg);
			return SASL_FAIL;
		}
	}
	return shim.impl[i].mech_new(shim.impl[i].glob_context, params,
	    conn_context);
}

/* step and dispose only follow a successful lazy_new: impl is set. */
static int
lazy_step(int i, void *conn_context, sasl_client_params_t *params,
    const char *in, unsigned inlen, sasl_interact_t **prompt_need,
    const char **out, unsigned *outlen, sasl_out_params_t *oparams)
{
	return shim.impl[i].mech_step(conn_context, params, in, inlen,
	    prompt_need, out, outlen, oparams);
}

static int
lazy_step0(void *c, sasl_client_params_t *p, const char *in,
    unsigned inlen, sasl_interact_t **pn, const char **out,
    unsigned *outlen, sasl_out_params_t *op)
{
	return lazy_step(0, c, p, in, inlen, pn, out, outlen, op);
}

static int
lazy_step1(void *c, sasl_client_params_t *p, const char *in,
    unsigned inlen, sasl_interact_t **pn, const char **out,
    unsigned *outlen, sasl_out_params_t *op)
{
	return lazy_step(1, c, p, in, inlen, pn, out, outlen, op);
}

static void
lazy_dispose0(void *conn_context, const sasl_utils_t *utils)
{
	if (conn_context != NULL)
		shim.impl[0].mech_dispose(conn_context, utils);
}

static void
lazy_dispose1(void *conn_context, const sasl_utils_t *utils)
{
	if (conn_context != NULL)
		shim.impl[1].mech_dispose(conn_context, utils);
}

/*
 * Once per mechanism at sasl_client_done: hand it on when the
 * implementation was started, and after the last, start it afresh on
 * the next use (after a new sasl_client_init).
 */
static void
lazy_free(void *glob, const sasl_utils_t *utils)
{
	int i = *(const int *)glob;

	pthread_mutex_lock(&shim.lock);
	if (shim.ready) {
		shim.impl[i].mech_free(shim.impl[i].glob_context, utils);
		if (--shim.pending_frees == 0) {
			__atomic_store_n(&shim.ready, 0, __ATOMIC_RELEASE);
			shim.impl = NULL;
		}
	}
	pthread_mutex_unlock(&shim.lock);
}

static const unsigned long prompts[] = {
	SASL_CB_AUTHNAME, SASL_CB_LIST_END
};

/* The same names, flags and prompts as mech.c's table. */
static sasl_client_plug_t lazy_plugs[NMECHS] = {
	{
		"XOAUTH2", 0, SASL_SEC_NOANONYMOUS | SASL_SEC_NODICTIONARY,
		SASL_FEAT_WANT_CLIENT_FIRST | SASL_FEAT_ALLOWS_PROXY,
		prompts, (void *)&mech_index[0], lazy_new, lazy_step0,
		lazy_dispose0, lazy_free, NULL, NULL, NULL
	},
	{
		"OAUTHBEARER", 0, SASL_SEC_NOANONYMOUS | SASL_SEC_NODICTIONARY,
		SASL_FEAT_WANT_CLIENT_FIRST | SASL_FEAT_ALLOWS_PROXY,
		prompts, (void *)&mech_index[1], lazy_new, lazy_step1,
		lazy_dispose1, lazy_free, NULL, NULL, NULL
	},
};

__attribute__((visibility("default"))) int
sasl_client_plug_init(const sasl_utils_t *utils, int maxversion,
    int *out_version, sasl_client_plug_t **pluglist, int *plugcount)
{
	int pre;

	if (maxversion < SASL_CLIENT_PLUG_VERSION) {
		utils->seterror(utils->conn, 0, "sasl-oauth2: libsasl2 is "
		    "too old (client plugin version %d < %d)", maxversion,
		    SASL_CLIENT_PLUG_VERSION);
		return SASL_BADVERS;
	}
	*out_version = SASL_CLIENT_PLUG_VERSION;
	pthread_mutex_lock(&shim.lock);
	shim.utils = utils;
	shim.maxversion = maxversion;
	/*
	 * Eagerly, the implementation's own table goes to libsasl2, which
	 * calls it directly from then on. A failure never fails
	 * plug_init: the mechanisms stay listed and say why when used.
	 */
	pre = preload_option(utils);
	shim.absent[0] = '\0';
	if (!shim.ready && (pre == 1 || (pre == -1 && may_still_chroot() &&
	    !config_absent(utils)))) {
		if (start_impl(utils, maxversion) == 0) {
			shim.pending_frees = 0;	/* lazy_free is not called */
			*pluglist = shim.impl;
			*plugcount = NMECHS;
			__atomic_store_n(&shim.ready, 0, __ATOMIC_RELEASE);
			shim.impl = NULL;
			pthread_mutex_unlock(&shim.lock);
			return SASL_OK;
		}
		utils->log(utils->conn, SASL_LOG_ERR, "sasl-oauth2: %s",
		    shim.why);
	}
	pthread_mutex_unlock(&shim.lock);
	*pluglist = lazy_plugs;
	*plugcount = NMECHS;
	return SASL_OK;
}
