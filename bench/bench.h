/*
 * bench.h - the pieces of kv-bench that every mode shares: the clock, the
 * key sets, the timed loop's results, the report writer and the memory
 * yardstick. Private to bench/.
 *
 * A measurement is a `struct bench_result`: one row of the table and of the
 * CSV. Modes (single process, reader processes, peer stores) produce rows
 * and hand them to report.c; they never print figures themselves, so every
 * mode's output, kv-bench's and peer-bench's alike, has the same columns.
 */
#ifndef KV_BENCH_H
#define KV_BENCH_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ------------------------------------------------------------------------
 * clock.c: time. bench_ticks() is the cheap timestamp used around sampled
 * operations (the TSC on x86-64, calibrated against CLOCK_MONOTONIC;
 * clock_gettime elsewhere); bench_now_ns() is CLOCK_MONOTONIC, used for
 * phase durations.
 */
uint64_t bench_now_ns(void);
uint64_t bench_cpu_ns(void); /* CPU time of this process (all threads) */
void bench_clock_init(void);
const char *bench_clock_name(void);
double bench_ticks_per_ns(void);
double bench_timer_overhead_ns(void); /* subtracted from every sample */
double bench_timer_resolution_ns(void);

#if defined(__x86_64__)
static inline uint64_t bench_ticks_begin(void)
{
	__builtin_ia32_lfence(); /* earlier ops issue before the stamp */
	return __builtin_ia32_rdtsc();
}

static inline uint64_t bench_ticks_end(void)
{
	unsigned aux;
	uint64_t t = __builtin_ia32_rdtscp(&aux); /* waits for the op */
	__builtin_ia32_lfence();
	return t;
}
#else
static inline uint64_t bench_ticks_begin(void)
{
	return bench_now_ns();
}

static inline uint64_t bench_ticks_end(void)
{
	return bench_now_ns();
}
#endif

/* Latency samples, in ticks. Every BENCH_SAMPLE_EVERY-th operation of a
 * timed loop is stamped on its own; the others run back to back, so the
 * stamps cost about 1/64 of a timer pair per op. When the array is full,
 * new samples overwrite the oldest. */
#define BENCH_SAMPLE_EVERY 64u
#define BENCH_SAMPLE_MAX (1u << 20)

struct bench_samples {
	uint64_t *t; /* BENCH_SAMPLE_MAX entries */
	size_t n;    /* samples taken (may exceed BENCH_SAMPLE_MAX) */
};

int bench_samples_init(struct bench_samples *s);
void bench_samples_free(struct bench_samples *s);

static inline void bench_sample(struct bench_samples *s, uint64_t ticks)
{
	s->t[s->n++ % BENCH_SAMPLE_MAX] = ticks;
}

/* ------------------------------------------------------------------------
 * One row of results. Latencies are NaN when a phase samples none.
 */
#define BENCH_NAME_MAX 32

struct bench_result {
	char phase[BENCH_NAME_MAX]; /* "get-hit", "mem-chase", ... */
	char mode[BENCH_NAME_MAX];  /* "single", "readers", "redis", ... */
	char unit[8];               /* "op", or "line" for memory rows */
	uint64_t keys;              /* keys in the store measured */
	unsigned procs;             /* processes that ran it */
	uint64_t ops;               /* operations (or accesses) */
	double secs;                /* wall time of the timed loop */
	double p50_ns, p99_ns, p999_ns;
	uint64_t errors;            /* unexpected statuses */
	double cpu_secs;            /* CPU time the processes spent in the
	                             * loop (0: not measured): with secs and
	                             * procs it says whether they had their
	                             * cores to themselves */
};

/* Fill r's percentiles from s (sorts s in place). */
void bench_percentiles(struct bench_samples *s, struct bench_result *r);
/* The same from any array of n samples in ticks (sorted in place). */
void bench_percentiles_of(uint64_t *t, size_t n, struct bench_result *r);

/* ------------------------------------------------------------------------
 * report.c: the table on stdout, the CSV file, progress on stderr.
 */
