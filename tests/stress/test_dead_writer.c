/*
 * test_dead_writer.c - a reader is not stalled by a writer that died
 * inside a write.
 *
 * A forked child arms crash point 6 (kv__crash_arm, libkv's private
 * kv_internal.h: SIGKILL right after the journal commit, with the bucket
 * it changes still odd and the robust mutex owned by a dead process) and
 * replaces the key "victim". Then:
 *
 *   - other buckets read at once, on a read-only handle too;
 *   - a KV_RDONLY get of the victim with nobody able to recover gives up
 *     with KV_EBUSY in bounded time (it cannot take the lock), not a hang;
 *   - a KV_RDWR get of the victim succeeds: it falls back to the lock,
 *     recovers, and sees the committed value;
 *   - with kvd serving the store (stopped while a second child dies the
 *     same way and while a KV_RDONLY get of the victim starts, then
 *     continued 50 ms later), that get succeeds with the committed value:
 *     the reader backs off until kvd's tick (every 10 ms) recovers.
 *
 * Times are printed, never asserted.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "kv_internal.h"
#include "workload.h"

#define CRASH_AFTER_COMMIT 6
#define HOLD_MS 50 /* kvd stays stopped this long into the get */

static const char *store;

static int crash_put(void *arg)
{
	const char *val = arg;
	kv_t *kv = NULL;

	if (kv_open(store, KV_RDWR, &kv) != KV_OK)
		return 20;
	kv__crash_arm(CRASH_AFTER_COMMIT);
	kv_put(kv, "victim", 6, val, strlen(val), NULL);
	return 21; /* the crash point did not fire */
}

static void crash_writer(const char *val)
{
	char sb[64];
	int st;
	pid_t pid = sw_fork(crash_put, (void *)val);

	if (!sw_wait(pid, 10000, &st))
		fail_msg("the crashing writer did not die within 10 s");
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
		fail_msg("the crashing writer: %s, expected death by SIGKILL "
		         "at crash point %d",
		         sw_status_str(st, sb, sizeof(sb)), CRASH_AFTER_COMMIT);
}

/* The bucket holding key, and whether it is odd (a writer inside). Reads
 * the index without the lock: call only while no writer runs. */
static uint64_t bucket_of(kv_t *kv, const char *key, bool *odd)
{
	struct kv_found f;
	size_t kl = strlen(key);

	assert_int_equal(kv__find_locked(kv, kv__hash(kv, key, kl), key, kl,
	                                 &f),
	                 KV_OK);
	assert_true(f.item != 0);
	*odd = (atomic_load(&kv__bucket(kv, f.bucket)->seq) & 1u) != 0;
	return f.bucket;
}

/* kv_get of key, timed; the value must be want (when rc is KV_OK). */
static int timed_get(kv_t *kv, const char *key, const char *want,
                     double *ms)
{
	char buf[256];
	size_t n = 0;
	uint64_t t0 = sw_now_ns();
	int rc = kv_get(kv, key, strlen(key), buf, sizeof(buf), &n);

	*ms = (double)(sw_now_ns() - t0) / 1e6;
	if (rc == KV_OK && want != NULL) {
		if (n != strlen(want) || memcmp(buf, want, n) != 0)
			fail_msg("get %s: \"%.*s\", expected \"%s\"", key, (int)n,
			         buf, want);
	}
	return rc;
}

static uint64_t recoveries(kv_t *kv)
{
	struct kv_stats st;
	assert_int_equal(kv_stats(kv, &st), KV_OK);
	return st.recoveries;
}

struct rec_wait {
	kv_t *kv;
	uint64_t want;
};

