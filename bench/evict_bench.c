/*
 * evict_bench.c - what a full store costs: the same puts and gets on a
 * store with room to spare and on one at 100 % where every put of a new
 * key evicts, and what the expiry sweep costs while keys expire.
 *
 *   kv-evict-bench [--keys N] [--value-size B] [--seconds S] [--csv FILE]
 *
 * The "roomy" store is sized for 4N items; the "full" one has memory for
 * about N/2 (and an index for 2N), so loading N keys fills its memory and
 * every later put evicts; the "ixfull" one has memory for 4N and an index
 * for N/2, so its index fills first. Each phase runs for S
 * seconds over keys drawn before the clock starts. Output: a table on
 * stdout and, with --csv, the same rows as CSV.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h" /* kv__sweep: kvd's expiry step, timed here */
#include "kv.h"

struct row {
	const char *store, *phase;
	double ops_s, ns_op;
	uint64_t evictions, expired;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static int key_of(uint64_t i, char *k)
{
	return snprintf(k, 24, "k:%010" PRIu64, i);
}

/* The name of the store `tag` of this run. */
static void store_name(char name[KV_MAX_NAME + 1], const char *tag)
{
	snprintf(name, KV_MAX_NAME + 1, "evbench.%s.%d", tag, (int)getpid());
}

/* A store with memory for `items` and an index for `index_items`. */
static kv_t *make(const char *tag, uint64_t items, uint64_t index_items,
                  size_t vlen)
{
	char name[KV_MAX_NAME + 1];
	store_name(name, tag);
	struct kv_options o = {0};
	/* 12-byte keys: a 16-byte header, key and value, rounded to a
	 * class; 64 bytes of index per 7 slots at 7/8 load. */
	uint64_t per = (16 + 12 + vlen + 16) * 9 / 8 + 11;
	o.size = items * per + index_items * 12 + (8u << 20);
	o.max_items = index_items;
	o.max_value = 4096;
	o.flags = KV_CREATE_EXCL;
	kv_t *kv = NULL;
	int rc = kv_create(name, &o, &kv);
	if (rc != KV_OK) {
		fprintf(stderr, "kv-evict-bench: store %s: %s\n", name,
		        kv_strerror(rc));
		exit(2);
	}
	return kv;
}

/* Put keys next, next+1, ... for `secs`: new keys, so a full store evicts
 * on every put. */
static void puts_new(kv_t *kv, uint64_t *next, const char *val, size_t vlen,
                     double secs, struct row *r)
{
	char k[24];
	uint64_t n = 0;
	double t0 = now_s(), t;
	do {
		for (int i = 0; i < 1024; i++, n++) {
			int kl = key_of((*next)++, k);
			if (kv_put(kv, k, (size_t)kl, val, vlen, NULL) != KV_OK) {
				fprintf(stderr, "kv-evict-bench: put failed\n");
				exit(2);
			}
		}
		t = now_s() - t0;
	} while (t < secs);
	r->ops_s = (double)n / t;
	r->ns_op = t * 1e9 / (double)n;
}

/* Gets of keys drawn uniformly from [lo, hi): the last N put. */
static void gets(kv_t *kv, uint64_t lo, uint64_t hi, double secs,
                 struct row *r)
{
	enum { RING = 1 << 16 };
	static char keys[RING][24];
	static int lens[RING];
	char buf[4096];
	size_t vl;
	uint64_t x = 88172645463325252ull, n = 0, hits = 0;
	for (int i = 0; i < RING; i++)
		lens[i] = key_of(lo + rnd(&x) % (hi - lo), keys[i]);
	double t0 = now_s(), t;
	do {
		for (int i = 0; i < RING; i++, n++)
			hits += kv_get(kv, keys[i], (size_t)lens[i], buf,
			               sizeof buf, &vl) == KV_OK;
		t = now_s() - t0;
	} while (t < secs);
	r->ops_s = (double)n / t;
	r->ns_op = t * 1e9 / (double)n;
	(void)hits;
}

static void print_row(FILE *f, const struct row *r, bool csv)
{
	if (csv)
		fprintf(f, "%s,%s,%.0f,%.1f,%" PRIu64 ",%" PRIu64 "\n",
		        r->store, r->phase, r->ops_s, r->ns_op, r->evictions,
		        r->expired);
	else
		fprintf(f, "%-7s %-24s %12.0f %9.1f %12" PRIu64 " %10" PRIu64
		           "\n",
		        r->store, r->phase, r->ops_s, r->ns_op, r->evictions,
		        r->expired);
}

int main(int argc, char **argv)
{
	uint64_t n = 1000000;
	size_t vlen = 100;
	double secs = 2;
	const char *csv = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--keys") && i + 1 < argc)
			n = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--value-size") && i + 1 < argc)
			vlen = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			secs = strtod(argv[++i], NULL);
		else if (!strcmp(argv[i], "--csv") && i + 1 < argc)
			csv = argv[++i];
		else {
			fprintf(stderr, "usage: kv-evict-bench [--keys N] "
			                "[--value-size B] [--seconds S] "
			                "[--csv FILE]\n");
			return strcmp(argv[i], "--help") ? 2 : 0;
		}
	}
	if (n < 1000 || vlen > 4000 || secs <= 0) {
		fprintf(stderr, "kv-evict-bench: --keys >= 1000, --value-size "
		                "<= 4000, --seconds > 0\n");
		return 2;
	}
	char *val = calloc(1, vlen + 1);
	memset(val, 'v', vlen);
	struct row rows[12];
	int nr = 0;
	const char *names[3] = {"roomy", "full", "ixfull"};
	/* The full store runs out of memory, not index: the common case,
	 * where CLOCK evicts within a size class. The ixfull one runs out
	 * of index first: each new key evicts one near its home. */
	kv_t *stores[3] = {make("roomy", 4 * n, 4 * n, vlen),
	                   make("full", n / 2, 2 * n, vlen),
	                   make("ixfull", 4 * n, n / 2, vlen)};

