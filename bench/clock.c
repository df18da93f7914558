/*
 * clock.c - timestamps for kv-bench.
 *
 * Throughput is wall time over operation count, from CLOCK_MONOTONIC read
 * once per batch of operations. Latency percentiles come from a sample:
 * every 64th operation is bracketed by two cheap stamps. On x86-64 these
 * are the TSC (this code requires no more than constant_tsc, which every
 * x86-64 CPU of the last decade and every KVM guest has), fenced so the
 * operation cannot leak out of the bracket, and converted to nanoseconds by
 * a rate measured against CLOCK_MONOTONIC at start-up. The cost of an empty
 * bracket is measured too and subtracted from every sample, so a sampled
 * latency is the operation's own time.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

static double ticks_per_ns = 1.0;
static double overhead_ns;
static double resolution_ns;

uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bench_cpu_ns(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

void bench_clock_init(void)
{
#if defined(__x86_64__)
	/* Rate: 50 ms of TSC against the monotonic clock, median of three
	 * (a preemption between two adjacent reads spoils one try at most). */
	double r[3];
	for (int t = 0; t < 3; t++) {
		uint64_t n0 = bench_now_ns(), c0 = bench_ticks_begin();
		while (bench_now_ns() - n0 < 50000000u)
			;
		uint64_t c1 = bench_ticks_end(), n1 = bench_now_ns();
		r[t] = (double)(c1 - c0) / (double)(n1 - n0);
	}
	double lo = fmin(r[0], fmin(r[1], r[2]));
	double hi = fmax(r[0], fmax(r[1], r[2]));
	double best = r[0] + r[1] + r[2] - lo - hi;
	ticks_per_ns = best;
#endif
	/* Overhead: the median of many empty brackets. */
	enum { N = 4001 };
	uint64_t *d = malloc(N * sizeof *d);
	if (d == NULL)
		return;
	for (int i = 0; i < N; i++) {
		uint64_t a = bench_ticks_begin();
		uint64_t b = bench_ticks_end();
		d[i] = b - a;
	}
	qsort(d, N, sizeof *d, cmp_u64);
	overhead_ns = (double)d[N / 2] / ticks_per_ns;

	/* Resolution: the smallest step between back-to-back stamps (the
	 * TSC of some AMD parts advances in steps of ~10 ns). */
	uint64_t step = UINT64_MAX, prev = bench_ticks_begin();
	for (int i = 0; i < N; i++) {
		uint64_t t = bench_ticks_begin();
		if (t != prev && t - prev < step)
			step = t - prev;
		prev = t;
	}
	resolution_ns = step == UINT64_MAX ? 0 : (double)step / ticks_per_ns;
	free(d);
}

const char *bench_clock_name(void)
{
#if defined(__x86_64__)
	return "rdtsc";
#else
	return "clock_gettime";
#endif
}

double bench_ticks_per_ns(void)
{
	return ticks_per_ns;
}

double bench_timer_resolution_ns(void)
{
	return resolution_ns;
}

double bench_timer_overhead_ns(void)
{
	return overhead_ns;
}

int bench_samples_init(struct bench_samples *s)
{
	s->n = 0;
	s->t = malloc(BENCH_SAMPLE_MAX * sizeof *s->t);
	return s->t ? 0 : -1;
}

void bench_samples_free(struct bench_samples *s)
{
	free(s->t);
	s->t = NULL;
	s->n = 0;
}

static double at_rank(const uint64_t *t, size_t n, double q)
{
	size_t i = (size_t)ceil(q * (double)n);
	if (i > 0)
		i--;
	if (i >= n)
		i = n - 1;
	double ns = (double)t[i] / ticks_per_ns - overhead_ns;
	return ns > 0 ? ns : 0;
}

void bench_percentiles_of(uint64_t *t, size_t n, struct bench_result *r)
{
	if (n == 0) {
		r->p50_ns = r->p99_ns = r->p999_ns = NAN;
		return;
	}
	qsort(t, n, sizeof *t, cmp_u64);
	r->p50_ns = at_rank(t, n, 0.50);
	r->p99_ns = at_rank(t, n, 0.99);
	r->p999_ns = at_rank(t, n, 0.999);
}

void bench_percentiles(struct bench_samples *s, struct bench_result *r)
{
	bench_percentiles_of(s->t, s->n < BENCH_SAMPLE_MAX ? s->n
	                                                    : BENCH_SAMPLE_MAX,
	                     r);
}
