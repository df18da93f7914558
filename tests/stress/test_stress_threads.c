/*
 * test_stress_threads.c - the stress workload with threads sharing ONE
 * handle: W writer threads and R reader threads use the same kv_t, and
 * one more reader thread has its own KV_RDONLY handle. The same checks as
 * stress-procs (workload.c): every value read is verified, every status
 * a writer gets on its own keys matches its model, and at the end every
 * private key reads back as its writer last had it acknowledged and
 * kv_check passes.
 *
 * This is the variant the ThreadSanitizer build runs.
 *
 * The main thread runs kv_check (under the lock) every 250 ms meanwhile.
 *
 * Environment: KV_STRESS_SECONDS (3), KV_STRESS_READERS (3),
 * KV_STRESS_WRITERS (2), KV_STRESS_SEED, KV_STRESS_STORE_MB (64),
 * KV_STRESS_MAX_ITEMS, KV_STRESS_EVICT.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "harness.h"
#include "workload.h"

#define MAXR 16
#define MAXW 16
#define NSHARED 2000
#define NPRIV 128
#define CHECK_MS 250 /* kv_check while the workload runs */

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

static void report(void *ctx, const char *problem)
{
	(void)ctx;
	print_error("kv_check: %s\n", problem);
}

/* Join within the deadline; a thread that does not finish is a hang. */
static void join(pthread_t t, uint64_t deadline_ns, const char *what)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t left = deadline_ns > sw_now_ns() ? deadline_ns - sw_now_ns() :
	                                            0;
	ts.tv_sec += (time_t)(left / 1000000000u);
	ts.tv_nsec += (long)(left % 1000000000u);
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	int e = pthread_timedjoin_np(t, NULL, &ts);
	if (e != 0) {
		/* Cannot unwind a stuck thread: say so and stop here. */
		print_error("stress-threads: %s did not finish: %s\n", what,
		            strerror(e));
		h_cleanup();
		abort();
	}
}

