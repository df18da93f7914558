/*
 * kv_bench.c - kv-bench: throughput and latency of libkv, in one process
 * and in several, against the memory yardstick the brief measures it by.
 *
 * How a run goes
 * --------------
 * A fresh store (created exclusively, sized for the data, destroyed at
 * exit and on SIGINT/SIGTERM) is loaded with --keys keys, then each phase
 * of the workload table below runs in turn and adds a row to the report.
 * Timed phases run for --seconds; the load puts every key once; del
 * deletes keys in a random order until --seconds pass or none are left.
 *
 * Keys come from key sets built before the clock starts (keys.c): the
 * random phases read a ring of pre-drawn uniform random keys in order, so
 * neither the RNG nor key formatting is measured. Throughput is wall time
 * over operations; every 64th operation is also timed on its own for the
 * latency percentiles (clock.c).
 *
 * Reader processes (--readers)
 * ----------------------------
 * The `readers` phase forks N processes (team.c) for each N of the list;
 * each attaches with its own kv_open() (KV_RDWR, as a cache worker would,
 * or KV_RDONLY with --open), builds its own ring of random keys, warms up,
 * waits at the start barrier and runs get-hit for --seconds, pinned to CPU
 * i % ncpus. A row gives the aggregate ops/s and the latency percentiles
 * of all readers' samples merged; a comment line per reader gives its own.
 * With --writer-rate R the same runs are repeated with one more process,
 * unpinned, putting R values/s over random present keys (same size, so
 * the store's shape does not change), paced by clock_nanosleep to an
 * absolute schedule in batches of R/1000 puts (one batch per ms).
 *
 * Other phases (peer stores, other processes) fill `struct bench_result`
 * rows from the same key sets and hand them to report.c; peer-bench does
 * the same for Redis, memcached and LMDB, so the CSVs line up.
 */
#include <errno.h>
#include <getopt.h>
#include <time.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "kv.h"

#ifndef KV_BENCH_BUILDTYPE
#define KV_BENCH_BUILDTYPE "unknown"
#endif

#define BATCH 1024u          /* operations between clock reads */
#define SMALL_KEYS 10000u    /* the cache-resident store */
#define MAX_COUNTS 16        /* entries of --readers and --batch */
#define MAX_READERS 64
#define MAX_MGET 256

#define STR_(x) #x
#define STR(x) STR_(x)
#if defined(__clang__)
#define CC_NAME                                                                \
	"clang " STR(__clang_major__) "." STR(__clang_minor__) "." STR(         \
	    __clang_patchlevel__)
#elif defined(__GNUC__)
#define CC_NAME "gcc " __VERSION__
#else
#define CC_NAME "unknown"
#endif

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	stop = sig;
}

/* ------------------------------------------------------------------------
 * Options.
 */
struct options {
	uint64_t keys;
	unsigned key_size;
	unsigned value_size;
	double seconds;
	const char *store;
	const char *csv;
	const char *phases; /* comma list, NULL = all */
	bool quiet;
	int cpu;            /* -1 = not pinned */
	uint64_t seed;
	unsigned readers[MAX_COUNTS]; /* reader counts of the readers phase */
	unsigned nreaders;
	unsigned batch[MAX_COUNTS];   /* keys per kv_mget call */
	unsigned nbatch;
	uint64_t writer_rate;         /* puts/s beside the readers; 0 = none */
	double min_cpu;               /* rerun a timed row below this share */
	bool open_rdwr, open_rdonly;  /* how readers attach */
	uint64_t store_mib;           /* main store at least this big */
	bool huge;                    /* KV_CREATE_HUGE */
};

static void usage(FILE *f)
{
	fprintf(f,
	    "usage: kv-bench [OPTION]...\n"
	    "Measure libkv: load, put, get hit/miss, mixed, batched get, del,\n"
	    "reader processes with and without a writer, and the memory\n"
	    "latency of a buffer the size of the store.\n"
	    "\n"
	    "  --keys N          keys to load (default 1000000)\n"
	    "  --key-size B      key bytes, keys look like k:0000000042\n"
	    "                    (default 12, at least enough digits for 2N)\n"
	    "  --value-size B    value bytes (default 100)\n"
	    "  --seconds S       length of each timed phase (default 2)\n"
	    "  --store NAME      store to create, must not exist\n"
	    "                    (default bench.PID; destroyed at exit)\n"
	    "  --csv FILE        also write the results as CSV to FILE\n"
	    "  --phases LIST     comma-separated phases to run (default all):\n"
	    "                    load put-replace get-hit get-miss mixed mget\n"
	    "                    memory-latency readers fresh get-hit-10k del\n"
	    "                    (load always runs; the others need it)\n"
	    "  --batch LIST      keys per kv_mget call for mget (default 16,64)\n"
	    "  --readers LIST    reader processes for the readers phase, e.g.\n"
	    "                    2, 1,2 or 1-4 (default: no readers phase)\n"
	    "  --open HOW        readers attach rdwr (default), rdonly or both\n"
	    "  --writer-rate R   also run each readers case beside one writer\n"
	    "                    process putting R values/s (0 = don't)\n"
	    "  --min-cpu PCT     measure a timed row again (up to 3 tries) when\n"
	    "                    its processes got less than PCT %% of their\n"
	    "                    CPUs, i.e. other processes ran (default 0:\n"
	    "                    never)\n"
	    "  --cpu N           pin the main process to CPU N\n"
	    "  --seed N          RNG seed (default 1)\n"
	    "  --store-mib N     make the main store at least N MiB (default:\n"
	    "                    as small as the keys allow)\n"
	    "  --huge-pages      back the stores with 2 MiB pages\n"
	    "                    (KV_CREATE_HUGE; /dev/shm mounted huge=advise)\n"
	    "  --quiet           no progress on stderr\n"
	    "  --help            this text\n");
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{"keys", required_argument, NULL, 'k'},
		{"key-size", required_argument, NULL, 'K'},
		{"value-size", required_argument, NULL, 'v'},
		{"seconds", required_argument, NULL, 't'},
		{"store", required_argument, NULL, 's'},
		{"csv", required_argument, NULL, 'c'},
		{"phases", required_argument, NULL, 'p'},
		{"batch", required_argument, NULL, 'b'},
		{"readers", required_argument, NULL, 'r'},
		{"open", required_argument, NULL, 'o'},
		{"writer-rate", required_argument, NULL, 'w'},
		{"min-cpu", required_argument, NULL, 'm'},
		{"cpu", required_argument, NULL, 'C'},
		{"seed", required_argument, NULL, 'S'},
		{"store-mib", required_argument, NULL, 'M'},
		{"huge-pages", no_argument, NULL, 'H'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c, n;
	uint64_t v;

	*o = (struct options){.keys = 1000000, .value_size = 100,
	                      .seconds = 2, .cpu = -1, .seed = 1,
	                      .batch = {16, 64}, .nbatch = 2,
	                      .open_rdwr = true};
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'k':
			if (bench_parse_u64(optarg, &v) || v == 0 ||
			    v > UINT32_MAX)
				goto bad;
			o->keys = v;
			break;
		case 'K':
			if (bench_parse_u64(optarg, &v) || v == 0 ||
			    v > KV_MAX_KEY)
				goto bad;
			o->key_size = (unsigned)v;
			break;
		case 'v':
			if (bench_parse_u64(optarg, &v) ||
			    v > KV_MAX_VALUE_LIMIT)
				goto bad;
			o->value_size = (unsigned)v;
			break;
		case 't': {
			char *end;
			o->seconds = strtod(optarg, &end);
			if (end == optarg || *end != '\0' ||
			    !(o->seconds > 0 && o->seconds <= 3600))
				goto bad;
			break;
		}
		case 's':
			if (kv_name_check(optarg) != KV_OK ||
			    strchr(optarg, '/') != NULL) {
				fprintf(stderr, "kv-bench: --store %s: %s\n",
				        optarg, kv_strerror(KV_ENAME));
				return -1;
			}
			o->store = optarg;
			break;
		case 'c':
			o->csv = optarg;
			break;
		case 'p':
			o->phases = optarg;
			break;
		case 'b':
			n = bench_parse_counts(optarg, 1, MAX_MGET, o->batch,
			                       MAX_COUNTS);
			if (n < 0)
				goto bad;
			o->nbatch = (unsigned)n;
			break;
		case 'r':
			n = bench_parse_counts(optarg, 1, MAX_READERS,
			                       o->readers, MAX_COUNTS);
			if (n < 0)
				goto bad;
			o->nreaders = (unsigned)n;
			break;
		case 'o':
			if (strcmp(optarg, "rdwr") == 0) {
				o->open_rdwr = true;
				o->open_rdonly = false;
			} else if (strcmp(optarg, "rdonly") == 0) {
				o->open_rdwr = false;
				o->open_rdonly = true;
			} else if (strcmp(optarg, "both") == 0) {
				o->open_rdwr = o->open_rdonly = true;
			} else {
				goto bad;
			}
			break;
		case 'H':
			o->huge = true;
			break;
		case 'M':
			if (bench_parse_u64(optarg, &v) || v == 0 ||
			    v > (UINT64_C(1) << 20))
				goto bad;
			o->store_mib = v;
			break;
		case 'w':
			if (bench_parse_u64(optarg, &v) || v > 100000000u)
				goto bad;
			o->writer_rate = v;
			break;
		case 'm':
			if (bench_parse_u64(optarg, &v) || v > 100)
				goto bad;
			o->min_cpu = (double)v / 100.0;
			break;
		case 'C':
			if (bench_parse_u64(optarg, &v) || v >= CPU_SETSIZE)
				goto bad;
			o->cpu = (int)v;
			break;
		case 'S':
			if (bench_parse_u64(optarg, &v))
				goto bad;
			o->seed = v;
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "kv-bench: unexpected argument '%s'\n",
		        argv[optind]);
		return -1;
	}
	unsigned kmin = bench_key_min(o->keys);
	if (o->key_size == 0)
		o->key_size = kmin > 12 ? kmin : 12;
	if (o->key_size < kmin) {
		fprintf(stderr,
		        "kv-bench: --key-size %u is too short for %" PRIu64
		        " keys (need %u)\n",
		        o->key_size, o->keys, kmin);
		return -1;
	}
	return 0;
