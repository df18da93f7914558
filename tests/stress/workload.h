/*
 * workload.h - what the stress and kill-loop tests share: self-describing
 * values, the writer and reader loops, and forked children that are always
 * killed and reaped by pid.
 *
 * Values
 * ------
 * Every value a stress test stores describes itself, so any reader can
 * tell a whole, correct value from a torn one, a stale one or another
 * key's bytes without knowing what was written:
 *
 *   0x00  u32 magic      SW_MAGIC
 *   0x04  u32 key        key id (the key's name is derived from it)
 *   0x08  u32 writer     writer id (stress) or slot (kill loop)
 *   0x0c  u32 len        length of the whole value in bytes
 *   0x10  u64 seq        the writer's operation counter at this put
 *   0x18  u64 check      XXH64 of the payload, seeded with XXH64 of 0..0x18
 *   0x20  payload        len - 32 bytes, a stream derived from the fields
 *
 * So the smallest value is SW_VMIN (32) bytes.
 *
 * Keys
 * ----
 * Key ids 0 .. nshared-1 are shared: any writer puts and deletes them.
 * Then each writer w owns npriv private ids, SW_PRIV(p, w, i), that no
 * other writer touches; the writer keeps the last acknowledged state of
 * each in its own memory, which the test compares with the store at the
 * end. The kill loop uses only private keys (nshared = 0), one writer
 * slot each.
 *
 * Failures
 * --------
 * The loops never call cmocka: they run in forked children and in
 * threads. They return 0, or nonzero with a message (key, what was
 * expected, the bytes seen) in their err buffer; the caller reports it (a
 * child on stderr with a nonzero exit code, a thread to the main thread).
 */
#ifndef KV_STRESS_WORKLOAD_H
#define KV_STRESS_WORKLOAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kv.h"

#define SW_MAGIC 0x6b767374u /* "tsvk" */
#define SW_VMIN 32u          /* header size = smallest value */
#define SW_VMAX 262144u      /* largest value the stress writers put:
                              * several pages, so some values live in
                              * pages of their own (large.c) */
#define SW_KEYMAX 64u        /* longest key name */
#define SW_ERRLEN 4096u

/* Store size for the stress tests (values up to 256 KiB): 64 MiB, or
 * $KV_STRESS_STORE_MB (a small store makes writers meet KV_EFULL). */
uint64_t sw_store_size(void);

/* kv_create flags for a stress store: KV_CREATE_NOEVICT (so that nothing
 * acknowledged may vanish), unless $KV_STRESS_EVICT is 1; *evict says
 * which. */
uint32_t sw_create_flags(bool *evict);

struct sw_vhdr {
	uint32_t magic;
	uint32_t key;
	uint32_t writer;
	uint32_t len;
	uint64_t seq;
	uint64_t check;
};

/* What a run looks like. */
struct sw_params {
	uint32_t nshared;  /* shared key ids 0 .. nshared-1 */
	uint32_t npriv;    /* private keys per writer */
	uint32_t nwriters; /* writer ids 0 .. nwriters-1 */
	uint64_t ttl_long_ms; /* "a few seconds", longer than the run */
	bool evict;        /* the store evicts when full: an acknowledged key
	                    * may vanish, but never come back older */
};

static inline uint32_t sw_nkeys(const struct sw_params *p)
{
	return p->nshared + p->nwriters * p->npriv;
}

/* Private key i of writer w. */
static inline uint32_t sw_priv(const struct sw_params *p, uint32_t w,
                               uint32_t i)
{
	return p->nshared + w * p->npriv + i;
}

/* Index size for a run: as many items as keys, so that the index is
 * about two-thirds full and lookups probe past full buckets, deletes shift
 * keys back, and readers meet both. $KV_STRESS_MAX_ITEMS overrides (0:
 * the library's default, a sparse index). */
uint64_t sw_max_items(const struct sw_params *p);

