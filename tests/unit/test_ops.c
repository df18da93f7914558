/*
 * test_ops.c - the cache operations: versions and compare-and-swap,
 * client flags and kv_get_info, touch, increment, flush, the expiry sweep,
 * per-class figures, and the hit and miss counters readers keep without
 * sharing a cache line.
 */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "unit.h"

static void test_cas(void **state)
{
	(void)state;
	kv_t *kv = u_create("cas", 8 << 20, 4096, 0);
	char buf[16];
	size_t n;
	uint64_t v1, v2;

	assert_kv(KV_OK, u_puts(kv, "k", "one"));
	assert_kv(KV_OK, kv_get_version(kv, "k", 1, buf, sizeof buf, &n, &v1));
	assert_kv(KV_OK, u_puts(kv, "other", "x"));
	assert_kv(KV_OK, kv_get_version(kv, "k", 1, buf, sizeof buf, &n, &v2));
	assert_int_equal(v1, v2); /* another key's put changes nothing */

	struct kv_put_opts o = {.flags = KV_PUT_CAS, .cas = v1};
	assert_kv(KV_OK, kv_put(kv, "k", 1, "two", 3, &o));
	u_expect_str(kv, "k", "two");
	/* The same version again: the key changed meanwhile. */
	assert_kv(KV_ECHANGED, kv_put(kv, "k", 1, "three", 5, &o));
	u_expect_str(kv, "k", "two");
	assert_kv(KV_ERANGE, kv_get_version(kv, "k", 1, NULL, 0, NULL, &v2));
	assert_true(v2 > v1);
	assert_kv(KV_ENOTFOUND, kv_put(kv, "gone", 4, "x", 1, &o));
	o.flags = KV_PUT_CAS | KV_PUT_NX;
	assert_kv(KV_EINVAL, kv_put(kv, "k", 1, "x", 1, &o));
	/* A key deleted and put again has a new version. */
	assert_kv(KV_OK, kv_del(kv, "k", 1));
	assert_kv(KV_OK, u_puts(kv, "k", "two"));
	o.flags = KV_PUT_CAS;
	o.cas = v2;
	assert_kv(KV_ECHANGED, kv_put(kv, "k", 1, "x", 1, &o));
	assert_sound(kv);
	kv_close(kv);
}

/* Client flags are stored with the item, cost nothing when 0, and survive
 * what keeps an item's identity (touch, incr) but not a plain put. */
static void test_client_flags(void **state)
{
	(void)state;
	kv_t *kv = u_create("cflags", 8 << 20, 4096, 0);
	char buf[64];
	size_t n = 0;
	struct kv_item_info in;
	static const uint32_t flags[] = {0, 1, 0x7fffffffu, 0x80000000u,
	                                 0xffffffffu};

	for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
		for (int ttl = 0; ttl < 2; ttl++) {
			struct kv_put_opts o = {.client_flags = flags[i],
			                        .ttl_ms = ttl ? 60000 : 0};
			char key[32];
			int kl = snprintf(key, sizeof key, "k%zu-%d", i, ttl);
			assert_kv(KV_OK, kv_put(kv, key, (size_t)kl, "value",
			                        5, &o));
			memset(&in, 0xa5, sizeof in);
			assert_kv(KV_OK, kv_get_info(kv, key, (size_t)kl, buf,
			                             sizeof buf, &n, &in));
			assert_int_equal(n, 5);
			assert_memory_equal(buf, "value", 5);
			assert_int_equal(in.client_flags, flags[i]);
			if (ttl) {
				assert_true(in.ttl_ms > 59000 &&
				            in.ttl_ms <= 60000);
			} else {
				assert_int_equal(in.ttl_ms, -1);
			}
			uint64_t v = 0;
			assert_kv(KV_OK, kv_get_version(kv, key, (size_t)kl,
			                                buf, sizeof buf, &n,
			                                &v));
			assert_int_equal(v, in.version);
			/* The size alone, with cap 0, still tells the rest. */
			assert_kv(KV_ERANGE, kv_get_info(kv, key, (size_t)kl,
			                                 NULL, 0, &n, &in));
			assert_int_equal(in.client_flags, flags[i]);
		}
	}
	/* A key put without flags reads back with 0. */
	assert_kv(KV_OK, u_puts(kv, "plain", "x"));
	assert_kv(KV_OK, kv_get_info(kv, "plain", 5, buf, sizeof buf, &n, &in));
	assert_int_equal(in.client_flags, 0);
	/* incr keeps the flags; a later plain put drops them. */
	struct kv_put_opts f = {.client_flags = 42};
	assert_kv(KV_OK, kv_put(kv, "n", 1, "10", 2, &f));
	assert_kv(KV_OK, kv_incr(kv, "n", 1, 5, NULL));
	assert_kv(KV_OK, kv_get_info(kv, "n", 1, buf, sizeof buf, &n, &in));
	assert_int_equal(in.client_flags, 42);
	assert_memory_equal(buf, "15", 2);
	assert_kv(KV_OK, u_puts(kv, "n", "1"));
	assert_kv(KV_OK, kv_get_info(kv, "n", 1, buf, sizeof buf, &n, &in));
	assert_int_equal(in.client_flags, 0);
	assert_kv(KV_ENOTFOUND, kv_get_info(kv, "none", 4, buf, sizeof buf,
	                                    &n, &in));
	assert_sound(kv);
	kv_close(kv);
}

