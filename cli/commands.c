/*
 * commands.c - the kv commands that act on one key (get, put, del, ttl,
 * incr, decr, info) and on the store as a whole (check, flush, destroy);
 * stats is in stats.c, keys in keys.c, dump and load in dump.c.
 *
 * Each command attaches with the least access it needs (KV_RDONLY for
 * anything that only reads, so read permission on the store is enough),
 * prints at most one error line, and returns the exit status. A library
 * status turns into an exit status in one place, cli_key_error(): "not found"
 * is 1, everything else 2.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "size.h"
#include "daemon.h"
#include "kv_internal.h"

/* How often get re-sizes its buffer for a value that keeps growing under
 * it before giving up with KV_EBUSY. Each round means a writer replaced the
 * value with a longer one between our two reads; many in a row means the
 * key is being rewritten faster than we can copy it. */
#define GET_RETRIES 16

/* The longest --ttl: ten years (with leap days). Anything longer is more
 * likely a typo than an intent, and stays far from overflow in the store. */
#define TTL_MAX_MS (3653ull * 24 * 3600 * 1000)

/* Stdin is read in chunks that start at this size and double. */
#define STDIN_CHUNK 65536u

int cli_key_error(const char *cmd, const char *key, int rc)
{
	char q[CLI_QUOTE_MAX];

	/* Busy past the bound: a live writer holds the lock, or (for a
	 * read-only attach, which cannot repair) a write was left unfinished
	 * by a writer that is gone. kv check tells which, and repairs. */
	cli_fail("%s %s: %s%s", cmd, cli_quote(key, false, q), kv_strerror(rc),
	         rc == KV_EBUSY ? " (if it lasts, run 'kv check' as a user "
	                          "who may write the store)"
	         : rc == KV_ECORRUPT
	             ? " (run 'kv check'; to recover, 'kv dump --partial "
	               "FILE', 'kv destroy --yes', then 'kv load FILE')"
	             : "");
	return rc == KV_ENOTFOUND ? CLI_NOTFOUND : CLI_ERROR;
}

/* write(2) all of buf to stdout; a value may be binary, so no stdio. */
static int write_all(const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDOUT_FILENO, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			cli_fail("write to stdout: %s", strerror(errno));
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* kv_get, or kv_get_version when the caller wants the version. */
static int get_one(kv_t *kv, const void *key, size_t klen, void *buf,
                   size_t cap, size_t *vlen, uint64_t *version)
{
	if (version == NULL)
		return kv_get(kv, key, klen, buf, cap, vlen);
	return kv_get_version(kv, key, klen, buf, cap, vlen, version);
}

int cli_fetch(kv_t *kv, const void *key, size_t klen, char **buf,
              size_t *cap, size_t *vlen, uint64_t *version)
{
	char probe;
	int rc, tries = 0;

	/* First try whatever buffer we have (probe, never written, when
	 * there is none): for a small value or a reused buffer one call
	 * does it. Then size it from *vlen and retry: a writer may put a
	 * longer value in between (a shorter one simply fits). */
	rc = get_one(kv, key, klen, *buf ? *buf : &probe, *cap, vlen, version);
	while (rc == KV_ERANGE) {
		char *bigger;

		if (++tries > GET_RETRIES)
			return KV_EBUSY;
		bigger = realloc(*buf, *vlen);
		if (bigger == NULL)
			return KV_ENOMEM;
		*buf = bigger;
		*cap = *vlen;
		rc = get_one(kv, key, klen, *buf, *cap, vlen, version);
	}
	return rc;
}

int cli_get(const struct cli *cli)
{
	const char *key = cli->arg[0];
	char *val = NULL;
	size_t cap = 0, vlen = 0;
	kv_t *kv = NULL;
	int rc, status = CLI_ERROR;

	if (cli_open(cli, KV_RDONLY, &kv) != KV_OK)
		goto out;
	rc = cli_fetch(kv, key, strlen(key), &val, &cap, &vlen, NULL);
	if (rc != KV_OK) {
		status = cli_key_error("get", key, rc);
		goto out;
	}
	/* The newline is for a person at a terminal; a pipe gets the exact
	 * bytes, so "$(kv get k)" and "kv get k > file" round-trip. */
	if (write_all(val, vlen) != 0 ||
	    (isatty(STDOUT_FILENO) && write_all("\n", 1) != 0))
		goto out;
	status = CLI_OK;
out:
	free(val);
	kv_close(kv);
	return status;
}

/* Parse a --ttl DURATION: digits and an optional unit, no sign, no space.
 * Returns 0, or -1 after printing the error. */
int cli_parse_duration(const char *s, uint64_t *ms)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = {
		{ "", 1000 }, { "ms", 1 }, { "s", 1000 },
		{ "m", 60 * 1000 }, { "h", 3600 * 1000 }, { "d", 86400 * 1000 },
	};
	char q[CLI_QUOTE_MAX];
	const char *p = s;
	uint64_t n = 0;
	bool huge = false;
	size_t i;

	for (; *p >= '0' && *p <= '9'; p++) {
		/* Saturate: any overflow is far beyond TTL_MAX_MS anyway. */
		if (n > (UINT64_MAX - 9) / 10)
			huge = true;
		else
			n = n * 10 + (uint64_t)(*p - '0');
	}
	for (i = 0; i < sizeof units / sizeof units[0]; i++)
		if (strcmp(p, units[i].unit) == 0)
			break;
	cli_quote(s, false, q);
	if (p == s || i == sizeof units / sizeof units[0]) {
		cli_fail("--ttl %s: %s", q,
		         *s == '-' ? "duration must be positive"
		                   : "invalid duration (e.g. 500ms, 30s, 5m, "
		                     "2h, 1d)");
		return -1;
	}
	if (n == 0) {
		cli_fail("--ttl %s: duration must be positive", q);
		return -1;
	}
	if (huge || n > TTL_MAX_MS / units[i].ms) {
		cli_fail("--ttl %s: duration too long (at most 10 years)", q);
		return -1;
	}
	*ms = n * units[i].ms;
	return 0;
}