/* Owner of a key id: a writer, or -1 for a shared key. */
static inline int sw_owner(const struct sw_params *p, uint32_t key)
{
	return key < p->nshared ? -1 : (int)((key - p->nshared) / p->npriv);
}

/* ------------------------------------------------------------------------
 * Random numbers: splitmix64, one state per thread or process.
 */
uint64_t sw_rand(uint64_t *s);
/* Uniform in [lo, hi]. */
uint64_t sw_range(uint64_t *s, uint64_t lo, uint64_t hi);
/* True with probability pct/100. */
bool sw_pct(uint64_t *s, unsigned pct);
/* A seed from $KV_STRESS_SEED, else from the time and pid. */
uint64_t sw_seed(void);

/* ------------------------------------------------------------------------
 * Keys and values
 */

/* The name of key id: "k<id>." plus a filler of id-dependent length
 * (2 .. 40 bytes in all). Returns its length; buf needs SW_KEYMAX. */
size_t sw_key(uint32_t id, char *buf);

/* A random value length: mostly 32 .. 8 KiB, sometimes up to 256 KiB. */
size_t sw_len(uint64_t *rng);

/* Write the value (key, writer, seq) of len bytes (>= SW_VMIN) into buf. */
void sw_encode(void *buf, size_t len, uint32_t key, uint32_t writer,
               uint64_t seq);

/* Check that buf[0..vlen) is a whole value for key: magic, key id, length
 * field == vlen, checksum, payload. On success fills *h and returns 0;
 * otherwise writes why (with a dump of the bytes) into err and returns -1. */
int sw_verify(const void *buf, size_t vlen, uint32_t key, struct sw_vhdr *h,
              char *err, size_t errlen);

/* Append a hex dump of up to n bytes of buf at offset off to err. */
void sw_dump(char *err, size_t errlen, const void *buf, size_t vlen,
             size_t off, size_t n);

/* Monotonic nanoseconds. */
uint64_t sw_now_ns(void);

/* Unsigned value of an environment variable, or dflt. */
uint64_t sw_env_u64(const char *name, uint64_t dflt);

/* ------------------------------------------------------------------------
 * The stress writer
 */

enum sw_pstate {
	SW_ABSENT = 0,  /* last acknowledged op left it absent */
	SW_PRESENT = 1, /* holds (seq, len), no TTL or one longer than the run */
	SW_SHORT = 2,   /* holds (seq, len) with a 1 ms TTL: may have expired */
};

/* The writer's own record of a private key. */
struct sw_priv {
	uint64_t seq;
	uint32_t len;
	uint32_t state; /* enum sw_pstate */
};

struct sw_wstats {
	uint64_t ops, puts, dels, nx, xx, ttl, ttl1, eexist, enotfound, efull;
	uint64_t readback, evicted;
};

struct sw_writer {
	kv_t *kv;
	const struct sw_params *p;
	uint32_t id;
	uint64_t rng;
	_Atomic int *stop;    /* set by the test to end early */
	uint64_t deadline_ns; /* sw_now_ns() at which to stop */
	uint64_t seq;         /* last sequence used */
	struct sw_priv *priv; /* p->npriv records, zero = absent */
	struct sw_wstats st;
	char err[SW_ERRLEN];
};

/* Put, replace and delete random keys until the deadline or *stop.
 * Checks every status against the writer's model of its private keys.
 * Returns 0, or -1 with err set. */
int sw_writer_run(struct sw_writer *w);

/* ------------------------------------------------------------------------
 * The reader
 */

struct sw_rstats {
	uint64_t ops, hits, misses, erange, erange_touched, busy, bytes;
	uint64_t max_get_ns;
	uint64_t slow[3]; /* gets that took over 1, 10, 100 ms */
};

