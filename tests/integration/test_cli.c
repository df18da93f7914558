/*
 * test_cli.c - the kv command line against a store served by a real kvd:
 * get/put/del/ttl, exact bytes in and out, exit statuses 0/1/2 with one
 * "kv: " line on error, --ttl and expiry, --nx/--xx, key and value limits,
 * store names and how the store is chosen, stats (human and JSON), check,
 * destroy, help and version, and bad command lines.
 */
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "storeutil.h"
#include "kv.h"


/* A fresh store served by kvd; extra kvd arguments end with NULL. */
static const char *serve(const char *tag)
{
	const char *store = h_store_name(tag);

	h_kvd(store, "--size", "8M", NULL);
	return store;
}

/* A small store that takes 1 MiB values (its default largest value
 * would be that too: a sixteenth of the store, at least 1 MiB). */
static const char *serve_big_values(const char *tag)
{
	const char *store = h_store_name(tag);

	h_kvd(store, "--size", "8M", "--max-value", "1M", NULL);
	return store;
}

static void want_value(const char *store, const char *key, const void *val,
                         size_t len)
{
	struct h_result r;

	KV(&r, store, "get", key);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT(&r, val, len);
	assert_int_equal(r.err_len, 0);
	h_result_free(&r);
}

static void expect_missing(const char *store, const char *key)
{
	struct h_result r;

	KV(&r, store, "get", key);
	H_ASSERT_EXIT(&r, 1);
	H_ASSERT_ERR_LINE(&r, "kv: ");
	assert_int_equal(r.out_len, 0);
	h_result_free(&r);
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static char *repeat(char c, size_t n)
{
	char *s = h_alloc(n + 1);

	assert_non_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* ------------------------------------------------------------------------ */

static void test_put_get_del(void **state)
{
	const char *s = serve("basic");
	struct h_result r;

	(void)state;
	KV(&r, s, "put", "greeting", "hello world");
	H_ASSERT_EXIT(&r, 0);
	assert_int_equal(r.out_len, 0);
	assert_int_equal(r.err_len, 0);
	h_result_free(&r);
	/* Exact bytes, no newline: stdout is not a terminal. */
	want_value(s, "greeting", "hello world", 11);

	/* Replace. */
	expect_ok(s, "put", "greeting", "bye");
	want_value(s, "greeting", "bye", 3);

	/* An empty value is a value, not a missing key. */
	expect_ok(s, "put", "empty", "");
	want_value(s, "empty", "", 0);

	/* A value that starts with '-' after "--". */
	KV(&r, s, "put", "neg", "--", "-1");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	want_value(s, "neg", "-1", 2);

	KV(&r, s, "del", "greeting");
	H_ASSERT_EXIT(&r, 0);
	assert_int_equal(r.err_len, 0);
	h_result_free(&r);
	expect_missing(s, "greeting");

	KV(&r, s, "del", "greeting");
	H_ASSERT_EXIT(&r, 1);
	H_ASSERT_ERR_LINE(&r, "kv: ");
	h_result_free(&r);
}

/* At a terminal, get adds a newline for the person reading. */
static void test_get_tty_newline(void **state)
{
	const char *s = serve("tty");
	struct h_spawn_opts o = {.stdout_tty = true};
	struct h_result r;

	(void)state;
	expect_ok(s, "put", "k", "v");
	h_kv_opts(&r, &o, s, "get", "k", NULL);
	H_ASSERT_EXIT(&r, 0);
	/* The terminal turns "\n" into "\r\n". */
	if (!(r.out_len == 3 && memcmp(r.out, "v\r\n", 3) == 0))
		H_ASSERT_OUT(&r, "v\n", 2);
	h_result_free(&r);
}

/* Values from stdin are any bytes: NUL, invalid UTF-8, every byte value,
 * and more than one read's worth. */
static void test_put_stdin_binary(void **state)
{
	const char *s = serve_big_values("binary");
	static const char odd[] = "a\0b\0\0c\xff\xfe\xc3\x28\xa0\xa1"
	                          "\xe2\x82\x28\xf0\x90\x28\xbc\x80\n\r\x00";
	unsigned char all[1024];
	size_t big_len = 200 * 1024 + 7;
	unsigned char *big = h_alloc(big_len);
	uint32_t x = 12345;
	struct h_result r;

	(void)state;
	assert_non_null(big);
	for (size_t i = 0; i < sizeof(all); i++)
		all[i] = (unsigned char)(i * 7 + i / 256);
	for (size_t i = 0; i < big_len; i++) {
		x = x * 1103515245u + 12345u;
		big[i] = (unsigned char)(x >> 16);
	}

	KV_IN(&r, odd, sizeof(odd), s, "put", "odd");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	want_value(s, "odd", odd, sizeof(odd));

	KV_IN(&r, all, sizeof(all), s, "put", "all");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	want_value(s, "all", all, sizeof(all));

	KV_IN(&r, big, big_len, s, "put", "big");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	want_value(s, "big", big, big_len);

	/* Empty stdin: an empty value. */
	KV_IN(&r, "", 0, s, "put", "nothing");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	want_value(s, "nothing", "", 0);

	/* Keys may be UTF-8 too. */
	KV_IN(&r, odd, 5, s, "put", "cl\xc3\xa9");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	want_value(s, "cl\xc3\xa9", odd, 5);
	h_free(big);
}

/* Parse `kv ttl` output: "-1" or seconds with milliseconds. */
static double ttl_of(const char *s, const char *key, int *code)
{
	struct h_result r;
	double t = 0;

	KV(&r, s, "ttl", key);
	*code = r.code;
	if (r.code == 0) {
		char *end;

		t = strtod(r.out, &end);
		if (end == r.out || strcmp(end, "\n") != 0) {
			h_dump(&r);
			fail_msg("kv ttl printed something that is not a number");
		}
	} else {
		H_ASSERT_EXIT(&r, 1);
		H_ASSERT_ERR_LINE(&r, "kv: ");
	}
	h_result_free(&r);
	return t;
}

static void expect_ttl_within(const char *s, const char *key, double max)
{
	int code;
	double t = ttl_of(s, key, &code);

	assert_int_equal(code, 0);
	if (!(t > 0 && t <= max))
		fail_msg("ttl of %s is %.3f, expected in (0, %.3f]", key, t,
		         max);
}

static void test_ttl(void **state)
{
	const char *s = serve("ttl");
	struct h_result r;
	int code;
	double t;

	(void)state;
	expect_ok(s, "put", "forever", "x");
	t = ttl_of(s, "forever", &code);
	assert_int_equal(code, 0);
	assert_true(t == -1);

	KV(&r, s, "put", "--ttl", "30s", "k30s", "x");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	expect_ttl_within(s, "k30s", 30);

	KV(&r, s, "put", "--ttl", "5m", "k5m", "x");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	expect_ttl_within(s, "k5m", 300);

	KV(&r, s, "put", "--ttl=2h", "k2h", "x");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	expect_ttl_within(s, "k2h", 7200);
	/* Not rounded to a coarser unit: more than an hour is left. */
	t = ttl_of(s, "k2h", &code);
	assert_true(t > 3600);

	KV(&r, s, "put", "k90", "x", "--ttl", "90");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	expect_ttl_within(s, "k90", 90);

	/* 500ms may be over before we look (a slow sanitizer build), so
	 * only the bound is checked: alive with at most 0.5 s, or gone. */
	KV(&r, s, "put", "--ttl", "500ms", "k500", "x");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	t = ttl_of(s, "k500", &code);
	if (code == 0 && !(t > 0 && t <= 0.5))
		fail_msg("ttl of k500 is %.3f, expected in (0, 0.5]", t);

	/* A put without --ttl makes the key permanent again. */
	expect_ok(s, "put", "k30s", "y");
	t = ttl_of(s, "k30s", &code);
	assert_int_equal(code, 0);
	assert_true(t == -1);

	(void)ttl_of(s, "absent", &code);
	assert_int_equal(code, 1);
}

static void test_ttl_expiry(void **state)
{
	const char *s = serve("expiry");
	struct h_result r;
	int code;

	(void)state;
	KV(&r, s, "put", "--ttl", "300ms", "brief", "x");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	sleep_ms(400);
	expect_missing(s, "brief");
	(void)ttl_of(s, "brief", &code);
	assert_int_equal(code, 1);
	/* An expired key is gone for del and --xx as well. */
	KV(&r, s, "del", "brief");
	H_ASSERT_EXIT(&r, 1);
	h_result_free(&r);
	KV(&r, s, "put", "--nx", "brief", "again");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	want_value(s, "brief", "again", 5);
}

static void test_bad_ttl(void **state)
{
	static const char *const bad[] = {"0", "-5s", "5x", "99999999999h",
	                                  "", "5 s", "1.5s", "0ms", "s",
	                                  "3654d"};
	const char *s = serve("badttl");

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct h_result r;

		KV(&r, s, "put", "--ttl", bad[i], "k", "v");
		H_ASSERT_FAILS(&r, 2, "kv: ", "ttl");
		h_result_free(&r);
		expect_missing(s, "k");
	}
}

static void test_nx_xx(void **state)
{
	const char *s = serve("nxxx");
	struct h_result r;

	(void)state;
	expect_ok(s, "put", "k", "v1");
	KV(&r, s, "put", "--nx", "k", "v2");
	H_ASSERT_EXIT(&r, 2);
	H_ASSERT_ERR_LINE(&r, "kv: ");
	h_result_free(&r);
	want_value(s, "k", "v1", 2);

	KV(&r, s, "put", "--nx", "new", "n");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	want_value(s, "new", "n", 1);

	KV(&r, s, "put", "--xx", "missing", "m");
	H_ASSERT_EXIT(&r, 1);
	H_ASSERT_ERR_LINE(&r, "kv: ");
	h_result_free(&r);
	expect_missing(s, "missing");

	KV(&r, s, "put", "--xx", "k", "v3");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	want_value(s, "k", "v3", 2);

	KV(&r, s, "put", "--nx", "--xx", "k", "v4");
	H_ASSERT_FAILS(&r, 2, "kv: ", "--nx");
	h_result_free(&r);
	want_value(s, "k", "v3", 2);
}

static void test_key_limits(void **state)
{
	const char *s = serve("keys");
	char *max = repeat('k', 4096), *over = repeat('k', 4097);
	struct h_result r;

	(void)state;
	expect_ok(s, "put", max, "at the limit");
	want_value(s, max, "at the limit", 12);

	KV(&r, s, "put", over, "v");
	H_ASSERT_FAILS(&r, 2, "kv: ", "key");
	h_result_free(&r);
	/* Too long a key is an error for get and del too, not "absent". */
	KV(&r, s, "get", over);
	H_ASSERT_FAILS(&r, 2, "kv: ", "key");
	h_result_free(&r);
	KV(&r, s, "del", over);
	H_ASSERT_FAILS(&r, 2, "kv: ", "key");
	h_result_free(&r);

	KV(&r, s, "put", "", "v");
	H_ASSERT_FAILS(&r, 2, "kv: ", "key");
	h_result_free(&r);
	KV(&r, s, "get", "");
	H_ASSERT_FAILS(&r, 2, "kv: ", "key");
	h_result_free(&r);
	KV(&r, s, "del", "");
	H_ASSERT_FAILS(&r, 2, "kv: ", "key");
	h_result_free(&r);
	h_free(max);
	h_free(over);
}

static void test_value_limit(void **state)
{
	const char *s = h_store_name("maxval");
	char *fits = repeat('v', 1024), *over = repeat('w', 1025);
	struct h_result r;

	(void)state;
	h_kvd(s, "--size", "4M", "--max-value", "1024", NULL);
	expect_ok(s, "put", "k", fits);
	want_value(s, "k", fits, 1024);

	KV(&r, s, "put", "k", over);
	H_ASSERT_FAILS(&r, 2, "kv: ", "too large");
	h_result_free(&r);
	KV_IN(&r, over, 1025, s, "put", "k");
	H_ASSERT_FAILS(&r, 2, "kv: ", "too large");
	h_result_free(&r);
	/* A failed put leaves the old value. */
	want_value(s, "k", fits, 1024);

	KV_IN(&r, over, 1024, s, "put", "k2");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	want_value(s, "k2", over, 1024);
	h_free(fits);
	h_free(over);
}

static void test_bad_store_names(void **state)
{
	char *long_name = repeat('a', 65);
	const char *bad[] = {"bad name", "a*b", long_name, "", "a\nb"};
	struct h_result r;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		KV(&r, bad[i], "get", "k");
		H_ASSERT_FAILS(&r, 2, "kv: ", "invalid store name");
		h_result_free(&r);
		KV(&r, bad[i], "put", "k", "v");
		H_ASSERT_FAILS(&r, 2, "kv: ", "invalid store name");
		h_result_free(&r);
	}
	h_free(long_name);
}