/* Touch sets a new TTL and keeps value, flags and version; a touched key
 * can also lose its TTL; absent and expired keys are not found. */
static void test_touch(void **state)
{
	(void)state;
	const char *name = h_store_name("touch");
	struct kv_options opts = {.size = 8 << 20, .max_value = 4096};
	kv_t *kv = NULL;
	assert_kv(KV_OK, kv_create(name, &opts, &kv));
	char buf[64];
	size_t n = 0;
	struct kv_item_info a, b;
	struct kv_put_opts o = {.client_flags = 7, .ttl_ms = 60000};

	assert_kv(KV_OK, kv_put(kv, "t", 1, "payload", 7, &o));
	assert_kv(KV_OK, kv_get_info(kv, "t", 1, buf, sizeof buf, &n, &a));
	assert_kv(KV_OK, kv_touch(kv, "t", 1, 3600 * 1000));
	assert_kv(KV_OK, kv_get_info(kv, "t", 1, buf, sizeof buf, &n, &b));
	assert_int_equal(n, 7);
	assert_memory_equal(buf, "payload", 7);
	assert_int_equal(b.client_flags, 7);
	assert_int_equal(b.version, a.version);
	assert_true(b.ttl_ms > 3500 * 1000);
	/* A CAS taken before the touch still holds after it. */
	struct kv_put_opts c = {.flags = KV_PUT_CAS, .cas = a.version};
	/* No expiry at all. */
	assert_kv(KV_OK, kv_touch(kv, "t", 1, 0));
	int64_t ttl = 0;
	assert_kv(KV_OK, kv_ttl(kv, "t", 1, &ttl));
	assert_int_equal(ttl, -1);
	assert_kv(KV_OK, kv_put(kv, "t", 1, "new", 3, &c));
	/* A short TTL, then the key is gone and a touch does not find it. */
	assert_kv(KV_OK, kv_touch(kv, "t", 1, 1));
	usleep(20 * 1000);
	assert_kv(KV_ENOTFOUND, kv_get(kv, "t", 1, buf, sizeof buf, &n));
	assert_kv(KV_ENOTFOUND, kv_touch(kv, "t", 1, 1000));
	assert_kv(KV_ENOTFOUND, kv_touch(kv, "absent", 6, 1000));
	assert_kv(KV_EKEYSIZE, kv_touch(kv, "", 0, 1000));
	assert_kv(KV_EINVAL, kv_touch(kv, "x", 1, UINT64_MAX));
	/* An empty value touches too. */
	assert_kv(KV_OK, kv_put(kv, "e", 1, "", 0, NULL));
	assert_kv(KV_OK, kv_touch(kv, "e", 1, 5000));
	assert_kv(KV_OK, kv_get_info(kv, "e", 1, buf, sizeof buf, &n, &b));
	assert_int_equal(n, 0);
	assert_true(b.ttl_ms > 4000);
	assert_sound(kv);
	kv_close(kv);

	kv_t *ro = NULL;
	assert_kv(KV_OK, kv_open(name, KV_RDONLY, &ro));
	assert_kv(KV_ERDONLY, kv_touch(ro, "e", 1, 1000));
	kv_close(ro);
}