bad:
	for (const struct option *l = longopts; l->name; l++)
		if (l->val == c)
			fprintf(stderr, "kv-bench: bad value for --%s: '%s'\n",
			        l->name, optarg);
	return -1;
}

/* ------------------------------------------------------------------------
 * Stores: created exclusively, remembered, destroyed on the way out.
 *
 * Sizing uses the public API only: kv_options.max_items sizes the index,
 * and kv_options.size is grown until kv_stats() reports an arena with 30 %
 * headroom over what the items need. The need is a guess that errs high
 * (a header of up to 64 bytes, a size class up to 1/8 above the item) in
 * whole pages of the store's own page size; a load that still evicts is
 * an error, never a silent miss later.
 */
#define MAX_STORES 4
static char created[MAX_STORES][KV_MAX_NAME + 1];
static int ncreated;

static void destroy_created(void)
{
	for (int i = ncreated - 1; i >= 0; i--)
		kv_destroy(created[i]);
	ncreated = 0;
}

static void forget_created(const char *name)
{
	for (int i = 0; i < ncreated; i++)
		if (strcmp(created[i], name) == 0) {
			memmove(created[i], created[i + 1],
			        (size_t)(ncreated - i - 1) * sizeof created[0]);
			ncreated--;
			return;
		}
}

/* Arena bytes for n items of klen+vlen bytes, in pages of page bytes. */
static uint64_t arena_need(uint64_t n, unsigned klen, unsigned vlen,
                           uint64_t page)
{
	uint64_t item = 64 + (uint64_t)klen + vlen;
	uint64_t chunk = item + item / 8 + 8;
	uint64_t per_page = page / chunk ? page / chunk : 1;
	uint64_t pages = (n * 13 / 10 + per_page - 1) / per_page + 2;
	return pages * page;
}

/* The main store's least size (--store-mib), 0: as the keys need; and
 * extra KV_CREATE_ flags (--huge-pages). */
static uint64_t min_store_bytes;
static uint32_t create_flags;

static int create_store(const char *name, uint64_t n, uint64_t max_items,
                        unsigned klen, unsigned vlen, kv_t **kv)
{
	uint32_t maxv = vlen > KV_DEFAULT_MAX_VALUE ? vlen : 0;
	uint64_t page = (maxv ? maxv : KV_DEFAULT_MAX_VALUE) + 2 * KV_MAX_KEY;
	struct kv_options ko = {
		.max_items = max_items, .max_value = maxv,
		.flags = KV_CREATE_EXCL | create_flags,
		.size = (1u << 20) + n * 32 + arena_need(n, klen, vlen, page),
	};
	int rc = KV_OK;

	if (max_items >= n && ko.size < min_store_bytes && n > SMALL_KEYS)
		ko.size = min_store_bytes;
	*kv = NULL;
	for (int tries = 0; tries < 8; tries++) {
		struct kv_stats st;
		rc = kv_create(name, &ko, kv);
		if (rc == KV_ETOOSMALL) {
			ko.size *= 2;
			continue;
		}
		if (rc != KV_OK)
			break;
		kv_stats(*kv, &st);
		uint64_t need = arena_need(n, klen, vlen, st.page_size);
		if (st.data_bytes >= need) {
			if (ncreated < MAX_STORES)
				snprintf(created[ncreated++],
				         sizeof created[0], "%s", name);
			return 0;
		}
		kv_close(*kv);
		*kv = NULL;
		kv_destroy(name);
		ko.size += need - st.data_bytes + st.page_size;
	}
	fprintf(stderr, "kv-bench: create store %s (%" PRIu64 " bytes): %s\n",
	        name, ko.size,
	        rc == KV_OK ? "cannot size it for the keys" : kv_strerror(rc));
	return -1;
}

/* After a load: every key is there and none was evicted. Returns 0; 1
 * when keys were evicted although the arena had room (the index turned
 * a key away: its probe limit); -1 otherwise. */
static int check_loaded(kv_t *kv, uint64_t n)
{
	struct kv_stats st;
	kv_stats(kv, &st);
	if (st.items == n && st.evictions == 0)
		return 0;
	if (st.evictions > 0 && st.data_used < st.data_bytes / 10 * 9) {
		printf("# WARNING: the load evicted %" PRIu64 " of %" PRIu64
		       " keys with max_items = %" PRIu64 " and the arena %.0f%% "
		       "used: the index turned them away (%" PRIu64 " slots, "
		       "longest probe %" PRIu64 "); loading again into a store "
		       "with max_items = n + n/8\n",
		       st.evictions, n, n,
		       100.0 * (double)st.data_used / (double)st.data_bytes,
		       st.slots, st.max_probe);
		return 1;
	}
	fprintf(stderr, "kv-bench: store holds %" PRIu64 " of %" PRIu64
	        " keys after the load (%" PRIu64 " evicted; arena %" PRIu64
	        " of %" PRIu64 " bytes used, %" PRIu64 " of %" PRIu64
	        " pages; index %" PRIu64 " slots, longest probe %" PRIu64
	        ")\n",
	        st.items, n, st.evictions, st.data_used, st.data_bytes,
	        st.pages_used, st.pages_total, st.slots, st.max_probe);
	return -1;
}

