/*
 * kv_bench.c - kv-bench: throughput and latency of libkv, single process,
 * against the memory yardstick the brief measures it by.
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
 * Adding a mode (reader processes, peers) means another runner that fills
 * `struct bench_result` rows from the same key sets and hands them to
 * report.c; the workload table and the timed loop stay as they are.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "kv.h"
#include "kv_internal.h" /* kv__geometry: size the store exactly */

#ifndef KV_BENCH_BUILDTYPE
#define KV_BENCH_BUILDTYPE "unknown"
#endif

#define BATCH 1024u          /* operations between clock reads */
#define RING_MAX (1u << 20)  /* keys in a random key ring */
#define RING_MIN (1u << 16)
#define RING_BYTES (32u << 20)
#define SMALL_KEYS 10000u    /* the cache-resident store */

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
};

static void usage(FILE *f)
{
	fprintf(f,
	    "usage: kv-bench [OPTION]...\n"
	    "Measure libkv in one process: load, put, get hit/miss, del, and\n"
	    "the memory latency of a buffer the size of the store.\n"
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
	    "                    load put-replace get-hit get-miss\n"
	    "                    memory-latency get-hit-10k del\n"
	    "                    (load always runs; the others need it)\n"
	    "  --cpu N           pin to CPU N\n"
	    "  --seed N          RNG seed (default 1)\n"
	    "  --quiet           no progress on stderr\n"
	    "  --help            this text\n");
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	if (*s == '-')
		return -1;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end != '\0')
		return -1;
	*out = v;
	return 0;
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
		{"cpu", required_argument, NULL, 'C'},
		{"seed", required_argument, NULL, 'S'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;
	uint64_t v;

	*o = (struct options){.keys = 1000000, .value_size = 100,
	                      .seconds = 2, .cpu = -1, .seed = 1};
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'k':
			if (parse_u64(optarg, &v) || v == 0 || v > UINT32_MAX)
				goto bad;
			o->keys = v;
			break;
		case 'K':
			if (parse_u64(optarg, &v) || v == 0 || v > KV_MAX_KEY)
				goto bad;
			o->key_size = (unsigned)v;
			break;
		case 'v':
			if (parse_u64(optarg, &v) || v > KV_MAX_VALUE_LIMIT)
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
		case 'C':
			if (parse_u64(optarg, &v) || v >= CPU_SETSIZE)
				goto bad;
			o->cpu = (int)v;
			break;
		case 'S':
			if (parse_u64(optarg, &v))
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

/* The chunk an item of this many bytes takes, from the store's classes. */
static uint64_t chunk_for(const struct kv_geometry *g, uint64_t bytes)
{
	for (uint32_t c = 0; c < g->nclasses; c++)
		if (g->class_size[c] >= bytes)
			return g->class_size[c];
	return 0;
}

/* Size a store for n items with 30 % headroom in the arena, and the index
 * sized by the library for n items (max_items). */
static int store_options(uint64_t n, unsigned klen, unsigned vlen,
                         struct kv_options *ko, char *err, size_t errlen)
{
	struct kv_geometry g;
	uint32_t maxv = vlen > KV_DEFAULT_MAX_VALUE ? vlen : 0;

	*ko = (struct kv_options){.max_items = n, .max_value = maxv,
	                          .flags = KV_CREATE_EXCL};
	if (kv__classes(maxv ? maxv : KV_DEFAULT_MAX_VALUE, &g) != KV_OK)
		goto bad;
	uint64_t chunk = chunk_for(&g, KV_ITEM_HDR + (uint64_t)klen + vlen);
	if (chunk == 0)
		goto bad;
	uint64_t per_page = g.page_size / chunk;
	uint64_t pages = (n * 13 / 10 + per_page - 1) / per_page + 2;
	uint64_t size = pages * (g.page_size + 16) + KV_INDEX_OFF;
	for (int tries = 0; tries < 64; tries++) {
		int rc = kv__geometry(size, ko->max_value, n, &g);
		if (rc == KV_OK && g.npages >= pages) {
			ko->size = size;
			return 0;
		}
		if (rc != KV_OK && rc != KV_ETOOSMALL)
			break;
		size += size / 8 > g.page_size ? size / 8 : g.page_size;
	}
bad:
	snprintf(err, errlen, "cannot size a store for %" PRIu64
	         " items of %u+%u bytes", n, klen, vlen);
	return -1;
}

static int create_store(const char *name, uint64_t n, unsigned klen,
                        unsigned vlen, kv_t **kv)
{
	struct kv_options ko;
	char err[128];

	if (store_options(n, klen, vlen, &ko, err, sizeof err) != 0) {
		fprintf(stderr, "kv-bench: %s\n", err);
		return -1;
	}
	int rc = kv_create(name, &ko, kv);
	if (rc != KV_OK) {
		fprintf(stderr, "kv-bench: create store %s (%" PRIu64
		        " bytes): %s\n", name, ko.size, kv_strerror(rc));
		return -1;
	}
	if (ncreated < MAX_STORES)
		snprintf(created[ncreated++], sizeof created[0], "%s", name);
	return 0;
}

/* ------------------------------------------------------------------------
 * The timed loop.
 */
enum op { OP_PUT, OP_GET_HIT, OP_GET_MISS, OP_DEL };

struct bench_ctx {
	kv_t *kv;
	uint8_t *val;     /* value to put */
	uint8_t *buf;     /* where gets copy to */
	size_t vlen;
	size_t cap;
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
	}
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

struct workload {
	const char *name;
	enum op op;
	enum keys_kind keys;
	enum which_store store;
	bool timed;       /* runs for --seconds (else each key once) */
	bool memlat;      /* the memory yardstick, not a store op */
	const char *what;
};

static const struct workload workloads[] = {
	{"load", OP_PUT, KEYS_SEQ, MAIN_STORE, false, false,
	 "put every key once into an empty store"},
	{"put-replace", OP_PUT, KEYS_HIT, MAIN_STORE, true, false,
	 "overwrite uniform random present keys"},
	{"get-hit", OP_GET_HIT, KEYS_HIT, MAIN_STORE, true, false,
	 "get uniform random present keys"},
	{"get-miss", OP_GET_MISS, KEYS_MISS, MAIN_STORE, true, false,
	 "get uniform random absent keys"},
	{"memory-latency", OP_GET_HIT, KEYS_NONE, MAIN_STORE, true, true,
	 "pointer chase and random lines over a buffer of map_size bytes"},
	{"get-hit-10k", OP_GET_HIT, KEYS_HIT, SMALL_STORE, true, false,
	 "get uniform random keys of a 10000-key store"},
	{"del", OP_DEL, KEYS_SHUFFLED, MAIN_STORE, true, false,
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

static size_t ring_size(uint64_t n, unsigned klen)
{
	uint64_t r = n * 4;
	size_t stride = (klen + 7u) / 8u * 8u;
	if (r < RING_MIN)
		r = RING_MIN;
	if (r > RING_MAX)
		r = RING_MAX;
	if (r * stride > RING_BYTES)
		r = RING_BYTES / stride;
	return (size_t)(r ? r : 1);
}

static int make_keys(struct bench_keyset *ks, enum keys_kind kind,
                     uint64_t n, unsigned klen, uint64_t seed)
{
	switch (kind) {
	case KEYS_SEQ:
		return bench_keys_seq(ks, klen, 0, (size_t)n);
	case KEYS_HIT:
		return bench_keys_random(ks, klen, 0, n, ring_size(n, klen),
		                         seed);
	case KEYS_MISS:
		return bench_keys_random(ks, klen, n, n, ring_size(n, klen),
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
 * Reporting helpers.
 */
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
	       ring_size(o->keys, o->key_size));
	printf("# latency: every %uth op timed with %s (%.3f ticks/ns, "
	       "resolution %.1f ns), %.1f ns timer overhead subtracted\n",
	       BENCH_SAMPLE_EVERY, bench_clock_name(), bench_ticks_per_ns(),
	       bench_timer_resolution_ns(), bench_timer_overhead_ns());
}

static void print_memory(const struct kv_stats *st, unsigned klen,
                         unsigned vlen)
{
	double items = st->items ? (double)st->items : 1;
	double payload = (double)st->key_bytes + (double)st->value_bytes;
	double index = (double)st->buckets * 64;
	double used = (double)st->data_used;
	double hdr = (double)st->items * KV_ITEM_HDR;

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
	       (used - payload) / items, KV_ITEM_HDR);
	printf("#   size-class waste (data_used - items*%u - keys - values) "
	       "/ data_used = %.2f%%   [brief: <= 15%%]\n",
	       KV_ITEM_HDR, used > 0 ? 100.0 * (used - hdr - payload) / used
	                             : 0.0);
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

	if (create_store(name, o.keys, o.key_size, o.value_size, &kv) != 0)
		goto out;
	struct bench_ctx ctx = {.kv = kv, .val = val, .buf = buf,
	                        .vlen = o.value_size, .cap = cap,
	                        .rep = &rep};
	bool header = false;

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

		if (wl->memlat) {
			struct kv_stats st;
			struct bench_result ri;
			char err[160];
			kv_stats(kv, &st);
			chase_bytes = st.map_size;
			if (bench_memlat(st.map_size, o.seconds, o.seed,
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

		struct bench_ctx *c = &ctx;
		struct bench_ctx sctx;
		if (wl->store == SMALL_STORE) {
			if (create_store(sname, SMALL_KEYS, o.key_size,
			                 o.value_size, &small) != 0)
				goto out;
			sctx = ctx;
			sctx.kv = small;
			c = &sctx;
			if (load_store(c, SMALL_KEYS, o.key_size, "load-10k",
			               &r) != 0)
				goto out;
		}

		struct bench_keyset ks;
		if (make_keys(&ks, wl->keys, n, o.key_size,
		              o.seed * 1000003u + w) != 0) {
			fprintf(stderr, "kv-bench: out of memory for keys\n");
			goto out;
		}
		int rc = run_phase(c, wl->op, &ks, wl->keys == KEYS_SHUFFLED ||
		                                       wl->keys == KEYS_SEQ
		                                   ? n
		                                   : 0,
		                   wl->timed ? o.seconds : 0, wl->name, n, &r);
		bench_keys_free(&ks);
		if (stop)
			break;
		if (!header) {
			if (strcmp(wl->name, "load") == 0) {
				struct kv_stats st;
				kv_stats(kv, &st);
				print_memory(&st, o.key_size, o.value_size);
			}
			printf("\n");
			bench_report_header(&rep);
			header = true;
		}
		bench_report_row(&rep, &r);
		if (rc != 0)
			goto out;
		if (strcmp(wl->name, "get-hit") == 0)
			hit = r;
		if (wl->store == SMALL_STORE) {
			kv_close(small);
			small = NULL;
			kv_destroy(sname);
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
