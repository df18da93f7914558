/*
 * test_cache.c - the kv commands that make a store a cache one can inspect
 * and manage: keys (globs, binary keys, -0), flush, incr/decr, info and
 * put --cas, and the stats figures added with them (hits, misses,
 * evictions, the sweep, memory accounting, the size-class table), in both
 * the human and the JSON form. Every store is served by a real kvd.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <time.h>

#include "harness.h"
#include "storeutil.h"
#include "kv.h"


static const char *serve(const char *tag)
{
	const char *store = h_store_name(tag);

	h_kvd(store, "--size", "16M", NULL);
	return store;
}

static void want_value(const char *store, const char *key, const char *val)
{
	struct h_result r;

	KV(&r, store, "get", key);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, val);
	h_result_free(&r);
}

/* Put through the library: keys the command line cannot spell (NUL). */
static void store_put(const char *store, const void *key, size_t klen,
                    const void *val, size_t vlen, uint64_t ttl_ms)
{
	struct kv_put_opts po = {.ttl_ms = ttl_ms};
	kv_t *kv = NULL;

	assert_int_equal(kv_open(store, KV_RDWR, &kv), KV_OK);
	assert_int_equal(kv_put(kv, key, klen, val, vlen, &po), KV_OK);
	kv_close(kv);
}

/* A set of keys, as a list of (bytes, length), for comparing outputs in
 * any order. */
struct keyset {
	size_t n;
	const char *k[64];
	size_t len[64];
};

static void keyset_add(struct keyset *s, const char *k, size_t len)
{
	assert_true(s->n < 64);
	s->k[s->n] = k;
	s->len[s->n] = len;
	s->n++;
}

/* Check that out (terminated items, `end` after each) is exactly the set
 * `want`, each once. */
static void expect_keys(const struct h_result *r, char end,
                        const struct keyset *want)
{
	bool seen[64] = {false};
	size_t pos = 0, count = 0;

	while (pos < r->out_len) {
		const char *p = memchr(r->out + pos, end, r->out_len - pos);
		size_t len, i;

		if (p == NULL) {
			h_dump(r);
			fail_msg("kv keys: last key has no terminator");
		}
		len = (size_t)(p - (r->out + pos));
		for (i = 0; i < want->n; i++)
			if (!seen[i] && want->len[i] == len &&
			    memcmp(want->k[i], r->out + pos, len) == 0)
				break;
		if (i == want->n) {
			h_dump(r);
			fail_msg("kv keys: unexpected or repeated key at byte "
			         "%zu", pos);
		}
		seen[i] = true;
		count++;
		pos += len + 1;
	}
	if (count != want->n) {
		h_dump(r);
		fail_msg("kv keys: %zu keys listed, %zu expected", count,
		         want->n);
	}
}