/* A store nobody made: an error (2) that says so, never "key not found",
 * and nothing gets created by trying. */
static void test_missing_store(void **state)
{
	const char *s = h_store_name("missing");
	char *name64 = repeat('z', 64);
	struct h_result r;

	(void)state;
	KV(&r, s, "get", "k");
	H_ASSERT_FAILS(&r, 2, "kv: ", "does not exist");
	H_ASSERT_ERR_HAS(&r, s);
	h_result_free(&r);
	KV(&r, s, "put", "k", "v");
	H_ASSERT_FAILS(&r, 2, "kv: ", "does not exist");
	h_result_free(&r);
	KV(&r, s, "del", "k");
	H_ASSERT_FAILS(&r, 2, "kv: ", "does not exist");
	h_result_free(&r);
	KV(&r, s, "stats");
	H_ASSERT_FAILS(&r, 2, "kv: ", "does not exist");
	h_result_free(&r);
	assert_false(exists(h_shm_path(s)));

	/* 64 characters is a valid name (it just does not exist). */
	if (!exists(h_shm_path(name64))) {
		KV(&r, name64, "get", "k");
		H_ASSERT_FAILS(&r, 2, "kv: ", "does not exist");
		h_result_free(&r);
	}
	h_free(name64);
}

/* -s, --store and $KV_STORE (the default store: test_store_default). */
static void test_store_selection(void **state)
{
	const char *s = serve("select");
	const char *other = h_store_name("select-none");
	char env_s[128], env_other[128], opt[128];
	const char *env1[] = {env_s, NULL};
	const char *env2[] = {env_other, NULL};
	struct h_spawn_opts o = {0};
	struct h_result r;

	(void)state;
	snprintf(env_s, sizeof(env_s), "KV_STORE=%s", s);
	snprintf(env_other, sizeof(env_other), "KV_STORE=%s", other);
	expect_ok(s, "put", "k", "selected");

	/* $KV_STORE alone. */
	o.env = env1;
	h_kv_opts(&r, &o, NULL, "get", "k", NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, "selected");
	h_result_free(&r);

	/* -s wins over $KV_STORE (which names a store that does not exist). */
	o.env = env2;
	h_kv_opts(&r, &o, s, "get", "k", NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, "selected");
	h_result_free(&r);
	h_kv_opts(&r, &o, NULL, "get", "k", NULL);
	H_ASSERT_FAILS(&r, 2, "kv: ", other);
	h_result_free(&r);

	/* --store=NAME, -sNAME, and options after the command. */
	snprintf(opt, sizeof(opt), "--store=%s", s);
	KV(&r, NULL, opt, "get", "k");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, "selected");
	h_result_free(&r);
	snprintf(opt, sizeof(opt), "-s%s", s);
	KV(&r, NULL, "get", "k", opt);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, "selected");
	h_result_free(&r);
}