static bool recovered(void *ctx)
{
	struct rec_wait *w = ctx;
	return recoveries(w->kv) >= w->want;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* State letter of pid from /proc ('T' when stopped), or 0. */
static char proc_state(pid_t pid)
{
	char path[64], buf[512];
	FILE *f;
	char st = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	if (fgets(buf, sizeof(buf), f) != NULL) {
		char *p = strrchr(buf, ')');
		if (p != NULL && p[1] == ' ')
			st = p[2];
	}
	fclose(f);
	return st;
}

/* SIGSTOP kvd at a moment it does not hold the writer lock (its tick
 * takes it briefly), so the crashing writer can take it. */
static void stop_kvd(kv_t *kv, pid_t pid)
{
	pthread_mutex_t *m = &kv__hdr(kv)->mutex;

	for (int tries = 0; tries < 1000; tries++) {
		assert_int_equal(kill(pid, SIGSTOP), 0);
		for (int i = 0; i < 1000 && proc_state(pid) != 'T'; i++)
			sleep_ms(1);
		if (proc_state(pid) != 'T')
			fail_msg("kvd (pid %d) did not stop", (int)pid);
		int e = pthread_mutex_trylock(m);
		if (e == 0) {
			pthread_mutex_unlock(m);
			return;
		}
		if (e != EBUSY)
			fail_msg("trylock of the writer lock: %s", strerror(e));
		assert_int_equal(kill(pid, SIGCONT), 0);
		sleep_ms(1);
	}
	fail_msg("kvd always held the writer lock when stopped");
}

/* A read-only get in a thread, timed from just before the call. */
struct ro_get {
	kv_t *kv;
	const char *key;
	_Atomic int started;
	int rc;
	double ms;
	char buf[64];
	size_t n;
};

static void *ro_get_main(void *arg)
{
	struct ro_get *g = arg;
	uint64_t t0 = sw_now_ns();

	atomic_store(&g->started, 1);
	g->rc = kv_get(g->kv, g->key, strlen(g->key), g->buf, sizeof(g->buf),
	               &g->n);
	g->ms = (double)(sw_now_ns() - t0) / 1e6;
	return NULL;
}


static void report(void *ctx, const char *problem)
{
	(void)ctx;
	print_error("kv_check: %s\n", problem);
}

static void test_dead_writer(void **state)
{
	(void)state;
#ifndef KV_STRESS_CRASHPOINTS
	print_message("(built without crash points: skipped)\n");
	skip();
#endif
	struct kv_options o = {.size = 8u << 20, .max_value = 4096,
	                       .flags = KV_CREATE_EXCL};
	kv_t *kv = NULL, *ro = NULL;
	char k[32], other[32] = "";
	double ms;
	bool odd;
	int rc;

	store = h_store_name("deadwriter");
	rc = kv_create(store, &o, &kv);
	if (rc != KV_OK)
		fail_msg("kv_create: %s", kv_strerror(rc));
	for (int i = 0; i < 200; i++) {
		int n = snprintf(k, sizeof(k), "filler%d", i);
		assert_int_equal(kv_put(kv, k, (size_t)n, k, (size_t)n, NULL),
		                 KV_OK);
	}
	assert_int_equal(kv_put(kv, "victim", 6, "value 1", 7, NULL), KV_OK);
	assert_int_equal(kv_open(store, KV_RDONLY, &ro), KV_OK);
	uint64_t vb = bucket_of(kv, "victim", &odd);
	for (int i = 0; i < 200 && other[0] == '\0'; i++) {
		snprintf(k, sizeof(k), "filler%d", i);
		if (bucket_of(kv, k, &odd) != vb)
			strcpy(other, k);
	}
	assert_true(other[0] != '\0');

	/* 1. A writer dies after its commit, holding the lock. */
	uint64_t rec0 = recoveries(kv);
	crash_writer("value 2");
	bucket_of(kv, "victim", &odd);
	if (!odd)
		fail_msg("the victim's bucket is not odd after the crash");

	rc = timed_get(ro, other, other, &ms);
	if (rc != KV_OK)
		fail_msg("read-only get of a key in another bucket: %s",
		         kv_errname(rc));
	print_message("dead-writer: read-only get in another bucket: %.3f ms\n",
	              ms);

	/* 2. Nobody can recover for a read-only handle: bounded KV_EBUSY. */
	rc = timed_get(ro, "victim", NULL, &ms);
	print_message("dead-writer: read-only get of the victim, no kvd: %s "
	              "after %.1f ms\n",
	              kv_errname(rc), ms);
	if (rc != KV_EBUSY)
		fail_msg("read-only get with the lock holder dead and no kvd: "
		         "%s, expected KV_EBUSY",
		         kv_errname(rc));
	assert_int_equal(recoveries(kv), rec0);

	/* 3. A read-write get falls back to the lock and recovers. */
	rc = timed_get(kv, "victim", "value 2", &ms);
	print_message("dead-writer: read-write get of the victim: %s after "
	              "%.3f ms (recovered the lock)\n",
	              kv_errname(rc), ms);
	if (rc != KV_OK)
		fail_msg("read-write get of the victim: %s", kv_errname(rc));
	assert_int_equal(recoveries(kv), rec0 + 1);
	bucket_of(kv, "victim", &odd);
	assert_false(odd);
	rc = timed_get(ro, "victim", "value 2", &ms);
	assert_int_equal(rc, KV_OK);

	/* 4. With kvd serving, a read-only reader waits for its tick. kvd is
	 * stopped while the writer dies, and the reader starts its get while
	 * kvd is still stopped, so it really meets the odd bucket; kvd is
	 * continued HOLD_MS later. */
	struct h_proc *kvd = h_kvd(store, NULL);
	stop_kvd(kv, kvd->pid);
	crash_writer("value 3");
	bucket_of(kv, "victim", &odd);
	if (!odd)
		fail_msg("the victim's bucket is not odd after the 2nd crash");
	assert_int_equal(recoveries(kv), rec0 + 1);
	struct ro_get g = {.kv = ro, .key = "victim"};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, ro_get_main, &g), 0);
	while (!atomic_load(&g.started))
		sched_yield();
	sleep_ms(HOLD_MS);
	assert_int_equal(kill(kvd->pid, SIGCONT), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	print_message("dead-writer: read-only get of the victim with kvd "
	              "stopped for %d ms, then continued: %s after %.3f ms "
	              "(kvd recovered)\n",
	              HOLD_MS, kv_errname(g.rc), g.ms);
	if (g.rc != KV_OK)
		fail_msg("read-only get with kvd serving: %s", kv_errname(g.rc));
	if (g.n != 7 || memcmp(g.buf, "value 3", 7) != 0)
		fail_msg("read-only get: \"%.*s\", expected \"value 3\"",
		         (int)g.n, g.buf);
	/* kvd counts the recovery after it has made the bucket even, so
	 * the reader may be back before the count moves. */
	struct rec_wait rw = {kv, rec0 + 2};
	if (!h_wait_for(recovered, &rw, 5000))
		fail_msg("recoveries %" PRIu64 ", expected %" PRIu64
		         " (kvd's recovery)",
		         recoveries(kv), rec0 + 2);

	rc = kv_check(kv, report, NULL);
	if (rc != KV_OK)
		fail_msg("kv_check: %s", kv_strerror(rc));
	struct h_result r;
	assert_true(h_stop(kvd, SIGTERM, 5000, &r));
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	kv_close(ro);
	kv_close(kv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_dead_writer, sw_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