static void keys_are(const char *store, const char *glob,
                     const char *const *want)
{
	struct keyset ks = {0};
	struct h_result r;

	for (size_t i = 0; want[i] != NULL; i++)
		keyset_add(&ks, want[i], strlen(want[i]));
	if (glob != NULL)
		KV(&r, store, "keys", glob);
	else
		KV(&r, store, "keys");
	H_ASSERT_EXIT(&r, 0);
	assert_int_equal(r.err_len, 0);
	expect_keys(&r, '\n', &ks);
	h_result_free(&r);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Run a python3 script on data as stdin; fail showing both on error. */
static void python_check(const struct h_result *data, const char *script)
{
	const char *py[] = {"python3", "-c", script, NULL};
	struct h_spawn_opts o = {.stdin_data = data->out,
	                         .stdin_len = data->out_len};
	struct h_result j;

	h_run(&j, py, &o);
	if (j.code != 0) {
		print_error("input:\n");
		h_dump(data);
		print_error("python3 check:\n");
		h_dump(&j);
		fail_msg("python3 check failed");
	}
	h_result_free(&j);
}

/* ------------------------------------------------------------------------
 * keys
 */

static void test_keys_glob(void **state)
{
	const char *s = serve("keys");
	static const char *const all[] = {
		"user:1", "user:2", "user:10", "session:abc", "a*b", "a?b",
		"[x]", "back\\slash", "caf\xc3\xa9", "-dash", NULL};
	struct h_result r;

	(void)state;
	/* An empty store lists nothing, successfully. */
	keys_are(s, NULL, (const char *const[]){NULL});
	for (size_t i = 0; all[i] != NULL; i++) {
		KV(&r, s, "put", "--", all[i], "v");
		H_ASSERT_EXIT(&r, 0);
		h_result_free(&r);
	}
	keys_are(s, NULL, all);
	keys_are(s, "*", all);
	keys_are(s, "user:*", (const char *const[]){"user:1", "user:2",
	                                            "user:10", NULL});
	keys_are(s, "user:?", (const char *const[]){"user:1", "user:2",
	                                            NULL});
	keys_are(s, "user:[0-1]*", (const char *const[]){"user:1", "user:10",
	                                                 NULL});
	keys_are(s, "user:[!1]", (const char *const[]){"user:2", NULL});
	keys_are(s, "user:[^1]", (const char *const[]){"user:2", NULL});
	keys_are(s, "*:*1*", (const char *const[]){"user:1", "user:10",
	                                           NULL});
	/* Escapes make the specials literal. */
	keys_are(s, "a*b", (const char *const[]){"a*b", "a?b", NULL});
	keys_are(s, "a\\*b", (const char *const[]){"a*b", NULL});
	keys_are(s, "a\\?b", (const char *const[]){"a?b", NULL});
	keys_are(s, "\\[x]", (const char *const[]){"[x]", NULL});
	keys_are(s, "[[]x[]]", (const char *const[]){"[x]", NULL});
	keys_are(s, "back\\\\slash", (const char *const[]){"back\\slash",
	                                                   NULL});
	/* Bytes, not characters: 'é' is two bytes. */
	keys_are(s, "caf?", (const char *const[]){NULL});
	keys_are(s, "caf??", (const char *const[]){"caf\xc3\xa9", NULL});
	keys_are(s, "caf\xc3\xa9", (const char *const[]){"caf\xc3\xa9",
	                                                 NULL});
	/* A pattern is anchored at both ends. */
	keys_are(s, "user", (const char *const[]){NULL});
	keys_are(s, "*abc", (const char *const[]){"session:abc", NULL});
	keys_are(s, "[-]*", (const char *const[]){"-dash", NULL});
	keys_are(s, "nomatch*", (const char *const[]){NULL});
}

/* Keys with any bytes: listed byte for byte, -0 terminates with NUL. */
static void test_keys_binary(void **state)
{
	const char *s = serve("keysbin");
	static const char nl[] = "line\nbreak", hi[] = "\xff\xfe\x80";
	static const char ctl[] = "\x01\x02\t\r", nul[] = "nul\0key";
	char *longkey = h_alloc(KV_MAX_KEY);
	struct keyset ks = {0};
	struct h_result r;

	(void)state;
	memset(longkey, 'L', KV_MAX_KEY);
	longkey[KV_MAX_KEY - 1] = '\n';
	store_put(s, nl, sizeof nl - 1, "1", 1, 0);
	store_put(s, hi, sizeof hi - 1, "2", 1, 0);
	store_put(s, ctl, sizeof ctl - 1, "3", 1, 0);
	store_put(s, longkey, KV_MAX_KEY, "4", 1, 0);
	keyset_add(&ks, nl, sizeof nl - 1);
	keyset_add(&ks, hi, sizeof hi - 1);
	keyset_add(&ks, ctl, sizeof ctl - 1);
	keyset_add(&ks, longkey, KV_MAX_KEY);

	KV(&r, s, "keys", "-0");
	H_ASSERT_EXIT(&r, 0);
	expect_keys(&r, '\0', &ks);
	h_result_free(&r);
	KV(&r, s, "keys", "--null", "*");
	H_ASSERT_EXIT(&r, 0);
	expect_keys(&r, '\0', &ks);
	h_result_free(&r);

	/* '?' and '*' match any byte, a newline included. */
	KV(&r, s, "keys", "-0", "line?break");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT(&r, "line\nbreak", sizeof nl);
	h_result_free(&r);
	KV(&r, s, "keys", "-0", "L*\n");
	H_ASSERT_EXIT(&r, 0);
	assert_int_equal(r.out_len, KV_MAX_KEY + 1);
	h_result_free(&r);
	KV(&r, s, "keys", "-0", "\xff*");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT(&r, hi, sizeof hi);
	h_result_free(&r);
	KV(&r, s, "keys", "-0", "[\x01-\x02]*");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT(&r, ctl, sizeof ctl);
	h_result_free(&r);
	KV(&r, s, "keys", "[\x80-\xff][\x80-\xff]?");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT(&r, "\xff\xfe\x80\n", 4);
	h_result_free(&r);

	/* A key holding NUL is written as its exact bytes (ambiguous with
	 * -0, as the help says); '?' matches the NUL. */
	store_put(s, nul, sizeof nul - 1, "5", 1, 0);
	KV(&r, s, "keys", "-0", "nul?key");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT(&r, "nul\0key\0", 8);
	h_result_free(&r);
	KV(&r, s, "keys", "nul*");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT(&r, "nul\0key\n", 8);
	h_result_free(&r);
}

/* Many keys: the listing takes many kv_scan calls, and every key comes
 * exactly once; expired keys are not listed. */
static void test_keys_many(void **state)
{
	enum { N = 5000 };
	const char *s = serve("keysmany");
	char key[32];
	unsigned char *seen = h_alloc(N);
	struct kv_put_opts po = {0};
	struct h_result r;
	kv_t *kv = NULL;
	size_t pos = 0, count = 0;

	(void)state;
	memset(seen, 0, N);
	assert_int_equal(kv_open(s, KV_RDWR, &kv), KV_OK);
	for (int i = 0; i < N; i++) {
		int n = snprintf(key, sizeof key, "k%d", i);

		assert_int_equal(kv_put(kv, key, (size_t)n, "v", 1, NULL),
		                 KV_OK);
	}
	po.ttl_ms = 1;
	for (int i = 0; i < 100; i++) {
		int n = snprintf(key, sizeof key, "gone%d", i);

		assert_int_equal(kv_put(kv, key, (size_t)n, "v", 1, &po), KV_OK);
	}
	kv_close(kv);
	sleep_ms(20);

	KV(&r, s, "keys");
	H_ASSERT_EXIT(&r, 0);
	while (pos < r.out_len) {
		const char *nl = memchr(r.out + pos, '\n', r.out_len - pos);
		long i;

		assert_non_null(nl);
		if (r.out[pos] != 'k') {
			h_dump(&r);
			fail_msg("an expired key was listed");
		}
		i = strtol(r.out + pos + 1, NULL, 10);
		assert_true(i >= 0 && i < N);
		if (seen[i]++) {
			fail_msg("key k%ld listed twice", i);
		}
		count++;
		pos = (size_t)(nl - r.out) + 1;
	}
	assert_int_equal(count, N);
	h_result_free(&r);
}

/* ------------------------------------------------------------------------
 * flush
 */

static void test_flush(void **state)
{
	const char *s = h_store_name("flush");
	struct kv_stats st;
	struct h_result r;
	kv_t *kv = NULL;
	char key[32];

	(void)state;
	h_kvd(s, "--size", "64M", NULL);
	expect_ok(s, "put", "a", "1");
	expect_ok(s, "put", "b", "2");

	KV(&r, s, "flush");
	H_ASSERT_FAILS(&r, 2, "kv: ", "--yes");
	assert_int_equal(r.out_len, 0);
	h_result_free(&r);
	want_value(s, "a", "1");

	KV(&r, s, "flush", "--yes");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, "removed 2 keys\n");
	assert_int_equal(r.err_len, 0);
	h_result_free(&r);
	keys_are(s, NULL, (const char *const[]){NULL});
	KV(&r, s, "get", "a");
	H_ASSERT_EXIT(&r, 1);
	h_result_free(&r);

	KV(&r, s, "flush", "-y");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, "removed 0 keys\n");
	h_result_free(&r);

	/* A bigger store: many slices of the index, values of every size. */
	assert_int_equal(kv_open(s, KV_RDWR, &kv), KV_OK);
	for (int i = 0; i < 3000; i++) {
		static char val[1000];
		int n = snprintf(key, sizeof key, "key%d", i);

		assert_int_equal(kv_put(kv, key, (size_t)n, val,
		                        (size_t)(i * 7 % 1000), NULL),
		                 KV_OK);
	}
	assert_int_equal(kv_stats(kv, &st), KV_OK);
	assert_int_equal(st.items, 3000); /* nothing evicted */
	kv_close(kv);
	KV(&r, s, "flush", "--yes");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, "removed 3000 keys\n");
	h_result_free(&r);
	KV(&r, s, "stats", "--json");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "\"items\":0,");
	H_ASSERT_OUT_HAS(&r, "\"key_bytes\":0,");
	H_ASSERT_OUT_HAS(&r, "\"value_bytes\":0,");
	h_result_free(&r);
	KV(&r, s, "check");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	/* The store works as before. */
	expect_ok(s, "put", "a", "again");
	want_value(s, "a", "again");
}

