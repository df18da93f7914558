/*
 * keys.c - "kv keys [GLOB]": list the live keys that match a pattern.
 *
 * The list comes from kv_scan, which takes no lock, a few index slices
 * per call, so listing a store of any size never blocks a writer. The
 * guarantees are kv_scan's: a key present for the whole listing is printed
 * exactly once; one added or removed meanwhile may or may not be. The
 * order is the index's, i.e. no useful order at all.
 *
 * Output is the key's exact bytes and a terminator: "\n", or NUL with -0.
 * A key holding a newline makes the newline form ambiguous, and a key
 * holding a NUL makes both ambiguous; "kv dump" is the exact form.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "sys.h"

/* Index slices per kv_scan call: small, so each call is short. */
#define SCAN_COUNT 64

/* A slice that a writer keeps changing under the scan gives KV_EBUSY;
 * the cursor still names it, so try it again after a pause, for as long
 * as this (a read-only scan already waited up to a second inside
 * kv_scan), so that no command waits long on a damaged store. */
#define SCAN_BUSY_MS 1000

static uint64_t now_ms(void)
{
	return cli_sys_mono_ms();
}

struct keys_ctx {
	const char *glob; /* NULL: every key */
	char end;         /* '\n' or '\0' */
	int werr;         /* a write to stdout failed */
};

/* Positive, so kv_scan's return tells it from a library status. */
#define STOP_WRITE 1

static int print_key(void *ctx, const void *key, size_t klen)
{
	struct keys_ctx *c = ctx;

	if (c->glob != NULL && !cli_glob_match(c->glob, key, klen))
		return 0;
	if (fwrite(key, 1, klen, stdout) != klen || putchar(c->end) == EOF) {
		c->werr = 1;
		return STOP_WRITE;
	}
	return 0;
}

int cli_scan_all(kv_t *kv, int (*fn)(void *ctx, const void *key, size_t klen),
                 void *ctx, uint64_t *skipped)
{
	uint64_t cursor = 0, busy_since = 0, buckets = 0;
	int rc;

	do {
		uint64_t before = now_ms();
		rc = kv_scan(kv, &cursor, SCAN_COUNT, fn, ctx);
		if (rc == KV_EBUSY) {
			if (busy_since == 0)
				busy_since = before;
			if (now_ms() - busy_since < SCAN_BUSY_MS) {
				cli_sys_sleep_ms(1);
				rc = KV_OK;
				continue;
			}
		}
		if (rc < 0 && skipped != NULL && rc != KV_EDESTROYED &&
		    rc != KV_ENOMEM) {
			/* Step over the slice that cannot be read. */
			/* The cursor is a 48-bit hash prefix (kv_scan):
			 * one bucket's width past its start is in the
			 * next bucket. */
			struct kv_stats st;
			if (kv_stats(kv, &st) == KV_OK)
				buckets = st.buckets;
			if (buckets == 0)
				return rc;
			++*skipped;
			uint64_t width = ((UINT64_C(1) << 48) + buckets - 1) /
			                 buckets;
			cursor += width;
			if (cursor >= (UINT64_C(1) << 48))
				cursor = 0;
			busy_since = 0;
			continue;
		}
		if (rc != KV_OK)
			return rc;
		busy_since = 0;
	} while (cursor != 0);
	return KV_OK;
}

int cli_keys(const struct cli *cli)
{
	struct keys_ctx c;
	kv_t *kv = NULL;
	int rc, status = CLI_ERROR;

	c.glob = cli->nargs == 1 && strcmp(cli->arg[0], "*") != 0 ? cli->arg[0]
	                                                           : NULL;
	c.end = cli->opt[OPT_NULL] != NULL ? '\0' : '\n';
	c.werr = 0;
	if (cli_open(cli, KV_RDONLY, &kv) != KV_OK)
		goto out;
	rc = cli_scan_all(kv, print_key, &c, NULL);
	if (rc == STOP_WRITE) {
		/* finish_stdout() in kv.c says why, once stdio knows. */
		status = CLI_OK;
		goto out;
	}
	if (rc != KV_OK) {
		char q[CLI_QUOTE_MAX];

		cli_fail("keys: store %s: %s", cli_quote(cli->store, true, q),
		         kv_strerror(rc));
		goto out;
	}
	status = CLI_OK;
out:
	kv_close(kv);
	return status;
}