/* With neither -s nor $KV_STORE (unset, or empty) kv uses the store
 * 'default'. That store may be someone's, so the case is skipped when
 * anything at all is at /dev/shm/kv.default (even a name we may not
 * stat), and otherwise only `kv get` runs, which attaches read-only: a
 * store made in the meantime is read, never changed. */
static void test_store_default(void **state)
{
	const char *unset[] = {"KV_STORE", NULL};
	const char *empty[] = {"KV_STORE=", NULL};
	const char *path = h_shm_path("default");
	struct h_spawn_opts o = {0};
	struct h_result r;
	struct stat st;

	(void)state;
	if (lstat(path, &st) == 0 || errno != ENOENT) {
		print_message("%s is there (or cannot be looked at): "
		              "not touching it\n", path);
		skip();
	}
	o.env = unset;
	h_kv_opts(&r, &o, NULL, "get", "k", NULL);
	H_ASSERT_FAILS(&r, 2, "kv: ", "'default'");
	H_ASSERT_ERR_HAS(&r, "does not exist");
	h_result_free(&r);
	o.env = empty;
	h_kv_opts(&r, &o, NULL, "get", "k", NULL);
	H_ASSERT_FAILS(&r, 2, "kv: ", "'default'");
	h_result_free(&r);
}

/* The number after "items" in the human stats table. */
static long human_items(const char *out)
{
	const char *p = out;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, "items", 5) == 0 && (p[5] == ' ' || p[5] == '\t'
		                                    || p[5] == ':'))
			return strtol(p + 6 + strspn(p + 6, " \t:"), NULL, 10);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return -1;
}