/* ------------------------------------------------------------------------
 * incr, decr
 */

static void expect_add(const char *s, const char *cmd, const char *key,
                       const char *delta, const char *out)
{
	struct h_result r;

	if (delta == NULL)
		KV(&r, s, cmd, key);
	else if (delta[0] == '-')
		KV(&r, s, cmd, key, "--", delta);
	else
		KV(&r, s, cmd, key, delta);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, out);
	assert_int_equal(r.err_len, 0);
	h_result_free(&r);
}

static void expect_add_fails(const char *s, const char *cmd, const char *key,
                             const char *delta, const char *why)
{
	struct h_result r;

	if (delta == NULL)
		KV(&r, s, cmd, key);
	else
		KV(&r, s, cmd, key, "--", delta);
	H_ASSERT_FAILS(&r, 2, "kv: ", why);
	assert_int_equal(r.out_len, 0);
	h_result_free(&r);
}

static void test_incr_decr(void **state)
{
	const char *s = serve("incr");
	struct h_result r;

	(void)state;
	/* An absent key counts as 0. */
	expect_add(s, "incr", "n", NULL, "1\n");
	expect_add(s, "incr", "n", "10", "11\n");
	expect_add(s, "decr", "n", NULL, "10\n");
	expect_add(s, "decr", "n", "20", "-10\n");
	expect_add(s, "incr", "n", "-5", "-15\n");
	expect_add(s, "incr", "n", "+5", "-10\n");
	expect_add(s, "decr", "n", "-3", "-7\n");
	expect_add(s, "incr", "n", "0", "-7\n");
	want_value(s, "n", "-7");
	expect_add(s, "decr", "fresh", NULL, "-1\n");

	/* Values written by put are numbers too, within reason. */
	expect_ok(s, "put", "p", "41");
	expect_add(s, "incr", "p", NULL, "42\n");
	KV(&r, s, "put", "neg", "--", "-100");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	expect_add(s, "incr", "neg", "1", "-99\n");

	/* Not a number: exit 2, exactly the message, value unchanged. */
	expect_ok(s, "put", "s", "abc");
	KV(&r, s, "incr", "s");
	H_ASSERT_EXIT(&r, 2);
	assert_string_equal(r.err,
	                    "kv: incr s: value is not a decimal integer\n");
	h_result_free(&r);
	KV(&r, s, "decr", "s", "2");
	H_ASSERT_EXIT(&r, 2);
	assert_string_equal(r.err,
	                    "kv: decr s: value is not a decimal integer\n");
	h_result_free(&r);
	want_value(s, "s", "abc");
	static const char *const junk[] = {"", "12abc", " 1", "1.5", "0x10",
	                                   "--1"};
	for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
		KV(&r, s, "put", "j", "--", junk[i]);
		H_ASSERT_EXIT(&r, 0);
		h_result_free(&r);
		expect_add_fails(s, "incr", "j", NULL, "not a decimal integer");
		want_value(s, "j", junk[i]);
	}

	/* Overflow: exit 2, value unchanged. */
	expect_ok(s, "put", "max", "9223372036854775807");
	expect_add_fails(s, "incr", "max", NULL, "integer overflow");
	expect_add_fails(s, "decr", "max", "-1", "integer overflow");
	want_value(s, "max", "9223372036854775807");
	expect_add(s, "decr", "max", NULL, "9223372036854775806\n");
	KV(&r, s, "put", "min", "--", "-9223372036854775808");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	expect_add_fails(s, "decr", "min", NULL, "integer overflow");
	want_value(s, "min", "-9223372036854775808");
	expect_add(s, "incr", "min", "9223372036854775807", "-1\n");

	/* DELTA: any int64, nothing else. */
	expect_add(s, "incr", "big", "-9223372036854775808",
	           "-9223372036854775808\n");
	expect_add(s, "incr", "big2", "9223372036854775807",
	           "9223372036854775807\n");
	expect_add_fails(s, "incr", "k", "9223372036854775808", "out of range");
	expect_add_fails(s, "incr", "k", "-9223372036854775809",
	                 "out of range");
	expect_add_fails(s, "decr", "k", "-9223372036854775808",
	                 "out of range");
	expect_add_fails(s, "incr", "k", "99999999999999999999999",
	                 "out of range");
	expect_add_fails(s, "incr", "k", "abc", "not a decimal integer");
	expect_add_fails(s, "incr", "k", "1.5", "not a decimal integer");
	expect_add_fails(s, "incr", "k", "", "not a decimal integer");
	expect_add_fails(s, "incr", "k", "-", "not a decimal integer");
	expect_add_fails(s, "incr", "k", "5 ", "not a decimal integer");
	KV(&r, s, "get", "k");
	H_ASSERT_EXIT(&r, 1);
	h_result_free(&r);

	/* The key keeps its TTL. */
	KV(&r, s, "put", "--ttl", "1h", "t", "5");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	expect_add(s, "incr", "t", NULL, "6\n");
	KV(&r, s, "ttl", "t");
	H_ASSERT_EXIT(&r, 0);
	{
		double left = strtod(r.out, NULL);

		if (!(left > 3500 && left <= 3600)) {
			h_dump(&r);
			fail_msg("incr lost the key's TTL");
		}
	}
	h_result_free(&r);
}

