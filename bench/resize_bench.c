/*
 * resize_bench.c - what growing a live store costs, and whom it stalls.
 *
 *   kv-resize-bench [--keys N] [--value-size B] [--from SIZE] [--to SIZE]
 *                   [--readers R] [--csv FILE]
 *
 * Makes a store of --from bytes (default 1G) with N keys (default 1M) of
 * B bytes (default 100), starts R reader processes (default 2: one
 * read-write handle, one read-only) that get random keys and verify each
 * value, and one writer process that replaces random keys, all attached
 * before the resize; after a second of steady state, grows the store to
 * --to (default 4G) with kv_resize (or shrinks it, when --to is the
 * smaller), and runs a second more. Every get and
 * put is timed. Prints one table (and, with --csv, the same rows): the
 * resize's total time; the longest get any reader saw before, during and
 * after it, and the p99 and p99.9 of gets during it; the longest put the
 * writer saw (writers wait while the index is rebuilt); and kv_check of
 * the resized store. Figures are measured, never asserted.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kv.h"
#include "../cli/size.h"

#define NBINS 64 /* log2 latency histogram, in ns */

struct shared {
	_Atomic int phase;      /* 0 warm, 1 resizing, 2 after, 3 stop */
	_Atomic uint64_t ready; /* processes attached */
	struct {
		uint64_t gets[3], max_ns[3], errors;
		uint64_t hist[NBINS]; /* during the resize */
	} r[8];
	uint64_t puts, put_max_ns, put_errors;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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

/* A value of vlen bytes that names its key: the key, then filler. */
static void value_of(uint64_t i, char *v, size_t vlen)
{
	char k[24];
	int kl = key_of(i, k);
	memset(v, 'a' + (int)(i % 26), vlen);
	memcpy(v, k, (size_t)kl < vlen ? (size_t)kl : vlen);
}

static unsigned bin_of(uint64_t ns)
{
	unsigned b = 0;
	while (ns > 1 && b < NBINS - 1) {
		ns >>= 1;
		b++;
	}
	return b;
}

/* The upper bound (ns) of the bin where fraction q of the samples lie. */
static double quantile(const uint64_t *hist, double q)
{
	uint64_t n = 0, seen = 0;
	for (unsigned b = 0; b < NBINS; b++)
		n += hist[b];
	if (n == 0)
		return 0;
	for (unsigned b = 0; b < NBINS; b++) {
		seen += hist[b];
		if ((double)seen >= q * (double)n)
			return (double)(UINT64_C(2) << b);
	}
	return 0;
}

static void reader(struct shared *sh, int id, const char *name, bool rdonly,
                   uint64_t keys, size_t vlen)
{
	kv_t *kv = NULL;
	if (kv_open(name, rdonly ? KV_RDONLY : KV_RDWR, &kv) != KV_OK)
		_exit(2);
	char *buf = malloc(vlen + 64), *want = malloc(vlen);
	char k[24];
	uint64_t x = 0x9e3779b97f4a7c15u ^ (uint64_t)(id + 1);
	atomic_fetch_add(&sh->ready, 1);
	for (;;) {
		int ph = atomic_load_explicit(&sh->phase, memory_order_relaxed);
		if (ph == 3)
			break;
		uint64_t i = rnd(&x) % keys;
		int kl = key_of(i, k);
		size_t got = 0;
		uint64_t t0 = now_ns();
		int rc = kv_get(kv, k, (size_t)kl, buf, vlen + 64, &got);
		uint64_t dt = now_ns() - t0;
		value_of(i, want, vlen);
		if (rc != KV_OK || got != vlen || memcmp(buf, want, vlen) != 0)
			sh->r[id].errors++;
		sh->r[id].gets[ph]++;
		if (dt > sh->r[id].max_ns[ph])
			sh->r[id].max_ns[ph] = dt;
		if (ph == 1)
			sh->r[id].hist[bin_of(dt)]++;
	}
	kv_close(kv);
	_exit(0);
}

static void writer(struct shared *sh, const char *name, uint64_t keys,
                   size_t vlen)
{
	kv_t *kv = NULL;
	if (kv_open(name, KV_RDWR, &kv) != KV_OK)
		_exit(2);
	char *v = malloc(vlen), k[24];
	uint64_t x = 0x51ed2701u;
	atomic_fetch_add(&sh->ready, 1);
	while (atomic_load_explicit(&sh->phase, memory_order_relaxed) != 3) {
		uint64_t i = rnd(&x) % keys;
		int kl = key_of(i, k);
		value_of(i, v, vlen);
		uint64_t t0 = now_ns();
		int rc = kv_put(kv, k, (size_t)kl, v, vlen, NULL);
		uint64_t dt = now_ns() - t0;
		sh->puts++;
		sh->put_errors += rc != KV_OK;
		if (dt > sh->put_max_ns)
			sh->put_max_ns = dt;
		/* A paced writer (about 20k puts/s), as a cache is written. */
		struct timespec ts = {0, 50000};
		nanosleep(&ts, NULL);
	}
	kv_close(kv);
	_exit(0);
}

static void sleep_s(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
	nanosleep(&ts, NULL);
}

static uint64_t size_arg(const char *s)
{
	uint64_t v;
	const char *why;
	if (kv_size_parse(s, &v, &why) != 0) {
		fprintf(stderr, "kv-resize-bench: '%s': %s\n", s, why);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	uint64_t keys = 1000000, from = UINT64_C(1) << 30, to = UINT64_C(4)
	                                                           << 30;
	size_t vlen = 100;
	int nreaders = 2;
	const char *csv = NULL;

	for (int i = 1; i < argc; i += 2) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (v == NULL) {
			fprintf(stderr, "usage: kv-resize-bench [--keys N] "
			                "[--value-size B] [--from SIZE] [--to "
			                "SIZE] [--readers R] [--csv FILE]\n");
			return 2;
		}
		if (strcmp(a, "--keys") == 0)
			keys = strtoull(v, NULL, 10);
		else if (strcmp(a, "--value-size") == 0)
			vlen = (size_t)strtoul(v, NULL, 10);
		else if (strcmp(a, "--from") == 0)
			from = size_arg(v);
		else if (strcmp(a, "--to") == 0)
			to = size_arg(v);
		else if (strcmp(a, "--readers") == 0)
			nreaders = atoi(v);
		else if (strcmp(a, "--csv") == 0)
			csv = v;
		else {
			fprintf(stderr, "kv-resize-bench: unknown option %s\n",
			        a);
			return 2;
		}
	}
	if (keys == 0 || vlen < 16 || nreaders < 1 || nreaders > 8) {
		fprintf(stderr, "kv-resize-bench: bad arguments\n");
		return 2;
	}

	char name[KV_MAX_NAME + 1];
	snprintf(name, sizeof name, "rsbench.%d", (int)getpid());
	struct kv_options o = {.size = from, .max_size = to > from ? to : from,
	                       .max_value = 4096, .flags = KV_CREATE_EXCL};
	kv_t *kv = NULL;
	int rc = kv_create(name, &o, &kv);
	if (rc != KV_OK) {
		fprintf(stderr, "kv-resize-bench: create %s: %s\n", name,
		        kv_strerror(rc));
		return 2;
	}
	char *v = malloc(vlen), k[24];
	for (uint64_t i = 0; i < keys; i++) {
		value_of(i, v, vlen);
		int kl = key_of(i, k);
		rc = kv_put(kv, k, (size_t)kl, v, vlen, NULL);
		if (rc != KV_OK) {
			fprintf(stderr, "kv-resize-bench: put %" PRIu64 ": %s\n",
			        i, kv_strerror(rc));
			kv_close(kv);
			kv_destroy(name);
			return 2;
		}
		if ((i + 1) % (keys / 10 ? keys / 10 : 1) == 0)
			fprintf(stderr, "\rloading: %3.0f %%",
			        100.0 * (double)(i + 1) / (double)keys);
	}
	fprintf(stderr, "\n");
	struct kv_stats before, after;
	kv_stats(kv, &before);

	struct shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
	                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 2;
	pid_t pids[9];
	int np = 0;
	for (int i = 0; i < nreaders; i++) {
		pid_t p = fork();
		if (p == 0)
			reader(sh, i, name, i % 2 == 1, keys, vlen);
		pids[np++] = p;
	}
	pid_t wp = fork();
	if (wp == 0)
		writer(sh, name, keys, vlen);
	pids[np++] = wp;
	while (atomic_load(&sh->ready) < (uint64_t)np)
		sleep_s(0.01);
	fprintf(stderr, "steady state (1 s)...\n");
	sleep_s(1.0);
	atomic_store(&sh->phase, 1);
	uint64_t t0 = now_ns();
	rc = kv_resize(kv, to);
	uint64_t t1 = now_ns();
	atomic_store(&sh->phase, 2);
	fprintf(stderr, "resized (%s); after (1 s)...\n", kv_errname(rc));
	sleep_s(1.0);
	atomic_store(&sh->phase, 3);
	for (int i = 0; i < np; i++)
		waitpid(pids[i], NULL, 0);
	kv_stats(kv, &after);
	int crc = kv_check(kv, NULL, NULL);

	uint64_t hist[NBINS] = {0}, maxb = 0, maxd = 0, maxa = 0, gets = 0,
	         errors = 0;
	for (int i = 0; i < nreaders; i++) {
		for (unsigned b = 0; b < NBINS; b++)
			hist[b] += sh->r[i].hist[b];
		if (sh->r[i].max_ns[0] > maxb)
			maxb = sh->r[i].max_ns[0];
		if (sh->r[i].max_ns[1] > maxd)
			maxd = sh->r[i].max_ns[1];
		if (sh->r[i].max_ns[2] > maxa)
			maxa = sh->r[i].max_ns[2];
		gets += sh->r[i].gets[0] + sh->r[i].gets[1] + sh->r[i].gets[2];
		errors += sh->r[i].errors;
	}
	struct {
		const char *what;
		double value;
		const char *unit;
	} rows[] = {
		{"keys", (double)keys, ""},
		{"size before", (double)before.map_size / (1 << 20), "MiB"},
		{"size after", (double)after.map_size / (1 << 20), "MiB"},
		{"buckets before", (double)before.buckets, ""},
		{"buckets after", (double)after.buckets, ""},
		{"resize total", (double)(t1 - t0) / 1e6, "ms"},
		{"longest get before", (double)maxb / 1e3, "us"},
		{"longest get during", (double)maxd / 1e3, "us"},
		{"longest get after", (double)maxa / 1e3, "us"},
		{"get p99 during (bin)", quantile(hist, 0.99) / 1e3, "us"},
		{"get p99.9 during (bin)", quantile(hist, 0.999) / 1e3, "us"},
		{"reader gets", (double)gets, ""},
		{"reader errors", (double)errors, ""},
		{"longest put (writer stall)", (double)sh->put_max_ns / 1e6, "ms"},
		{"writer puts", (double)sh->puts, ""},
		{"writer errors", (double)sh->put_errors, ""},
		{"kv_check after (0 = sound)", (double)crc, ""},
	};
	printf("kv-resize-bench: %d reader processes (every other one "
	       "read-only), 1 paced writer; kv_resize: %s\n",
	       nreaders, kv_errname(rc));
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
		printf("  %-28s %14.3f %s\n", rows[i].what, rows[i].value,
		       rows[i].unit);
	if (csv != NULL) {
		FILE *f = fopen(csv, "w");
		if (f != NULL) {
			fprintf(f, "metric,value,unit\n");
			for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
				fprintf(f, "%s,%.3f,%s\n", rows[i].what,
				        rows[i].value, rows[i].unit);
			fclose(f);
		}
	}
	kv_close(kv);
	kv_destroy(name);
	return rc == KV_OK && crc == KV_OK && errors == 0 ? 0 : 1;
}
