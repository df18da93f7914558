/*
 * test_sweep.c - kvd's expiry sweep and a file-backed store's lifetime:
 * keys put with a short TTL and never touched again are reclaimed by kvd
 * alone (and are not without the sweep); --sweep-buckets and -v; a
 * file-backed store keeps every key, value and TTL across kvd stopping and
 * starting again and across a kv dump and kv load.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "harness.h"
#include "kv.h"
#include "storeutil.h"


static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static struct kv_stats stats_of(const char *store)
{
	struct kv_stats st;
	kv_t *kv = NULL;

	assert_int_equal(kv_open(store, KV_RDONLY, &kv), KV_OK);
	assert_int_equal(kv_stats(kv, &st), KV_OK);
	kv_close(kv);
	return st;
}

/* A field of "kv stats --json", read with python3 so the JSON is checked
 * too. */
static uint64_t json_field(const char *store, const char *field)
{
	char script[256];
	const char *py[] = {"python3", "-c", script, NULL};
	struct h_spawn_opts o = {0};
	struct h_result r, j;
	uint64_t v;

	snprintf(script, sizeof script,
	         "import json, sys\nprint(json.load(sys.stdin)['%s'])\n",
	         field);
	KV(&r, store, "stats", "--json");
	H_ASSERT_EXIT(&r, 0);
	o.stdin_data = r.out;
	o.stdin_len = r.out_len;
	h_run(&j, py, &o);
	if (j.code != 0) {
		h_dump(&r);
		h_dump(&j);
		fail_msg("kv stats --json: no valid '%s'", field);
	}
	v = strtoull(j.out, NULL, 10);
	h_result_free(&j);
	h_result_free(&r);
	return v;
}

struct want_expired {
	const char *store;
	uint64_t n;
};

static bool expired_reached(void *ctx)
{
	const struct want_expired *w = ctx;

	return stats_of(w->store).expired >= w->n;
}

/* Put 20 keys with kv put --ttl 300ms and 480 more through the library,
 * plus one that never expires. */
static void put_short_lived(const char *s)
{
	struct h_result r;
	char key[32];
	kv_t *kv;

	KV(&r, s, "put", "keep", "forever");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof key, "cli%d", i);
		KV(&r, s, "put", "--ttl", "300ms", key, "short-lived");
		H_ASSERT_EXIT(&r, 0);
		h_result_free(&r);
	}
	kv = attach(s);
	for (int i = 0; i < 480; i++) {
		int n = snprintf(key, sizeof key, "lib%d", i);

		lib_put(kv, key, (size_t)n, "short-lived", 11, 300);
	}
	kv_close(kv);
}

/* Nobody touches the keys after putting them: only kvd's sweep can
 * reclaim them, and it does, within about a second. */
static void test_sweep_reclaims(void **state)
{
	const char *s = h_store_name("sweep");
	struct want_expired w = {s, 500};
	struct h_result r;

	(void)state;
	h_kvd(s, "--size", "16M", NULL);
	put_short_lived(s);
	sleep_ms(1000);
	/* A slow (sanitized) build may need a little longer. */
	if (!h_wait_for(expired_reached, &w, 5000))
		fail_msg("kvd reclaimed %" PRIu64 " of 500 expired keys",
		         stats_of(s).expired);

	assert_true(json_field(s, "expired") >= 500);
	assert_int_equal(json_field(s, "items"), 1);
	assert_true(json_field(s, "sweeps") > 0);
	assert_true(json_field(s, "sweep_ns") > 0);
	assert_int_equal(json_field(s, "value_bytes"), 7);
	KV(&r, s, "get", "keep");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, "forever");
	h_result_free(&r);
	KV(&r, s, "check");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
}

/* --sweep-buckets 0: the same keys stay in the store (invisible to gets)
 * until something else meets them; kvd runs no sweep at all. */
static void test_sweep_off(void **state)
{
	const char *s = h_store_name("nosweep");
	struct kv_stats st;
	struct h_result r;
	struct h_proc *p;

	(void)state;
	p = h_kvd(s, "--size", "16M", "--sweep-buckets", "0", NULL);
	put_short_lived(s);
	sleep_ms(400);
	/* A put may reclaim an expired key it meets; once the puts are
	 * done, nothing else does. */
	st = stats_of(s);
	assert_true(st.items > 400);
	sleep_ms(600);
	assert_int_equal(stats_of(s).items, st.items);
	assert_int_equal(stats_of(s).expired, st.expired);
	assert_int_equal(stats_of(s).sweeps, 0);
	KV(&r, s, "get", "lib7");
	H_ASSERT_EXIT(&r, 1);
	h_result_free(&r);
	h_stop(p, SIGTERM, H_TIMEOUT_MS, &r);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_ERR_HAS(&r, "expiry sweep off");
	h_result_free(&r);

	/* A kvd with the sweep adopts the store and cleans it up. */
	h_kvd(s, NULL);
	{
		struct want_expired w = {s, st.expired + st.items - 1};

		if (!h_wait_for(expired_reached, &w, 5000))
			fail_msg("the adopting kvd reclaimed %" PRIu64
			         " of 500 expired keys", stats_of(s).expired);
	}
	assert_int_equal(stats_of(s).items, 1);
}