/* ------------------------------------------------------------------------
 * The timed loop.
 */
enum op { OP_PUT, OP_GET_HIT, OP_GET_MISS, OP_DEL, OP_MIXED };

/* The mixed workload: one put in every MIX_EVERY operations, gets else. */
#define MIX_EVERY 10u

struct bench_ctx {
	kv_t *kv;
	uint8_t *val;     /* value to put */
	uint8_t *buf;     /* where gets copy to */
	size_t vlen;
	size_t cap;
	unsigned mix;     /* OP_MIXED: operations since the last put */
	struct bench_report *rep;
};

/* One operation; 0 when it did what the phase expects, else the status. */
static inline __attribute__((always_inline)) int
one(struct bench_ctx *c, enum op op, const char *key, size_t klen)
{
	size_t got = 0;
	int rc;

	switch (op) {
	case OP_PUT:
		rc = kv_put(c->kv, key, klen, c->val, c->vlen, NULL);
		return rc;
	case OP_GET_HIT:
		rc = kv_get(c->kv, key, klen, c->buf, c->cap, &got);
		if (__builtin_expect(rc == KV_OK && got != c->vlen, 0))
			return KV_ECORRUPT;
		return rc;
	case OP_GET_MISS:
		rc = kv_get(c->kv, key, klen, c->buf, c->cap, &got);
		return rc == KV_ENOTFOUND ? KV_OK : (rc == KV_OK ? 1 : rc);
	case OP_DEL:
		return kv_del(c->kv, key, klen);
	case OP_MIXED:
		if (++c->mix == MIX_EVERY) {
			c->mix = 0;
			return kv_put(c->kv, key, klen, c->val, c->vlen, NULL);
		}
		rc = kv_get(c->kv, key, klen, c->buf, c->cap, &got);
		if (__builtin_expect(rc == KV_OK && got != c->vlen, 0))
			return KV_ECORRUPT;
		return rc;
	}
	return KV_EINVAL;
}

/* Run op over ks (wrapping) until count operations are done (count 0: no
 * limit) or secs pass (secs 0: no limit). Stops at the first unexpected
 * status and reports it in r->errors and *status. */
static inline __attribute__((always_inline)) void
loop(struct bench_ctx *c, enum op op, const struct bench_keyset *ks,
     uint64_t count, double secs, const char *phase,
     struct bench_samples *smp, struct bench_result *r, int *status)
{
	const size_t klen = ks->klen;
	const uint64_t total = count ? count : UINT64_MAX;
	uint64_t done = 0, last_pct = 0;
	size_t ki = 0;
	uint64_t t0 = bench_now_ns(), now = t0;
	const uint64_t limit = secs > 0 ? (uint64_t)(secs * 1e9) : UINT64_MAX;

	*status = KV_OK;
	while (done < total && !stop) {
		uint64_t n = total - done < BATCH ? total - done : BATCH;
		for (uint64_t i = 0; i < n; i++) {
			const char *key = bench_key(ks, ki);
			int rc;
			if (++ki == ks->count)
				ki = 0;
			if ((i & (BENCH_SAMPLE_EVERY - 1)) ==
			    BENCH_SAMPLE_EVERY - 1) {
				uint64_t a = bench_ticks_begin();
				rc = one(c, op, key, klen);
				uint64_t b = bench_ticks_end();
				bench_sample(smp, b - a);
			} else {
				rc = one(c, op, key, klen);
			}
			if (__builtin_expect(rc != KV_OK, 0)) {
				done += i;
				r->errors++;
				*status = rc;
				now = bench_now_ns();
				goto out;
			}
		}
		done += n;
		now = bench_now_ns();
		if (now - t0 >= limit)
			break;
		if (count && now - t0 > 1000000000u &&
		    now - last_pct > 250000000u) {
			bench_progress_pct(c->rep, phase, done, total);
			last_pct = now;
		}
	}
out:
	if (last_pct)
		bench_progress_done(c->rep);
	r->ops = done;
	r->secs = (double)(now - t0) / 1e9;
}

static int run_phase(struct bench_ctx *c, enum op op,
                     const struct bench_keyset *ks, uint64_t count,
                     double secs, const char *phase, uint64_t keys,
                     struct bench_result *r)
{
	struct bench_samples smp;
	int status = KV_OK;

	*r = (struct bench_result){0};
	snprintf(r->phase, sizeof r->phase, "%s", phase);
	snprintf(r->mode, sizeof r->mode, "single");
	snprintf(r->unit, sizeof r->unit, "op");
	r->keys = keys;
	r->procs = 1;
	if (bench_samples_init(&smp) != 0) {
		fprintf(stderr, "kv-bench: out of memory\n");
		return -1;
	}
	uint64_t cpu0 = bench_cpu_ns();
	/* One call site per op, so each loop is compiled for its op. */
	switch (op) {
	case OP_PUT:
		loop(c, OP_PUT, ks, count, secs, phase, &smp, r, &status);
		break;
	case OP_GET_HIT:
		loop(c, OP_GET_HIT, ks, count, secs, phase, &smp, r, &status);
		break;
	case OP_GET_MISS:
		loop(c, OP_GET_MISS, ks, count, secs, phase, &smp, r,
		     &status);
		break;
	case OP_DEL:
		loop(c, OP_DEL, ks, count, secs, phase, &smp, r, &status);
		break;
	case OP_MIXED:
		loop(c, OP_MIXED, ks, count, secs, phase, &smp, r, &status);
		break;
	}
	r->cpu_secs = (double)(bench_cpu_ns() - cpu0) / 1e9;
	bench_percentiles(&smp, r);
	bench_samples_free(&smp);
	if (status != KV_OK) {
		fprintf(stderr, "kv-bench: %s: stopped after %" PRIu64
		        " ops: %s\n", phase, r->ops,
		        status > 0 ? "a get found an absent key"
		                   : kv_strerror(status));
		return -1;
	}
	return 0;
}

/* Batched gets: kv_mget of `batch` keys from ks per call, for secs.
 * Every op is a key; every 64th call is timed on its own (a latency row
 * is per call, not per key). */
static int run_mget(struct bench_ctx *c, const struct bench_keyset *ks,
                    unsigned batch, double secs, uint64_t keys,
                    struct bench_result *r)
{
	struct kv_getv v[MAX_MGET];
	struct bench_samples smp;
	size_t stride = (c->cap + 63) / 64 * 64;
	uint8_t *bufs = aligned_alloc(64, stride * batch);
	const uint64_t limit = (uint64_t)(secs * 1e9);
	const unsigned calls = BATCH / batch ? BATCH / batch : 1;
	uint64_t done = 0, ncalls = 0;
	size_t ki = 0;
	int bad = KV_OK;

