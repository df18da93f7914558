/*
 * test_resize.c - growing a store while it serves (libkv/resize.c).
 *
 *   resize-live     W writer and R reader threads on ONE handle, a reader
 *                   thread on a KV_RDONLY handle, and two forked reader
 *                   processes (one read-only) with their own handles,
 *                   all verifying every value, while the main thread
 *                   grows the store four times (64 MiB -> 512 MiB) and
 *                   shrinks it twice (-> 80 MiB), with kv_check between. Then every private
 *                   key must read back as its writer last had it
 *                   acknowledged, and kv_check pass. The longest get any
 *                   reader saw is printed (never asserted).
 *   resize-killed   a child resizing the store is killed: at each of the
 *                   resize's crash points (mid-rehash, before the commit,
 *                   around and after it) and by SIGKILL after random
 *                   delays. After each death every key still reads back
 *                   whole and as put, kv_check passes (the next lock
 *                   holder finishes or drops the resize), the size is the
 *                   old or the new one, and the next resize succeeds.
 *                   Killed mid-apply, the first to touch the store is
 *                   also a new process (a read-only attach is told
 *                   KV_EBUSY, a read-write one finishes the resize) or a
 *                   handle a whole resize behind.
 *   resize-racing   four processes resize at once: they take turns, and
 *                   the store ends at the largest size, every key intact.
 *   resize-probes   a store grown 4x takes 4x the keys at the same probe
 *                   lengths.
 *   resize-shrink   a store whose live items sit in the pages a shrink
 *                   gives up: shrunk, every item moves below the new end
 *                   and reads back, the memory is given back, and it
 *                   grows and shrinks again; a shrinker killed at its
 *                   crash points (moving, after moving, before the
 *                   commit) and by SIGKILL after random delays leaves
 *                   every key whole, kv_check clean, the old or new size,
 *                   and the next shrink succeeding; a shrink the data
 *                   cannot fit is refused with nothing changed.
 *   resize-errors   what a resize refuses, and that it changes nothing.
 *
 * The first is the variant the ThreadSanitizer build runs (suite stress).
 * Environment: KV_STRESS_SECONDS (per growth step, 1), KV_STRESS_SEED.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "kv_internal.h"
#include "workload.h"

#define NSHARED 1000
#define NPRIV 128
#define MIB (UINT64_C(1) << 20)

static _Atomic int stop;

struct wthread {
	pthread_t t;
	struct sw_writer w;
	int rc;
};

struct rthread {
	pthread_t t;
	struct sw_reader r;
	int rc;
};

static void *writer_main(void *arg)
{
	struct wthread *t = arg;
	t->rc = sw_writer_run(&t->w);
	if (t->rc != 0)
		atomic_store(&stop, 1);
	return NULL;
}

static void *reader_main(void *arg)
{
	struct rthread *t = arg;
	t->rc = sw_reader_run(&t->r);
	if (t->rc != 0)
		atomic_store(&stop, 1);
	return NULL;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* A reader process: its own handle, attached before the first resize. */
struct rchild {
	const char *store;
	const struct sw_params *p;
	bool rdonly;
	uint64_t seed;
	uint64_t deadline;
	_Atomic int *stop;
	struct sw_rstats *out; /* shared with the parent */
};

static struct rchild rjob;

static int reader_child(void *arg)
{
	(void)arg;
	kv_t *kv = NULL;
	struct sw_reader r = {0};
	int rc = kv_open(rjob.store, rjob.rdonly ? KV_RDONLY : KV_RDWR, &kv);
	if (rc != KV_OK) {
		fprintf(stderr, "resize-live: reader process: kv_open: %s\n",
		        kv_strerror(rc));
		return 2;
	}
	r.kv = kv;
	r.p = rjob.p;
	r.id = 100 + (rjob.rdonly ? 1u : 0u);
	r.rdonly = rjob.rdonly;
	r.rng = rjob.seed ^ (0x3000u + r.id);
	r.stop = rjob.stop;
	r.deadline_ns = rjob.deadline;
	if (sw_reader_init(&r) != 0)
		return 2;
	rc = sw_reader_run(&r);
	*rjob.out = r.st;
	if (rc != 0) {
		atomic_store(rjob.stop, 1);
		fprintf(stderr, "resize-live: reader process: %s\n", r.err);
		return 3;
	}
	/* It must have followed every resize by itself. */
	struct kv_stats st;
	if (kv_stats(kv, &st) != KV_OK || st.resizes == 0) {
		fprintf(stderr, "resize-live: reader process did not see the "
		                "store grow\n");
		return 4;
	}
	sw_reader_fini(&r);
	kv_close(kv);
	return 0;
}