static void test_stats(void **state)
{
	const char *s = serve("stats");
	static const char script[] =
	    "import json, sys\n"
	    "d = json.load(sys.stdin)\n"
	    "assert isinstance(d, dict), 'not an object'\n"
	    "print(d['items'])\n";
	const char *py[] = {"python3", "-c", script, NULL};
	struct h_spawn_opts o = {0};
	struct h_result r, j;

	(void)state;
	expect_ok(s, "put", "a", "1");
	expect_ok(s, "put", "b", "22");
	expect_ok(s, "put", "c", "333");
	expect_ok(s, "put", "d", "4444");
	expect_ok(s, "del", "d", NULL);

	KV(&r, s, "stats");
	H_ASSERT_EXIT(&r, 0);
	if (human_items(r.out) != 3) {
		h_dump(&r);
		fail_msg("kv stats: no \"items 3\" line");
	}
	h_result_free(&r);

	KV(&r, s, "stats", "--json");
	H_ASSERT_EXIT(&r, 0);
	o.stdin_data = r.out;
	o.stdin_len = r.out_len;
	h_run(&j, py, &o);
	if (j.code != 0 || strcmp(j.out, "3\n") != 0) {
		print_error("kv stats --json:\n");
		h_dump(&r);
		print_error("python3 json check:\n");
		h_dump(&j);
		fail_msg("kv stats --json is not valid JSON with items 3");
	}
	h_result_free(&j);
	h_result_free(&r);
}