/* Parse a --cas VERSION: the decimal number "kv info" printed.
 * Returns 0, or -1 after printing the error. */
int cli_parse_version(const char *s, uint64_t *out)
{
	char q[CLI_QUOTE_MAX];
	uint64_t v = 0;
	const char *p = s;

	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			break;
		v = v * 10 + d;
	}
	if (p == s || *p != '\0') {
		cli_fail("--cas %s: not a version (the number 'kv info KEY' "
		         "prints)", cli_quote(s, false, q));
		return -1;
	}
	*out = v;
	return 0;
}

/* Read all of stdin into a malloc'd buffer, but never more than limit + 1
 * bytes: one byte past the store's max_value proves the value cannot fit,
 * without slurping an unbounded stream. Returns 0, or -1 after printing
 * the error. */
static int read_stdin(const char *key, size_t limit, char **out,
                      size_t *len)
{
	char q[CLI_QUOTE_MAX], *buf = NULL;
	size_t cap = 0, n = 0;

	cli_quote(key, false, q);
	for (;;) {
		ssize_t got;

		if (n == cap) {
			size_t want = cap ? cap * 2 : STDIN_CHUNK;
			char *bigger;

			if (cap > limit)
				break;
			if (want > limit + 1)
				want = limit + 1;
			bigger = realloc(buf, want);
			if (bigger == NULL) {
				cli_fail("put %s: %s", q, kv_strerror(KV_ENOMEM));
				goto fail;
			}
			buf = bigger;
			cap = want;
		}
		got = read(STDIN_FILENO, buf + n, cap - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			cli_fail("put %s: reading stdin: %s", q, strerror(errno));
			goto fail;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	if (n > limit) {
		cli_fail("put %s: %s (stdin holds more than %zu bytes)", q,
		         kv_strerror(KV_EVALSIZE), limit);
		goto fail;
	}
	*out = buf;
	*len = n;
	return 0;
fail:
	free(buf);
	return -1;
}

int cli_put_options(const struct cli *cli, struct kv_put_opts *po)
{
	memset(po, 0, sizeof *po);
	if (cli->opt[OPT_NX] != NULL && cli->opt[OPT_XX] != NULL) {
		cli_fail("put: --nx and --xx cannot be used together");
		return CLI_ERROR;
	}
	po->flags = (cli->opt[OPT_NX] ? KV_PUT_NX : 0) |
	            (cli->opt[OPT_XX] ? KV_PUT_XX : 0);
	if (cli->opt[OPT_CAS] != NULL) {
		/* --cas already means "only if present, and unchanged". */
		if (po->flags != 0) {
			cli_fail("put: --cas cannot be used with --nx or --xx");
			return CLI_ERROR;
		}
		if (cli_parse_version(cli->opt[OPT_CAS], &po->cas) != 0)
			return CLI_ERROR;
		po->flags = KV_PUT_CAS;
	}
	if (cli->opt[OPT_TTL] != NULL &&
	    cli_parse_duration(cli->opt[OPT_TTL], &po->ttl_ms) != 0)
		return CLI_ERROR;
	return CLI_OK;
}

int cli_put(const struct cli *cli)
{
	const char *key = cli->arg[0], *val;
	struct kv_put_opts po;
	struct kv_stats st;
	char *input = NULL;
	size_t vlen;
	kv_t *kv = NULL;
	int rc, status = CLI_ERROR;

	if (cli_put_options(cli, &po) != CLI_OK)
		return CLI_ERROR;

	/* Attach before reading stdin: a missing store should fail at once,
	 * not after the producer has sent everything. */
	if (cli_open(cli, KV_RDWR, &kv) != KV_OK)
		goto out;
	if (cli->nargs == 2) {
		val = cli->arg[1];
		vlen = strlen(val);
	} else {
		rc = kv_stats(kv, &st);
		if (rc != KV_OK) {
			status = cli_key_error("put", key, rc);
			goto out;
		}
		if (read_stdin(key, st.max_value, &input, &vlen) != 0)
			goto out;
		val = input;
	}
	rc = kv_put(kv, key, strlen(key), val, vlen, &po);
	if (rc != KV_OK) {
		status = cli_key_error("put", key, rc);
		goto out;
	}
	status = CLI_OK;
out:
	free(input);
	kv_close(kv);
	return status;
}

int cli_del(const struct cli *cli)
{
	const char *key = cli->arg[0];
	kv_t *kv = NULL;
	int rc, status = CLI_ERROR;

	if (cli_open(cli, KV_RDWR, &kv) != KV_OK)
		goto out;
	rc = kv_del(kv, key, strlen(key));
	status = rc == KV_OK ? CLI_OK : cli_key_error("del", key, rc);
out:
	kv_close(kv);
	return status;
}

int cli_ttl(const struct cli *cli)
{
	const char *key = cli->arg[0];
	int64_t ms = -1;
	kv_t *kv = NULL;
	int rc, status = CLI_ERROR;

	if (cli_open(cli, KV_RDONLY, &kv) != KV_OK)
		goto out;
	rc = kv_ttl(kv, key, strlen(key), &ms);
	if (rc != KV_OK) {
		status = cli_key_error("ttl", key, rc);
		goto out;
	}
	if (ms < 0)
		puts("-1");
	else
		printf("%" PRId64 ".%03" PRId64 "\n", ms / 1000, ms % 1000);
	status = CLI_OK;
out:
	kv_close(kv);
	return status;
}

/* Parse a signed decimal int64: an optional sign and 1 to 19 digits
 * (more only as leading zeros), nothing else. Returns 0, or -1 after
 * printing the error. */
static int parse_delta(const char *cmd, const char *s, int64_t *out)
{
	char q[CLI_QUOTE_MAX];
	const char *p = s;
	bool neg = false;
	uint64_t v = 0, limit;

	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	/* -INT64_MIN does not fit, so build the magnitude unsigned. */
	limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	if (*p < '0' || *p > '9')
		goto junk;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (limit - d) / 10) {
			cli_fail("%s: delta %s: out of range (at most %" PRId64
			         " either way)",
			         cmd, cli_quote(s, false, q), INT64_MAX);
			return -1;
		}
		v = v * 10 + d;
	}
	if (*p != '\0')
		goto junk;
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
junk:
	cli_fail("%s: delta %s: not a decimal integer", cmd,
	         cli_quote(s, false, q));
	return -1;
}