/* Many processes incrementing one key at once lose no update. */
static void test_incr_concurrent(void **state)
{
	enum { N = 16, EACH = 10 };
	const char *s = serve("incrconc");
	struct h_proc *p[N];
	char want[32];
	struct h_result r;

	(void)state;
	for (int i = 0; i < N; i++) {
		const char *argv[] = {"/bin/sh", "-c",
		                      "i=0; while [ $i -lt 10 ]; do "
		                      "\"$1\" -s \"$2\" incr c >/dev/null || "
		                      "exit 1; i=$((i+1)); done",
		                      "sh", h_kv_bin(), s, NULL};

		p[i] = h_start(argv, NULL);
	}
	for (int i = 0; i < N; i++) {
		assert_true(h_wait(p[i], H_TIMEOUT_MS, &r));
		H_ASSERT_EXIT(&r, 0);
		h_result_free(&r);
	}
	snprintf(want, sizeof want, "%d", N * EACH);
	want_value(s, "c", want);
}

/* ------------------------------------------------------------------------
 * info, put --cas
 */

struct info {
	uint64_t version;
	uint64_t size;
	double ttl;
};

static struct info get_info(const char *s, const char *key)
{
	struct info in = {0, 0, 0};
	struct h_result r;
	char ttl[32];
	int n = 0;