	*r = (struct bench_result){0};
	snprintf(r->phase, sizeof r->phase, "mget-%u", batch);
	snprintf(r->mode, sizeof r->mode, "single");
	snprintf(r->unit, sizeof r->unit, "op");
	r->keys = keys;
	r->procs = 1;
	if (bufs == NULL || bench_samples_init(&smp) != 0) {
		free(bufs);
		fprintf(stderr, "kv-bench: out of memory\n");
		return -1;
	}
	for (unsigned i = 0; i < batch; i++)
		v[i] = (struct kv_getv){.klen = ks->klen,
		                        .buf = bufs + i * stride,
		                        .cap = c->cap};
	uint64_t t0 = bench_now_ns(), now = t0, cpu0 = bench_cpu_ns();
	while (!stop && bad == KV_OK) {
		for (unsigned k = 0; k < calls; k++) {
			for (unsigned i = 0; i < batch; i++) {
				v[i].key = bench_key(ks, ki);
				if (++ki == ks->count)
					ki = 0;
			}
			if ((++ncalls & (BENCH_SAMPLE_EVERY - 1)) == 0) {
				uint64_t a = bench_ticks_begin();
				kv_mget(c->kv, v, batch);
				uint64_t b = bench_ticks_end();
				bench_sample(&smp, b - a);
			} else {
				kv_mget(c->kv, v, batch);
			}
			for (unsigned i = 0; i < batch; i++)
				if (__builtin_expect(v[i].status != KV_OK ||
				                         v[i].vlen != c->vlen,
				                     0)) {
					bad = v[i].status != KV_OK
					          ? v[i].status
					          : KV_ECORRUPT;
					r->errors++;
				}
			done += batch;
			if (bad != KV_OK)
				break;
		}
		now = bench_now_ns();
		if (now - t0 >= limit)
			break;
	}
	r->ops = done;
	r->secs = (double)(now - t0) / 1e9;
	r->cpu_secs = (double)(bench_cpu_ns() - cpu0) / 1e9;
	bench_percentiles(&smp, r);
	bench_samples_free(&smp);
	free(bufs);
	if (bad != KV_OK) {
		fprintf(stderr, "kv-bench: %s: stopped after %" PRIu64
		        " ops: %s\n", r->phase, r->ops, kv_strerror(bad));
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * The workload table. Each phase names the op, the store and the keys it
 * runs over; run in this order (del last: it empties the store).
 */
enum keys_kind {
	KEYS_SEQ,       /* 0..n-1 in order: each once */
	KEYS_HIT,       /* ring of uniform random present keys */
	KEYS_MISS,      /* ring of uniform random absent keys */
	KEYS_SHUFFLED,  /* 0..n-1 in random order: each once */
	KEYS_NONE,
};

enum which_store { MAIN_STORE, SMALL_STORE };

enum workload_kind {
	WL_OPS,     /* a timed loop of op (or each key once) */
	WL_MGET,    /* kv_mget, one row per --batch size */
	WL_MEMLAT,  /* the memory yardstick, not a store op */
	WL_READERS, /* reader processes (and a paced writer): team.c */
	WL_FRESH,   /* one new reader process, cold then steady */
};

struct workload {
	const char *name;
	enum op op;
	enum keys_kind keys;
	enum which_store store;
	bool timed;       /* runs for --seconds (else each key once) */
	enum workload_kind kind;
	const char *what;
};

static const struct workload workloads[] = {
	{"load", OP_PUT, KEYS_SEQ, MAIN_STORE, false, WL_OPS,
	 "put every key once into an empty store"},
	{"put-replace", OP_PUT, KEYS_HIT, MAIN_STORE, true, WL_OPS,
	 "overwrite uniform random present keys"},
	{"get-hit", OP_GET_HIT, KEYS_HIT, MAIN_STORE, true, WL_OPS,
	 "get uniform random present keys"},
	{"get-miss", OP_GET_MISS, KEYS_MISS, MAIN_STORE, true, WL_OPS,
	 "get uniform random absent keys"},
	{"mixed", OP_MIXED, KEYS_HIT, MAIN_STORE, true, WL_OPS,
	 "90 % get, 10 % put (same size) of uniform random present keys"},
	{"mget", OP_GET_HIT, KEYS_HIT, MAIN_STORE, true, WL_MGET,
	 "kv_mget of --batch uniform random present keys per call"},
	{"memory-latency", OP_GET_HIT, KEYS_NONE, MAIN_STORE, true, WL_MEMLAT,
	 "pointer chase and random lines over a buffer of map_size bytes"},
	{"readers", OP_GET_HIT, KEYS_HIT, MAIN_STORE, true, WL_READERS,
	 "get-hit in --readers processes, then beside a paced writer"},
	{"fresh", OP_GET_HIT, KEYS_HIT, MAIN_STORE, true, WL_FRESH,
	 "a new process attaches and gets: its first --seconds, then more"},
	{"get-hit-10k", OP_GET_HIT, KEYS_HIT, SMALL_STORE, true, WL_OPS,
	 "get uniform random keys of a 10000-key store"},
	{"del", OP_DEL, KEYS_SHUFFLED, MAIN_STORE, true, WL_OPS,
	 "delete present keys in random order"},
};

static bool phase_selected(const char *list, const char *name)
{
	if (list == NULL || strcmp(name, "load") == 0)
		return true;
	size_t n = strlen(name);
	for (const char *p = list; *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && memcmp(p, name, n) == 0)
			return true;
		p += len + (e != NULL);
	}
	return false;
}

static int check_phases(const char *list)
{
	for (const char *p = list; p && *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		bool ok = false;
		for (size_t i = 0; i < sizeof workloads / sizeof workloads[0];
		     i++)
			if (strlen(workloads[i].name) == len &&
			    memcmp(workloads[i].name, p, len) == 0)
				ok = true;
		if (!ok) {
			fprintf(stderr, "kv-bench: unknown phase '%.*s'\n",
			        (int)len, p);
			return -1;
		}
		p += len + (e != NULL);
	}
	return 0;
}

static int make_keys(struct bench_keyset *ks, enum keys_kind kind,
                     uint64_t n, unsigned klen, uint64_t seed)
{
	switch (kind) {
	case KEYS_SEQ:
		return bench_keys_seq(ks, klen, 0, (size_t)n);
	case KEYS_HIT:
		return bench_keys_random(ks, klen, 0, n, bench_ring_size(n, klen),
		                         seed);
	case KEYS_MISS:
		return bench_keys_random(ks, klen, n, n, bench_ring_size(n, klen),
		                         seed);
	case KEYS_SHUFFLED:
		return bench_keys_shuffled(ks, klen, n, seed);
	case KEYS_NONE:
		break;
	}
	*ks = (struct bench_keyset){0};
	return 0;
}

/* ------------------------------------------------------------------------
 * Reader processes and the paced writer (run by team.c in forked
 * children; see the top of this file).
 */
struct team_args {
	const char *store;
	unsigned flags;   /* KV_RDWR or KV_RDONLY */
	uint64_t keys;
	unsigned klen, vlen;
	size_t cap;
	double secs;
	uint64_t seed;
	uint64_t rate;    /* the writer's puts per second */
};

static int reader_worker(void *arg, unsigned idx, struct bench_team *t,
                         struct bench_member *m, struct bench_samples *smp)
{
	const struct team_args *a = arg;
	struct bench_report quiet = {.quiet = true};
	struct bench_keyset ks = {0};
	struct bench_result r = {0};
	kv_t *kv = NULL;
	uint8_t *buf = aligned_alloc(64, (a->cap + 63) / 64 * 64);
	int status = KV_OK, ret = -1;

