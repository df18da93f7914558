/*
 * test_win_unit.c - libkv on Windows, in one process and its children:
 * the table (many keys put, replaced, deleted and read back), the
 * allocator (a store filled past full, evicting; and one that refuses),
 * the API's errors, and the journal and recovery (a child killed at each
 * numbered crash point inside a put, the parent recovering).
 *
 *   test_win_unit                    run every test
 *   test_win_unit crash STORE POINT  child role: die at POINT inside a put
 */
#include <stdint.h>

#include "kv_internal.h"
#include "wtest.h"

static void key_of(unsigned i, char *k, size_t cap)
{
	snprintf(k, cap, "key:%08u", i);
}

/* A value that names its key and round, so a wrong one is seen. */
static size_t value_of(unsigned i, unsigned round, char *v, size_t cap)
{
	int n = snprintf(v, cap, "value %u of key %u:", round, i);
	size_t len = (size_t)n + (i * 7 + round) % 200;
	if (len > cap)
		len = cap;
	for (size_t j = (size_t)n; j < len; j++)
		v[j] = (char)('a' + (i + j) % 26);
	return len;
}

static void test_table(void)
{
	const char *name = wt_store("table");
	struct kv_options o = {.size = 8u << 20};
	kv_t *kv;
	char k[32], v[512], got[512];
	size_t vlen;
	const unsigned n = 20000;

	CHECK_KV(KV_OK, kv_create(name, &o, &kv));
	for (unsigned i = 0; i < n; i++) {
		key_of(i, k, sizeof k);
		size_t len = value_of(i, 0, v, sizeof v);
		CHECK_KV(KV_OK, kv_put(kv, k, strlen(k), v, len, NULL));
	}
	for (unsigned i = 0; i < n; i += 3) { /* replace a third */
		key_of(i, k, sizeof k);
		size_t len = value_of(i, 1, v, sizeof v);
		CHECK_KV(KV_OK, kv_put(kv, k, strlen(k), v, len, NULL));
	}
	unsigned deleted = 0;
	for (unsigned i = 1; i < n; i += 3, deleted++) { /* another third */
		key_of(i, k, sizeof k);
		CHECK_KV(KV_OK, kv_del(kv, k, strlen(k)));
	}
	unsigned bad = 0;
	for (unsigned i = 0; i < n; i++) {
		key_of(i, k, sizeof k);
		int rc = kv_get(kv, k, strlen(k), got, sizeof got, &vlen);
		if (i % 3 == 1) {
			bad += rc != KV_ENOTFOUND;
			continue;
		}
		size_t len = value_of(i, i % 3 == 0 ? 1 : 0, v, sizeof v);
		bad += rc != KV_OK || vlen != len || memcmp(got, v, len) != 0;
	}
	CHECK(bad == 0);
	struct kv_stats st;
	CHECK_KV(KV_OK, kv_stats(kv, &st));
	CHECK(st.items == n - deleted);
	CHECK_KV(KV_OK, kv_check(kv, NULL, NULL));
	/* Destroy while attached: on Windows a section goes with its last
	 * handle, so after kv_close there would be nothing to destroy. */
	CHECK_KV(KV_OK, kv_destroy(name));
	kv_close(kv);
}

static void test_full_store(void)
{
	const char *name = wt_store("full");
	struct kv_options o = {.size = 2u << 20};
	kv_t *kv;
	char k[32], v[1000];
	memset(v, 'x', sizeof v);

	/* Evicting: every put succeeds, the store stays sound. */
	CHECK_KV(KV_OK, kv_create(name, &o, &kv));
	for (unsigned i = 0; i < 10000; i++) {
		key_of(i, k, sizeof k);
		CHECK_KV(KV_OK, kv_put(kv, k, strlen(k), v, sizeof v, NULL));
	}
	struct kv_stats st;
	CHECK_KV(KV_OK, kv_stats(kv, &st));
	CHECK(st.evictions > 0);
	CHECK_KV(KV_OK, kv_check(kv, NULL, NULL));
	/* Destroy while attached: on Windows a section goes with its last
	 * handle, so after kv_close there would be nothing to destroy. */
	CHECK_KV(KV_OK, kv_destroy(name));
	kv_close(kv);

	/* Refusing: KV_EFULL, and what was acknowledged stays. */
	name = wt_store("noevict");
	o.flags = KV_CREATE_NOEVICT;
	CHECK_KV(KV_OK, kv_create(name, &o, &kv));
	unsigned stored = 0;
	int rc = KV_OK;
	for (unsigned i = 0; i < 10000 && rc == KV_OK; i++) {
		key_of(i, k, sizeof k);
		rc = kv_put(kv, k, strlen(k), v, sizeof v, NULL);
		stored += rc == KV_OK;
	}
	CHECK_KV(KV_EFULL, rc);
	for (unsigned i = 0; i < stored; i++) {
		char got[1000];
		size_t vlen;
		key_of(i, k, sizeof k);
		CHECK_KV(KV_OK, kv_get(kv, k, strlen(k), got, sizeof got, &vlen));
	}
	CHECK_KV(KV_OK, kv_check(kv, NULL, NULL));
	/* Destroy while attached: on Windows a section goes with its last
	 * handle, so after kv_close there would be nothing to destroy. */
	CHECK_KV(KV_OK, kv_destroy(name));
	kv_close(kv);
}