static void test_resize_live(void **state)
{
	(void)state;
	enum { NW = 2, NR = 2 };
	/* Four growths, then two shrinks. */
	static const uint64_t steps[] = {96 * MIB,  160 * MIB, 256 * MIB,
	                                 512 * MIB, 192 * MIB, 80 * MIB};
	uint64_t secs = sw_env_u64("KV_STRESS_SECONDS", 1);
	uint64_t seed = sw_seed();
	const char *name = h_store_name("rlive");
	static struct wthread wt[NW];
	static struct rthread rt[NR + 1];
	kv_t *kv = NULL, *ro = NULL;
	struct sw_params p = {NSHARED, NPRIV, NW, 600 * 1000, false};

	print_message("resize-live: %d writers, %d readers on one handle, 1 "
	              "read-only reader thread, 2 reader processes; a resize "
	              "every %" PRIu64 " s; seed %#" PRIx64 "\n",
	              NW, NR, secs, seed);
	struct kv_options o = {.size = 64 * MIB, .max_value = SW_VMAX,
	                       .max_items = sw_max_items(&p),
	                       .max_size = 1024 * MIB,
	                       .flags = KV_CREATE_NOEVICT};
	int rc = kv_create(name, &o, &kv);
	if (rc == KV_OK)
		rc = kv_open(name, KV_RDONLY | KV_NOWARM, &ro);
	if (rc != KV_OK)
		fail_msg("kv_create/kv_open: %s", kv_strerror(rc));

	uint64_t t0 = sw_now_ns();
	uint64_t deadline =
	    t0 + (secs * (sizeof steps / sizeof steps[0] + 1)) * 1000000000u;
	atomic_store(&stop, 0);
	_Atomic int *pstop = sw_shared(sizeof *pstop);
	struct sw_rstats *pst = sw_shared(2 * sizeof *pst);
	pid_t kids[2];
	for (int i = 0; i < 2; i++) {
		rjob = (struct rchild){name, &p, i == 1, seed, deadline, pstop,
		                       &pst[i]};
		kids[i] = sw_fork(reader_child, NULL);
	}
	for (uint32_t i = 0; i < NW; i++) {
		wt[i] = (struct wthread){0};
		wt[i].w = (struct sw_writer){
			.kv = kv, .p = &p, .id = i, .rng = seed ^ (0x1000u + i),
			.stop = &stop, .deadline_ns = deadline,
		};
		wt[i].w.priv = calloc(NPRIV, sizeof(struct sw_priv));
		assert_non_null(wt[i].w.priv);
	}
	for (uint32_t i = 0; i <= NR; i++) {
		rt[i] = (struct rthread){0};
		rt[i].r = (struct sw_reader){
			.kv = i == NR ? ro : kv, .p = &p, .id = i,
			.rdonly = i == NR, .rng = seed ^ (0x2000u + i),
			.stop = &stop, .deadline_ns = deadline,
		};
		assert_int_equal(sw_reader_init(&rt[i].r), 0);
	}
	for (uint32_t i = 0; i < NW; i++)
		assert_int_equal(
		    pthread_create(&wt[i].t, NULL, writer_main, &wt[i]), 0);
	for (uint32_t i = 0; i <= NR; i++)
		assert_int_equal(
		    pthread_create(&rt[i].t, NULL, reader_main, &rt[i]), 0);

	/* Grow while they run, through a handle of our own. */
	kv_t *rs = NULL;
	assert_int_equal(kv_open(name, KV_RDWR | KV_NOWARM, &rs), KV_OK);
	char cerr[SW_ERRLEN] = "";
	int grc = KV_OK, crc = KV_OK;
	for (size_t i = 0; i < sizeof steps / sizeof steps[0] &&
	                   grc == KV_OK && crc == KV_OK && !atomic_load(&stop);
	     i++) {
		sleep_ms((unsigned)(secs * 1000));
		uint64_t s0 = sw_now_ns();
		grc = kv_resize(rs, steps[i]);
		print_message("resize-live: resized to %" PRIu64 " MiB in %.1f "
		              "ms (%s)\n",
		              steps[i] / MIB, (double)(sw_now_ns() - s0) / 1e6,
		              kv_errname(grc));
		crc = sw_check(rs, cerr, sizeof cerr);
	}
	if (grc != KV_OK || crc != KV_OK)
		atomic_store(&stop, 1);
	atomic_store(pstop, atomic_load(&stop));
	for (uint32_t i = 0; i < NW; i++)
		pthread_join(wt[i].t, NULL);
	for (uint32_t i = 0; i <= NR; i++)
		pthread_join(rt[i].t, NULL);
	int bad = 0;
	for (int i = 0; i < 2; i++) {
		int st;
		char sb[64];
		if (!sw_wait(kids[i], 60000, &st) || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0) {
			print_error("resize-live: reader process %d: %s\n", i,
			            sw_status_str(st, sb, sizeof sb));
			bad++;
		}
	}
	uint64_t longest = 0, gets = 0;
	for (uint32_t i = 0; i <= NR; i++) {
		if (rt[i].rc != 0) {
			print_error("resize-live: %s\n", rt[i].r.err);
			bad++;
		}
		gets += rt[i].r.st.ops;
		if (rt[i].r.st.max_get_ns > longest)
			longest = rt[i].r.st.max_get_ns;
		sw_reader_fini(&rt[i].r);
	}
	for (int i = 0; i < 2; i++) {
		gets += pst[i].ops;
		if (pst[i].max_get_ns > longest)
			longest = pst[i].max_get_ns;
	}
	for (uint32_t i = 0; i < NW; i++)
		if (wt[i].rc != 0) {
			print_error("resize-live: %s\n", wt[i].w.err);
			bad++;
		}
	print_message("resize-live: %" PRIu64 " verified gets; the longest any "
	              "reader waited: %.3f ms\n",
	              gets, (double)longest / 1e6);
	if (grc != KV_OK)
		print_error("resize-live: kv_resize: %s\n", kv_strerror(grc));
	if (crc != KV_OK)
		print_error("resize-live: kv_check: %s\n", cerr);
	bad += grc != KV_OK || crc != KV_OK;

	struct sw_vcount c = {0};
	char err[SW_ERRLEN] = "";
	for (uint32_t i = 0; i < NW && !bad; i++)
		if (sw_check_private(kv, &p, i, wt[i].w.priv, &c, err,
		                     sizeof err) != 0) {
			print_error("resize-live: acknowledged state lost: %s\n",
			            err);
			bad++;
		}
	for (uint32_t i = 0; i < NW; i++)
		free(wt[i].w.priv);
	struct kv_stats st;
	assert_int_equal(kv_stats(ro, &st), KV_OK);
	print_message("resize-live: %" PRIu64 " MiB, %" PRIu64 " buckets, "
	              "%" PRIu64 " resizes, %" PRIu64 " items\n",
	              st.map_size / MIB, st.buckets, st.resizes, st.items);
	if (!bad && st.map_size != steps[sizeof steps / sizeof steps[0] - 1])
		bad++;
	if (!bad && sw_check(kv, err, sizeof err) != KV_OK) {
		print_error("resize-live: kv_check at the end: %s\n", err);
		bad++;
	}
	kv_close(rs);
	kv_close(ro);
	kv_close(kv);
	if (bad)
		fail_msg("resize-live: %d failures (above)", bad);
}