static void test_incr(void **state)
{
	(void)state;
	kv_t *kv = u_create("incr", 8 << 20, 4096, 0);
	int64_t r = 0;

	assert_kv(KV_OK, kv_incr(kv, "n", 1, 5, &r));
	assert_int_equal(r, 5);
	assert_kv(KV_OK, kv_incr(kv, "n", 1, -7, &r));
	assert_int_equal(r, -2);
	u_expect_str(kv, "n", "-2");
	assert_kv(KV_OK, u_puts(kv, "n", "+41"));
	assert_kv(KV_OK, kv_incr(kv, "n", 1, 1, &r));
	assert_int_equal(r, 42);

	const char *bad[] = {"", "abc", "1.5", " 1", "1 ", "--1", "+",
	                     "123456789012345678901"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		assert_kv(KV_OK, u_puts(kv, "b", bad[i]));
		assert_kv(KV_ENOTNUM, kv_incr(kv, "b", 1, 1, &r));
		u_expect_str(kv, "b", bad[i]);
	}
	assert_kv(KV_OK, u_puts(kv, "m", "9223372036854775807"));
	assert_kv(KV_EOVERFLOW, kv_incr(kv, "m", 1, 1, &r));
	u_expect_str(kv, "m", "9223372036854775807");
	assert_kv(KV_OK, u_puts(kv, "m", "-9223372036854775808"));
	assert_kv(KV_EOVERFLOW, kv_incr(kv, "m", 1, -1, &r));
	assert_kv(KV_OK, kv_incr(kv, "m", 1, 1, &r));
	assert_int_equal(r, INT64_MIN + 1);

	/* The TTL survives an increment; an expired key counts as 0. */
	uint64_t t0 = UINT64_C(1900000000000);
	kv__set_test_clock(t0);
	struct kv_put_opts o = {.ttl_ms = 1000};
	assert_kv(KV_OK, kv_put(kv, "t", 1, "10", 2, &o));
	kv__set_test_clock(t0 + 400);
	assert_kv(KV_OK, kv_incr(kv, "t", 1, 1, &r));
	int64_t left;
	assert_kv(KV_OK, kv_ttl(kv, "t", 1, &left));
	assert_int_equal(left, 600);
	kv__set_test_clock(t0 + 2000);
	assert_kv(KV_OK, kv_incr(kv, "t", 1, 1, &r));
	assert_int_equal(r, 1);
	assert_kv(KV_OK, kv_ttl(kv, "t", 1, &left));
	assert_int_equal(left, -1);
	kv__set_test_clock(0);
	assert_sound(kv);
	kv_close(kv);
}

static void test_flush(void **state)
{
	(void)state;
	kv_t *kv = u_create("flush", 16 << 20, 4096, 3000);
	char k[32];
	for (int i = 0; i < 2500; i++)
		assert_kv(KV_OK, kv_put(kv, k, (size_t)snprintf(k, sizeof k,
		                                                "f%d", i),
		                        k, 4, NULL));
	uint64_t removed = 0;
	assert_kv(KV_OK, kv_flush(kv, &removed));
	assert_int_equal(removed, 2500);
	struct kv_stats st;
	assert_kv(KV_OK, kv_stats(kv, &st));
	assert_int_equal(st.items, 0);
	assert_int_equal(st.data_used, 0);
	assert_int_equal(st.pages_used, 0);
	for (uint64_t b = 0; b < kv->nbuckets; b++)
		assert_int_equal(kv__bucket(kv, b)->overflow, 0);
	assert_sound(kv);
	assert_kv(KV_OK, u_puts(kv, "after", "flush"));
	u_expect_str(kv, "after", "flush");
	kv_close(kv);
}

/* The sweep removes expired items it has not been asked about, a slice at
 * a time, and only those. */