static void test_api_errors(void)
{
	const char *name = wt_store("api");
	kv_t *kv, *ro;
	char big[5000];
	size_t vlen;

	CHECK_KV(KV_ENAME, kv_open("bad name", KV_RDONLY, &kv));
	CHECK_KV(KV_ENOSTORE, kv_open(name, KV_RDONLY, &kv));
	CHECK_KV(KV_OK, kv_create(name, NULL, &kv));
	CHECK_KV(KV_ESTOREEXISTS,
	         kv_create(name, &(struct kv_options){.flags = KV_CREATE_EXCL},
	                   &ro));
	memset(big, 'k', sizeof big);
	CHECK_KV(KV_EKEYSIZE, kv_put(kv, big, sizeof big, "v", 1, NULL));
	CHECK_KV(KV_EKEYSIZE, kv_put(kv, big, 0, "v", 1, NULL));
	CHECK_KV(KV_ENOTFOUND, kv_get(kv, "nope", 4, big, sizeof big, &vlen));
	CHECK_KV(KV_OK, kv_put(kv, "k", 1, "hello", 5, NULL));
	CHECK_KV(KV_ERANGE, kv_get(kv, "k", 1, big, 2, &vlen));
	CHECK(vlen == 5);
	CHECK_KV(KV_EEXIST, kv_put(kv, "k", 1, "x", 1,
	                           &(struct kv_put_opts){.flags = KV_PUT_NX}));
	int64_t n;
	CHECK_KV(KV_OK, kv_put(kv, "n", 1, "41", 2, NULL));
	CHECK_KV(KV_OK, kv_incr(kv, "n", 1, 1, &n));
	CHECK(n == 42);
	CHECK_KV(KV_ENOTNUM, kv_incr(kv, "k", 1, 1, &n));
	/* A read-only attach maps FILE_MAP_READ: gets work, writes fail. */
	CHECK_KV(KV_OK, kv_open(name, KV_RDONLY, &ro));
	CHECK_KV(KV_OK, kv_get(ro, "k", 1, big, sizeof big, &vlen));
	CHECK(vlen == 5 && memcmp(big, "hello", 5) == 0);
	CHECK_KV(KV_ERDONLY, kv_put(ro, "k", 1, "x", 1, NULL));
	CHECK_KV(KV_ERDONLY, kv_del(ro, "k", 1));
	kv_close(ro);
	/* A section's size is fixed: stores do not grow here, and the
	 * refusal changes nothing. */
	struct kv_stats st;
	CHECK_KV(KV_OK, kv_stats(kv, &st));
	CHECK_KV(KV_ENOTSUP, kv_resize(kv, st.map_size * 2));
	CHECK_KV(KV_OK, kv_resize(kv, st.map_size));
	CHECK_KV(KV_OK, kv_get(kv, "k", 1, big, sizeof big, &vlen));
	/* Destroyed: marked dead for the handles still attached. */
	CHECK_KV(KV_OK, kv_destroy(name));
	CHECK_KV(KV_EDESTROYED, kv_get(kv, "k", 1, big, sizeof big, &vlen));
	CHECK_KV(KV_EDESTROYED, kv_put(kv, "k", 1, "x", 1, NULL));
	kv_close(kv);
}

/* Child: put key "k" = "new" and die at the crash point. */
static int crash_child(const char *name, int point)
{
	kv_t *kv;
	if (kv_open(name, KV_RDWR, &kv) != KV_OK)
		return 3;
	kv__crash_arm(point);
	kv_put(kv, "k", 1, "new value", 9, NULL);
	return 4; /* the point was not reached */
}

static void test_crash_recovery(void)
{
	for (int point = 1; point <= 10; point++) {
		const char *name = wt_store("crash");
		kv_t *kv;
		char args[128], got[64];
		size_t vlen;
		struct wt_child c;

		CHECK_KV(KV_OK, kv_create(name, NULL, &kv));
		for (unsigned i = 0; i < 100; i++) {
			char k[32];
			key_of(i, k, sizeof k);
			CHECK_KV(KV_OK, kv_put(kv, k, strlen(k), k, strlen(k), NULL));
		}
		CHECK_KV(KV_OK, kv_put(kv, "k", 1, "old", 3, NULL));
		snprintf(args, sizeof args, "crash %s %d", name, point);
		CHECK(wt_spawn(args, &c) == 0);
		int code = wt_wait(&c, 30000);
		CHECK(code == 137); /* TerminateProcess at the point */
		struct kv_stats before, after;
		CHECK_KV(KV_OK, kv_stats(kv, &before));
		/* The next writer recovers (WAIT_ABANDONED). */
		CHECK_KV(KV_OK, kv_put(kv, "other", 5, "x", 1, NULL));
		CHECK_KV(KV_OK, kv_stats(kv, &after));
		CHECK(after.recoveries == before.recoveries + 1);
		CHECK_KV(KV_OK, kv_get(kv, "k", 1, got, sizeof got, &vlen));
		bool old = vlen == 3 && memcmp(got, "old", 3) == 0;
		bool new = vlen == 9 && memcmp(got, "new value", 9) == 0;
		CHECK(old || new);
		/* Points up to 5 are before the commit, from 6 after it. */
		CHECK(point <= 5 ? old : new);
		for (unsigned i = 0; i < 100; i++) {
			char k[32];
			key_of(i, k, sizeof k);
			CHECK_KV(KV_OK, kv_get(kv, k, strlen(k), got, sizeof got,
			                       &vlen));
		}
		CHECK_KV(KV_OK, kv_check(kv, NULL, NULL));
		kv_destroy(name);
		kv_close(kv);
	}
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "crash") == 0)
		return crash_child(argv[2], atoi(argv[3]));
	test_table();
	test_full_store();
	test_api_errors();
	test_crash_recovery();
	return wt_report("test_win_unit");
}