int cli_delta(const struct cli *cli, bool negate, int64_t *delta)
{
	const char *cmd = negate ? "decr" : "incr";

	*delta = 1;
	if (cli->nargs == 2 && parse_delta(cmd, cli->arg[1], delta) != 0)
		return CLI_ERROR;
	if (negate) {
		if (*delta == INT64_MIN) {
			char q[CLI_QUOTE_MAX];

			cli_fail("%s: delta %s: out of range (at most %" PRId64
			         " either way)",
			         cmd, cli_quote(cli->arg[1], false, q),
			         INT64_MAX);
			return CLI_ERROR;
		}
		*delta = -*delta;
	}
	return CLI_OK;
}

/* incr and decr: decr is incr by the negated delta. */
static int add(const struct cli *cli, const char *cmd, bool negate)
{
	const char *key = cli->arg[0];
	int64_t delta, result = 0;
	kv_t *kv = NULL;
	int rc, status = CLI_ERROR;

	if (cli_delta(cli, negate, &delta) != CLI_OK)
		return CLI_ERROR;
	if (cli_open(cli, KV_RDWR, &kv) != KV_OK)
		goto out;
	rc = kv_incr(kv, key, strlen(key), delta, &result);
	if (rc != KV_OK) {
		/* Every failure is 2: an absent key counts as 0, so "not
		 * found" cannot happen. */
		cli_key_error(cmd, key, rc);
		goto out;
	}
	printf("%" PRId64 "\n", result);
	status = CLI_OK;
out:
	kv_close(kv);
	return status;
}

