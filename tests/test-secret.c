/* Private files: permissions, ownership, trimming, size caps. */
#include "config.h"

#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "secret.h"
#include "tap.h"

static char dir[] = "/tmp/oa2-secret-XXXXXX";

static const char *
put(const char *name, const char *text, size_t len, mode_t mode)
{
	static char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd == -1 || write(fd, text, len) != (ssize_t)len)
		abort();
	close(fd);
	chmod(path, mode);
	return path;
}

int
main(void)
{
	static const struct {
		const char *text;
		mode_t mode;
		const char *want;	/* the secret, or an error substring */
		int code;
	} cases[] = {
		{ "s3cret", 0600, "s3cret", OA2_OK },
		{ "s3cret\n", 0600, "s3cret", OA2_OK },
		{ "s3cret\r\n\n", 0400, "s3cret", OA2_OK },
		{ "  two words \t\n", 0600, "  two words", OA2_OK },
		{ "\n", 0600, "is empty", OA2_ERR_CREDENTIAL },
		{ "", 0600, "is empty", OA2_ERR_CREDENTIAL },
		{ "s3cret", 0640, "accessible by group or others (mode 0640)",
		  OA2_ERR_CREDENTIAL },
		{ "s3cret", 0604, "run chmod 600", OA2_ERR_CREDENTIAL },
		{ "s3cret", 0620, "mode 0620", OA2_ERR_CREDENTIAL },
	};
	struct oa2_error err;
	char *s, *big, path[300];
	size_t i, len;
	int r;

	if (mkdtemp(dir) == NULL)
		abort();

	/* oa2_wipe (issue 16: 16-byte stores): every byte, and no other */
	{
		unsigned char buf[320];
		size_t off, n, k;
		int good = 1;

		for (off = 0; off < 16; off++)
			for (n = 0; n <= 260; n++) {
				memset(buf, 0xa5, sizeof(buf));
				oa2_wipe(buf + off, n);
				for (k = 0; k < sizeof(buf); k++)
					if (buf[k] != (k >= off && k < off + n ?
					    0 : 0xa5))
						good = 0;
			}
		ok(good, "oa2_wipe zeroes exactly the bytes asked, at any "
		    "alignment and length");
		oa2_wipe(NULL, 10);
		ok(1, "oa2_wipe accepts NULL");
	}
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *p = put("secret", cases[i].text,
		    strlen(cases[i].text), cases[i].mode);

		r = oa2_read_secret_file(p, "secret file", &s, &err);
		ok(r == cases[i].code, cases[i].want);
		if (r == 0)
			is_str(s, cases[i].want, "secret read and trimmed");
		else {
			has_str(err.msg, cases[i].want, "error names the cause");
			has_str(err.msg, p, "error names the file");
			ok(s == NULL, "no output on failure");
		}
		oa2_freezero_str(&s);
		ok(s == NULL, "freezero_str clears the pointer");
	}

	put("nul", "ab\0cd", 5, 0600);
	snprintf(path, sizeof(path), "%s/nul", dir);
	ok(oa2_read_secret_file(path, "secret file", &s, &err) ==
	    OA2_ERR_CREDENTIAL, "a NUL byte is refused");
	has_str(err.msg, "NUL byte", "and said so");

	snprintf(path, sizeof(path), "%s/missing", dir);
	ok(oa2_read_secret_file(path, "secret file", &s, &err) ==
	    OA2_ERR_CREDENTIAL, "missing file");
	has_str(err.msg, "No such file or directory", "missing file named");

	ok(oa2_read_secret_file(dir, "secret file", &s, &err) ==
	    OA2_ERR_CREDENTIAL, "a directory is refused");
	has_str(err.msg, "not a regular file", "directory named");

	/* a FIFO is refused at once, not waited on for a writer */
	snprintf(path, sizeof(path), "%s/fifo", dir);
	ok(mkfifo(path, 0600) == 0 && oa2_read_secret_file(path,
	    "secret file", &s, &err) == OA2_ERR_CREDENTIAL,
	    "a FIFO is refused without waiting for a writer");
	has_str(err.msg, "not a regular file", "FIFO named");

	snprintf(path, sizeof(path), "%s/link", dir);
	symlink("/etc/passwd", path);
	ok(oa2_read_file(path, "key file", 1, 4096, &s, &len, &err) != 0,
	    "a symlink to someone else's readable file is refused");

	/*
	 * OA2_PRIVATE_ANY_OWNER: root takes a private file of another
	 * owner (the sign-in `login --owner` made), never a readable one.
	 */
	if (geteuid() == 0) {
		put("other", "x", 1, 0600);
		snprintf(path, sizeof(path), "%s/other", dir);
		ok(chown(path, 65534, 65534) == 0 && oa2_read_file(path,
		    "token file", 1, 100, &s, &len, &err) != 0,
		    "root: another owner's private file refused by default");
		has_str(err.msg, "owned by uid 65534", "the owner named");
		ok(oa2_read_file(path, "token file", OA2_PRIVATE_ANY_OWNER,
		    100, &s, &len, &err) == 0 && len == 1 && s[0] == 'x',
		    "root: taken with OA2_PRIVATE_ANY_OWNER");
		oa2_freezero(s, len + 1);
		chmod(path, 0640);
		ok(oa2_read_file(path, "token file", OA2_PRIVATE_ANY_OWNER,
		    100, &s, &len, &err) != 0, "root: but not when "
		    "group-readable");
		has_str(err.msg, "run chmod 600", "the fix named");
	}

	big = calloc(1, 70000);
	memset(big, 'x', 69999);
	put("big", big, 69999, 0600);
	snprintf(path, sizeof(path), "%s/big", dir);
	ok(oa2_read_secret_file(path, "secret file", &s, &err) != 0,
	    "an oversized file is refused");
	has_str(err.msg, "larger than", "size cap named");
	ok(oa2_read_file(path, "CA file", 0, 100000, &s, &len, &err) == 0 &&
	    len == 69999 && strlen(s) == 69999, "public file read whole");
	free(s);
	free(big);

	put("pub", "hello", 5, 0644);
	snprintf(path, sizeof(path), "%s/pub", dir);
	ok(oa2_read_file(path, "CA file", 0, 100, &s, &len, &err) == 0,
	    "a public file may be world-readable");
	free(s);

	/* oa2_read_file_st reports the descriptor's identity. */
	{
		struct stat st, st2;

		ok(oa2_read_file_st(path, "CA file", 0, 100, &s, &len, &st,
		    &err) == 0 && stat(path, &st2) == 0 &&
		    st.st_ino == st2.st_ino && st.st_dev == st2.st_dev &&
		    st.st_size == 5, "read_file_st: the file's stat");
		free(s);

		/* oa2_check_safe_path: the file and its directories */
		chmod(path, 0644);
		ok(oa2_check_safe_path(path, &st, "configuration file",
		    &err) == 0, "safe path: 0644 file, 0700 dir in /tmp");
		st.st_mode |= 020;
		ok(oa2_check_safe_path(path, &st, "configuration file",
		    &err) == OA2_ERR_CONFIG, "a group-writable file");
		has_str(err.msg, "is writable by group or others (mode 0664)"
		    ": run chmod go-w", "the sentence and the fix");
		st.st_mode &= ~(mode_t)020;
		chmod(dir, 0770);
		ok(oa2_check_safe_path(path, &st, "configuration file",
		    &err) == OA2_ERR_CONFIG, "a group-writable directory");
		has_str(err.msg, "(mode 0770): run chmod go-w", "its fix");
		has_str(err.msg, dir, "the directory named");
		chmod(dir, 01777);
		ok(oa2_check_safe_path(path, &st, "configuration file",
		    &err) == 0, "a sticky directory passes");
		chmod(dir, 0700);
		st.st_uid = geteuid() + 1;
		if (st.st_uid == 0)
			st.st_uid = 1;
		ok(oa2_check_safe_path(path, &st, "configuration file",
		    &err) == OA2_ERR_CONFIG, "another owner is refused");
		has_str(err.msg, "not by root or by the user reading it",
		    "said so");
		has_str(err.msg, "run chown root", "with the chown");
		st.st_uid = geteuid();
		st.st_ino++;
		ok(oa2_check_safe_path(path, &st, "configuration file",
		    &err) == OA2_ERR_CONFIG, "a file replaced while checked");
		has_str(err.msg, "changed while it was being checked", "said");
	}

	oa2_freezero(NULL, 10);
	oa2_freezero_str(NULL);
	ok(1, "NULL accepted by the destructors");

	snprintf(path, sizeof(path), "rm -rf %s", dir);
	if (system(path) != 0)
		return 1;
	return done_testing();
}