	KV(&r, s, "info", key);
	H_ASSERT_EXIT(&r, 0);
	assert_int_equal(r.err_len, 0);
	if (sscanf(r.out, "version %" SCNu64 "\nsize %" SCNu64 "\nttl %31s\n%n",
	           &in.version, &in.size, ttl, &n) != 3 ||
	    (size_t)n != r.out_len) {
		h_dump(&r);
		fail_msg("kv info: not 'version N / size N / ttl S'");
	}
	in.ttl = strtod(ttl, NULL);
	h_result_free(&r);
	return in;
}

static void test_info_cas(void **state)
{
	const char *s = serve("cas");
	char ver[32], ver2[32];
	size_t big_len = 200 * 1024; /* under the 16M store's 256 KiB limit */
	char *big = h_alloc(big_len);
	struct info a, b;
	struct h_result r;

	(void)state;
	expect_ok(s, "put", "k", "v1");
	a = get_info(s, "k");
	assert_int_equal(a.size, 2);
	assert_true(a.ttl == -1);
	/* Reading does not change the version. */
	assert_int_equal(get_info(s, "k").version, a.version);

	/* Right version: the put lands and the version moves on. */
	snprintf(ver, sizeof ver, "%" PRIu64, a.version);
	KV(&r, s, "put", "--cas", ver, "k", "v2");
	H_ASSERT_EXIT(&r, 0);
	assert_int_equal(r.err_len, 0);
	h_result_free(&r);
	want_value(s, "k", "v2");
	b = get_info(s, "k");
	assert_true(b.version != a.version);

	/* Stale version: exit 2, nothing changes. */
	KV(&r, s, "put", "--cas", ver, "k", "v3");
	H_ASSERT_FAILS(&r, 2, "kv: put k: ", "changed");
	h_result_free(&r);
	want_value(s, "k", "v2");
	assert_int_equal(get_info(s, "k").version, b.version);

	/* Any other put changes the version too. */
	expect_ok(s, "put", "k", "v2");
	assert_true(get_info(s, "k").version != b.version);

	/* Gone: exit 1. */
	snprintf(ver2, sizeof ver2, "%" PRIu64, get_info(s, "k").version);
	expect_ok(s, "del", "k", NULL);
	KV(&r, s, "put", "--cas", ver2, "k", "v4");
	H_ASSERT_FAILS(&r, 1, "kv: put k: ", "not found");
	h_result_free(&r);
	KV(&r, s, "get", "k");
	H_ASSERT_EXIT(&r, 1);
	h_result_free(&r);

	/* --cas with stdin and --ttl. */
	expect_ok(s, "put", "k", "x");
	snprintf(ver, sizeof ver, "%" PRIu64, get_info(s, "k").version);
	KV_IN(&r, "from stdin", 10, s, "put", "--ttl", "1h", "--cas", ver, "k");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	want_value(s, "k", "from stdin");
	a = get_info(s, "k");
	assert_int_equal(a.size, 10);
	assert_true(a.ttl > 3500 && a.ttl <= 3600);

	/* Bad --cas values and combinations. */
	KV(&r, s, "put", "--cas", "abc", "k", "v");
	H_ASSERT_FAILS(&r, 2, "kv: ", "--cas");
	h_result_free(&r);
	KV(&r, s, "put", "--cas", "", "k", "v");
	H_ASSERT_FAILS(&r, 2, "kv: ", "--cas");
	h_result_free(&r);
	KV(&r, s, "put", "--cas", "99999999999999999999999", "k", "v");
	H_ASSERT_FAILS(&r, 2, "kv: ", "--cas");
	h_result_free(&r);
	KV(&r, s, "put", "--cas", ver, "--nx", "k", "v");
	H_ASSERT_FAILS(&r, 2, "kv: ", "--nx");
	h_result_free(&r);
	want_value(s, "k", "from stdin");

	/* info: absent key, empty value, big value, TTL to the ms. */
	KV(&r, s, "info", "nope");
	H_ASSERT_FAILS(&r, 1, "kv: info nope: ", "not found");
	assert_int_equal(r.out_len, 0);
	h_result_free(&r);
	expect_ok(s, "put", "empty", "");
	assert_int_equal(get_info(s, "empty").size, 0);
	memset(big, 'b', big_len);
	KV_IN(&r, big, big_len, s, "put", "--ttl", "10s", "big");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	a = get_info(s, "big");
	assert_int_equal(a.size, big_len);
	assert_true(a.ttl > 5 && a.ttl <= 10);
	KV(&r, s, "info", "big");
	H_ASSERT_EXIT(&r, 0);
	/* "ttl 9.987": seconds with exactly three decimals. */
	{
		const char *t = strstr(r.out, "ttl ");

		assert_non_null(t);
		assert_non_null(strchr(t, '.'));
		assert_int_equal(strlen(strchr(t, '.')), 5);
	}
	h_result_free(&r);
}