int cli_incr(const struct cli *cli)
{
	return add(cli, "incr", false);
}

int cli_decr(const struct cli *cli)
{
	return add(cli, "decr", true);
}

/* How often info re-reads a key that changed while it was looking. */
#define INFO_RETRIES 16

int cli_info(const struct cli *cli)
{
	const char *key = cli->arg[0];
	size_t klen = strlen(key), cap = 0, vlen = 0, vlen2 = 0;
	uint64_t version = 0, version2 = 0;
	int64_t ms = -1;
	char *buf = NULL;
	kv_t *kv = NULL;
	int rc, tries = 0, status = CLI_ERROR;

	if (cli_open(cli, KV_RDONLY, &kv) != KV_OK)
		goto out;
	/* Version and size come from one read; the TTL from another call.
	 * A put between the two would pair one version's size with another's
	 * TTL, so read the version again and start over if it moved. */
	for (;;) {
		rc = cli_fetch(kv, key, klen, &buf, &cap, &vlen, &version);
		if (rc == KV_OK)
			rc = kv_ttl(kv, key, klen, &ms);
		if (rc == KV_OK)
			rc = cli_fetch(kv, key, klen, &buf, &cap, &vlen2,
			               &version2);
		if (rc != KV_OK) {
			status = cli_key_error("info", key, rc);
			goto out;
		}
		if (version2 == version && vlen2 == vlen)
			break;
		if (++tries == INFO_RETRIES) {
			status = cli_key_error("info", key, KV_EBUSY);
			goto out;
		}
	}
	printf("version %" PRIu64 "\nsize %zu\n", version, vlen);
	if (ms < 0)
		puts("ttl -1");
	else
		printf("ttl %" PRId64 ".%03" PRId64 "\n", ms / 1000, ms % 1000);
	status = CLI_OK;
out:
	free(buf);
	kv_close(kv);
	return status;
}

int cli_flush(const struct cli *cli)
{
	char q[CLI_QUOTE_MAX];
	uint64_t removed = 0;
	kv_t *kv = NULL;
	int rc, status = CLI_ERROR;

	cli_quote(cli->store, true, q);
	if (cli->opt[OPT_YES] == NULL) {
		cli_fail("flush: this removes every key of store %s; pass "
		         "--yes to confirm", q);
		return CLI_ERROR;
	}
	if (cli_open(cli, KV_RDWR, &kv) != KV_OK)
		goto out;
	rc = kv_flush(kv, &removed);
	if (rc != KV_OK) {
		cli_fail("flush: store %s: %s", q, kv_strerror(rc));
		goto out;
	}
	printf("removed %" PRIu64 " key%s\n", removed, removed == 1 ? "" : "s");
	status = CLI_OK;
out:
	kv_close(kv);
	return status;
}