static void test_check(void **state)
{
	const char *s = serve("check");
	struct h_result r;

	(void)state;
	expect_ok(s, "put", "a", "1");
	KV(&r, s, "put", "--ttl", "1h", "b", "2");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	expect_ok(s, "del", "a", NULL);
	KV(&r, s, "check");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, "ok\n");
	h_result_free(&r);
}

static void test_destroy(void **state)
{
	const char *s = h_store_name("destroy");
	struct h_proc *kvd;
	struct h_result r;

	(void)state;
	kvd = h_kvd(s, "--size", "4M", NULL);
	expect_ok(s, "put", "k", "v");

	KV(&r, s, "destroy");
	H_ASSERT_FAILS(&r, 2, "kv: ", "--yes");
	h_result_free(&r);
	assert_true(exists(h_shm_path(s)));
	want_value(s, "k", "v", 1);

	KV(&r, s, "destroy", "--yes");
	H_ASSERT_EXIT(&r, 0);
	assert_int_equal(r.err_len, 0);
	h_result_free(&r);
	assert_false(exists(h_shm_path(s)));
	KV(&r, s, "get", "k");
	H_ASSERT_FAILS(&r, 2, "kv: ", "does not exist");
	h_result_free(&r);

	/* kvd notices its store is gone and stops cleanly (kvd.c). */
	if (!h_wait(kvd, H_TIMEOUT_MS, &r)) {
		h_dump(&r);
		fail_msg("kvd kept running after its store was destroyed");
	}
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);

	KV(&r, s, "destroy", "-y");
	H_ASSERT_FAILS(&r, 2, "kv: ", "does not exist");
	h_result_free(&r);
}