/* ------------------------------------------------------------------------
 * Killed resizers
 */

#define KILL_KEYS 30000u

static const char *kstore;
static uint64_t ktarget;
static int kpoint;

static int resize_child(void *arg)
{
	(void)arg;
	kv_t *kv = NULL;
	if (kv_open(kstore, KV_RDWR | KV_NOWARM, &kv) != KV_OK)
		return 20;
	if (kpoint)
		kv__crash_arm(kpoint);
	int rc = kv_resize(kv, ktarget);
	kv_close(kv);
	return rc == KV_OK ? 0 : 40 - rc; /* status 40 + -KV_E... */
}

/* Fork resize_child (kstore to ktarget, crash point kpoint armed), or
 * with no point, kill it after a random delay of up to max_us; wait for
 * it. It must die at its point, or finish or be killed. Returns whether
 * it was killed; *st its status. */
static bool run_resizer(bool by_point, uint64_t *seed, uint64_t max_us,
                        int *st)
{
	pid_t pid = sw_fork(resize_child, NULL);
	if (!by_point) {
		uint64_t us = sw_range(seed, 0, max_us);
		struct timespec ts = {0, (long)us * 1000L};
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
	}
	assert_true(sw_wait(pid, 60000, st));
	bool killed = WIFSIGNALED(*st);
	if (!killed && !(WIFEXITED(*st) && WEXITSTATUS(*st) == 0)) {
		char sb[64];
		fail_msg("resizer (point %d): %s", kpoint,
		         sw_status_str(*st, sb, sizeof sb));
	}
	if (by_point && !killed)
		fail_msg("crash point %d did not fire", kpoint);
	return killed;
}