	for (int s = 0; s < 3; s++) {
		kv_t *kv = stores[s];
		uint64_t next = 0;
		struct kv_stats a, b;
		fprintf(stderr, "kv-evict-bench: %s store: loading %" PRIu64
		                " keys\n",
		        names[s], n);
		char k[24];
		for (; next < n; next++) {
			int kl = key_of(next, k);
			if (kv_put(kv, k, (size_t)kl, val, vlen, NULL)) {
				fprintf(stderr, "kv-evict-bench: load failed\n");
				return 2;
			}
		}
		kv_stats(kv, &a);
		struct row *r = &rows[nr++];
		*r = (struct row){names[s], "put new keys", 0, 0, 0, 0};
		puts_new(kv, &next, val, vlen, secs, r);
		kv_stats(kv, &b);
		r->evictions = b.evictions - a.evictions;
		r = &rows[nr++];
		*r = (struct row){names[s], "get, recent keys", 0, 0, 0, 0};
		uint64_t live = b.items < next ? b.items : next;
		gets(kv, next - live, next, secs, r);
		kv_stats(kv, &a);
		r->evictions = a.evictions - b.evictions;
	}

	/* Expiry: a quarter of the roomy store's keys with a TTL that runs
	 * out; sweep steps as kvd runs them, timed. */
	kv_t *kv = stores[0];
	struct kv_put_opts o = {.ttl_ms = 1};
	char k[24];
	for (uint64_t i = 0; i < n / 4; i++) {
		int kl = key_of(i, k);
		kv_put(kv, k, (size_t)kl, val, vlen, &o);
	}
	struct timespec pause = {0, 5000000};
	nanosleep(&pause, NULL);
	struct kv_stats a, b;
	kv_stats(kv, &a);
	double t0 = now_s();
	uint64_t steps = 0;
	struct kv_stats st0;
	kv_stats(kv, &st0);
	for (uint64_t done = 0; done < st0.buckets; done += 1024, steps++)
		kv__sweep(kv, 1024, NULL);
	double t = now_s() - t0;
	kv_stats(kv, &b);
	struct row *r = &rows[nr++];
	*r = (struct row){"roomy", "sweep step (1024 buckets)",
	                  (double)steps / t, (double)(b.sweep_ns - a.sweep_ns) /
	                                         (double)steps,
	                  0, b.expired - a.expired};

	printf("# kv-evict-bench: %" PRIu64 " keys of 12 bytes, %zu-byte "
	       "values; roomy store sized for %" PRIu64 " items, full for %"
	       PRIu64 "\n",
	       n, vlen, 4 * n, n / 2);
	printf("%-7s %-24s %12s %9s %12s %10s\n", "store", "phase", "ops/s",
	       "ns/op", "evictions", "expired");
	for (int i = 0; i < nr; i++)
		print_row(stdout, &rows[i], false);
	if (csv != NULL) {
		FILE *f = fopen(csv, "w");
		if (f == NULL) {
			perror(csv);
			return 2;
		}
		fprintf(f, "store,phase,ops_s,ns_op,evictions,expired\n");
		for (int i = 0; i < nr; i++)
			print_row(f, &rows[i], true);
		fclose(f);
	}
	for (int s = 0; s < 3; s++) {
		char name[KV_MAX_NAME + 1];
		store_name(name, names[s]);
		kv_close(stores[s]);
		kv_destroy(name);
	}
	free(val);
	return 0;
}