static void test_help_version(void **state)
{
	struct h_result r;

	(void)state;
	KV(&r, NULL, "--help");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "usage: kv");
	assert_int_equal(r.err_len, 0);
	h_result_free(&r);

	KV(&r, NULL, "put", "--help");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "--ttl");
	assert_int_equal(r.err_len, 0);
	h_result_free(&r);

	KV(&r, NULL, "help", "get");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "get");
	h_result_free(&r);

	KV(&r, NULL, "-h");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "usage: kv");
	h_result_free(&r);

	KV(&r, NULL, "--version");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "0.1.0");
	assert_int_equal(r.err_len, 0);
	h_result_free(&r);
}

static void test_bad_command_lines(void **state)
{
	const char *s = serve("badcmd");
	static const char *const lines[][5] = {
		{"frobnicate", NULL},
		{"--frob", "get", "k", NULL},
		{"-Z", "get", "k", NULL},
		{"get", "--nx", "k", NULL},
		{"get", NULL},
		{"get", "a", "b", NULL},
		{"put", NULL},
		{"put", "k", "v", "extra", NULL},
		{"stats", "extra", NULL},
		{"put", "--ttl", NULL},
		{"get", "--json=1", "k", NULL},
		{"help", "frobnicate", NULL},
	};
	struct h_result r;

	(void)state;
	bad_command_lines(s, lines, sizeof(lines) / sizeof(lines[0]));
	/* No command at all. */
	KV(&r, NULL, "-s", s);
	H_ASSERT_EXIT(&r, 2);
	H_ASSERT_ERR_LINE(&r, "kv: ");
	h_result_free(&r);
}

/* The default max value (a sixteenth of the store: 4 MiB of 64 MiB) is
 * accepted in full; one byte more is not. */
static void test_default_max_value(void **state)
{
	const char *s = h_store_name("bigval");
	h_kvd(s, "--size", "64M", NULL);
	size_t max = 4 * 1024 * 1024;
	char *v = h_alloc(max + 1);
	struct h_result r;

	(void)state;
	assert_non_null(v);
	for (size_t i = 0; i <= max; i++)
		v[i] = (char)(i * 13 + 1);
	KV_IN(&r, v, max, s, "put", "big");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	want_value(s, "big", v, max);
	KV_IN(&r, v, max + 1, s, "put", "big");
	H_ASSERT_FAILS(&r, 2, "kv: ", "too large");
	h_result_free(&r);
	want_value(s, "big", v, max);
	h_free(v);
}

/* Fill s with 200 KB values k0, k1, ... until a put fails or 64 are in;
 * returns how many puts succeeded. */
