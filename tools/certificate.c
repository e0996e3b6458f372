/*
 * sasl-oauth2 certificate new PREFIX: a certificate credential from
 * zero. Writes PREFIX.key (RSA, PKCS#8 PEM, mode 0600) and PREFIX.crt
 * (self-signed, SHA-256), both created with O_EXCL (never overwriting
 * anything), and prints what the app registration and the config
 * need: the file to upload, its thumbprints, validity and the lines to
 * add. Only OpenSSL's own APIs; the key is wiped from memory.
 */
#include "config.h"

#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "secret.h"
#include "tool.h"

#define CN_MAX		64	/* ub-common-name, RFC 5280 */
#define DAYS_MAX	3650

struct certopts {
	int		bits;
	long		days;
	const char	*subject;	/* CN, or NULL: the host name */
	const char	*owner;		/* chown both files (root only) */
};

/* A strict decimal in [lo, hi]; -1 when not. */
static long
number(const char *s, long lo, long hi)
{
	char *end;
	long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < lo || v > hi)
		return -1;
	return v;
}

/* The last OpenSSL error, or what, for a sentence. */
static const char *
ossl_reason(const char *what)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

	return r != NULL ? r : what;
}

/* "A1B2..." of the certificate's DER under md; buf holds 129 bytes. */
static int
hex_digest(X509 *x, const EVP_MD *md, char *buf)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int n, i;

	if (!X509_digest(x, md, d, &n))
		return -1;
	for (i = 0; i < n; i++)
		snprintf(buf + 2 * i, 3, "%02X", d[i]);
	return 0;
}

static int
add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value)) == NULL)
		return -1;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

/* The self-signed certificate for key; NULL with the reason in why. */
static X509 *
make_cert(EVP_PKEY *key, const char *cn, long days, const char **why)
{
	unsigned char rnd[16];
	ASN1_INTEGER *serial = NULL;
	X509_NAME *name;
	BIGNUM *bn = NULL;
	X509 *x;
	int ok;

	*why = "cannot build the certificate";
	if ((x = X509_new()) == NULL)
		return NULL;
	/* a positive random serial of up to 127 bits (RFC 5280, 4.1.2.2) */
	ok = RAND_bytes(rnd, sizeof(rnd)) == 1;
	rnd[0] &= 0x7f;
	rnd[0] |= 0x01;
	ok = ok && (bn = BN_bin2bn(rnd, sizeof(rnd), NULL)) != NULL &&
	    (serial = BN_to_ASN1_INTEGER(bn, NULL)) != NULL &&
	    X509_set_version(x, X509_VERSION_3) &&
	    X509_set_serialNumber(x, serial) &&
	    X509_gmtime_adj(X509_getm_notBefore(x), 0) != NULL &&
	    X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL) !=
	    NULL &&
	    X509_set_pubkey(x, key) &&
	    (name = X509_get_subject_name(x)) != NULL &&
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0) &&
	    X509_set_issuer_name(x, name) &&
	    add_ext(x, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
	    add_ext(x, NID_key_usage, "critical,digitalSignature") == 0 &&
	    add_ext(x, NID_subject_key_identifier, "hash") == 0 &&
	    X509_sign(x, key, EVP_sha256()) > 0;
	BN_free(bn);
	ASN1_INTEGER_free(serial);
	if (!ok) {
		*why = ossl_reason("cannot build the certificate");
		X509_free(x);
		return NULL;
	}
	return x;
}