struct bench_report {
	const char *prog;      /* progress prefix; NULL: "kv-bench" */
	FILE *csv;             /* NULL: table only */
	bool quiet;            /* no progress at all */
	bool tty;              /* stderr is a terminal: show percentages */
	unsigned key_size, value_size;
};

void bench_report_header(struct bench_report *rep);
void bench_report_row(struct bench_report *rep, const struct bench_result *r);
void bench_progress_phase(const struct bench_report *rep, const char *phase,
                          const char *what);
void bench_progress_pct(const struct bench_report *rep, const char *phase,
                        uint64_t done, uint64_t total);
void bench_progress_done(const struct bench_report *rep);
double bench_ops_per_s(const struct bench_result *r);
/* CPU time over wall time x procs, in [0, 1]; -1 when not measured. */
double bench_cpu_share(const struct bench_result *r);
/* A timed row whose processes had less than min_cpu of their CPUs (other
 * processes ran): on a shared machine, measure it again (up to
 * BENCH_TRIES in all) rather than report someone else's load. */
#define BENCH_TRIES 3
bool bench_contended(const struct bench_result *r, double min_cpu);
double bench_ns_per_op(const struct bench_result *r);

/* ------------------------------------------------------------------------
 * keys.c: key sets. Key i is "k:" followed by i in decimal, zero-padded to
 * the key size. Keys [0, n) are stored; keys [n, 2n) are the absent ones
 * a miss looks up, built the same way so that they cost the same to hash.
 *
 * A keyset is a sequence of formatted keys, one every `stride` bytes,
 * read in order by a timed loop (so neither the RNG nor formatting is
 * measured, and the keys stream through the cache sequentially).
 */
struct bench_keyset {
	char *buf;        /* count * stride bytes */
	size_t count;
	size_t stride;    /* key size rounded up to 8 */
	unsigned klen;
};

/* Shortest key size that can name keys [0, 2n). */
unsigned bench_key_min(uint64_t n);

/* Keys first, first+1, ..., first+count-1, in that order. */
int bench_keys_seq(struct bench_keyset *ks, unsigned klen, uint64_t first,
                   size_t count);

/* How many random keys to draw ahead for a key space of n: between 64Ki
 * and 1Mi, at most 32 MiB of keys. kv-bench and peer-bench both use it,
 * so they stream the same keys. */
size_t bench_ring_size(uint64_t n, unsigned klen);

/* count keys drawn uniformly, with replacement, from [first, first+n). */
int bench_keys_random(struct bench_keyset *ks, unsigned klen, uint64_t first,
                      uint64_t n, size_t count, uint64_t seed);

/* Keys [0, n) in a random order (each once). */
int bench_keys_shuffled(struct bench_keyset *ks, unsigned klen, uint64_t n,
                        uint64_t seed);

void bench_keys_free(struct bench_keyset *ks);

static inline const char *bench_key(const struct bench_keyset *ks, size_t i)
{
	return ks->buf + i * ks->stride;
}