/* Keys 0 .. n-1, each with its self-checking value of sequence i + 1. */
static void put_keys(kv_t *kv, uint32_t n)
{
	char k[SW_KEYMAX], v[256];
	for (uint32_t i = 0; i < n; i++) {
		size_t kl = sw_key(i, k);
		size_t vl = SW_VMIN + i % 200;
		sw_encode(v, vl, i, 0, i + 1);
		int rc = kv_put(kv, k, kl, v, vl, NULL);
		if (rc != KV_OK)
			fail_msg("put %u: %s", i, kv_strerror(rc));
	}
}

/* Every key reads back whole and as put; the store checks clean. */
static void verify_all(kv_t *kv, const char *when)
{
	char k[SW_KEYMAX], v[512], err[SW_ERRLEN];
	struct sw_vhdr h;
	for (uint32_t i = 0; i < KILL_KEYS; i++) {
		size_t kl = sw_key(i, k), vl = 0;
		int rc = kv_get(kv, k, kl, v, sizeof v, &vl);
		if (rc != KV_OK)
			fail_msg("%s: key %u: %s", when, i, kv_strerror(rc));
		if (sw_verify(v, vl, i, &h, err, sizeof err) != 0 ||
		    h.seq != i + 1)
			fail_msg("%s: key %u: %s", when, i, err);
	}
	if (sw_check(kv, err, sizeof err) != KV_OK)
		fail_msg("%s: kv_check: %s", when, err);
}

/* A child's first act on a store whose resizer died mid-apply: attach
 * read-write (which must finish the resize) and read a key. */
static int fresh_writer_child(void *arg)
{
	(void)arg;
	kv_t *kv = NULL;
	int rc = kv_open(kstore, KV_RDWR | KV_NOWARM, &kv);
	if (rc != KV_OK)
		return 30;
	char k[SW_KEYMAX], v[512];
	size_t vl, kl = sw_key(0, k);
	rc = kv_get(kv, k, kl, v, sizeof v, &vl);
	kv_close(kv);
	return rc == KV_OK ? 0 : 31;
}

enum kill_mode {
	KM_PLAIN,  /* the test's own handle, current, goes on */
	KM_FRESH,  /* a new process attaches first */
	KM_LAGGED, /* a handle a resize behind takes the lock first */
};