/* Write len bytes to fd and fsync; -1 with errno set. */
static int
write_all(int fd, const char *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		if ((n = write(fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return fsync(fd);
}

/*
 * PEM of the key (PKCS#8, unencrypted: the plugin reads it unattended;
 * the file's mode protects it) or of the certificate, written to fd.
 * The memory that held the key is wiped.
 */
static int
write_pem(int fd, EVP_PKEY *key, X509 *x)
{
	BIO *b;
	char *p;
	long len;
	int r = -1, saved;

	if ((b = BIO_new(BIO_s_mem())) == NULL)
		return -1;
	if (key != NULL ? PEM_write_bio_PKCS8PrivateKey(b, key, NULL, NULL, 0,
	    NULL, NULL) : PEM_write_bio_X509(b, x)) {
		len = BIO_get_mem_data(b, &p);
		if (len > 0)
			r = write_all(fd, p, (size_t)len);
		saved = errno;
		if (len > 0)
			oa2_wipe(p, (size_t)len);
		errno = saved;
	} else
		errno = EIO;
	saved = errno;
	BIO_free(b);
	errno = saved;
	return r;
}

/* Open path for a new file only (O_EXCL); a sentence on failure. */
static int
create(const char *path, mode_t mode)
{
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    mode);
	if (fd == -1)
		fprintf(stderr, "%s: cannot create %s: %s%s\n", progname,
		    path, strerror(errno), errno == EEXIST ? " (never "
		    "overwritten: choose another name or remove it first)" :
		    "");
	else if (fchmod(fd, mode) == -1) {	/* whatever the umask */
		fprintf(stderr, "%s: cannot chmod %s: %s\n", progname, path,
		    strerror(errno));
		close(fd);
		unlink(path);
		fd = -1;
	}
	return fd;
}

static void
fmt_utc(const ASN1_TIME *t, char *buf, size_t len)
{
	struct tm tm;

	if (!ASN1_TIME_to_tm(t, &tm) ||
	    strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, len, "unknown");
}

/* What the admin does next. */
static void
report(const char *keypath, const char *crtpath, X509 *x, int bits,
    long days, const char *cn)
{
	char sha1[129], sha256[129], nb[40], na[40];
	char kabs[PATH_MAX], cabs[PATH_MAX];

	if (realpath(keypath, kabs) == NULL)
		snprintf(kabs, sizeof(kabs), "%s", keypath);
	if (realpath(crtpath, cabs) == NULL)
		snprintf(cabs, sizeof(cabs), "%s", crtpath);
	if (hex_digest(x, EVP_sha1(), sha1) != 0)
		snprintf(sha1, sizeof(sha1), "unknown");
	if (hex_digest(x, EVP_sha256(), sha256) != 0)
		snprintf(sha256, sizeof(sha256), "unknown");
	fmt_utc(X509_get0_notBefore(x), nb, sizeof(nb));
	fmt_utc(X509_get0_notAfter(x), na, sizeof(na));
	printf("private key  %s (RSA %d bits, PKCS#8, mode 0600: keep it "
	    "there)\n", kabs, bits);
	printf("certificate  %s (self-signed, CN=%s, SHA-256)\n", cabs, cn);
	printf("valid        %s to %s (%ld days)\n", nb, na, days);
	printf("thumbprint   SHA-1   %s (the Azure portal shows this one)\n",
	    sha1);
	printf("             SHA-256 %s\n", sha256);
	printf("\n1. Upload %s to the app registration: Microsoft Entra "
	    "admin center,\n   App registrations, your app, Certificates & "
	    "secrets, Certificates,\n   Upload certificate. Check that the "
	    "thumbprint shown there is the SHA-1 above.\n", cabs);
	printf("2. In the account's block of sasl-oauth2.conf, set\n"
	    "\tcertificate = \"%s\";\n\tprivate_key = \"%s\";\n"
	    "   or, to roll over from the certificate in use, set\n"
	    "\tnext_certificate = \"%s\";\n\tnext_private_key = \"%s\";\n",
	    cabs, kabs, cabs, kabs);
	printf("3. Run: sasl-oauth2 test MAILBOX\n");
}

static int __attribute__((format(printf, 1, 2)))
certificate_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nusage: %s certificate new [--bits 2048|3072|4096] "
	    "[--days N] [--subject CN]\n       [--owner USER] PATH-PREFIX\n",
	    progname);
	return EX_USAGE;
}