static void test_sweep(void **state)
{
	(void)state;
	kv_t *kv = u_create("sweep", 16 << 20, 4096, 4000);
	uint64_t t0 = UINT64_C(1900000000000);
	char k[32];
	kv__set_test_clock(t0);
	for (int i = 0; i < 3000; i++) {
		struct kv_put_opts o = {.ttl_ms = i % 3 == 0 ? 0 : 1000};
		assert_kv(KV_OK, kv_put(kv, k, (size_t)snprintf(k, sizeof k,
		                                                "s%d", i),
		                        "v", 1, &o));
	}
	kv__set_test_clock(t0 + 5000);
	uint64_t n, total = 0, steps = 0;
	/* A step removes at most 128: a mass expiry takes several. */
	while (total < 2000 && steps < 1000) {
		assert_kv(KV_OK, kv__sweep(kv, 100, &n));
		assert_true(n <= 128 + 2 * KV_SLOTS); /* it ends its bucket */
		total += n;
		steps++;
	}
	assert_int_equal(total, 2000);
	assert_true(steps >= 2000 / 128);
	struct kv_stats st;
	assert_kv(KV_OK, kv_stats(kv, &st));
	assert_int_equal(st.items, 1000);
	assert_int_equal(st.expired, 2000);
	assert_int_equal(st.sweeps, steps);
	assert_true(st.sweep_ns > 0);
	for (int i = 0; i < 3000; i += 3) {
		int kl = snprintf(k, sizeof k, "s%d", i);
		u_expect(kv, k, (size_t)kl, "v", 1);
	}
	kv__set_test_clock(0);
	assert_sound(kv);
	kv_close(kv);
}

static void test_class_stats(void **state)
{
	(void)state;
	kv_t *kv = u_create("classes2", 8 << 20, 4096, 0);
	char val[1000] = {0};
	for (int i = 0; i < 100; i++)
		assert_kv(KV_OK, kv_put(kv, &i, sizeof i, val, 1000, NULL));
	struct kv_stats st;
	assert_kv(KV_OK, kv_stats(kv, &st));
	uint64_t used = 0, pages = 0;
	for (uint32_t c = 0; c < st.nclasses; c++) {
		struct kv_class_stats cs;
		assert_kv(KV_OK, kv_class_stats(kv, c, &cs));
		assert_true(cs.chunk_size >= KV_MIN_CHUNK);
		used += cs.used;
		pages += cs.pages;
		if (cs.used)
			assert_true(cs.chunk_size >= KV_ITEM_HDR + 4 + 1000);
	}
	assert_int_equal(used, 100);
	assert_int_equal(pages, st.pages_used);
	struct kv_class_stats cs;
	assert_kv(KV_EINVAL, kv_class_stats(kv, st.nclasses, &cs));
	kv_close(kv);
}

/* Hits and misses from every handle add up, survive a handle's close, and
 * survive a process that died without closing. */
static void test_hit_counters(void **state)
{
	(void)state;
	kv_t *kv = u_create("hits", 8 << 20, 4096, 0);
	char name[KV_PATH_MAX];
	snprintf(name, sizeof name, "%s", kv__path(kv) + strlen("/dev/shm/kv."));
	char buf[8];
	size_t n;
	assert_kv(KV_OK, u_puts(kv, "k", "v"));
	for (int i = 0; i < 10; i++)
		kv_get(kv, "k", 1, buf, sizeof buf, &n);
	for (int i = 0; i < 3; i++)
		kv_get(kv, "nope", 4, buf, sizeof buf, &n);

	kv_t *b = NULL;
	assert_kv(KV_OK, kv_open(name, KV_RDWR, &b));
	for (int i = 0; i < 5; i++)
		kv_get(b, "k", 1, buf, sizeof buf, &n);
	kv_close(b);

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		kv_t *c = NULL;
		if (kv_open(name, KV_RDWR, &c) != KV_OK)
			_exit(1);
		for (int i = 0; i < 7; i++)
			kv_get(c, "k", 1, buf, sizeof buf, &n);
		kill(getpid(), SIGKILL); /* no kv_close */
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));

	struct kv_stats st;
	assert_kv(KV_OK, kv_stats(kv, &st));
	assert_int_equal(st.hits, 22);
	assert_int_equal(st.misses, 3);
	kv_close(kv);
	/* Reattach: everything is retired into the totals or still counted. */
	assert_kv(KV_OK, kv_open(name, KV_RDONLY, &b));
	kv_get(b, "k", 1, buf, sizeof buf, &n);
	assert_kv(KV_OK, kv_stats(b, &st));
	assert_int_equal(st.hits, 23);
	assert_int_equal(st.misses, 3);
	kv_close(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_cas, h_teardown),
		cmocka_unit_test_teardown(test_client_flags, h_teardown),
		cmocka_unit_test_teardown(test_touch, h_teardown),
		cmocka_unit_test_teardown(test_incr, h_teardown),
		cmocka_unit_test_teardown(test_flush, h_teardown),
		cmocka_unit_test_teardown(test_sweep, h_teardown),
		cmocka_unit_test_teardown(test_class_stats, h_teardown),
		cmocka_unit_test_teardown(test_hit_counters, h_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