static void test_resize_killed(void **state)
{
	(void)state;
	static const struct {
		int point;
		enum kill_mode mode;
	} points[] = {{11, KM_PLAIN}, {12, KM_PLAIN}, {5, KM_PLAIN},
	              {6, KM_PLAIN},  {7, KM_PLAIN},  {8, KM_PLAIN},
	              {9, KM_PLAIN},  {13, KM_PLAIN}, {13, KM_FRESH},
	              {13, KM_LAGGED}, {7, KM_LAGGED}};
	size_t npoints = sizeof points / sizeof points[0];
	uint64_t seed = sw_seed();
	kstore = h_store_name("rkill");
	kv_t *kv = NULL, *ro = NULL;
	struct kv_options o = {.size = 32 * MIB, .max_value = 4096,
	                       .max_size = 8192 * MIB,
	                       .flags = KV_CREATE_NOEVICT};
	assert_int_equal(kv_create(kstore, &o, &kv), KV_OK);
	put_keys(kv, KILL_KEYS);
	/* A read-only reader attached before it all: it must follow. (No
	 * warm-up thread: children forked later exit normally, and
	 * ThreadSanitizer reports a parent's unjoined thread in them.) */
	assert_int_equal(kv_open(kstore, KV_RDONLY | KV_NOWARM, &ro), KV_OK);
	uint64_t size = 32 * MIB;
	unsigned died = 0, finished = 0;

	for (size_t n = 0; n < npoints + 10; n++) {
		bool by_point = n < npoints;
		kpoint = by_point ? points[n].point : 0;
		enum kill_mode mode = by_point ? points[n].mode : KM_PLAIN;
		kv_t *lag = NULL;
		if (mode == KM_LAGGED) {
			/* Attached, then left a whole resize behind. */
			assert_int_equal(kv_open(kstore, KV_RDWR | KV_NOWARM,
			                         &lag),
			                 KV_OK);
			ktarget = (size + size / 4) / 4096 * 4096;
			assert_int_equal(kv_resize(kv, ktarget), KV_OK);
			size = ktarget;
		}
		ktarget = (size + size / 4) / 4096 * 4096;
		/* Growing a store of 30,000 keys takes ms. */
		int st;
		bool killed = run_resizer(by_point, &seed, 200000, &st);
		died += killed;
		finished += !killed;
		if (mode == KM_FRESH) {
			/* Killed mid-apply (point 13: map_size and npages
			 * new, the rest old): the geometry does not
			 * fit together. A new reader cannot finish it and
			 * says the store is busy, not damaged; a new writer
			 * finishes it at attach. */
			kv_t *r2 = NULL;
			int g = kv_open(kstore, KV_RDONLY | KV_NOWARM, &r2);
			if (g != KV_EBUSY)
				fail_msg("read-only attach after point %d: %s",
				         kpoint, kv_strerror(g));
			pid_t c = sw_fork(fresh_writer_child, NULL);
			assert_true(sw_wait(c, 30000, &st));
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
				char sb[64];
				fail_msg("fresh writer after point %d: %s",
				         kpoint, sw_status_str(st, sb, sizeof sb));
			}
			assert_int_equal(kv_open(kstore,
			                         KV_RDONLY | KV_NOWARM, &r2),
			                 KV_OK);
			kv_close(r2);
		}
		if (mode == KM_LAGGED) {
			/* Its first lock finishes the dead resize before it
			 * follows both. */
			char k[SW_KEYMAX], v[512];
			size_t kl = sw_key(0, k), vl = SW_VMIN;
			sw_encode(v, vl, 0, 0, 1);
			int g = kv_put(lag, k, kl, v, vl, NULL);
			if (g != KV_OK)
				fail_msg("lagging put after point %d: %s",
				         kpoint, kv_strerror(g));
			kv_close(lag);
		}
		/* A resize to the same size before anyone else has taken
		 * the lock: it must finish the dead one's, never redo it
		 * over the live index. */
		if (mode == KM_PLAIN && ((kpoint >= 6 && kpoint <= 9) ||
		                         kpoint == 13)) {
			int g = kv_resize(kv, ktarget);
			if (g != KV_OK)
				fail_msg("resize after point %d: %s", kpoint,
				         kv_strerror(g));
		}
		/* The next lock holder (this get falls back to it if a
		 * bucket is odd; kv_check takes it) recovers. */
		char when[64];
		snprintf(when, sizeof when, "after resizer %zu (point %d, %s)",
		         n, kpoint, killed ? "killed" : "finished");
		verify_all(kv, when);
		struct kv_stats s;
		assert_int_equal(kv_stats(ro, &s), KV_OK);
		if (s.map_size != size && s.map_size != ktarget)
			fail_msg("%s: size %" PRIu64 ", neither %" PRIu64
			         " nor %" PRIu64,
			         when, s.map_size, size, ktarget);
		/* The read-only handle follows too. */
		char k[SW_KEYMAX], v[512];
		size_t vl;
		size_t kl = sw_key(KILL_KEYS - 1, k);
		assert_int_equal(kv_get(ro, k, kl, v, sizeof v, &vl), KV_OK);
		/* Then a resize that is not killed completes. */
		if (s.map_size == size) {
			assert_int_equal(kv_resize(kv, ktarget), KV_OK);
			verify_all(kv, "after the next resize");
		}
		size = ktarget;
	}
	print_message("resize-killed: %u resizers killed (%zu at crash points), "
	              "%u finished first; every key intact after each\n",
	              died, npoints, finished);
	kv_close(ro);
	kv_close(kv);
}

/* Resizers at once: they take turns; each grows or shrinks the store, or
 * finds it too close (KV_ETOOSMALL), and the store ends at one of the
 * sizes asked for, with every key. */
static void test_resize_racing(void **state)
{
	(void)state;
	/* Equal sizes too: a resizer must not take a size the store already
	 * has for one still to build (it would zero the live index). */
	static const uint64_t sizes[] = {64 * MIB, 64 * MIB, 128 * MIB,
	                                 128 * MIB, 48 * MIB, 96 * MIB};
	enum { N = sizeof sizes / sizeof sizes[0] };
	kstore = h_store_name("rrace");
	kv_t *kv = NULL;
	struct kv_options o = {.size = 32 * MIB, .max_value = 4096,
	                       .max_size = 1024 * MIB,
	                       .flags = KV_CREATE_NOEVICT};
	assert_int_equal(kv_create(kstore, &o, &kv), KV_OK);
	put_keys(kv, KILL_KEYS);
	pid_t pids[N];
	for (int i = 0; i < N; i++) {
		ktarget = sizes[i];
		kpoint = 0;
		pids[i] = sw_fork(resize_child, NULL);
	}
	for (int i = 0; i < N; i++) {
		int st;
		char sb[64];
		assert_true(sw_wait(pids[i], 60000, &st));
		/* Resized, or refused: too close to the size the store
		 * had by then (KV_ETOOSMALL). */
		if (!WIFEXITED(st) ||
		    (WEXITSTATUS(st) != 0 &&
		     WEXITSTATUS(st) != 40 - KV_ETOOSMALL))
			fail_msg("resizer %d: %s", i,
			         sw_status_str(st, sb, sizeof sb));
	}
	struct kv_stats s;
	assert_int_equal(kv_stats(kv, &s), KV_OK);
	bool asked = false;
	for (int i = 0; i < N; i++)
		asked |= s.map_size == sizes[i];
	if (!asked)
		fail_msg("racing resizers left %" PRIu64 " bytes", s.map_size);
	verify_all(kv, "after racing resizers");
	kv_close(kv);
}