struct sw_reader {
	kv_t *kv;
	const struct sw_params *p;
	uint32_t id;
	bool rdonly;          /* the handle is KV_RDONLY: EBUSY is counted */
	uint64_t rng;
	_Atomic int *stop;
	uint64_t deadline_ns;
	/* Kill loop: every key's writer must be its owner; stress: a private
	 * key's must. */
	uint64_t *last_seq;   /* [nkeys * nwriters] highest seq seen */
	uint8_t *buf;         /* SW_VMAX + 64 bytes */
	struct sw_rstats st;
	char err[SW_ERRLEN];
};

/* Allocate the reader's buffers (0, or -1 if out of memory). */
int sw_reader_init(struct sw_reader *r);
void sw_reader_fini(struct sw_reader *r);

/* Get random keys and verify every value until the deadline or *stop.
 * Returns 0, or -1 with err set. */
int sw_reader_run(struct sw_reader *r);

/* One verified get of key through r (with the too-small-buffer dance).
 * Returns the kv status (KV_OK, KV_ENOTFOUND, KV_EBUSY on a read-only
 * handle) with *h filled on KV_OK, or 1 with r->err set on a violation. */
int sw_get_verified(struct sw_reader *r, uint32_t key, struct sw_vhdr *h);

/* ------------------------------------------------------------------------
 * The end of a run
 */

struct sw_vcount {
	uint64_t present;    /* read back as the last acknowledged put */
	uint64_t absent;     /* absent, as the last acknowledged delete left it */
	uint64_t short_gone; /* last put had a 1 ms TTL and expired */
	uint64_t short_kept; /* last put had a 1 ms TTL and still read back */
	uint64_t evicted;    /* gone from a store that evicts */
};

/* Start kvd on the store (unless $KV_STRESS_KVD is 0): its 10 ms tick
 * recovers dead writers' locks and sweeps expired keys while the workload
 * runs. Returns NULL when not started. */
struct h_proc;
struct h_proc *sw_kvd(const char *store);

/* Stop it with SIGTERM: it must exit 0. Returns 0, or -1 with err set. */
int sw_kvd_stop(struct h_proc *kvd, char *err, size_t errlen);

/* kv_check(kv) with every problem collected into err. On a read-write
 * handle this takes the writer lock (and recovers a dead holder). */
int sw_check(kv_t *kv, char *err, size_t errlen);

/* Compare writer w's private keys in the store with its record priv
 * (npriv entries). Returns 0, or -1 with err set. */
int sw_check_private(kv_t *kv, const struct sw_params *p, uint32_t w,
                     const struct sw_priv *priv, struct sw_vcount *c,
                     char *err, size_t errlen);

/* ------------------------------------------------------------------------
 * Forked children. Every child is registered until reaped; sw_kill_all()
 * (and sw_teardown, a cmocka teardown that also runs h_cleanup) SIGKILLs
 * and reaps whatever is left, by pid. A child gets SIGKILL if the test
 * process dies (PR_SET_PDEATHSIG), so none outlives a crashed test.
 */

/* Fork; the child runs fn(arg) and _exit()s with its return value (it
 * must never return into cmocka). Returns the child's pid. */
pid_t sw_fork(int (*fn)(void *), void *arg);

/* Wait up to timeout_ms for pid; fills *status. On timeout SIGKILLs and
 * reaps it and returns false. */
bool sw_wait(pid_t pid, int timeout_ms, int *status);

/* Non-blocking: reap pid if it has exited (true, *status filled). */
bool sw_poll(pid_t pid, int *status);

/* SIGKILL and reap every registered child. */
void sw_kill_all(void);

int sw_teardown(void **state);

/* "exit 0", "exit 3", "killed by signal 9" for a wait status. */
const char *sw_status_str(int status, char *buf, size_t n);

/* An anonymous shared mapping of n bytes (zeroed), for stop flags and
 * statistics shared with children. Fails the test on error. */
void *sw_shared(size_t n);

#endif /* KV_STRESS_WORKLOAD_H */
