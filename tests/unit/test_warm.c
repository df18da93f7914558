/*
 * test_warm.c - kv_open's background warm-up of the new handle's page
 * tables (libkv/warm_posix.c): it maps the index and the pages in use
 * without being asked, not with KV_NOWARM or $KV_NOWARM, not for small
 * stores; kv_close stops it at any moment; a forked child neither joins
 * its parent's thread nor loses its handle; a writer in the same process
 * meanwhile is not disturbed (and ThreadSanitizer, which runs this file
 * in the stress suite, has nothing to say).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

#define BIG (64u << 20) /* above KV_WARM_MIN */
#define KEYS 20000

/* Resident bytes of this process's mapping of the store at base, from
 * /proc/self/smaps. */
static uint64_t rss_of(const void *base)
{
	char line[256];
	FILE *f = fopen("/proc/self/smaps", "re");
	bool in = false;
	uint64_t kb = 0;

	assert_non_null(f);
	while (fgets(line, sizeof line, f) != NULL) {
		unsigned long lo, hi;
		unsigned long long v;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
			if (in)
				break;
			in = (uintptr_t)lo == (uintptr_t)base;
			continue;
		}
		if (in && sscanf(line, "Rss: %llu kB", &v) == 1)
			kb = v;
	}
	fclose(f);
	return kb * 1024;
}

static const char *fill(const char *tag, uint64_t size)
{
	const char *name = h_store_name(tag);
	struct kv_options o = {.size = size, .flags = KV_CREATE_EXCL};
	kv_t *kv = NULL;
	char k[32], v[100];

	assert_kv(KV_OK, kv_create(name, &o, &kv));
	memset(v, 'v', sizeof v);
	for (int i = 0; i < KEYS; i++) {
		int n = snprintf(k, sizeof k, "key:%d", i);
		assert_kv(KV_OK, kv_put(kv, k, (size_t)n, v, sizeof v, NULL));
	}
	kv_close(kv);
	return name;
}

static void wait_warm(kv_t *kv)
{
	for (int i = 0; i < 5000 && !kv__warm_done(kv); i++)
		usleep(1000);
	assert_true(kv__warm_done(kv));
}

static void test_flags(void **state)
{
	const char *s = fill("warm-flags", 4u << 20);
	kv_t *kv = NULL;

	(void)state;
	assert_kv(KV_EINVAL, kv_open(s, 0x4u, &kv));
	assert_null(kv);
	assert_kv(KV_OK, kv_open(s, KV_RDONLY | KV_NOWARM, &kv));
	kv_close(kv);
	assert_kv(KV_OK, kv_open(s, KV_RDWR | KV_NOWARM, &kv));
	kv_close(kv);
}

/* Warmed: the whole index, the page table and the arena pages in use are
 * resident in this process's page tables without a get; not warmed: only
 * what attaching read. */
static void test_warms_index(void **state)
{
	const char *s = fill("warm-index", BIG);
	kv_t *kv = NULL, *cold = NULL;
	uint64_t index;

	(void)state;
	assert_kv(KV_OK, kv_open(s, KV_RDONLY, &kv));
	assert_non_null(kv->warm);
	wait_warm(kv);
	index = kv->nbuckets * KV_CACHELINE;
	struct kv_stats st;
	assert_kv(KV_OK, kv_stats(kv, &st));
	uint64_t used = index + st.pages_used * (uint64_t)st.page_size;
	if (rss_of(kv->base) < used)
		fail_msg("warmed handle maps %llu bytes; index and arena in "
		         "use are %llu",
		         (unsigned long long)rss_of(kv->base),
		         (unsigned long long)used);

	assert_kv(KV_OK, kv_open(s, KV_RDWR | KV_NOWARM, &cold));
	assert_null(cold->warm);
	if (rss_of(cold->base) >= index / 2)
		fail_msg("a KV_NOWARM handle maps %llu bytes already",
		         (unsigned long long)rss_of(cold->base));
	kv_close(cold);

	setenv("KV_NOWARM", "1", 1);
	assert_kv(KV_OK, kv_open(s, KV_RDWR, &cold));
	unsetenv("KV_NOWARM");
	assert_null(cold->warm);
	kv_close(cold);
	kv_close(kv);
}