/* ------------------------------------------------------------------------
 * Probe lengths
 */

static double mean_probe(const struct kv_stats *s)
{
	static const double mid[8] = {0, 1, 2, 3, 5.5, 11.5, 23.5, 40};
	double sum = 0, n = 0;
	for (int i = 0; i < 8; i++) {
		sum += mid[i] * (double)s->probe_hist[i];
		n += (double)s->probe_hist[i];
	}
	return n > 0 ? sum / n : 0;
}

static void put_range(kv_t *kv, uint32_t from, uint32_t to)
{
	char k[32];
	for (uint32_t i = from; i < to; i++) {
		int kl = snprintf(k, sizeof k, "p%u", i);
		int rc = kv_put(kv, k, (size_t)kl, "v", 1, NULL);
		if (rc != KV_OK)
			fail_msg("put p%u: %s", i, kv_strerror(rc));
	}
}

static void test_resize_probes(void **state)
{
	(void)state;
	const char *name = h_store_name("rprobe");
	kv_t *kv = NULL;
	struct kv_options o = {.size = 8 * MIB, .max_value = 4096,
	                       .flags = KV_CREATE_NOEVICT};
	assert_int_equal(kv_create(name, &o, &kv), KV_OK);
	struct kv_stats a, b;
	assert_int_equal(kv_stats(kv, &a), KV_OK);
	/* 60 % of the slots. */
	uint32_t n = (uint32_t)(a.slots * 6 / 10);
	put_range(kv, 0, n);
	assert_int_equal(kv_stats(kv, &a), KV_OK);
	assert_int_equal(kv_resize(kv, 32 * MIB), KV_OK);
	assert_int_equal(kv_stats(kv, &b), KV_OK);
	assert_true(b.buckets >= a.buckets * 4);
	/* The rehash alone shortens the probes. */
	assert_true(mean_probe(&b) <= mean_probe(&a));
	put_range(kv, n, 4 * n);
	assert_int_equal(kv_stats(kv, &b), KV_OK);
	assert_int_equal(b.items, 4 * (uint64_t)n);
	print_message("resize-probes: %u keys in %" PRIu64 " buckets: mean "
	              "probe %.3f, longest %" PRIu64 "; grown 4x, %u keys in "
	              "%" PRIu64 " buckets: mean %.3f, longest %" PRIu64 "\n",
	              n, a.buckets, mean_probe(&a), a.max_probe, 4 * n,
	              b.buckets, mean_probe(&b), b.max_probe);
	assert_true(mean_probe(&b) <= mean_probe(&a) * 1.25 + 0.05);
	char err[SW_ERRLEN];
	if (sw_check(kv, err, sizeof err) != KV_OK)
		fail_msg("kv_check: %s", err);
	kv_close(kv);
}

/* ------------------------------------------------------------------------
 * Shrinking
 */

#define SHRINK_KEYS 150000u /* put; the first two thirds then deleted */
#define SHRINK_LIVE (SHRINK_KEYS / 3)

/* A 16 MiB store grown to 64 MiB, filled past its first 16 MiB, then
 * its oldest keys deleted: what is left lives mostly in pages past the
 * end of any store smaller than about 24 MiB. */
static kv_t *shrink_store(const char *name)
{
	kv_t *kv = NULL;
	struct kv_options o = {.size = 16 * MIB, .max_value = 4096,
	                       .max_size = 1024 * MIB,
	                       .flags = KV_CREATE_NOEVICT};
	assert_int_equal(kv_create(name, &o, &kv), KV_OK);
	assert_int_equal(kv_resize(kv, 64 * MIB), KV_OK);
	put_keys(kv, SHRINK_KEYS);
	char k[SW_KEYMAX];
	for (uint32_t i = 0; i < SHRINK_KEYS - SHRINK_LIVE; i++) {
		size_t kl = sw_key(i, k);
		assert_int_equal(kv_del(kv, k, kl), KV_OK);
	}
	return kv;
}