static int fill(const char *s, char *v, size_t len, struct h_result *last)
{
	char key[32];
	int stored = 0;

	for (int i = 0; i < 64; i++) {
		memset(v, 'a' + i % 26, len);
		snprintf(key, sizeof(key), "k%d", i);
		KV_IN(last, v, len, s, "put", key);
		if (last->code != 0)
			return stored;
		h_result_free(last);
		stored++;
	}
	memset(last, 0, sizeof(*last));
	return stored;
}

static uint64_t json_field(const char *s, const char *field)
{
	char pat[64];
	struct h_result r;
	const char *p;
	uint64_t v;

	KV(&r, s, "stats", "--json");
	H_ASSERT_EXIT(&r, 0);
	snprintf(pat, sizeof(pat), "\"%s\":", field);
	p = strstr(r.out, pat);
	if (p == NULL) {
		h_dump(&r);
		fail_msg("kv stats --json has no %s", field);
	}
	v = strtoull(p + strlen(pat), NULL, 10);
	h_result_free(&r);
	return v;
}

/* A full store (the default: a cache) makes room by evicting older items:
 * every put succeeds, the newest values are all there, whole, and the
 * store is never wiped. */
static void test_store_full_evicts(void **state)
{
	const char *s = h_store_name("full");
	size_t len = 200 * 1000;
	char *v = h_alloc(len);
	char key[32];
	struct h_result r;
	int present = 0;

	(void)state;
	assert_non_null(v);
	h_kvd(s, "--size", "4M", "--max-value", "256K", NULL);
	if (fill(s, v, len, &r) != 64) {
		h_dump(&r);
		fail_msg("a put into a full evicting store failed");
	}
	assert_true(json_field(s, "evictions") > 0);
	for (int i = 0; i < 64; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		KV(&r, s, "get", key);
		if (r.code == 0) {
			memset(v, 'a' + i % 26, len);
			H_ASSERT_OUT(&r, v, len);
			present++;
		} else {
			H_ASSERT_EXIT(&r, 1);
		}
		h_result_free(&r);
	}
	/* 4 MiB holds well over four 200 KB values; the last one written must
	 * have survived. */
	if (present < 4)
		fail_msg("only %d values left in the store after filling it",
		         present);
	memset(v, 'a' + 63 % 26, len);
	want_value(s, "k63", v, len);
	assert_int_equal(json_field(s, "items"), (uint64_t)present);
	KV(&r, s, "check");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	h_free(v);
}

/* A store made not to evict answers "store is full" (exit 2) and loses
 * nothing; a delete makes room again. */
static void test_store_full_noevict(void **state)
{
	const char *s = h_store_name("full-noevict");
	struct kv_options opts;
	size_t len = 200 * 1000;
	char *v = h_alloc(len);
	char key[32];
	struct h_result r;
	kv_t *kv = NULL;
	int stored;

	(void)state;
	assert_non_null(v);
	memset(&opts, 0, sizeof(opts));
	opts.size = 4u << 20;
	opts.max_value = 256u << 10;
	opts.flags = KV_CREATE_NOEVICT;
	assert_int_equal(kv_create(s, &opts, &kv), KV_OK);
	kv_close(kv);

	stored = fill(s, v, len, &r);
	if (stored == 64 || stored == 0) {
		h_dump(&r);
		fail_msg("a 4M store took %d values of 200 KB", stored);
	}
	H_ASSERT_FAILS(&r, 2, "kv: ", "store is full");
	h_result_free(&r);
	for (int i = 0; i < stored; i++) {
		memset(v, 'a' + i % 26, len);
		snprintf(key, sizeof(key), "k%d", i);
		want_value(s, key, v, len);
	}
	assert_int_equal(json_field(s, "evictions"), 0);
	KV(&r, s, "check");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);

	expect_ok(s, "del", "k0", NULL);
	memset(v, 'z', len);
	KV_IN(&r, v, len, s, "put", "again");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	want_value(s, "again", v, len);
	h_free(v);
}

/* Many kv processes writing and reading one store at once: every put
 * lands, every get sees a whole value, and the store checks out. */