	int rc = kv_open(a->store, a->flags, &kv);
	if (rc != KV_OK) {
		snprintf(m->err, sizeof m->err, "kv_open %s: %s", a->store,
		         kv_strerror(rc));
		goto out;
	}
	if (buf == NULL ||
	    make_keys(&ks, KEYS_HIT, a->keys, a->klen,
	              a->seed * 1000003u + 7919u * (idx + 1)) != 0) {
		snprintf(m->err, sizeof m->err, "out of memory");
		goto out;
	}
	struct bench_ctx c = {.kv = kv, .buf = buf, .vlen = a->vlen,
	                      .cap = a->cap, .rep = &quiet};
	/* Warm up: this process's page tables for the mapping, the key
	 * ring, the code. */
	loop(&c, OP_GET_HIT, &ks, 0, a->secs / 8 < 0.25 ? a->secs / 8 : 0.25,
	     "readers", smp, &r, &status);
	smp->n = 0;
	if (status != KV_OK)
		goto failed;
	if (bench_team_start(t) != 0) {
		snprintf(m->err, sizeof m->err, "run called off");
		goto out;
	}
	r = (struct bench_result){0};
	loop(&c, OP_GET_HIT, &ks, 0, a->secs, "readers", smp, &r, &status);
	m->ops = r.ops;
	m->secs = r.secs;
	m->errors = r.errors;
	if (status != KV_OK)
		goto failed;
	ret = 0;
	goto out;
failed:
	snprintf(m->err, sizeof m->err, "get-hit: %s",
	         status > 0 ? "a get found an absent key"
	                    : kv_strerror(status));
out:
	bench_keys_free(&ks);
	free(buf);
	kv_close(kv);
	return ret;
}

static int writer_worker(void *arg, unsigned idx, struct bench_team *t,
                         struct bench_member *m, struct bench_samples *smp)
{
	const struct team_args *a = arg;
	struct bench_keyset ks = {0};
	kv_t *kv = NULL;
	uint8_t *val = malloc(a->vlen + 1);
	int ret = -1;

	int rc = kv_open(a->store, KV_RDWR, &kv);
	if (rc != KV_OK) {
		snprintf(m->err, sizeof m->err, "writer: kv_open %s: %s",
		         a->store, kv_strerror(rc));
		goto out;
	}
	if (val == NULL ||
	    make_keys(&ks, KEYS_HIT, a->keys, a->klen,
	              a->seed * 1000003u + 104729u * (idx + 1)) != 0) {
		snprintf(m->err, sizeof m->err, "writer: out of memory");
		goto out;
	}
	for (unsigned i = 0; i < a->vlen; i++)
		val[i] = (uint8_t)('A' + i % 26);

	/* A batch per millisecond (at least one put), on an absolute
	 * schedule so that sleeping late does not lower the rate; after a
	 * stall of more than 50 ms the schedule restarts from now rather
	 * than bursting to catch up. */
	uint64_t batch = a->rate / 1000;
	if (batch < 1)
		batch = 1;
	if (batch > 4096)
		batch = 4096;
	const uint64_t period = (uint64_t)((double)batch * 1e9 /
	                                   (double)a->rate);
	uint64_t ops = 0;
	size_t ki = 0;

	if (bench_team_start(t) != 0) {
		snprintf(m->err, sizeof m->err, "run called off");
		goto out;
	}
	uint64_t t0 = bench_now_ns(), next = t0, now = t0;
	while (!bench_team_stopping(t) && !stop) {
		for (uint64_t i = 0; i < batch; i++) {
			const char *key = bench_key(&ks, ki);
			if (++ki == ks.count)
				ki = 0;
			if (((ops + i) & (BENCH_SAMPLE_EVERY - 1)) == 0) {
				uint64_t b0 = bench_ticks_begin();
				rc = kv_put(kv, key, ks.klen, val, a->vlen,
				            NULL);
				uint64_t b1 = bench_ticks_end();
				bench_sample(smp, b1 - b0);
			} else {
				rc = kv_put(kv, key, ks.klen, val, a->vlen,
				            NULL);
			}
			if (rc != KV_OK) {
				snprintf(m->err, sizeof m->err,
				         "writer: put: %s", kv_strerror(rc));
				m->errors++;
				goto out;
			}
		}
		ops += batch;
		next += period;
		now = bench_now_ns();
		if (next > now) {
			struct timespec ts = {
				.tv_sec = (time_t)(next / 1000000000u),
				.tv_nsec = (long)(next % 1000000000u),
			};
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME,
			                       &ts, NULL) == EINTR &&
			       !stop)
				;
		} else if (now - next > 50000000u) {
			next = now;
		}
	}
	now = bench_now_ns();
	m->ops = ops;
	m->secs = (double)(now - t0) / 1e9;
	ret = 0;
out:
	bench_keys_free(&ks);
	free(val);
	kv_close(kv);
	return ret;
}

/* Before measuring a contended row again: up to 15 s for the machine to
 * go idle, 90 s over the whole run. */
static void quiet_wait(void)
{
	bench_wait_quiet(15, 90, &stop);
}

/* Say when a row was measured more than once, and why. */
static void report_tries(const double *shares, int tries)
{
	if (tries < 2)
		return;
	printf("#   measured %d times: CPU share", tries);
	for (int i = 0; i < tries; i++)
		printf(" %.0f%%", 100 * shares[i]);
	printf(" (this row is the last)\n");
}

static void report_member(const struct bench_team *t, unsigned i,
                          const char *what)
{
	const struct bench_member *mb = bench_team_member(t, i);
	struct bench_result r = {0};
	bench_team_one(t, i, &r);
	char cpu[16] = "unpinned";
	if (mb->cpu >= 0)
		snprintf(cpu, sizeof cpu, "cpu %d", mb->cpu);
	printf("#   %s %u (%s): %.3f M ops/s, p50 %.0f, p99 %.0f, "
	       "p99.9 %.0f ns, %.0f%% of a CPU\n",
	       what, i, cpu, bench_ops_per_s(&r) / 1e6, r.p50_ns, r.p99_ns,
	       r.p999_ns, r.secs > 0 ? 100.0 * r.cpu_secs / r.secs : 0.0);
}

/* The readers phase: for each variant and each N of --readers, one row
 * (and, beside the writer, one row for the writer's achieved rate). */
static int run_readers(const struct options *o, const char *store,
                       struct bench_report *rep)
{
	enum { RDWR, RDONLY, WRITER };
	static const char *const mode[] = {"readers", "readers-ro",
	                                   "readers+w"};
	double one[3] = {0};
	unsigned maxn = 0;
	int ret = 0;