static void test_small_store_not_warmed(void **state)
{
	const char *s = fill("warm-small", 8u << 20);
	kv_t *kv = NULL;

	(void)state;
	assert_kv(KV_OK, kv_open(s, KV_RDWR, &kv));
	assert_null(kv->warm);
	assert_true(kv__warm_done(kv));
	kv_close(kv);
}

/* kv_close at any moment of the warm-up: right away, soon, later. */
static void test_close_early(void **state)
{
	const char *s = fill("warm-close", BIG);

	(void)state;
	for (int i = 0; i < 60; i++) {
		kv_t *kv = NULL;
		char v[128];
		size_t n;
		assert_kv(KV_OK, kv_open(s, i % 2 ? KV_RDONLY : KV_RDWR, &kv));
		if (i % 3 == 1)
			assert_kv(KV_OK, kv_get(kv, "key:7", 5, v, sizeof v,
			                        &n));
		if (i % 3 == 2)
			usleep((useconds_t)(i * 50));
		kv_close(kv);
	}
}

/* A child forked while the parent's warm-up runs keeps a working handle
 * and closes it without waiting for a thread it does not have. */
static void test_fork(void **state)
{
	const char *s = fill("warm-fork", BIG);
	kv_t *kv = NULL;
	int st;

	(void)state;
	assert_kv(KV_OK, kv_open(s, KV_RDWR, &kv));
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char v[128];
		size_t n;
		int ok = kv_get(kv, "key:42", 6, v, sizeof v, &n) == KV_OK &&
		         n == 100 &&
		         kv_put(kv, "child", 5, "x", 1, NULL) == KV_OK;
		kv_close(kv);
		_exit(ok ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	char v[8];
	size_t n;
	assert_kv(KV_OK, kv_get(kv, "child", 5, v, sizeof v, &n));
	kv_close(kv);
}

struct writer {
	kv_t *kv;
	atomic_bool stop;
	unsigned long puts;
};

static void *write_loop(void *arg)
{
	struct writer *w = arg;
	char k[32], v[100];

	memset(v, 'w', sizeof v);
	while (!atomic_load(&w->stop)) {
		int n = snprintf(k, sizeof k, "key:%lu", w->puts % KEYS);
		if (kv_put(w->kv, k, (size_t)n, v, sizeof v, NULL) != KV_OK)
			break;
		w->puts++;
	}
	return NULL;
}

/* A writer thread of this process puts while handles are opened, warmed
 * and closed beside it; every value read back is whole. */
static void test_writer_beside(void **state)
{
	const char *s = fill("warm-writer", BIG);
	struct writer w = {0};
	pthread_t t;

	(void)state;
	assert_kv(KV_OK, kv_open(s, KV_RDWR | KV_NOWARM, &w.kv));
	assert_int_equal(pthread_create(&t, NULL, write_loop, &w), 0);
	for (int i = 0; i < 10; i++) {
		kv_t *kv = NULL;
		char v[128];
		size_t n;
		assert_kv(KV_OK, kv_open(s, KV_RDONLY, &kv));
		wait_warm(kv);
		assert_kv(KV_OK, kv_get(kv, "key:1", 5, v, sizeof v, &n));
		assert_int_equal(n, 100);
		assert_true(v[0] == 'v' || v[0] == 'w');
		assert_true(v[99] == v[0]);
		kv_close(kv);
	}
	atomic_store(&w.stop, true);
	pthread_join(t, NULL);
	assert_true(w.puts > 0);
	assert_sound(w.kv);
	kv_close(w.kv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_flags, h_teardown),
		cmocka_unit_test_teardown(test_warms_index, h_teardown),
		cmocka_unit_test_teardown(test_small_store_not_warmed,
		                          h_teardown),
		cmocka_unit_test_teardown(test_close_early, h_teardown),
		cmocka_unit_test_teardown(test_fork, h_teardown),
		cmocka_unit_test_teardown(test_writer_beside, h_teardown),
	};

	unsetenv("KV_NOWARM");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