/* ------------------------------------------------------------------------
 * stats
 */

static const char *const human_names[] = {
	"hits", "misses", "evictions", "page_moves", "evict", "sweeps",
	"sweep_ns", "load_factor", "hit_ratio", "eviction_policy",
	"key_bytes", "value_bytes", "index_bytes", "used_bytes",
	"overhead_bytes", "capacity_bytes", "probe_hist", NULL};

static bool has_line(const char *out, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = out; p != NULL && *p != '\0';) {
		if (strncmp(p, name, n) == 0 && p[n] == ' ')
			return true;
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return false;
}

static void test_stats_cache_figures(void **state)
{
	const char *s = serve("stats");
	static const char script[] =
	    "import json, sys\n"
	    "d = json.load(sys.stdin)\n"
	    "for f in ('hits', 'misses', 'evictions', 'page_moves', 'evict',\n"
	    "          'sweeps', 'sweep_ns', 'items', 'key_bytes',\n"
	    "          'value_bytes', 'index_bytes', 'used_bytes',\n"
	    "          'overhead_bytes', 'capacity_bytes', 'data_used',\n"
	    "          'data_bytes', 'buckets', 'nclasses'):\n"
	    "    assert isinstance(d[f], int) and d[f] >= 0, f\n"
	    "assert d['hits'] >= 3, d['hits']\n"
	    "assert d['misses'] >= 2, d['misses']\n"
	    "assert 0 < d['hit_ratio'] < 1, d['hit_ratio']\n"
	    "assert d['eviction_policy'] == 'evict'\n"
	    "assert d['evict'] == 1\n"
	    "assert d['items'] == 3, d['items']\n"
	    "assert 0 < d['load_factor'] < 1\n"
	    "assert d['key_bytes'] == 1 + 1 + 3, d['key_bytes']\n"
	    "assert d['value_bytes'] == 1 + 2 + 6000, d['value_bytes']\n"
	    "assert d['index_bytes'] == d['buckets'] * 64\n"
	    "assert d['used_bytes'] == d['data_used'] + d['index_bytes']\n"
	    "assert d['overhead_bytes'] == d['used_bytes'] - d['key_bytes']"
	    " - d['value_bytes']\n"
	    "assert d['capacity_bytes'] == d['data_bytes'] + d['index_bytes']\n"
	    "assert len(d['probe_hist']) == 8\n"
	    "assert sum(d['probe_hist']) == d['items']\n"
	    "c = d['classes']\n"
	    "assert len(c) == d['nclasses'], (len(c), d['nclasses'])\n"
	    "for i, k in enumerate(c):\n"
	    "    assert k['class'] == i\n"
	    "    assert k['capacity'] == k['pages'] * k['per_page']\n"
	    "    assert k['used'] <= k['capacity']\n"
	    "    assert 0 <= k['fill'] <= 1\n"
	    "    assert isinstance(k['evictions'], int)\n"
	    "    if i: assert k['chunk_size'] > c[i - 1]['chunk_size']\n"
	    "assert sum(k['used'] for k in c) == d['items'], 'used != items'\n"
	    "assert sum(k['pages'] for k in c) == d['pages_used']\n"
	    "assert len([k for k in c if k['used']]) == 2\n";
	static const char noevict[] =
	    "import json, sys\n"
	    "d = json.load(sys.stdin)\n"
	    "assert d['eviction_policy'] == 'noevict'\n"
	    "assert d['evict'] == 0\n"
	    "assert d['hit_ratio'] is None\n"
	    "assert d['overhead_per_item'] is None\n";
	char *big = h_alloc(6000);
	struct h_result r;
	struct kv_options opts = {0};
	const char *s2 = h_store_name("stats-noevict");
	kv_t *kv = NULL;

	(void)state;
	expect_ok(s, "put", "a", "1");
	expect_ok(s, "put", "b", "22");
	memset(big, 'x', 6000);
	KV_IN(&r, big, 6000, s, "put", "big");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	/* Hits and misses are counted by read-write handles only (a
	 * read-only mapping cannot record them, and "kv get" attaches
	 * read-only), so get through the library. */
	assert_int_equal(kv_open(s, KV_RDWR, &kv), KV_OK);
	for (int i = 0; i < 3; i++) {
		char buf[8];
		size_t n;

		assert_int_equal(kv_get(kv, "a", 1, buf, sizeof buf, &n), KV_OK);
		if (i < 2)
			assert_int_equal(kv_get(kv, "nope", 4, buf, sizeof buf,
			                        &n),
			                 KV_ENOTFOUND);
	}
	kv_close(kv);
	kv = NULL;

	KV(&r, s, "stats");
	H_ASSERT_EXIT(&r, 0);
	for (size_t i = 0; human_names[i] != NULL; i++)
		if (!has_line(r.out, human_names[i])) {
			h_dump(&r);
			fail_msg("kv stats: no '%s' line", human_names[i]);
		}
	H_ASSERT_OUT_HAS(&r, "evict (when full");
	/* The class table: a header, and one row per class in use (two: the
	 * small values share one, the 6000-byte one has another). */
	H_ASSERT_OUT_HAS(&r, "class");
	H_ASSERT_OUT_HAS(&r, "chunk");
	H_ASSERT_OUT_HAS(&r, "capacity");
	H_ASSERT_OUT_HAS(&r, "fill");
	{
		const char *t = strstr(r.out, "\nclass ");
		int rows = 0;

		assert_non_null(t);
		for (t = strchr(t + 1, '\n'); t != NULL && t[1] != '\0';
		     t = strchr(t + 1, '\n'))
			rows++;
		if (rows != 2) {
			h_dump(&r);
			fail_msg("kv stats: %d size-class rows, want 2", rows);
		}
	}
	h_result_free(&r);

	KV(&r, s, "stats", "--json");
	H_ASSERT_EXIT(&r, 0);
	python_check(&r, script);
	h_result_free(&r);

	/* A store made not to evict says so; no gets yet: no ratio. */
	opts.size = 4u << 20;
	opts.flags = KV_CREATE_NOEVICT;
	assert_int_equal(kv_create(s2, &opts, &kv), KV_OK);
	kv_close(kv);
	KV(&r, s2, "stats", "--json");
	H_ASSERT_EXIT(&r, 0);
	python_check(&r, noevict);
	h_result_free(&r);
	KV(&r, s2, "stats");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "noevict");
	H_ASSERT_OUT_HAS(&r, "no gets yet");
	h_result_free(&r);
}