	for (unsigned i = 0; i < o->nreaders; i++)
		if (o->readers[i] > maxn)
			maxn = o->readers[i];
	struct bench_team *t = bench_team_create(maxn + 1);
	if (t == NULL) {
		fprintf(stderr, "kv-bench: readers: cannot map results\n");
		return -1;
	}
	for (int v = RDWR; v <= WRITER && ret == 0 && !stop; v++) {
		if ((v == RDWR && !o->open_rdwr) ||
		    (v == RDONLY && !o->open_rdonly) ||
		    (v == WRITER && o->writer_rate == 0))
			continue;
		for (unsigned k = 0; k < o->nreaders && !stop; k++) {
			unsigned n = o->readers[k];
			struct team_args a = {
				.store = store,
				.flags = v == RDONLY ? KV_RDONLY : KV_RDWR,
				.keys = o->keys, .klen = o->key_size,
				.vlen = o->value_size,
				.cap = o->value_size + 64u,
				.secs = o->seconds, .seed = o->seed + k,
				.rate = o->writer_rate,
			};
			char what[96], err[200];
			snprintf(what, sizeof what, "%u %s process%s%s", n,
			         v == RDONLY ? "KV_RDONLY" : "KV_RDWR",
			         n == 1 ? "" : "es",
			         v == WRITER ? " beside a paced writer" : "");
			bench_progress_phase(rep, mode[v], what);
			struct bench_result r = {0};
			int tries = 0;
			double shares[BENCH_TRIES];
			do {
				if (bench_team_run(t, n, reader_worker, &a,
				                   v == WRITER ? 1 : 0,
				                   writer_worker, &a, &stop, err,
				                   sizeof err) != 0) {
					if (!stop)
						fprintf(stderr,
						        "kv-bench: %s: %s\n",
						        mode[v], err);
					ret = -1;
					break;
				}
				bench_team_sum(t, 0, n, &r);
				shares[tries++] = bench_cpu_share(&r);
				if (bench_contended(&r, o->min_cpu) &&
				    tries < BENCH_TRIES) {
					bench_progress_phase(
					    rep, mode[v],
					    "other processes took the CPUs; "
					    "again when they are idle");
					quiet_wait();
				}
			} while (bench_contended(&r, o->min_cpu) &&
			         tries < BENCH_TRIES && !stop);
			if (ret != 0)
				break;
			snprintf(r.phase, sizeof r.phase, "get-hit");
			snprintf(r.mode, sizeof r.mode, "%s", mode[v]);
			snprintf(r.unit, sizeof r.unit, "op");
			r.keys = o->keys;
			bench_report_row(rep, &r);
			for (unsigned i = 0; i < n; i++)
				report_member(t, i, "reader");
			report_tries(shares, tries);
			if (v == WRITER) {
				struct bench_result w = {0};
				bench_team_one(t, n, &w);
				snprintf(w.phase, sizeof w.phase,
				         "put-paced-r%u", n);
				snprintf(w.mode, sizeof w.mode, "writer");
				snprintf(w.unit, sizeof w.unit, "op");
				w.keys = o->keys;
				bench_report_row(rep, &w);
				printf("#   writer: %.0f puts/s of %" PRIu64
				       " asked\n", bench_ops_per_s(&w),
				       o->writer_rate);
			}
			/* Scaling is against one reader alone (with the
			 * writer: against one reader without it). */
			if (n == 1 && v != WRITER)
				one[v] = bench_ops_per_s(&r);
			double base = one[v == WRITER ? RDWR : v];
			if (base > 0 && (n > 1 || v == WRITER))
				printf("#   %s x%u = %.2f x one reader "
				       "(brief: >= %.1f)\n", mode[v], n,
				       bench_ops_per_s(&r) / base,
				       (v == WRITER ? 0.8 : 0.9) * n);
		}
	}
	bench_team_destroy(t);
	return ret;
}

/* ------------------------------------------------------------------------
 * Reporting helpers.
 */
/* The fresh phase: what a process that has just attached gets. A new
 * process (forked before it attaches, so it shares none of this
 * process's page tables for the mapping) draws its keys, then attaches
 * with kv_open and at once gets uniform random present keys for
 * --seconds: the "fresh" row. It goes on for --seconds more: the
 * "steady" row, the same process once warm. The attach time is printed
 * below the table. */
struct fresh_out {
	struct bench_result r[3]; /* first 250 ms, first --seconds, steady */
	double attach_ms;
	long faults[2];    /* minor page faults: first --seconds, steady */
	int status;
	char err[160];
};

#define FRESH_EARLY 0.25 /* seconds of the first row */

static void fresh_child(const struct options *o, const char *store,
                        struct fresh_out *out)
{
	struct bench_report quiet = {.quiet = true};
	struct bench_keyset ks = {0};
	struct bench_samples smp = {0};
	size_t cap = o->value_size ? o->value_size : 1;
	uint8_t *buf = malloc(cap);
	uint64_t *early = malloc(BENCH_SAMPLE_MAX * sizeof *early);
	kv_t *kv = NULL;
	int status = KV_OK;
	static const char *const names[3] = {"get-hit first 250ms", "",
	                                     "get-hit steady"};

	out->status = -1;
	if (buf == NULL || early == NULL || bench_samples_init(&smp) != 0 ||
	    make_keys(&ks, KEYS_HIT, o->keys, o->key_size,
	              o->seed * 1000003u + 4242u) != 0) {
		snprintf(out->err, sizeof out->err, "out of memory");
		goto done;
	}
	/* The samples' pages, so that no fault of ours is the first row's. */
	memset(smp.t, 0, BENCH_SAMPLE_MAX * sizeof *smp.t);
	memset(early, 0, BENCH_SAMPLE_MAX * sizeof *early);
	uint64_t t0 = bench_now_ns();
	int rc = kv_open(store, o->open_rdonly && !o->open_rdwr ? KV_RDONLY
	                                                       : KV_RDWR,
	                 &kv);
	out->attach_ms = (double)(bench_now_ns() - t0) / 1e6;
	if (rc != KV_OK) {
		snprintf(out->err, sizeof out->err, "kv_open %s: %s", store,
		         kv_strerror(rc));
		goto done;
	}
	struct bench_ctx c = {.kv = kv, .buf = buf, .vlen = o->value_size,
	                      .cap = cap, .rep = &quiet};
	double early_s = o->seconds < FRESH_EARLY ? o->seconds / 2
	                                          : FRESH_EARLY;
	/* Three loops: the first early_s, the rest of the first --seconds
	 * (its samples added to the first's), then --seconds more. */
	double len[3] = {early_s, o->seconds - early_s, o->seconds};
	struct rusage ru[3];
	getrusage(RUSAGE_SELF, &ru[0]);
	for (int i = 0; i < 3; i++) {
		struct bench_result lr = {0};
		uint64_t cpu0 = bench_cpu_ns();
		if (i == 2) {
			getrusage(RUSAGE_SELF, &ru[1]);
			smp.n = 0;
		}
		loop(&c, OP_GET_HIT, &ks, 0, len[i], "fresh", &smp, &lr,
		     &status);
		if (status != KV_OK) {
			snprintf(out->err, sizeof out->err, "get-hit: %s",
			         status > 0 ? "a get found an absent key"
			                    : kv_strerror(status));
			goto done;
		}
		struct bench_result *r = &out->r[i];
		if (i == 1) {
			/* The first --seconds: both loops. */
			*r = out->r[0];
			r->ops += lr.ops;
			r->secs += lr.secs;
			r->cpu_secs += (double)(bench_cpu_ns() - cpu0) / 1e9;
			bench_percentiles(&smp, r);
		} else {
			*r = lr;
			r->cpu_secs = (double)(bench_cpu_ns() - cpu0) / 1e9;
			size_t n = smp.n < BENCH_SAMPLE_MAX ? smp.n
			                                    : BENCH_SAMPLE_MAX;
			memcpy(early, smp.t, n * sizeof *early);
			bench_percentiles_of(early, n, r);
		}
		snprintf(r->phase, sizeof r->phase, "%s", names[i]);
		if (i == 1)
			snprintf(r->phase, sizeof r->phase, "get-hit first %gs",
			         o->seconds);
		snprintf(r->mode, sizeof r->mode, "new-proc");
		snprintf(r->unit, sizeof r->unit, "op");
		r->keys = o->keys;
		r->procs = 1;
	}
	getrusage(RUSAGE_SELF, &ru[2]);
	out->faults[0] = ru[1].ru_minflt - ru[0].ru_minflt;
	out->faults[1] = ru[2].ru_minflt - ru[1].ru_minflt;
	out->status = 0;
done:
	kv_close(kv);
	bench_keys_free(&ks);
	bench_samples_free(&smp);
	free(early);
	free(buf);
}