int
cmd_certificate(int ac, char **av)
{
	static const struct option longopts[] = {
		{ "bits",	required_argument,	NULL, 'b' },
		{ "days",	required_argument,	NULL, 'd' },
		{ "subject",	required_argument,	NULL, 's' },
		{ "owner",	required_argument,	NULL, 'o' },
		{ "help",	no_argument,		NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct certopts co = { 3072, 365, NULL, NULL };
	struct passwd *pw = NULL;
	char host[256], *keypath = NULL, *crtpath = NULL;
	const char *cn, *why, *prefix;
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	int ch, kfd = -1, cfd = -1, ex = EX_SOFTWARE, made = 0;

	opterr = 0;
	optind = 1;
	while ((ch = getopt_long(ac, av, ":h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'b':
			co.bits = (int)number(optarg, 2048, 4096);
			if (co.bits != 2048 && co.bits != 3072 &&
			    co.bits != 4096)
				return certificate_usage("--bits takes 2048, "
				    "3072 or 4096, not \"%s\"", optarg);
			break;
		case 'd':
			if ((co.days = number(optarg, 1, DAYS_MAX)) < 0)
				return certificate_usage("--days takes a number "
				    "of days from 1 to 3650, not \"%s\"",
				    optarg);
			break;
		case 's':
			co.subject = optarg;
			break;
		case 'o':
			co.owner = optarg;
			break;
		case 'h':
			return certificate_usage("%s", "a certificate and its "
			    "private key for an app registration");
		case ':':
			return certificate_usage("option %s needs an argument",
			    av[optind - 1]);
		default:
			return certificate_usage("unknown option %s",
			    av[optind - 1]);
		}
	}
	if (ac - optind != 2 || strcmp(av[optind], "new") != 0)
		return certificate_usage("%s", "certificate takes new and a "
		    "path prefix");
	prefix = av[optind + 1];
	if (*prefix == '\0')
		return certificate_usage("%s", "the path prefix is empty");

	/* the subject's CN: --subject (with or without "CN="), or the host */
	if (co.subject != NULL)
		cn = strncmp(co.subject, "CN=", 3) == 0 ? co.subject + 3 :
		    co.subject;
	else {
		if (gethostname(host, sizeof(host)) == -1 || *host == '\0')
			snprintf(host, sizeof(host), "sasl-oauth2");
		host[sizeof(host) - 1] = '\0';
		cn = host;
	}
	if (*cn == '\0' || strlen(cn) > CN_MAX || strpbrk(cn, "\r\n") != NULL)
		return certificate_usage("--subject takes a name of 1 to 64 "
		    "characters on one line, not \"%s\"", cn);
	if (co.owner != NULL) {
		if (geteuid() != 0) {
			fprintf(stderr, "%s: --owner needs root (the files "
			    "would be yours anyway)\n", progname);
			return EX_NOPERM;
		}
		if ((pw = getpwnam(co.owner)) == NULL) {
			fprintf(stderr, "%s: --owner: no user \"%s\"\n",
			    progname, co.owner);
			return EX_NOUSER;
		}
	}
	if (asprintf(&keypath, "%s.key", prefix) == -1 ||
	    asprintf(&crtpath, "%s.crt", prefix) == -1) {
		fprintf(stderr, "%s: out of memory\n", progname);
		free(keypath);
		return EX_OSERR;
	}

	/* Both names are claimed before the key exists. */
	if ((kfd = create(keypath, 0600)) == -1) {
		ex = EX_CANTCREAT;
		goto out;
	}
	made = 1;
	if ((cfd = create(crtpath, 0644)) == -1) {
		ex = EX_CANTCREAT;
		goto out;
	}
	made = 2;
	if (pw != NULL && (fchown(kfd, pw->pw_uid, pw->pw_gid) == -1 ||
	    fchown(cfd, pw->pw_uid, pw->pw_gid) == -1)) {
		fprintf(stderr, "%s: cannot give %s and %s to %s: %s\n",
		    progname, keypath, crtpath, co.owner, strerror(errno));
		ex = EX_OSERR;
		goto out;
	}
	if ((key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)co.bits)) ==
	    NULL) {
		fprintf(stderr, "%s: cannot generate an RSA key: %s\n",
		    progname, ossl_reason("unknown error"));
		goto out;
	}
	if ((x = make_cert(key, cn, co.days, &why)) == NULL) {
		fprintf(stderr, "%s: %s\n", progname, why);
		goto out;
	}
	if (write_pem(kfd, key, NULL) != 0) {
		fprintf(stderr, "%s: cannot write %s: %s\n", progname,
		    keypath, strerror(errno));
		ex = EX_IOERR;
		goto out;
	}
	if (write_pem(cfd, NULL, x) != 0) {
		fprintf(stderr, "%s: cannot write %s: %s\n", progname,
		    crtpath, strerror(errno));
		ex = EX_IOERR;
		goto out;
	}
	if (close(kfd) == -1 || close(cfd) == -1) {
		kfd = cfd = -1;
		fprintf(stderr, "%s: cannot write %s: %s\n", progname,
		    keypath, strerror(errno));
		ex = EX_IOERR;
		goto out;
	}
	kfd = cfd = -1;
	made = 0;	/* a whole pair: kept */
	report(keypath, crtpath, x, co.bits, co.days, cn);
	ex = fflush(stdout) == 0 && !ferror(stdout) ? EX_OK : EX_IOERR;
 out:
	if (kfd != -1)
		close(kfd);
	if (cfd != -1)
		close(cfd);
	/* never a half-written pair: remove what this call created */
	if (made >= 2)
		unlink(crtpath);
	if (made >= 1) {
		unlink(keypath);
		fprintf(stderr, "%s: removed %s%s%s: no half-written pair is "
		    "left\n", progname, keypath, made >= 2 ? " and " : "",
		    made >= 2 ? crtpath : "");
	}
	EVP_PKEY_free(key);	/* OpenSSL clears the key's bignums */
	X509_free(x);
	free(keypath);
	free(crtpath);
	return ex;
}
