/*
 * commands.c - the kv commands that act on one key (get, put, del, ttl) and
 * on the store as a whole (check, destroy); stats is in stats.c.
 *
 * Each command attaches with the least access it needs (KV_RDONLY for
 * anything that only reads, so read permission on the store is enough),
 * prints at most one error line, and returns the exit status. A library
 * status turns into an exit status in one place, key_error(): "not found"
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

/* Report a failed operation on a key and map its status to an exit one. */
static int key_error(const char *cmd, const char *key, int rc)
{
	char q[CLI_QUOTE_MAX];

	cli_fail("%s %s: %s", cmd, cli_quote(key, false, q), kv_strerror(rc));
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

/* Copy out a value whose size we do not know: ask with cap 0, which gives
 * the size, then fetch. A writer may put a longer value in between, so grow
 * and retry (a shorter one simply fits). On KV_OK *out is malloc'd (NULL
 * for an empty value) and owned by the caller. */
static int fetch(kv_t *kv, const char *key, size_t klen, char **out,
                 size_t *vlen)
{
	char probe, *buf = NULL;
	int rc, tries = 0;

	/* probe: a valid pointer for the cap-0 call, never written. */
	rc = kv_get(kv, key, klen, &probe, 0, vlen);
	while (rc == KV_ERANGE) {
		char *bigger;

		if (++tries > GET_RETRIES) {
			rc = KV_EBUSY;
			break;
		}
		bigger = realloc(buf, *vlen);
		if (bigger == NULL) {
			rc = KV_ENOMEM;
			break;
		}
		buf = bigger;
		rc = kv_get(kv, key, klen, buf, *vlen, vlen);
	}
	if (rc != KV_OK) {
		free(buf);
		return rc;
	}
	*out = buf;
	return KV_OK;
}

int cli_get(const struct cli *cli)
{
	const char *key = cli->arg[0];
	char *val = NULL;
	size_t vlen = 0;
	kv_t *kv = NULL;
	int rc, status = CLI_ERROR;

	if (cli_open(cli, KV_RDONLY, &kv) != KV_OK)
		goto out;
	rc = fetch(kv, key, strlen(key), &val, &vlen);
	if (rc != KV_OK) {
		status = key_error("get", key, rc);
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
static int parse_duration(const char *s, uint64_t *ms)
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

int cli_put(const struct cli *cli)
{
	const char *key = cli->arg[0], *val;
	struct kv_put_opts po;
	struct kv_stats st;
	char *input = NULL;
	size_t vlen;
	kv_t *kv = NULL;
	int rc, status = CLI_ERROR;

	memset(&po, 0, sizeof po);
	if (cli->opt[OPT_NX] != NULL && cli->opt[OPT_XX] != NULL) {
		cli_fail("put: --nx and --xx cannot be used together");
		return CLI_ERROR;
	}
	po.flags = (cli->opt[OPT_NX] ? KV_PUT_NX : 0) |
	           (cli->opt[OPT_XX] ? KV_PUT_XX : 0);
	if (cli->opt[OPT_TTL] != NULL &&
	    parse_duration(cli->opt[OPT_TTL], &po.ttl_ms) != 0)
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
			status = key_error("put", key, rc);
			goto out;
		}
		if (read_stdin(key, st.max_value, &input, &vlen) != 0)
			goto out;
		val = input;
	}
	rc = kv_put(kv, key, strlen(key), val, vlen, &po);
	if (rc != KV_OK) {
		status = key_error("put", key, rc);
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
	status = rc == KV_OK ? CLI_OK : key_error("del", key, rc);
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
		status = key_error("ttl", key, rc);
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
	if (kv_open(cli->store, KV_RDWR, &kv) != KV_OK &&
	    cli_open(cli, KV_RDONLY, &kv) != KV_OK)
		goto out;
	rc = kv_check(kv, print_problem, &problems);
	if (rc == KV_OK) {
		puts("ok");
		status = CLI_OK;
	} else if (rc == KV_ECORRUPT) {
		cli_fail("check: store %s: %s (%lu problem%s found)",
		         cli_quote(cli->store, true, q), kv_strerror(rc),
		         problems, problems == 1 ? "" : "s");
	} else {
		cli_fail("check: store %s: %s", cli_quote(cli->store, true, q),
		         kv_strerror(rc));
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