static void test_concurrent_clients(void **state)
{
	enum { N = 24 };
	const char *s = serve("concurrent");
	struct h_proc *procs[2 * N];
	char keys[N][16], vals[N][64];
	struct h_result r;

	(void)state;
	expect_ok(s, "put", "shared", "0123456789");
	for (int i = 0; i < N; i++) {
		const char *put[] = {h_kv_bin(), "-s", s, "put", keys[i],
		                     vals[i], NULL};
		const char *get[] = {h_kv_bin(), "-s", s, "get", "shared",
		                     NULL};

		snprintf(keys[i], sizeof(keys[i]), "key%d", i);
		snprintf(vals[i], sizeof(vals[i]), "value of key %d", i);
		procs[2 * i] = h_start(put, NULL);
		procs[2 * i + 1] = h_start(get, NULL);
	}
	for (int i = 0; i < 2 * N; i++) {
		assert_true(h_wait(procs[i], H_TIMEOUT_MS, &r));
		H_ASSERT_EXIT(&r, 0);
		if (i % 2 == 1)
			H_ASSERT_OUT_STR(&r, "0123456789");
		h_result_free(&r);
	}
	for (int i = 0; i < N; i++)
		want_value(s, keys[i], vals[i], strlen(vals[i]));
	KV(&r, s, "stats", "--json");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "\"items\":25,");
	h_result_free(&r);
	KV(&r, s, "check");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
}

/* Output that cannot be written is an error (2), not a silent success. */
static void test_stdout_write_error(void **state)
{
	const char *s = serve("devfull");
	static const char *const cmds[] = {"get k", "stats", "ttl k",
	                                   "--help", "stats --json"};
	struct h_result r;

	(void)state;
	if (!exists("/dev/full")) {
		print_message("(no /dev/full: skipped)\n");
		skip();
	}
	expect_ok(s, "put", "k", "v");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		char line[256];
		const char *argv[] = {"/bin/sh", "-c", line, "sh", h_kv_bin(),
		                      s, NULL};

		snprintf(line, sizeof(line), "exec \"$1\" -s \"$2\" %s "
		         ">/dev/full", cmds[i]);
		h_run(&r, argv, NULL);
		H_ASSERT_FAILS(&r, 2, "kv: ", "write to stdout");
		h_result_free(&r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_put_get_del, h_teardown),
		cmocka_unit_test_teardown(test_get_tty_newline, h_teardown),
		cmocka_unit_test_teardown(test_put_stdin_binary, h_teardown),
		cmocka_unit_test_teardown(test_ttl, h_teardown),
		cmocka_unit_test_teardown(test_ttl_expiry, h_teardown),
		cmocka_unit_test_teardown(test_bad_ttl, h_teardown),
		cmocka_unit_test_teardown(test_nx_xx, h_teardown),
		cmocka_unit_test_teardown(test_key_limits, h_teardown),
		cmocka_unit_test_teardown(test_value_limit, h_teardown),
		cmocka_unit_test_teardown(test_bad_store_names, h_teardown),
		cmocka_unit_test_teardown(test_missing_store, h_teardown),
		cmocka_unit_test_teardown(test_store_selection, h_teardown),
		cmocka_unit_test_teardown(test_store_default, h_teardown),
		cmocka_unit_test_teardown(test_stats, h_teardown),
		cmocka_unit_test_teardown(test_check, h_teardown),
		cmocka_unit_test_teardown(test_destroy, h_teardown),
		cmocka_unit_test_teardown(test_help_version, h_teardown),
		cmocka_unit_test_teardown(test_bad_command_lines, h_teardown),
		cmocka_unit_test_teardown(test_default_max_value, h_teardown),
		cmocka_unit_test_teardown(test_store_full_evicts, h_teardown),
		cmocka_unit_test_teardown(test_store_full_noevict, h_teardown),
		cmocka_unit_test_teardown(test_concurrent_clients, h_teardown),
		cmocka_unit_test_teardown(test_stdout_write_error, h_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