static void test_stress_threads(void **state)
{
	(void)state;
	uint32_t nr = (uint32_t)sw_env_u64("KV_STRESS_READERS", 3);
	uint32_t nw = (uint32_t)sw_env_u64("KV_STRESS_WRITERS", 2);
	uint64_t secs = sw_env_u64("KV_STRESS_SECONDS", 3);
	uint64_t seed = sw_seed();
	const char *name = h_store_name("sthreads");
	static struct wthread wt[MAXW];
	static struct rthread rt[MAXR + 1];
	kv_t *kv = NULL, *ro = NULL;

	if (nr > MAXR)
		nr = MAXR;
	if (nw < 1)
		nw = 1;
	if (nw > MAXW)
		nw = MAXW;
	struct sw_params p = {NSHARED, NPRIV, nw, (secs + 30) * 1000, false};
	print_message("stress-threads: %u writers, %u readers on one handle, "
	              "1 read-only reader, %" PRIu64 " s, seed %#" PRIx64 "\n",
	              nw, nr, secs, seed);

	struct kv_options o = {.size = sw_store_size(), .max_value = SW_VMAX,
	                       .max_items = sw_max_items(&p),
	                       .flags = sw_create_flags(&p.evict)};
	int rc = kv_create(name, &o, &kv);
	if (rc != KV_OK)
		fail_msg("kv_create: %s", kv_strerror(rc));
	kv_close(kv);
	kv = NULL;
	rc = kv_open(name, KV_RDWR, &kv);
	if (rc == KV_OK)
		rc = kv_open(name, KV_RDONLY, &ro);
	if (rc != KV_OK)
		fail_msg("kv_open: %s", kv_strerror(rc));

	uint64_t t0 = sw_now_ns();
	uint64_t deadline = t0 + secs * 1000000000u;
	atomic_store(&stop, 0);
	for (uint32_t i = 0; i < nw; i++) {
		wt[i] = (struct wthread){0};
		wt[i].w = (struct sw_writer){
			.kv = kv, .p = &p, .id = i, .rng = seed ^ (0x1000u + i),
			.stop = &stop, .deadline_ns = deadline,
		};
		wt[i].w.priv = calloc(NPRIV, sizeof(struct sw_priv));
		assert_non_null(wt[i].w.priv);
	}
	for (uint32_t i = 0; i <= nr; i++) {
		rt[i] = (struct rthread){0};
		rt[i].r = (struct sw_reader){
			.kv = i == nr ? ro : kv, .p = &p, .id = i,
			.rdonly = i == nr, .rng = seed ^ (0x2000u + i),
			.stop = &stop, .deadline_ns = deadline,
		};
		assert_int_equal(sw_reader_init(&rt[i].r), 0);
	}
	for (uint32_t i = 0; i < nw; i++)
		assert_int_equal(pthread_create(&wt[i].t, NULL, writer_main,
		                                &wt[i]), 0);
	for (uint32_t i = 0; i <= nr; i++)
		assert_int_equal(pthread_create(&rt[i].t, NULL, reader_main,
		                                &rt[i]), 0);
	/* Check the whole store every CHECK_MS while they run (kv_check on
	 * the shared handle takes the writer lock). */
	uint64_t checks = 0;
	char cerr[SW_ERRLEN] = "";
	int crc = KV_OK;
	while (crc == KV_OK && !atomic_load(&stop) && sw_now_ns() < deadline) {
		crc = sw_check(kv, cerr, sizeof(cerr));
		checks++;
		if (crc != KV_OK)
			atomic_store(&stop, 1);
		struct timespec ts = {0, CHECK_MS * 1000000L};
		nanosleep(&ts, NULL);
	}
	uint64_t join_by = deadline + 60 * 1000000000ull;
	for (uint32_t i = 0; i < nw; i++)
		join(wt[i].t, join_by, "a writer thread");
	for (uint32_t i = 0; i <= nr; i++)
		join(rt[i].t, join_by, "a reader thread");
	double secs_run = (double)(sw_now_ns() - t0) / 1e9;

	int bad = 0;
	for (uint32_t i = 0; i < nw; i++)
		if (wt[i].rc != 0) {
			print_error("stress-threads: %s\n", wt[i].w.err);
			bad++;
		}
	for (uint32_t i = 0; i <= nr; i++)
		if (rt[i].rc != 0) {
			print_error("stress-threads: %s\n", rt[i].r.err);
			bad++;
		}

	struct sw_rstats r = {0};
	struct sw_wstats w = {0};
	for (uint32_t i = 0; i <= nr; i++) {
		struct sw_rstats *s = &rt[i].r.st;
		r.ops += s->ops;
		r.hits += s->hits;
		r.misses += s->misses;
		r.erange += s->erange;
		r.erange_touched += s->erange_touched;
		r.busy += s->busy;
		r.bytes += s->bytes;
		if (s->max_get_ns > r.max_get_ns)
			r.max_get_ns = s->max_get_ns;
		print_message("  reader %u%s: %" PRIu64 " gets, longest %.3f ms; "
		              "over 1 / 10 / 100 ms: %" PRIu64 " / %" PRIu64
		              " / %" PRIu64 "\n",
		              i, i == nr ? " (read-only handle)" : "", s->ops,
		              (double)s->max_get_ns / 1e6, s->slow[0], s->slow[1],
		              s->slow[2]);
		sw_reader_fini(&rt[i].r);
	}
	for (uint32_t i = 0; i < nw; i++) {
		struct sw_wstats *s = &wt[i].w.st;
		w.ops += s->ops;
		w.puts += s->puts;
		w.dels += s->dels;
		w.efull += s->efull;
		w.readback += s->readback;
	}
	print_message("stress-threads: %.2f s; writers %" PRIu64 " ops (%" PRIu64
	              " puts, %" PRIu64 " deletes, %" PRIu64 " read back, %" PRIu64
	              " EFULL); readers %" PRIu64 " gets, %" PRIu64
	              " verified (%.1f MiB), %" PRIu64 " misses, %" PRIu64
	              " KV_ERANGE (%" PRIu64 " with the buffer written), %" PRIu64
	              " KV_EBUSY (read-only), longest get %.3f ms\n",
	              secs_run, w.ops, w.puts, w.dels, w.readback, w.efull, r.ops,
	              r.hits, (double)r.bytes / 1048576.0, r.misses, r.erange,
	              r.erange_touched, r.busy, (double)r.max_get_ns / 1e6);
	print_message("stress-threads: %" PRIu64 " kv_check passes while it "
	              "ran\n", checks);
	if (crc != KV_OK) {
		print_error("kv_check while the workload ran: %s%s\n",
		            kv_errname(crc), cerr);
		bad++;
	}
	if (bad) {
		for (uint32_t i = 0; i < nw; i++)
			free(wt[i].w.priv);
		kv_close(ro);
		kv_close(kv);
		fail_msg("%d threads failed (messages above)", bad);
	}

	struct sw_vcount c = {0};
	char err[SW_ERRLEN];
	for (uint32_t i = 0; i < nw && rc == KV_OK; i++) {
		if (sw_check_private(kv, &p, i, wt[i].w.priv, &c, err,
		                     sizeof(err)) != 0)
			rc = KV_ECORRUPT;
	}
	for (uint32_t i = 0; i < nw; i++)
		free(wt[i].w.priv);
	if (rc != KV_OK) {
		kv_close(ro);
		kv_close(kv);
		fail_msg("acknowledged state lost: %s", err);
	}
	print_message("stress-threads: private keys as last acknowledged: %" PRIu64
	              " present, %" PRIu64 " absent, %" PRIu64
	              " expired (1 ms TTL), %" PRIu64 " 1 ms TTL still there, %" PRIu64 " evicted\n",
	              c.present, c.absent, c.short_gone, c.short_kept, c.evicted);
	struct kv_stats st;
	assert_int_equal(kv_stats(kv, &st), KV_OK);
	print_message("stress-threads: store %s: %" PRIu64 " items, %" PRIu64
	              " evictions, %" PRIu64 " page moves, max probe %" PRIu64
	              " of %" PRIu64 " buckets\n",
	              st.evict ? "evicts" : "does not evict", st.items,
	              st.evictions, st.page_moves, st.max_probe, st.buckets);
	rc = kv_check(kv, report, NULL);
	kv_close(ro);
	kv_close(kv);
	if (rc != KV_OK)
		fail_msg("kv_check: %s", kv_strerror(rc));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_stress_threads, sw_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