/* The sweep is quiet by default; -v logs what it removed. */
static void test_sweep_logging(void **state)
{
	const char *quiet = h_store_name("sweepq");
	const char *loud = h_store_name("sweepv");
	struct h_proc *pq, *pv;
	struct h_result r;
	char key[16];

	(void)state;
	pq = h_kvd(quiet, "--size", "4M", NULL);
	pv = h_kvd(loud, "--size", "4M", "-v", NULL);
	for (int s = 0; s < 2; s++) {
		kv_t *kv = attach(s ? loud : quiet);

		for (int i = 0; i < 10; i++) {
			int n = snprintf(key, sizeof key, "k%d", i);

			lib_put(kv, key, (size_t)n, "v", 1, 50);
		}
		kv_close(kv);
	}
	{
		struct want_expired wq = {quiet, 10}, wv = {loud, 10};

		assert_true(h_wait_for(expired_reached, &wq, 5000));
		assert_true(h_wait_for(expired_reached, &wv, 5000));
	}
	/* The debug line comes with the once-a-second upkeep. */
	sleep_ms(1200);
	h_stop(pq, SIGTERM, H_TIMEOUT_MS, &r);
	H_ASSERT_EXIT(&r, 0);
	if (strstr(r.err, "expiry sweep") != NULL) {
		h_dump(&r);
		fail_msg("kvd logged the sweep without -v");
	}
	h_result_free(&r);
	h_stop(pv, SIGTERM, H_TIMEOUT_MS, &r);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_ERR_HAS(&r, "debug: store '");
	H_ASSERT_ERR_HAS(&r, "expiry sweep removed");
	h_result_free(&r);
}

static void test_sweep_options(void **state)
{
	const char *s = h_store_name("sweepopt");
	static const char *const bad[] = {"abc", "-1", "", "1.5", "10k",
	                                  "99999999999999999999999"};
	struct h_result r;

	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		h_kvd_run(&r, s, "--sweep-buckets", bad[i], NULL);
		H_ASSERT_FAILS(&r, 2, "kvd: ", "--sweep-buckets");
		h_result_free(&r);
	}
	h_kvd_run(&r, s, "--sweep-buckets", NULL);
	H_ASSERT_EXIT(&r, 2);
	h_result_free(&r);
	h_kvd_run(&r, NULL, "--help", NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "--sweep-buckets N");
	H_ASSERT_OUT_HAS(&r, "--verbose");
	h_result_free(&r);
	/* Any count works, one bucket a tick included. */
	h_kvd(s, "--size", "4M", "--sweep-buckets", "1", NULL);
}

/* A file-backed store keeps everything across kvd restarts and across a
 * dump and load. */
static void test_file_backed(void **state)
{
	const char *dir = h_tmpdir("filestore");
	const char *ref = h_store_name("fileref");
	char path[256], path2[256], dump[256];
	unsigned char bin[300];
	struct h_spawn_opts in = {.stdin_data = bin, .stdin_len = sizeof bin};
	struct h_result r;
	struct h_proc *p, *p2;
	char key[32];
	kv_t *kv;

	(void)state;
	snprintf(path, sizeof path, "%s/data.kv", dir);
	snprintf(path2, sizeof path2, "%s/copy.kv", dir);
	snprintf(dump, sizeof dump, "%s/data.kvdump", dir);
	for (size_t i = 0; i < sizeof bin; i++)
		bin[i] = (unsigned char)i;

	p = h_kvd(path, "--size", "8M", NULL);
	KV(&r, path, "put", "a", "1");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	KV(&r, path, "put", "--ttl", "1h", "t", "expires later");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	h_kv_opts(&r, &in, path, "put", "bin", NULL);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	for (int i = 0; i < 3; i++) {
		KV(&r, path, "incr", "counter");
		H_ASSERT_EXIT(&r, 0);
		h_result_free(&r);
	}
	kv = attach(path);
	for (int i = 0; i < 200; i++) {
		int n = snprintf(key, sizeof key, "key%d", i);

		lib_put(kv, key, (size_t)n, key, (size_t)n,
		        i % 2 ? 3600000 : 0);
	}
	kv_close(kv);

	/* A reference copy in shared memory, through a dump. */
	h_kvd(ref, "--size", "8M", NULL);
	KV(&r, path, "dump", dump);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_ERR_HAS(&r, "dumped 204 keys");
	h_result_free(&r);
	KV(&r, ref, "load", dump);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	compare_stores(path, ref, 2000);

	/* Stop kvd: the file stays and keeps everything; and again with a
	 * new kvd. */
	h_stop(p, SIGTERM, H_TIMEOUT_MS, &r);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	compare_stores(path, ref, 2000);
	p = h_kvd(path, "--size", "8M", NULL);
	compare_stores(path, ref, 2000);
	KV(&r, path, "get", "counter");
	H_ASSERT_OUT_STR(&r, "3");
	h_result_free(&r);

	/* Flush and load back from the dump; and into a second file store. */
	KV(&r, path, "flush", "--yes");
	H_ASSERT_OUT_STR(&r, "removed 204 keys\n");
	h_result_free(&r);
	assert_int_equal(count_keys(path), 0);
	KV(&r, path, "load", dump);
	H_ASSERT_EXIT(&r, 0);
	assert_string_equal(r.err, "loaded 204 keys\n");
	h_result_free(&r);
	compare_stores(path, ref, 2000);
	p2 = h_kvd(path2, "--size", "8M", NULL);
	KV(&r, path2, "load", dump);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	compare_stores(path2, ref, 2000);

	/* Both survive one more restart. */
	h_stop(p, SIGTERM, H_TIMEOUT_MS, &r);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	h_stop(p2, SIGTERM, H_TIMEOUT_MS, &r);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	h_kvd(path, "--size", "8M", NULL);
	h_kvd(path2, "--size", "8M", NULL);
	compare_stores(path, ref, 2000);
	compare_stores(path2, ref, 2000);
	KV(&r, path, "check");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_sweep_reclaims, h_teardown),
		cmocka_unit_test_teardown(test_sweep_off, h_teardown),
		cmocka_unit_test_teardown(test_sweep_logging, h_teardown),
		cmocka_unit_test_teardown(test_sweep_options, h_teardown),
		cmocka_unit_test_teardown(test_file_backed, h_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