/* The live keys read back whole; a sample of the deleted stay gone. */
static void shrink_verify(kv_t *kv, const char *when)
{
	char k[SW_KEYMAX], v[512], err[SW_ERRLEN];
	struct sw_vhdr h;
	for (uint32_t i = 0; i < SHRINK_KEYS; i++) {
		size_t kl = sw_key(i, k), vl = 0;
		bool live = i >= SHRINK_KEYS - SHRINK_LIVE;
		if (!live && i % 97 != 0)
			continue;
		int rc = kv_get(kv, k, kl, v, sizeof v, &vl);
		if (!live) {
			if (rc != KV_ENOTFOUND)
				fail_msg("%s: deleted key %u: %s", when, i,
				         kv_strerror(rc));
			continue;
		}
		if (rc != KV_OK)
			fail_msg("%s: key %u: %s", when, i, kv_strerror(rc));
		if (sw_verify(v, vl, i, &h, err, sizeof err) != 0 ||
		    h.seq != i + 1)
			fail_msg("%s: key %u: %s", when, i, err);
	}
	if (sw_check(kv, err, sizeof err) != KV_OK)
		fail_msg("%s: kv_check: %s", when, err);
}

/* Pages of the store's memory in use past the first `from` bytes. */
static uint64_t pages_past(const char *name, uint64_t from)
{
	char path[256];
	snprintf(path, sizeof path, "/dev/shm/kv.%s", name);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	uint64_t n = 0;
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	for (off_t at = (off_t)from; at < st.st_size;) {
		off_t d = lseek(fd, at, SEEK_DATA);
		if (d < 0)
			break;
		off_t e = lseek(fd, d, SEEK_HOLE);
		n += (uint64_t)(e - d) / 4096;
		at = e;
	}
	close(fd);
	return n;
}

static void test_resize_shrink(void **state)
{
	(void)state;
	const char *name = h_store_name("rshrink");
	kv_t *kv = shrink_store(name), *ro = NULL;
	assert_int_equal(kv_open(name, KV_RDONLY | KV_NOWARM, &ro), KV_OK);
	struct kv_stats a, b;
	assert_int_equal(kv_stats(kv, &a), KV_OK);
	uint64_t high = 0;
	for (uint64_t p = 24 * MIB / a.page_size; p < kv->npages; p++)
		high += atomic_load(&kv__page(kv, p)->used);
	/* Too small for what it holds: refused, nothing changed. */
	assert_int_equal(kv_resize(kv, 4 * MIB), KV_EFULL);
	shrink_verify(kv, "after a refused shrink");
	assert_int_equal(kv_stats(kv, &b), KV_OK);
	assert_int_equal(b.map_size, 64 * MIB);

	uint64_t t0 = sw_now_ns();
	assert_int_equal(kv_resize(kv, 24 * MIB), KV_OK);
	double ms = (double)(sw_now_ns() - t0) / 1e6;
	assert_int_equal(kv_stats(ro, &b), KV_OK);
	assert_int_equal(b.map_size, 24 * MIB);
	assert_true(b.buckets < a.buckets);
	shrink_verify(kv, "after the shrink");
	shrink_verify(ro, "read-only, after the shrink");
	/* The tail's memory is given back (the object keeps its size). */
	uint64_t left = pages_past(name, 24 * MIB);
	print_message("resize-shrink: 64 -> 24 MiB in %.1f ms, %" PRIu64
	              " of %" PRIu64 " items moved down; %" PRIu64
	              " pages left past the end\n",
	              ms, high, a.items, left);
	assert_true(high > SHRINK_LIVE / 10);
	assert_int_equal(left, 0);
	/* And it grows and shrinks again. */
	assert_int_equal(kv_resize(kv, 48 * MIB), KV_OK);
	shrink_verify(kv, "grown again");
	assert_int_equal(kv_resize(kv, 20 * MIB), KV_OK);
	shrink_verify(ro, "shrunk again");
	kv_close(ro);
	kv_close(kv);
}