/* splitmix64: a small, fast, good-enough generator. */
static inline uint64_t bench_rand(uint64_t *state)
{
	uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

__extension__ typedef unsigned __int128 bench_u128;

/* Uniform in [0, n) without division (Lemire's multiply-shift). */
static inline uint64_t bench_below(uint64_t *state, uint64_t n)
{
	return (uint64_t)(((bench_u128)bench_rand(state) * n) >> 64);
}

/* ------------------------------------------------------------------------
 * memlat.c: the memory yardstick for a buffer of a given size, laid out as
 * the store is (a POSIX shared-memory object, so the same page size and
 * the same TLB behaviour as a store in /dev/shm).
 *
 *   chase: a random cyclic permutation of the buffer's cache lines, each
 *          holding the offset of the next; one dependent access at a time.
 *   indep: random lines whose addresses do not depend on earlier loads, so
 *          the core overlaps as many misses as it can.
 * huge: back the buffer with 2 MiB pages, as a store made with
 * KV_CREATE_HUGE (the size rounds up to them).
 */
int bench_memlat(uint64_t bytes, bool huge, double secs, uint64_t seed,
                 const volatile sig_atomic_t *stop,
                 struct bench_result *chase, struct bench_result *indep,
                 char *err, size_t errlen);

/* ------------------------------------------------------------------------
 * team.c: a team of worker processes that start together.
 *
 * The first nfg members are the foreground: each is pinned to CPU
 * (its index % the CPUs this process may use) and runs for as long as it
 * decides (a timed loop of --seconds). The nbg members after them are the
 * background (a paced writer): unpinned, they run until the foreground is
 * done and bench_team_stopping() turns true. Every member does its set-up
 * (attach, connect, build its keys, warm up), then calls bench_team_start()
 * and waits there until all are ready, so the timed loops overlap fully.
 *
 * Results come back through a shared anonymous mapping: a struct
 * bench_member and BENCH_SAMPLE_MAX latency samples per member. A worker
 * runs in a forked child that leaves by _exit(): no atexit handler, no
 * stdio flush, no store destroyed twice.
 */
struct bench_member {
	int cpu;           /* pinned to this CPU, or -1 */
	int status;        /* the worker's return: 0 = ok */
	uint64_t ops;      /* operations done in the timed loop */
	uint64_t errors;   /* unexpected statuses */
	double secs;       /* wall time of the timed loop */
	uint64_t nsamples; /* latency samples taken (may exceed the array) */
	double cpu_secs;   /* CPU time from the start to the worker's end */
	uint64_t cpu0_ns;  /* CPU time at the start (internal) */
	char err[160];     /* why the worker failed, when it did */
};

struct bench_team;

/* A worker: set up, bench_team_start(), run, fill m. smp is this member's
 * sample array (in the shared mapping). Returns 0 on success. */
typedef int (*bench_worker_fn)(void *arg, unsigned idx, struct bench_team *t,
                               struct bench_member *m,
                               struct bench_samples *smp);

struct bench_team *bench_team_create(unsigned nmembers);
void bench_team_destroy(struct bench_team *t);

/* Run nfg foreground members of fg and nbg background members of bg
 * (bg may be NULL when nbg is 0). Returns 0 when every member returned 0;
 * else -1 with a message in err. stop is the caller's signal flag: when it
 * turns true the members are sent SIGTERM (they share the handler that
 * sets it) and the run ends early. */
int bench_team_run(struct bench_team *t, unsigned nfg, bench_worker_fn fg,
                   void *fgarg, unsigned nbg, bench_worker_fn bg, void *bgarg,
                   const volatile sig_atomic_t *stop, char *err,
                   size_t errlen);

/* In a worker: set-up is done; wait for the others. 0 = go, -1 = the run
 * was called off (leave without measuring). */
int bench_team_start(struct bench_team *t);

/* In a background worker: true once the foreground is done. */
bool bench_team_stopping(const struct bench_team *t);

const struct bench_member *bench_team_member(const struct bench_team *t,
                                             unsigned i);

/* r gets the sum of members [first, first+n): ops, errors and CPU time
 * added, secs the longest, percentiles over all their samples merged;
 * procs = n. */
void bench_team_sum(const struct bench_team *t, unsigned first, unsigned n,
                    struct bench_result *r);

/* r gets member i alone (procs 1). */
void bench_team_one(const struct bench_team *t, unsigned i,
                    struct bench_result *r);

/* CPUs this process may run on. */
unsigned bench_ncpus(void);

/* Before measuring a contended row again: wait until the machine's CPUs
 * are idle (under 10 % busy over half a second, from /proc/stat), for at
 * most max_secs, and for at most budget_secs over the whole process.
 * Returns true when the machine went idle. */
bool bench_wait_quiet(double max_secs, double budget_secs,
                      const volatile sig_atomic_t *stop);

/* ------------------------------------------------------------------------
 * args.c: option values shared by kv-bench and peer-bench.
 */
int bench_parse_u64(const char *s, uint64_t *out);

/* A list of counts: "2", "1,2,4" or "1-4" (and mixes: "1-2,8"), each in
 * [lo, hi], at most max of them. Returns how many, or -1. */
int bench_parse_counts(const char *s, unsigned lo, unsigned hi,
                       unsigned *out, unsigned max);

#endif /* KV_BENCH_H */