/* Evictions show in the store's figures and in the class that lost them. */
static void test_stats_evictions(void **state)
{
	const char *s = h_store_name("stats-evict");
	static const char script[] =
	    "import json, sys\n"
	    "d = json.load(sys.stdin)\n"
	    "assert d['evictions'] > 0, d['evictions']\n"
	    "assert sum(k['evictions'] for k in d['classes']) == "
	    "d['evictions'], 'class evictions do not add up'\n";
	size_t len = 200 * 1000;
	char *v = h_alloc(len);
	char key[16];
	struct h_result r;

	(void)state;
	h_kvd(s, "--size", "4M", "--max-value", "256K", NULL);
	memset(v, 'e', len);
	for (int i = 0; i < 40; i++) {
		snprintf(key, sizeof key, "k%d", i);
		KV_IN(&r, v, len, s, "put", key);
		H_ASSERT_EXIT(&r, 0);
		h_result_free(&r);
	}
	KV(&r, s, "stats", "--json");
	H_ASSERT_EXIT(&r, 0);
	python_check(&r, script);
	h_result_free(&r);
}

/* ------------------------------------------------------------------------
 * Least privilege: what only reads needs only read permission
 */

static void test_read_only_access(void **state)
{
	const char *s = h_store_name("readonly");
	struct h_spawn_opts o = {.as_nobody = true};
	static const char *const writes[][4] = {
		{"incr", "n", NULL}, {"decr", "n", NULL},
		{"flush", "--yes", NULL}, {"load", NULL},
		{"put", "--cas", "1", NULL},
	};
	struct h_result r;

	(void)state;
	h_require_root();
	h_kvd(s, "--size", "4M", "--mode", "0644", NULL);
	expect_ok(s, "put", "k", "value");
	expect_ok(s, "put", "n", "5");

	h_kv_opts(&r, &o, s, "keys", "k*", NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, "k\n");
	h_result_free(&r);
	h_kv_opts(&r, &o, s, "info", "k", NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "size 5\n");
	h_result_free(&r);
	h_kv_opts(&r, &o, s, "stats", NULL);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	h_kv_opts(&r, &o, s, "dump", NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_ERR_HAS(&r, "dumped 2 keys");
	h_result_free(&r);

	for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++) {
		const char *argv[12] = {h_kv_bin(), "-s", s};
		int n = 3;

		for (int j = 0; writes[i][j] != NULL; j++)
			argv[n++] = writes[i][j];
		if (strcmp(writes[i][0], "put") == 0) {
			argv[n++] = "k";
			argv[n++] = "v";
		}
		argv[n] = NULL;
		h_run(&r, argv, &o);
		H_ASSERT_FAILS(&r, 2, "kv: ", "permission denied");
		h_result_free(&r);
	}
	want_value(s, "n", "5");
	want_value(s, "k", "value");
}