static int run_fresh(const struct options *o, const char *store,
                     struct bench_report *rep)
{
	struct fresh_out *out = mmap(NULL, sizeof *out,
	                             PROT_READ | PROT_WRITE,
	                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int ret = -1, st;

	if (out == MAP_FAILED) {
		perror("kv-bench: mmap");
		return -1;
	}
	memset(out, 0, sizeof *out);
	out->status = -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		perror("kv-bench: fork");
		goto out;
	}
	if (pid == 0) {
		fresh_child(o, store, out);
		_exit(out->status == 0 ? 0 : 1);
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (out->status != 0) {
		fprintf(stderr, "kv-bench: fresh: %s\n",
		        out->err[0] ? out->err : "the reader process failed");
		goto out;
	}
	for (int i = 0; i < 3; i++)
		bench_report_row(rep, &out->r[i]);
	printf("# fresh: kv_open took %.2f ms; minor faults %ld in the first "
	       "%g s, %ld after (the process's, warm-up included); p99 of "
	       "the first %g s / steady p99: %.2fx (goal: <= 2x)\n",
	       out->attach_ms, out->faults[0], o->seconds, out->faults[1],
	       o->seconds,
	       out->r[2].p99_ns > 0 ? out->r[1].p99_ns / out->r[2].p99_ns
	                            : 0.0);
	ret = 0;
out:
	munmap(out, sizeof *out);
	return ret;
}

static void print_environment(const struct options *o)
{
	char model[128] = "unknown";
	char line[256];
	FILE *f = fopen("/proc/cpuinfo", "r");

	if (f) {
		while (fgets(line, sizeof line, f))
			if (strncmp(line, "model name", 10) == 0) {
				char *p = strchr(line, ':');
				if (p) {
					p += 1 + (p[1] == ' ');
					p[strcspn(p, "\n")] = '\0';
					snprintf(model, sizeof model, "%s", p);
				}
				break;
			}
		fclose(f);
	}
	printf("# kv-bench %s, build %s (%s), cc %s\n", kv_version(),
	       KV_BENCH_BUILDTYPE,
#ifdef NDEBUG
	       "asserts off",
#else
	       "asserts on",
#endif
	       CC_NAME);
	printf("# cpu: %s, %ld online, %s\n", model,
	       sysconf(_SC_NPROCESSORS_ONLN),
	       o->cpu >= 0 ? "pinned" : "not pinned");
	if (o->cpu >= 0)
		printf("#   pinned to cpu %d\n", o->cpu);
	printf("# keys %" PRIu64 " x %u B, values %u B, %.1f s per timed "
	       "phase, seed %" PRIu64 "\n",
	       o->keys, o->key_size, o->value_size, o->seconds, o->seed);
	printf("# random keys: pre-drawn uniform rings (%zu keys for the "
	       "main store), read in order; RNG not timed\n",
	       bench_ring_size(o->keys, o->key_size));
	printf("# latency: every %uth op timed with %s (%.3f ticks/ns, "
	       "resolution %.1f ns), %.1f ns timer overhead subtracted\n",
	       BENCH_SAMPLE_EVERY, bench_clock_name(), bench_ticks_per_ns(),
	       bench_timer_resolution_ns(), bench_timer_overhead_ns());
}

/* item_hdr: kv_stats.item_header. */
static void print_memory(const struct kv_stats *st, unsigned klen,
                         unsigned vlen, unsigned item_hdr)
{
	double items = st->items ? (double)st->items : 1;
	double payload = (double)st->key_bytes + (double)st->value_bytes;
	double index = (double)st->buckets * 64; /* a bucket is a cache line */
	double used = (double)st->data_used;
	double hdr = (double)st->items * item_hdr;

	printf("# memory pages backing the store: %" PRIu64 " KiB%s\n",
	       st->mem_page_size / 1024,
	       st->mem_page_size >= 2u << 20 ? " (huge pages)" : "");
	printf("# memory after load: %" PRIu64 " items of %u+%u B; "
	       "map %.1f MiB, index %.1f MiB (%" PRIu64 " buckets, "
	       "%.0f%% of slots used), arena used %.1f MiB of %.1f MiB\n",
	       st->items, klen, vlen, (double)st->map_size / 1048576.0,
	       index / 1048576.0, st->buckets,
	       100.0 * (double)st->items / (double)(st->slots ? st->slots : 1),
	       used / 1048576.0, (double)st->data_bytes / 1048576.0);
	printf("#   overhead per item (data_used + index - keys - values) "
	       "/ items = %.1f B   [brief: <= 32]\n",
	       (used + index - payload) / items);
	printf("#     index share   buckets*64 / items                  "
	       "      = %.1f B\n", index / items);
	printf("#     item share    (data_used - keys - values) / items "
	       "      = %.1f B (%u B header + rounding)\n",
	       (used - payload) / items, item_hdr);
	printf("#   size-class waste (data_used - items*%u - keys - values) "
	       "/ data_used = %.2f%%   [brief: <= 15%%]\n",
	       item_hdr, used > 0 ? 100.0 * (used - hdr - payload) / used
	                          : 0.0);
	/* For compare.sh: overhead_per_item counts everything; the brief's
	 * "<= 32 B per item, plus size-class waste" is overhead_ex_waste
	 * (index + header), with the waste judged on its own. */
	printf("# mem: system=kv keys=%" PRIu64 " key_size=%u value_size=%u "
	       "bytes_per_item=%.1f overhead_per_item=%.1f "
	       "overhead_ex_waste=%.1f index_per_item=%.1f waste_pct=%.2f\n",
	       st->items, klen, vlen, (used + index) / items,
	       (used + index - payload) / items, (index + hdr) / items,
	       index / items,
	       used > 0 ? 100.0 * (used - hdr - payload) / used : 0.0);
	printf("#   pages held by classes: %" PRIu64 " x %u B = %.1f MiB "
	       "(%.1f%% of it in live chunks)\n",
	       st->pages_used, st->page_size,
	       (double)st->pages_used * st->page_size / 1048576.0,
	       st->pages_used ? 100.0 * used / ((double)st->pages_used *
	                                        st->page_size)
	                      : 0.0);
}

/* ------------------------------------------------------------------------
 * main.
 */
static int load_store(struct bench_ctx *c, uint64_t n, unsigned klen,
                      const char *phase, struct bench_result *r)
{
	struct bench_keyset ks;

	if (make_keys(&ks, KEYS_SEQ, n, klen, 0) != 0) {
		fprintf(stderr, "kv-bench: out of memory for keys\n");
		return -1;
	}
	int rc = run_phase(c, OP_PUT, &ks, n, 0, phase, n, r);
	bench_keys_free(&ks);
	return rc;
}

int main(int argc, char **argv)
{
	struct options o;
	struct bench_report rep = {0};
	kv_t *kv = NULL, *small = NULL;
	uint8_t *val = NULL, *buf = NULL;
	struct bench_result hit = {0}, chase = {0};
	uint64_t chase_bytes = 0;
	char name[KV_MAX_NAME + 1], sname[KV_MAX_NAME + 1];
	int ret = 2;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (parse_options(argc, argv, &o) != 0 || check_phases(o.phases) != 0)
		return 2;
	min_store_bytes = o.store_mib << 20;
	create_flags = o.huge ? KV_CREATE_HUGE : 0;

	struct sigaction sa = {0};
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	if (o.cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(o.cpu, &set);
		if (sched_setaffinity(0, sizeof set, &set) != 0) {
			fprintf(stderr, "kv-bench: --cpu %d: %s\n", o.cpu,
			        strerror(errno));
			return 2;
		}
	}

	rep.quiet = o.quiet;
	rep.tty = isatty(STDERR_FILENO);
	rep.key_size = o.key_size;
	rep.value_size = o.value_size;
	if (o.csv) {
		rep.csv = fopen(o.csv, "w");
		if (rep.csv == NULL) {
			fprintf(stderr, "kv-bench: --csv %s: %s\n", o.csv,
			        strerror(errno));
			return 2;
		}
	}

	if (o.store)
		snprintf(name, sizeof name, "%s", o.store);
	else
		snprintf(name, sizeof name, "bench.%ld", (long)getpid());
	snprintf(sname, sizeof sname, "%.*s.10k", KV_MAX_NAME - 4, name);
	if (kv_name_check(sname) != KV_OK)
		snprintf(sname, sizeof sname, "bench.%ld.10k",
		         (long)getpid());

	size_t cap = o.value_size + 64;
	val = malloc(o.value_size + 1);
	buf = aligned_alloc(64, (cap + 63) / 64 * 64);
	if (val == NULL || buf == NULL) {
		fprintf(stderr, "kv-bench: out of memory\n");
		goto out;
	}
	for (unsigned i = 0; i < o.value_size; i++)
		val[i] = (uint8_t)('a' + i % 26);

	bench_clock_init();
	print_environment(&o);

	if (create_store(name, o.keys, o.keys, o.key_size, o.value_size,
	                 &kv) != 0)
		goto out;
	struct bench_ctx ctx = {.kv = kv, .val = val, .buf = buf,
	                        .vlen = o.value_size, .cap = cap,
	                        .rep = &rep};
	bool header = false, reloaded = false;

	for (size_t w = 0; w < sizeof workloads / sizeof workloads[0]; w++) {
		const struct workload *wl = &workloads[w];
		struct bench_result r;
		uint64_t n = wl->store == SMALL_STORE ? SMALL_KEYS : o.keys;

		if (stop)
			break;
		if (!phase_selected(o.phases, wl->name))
			continue;
		if (wl->store == SMALL_STORE && o.keys <= SMALL_KEYS)
			continue; /* get-hit already measured this size */
		bench_progress_phase(&rep, wl->name, wl->what);

		if (wl->kind == WL_MEMLAT) {
			struct kv_stats st;
			struct bench_result ri;
			char err[160];
			/* The table's size: the index and the arena pages
			 * the items are in, which is what a get can touch. */
			kv_stats(kv, &st);
			chase_bytes = st.buckets * 64 +
			              st.pages_used * st.page_size;
			if (bench_memlat(chase_bytes, o.huge, o.seconds, o.seed,
			                 &stop, &chase, &ri, err,
			                 sizeof err) != 0) {
				fprintf(stderr, "kv-bench: %s: %s\n",
				        wl->name, err);
				goto out;
			}
			if (stop)
				break;
			chase.keys = ri.keys = o.keys;
			bench_report_row(&rep, &chase);
			bench_report_row(&rep, &ri);
			continue;
		}
		if (wl->kind == WL_READERS) {
			if (o.nreaders == 0) {
				bench_progress_phase(&rep, wl->name,
				                     "skipped (no --readers)");
				continue;
			}
			if (run_readers(&o, name, &rep) != 0)
				goto out;
			continue;
		}
		if (wl->kind == WL_FRESH) {
			if (run_fresh(&o, name, &rep) != 0)
				goto out;
			continue;
		}
		if (wl->kind == WL_MGET) {
			struct bench_keyset ks;
			if (make_keys(&ks, wl->keys, n, o.key_size,
			              o.seed * 1000003u + w) != 0) {
				fprintf(stderr,
				        "kv-bench: out of memory for keys\n");
				goto out;
			}
			int rc = 0;
			for (unsigned b = 0; b < o.nbatch && rc == 0 && !stop;
			     b++) {
				double shares[BENCH_TRIES];
				int tries = 0;
				do {
					if (tries > 0)
						quiet_wait();
					rc = run_mget(&ctx, &ks, o.batch[b],
					              o.seconds, n, &r);
					shares[tries++] = bench_cpu_share(&r);
				} while (rc == 0 && !stop &&
				         bench_contended(&r, o.min_cpu) &&
				         tries < BENCH_TRIES);
				if (!stop) {
					bench_report_row(&rep, &r);
					report_tries(shares, tries);
				}
			}
			bench_keys_free(&ks);
			if (rc != 0)
				goto out;
			continue;
		}

		struct bench_ctx *c = &ctx;
		struct bench_ctx sctx;
		if (wl->store == SMALL_STORE) {
			if (create_store(sname, SMALL_KEYS, SMALL_KEYS,
			                 o.key_size,
			                 o.value_size, &small) != 0)
				goto out;
			sctx = ctx;
			sctx.kv = small;
			c = &sctx;
			if (load_store(c, SMALL_KEYS, o.key_size, "load-10k",
			               &r) != 0 ||
			    check_loaded(small, SMALL_KEYS) != 0)
				goto out;
		}

		struct bench_keyset ks;
		if (make_keys(&ks, wl->keys, n, o.key_size,
		              o.seed * 1000003u + w) != 0) {
			fprintf(stderr, "kv-bench: out of memory for keys\n");
			goto out;
		}
		/* Timed phases over random keys may run again when other
		 * processes took the CPU (--min-cpu); counted ones change the
		 * store (load, del) and run once. */
		bool counted = wl->keys == KEYS_SHUFFLED || wl->keys == KEYS_SEQ;
		double shares[BENCH_TRIES];
		int tries = 0, rc;
		do {
			if (tries > 0)
				quiet_wait();
			rc = run_phase(c, wl->op, &ks, counted ? n : 0,
			               wl->timed ? o.seconds : 0, wl->name, n,
			               &r);
			shares[tries++] = bench_cpu_share(&r);
		} while (rc == 0 && !counted && !stop &&
		         bench_contended(&r, o.min_cpu) && tries < BENCH_TRIES);
		bench_keys_free(&ks);
		if (stop)
			break;
		if (strcmp(wl->name, "load") == 0 && rc == 0) {
			int lc = check_loaded(kv, n);
			if (lc == 1 && !reloaded) {
				/* Once, into a store with a larger index; the
				 * warning stays in the output. */
				kv_close(kv);
				kv = NULL;
				kv_destroy(name);
				forget_created(name);
				if (create_store(name, n, n + n / 8, o.key_size,
				                 o.value_size, &kv) != 0)
					goto out;
				ctx.kv = kv;
				reloaded = true;
				w--; /* the load again (w wraps to 0 and back) */
				continue;
			}
			if (lc != 0)
				goto out;
		}
		if (rc != 0 && strcmp(wl->name, "load") == 0)
			goto out;
		if (!header) {
			if (strcmp(wl->name, "load") == 0) {
				struct kv_stats st;
				kv_stats(kv, &st);
				print_memory(&st, o.key_size, o.value_size,
				             st.item_header);
			}
			printf("\n");
			bench_report_header(&rep);
			header = true;
		}
		bench_report_row(&rep, &r);
		report_tries(shares, tries);
		if (rc != 0)
			goto out;
		if (strcmp(wl->name, "get-hit") == 0)
			hit = r;
		if (wl->store == SMALL_STORE) {
			kv_close(small);
			small = NULL;
			kv_destroy(sname);
			forget_created(sname);
		}
	}
	if (stop) {
		fprintf(stderr, "kv-bench: interrupted\n");
		ret = 130;
		goto out;
	}
	if (hit.ops && chase.ops) {
		double g = bench_ns_per_op(&hit), m = bench_ns_per_op(&chase);
		printf("\n# get-hit %.1f ns = %.2f x one dependent miss "
		       "(mem-chase %.1f ns over %.0f MiB); brief: <= 2 misses "
		       "and >= 80%% of that limit (%.2f M ops/s)\n",
		       g, g / m, m, (double)chase_bytes / 1048576.0,
		       1e3 / (2 * m) * 0.8);
	}
	ret = 0;
out:
	kv_close(small);
	kv_close(kv);
	destroy_created();
	if (rep.csv)
		fclose(rep.csv);
	free(val);
	free(buf);
	return ret;
}