int cli_resize(const struct cli *cli)
{
	char q[CLI_QUOTE_MAX], from[64], to[64], lim[64];
	struct kv_stats before, after;
	const char *why;
	uint64_t size;
	kv_t *kv = NULL;
	int rc, status = CLI_ERROR;

	cli_quote(cli->store, true, q);
	if (kv_size_parse(cli->arg[0], &size, &why) != 0) {
		cli_fail("resize: '%s': %s", cli->arg[0], why);
		return CLI_ERROR;
	}
	if (cli_open(cli, KV_RDWR, &kv) != KV_OK)
		goto out;
	rc = kv_stats(kv, &before);
	if (rc == KV_OK)
		rc = kv_resize(kv, size);
	if (rc == KV_OK)
		rc = kv_stats(kv, &after);
	cli_format_bytes(before.map_size, from, sizeof from);
	cli_format_bytes(size, to, sizeof to);
	switch (rc) {
	case KV_OK:
		break;
	case KV_ENOTSUP:
		cli_fail("resize: store %s: stores do not change size on "
		         "this platform", q);
		goto out;
	case KV_EFULL:
		cli_format_bytes(before.data_used, lim, sizeof lim);
		cli_fail("resize: store %s holds %" PRIu64 " keys in %s, which "
		         "do not fit in %s; nothing changed (delete keys first, "
		         "or choose a larger size)",
		         q, before.items, lim, to);
		goto out;
	case KV_ETOOBIG:
		cli_format_bytes(before.max_size, lim, sizeof lim);
		cli_fail("resize: store %s may grow to %s at most (its limit, "
		         "set when it was made: kvd --max-size)",
		         q, lim);
		goto out;
	case KV_ETOOSMALL:
		if (size < before.map_size)
			cli_fail("resize: store %s is %s: %s is too small a "
			         "step down (the new index must fit below the "
			         "one in use; shrink by at least a tenth), or "
			         "too small for a store",
			         q, from, to);
		else
			cli_fail("resize: store %s is %s: %s is too small a "
			         "step (the new index must fit past the current "
			         "end; grow by at least a tenth)",
			         q, from, to);
		goto out;
	default:
		cli_fail("resize: store %s: %s", q, kv_strerror(rc));
		goto out;
	}
	cli_format_bytes(after.map_size, to, sizeof to);
	if (after.map_size == before.map_size)
		printf("store %s is already %s\n", q, to);
	else
		printf("resized store %s from %s to %s: %" PRIu64
		       " buckets, %" PRIu64 " pages\n",
		       q, from, to, after.buckets, after.pages_total);
	status = CLI_OK;
out:
	kv_close(kv);
	return status;
}

static void print_problem(void *ctx, const char *problem)
{
	unsigned long *count = ctx;

	++*count;
	cli_fail("check: %s", problem);
}

int cli_check(const struct cli *cli)
{
	char q[CLI_QUOTE_MAX];
	unsigned long problems = 0;
	kv_t *kv = NULL;
	int rc, status = CLI_ERROR;

	/* Read-write lets kv_check hold the writer lock for an exact walk
	 * (and recover a dead writer first); read permission alone still
	 * gets a walk of the live store. */
	if (kv_open(cli->store, KV_RDWR | KV_NOWARM, &kv) != KV_OK &&
	    cli_open(cli, KV_RDONLY, &kv) != KV_OK)
		goto out;
	cli_quote(cli->store, true, q);
	char why[256];
	int lock = kv__lock_state(kv, why, sizeof why);
	if (lock == KV_HOLDER_UNSURE && cli->opt[OPT_REPAIR] != NULL) {
		rc = kv__break_unsure(kv, 1000);
		if (rc != KV_OK) {
			cli_fail("check: store %s: %s: %s", q, why,
			         kv_strerror(rc));
			goto out;
		}
	} else if (lock == KV_HOLDER_UNSURE) {
		cli_fail("check: store %s: %s; if no kv writer is stopped (in "
		         "a debugger, or by SIGSTOP), break it with: kv check "
		         "--repair", q, why);
		goto out;
	}
	rc = kv_check(kv, print_problem, &problems);
	if (kv__repair_note(kv)[0] != '\0')
		printf("repaired: %s\n", kv__repair_note(kv));
	if (rc == KV_OK) {
		puts("ok");
		status = CLI_OK;
	} else if (rc == KV_ECORRUPT) {
		cli_fail("check: store %s: %s (%lu problem%s found); to "
		         "recover what can be read: kv dump --partial FILE, "
		         "kv destroy --yes, start kvd, kv load FILE", q,
		         kv_strerror(rc), problems, problems == 1 ? "" : "s");
	} else {
		cli_fail("check: store %s: %s", q, kv_strerror(rc));
	}
out:
	kv_close(kv);
	return status;
}

int cli_destroy(const struct cli *cli)
{
	char q[CLI_QUOTE_MAX];
	int rc;

	cli_quote(cli->store, true, q);
	if (cli->opt[OPT_YES] == NULL) {
		cli_fail("destroy: this removes store %s and all its data; "
		         "pass --yes to confirm", q);
		return CLI_ERROR;
	}
	rc = kv_destroy(cli->store);
	if (rc != KV_OK) {
		cli_fail("store %s: %s", q, kv_strerror(rc));
		return CLI_ERROR;
	}
	return CLI_OK;
}