/* ------------------------------------------------------------------------
 * help and bad command lines
 */

static void test_help(void **state)
{
	static const char *const cmds[][2] = {
		{"keys", "--null"}, {"flush", "--yes"}, {"incr", "DELTA"},
		{"decr", "DELTA"},  {"info", "version"}, {"put", "--cas"},
		{"dump", "--force"}, {"load", "--partial"},
		{"stats", "classes"},
	};
	struct h_result r;

	(void)state;
	KV(&r, NULL, "--help");
	H_ASSERT_EXIT(&r, 0);
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
		char line[32];

		snprintf(line, sizeof line, "\n  %s ", cmds[i][0]);
		H_ASSERT_OUT_HAS(&r, line);
	}
	h_result_free(&r);
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
		KV(&r, NULL, cmds[i][0], "--help");
		H_ASSERT_EXIT(&r, 0);
		H_ASSERT_OUT_HAS(&r, "usage: kv ");
		H_ASSERT_OUT_HAS(&r, cmds[i][1]);
		assert_int_equal(r.err_len, 0);
		h_result_free(&r);
	}
}

static void test_bad_command_lines(void **state)
{
	const char *s = serve("badcmd");
	static const char *const lines[][5] = {
		{"keys", "a", "b", NULL},
		{"keys", "--json", NULL},
		{"flush", "extra", "--yes", NULL},
		{"flush", "--nx", "--yes", NULL},
		{"incr", NULL},
		{"incr", "a", "1", "2", NULL},
		{"decr", NULL},
		{"info", NULL},
		{"info", "a", "b", NULL},
		{"info", "--cas", "1", "a", NULL},
		{"put", "--cas", NULL},
		{"get", "-0", "a", NULL},
		{"get", "--partial", "a", NULL},
		{"dump", "a", "b", NULL},
		{"load", "a", "b", NULL},
		{"dump", "--nx", NULL},
		{"load", "--cas", "1", NULL},
	};
	struct h_result r;

	(void)state;
	bad_command_lines(s, lines, sizeof lines / sizeof lines[0]);
	/* Nothing of the above touched the store. */
	KV(&r, s, "stats", "--json");
	H_ASSERT_OUT_HAS(&r, "\"items\":0,");
	h_result_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_keys_glob, h_teardown),
		cmocka_unit_test_teardown(test_keys_binary, h_teardown),
		cmocka_unit_test_teardown(test_keys_many, h_teardown),
		cmocka_unit_test_teardown(test_flush, h_teardown),
		cmocka_unit_test_teardown(test_incr_decr, h_teardown),
		cmocka_unit_test_teardown(test_incr_concurrent, h_teardown),
		cmocka_unit_test_teardown(test_info_cas, h_teardown),
		cmocka_unit_test_teardown(test_stats_cache_figures, h_teardown),
		cmocka_unit_test_teardown(test_stats_evictions, h_teardown),
		cmocka_unit_test_teardown(test_read_only_access, h_teardown),
		cmocka_unit_test_teardown(test_help, h_teardown),
		cmocka_unit_test_teardown(test_bad_command_lines, h_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
