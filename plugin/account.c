/*
 * Accounts whose tokens belong to one mailbox (OA2_CRED_PER_MAILBOX, a
 * Google service account with domain-wide delegation: the token is
 * bound to the JWT's sub). Such an account gets a child account per
 * mailbox seen, made on first use: a copy of its settings with its own
 * lock, memory cache and cache key, so that cache.c's memory cache,
 * disk cache and single flight are per credential AND mailbox without
 * knowing it. Children live as long as the config (oa2_config_free).
 */
#include "config.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "conf.h"
#include "cred.h"
#include "secret.h"

/* No more mailboxes than this per account in one process. */
#define MAX_CHILDREN	100000

/* Guards every account's children list; held only to look up or add. */
static pthread_mutex_t children_lock = PTHREAD_MUTEX_INITIALIZER;

/* key = hex of SHA-256("oa2-mailbox-v1", parent key, mailbox), 32 chars. */
static int
child_key(const char *parent, const char *mailbox, char key[33])
{
	EVP_MD_CTX *ctx = oa2_digest_begin("oa2-mailbox-v1");

	return oa2_digest_hex(ctx, ctx != NULL &&
	    EVP_DigestUpdate(ctx, parent, strlen(parent) + 1) &&
	    EVP_DigestUpdate(ctx, mailbox, strlen(mailbox) + 1), key);
}

static struct oa2_account *
child_new(const struct oa2_account *a, const char *mailbox,
    struct oa2_error *err)
{
	struct oa2_account *c;
	char *mb;

	if ((c = malloc(sizeof(*c))) == NULL)
		goto nomem;
	memcpy(c, a, sizeof(*c));
	/* the parent owns every pointer copied; the child these: */
	c->parent = (struct oa2_account *)a;
	c->children = NULL;
	c->nchildren = c->maxchildren = 0;
	c->mem.access_token = NULL;
	c->mem.expires_at = 0;
	c->mem_len = 0;
	c->mem_fetched = 0;
	c->failed_at = 0;
	c->failed_code = 0;
	c->failed[0] = '\0';
	c->refused[0] = '\0';
	c->refused_until = 0;
	c->cache_warned = 0;
	c->match = NULL;
	if ((mb = strdup(mailbox)) == NULL ||
	    (c->match = strdup(mailbox)) == NULL) {
		free(mb);
		free(c);
		goto nomem;
	}
	c->mailbox = mb;
	if (child_key(a->cache_key, mailbox, c->cache_key) != 0) {
		free(mb);
		free(c->match);
		free(c);
		oa2_seterr(err, OA2_ERR_INTERNAL, "cannot compute a SHA-256 "
		    "digest");
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	return c;
 nomem:
	oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
	return NULL;
}

struct oa2_account *
oa2_account_for(struct oa2_account *a, const char *mailbox,
    struct oa2_error *err)
{
	struct oa2_account *c = NULL, **grown;
	char lower[320];
	size_t i, n;

	if (a->broken || a->kind == NULL ||
	    (a->kind->flags & OA2_CRED_PER_MAILBOX) == 0 || a->parent != NULL)
		return a;
	if (mailbox == NULL || (n = strlen(mailbox)) == 0 ||
	    n >= sizeof(lower) || strchr(mailbox, '@') == NULL) {
		oa2_seterr(err, OA2_ERR_CONFIG, "account %s gets tokens for "
		    "one mailbox each: it needs a mailbox (user@domain) to "
		    "sign in as", a->match);
		return NULL;
	}
	for (i = 0; i <= n; i++)
		lower[i] = (char)tolower((unsigned char)mailbox[i]);
	pthread_mutex_lock(&children_lock);
	for (i = 0; i < a->nchildren; i++)
		if (strcmp(a->children[i]->mailbox, lower) == 0) {
			c = a->children[i];
			goto out;
		}
	if (a->nchildren >= MAX_CHILDREN) {
		oa2_seterr(err, OA2_ERR_INTERNAL, "account %s has tokens for "
		    "%d mailboxes in this process already", a->match,
		    MAX_CHILDREN);
		goto out;
	}
	if (a->nchildren == a->maxchildren) {
		n = a->maxchildren == 0 ? 8 : a->maxchildren * 2;
		if ((grown = realloc(a->children, n * sizeof(*grown))) ==
		    NULL) {
			oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
			goto out;
		}
		a->children = grown;
		a->maxchildren = n;
	}
	if ((c = child_new(a, lower, err)) != NULL)
		a->children[a->nchildren++] = c;
 out:
	pthread_mutex_unlock(&children_lock);
	return c;
}

void
oa2_account_children_free(struct oa2_account *a)
{
	struct oa2_account *c;
	size_t i;

	for (i = 0; i < a->nchildren; i++) {
		c = a->children[i];
		oa2_token_clear(&c->mem);
		pthread_mutex_destroy(&c->lock);
		free((char *)c->mailbox);
		free(c->match);
		free(c);
	}
	free(a->children);
	a->children = NULL;
	a->nchildren = a->maxchildren = 0;
}