static void test_resize_shrink_killed(void **state)
{
	(void)state;
	/* 1, 4, 6, 7: in the first move (begun, bucket odd, committed,
	 * first word applied); 14: every item moved; 12: the new index
	 * built, before the commit. Then SIGKILL at random. */
	static const int points[] = {1, 4, 6, 7, 14, 12};
	size_t npoints = sizeof points / sizeof points[0];
	uint64_t seed = sw_seed();
	unsigned died = 0;

	for (size_t n = 0; n < npoints + 4; n++) {
		bool by_point = n < npoints;
		kstore = h_store_name("rshkill");
		kv_t *kv = shrink_store(kstore), *ro = NULL;
		assert_int_equal(kv_open(kstore, KV_RDONLY | KV_NOWARM, &ro),
		                 KV_OK);
		kpoint = by_point ? points[n] : 0;
		ktarget = 24 * MIB;
		int st;
		bool killed = run_resizer(by_point, &seed, 150000, &st);
		died += killed;
		char when[64];
		snprintf(when, sizeof when, "after shrinker %zu (point %d, %s)",
		         n, kpoint, killed ? "killed" : "finished");
		shrink_verify(kv, when);
		struct kv_stats s;
		assert_int_equal(kv_stats(ro, &s), KV_OK);
		if (s.map_size != 64 * MIB && s.map_size != 24 * MIB)
			fail_msg("%s: size %" PRIu64, when, s.map_size);
		shrink_verify(ro, when);
		if (s.map_size != 24 * MIB) {
			assert_int_equal(kv_resize(kv, 24 * MIB), KV_OK);
			shrink_verify(ro, "after the next shrink");
		}
		kv_close(ro);
		kv_close(kv);
		assert_int_equal(kv_destroy(kstore), KV_OK);
	}
	print_message("resize-shrink-killed: %u shrinkers killed (%zu at "
	              "crash points); every key intact after each\n",
	              died, npoints);
}

/* ------------------------------------------------------------------------
 * Refusals
 */

static void test_resize_errors(void **state)
{
	(void)state;
	const char *name = h_store_name("rerr");
	kv_t *kv = NULL, *ro = NULL;
	struct kv_options o = {.size = 16 * MIB, .max_value = 4096,
	                       .max_size = 64 * MIB};
	assert_int_equal(kv_create(name, &o, &kv), KV_OK);
	assert_int_equal(kv_put(kv, "k", 1, "v", 1, NULL), KV_OK);
	assert_int_equal(kv_open(name, KV_RDONLY, &ro), KV_OK);
	assert_int_equal(kv_resize(NULL, 32 * MIB), KV_EINVAL);
	assert_int_equal(kv_resize(ro, 32 * MIB), KV_ERDONLY);
	assert_int_equal(kv_resize(kv, 128 * MIB), KV_ETOOBIG);
	/* A shrink must free at least what the index takes. */
	assert_int_equal(kv_resize(kv, 16 * MIB - 4096), KV_ETOOSMALL);
	assert_int_equal(kv_resize(kv, 64 * 1024), KV_ETOOSMALL);
	assert_int_equal(kv_resize(kv, 16 * MIB + 4096), KV_ETOOSMALL);
	assert_int_equal(kv_resize(kv, 16 * MIB), KV_OK); /* already */
	struct kv_stats s;
	assert_int_equal(kv_stats(kv, &s), KV_OK);
	assert_int_equal(s.map_size, 16 * MIB);
	assert_int_equal(s.resizes, 0);
	assert_int_equal(s.max_size, 64 * MIB);
	assert_int_equal(kv_resize(kv, 64 * MIB), KV_OK);
	char v[8];
	size_t vl;
	assert_int_equal(kv_get(ro, "k", 1, v, sizeof v, &vl), KV_OK);
	assert_int_equal(kv_stats(ro, &s), KV_OK);
	assert_int_equal(s.map_size, 64 * MIB);
	assert_int_equal(s.resizes, 1);
	/* A handle attached after the resize maps the whole of it. */
	kv_t *late = NULL;
	assert_int_equal(kv_open(name, KV_RDONLY, &late), KV_OK);
	assert_int_equal(kv_get(late, "k", 1, v, sizeof v, &vl), KV_OK);
	kv_close(late);
	kv_close(ro);
	kv_close(kv);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest all[] = {
		cmocka_unit_test_teardown(test_resize_live, sw_teardown),
		cmocka_unit_test_teardown(test_resize_killed, sw_teardown),
		cmocka_unit_test_teardown(test_resize_racing, sw_teardown),
		cmocka_unit_test_teardown(test_resize_probes, sw_teardown),
		cmocka_unit_test_teardown(test_resize_shrink, sw_teardown),
		cmocka_unit_test_teardown(test_resize_shrink_killed,
		                          sw_teardown),
		cmocka_unit_test_teardown(test_resize_errors, sw_teardown),
	};
	/* "--live": only the first (the ThreadSanitizer run). */
	size_t n = argc > 1 && strcmp(argv[1], "--live") == 0
	               ? 1
	               : sizeof all / sizeof all[0];
	return _cmocka_run_group_tests("resize", all, n, NULL, NULL);
}
