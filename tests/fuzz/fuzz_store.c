/*
 * fuzz_store.c - the store-image fuzzer: open mutated store images and run
 * every kind of operation on them. Any crash, sanitizer report, leak or
 * hang is a finding; so is a broken oracle (below).
 *
 * How it works
 * ------------
 * Once per process two template stores are built in a private directory
 * (file-backed stores of 64 KiB pages): a 3 MiB one
 * with a 3072-bucket index, and a 1.5 MiB one with the smallest index (64
 * buckets) filled until puts evict for want of a slot. The hash seed and
 * the clock are pinned so their bytes are the same in every run. Both hold:
 * big values that filled the arena and forced evictions, small keys of
 * several sizes (some with TTLs, some expired), keys that all share one
 * home bucket (overflow counts, backward shift), long keys, a counter,
 * large items (a long key's, with a piece; one with a page and pieces);
 * then deletes, so pages have free lists and one page is on the free-page
 * list (the colliding keys of the small template sit at the end of the
 * index, so their probes wrap). Their bytes are the templates.
 *
 * Each input is a mode byte, a variant byte and a list of patches. The
 * template is copied into the store file, the patches are applied, and
 * then: optionally a forked child takes the lock (or is killed at a crash
 * point inside a write) and dies; optionally a read-only handle does gets,
 * a scan and kv_check; then a read-write handle runs kv_check, gets, mget,
 * puts (new, replace, NX, XX, CAS, TTL, into every allocator path), deletes,
 * kv_incr, a full kv_scan that reads and deletes from its callback, the
 * expiry sweep, kv_stats, kv_flush, kv_check again. Every status is
 * collected and checked against the call's documented set.
 *
 * Input format (every byte string is a valid input; a truncated patch is
 * dropped):
 *
 *   mode:u8 variant:u8 patch*
 *
 *   mode  0x01 read-only phase     0x10 kv__recover_locked under kv__lock first
 *         0x02 kv_flush            0x20 clock late: every TTL has expired
 *         0x04 child dies locked   0x40 expiry sweep and kv__maintain
 *         0x08 child dies at a     0x80 no kv_check before the operations
 *              crash point
 *   variant: bit 7 picks the template (0: the main one, 1: a 64-bucket
 *   index, nearly full); bits 0-6 pick keys, sizes and the crash point;
 *   with bit 5 the read-write phase also doubles the store (kv_resize),
 *   and with bits 5 and 6 shrinks it back after (its items moving down),
 *   and a store kv_check called sound must come out sound with every key.
 *
 *   patch = kind:u8 then, by kind % 16 (others are no-ops):
 *     0 RAW    region:u8 rel:u24 len:u8 bytes[len % 33]
 *     1 VAL32  region:u8 rel:u24 vsel:u8 [u64 if vsel == 255]
 *     2 VAL64  same, an aligned 8-byte word
 *     3 JENT   idx:u16 region:u8 rel:u24 w:u8 vsel:u8 [u64]: journal entry
 *              idx % KV_LOG_MAX := (target, value); w&1: a 4-byte word;
 *              w&0x80: a wild target offset
 *     4 JHEAD  state:u8 n:u16: journal state and entry count, raw
 *     5 ODD    bucket:u16: make a bucket's sequence number odd
 *     6 ADD64  region:u8 rel:u24 delta:i8: add to an aligned word
 *     7 ADD32  same for a 4-byte word
 *     8 COPY   region:u8 rel:u24 region:u8 rel:u24 len:u8: copy bytes of
 *              the image (e.g. a slot word into another slot)
 *     9 LOCK   field:u8 lsel:u8 [u64 if lsel == 255]: a field of the writer
 *              lock or of what its holder is judged by (field % 16: the
 *              mutex's lock word, count, owner, nusers, kind, spins, robust
 *              list links; the lock record's tid, start time and pid
 *              namespace; the boot tag, the repair word, the life word,
 *              kvd's pid and beat) := a value that means something there
 *              (lsel < 32, lock_value(): this thread, the fork server,
 *              which is alive and maps the store, a thread that cannot
 *              exist, the owner-died and waiters bits, glibc's owner
 *              marks, the mutex kind libkv makes and damaged ones, start
 *              times, this boot and another, pid namespaces, repair words);
 *              else vsel as above. Threads are resolved when the input
 *              runs, so an input means the same in every process.
 *    10 LATER  with a dying writer (mode 0x04 or 0x08): the patches after
 *              this one are applied after it died, to the store it left (a
 *              half-committed journal, then a lock as a reboot, a live
 *              holder or damage leaves it); the writer's own kv_check
 *              oracle is then skipped. Without one, a no-op.
 *   region % 14 (rel is taken modulo its size; multi-byte fields are
 *   little-endian): 0 header (0x000-0x400), 1 header writer counters,
 *   2 class table, 3 journal head, 4 the first 64 journal entries,
 *   5 reader counters, 6 the whole index, 7 the 9 buckets from the one
 *   before the colliding keys' home (wrapping), 8 the page table, 9 the
 *   first 4 arena pages,
 *   10 a live item (rel >> 8 picks it), 11 a free chunk (same), 12 the
 *   whole file, 13 the whole arena.
 *   vsel picks an interesting value: small and boundary integers, the
 *   geometry's own numbers (npages, nbuckets, arena_off, arena_end, ...),
 *   offsets of live items and free chunks, page links.
 *
 * Every byte is fair game, the mutex (0x80-0xc0) and the words around it
 * included: libkv must judge a lock it cannot take (a live holder, one
 * gone, damaged bytes), repair what it can and give up on the rest within
 * its bound. A damaged lock makes writes wait their whole bound (1.5 s);
 * that wait, like every other one in libkv, runs in virtual time here
 * (wrap.c), so an input still takes milliseconds.
 *
 * Oracles beyond "no crash": every call ends within 2 s (KVFUZZ_CALL_MS)
 * of the virtual monotonic clock, which counts every wait libkv asked for
 * at its full length (see tick()); every status is one the call documents
 * in kv.h (a mismatch is logged once per call and code, fatal with
 * KVFUZZ_STRICT=1);
 * a get that succeeds fits the caller's buffer; the writer lock is never
 * left held after a call; a scan finishes in nbuckets calls; and when
 * kv_check called the store sound before the operations, then every put
 * reads back, every delete is gone, an increment reads back, a successful
 * flush leaves no item, a forked writer's death leaves it sound, and
 * kv_check still calls it sound at the end. To steer libFuzzer towards
 * damage the checker cannot see, each kind of patch that leaves the store
 * sound bumps an extra coverage counter.
 *
 * The read path deliberately reads bytes that a concurrent writer may be
 * changing; here there is one process and no concurrency.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/futex.h>

#include "daemon.h"
#include "fuzz_store.h"
#include "kv_internal.h"
#include "lock_posix.h"

#define T0 UINT64_C(1700000000000)        /* template clock, ms */
#define T_RUN (T0 + 60000)                /* fuzz clock: short TTLs expired */
#define T_LATE (T0 + UINT64_C(100000000)) /* every TTL expired */
#define FIXED_SEED UINT64_C(0x6b7666757a7a3031)

#define STORE_SIZE (3u << 20)
#define MAX_VALUE 90000u /* a page and pieces (format.h, kv__split) */
#define SMALL_MAX 4096u /* the other values */

/* Where the value table (vsel) keeps its kinds of value. */
#define VSEL_ITEMS 61  /* vsel 61 + j: the offset of live item j */
#define VSEL_FREES 160 /* vsel 160 + j: the offset of free chunk j */
#define VSEL_LINKS 200 /* vsel 200 + j: page link j (page j - 1) */


enum {
	M_RDONLY = 0x01,
	M_FLUSH = 0x02,
	M_FORKLOCK = 0x04,
	M_FORKCRASH = 0x08,
	M_RECOVER = 0x10,
	M_LATE = 0x20,
	M_SWEEP = 0x40,
	M_NOCHECK = 0x80,
};

/* ------------------------------------------------------------------------
 * Keys of the template. Names are derived from indices, so the fuzz
 * sequence can name keys that are live, deleted, expired or never put.
 */
#define NSMALL 160
#define NMED 24
#define NCOLL 24  /* colliding keys put into the template */
#define NSPARE 8  /* colliding keys never put */
#define NBIG_MAX 2000
#define FULL_VLEN 1800 /* the class whose one page is full */

struct key {
	char b[32];
	size_t n;
};

static char long1[300], long2[KV_MAX_KEY];

static struct key mk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static struct key mk(const char *fmt, ...)
{
	struct key k;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(k.b, sizeof k.b, fmt, ap);
	va_end(ap);
	k.n = (size_t)n;
	return k;
}

static struct key small_key(unsigned i) { return mk("s%03u", i % NSMALL); }
static struct key med_key(unsigned i) { return mk("m%02u", i % NMED); }

static size_t small_vlen(unsigned i)
{
	static const size_t v[] = {1, 8, 20, 40, 60};
	return v[i % 5];
}

/* Value bytes: a pattern of the key, so a value names its key. */
static void fill_value(uint8_t *v, size_t n, const void *key, size_t klen)
{
	const uint8_t *k = key;
	for (size_t i = 0; i < n; i++)
		v[i] = (uint8_t)(k[i % klen] + i / klen);
}

/* ------------------------------------------------------------------------
 * State of the process: the templates and what we know about their
 * layout. Template 0 is the main one (3 MiB, 3072 buckets); template 1 has
 * the smallest index (64 buckets) over a 1.5 MiB store, nearly full, so
 * probes wrap around the end of the index and puts find no free slot on
 * their path (eviction on the path).
 */
#define NTEMPLATES 2

struct tmpl {
	char path[160];
	int fd;
	uint8_t *map; /* our own mapping of the store file */
	uint8_t *bytes;
	size_t size;
	/* Geometry (trusted: we made it). */
	uint64_t index_off, nbuckets, ptab_off, arena_off, arena_end, npages;
	uint32_t page_size, nclasses;
	uint64_t coll_home;
	struct key coll[NCOLL + NSPARE];
	unsigned nbig;
	uint64_t items[512];
	size_t nitems;
	uint64_t frees[256];
	size_t nfrees;
	uint64_t vals[256];
};

static struct tmpl *T; /* the template of the input being run */

static struct {
	bool ready;
	char dir[128];
	struct tmpl t[NTEMPLATES];
	/* Totals. */
	struct fuzz_totals tot;
	uint64_t undoc_seen[32]; /* per call: bit per -code already logged */
} F;

/* The fork server (see fork_phase). */
static struct {
	pid_t pid;
	int cmd, res; /* our ends of the pipes */
} srv = {0, -1, -1};

/* With a sanitizer runtime, print where we are before aborting (ASan does
 * not report an abort() by default). */
void __sanitizer_print_stack_trace(void) __attribute__((weak));
void fuzz_stack(void)
{
	if (__sanitizer_print_stack_trace != NULL)
		__sanitizer_print_stack_trace();
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "fuzz-store: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	fuzz_stack();
	abort();
}

/* A finding that is not a crash: print it and abort, so libFuzzer (or the
 * replay driver) records the input. */
#define FINDING(...)                                                           \
	do {                                                                   \
		fprintf(stderr, "fuzz-store: FINDING: ");                      \
		fprintf(stderr, __VA_ARGS__);                                  \
		fprintf(stderr, "\n");                                         \
		fuzz_stack();                                                  \
		abort();                                                       \
	} while (0)

/* ------------------------------------------------------------------------
 * Status bookkeeping: each call's documented statuses (include/kv.h).
 */
enum call {
	C_OPEN, C_GET, C_MGET, C_PUT, C_DEL, C_INCR, C_FLUSH, C_SCAN, C_TTL,
	C_STATS, C_CLASS, C_CHECK, C_SWEEP, C_MAINTAIN, C_LOCK, C_RECOVER,
	C_RESIZE, C_NCALLS
};
static const char *call_name[C_NCALLS] = {
	"kv_open", "kv_get", "kv_mget entry", "kv_put", "kv_del", "kv_incr",
	"kv_flush", "kv_scan", "kv_ttl", "kv_stats", "kv_class_stats",
	"kv_check", "kv__sweep", "kv__maintain", "kv__lock", "kv__recover_locked",
	"kv_resize"};

#define B(code) (UINT64_C(1) << (unsigned)(-(code)))
/* Each call's list in include/kv.h. */
static uint64_t documented_call(enum call c)
{
	const uint64_t ok = 1;
	switch (c) {
	case C_OPEN:
		return ok | B(KV_ENAME) | B(KV_ENOSTORE) | B(KV_EPERM) |
		       B(KV_EVERSION) | B(KV_ENOTSTORE) | B(KV_ETRUNCATED) |
		       B(KV_ECORRUPT) | B(KV_ENOTREADY) | B(KV_EWORLD) |
		       B(KV_ESYMLINK) | B(KV_EDESTROYED) | B(KV_EBUSY) |
		       B(KV_ENOFD) | B(KV_ENOMEM) | B(KV_EINVAL) | B(KV_ESYS);
	case C_GET:
	case C_MGET:
		return ok | B(KV_ENOTFOUND) | B(KV_ERANGE) | B(KV_EKEYSIZE) |
		       B(KV_EINVAL) | B(KV_ECORRUPT) | B(KV_EBUSY) |
		       B(KV_ESYS);
	case C_PUT:
		return ok | B(KV_EEXIST) | B(KV_ENOTFOUND) | B(KV_ECHANGED) |
		       B(KV_EKEYSIZE) | B(KV_EVALSIZE) | B(KV_EFULL) |
		       B(KV_ERDONLY) | B(KV_EINVAL) | B(KV_ECORRUPT) |
		       B(KV_EBUSY) | B(KV_ESYS);
	case C_DEL:
		return ok | B(KV_ENOTFOUND) | B(KV_EKEYSIZE) | B(KV_ERDONLY) |
		       B(KV_EINVAL) | B(KV_ECORRUPT) | B(KV_EBUSY) |
		       B(KV_ESYS);
	case C_INCR:
		return ok | B(KV_ENOTNUM) | B(KV_EOVERFLOW) | B(KV_EKEYSIZE) |
		       B(KV_EVALSIZE) | B(KV_ERDONLY) | B(KV_EFULL) |
		       B(KV_EINVAL) | B(KV_ECORRUPT) | B(KV_EBUSY) |
		       B(KV_ESYS);
	case C_FLUSH:
		return ok | B(KV_ERDONLY) | B(KV_EINVAL) | B(KV_ECORRUPT) |
		       B(KV_EBUSY) | B(KV_ESYS);
	case C_SCAN:
		return ok | B(KV_EINVAL) | B(KV_ENOMEM) | B(KV_ECORRUPT) |
		       B(KV_EBUSY);
	case C_TTL:
		return ok | B(KV_ENOTFOUND) | B(KV_EKEYSIZE) | B(KV_EINVAL) |
		       B(KV_ECORRUPT) | B(KV_EBUSY) | B(KV_ESYS);
	case C_STATS:
		return ok | B(KV_EDESTROYED) | B(KV_EINVAL);
	case C_CLASS:
		return ok | B(KV_EINVAL);
	case C_CHECK:
		return ok | B(KV_ECORRUPT) | B(KV_EBUSY) | B(KV_EDESTROYED) |
		       B(KV_EINVAL);
	case C_SWEEP: /* KV_ERDONLY, or a status from taking the lock */
		return ok | B(KV_ERDONLY) | B(KV_EBUSY) | B(KV_ECORRUPT) |
		       B(KV_ESYS);
	case C_MAINTAIN: /* "a negative status if the store is corrupt" */
		return ok | B(KV_ECORRUPT) | B(KV_ENOSTORE);
	case C_RESIZE:
		return ok | B(KV_EFULL) | B(KV_ENOTSUP) | B(KV_ETOOBIG) |
		       B(KV_ETOOSMALL) |
		       B(KV_ENOSPC) | B(KV_ERDONLY) | B(KV_EBUSY) |
		       B(KV_ECORRUPT) | B(KV_ENOMEM) | B(KV_ESYS) |
		       B(KV_EINVAL);
	case C_LOCK:
	case C_RECOVER:
	case C_NCALLS:
		break;
	}
	return ok | B(KV_ECORRUPT) | B(KV_EBUSY) | B(KV_ESYS) | B(KV_ERDONLY);
}

/* And kv.h's conventions: every call on a handle may also answer
 * KV_EDESTROYED. */
static uint64_t documented(enum call c)
{
	uint64_t d = documented_call(c);
	if (c != C_OPEN)
		d |= B(KV_EDESTROYED) | B(KV_ECORRUPT) | B(KV_ETRUNCATED) |
		     B(KV_ETOOBIG) | B(KV_EBUSY) | B(KV_ENOMEM) | B(KV_ESYS);
	return d;
}

static bool strict(void)
{
	static int s = -1;
	if (s < 0) {
		const char *e = getenv("KVFUZZ_STRICT");
		s = e != NULL && e[0] == '1';
	}
	return s == 1;
}

/* ------------------------------------------------------------------------
 * Time. Every call must end within KVFUZZ_CALL_MS (2000) ms of the
 * monotonic clock, which in the fuzz executables is virtual (wrap.c): real
 * time plus every wait libkv asked for (sleeps, lock waits), so a bounded
 * wait costs its whole length here although it runs in microseconds. A
 * call that waits twice, or loops over waits, is a finding. The clock
 * starts at tick() and at every note(); code of the harness between a call
 * and its note() is short.
 */
static uint64_t call_t0;

static uint64_t vnow_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t call_limit_ns(void)
{
	static uint64_t lim;
	if (lim == 0) {
		const char *e = getenv("KVFUZZ_CALL_MS");
		long ms = e != NULL ? strtol(e, NULL, 10) : 0;
		lim = (uint64_t)(ms > 0 ? ms : 2000) * 1000000u;
	}
	return lim;
}

/* KVFUZZ_TRACE=1: print every call, its status and its time. */
static bool trace(void)
{
	static int t = -1;
	if (t < 0)
		t = getenv("KVFUZZ_TRACE") != NULL;
	return t == 1;
}

static void tick(void)
{
	call_t0 = vnow_ns();
}

/* The time check of note(), for kv_mget, whose entries are noted one by
 * one: the whole batch must end within the limit too. */
static void timed_mget(void)
{
	uint64_t now = vnow_ns();
	if (trace())
		fprintf(stderr, "fuzz-store: kv_mget in %.3f ms\n",
		        (double)(now - call_t0) / 1e6);
	if (now - call_t0 > call_limit_ns())
		FINDING("kv_mget took %.3f s; every call must end within %.3f s",
		        (double)(now - call_t0) / 1e9,
		        (double)call_limit_ns() / 1e9);
	call_t0 = now;
}

static int note(enum call c, int rc)
{
	uint64_t now = vnow_ns();
	if (now - call_t0 > call_limit_ns())
		FINDING("%s took %.3f s (returning %s); every call must end "
		        "within %.3f s",
		        call_name[c], (double)(now - call_t0) / 1e9,
		        kv_errname(rc), (double)call_limit_ns() / 1e9);
	if (trace())
		fprintf(stderr, "fuzz-store: %s: %s in %.3f ms\n", call_name[c],
		        kv_errname(rc), (double)(now - call_t0) / 1e6);
	call_t0 = now;
	F.tot.calls++;
	if (rc > 0 || rc < -63 || strcmp(kv_errname(rc), "KV_EUNKNOWN") == 0)
		FINDING("%s returned %d, which is no status at all",
		        call_name[c], rc);
	uint64_t bit = UINT64_C(1) << (unsigned)(-rc);
	if ((documented(c) & bit) == 0) {
		F.tot.undocumented++;
		if (strict())
			FINDING("%s returned %s, which it does not document",
			        call_name[c], kv_errname(rc));
		if (!(F.undoc_seen[c] & bit)) {
			F.undoc_seen[c] |= bit;
			fprintf(stderr,
			        "fuzz-store: note: %s returned %s, which it "
			        "does not document\n",
			        call_name[c], kv_errname(rc));
		}
	}
	return rc;
}

/* The writer lock must never stay held by us once a call has returned.
 * Its word may name this thread through damage alone (a patch can write
 * our tid there), so ask libkv's own judge, which knows whether this
 * thread holds a kv lock. */
static void lock_released(kv_t *kv, const char *after)
{
	const struct kv_hdr *h = kv__hdr(kv);
	uint32_t word = (uint32_t)__atomic_load_n(&h->mutex.__data.__lock,
	                                          __ATOMIC_RELAXED);
	char why[160];
	if ((word & FUTEX_TID_MASK) == kv__gettid() &&
	    kv__judge(kv, word, why, sizeof why) == KV_HOLDER_LIVE &&
	    strstr(why, "held by this thread") != NULL)
		FINDING("the writer lock is still held after %s", after);
}

/* ------------------------------------------------------------------------
 * Building the template.
 */
static void tcheck(int rc, const char *what)
{
	if (rc != KV_OK)
		die("template: %s: %s", what, kv_errname(rc));
}

static void tput(kv_t *kv, const void *k, size_t kl, size_t vl, uint64_t ttl)
{
	static uint8_t v[MAX_VALUE];
	/* Every other length carries client flags, so the template has items
	 * of each header shape (expiry and flags, either, neither). */
	struct kv_put_opts o = {.ttl_ms = ttl};
	if (kl & 1)
		o.client_flags = 0xc0ffee00u | (uint32_t)kl;
	fill_value(v, vl, k, kl);
	tcheck(kv_put(kv, k, kl, v, vl, &o), "put");
}


static void treport(void *ctx, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "fuzz-store: template: %s\n", msg);
}

/* Directories of earlier fuzzers that died without cleaning up (a crash
 * skips atexit): kvfuzz.PID whose process is gone. */
static void remove_stale_dirs(const char *root)
{
	DIR *d = opendir(root);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		unsigned pid;
		char extra;
		if (sscanf(e->d_name, "kvfuzz.%u%c", &pid, &extra) != 1)
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		char p[512];
		for (unsigned t = 0; t < NTEMPLATES; t++) {
			snprintf(p, sizeof p, "%s/%s/store%u", root, e->d_name, t);
			unlink(p);
		}
		snprintf(p, sizeof p, "%s/%s", root, e->d_name);
		rmdir(p);
	}
	closedir(d);
}

static pid_t owner_pid;
static void start_fork_server(void);

static void cleanup(void)
{
	if (getpid() != owner_pid)
		return;
	for (unsigned t = 0; t < NTEMPLATES; t++)
		unlink(F.t[t].path);
	rmdir(F.dir);
}

/* Look up where a key's item is (0 if absent). */
static uint64_t item_of(kv_t *kv, const void *k, size_t kl)
{
	struct kv_read rd = {.buf = NULL, .cap = 0};
	int rc = kv__lookup(kv, k, kl, kv__hash(kv, k, kl), false, &rd);
	return rc == KV_OK || rc == KV_ERANGE ? rd.item : 0;
}

/* A template delete: the small template's full index evicts keys while
 * it is being filled, so a key may be gone already. */
static void tdel(kv_t *kv, const void *k, size_t kl)
{
	int rc = kv_del(kv, k, kl);
	if (rc != KV_OK && !(T != &F.t[0] && rc == KV_ENOTFOUND))
		die("template: del: %s", kv_errname(rc));
}

static void populate(kv_t *kv)
{
	struct kv_hdr *h = kv__hdr(kv);
	unsigned i;

	/* Big values until the arena is full and the class has evicted. */
	for (i = 0; i < NBIG_MAX; i++) {
		struct key k = mk("b%03u", i);
		tput(kv, k.b, k.n, 3000, 0);
		if (atomic_load(&h->evictions) >= 8)
			break;
	}
	if (i == NBIG_MAX)
		die("template: the arena never filled");
	T->nbig = i + 1;

	/* Small and medium keys: their classes take pages from the big
	 * one. Every fourth small key lives an hour, every fourth expires
	 * after a second (before the fuzz clock). */
	for (i = 0; i < NSMALL; i++) {
		struct key k = small_key(i);
		uint64_t ttl = i % 4 == 1 ? 3600000 : i % 4 == 3 ? 1000 : 0;
		tput(kv, k.b, k.n, small_vlen(i), ttl);
	}
	for (i = 0; i < NMED; i++) {
		struct key k = med_key(i);
		tput(kv, k.b, k.n, i % 2 ? 300 : 1000, 0);
	}
	fill_value((uint8_t *)long1, sizeof long1, "L", 1);
	long1[0] = 'L';
	fill_value((uint8_t *)long2, sizeof long2, "K", 1);
	long2[0] = 'K';
	tput(kv, long1, sizeof long1, 100, 0);
	tput(kv, long2, sizeof long2, SMALL_MAX, 0);
	/* A large item of a page, pieces and a rest (large.c). */
	tput(kv, "large", 5, MAX_VALUE, 0);
	tcheck(kv_put(kv, "counter", 7, "41", 2, NULL), "put counter");
	tcheck(kv_put(kv, "notnum", 6, "12a", 3, NULL), "put notnum");

	/* One page of a class filled to the last chunk, so a put of that
	 * class (once the free page is gone) has to evict within it. */
	uint32_t fc = kv__class_for(kv, KV_ITEM_HDR + 3 + FULL_VLEN);
	for (i = 0; i < kv->class_per_page[fc]; i++) {
		struct key k = mk("f%02u", i);
		tput(kv, k.b, k.n, FULL_VLEN, 0);
	}

	/* Keys that share one home bucket: they spill over the next
	 * buckets, so overflow counts and the backward shift matter. */
	uint64_t home = T == &F.t[0] ? kv__home(kv, kv__hash(kv, "c0", 2))
	                              : kv->nbuckets - 2; /* probes wrap */
	unsigned n = 0;
	for (i = 0; n < NCOLL + NSPARE; i++) {
		struct key k = mk("c%u", i);
		if (kv__home(kv, kv__hash(kv, k.b, k.n)) == home)
			T->coll[n++] = k;
	}
	T->coll_home = home;
	for (i = 0; i < NCOLL; i++)
		tput(kv, T->coll[i].b, T->coll[i].n, 8 + i, i % 3 == 0 ? 3600000 : 0);

	/* Deletes: free chunks in pages that stay partial (of every small
	 * value's class, so some are only 4-aligned and keep their link 12
	 * bytes in), backward shifts, and one whole page back on the
	 * free-page list. */
	for (i = 0; i < NSMALL; i += 4) {
		struct key k = small_key(i);
		tdel(kv, k.b, k.n);
	}
	for (i = 0; i < NMED; i += 6) {
		struct key k = med_key(i);
		tdel(kv, k.b, k.n);
	}
	tdel(kv, T->coll[0].b, T->coll[0].n);
	tdel(kv, T->coll[5].b, T->coll[5].n);
	tdel(kv, T->coll[11].b, T->coll[11].n);
	uint64_t page = UINT64_MAX;
	for (i = 0; i < T->nbig; i++) {
		struct key k = mk("b%03u", i);
		uint64_t it = item_of(kv, k.b, k.n);
		if (it == 0)
			continue;
		uint64_t p = (it - kv->arena_off) / kv->page_size;
		if (page == UINT64_MAX)
			page = p;
		if (p == page)
			tdel(kv, k.b, k.n);
	}
	if (atomic_load(&h->free_pages) == 0)
		die("template: no page on the free-page list");

	/* Reads set reference bits; a counter counts. */
	for (i = 0; i < NSMALL; i += 3) {
		struct key k = small_key(i);
		uint8_t buf[64];
		size_t vl;
		(void)kv_get(kv, k.b, k.n, buf, sizeof buf, &vl);
	}
	int64_t res;
	tcheck(kv_incr(kv, "counter", 7, 1, &res), "incr");

	/* The small template: fill the index up to three free slots, so the
	 * puts of an input soon find no free slot on their path. */
	if (T != &F.t[0]) {
		uint64_t slots = kv->nbuckets * KV_SLOTS;
		for (i = 0; atomic_load(&h->items) + 3 < slots && i < 10000; i++) {
			struct key k = mk("z%03u", i);
			tput(kv, k.b, k.n, 1, 0);
		}
	}
}

static void analyse(void)
{
	const uint8_t *t = T->bytes;
	for (uint64_t b = 0; b < T->nbuckets; b++) {
		const struct kv_bucket *bk =
		    (const void *)(t + T->index_off + b * KV_CACHELINE);
		for (unsigned s = 0; s < KV_SLOTS; s++) {
			uint64_t w = atomic_load_explicit(&bk->slot[s],
			                                  memory_order_relaxed);
			if (w != 0 && T->nitems < sizeof T->items / 8)
				T->items[T->nitems++] = KV_SLOT_OFF(w);
		}
	}
	for (uint64_t p = 0; p < T->npages; p++) {
		const struct kv_page *pg =
		    (const void *)(t + T->ptab_off + p * sizeof *pg);
		uint32_t cls = atomic_load(&pg->cls);
		if (cls == KV_PAGE_FREE || cls == KV_PAGE_LARGE)
			continue; /* no chunks (a large page's word: owner) */
		uint64_t c = atomic_load(&pg->free_head);
		for (int guard = 0; c != 0 && guard < 4096; guard++) {
			if (T->nfrees < sizeof T->frees / 8)
				T->frees[T->nfrees++] = c;
			memcpy(&c, t + kv_free_link(c), sizeof c);
		}
	}
	if (T->nitems == 0 || T->nfrees == 0)
		die("template: %zu items, %zu free chunks", T->nitems, T->nfrees);

	/* Interesting values, by vsel. */
	static const uint64_t fixed[] = {
	    0, 1, 2, 3, 7, 8, 0x10, 0x1f, 0x20, 0x3f, 0x40, 0x7f, 0x80, 0xff,
	    0x100, 0xfff, 0x1000, 0xffff, 0x10000, 0x7fffffff, 0x80000000,
	    0xffffffff, UINT64_C(0x100000000), INT64_MAX,
	    UINT64_C(1) << 63, UINT64_MAX, UINT64_MAX - 1};
	size_t n = 0;
	for (; n < sizeof fixed / sizeof fixed[0]; n++)
		T->vals[n] = fixed[n];
	const uint64_t geo[] = {
	    T->npages - 1, T->npages, T->npages + 1, T->nbuckets - 1, T->nbuckets,
	    T->nbuckets + 1, T->nclasses - 1, T->nclasses, T->size, T->size - 8,
	    T->size - 16, T->arena_off, T->arena_off + 8, T->arena_end - 32,
	    T->arena_end - 16, T->arena_end - 8, T->arena_end, T->ptab_off,
	    T->index_off, T->page_size, T->page_size - 1, KV_PAGE_FREE,
	    KV_LOG_MAX, KV_LOG_MAX + 1, MAX_VALUE, MAX_VALUE + 1, KV_MAX_KEY,
	    KV_MAX_KEY + 1, T_RUN, T_RUN - 1, KV_MAX_PROBE, KV_MAX_PROBE + 1,
	    T->arena_off + T->page_size, T->npages * T->page_size};
	for (size_t i = 0; i < sizeof geo / sizeof geo[0]; i++)
		T->vals[n++] = geo[i];
	if (n != VSEL_ITEMS)
		die("the value table starts its items at %zu", n);
	while (n < VSEL_FREES) /* live items, as region 10 numbers them */
		T->vals[n] = T->items[(n - VSEL_ITEMS) % T->nitems], n++;
	while (n < VSEL_LINKS) /* free chunks, as region 11 numbers them */
		T->vals[n] = T->frees[(n - VSEL_FREES) % T->nfrees], n++;
	while (n < 232) /* page links (index + 1) */
		T->vals[n] = (n - VSEL_LINKS) % (T->npages + 1), n++;
	while (n < 255) /* small multiples of 8 */
		T->vals[n] = (n - 232) * 8, n++;
}

/* KVFUZZ_INFO=1: describe the template, for writing seeds by hand. */
static void print_info(void)
{
	fprintf(stderr,
	        "template %s: %zu bytes, index_off %#" PRIx64 ", %" PRIu64
	        " buckets, ptab_off %#" PRIx64 ", arena %#" PRIx64 "-%#" PRIx64
	        ", %" PRIu64 " pages of %u, %u classes, %u big keys, colliding "
	        "home %" PRIu64 ", %zu items, %zu free chunks\n",
	        T->path, T->size, T->index_off, T->nbuckets, T->ptab_off,
	        T->arena_off, T->arena_end, T->npages, T->page_size, T->nclasses,
	        T->nbig, T->coll_home, T->nitems, T->nfrees);
	const struct kv_hdr *h = (const void *)T->bytes;
	fprintf(stderr, "page_bump %" PRIu64 " free_pages %" PRIu64 "\n",
	        (uint64_t)h->page_bump, (uint64_t)h->free_pages);
	for (uint64_t p = 0; p < T->npages; p++) {
		const struct kv_page *pg =
		    (const void *)(T->bytes + T->ptab_off + p * sizeof *pg);
		fprintf(stderr,
		        "page %2" PRIu64 ": cls %3d used %4u bump %4u next %2u "
		        "prev %2u partial %u free_head %#" PRIx64 "\n",
		        p, (int)pg->cls, (unsigned)pg->used, (unsigned)pg->bump,
		        (unsigned)pg->next, (unsigned)pg->prev,
		        (unsigned)pg->partial, (uint64_t)pg->free_head);
	}
	for (uint32_t c = 0; c < T->nclasses; c++) {
		const struct kv_class *k =
		    (const void *)(T->bytes + KV_CLASS_OFF + c * sizeof *k);
		if (k->pages == 0)
			continue;
		fprintf(stderr,
		        "class %2u (%5u B): partial %2" PRIu64 " used %4" PRIu64
		        " pages %" PRIu64 " hand %" PRIu64 "/%" PRIu64
		        " since_move %" PRIu64 "\n",
		        c, h->class_size[c], (uint64_t)k->partial,
		        (uint64_t)k->used, (uint64_t)k->pages, (uint64_t)k->hand,
		        (uint64_t)k->hand_chunk, (uint64_t)k->since_move);
	}
	const struct kv_journal *j =
	    (const void *)(T->bytes + KV_JOURNAL_OFF);
	fprintf(stderr, "journal: state %u n %u (entries of the last write "
	        "stay behind it):\n", (unsigned)j->state, (unsigned)j->n);
	for (unsigned e = 0; e < KV_LOG_MAX && e < 24 && j->ent[e].off; e++)
		fprintf(stderr, "  ent %2u: off %#" PRIx64 "%s val %#" PRIx64
		        "\n", e, j->ent[e].off & ~KV_LOG_W32,
		        (j->ent[e].off & KV_LOG_W32) ? " (32)" : "",
		        j->ent[e].val);
	for (size_t i = 0; i < T->nitems && i < 8; i++)
		fprintf(stderr, "item %zu at %#" PRIx64 "\n", i, T->items[i]);
	for (size_t i = 0; i < T->nfrees && i < 8; i++)
		fprintf(stderr, "free %zu at %#" PRIx64 "\n", i, T->frees[i]);
}

static void build_one(unsigned t, const struct kv_options *o)
{
	T = &F.t[t];
	snprintf(T->path, sizeof T->path, "%s/store%u", F.dir, t);
	kv__set_test_clock(T0);
	kv_t *kv = NULL;
	tcheck(kv_create(T->path, o, &kv), "create");
	kv_close(kv);

	/* Pin the seed so the template (and so every input) means the same
	 * in every process. */
	int fd = open(T->path, O_RDWR | O_CLOEXEC);
	uint64_t seed = FIXED_SEED, created = T0;
	if (fd < 0 ||
	    pwrite(fd, &seed, 8, offsetof(struct kv_hdr, seed)) != 8 ||
	    pwrite(fd, &created, 8, offsetof(struct kv_hdr, created_ms)) != 8)
		die("pin the seed: %s", strerror(errno));
	tcheck(kv_open(T->path, KV_RDWR, &kv), "open");
	populate(kv);
	tcheck(kv_check(kv, treport, NULL), "check");
	T->index_off = kv->index_off;
	T->nbuckets = kv->nbuckets;
	T->ptab_off = kv->ptab_off;
	T->arena_off = kv->arena_off;
	T->arena_end = kv->arena_end;
	T->npages = kv->npages;
	T->page_size = kv->page_size;
	T->nclasses = kv->nclasses;
	T->size = kv->size;
	kv_close(kv);

	T->fd = fd;
	T->map = mmap(NULL, T->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	T->bytes = malloc(T->size);
	if (T->map == MAP_FAILED || T->bytes == NULL)
		die("map the store: %s", strerror(errno));
	memcpy(T->bytes, T->map, T->size);
	analyse();
	if (getenv("KVFUZZ_INFO") != NULL)
		print_info();
}

static void build_template(void)
{
	const char *root = getenv("KVFUZZ_DIR");
	if (root == NULL)
		root = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	remove_stale_dirs(root);
	owner_pid = getpid();
	snprintf(F.dir, sizeof F.dir, "%s/kvfuzz.%d", root, (int)owner_pid);
	for (unsigned t = 0; t < NTEMPLATES; t++) {
		char p[200];
		snprintf(p, sizeof p, "%s/store%u", F.dir, t);
		unlink(p);
	}
	rmdir(F.dir);
	if (mkdir(F.dir, 0700) != 0)
		die("mkdir %s: %s", F.dir, strerror(errno));
	atexit(cleanup);

	struct kv_options o = {
	    .size = STORE_SIZE, .max_value = MAX_VALUE, .flags = KV_CREATE_EXCL};
	build_one(0, &o);
	o.size = STORE_SIZE / 2;
	o.max_items = 100; /* the smallest index: 64 buckets */
	build_one(1, &o);
	F.ready = true;
	start_fork_server();
}

/* ------------------------------------------------------------------------
 * Decoding and applying patches.
 */
struct in {
	const uint8_t *p;
	size_t n;
	bool short_read;
};

static uint64_t take(struct in *in, unsigned bytes)
{
	uint64_t v = 0;
	if (in->n < bytes) {
		in->short_read = true;
		in->n = 0;
		return 0;
	}
	for (unsigned i = 0; i < bytes; i++)
		v |= (uint64_t)in->p[i] << (8 * i);
	in->p += bytes;
	in->n -= bytes;
	return v;
}

/* The offset `rel` names in region r. */
static uint64_t region_off(unsigned r, uint32_t rel)
{
	uint64_t base = 0, len = 1;
	switch (r % 14) {
	case 0: base = 0; len = 0x400; break;
	case 1: base = offsetof(struct kv_hdr, page_bump); len = 0x100; break;
	case 2: base = KV_CLASS_OFF; len = (uint64_t)T->nclasses * 64; break;
	case 3: base = KV_JOURNAL_OFF; len = 0x40; break;
	case 4: base = KV_JOURNAL_OFF + 0x40; len = 64 * 16; break;
	case 5: base = KV_RSTAT_OFF; len = 8 * 64; break;
	case 6: base = T->index_off; len = T->nbuckets * 64; break;
	case 7: { /* buckets home-1 .. home+7, wrapping */
		uint64_t i = (rel % (9 * 64)) / 64;
		uint64_t b = (T->coll_home + T->nbuckets - 1 + i) % T->nbuckets;
		return T->index_off + b * 64 + rel % 64;
	}
	case 8: base = T->ptab_off; len = T->npages * 32; break;
	case 9: base = T->arena_off; len = 4 * (uint64_t)T->page_size; break;
	case 10:
		base = T->items[(rel >> 8) % T->nitems];
		len = 64;
		rel &= 0xff;
		break;
	case 11:
		base = T->frees[(rel >> 8) % T->nfrees];
		len = 32;
		rel &= 0xff;
		break;
	case 12: base = 0; len = T->size; break;
	case 13: base = T->arena_off; len = T->arena_end - T->arena_off; break;
	}
	return base + rel % len;
}

static void poke(uint64_t off, const void *src, size_t n)
{
	const uint8_t *s = src;
	for (size_t i = 0; i < n && off + i < T->size; i++)
		T->map[off + i] = s[i];
}

static uint64_t peek(uint64_t off, size_t n)
{
	uint64_t v = 0;
	if (off + n <= T->size)
		memcpy(&v, T->map + off, n);
	return v;
}

static uint64_t value(struct in *in)
{
	unsigned sel = (unsigned)take(in, 1);
	return sel == 255 ? take(in, 8) : T->vals[sel];
}

/* The LOCK patch: the bytes of the writer lock and of the words libkv
 * judges a holder by, each set to a value that means something to the
 * judge. Values that name threads are resolved when the input runs (this
 * thread, the fork server, a thread that cannot exist), so an input means
 * the same in every process. */
#define MUTEX_OFF(f) (offsetof(struct kv_hdr, mutex) +                         \
                      offsetof(pthread_mutex_t, __data.f))
static const struct {
	uint16_t off;
	uint8_t width;
} lock_fields[16] = {
    {MUTEX_OFF(__lock), 4},   /* 0 the futex word: tid and bits */
    {MUTEX_OFF(__count), 4},  /* 1 */
    {MUTEX_OFF(__owner), 4},  /* 2 glibc's owner, or its marks */
    {MUTEX_OFF(__nusers), 4}, /* 3 */
    {MUTEX_OFF(__kind), 4},   /* 4 type, robust, pshared, elision */
    {MUTEX_OFF(__spins), 4},  /* 5 spins and elision counters */
    {MUTEX_OFF(__list), 8},   /* 6 robust list links */
    {MUTEX_OFF(__list) + 8, 8},                   /* 7 */
    {offsetof(struct kv_hdr, owner_tid), 4},      /* 8 the lock record */
    {offsetof(struct kv_hdr, owner_start), 8},    /* 9 */
    {offsetof(struct kv_hdr, owner_pidns), 4},    /* 10 */
    {offsetof(struct kv_hdr, boot_tag), 8},       /* 11 */
    {offsetof(struct kv_hdr, repair), 8},         /* 12 the repair word */
    {offsetof(struct kv_hdr, life), 8},           /* 13 */
    {offsetof(struct kv_hdr, daemon_pid), 4},     /* 14 */
    {offsetof(struct kv_hdr, daemon_beat), 8},    /* 15 */
};
static_assert(sizeof(pthread_mutex_t) <= 64, "the mutex fits its line");

#define GONE_TID 0x3ffffff0u /* above any pid_max: no such thread */
#define NLOCKV 32

static uint64_t lock_value(unsigned sel)
{
	static uint32_t me, kind;
	static uint64_t start, srv_start, boot;
	static uint32_t pidns;
	if (me == 0) {
		pthread_mutex_t m;
		me = kv__gettid();
		if (kv__thread_start(me, &start) != KV_THREAD_ALIVE)
			start = 0;
		if (srv.pid <= 0 ||
		    kv__thread_start((uint32_t)srv.pid, &srv_start) !=
		        KV_THREAD_ALIVE)
			srv_start = 0;
		boot = kv__boot_tag();
		pidns = kv__pidns();
		memset(&m, 0, sizeof m);
		kv__init_mutex(&m);
		kind = (uint32_t)m.__data.__kind;
	}
	uint32_t srv_tid = (uint32_t)srv.pid;
	switch (sel) {
	case 0: return 0;
	case 1: return me;                       /* this thread */
	case 2: return me | FUTEX_WAITERS;
	case 3: return srv_tid;                  /* live, maps the store */
	case 4: return srv_tid | FUTEX_WAITERS;
	case 5: return GONE_TID;                 /* gone */
	case 6: return GONE_TID | FUTEX_WAITERS;
	case 7: return GONE_TID | FUTEX_OWNER_DIED;
	case 8: return FUTEX_OWNER_DIED;         /* what the kernel leaves */
	case 9: return FUTEX_OWNER_DIED | FUTEX_WAITERS;
	case 10: return FUTEX_WAITERS;           /* taken, no tid */
	case 11: return 1;                       /* init: live, no store */
	case 12: return 0x7fffffff;              /* glibc: inconsistent */
	case 13: return 0x7ffffffe;              /* glibc: not recoverable */
	case 14: return kind;                    /* the kind libkv makes */
	case 15: return kind | 0x20;             /* priority inheritance */
	case 16: return kind | 0x40;             /* priority protection */
	case 17: return kind & ~0x10u;           /* not robust */
	case 18: return kind & ~0x80u;           /* not process-shared */
	case 19: return kind | 0x100;            /* elision */
	case 20: return kind + 1;                /* recursive */
	case 21: return kind + 2;                /* error checking */
	case 22: return start;                   /* this thread's start */
	case 23: return start + 1;
	case 24: return srv_start;
	case 25: return boot;                    /* this boot */
	case 26: return boot ^ 1;                /* another boot */
	case 27: return pidns;                   /* this pid namespace */
	case 28: return pidns + 1;               /* another one */
	case 29: return (uint64_t)me << 32 | (uint32_t)start; /* repairer */
	case 30: return (uint64_t)srv_tid << 32 | (uint32_t)srv_start;
	case 31: return (uint64_t)GONE_TID << 32 | 1;
	}
	return 0;
}

static uint64_t lock_patch_value(struct in *in)
{
	unsigned sel = (unsigned)take(in, 1);
	if (sel == 255)
		return take(in, 8);
	return sel < NLOCKV ? lock_value(sel) : T->vals[sel];
}

/* Which patches (kind << 4 | region) the input applied. */
static struct {
	unsigned n;
	uint8_t what[64];
} applied;

static void note_patch(unsigned kind, unsigned region)
{
	if (applied.n < sizeof applied.what)
		applied.what[applied.n++] = (uint8_t)(kind << 4 | (region & 15));
}

/* Extra coverage for libFuzzer: a counter per kind of patch that left the
 * store sound in kv_check's eyes. Damage the checker cannot see is where
 * the oracles find bugs, so inputs that make some are kept and mutated. */
__attribute__((section("__libfuzzer_extra_counters"), used))
static uint8_t extra_counters[256];

static void count_sound_patches(void)
{
	for (unsigned i = 0; i < applied.n; i++)
		if (extra_counters[applied.what[i]] < 255)
			extra_counters[applied.what[i]]++;
}

/* Apply patches until the input ends, or (later set) until a LATER patch,
 * leaving *in just after it. */
static void apply_patches(struct in *in, bool later)
{
	while (in->n > 0) {
		unsigned kind = (unsigned)take(in, 1) & 0x0f;
		switch (kind) {
		case 0: { /* RAW */
			unsigned r = (unsigned)take(in, 1);
			uint64_t off = region_off(r, (uint32_t)take(in, 3));
			size_t len = (size_t)take(in, 1) % 33;
			if (in->short_read)
				return;
			if (len > in->n)
				len = in->n;
			poke(off, in->p, len);
			in->p += len;
			in->n -= len;
			note_patch(kind, r % 14);
			break;
		}
		case 1: /* VAL32 */
		case 2: { /* VAL64 */
			unsigned w = kind == 1 ? 4 : 8;
			unsigned r = (unsigned)take(in, 1);
			uint64_t off = region_off(r, (uint32_t)take(in, 3));
			uint64_t v = value(in);
			if (in->short_read)
				return;
			poke(off / w * w, &v, w);
			note_patch(kind, r % 14);
			break;
		}
		case 3: { /* JENT */
			uint64_t idx = take(in, 2) % KV_LOG_MAX;
			unsigned r = (unsigned)take(in, 1);
			uint32_t rel = (uint32_t)take(in, 3);
			unsigned w = (unsigned)take(in, 1);
			uint64_t v = value(in);
			if (in->short_read)
				return;
			uint64_t target;
			if (w & 0x80)
				target = (uint64_t)rel << (r % 40);
			else
				target = region_off(r, rel) / ((w & 1) ? 4 : 8) *
				         ((w & 1) ? 4 : 8);
			struct kv_logent e = {
			    .off = target | ((w & 1) ? KV_LOG_W32 : 0), .val = v};
			poke(KV_JOURNAL_OFF + 0x40 + idx * sizeof e, &e, sizeof e);
			note_patch(kind, (w & 0x80) ? 15 : r % 14);
			break;
		}
		case 4: { /* JHEAD */
			uint32_t state = (uint32_t)take(in, 1);
			uint32_t n = (uint32_t)take(in, 2);
			if (in->short_read)
				return;
			poke(KV_JOURNAL_OFF, &state, 4);
			poke(KV_JOURNAL_OFF + 4, &n, 4);
			note_patch(kind, state & 15);
			break;
		}
		case 5: { /* ODD */
			uint64_t b = take(in, 2) % T->nbuckets;
			if (in->short_read)
				return;
			uint64_t off = T->index_off + b * KV_CACHELINE;
			uint32_t seq = (uint32_t)peek(off, 4) | 1u;
			poke(off, &seq, 4);
			note_patch(kind, 0);
			break;
		}
		case 6: /* ADD64 */
		case 7: { /* ADD32 */
			unsigned w = kind == 7 ? 4 : 8;
			unsigned r = (unsigned)take(in, 1);
			uint64_t off = region_off(r, (uint32_t)take(in, 3)) / w * w;
			int8_t d = (int8_t)take(in, 1);
			if (in->short_read)
				return;
			uint64_t v = peek(off, w) + (uint64_t)(int64_t)d;
			poke(off, &v, w);
			note_patch(kind, r % 14);
			break;
		}
		case 8: { /* COPY */
			unsigned rs = (unsigned)take(in, 1);
			uint64_t src = region_off(rs, (uint32_t)take(in, 3));
			unsigned rd = (unsigned)take(in, 1);
			uint64_t dst = region_off(rd, (uint32_t)take(in, 3));
			size_t len = (size_t)take(in, 1) % 33;
			if (in->short_read)
				return;
			uint8_t tmp[32];
			if (src + len > T->size)
				len = T->size - src;
			memcpy(tmp, T->map + src, len);
			poke(dst, tmp, len);
			note_patch(kind, rd % 14);
			break;
		}
		case 9: { /* LOCK */
			unsigned f = (unsigned)take(in, 1) % 16;
			uint64_t v = lock_patch_value(in);
			if (in->short_read)
				return;
			poke(lock_fields[f].off, &v, lock_fields[f].width);
			note_patch(kind, f);
			break;
		}
		case 10: /* LATER: the rest after the dying writer */
			if (later)
				return;
			break;
		default:
			break;
		}
	}
}

/* ------------------------------------------------------------------------
 * The operations, each with its oracles.
 */
struct run {
	uint8_t mode, v;
	bool sound;   /* kv_check called the store sound before the ops */
	bool skip_rw; /* the read-only attach showed the read-write one
	               * would fail the same way */
	char rep[2048];
	size_t replen;
};

static void collect(void *ctx, const char *msg)
{
	struct run *r = ctx;
	int n = snprintf(r->rep + r->replen, sizeof r->rep - r->replen,
	                 "    %s\n", msg);
	if (n > 0 && (size_t)n < sizeof r->rep - r->replen)
		r->replen += (size_t)n;
}

static int do_get(kv_t *kv, const void *k, size_t kl, size_t cap,
                  uint8_t **out, size_t *outlen)
{
	/* An exact-size heap buffer, so a copy past cap is an ASan report. */
	uint8_t *buf = cap ? malloc(cap) : NULL;
	size_t vl = SIZE_MAX;
	int rc = note(C_GET, kv_get(kv, k, kl, buf, cap, &vl));
	lock_released(kv, "kv_get");
	if (rc == KV_OK && vl > cap)
		FINDING("kv_get returned KV_OK with a %zu-byte value for a "
		        "%zu-byte buffer", vl, cap);
	if (rc == KV_ERANGE && vl <= cap)
		FINDING("kv_get returned KV_ERANGE with a %zu-byte value for "
		        "a %zu-byte buffer", vl, cap);
	if ((rc == KV_OK || rc == KV_ERANGE) && vl > kv->max_value)
		FINDING("kv_get returned a %zu-byte value; max_value is %u",
		        vl, kv->max_value);
	if (outlen != NULL)
		*outlen = vl;
	if (out != NULL)
		*out = buf;
	else
		free(buf);
	return rc;
}

static int do_put(struct run *r, kv_t *kv, const void *k, size_t kl,
                  size_t vl, uint64_t ttl, uint32_t flags, uint64_t cas)
{
	uint8_t *v = vl ? malloc(vl) : NULL;
	if (vl)
		fill_value(v, vl, k, kl), v[0] ^= r->v;
	struct kv_put_opts o = {.ttl_ms = ttl, .flags = flags, .cas = cas};
	tick(); /* the call's own time, not the filling of its value */
	int rc = note(C_PUT, kv_put(kv, k, kl, v, vl, &o));
	lock_released(kv, "kv_put");
	if (rc == KV_OK && r->sound) {
		uint8_t *got = NULL;
		size_t gl = 0;
		int g = do_get(kv, k, kl, vl, &got, &gl);
		if (g != KV_OK || gl != vl || (vl && memcmp(got, v, vl) != 0))
			FINDING("ORACLE: on a store kv_check called sound, a "
			        "put of \"%.*s\" (%zu bytes, flags %u) "
			        "returned KV_OK, then kv_get gave %s (%zu "
			        "bytes%s)",
			        (int)(kl < 40 ? kl : 40), (const char *)k, vl,
			        flags, kv_errname(g), g == KV_OK ? gl : 0,
			        g == KV_OK && gl == vl ? ", other bytes" : "");
		free(got);
	}
	free(v);
	return rc;
}

/* A value one byte past the max value, of which only one byte exists: it
 * must be refused by its length, before any of it is read (a read would
 * be an overflow the sanitizers report). A damaged header may declare a
 * max value of up to 1 GiB, which is not worth filling for a refusal. */
static void do_put_over(kv_t *kv, const void *k, size_t kl)
{
	static const uint8_t one = 1;
	size_t vl = (size_t)kv->max_value + 1;
	tick();
	int rc = note(C_PUT, kv_put(kv, k, kl, &one, vl, NULL));
	lock_released(kv, "kv_put");
	if (rc != KV_EVALSIZE)
		FINDING("kv_put of %zu bytes, over max_value %u, returned %s",
		        vl, kv->max_value, kv_errname(rc));
}

static int do_del(struct run *r, kv_t *kv, const void *k, size_t kl)
{
	int rc = note(C_DEL, kv_del(kv, k, kl));
	lock_released(kv, "kv_del");
	if (rc == KV_OK && r->sound) {
		int g = do_get(kv, k, kl, 0, NULL, NULL);
		if (g != KV_ENOTFOUND)
			FINDING("ORACLE: on a store kv_check called sound, "
			        "kv_del of \"%.*s\" returned KV_OK, then kv_get "
			        "gave %s",
			        (int)(kl < 40 ? kl : 40), (const char *)k,
			        kv_errname(g));
	}
	return rc;
}

static int do_incr(struct run *r, kv_t *kv, const char *k, int64_t delta)
{
	int64_t res = 0;
	size_t kl = strlen(k);
	int rc = note(C_INCR, kv_incr(kv, k, kl, delta, &res));
	lock_released(kv, "kv_incr");
	if (rc == KV_OK && r->sound) {
		char want[24];
		int wl = snprintf(want, sizeof want, "%lld", (long long)res);
		uint8_t *got = NULL;
		size_t gl = 0;
		int g = do_get(kv, k, kl, 32, &got, &gl);
		if (g != KV_OK || gl != (size_t)wl || memcmp(got, want, gl) != 0)
			FINDING("ORACLE: on a store kv_check called sound, "
			        "kv_incr(\"%s\", %lld) returned KV_OK and %s, then "
			        "kv_get gave %s",
			        k, (long long)delta, want, kv_errname(g));
		free(got);
	}
	return rc;
}

struct scanctx {
	struct run *r;
	kv_t *kv;
	uint64_t keys;
	bool writes;
};

static int scan_fn(void *ctx, const void *key, size_t klen)
{
	struct scanctx *sc = ctx;
	const volatile uint8_t *p = key;
	uint8_t x = 0;

	sc->keys++;
	if (klen == 0 || klen > KV_MAX_KEY)
		FINDING("kv_scan handed out a %zu-byte key", klen);
	for (size_t i = 0; i < klen; i++) /* every byte must be readable */
		x ^= p[i];
	(void)x;
	if (sc->keys % 8 == 0)
		do_get(sc->kv, key, klen, 64, NULL, NULL);
	if (sc->writes && sc->keys % 16 == 0)
		do_del(sc->r, sc->kv, key, klen);
	return 0;
}

static int do_scan(struct run *r, kv_t *kv, size_t count, bool writes,
                   uint64_t *keys)
{
	struct scanctx sc = {.r = r, .kv = kv, .writes = writes};
	uint64_t cursor = 0, calls = 0;
	int rc;
	do {
		rc = note(C_SCAN, kv_scan(kv, &cursor, count, scan_fn, &sc));
		lock_released(kv, "kv_scan");
		if (rc != KV_OK)
			break;
		if (++calls > kv->nbuckets + 2)
			FINDING("kv_scan did not come back to cursor 0 in "
			        "%" PRIu64 " calls", calls);
	} while (cursor != 0);
	if (keys != NULL)
		*keys = sc.keys;
	return rc;
}

static int do_mget(kv_t *kv, const struct key *ks, size_t n)
{
	struct kv_getv v[24];
	static const size_t caps[] = {4096, 0, 1, 64};
	if (n > 24)
		n = 24;
	for (size_t i = 0; i < n; i++) {
		v[i] = (struct kv_getv){.key = ks[i].b, .klen = ks[i].n,
		                        .cap = caps[i % 4]};
		v[i].buf = v[i].cap ? malloc(v[i].cap) : NULL;
	}
	tick();
	int rc = kv_mget(kv, v, n);
	timed_mget();
	lock_released(kv, "kv_mget");
	if (rc != KV_OK)
		FINDING("kv_mget returned %s", kv_errname(rc));
	for (size_t i = 0; i < n; i++) {
		int s = note(C_MGET, v[i].status);
		if (s == KV_OK && v[i].vlen > v[i].cap)
			FINDING("kv_mget entry KV_OK with %zu bytes for a %zu-byte "
			        "buffer", v[i].vlen, v[i].cap);
		if (s == KV_ERANGE && v[i].vlen <= v[i].cap)
			FINDING("kv_mget entry KV_ERANGE with %zu bytes for a "
			        "%zu-byte buffer", v[i].vlen, v[i].cap);
		free(v[i].buf);
	}
	return rc;
}

/* The keys one input reads. */
static size_t read_keys(unsigned v, struct key *ks)
{
	size_t n = 0;
	ks[n++] = small_key(v);
	ks[n++] = small_key(v * 7 + 1);
	ks[n++] = small_key(v * 13 + 2);
	ks[n++] = small_key(4 * (v % 40) + 3); /* expired */
	ks[n++] = med_key(v);
	ks[n++] = mk("b%03u", v % T->nbig);
	ks[n++] = T->coll[v % NCOLL];
	ks[n++] = T->coll[(v + 1) % NCOLL];
	ks[n++] = T->coll[NCOLL + v % NSPARE]; /* never put */
	ks[n++] = mk("counter");
	ks[n++] = mk("notnum");
	ks[n++] = mk("absent.%u", v);
	return n;
}

static void ro_phase(struct run *r)
{
	kv_t *kv = NULL;
	tick();
	int rc = note(C_OPEN, kv_open(T->path, KV_RDONLY, &kv));
	if (rc == KV_ENOTREADY)
		r->skip_rw = true; /* the same 2 s wait for a magic */
	if (rc != KV_OK)
		return;
	/* A read-only handle cannot take the lock: every lookup that meets
	 * an odd bucket backs off for KV_RO_WAIT_MS (1 s, virtual here)
	 * before KV_EBUSY; each call must still end within the limit. */
	struct key ks[16];
	size_t n = read_keys(r->v, ks);
	for (size_t i = 0; i < n; i += 3)
		do_get(kv, ks[i].b, ks[i].n, 4096, NULL, NULL);
	do_get(kv, long1, sizeof long1, 4096, NULL, NULL);
	do_mget(kv, ks, n);
	int64_t ttl;
	note(C_TTL, kv_ttl(kv, ks[0].b, ks[0].n, &ttl));
	do_put(r, kv, "ro", 2, 4, 0, 0, 0);
	do_del(r, kv, ks[1].b, ks[1].n);
	note(C_INCR, kv_incr(kv, "counter", 7, 1, NULL));
	note(C_FLUSH, kv_flush(kv, NULL));
	do_scan(r, kv, 1 + r->v % 64, false, NULL);
	note(C_CHECK, kv_check(kv, NULL, NULL));
	struct kv_stats st;
	note(C_STATS, kv_stats(kv, &st));
	kv_close(kv);
}

static void rw_ops(struct run *r, kv_t *kv)
{
	unsigned v = r->v;
	struct key ks[16], k;
	size_t n = read_keys(v, ks);
	static const size_t caps[] = {4096, 0, 16, 60};

	for (size_t i = 0; i < n; i++)
		do_get(kv, ks[i].b, ks[i].n, caps[i % 4], NULL, NULL);
	do_get(kv, long1, sizeof long1, 4096, NULL, NULL);
	do_get(kv, long2, sizeof long2, 4096, NULL, NULL);
	uint64_t ver = 12345;
	size_t vl;
	uint8_t vb[64];
	struct key c = T->coll[v % NCOLL];
	note(C_GET, kv_get_version(kv, c.b, c.n, vb, sizeof vb, &vl, &ver));
	lock_released(kv, "kv_get_version");
	int64_t ttl;
	note(C_TTL, kv_ttl(kv, ks[0].b, ks[0].n, &ttl));
	k = small_key(4 * (v % 40) + 1); /* an hour's TTL */
	note(C_TTL, kv_ttl(kv, k.b, k.n, &ttl));
	lock_released(kv, "kv_ttl");
	do_mget(kv, ks, n);

	/* Puts down every path: new, replace, conditions, TTL, a full class
	 * (evict in class), a class without pages (take a page), the
	 * colliding home (a long probe), the largest item, too large. */
	k = mk("new.%u", v);
	do_put(r, kv, k.b, k.n, 10, 0, 0, 0);
	k = small_key(v * 3);
	do_put(r, kv, k.b, k.n, 50, 0, KV_PUT_XX, 0);
	do_put(r, kv, c.b, c.n, 5, 0, KV_PUT_NX, 0);
	do_put(r, kv, c.b, c.n, 7, 0, KV_PUT_CAS, ver);
	k = T->coll[(v + 2) % NCOLL];
	do_put(r, kv, k.b, k.n, 7, 0, KV_PUT_CAS, 12345);
	k = mk("absent.%u", v);
	do_put(r, kv, k.b, k.n, 7, 0, KV_PUT_XX, 0);
	k = mk("ttl.%u", v);
	do_put(r, kv, k.b, k.n, 30, 5000, 0, 0);
	k = mk("n%03u", v % 1000); /* reuses a free chunk: class 24, or */
	do_put(r, kv, k.b, k.n, v & 1 ? 8 : 1, 0, 0, 0); /* 28 (4-aligned) */
	k = mk("bignew.%u", v);
	do_put(r, kv, k.b, k.n, 3000, 0, 0, 0);
	k = mk("f.%u", v); /* the full class: evict within it */
	do_put(r, kv, k.b, k.n, FULL_VLEN, 0, 0, 0);
	static const size_t sz[] = {2500, 700, 4096, 120, 0, 1500, 33, 3000};
	k = mk("size.%u", v);
	do_put(r, kv, k.b, k.n, sz[v % 8], 0, 0, 0);
	k = T->coll[NCOLL + v % NSPARE];
	do_put(r, kv, k.b, k.n, 12, 0, 0, 0);
	do_put(r, kv, long2, sizeof long2, MAX_VALUE, 0, 0, 0);
	/* A large value replaced: pieces, and a page for some v. */
	do_put(r, kv, "large", 5, 40000 + 1000 * (v % 50), 0, 0, 0);
	k = mk("over.%u", v);
	do_put_over(kv, k.b, k.n);

	/* Deletes: a colliding key (backward shift), a small key, an
	 * absent one, an expired one. */
	k = T->coll[(v + 3) % NCOLL];
	do_del(r, kv, k.b, k.n);
	k = small_key(v * 5 + 1);
	do_del(r, kv, k.b, k.n);
	k = mk("absent.%u", v);
	do_del(r, kv, k.b, k.n);
	k = small_key(4 * (v % 40) + 3);
	do_del(r, kv, k.b, k.n);

	do_incr(r, kv, "counter", 1);
	do_incr(r, kv, "notnum", 1);
	k = mk("ctr.%u", v);
	do_incr(r, kv, k.b, -5);
	do_incr(r, kv, "counter", INT64_MAX);

	do_scan(r, kv, 1 + v % 64, (v & 0x10) != 0, NULL);

	/* Grow it (half the inputs): the rehash reads every slot and item
	 * of a store that may be damaged; a sound store must come out
	 * sound, with every key. */
	if (v & 0x20) {
		struct kv_stats s0 = {0}, s1 = {0};
		if (note(C_STATS, kv_stats(kv, &s0)) == KV_OK) {
			int g = note(C_RESIZE,
			             kv_resize(kv, s0.map_size * 2));
			lock_released(kv, "kv_resize");
			if (g == KV_OK && r->sound) {
				int ck = note(C_CHECK, kv_check(kv, NULL, NULL));
				lock_released(kv, "kv_check");
				note(C_STATS, kv_stats(kv, &s1));
				if (ck != KV_OK ||
				    s1.map_size != s0.map_size * 2 ||
				    s1.items != s0.items)
					FINDING("ORACLE: on a store kv_check "
					        "called sound, kv_resize returned "
					        "KV_OK but left it unsound or "
					        "changed (check %d, %" PRIu64
					        " -> %" PRIu64 " bytes, %" PRIu64
					        " -> %" PRIu64 " items)",
					        ck, s0.map_size, s1.map_size,
					        s0.items, s1.items);
			}
			/* Back to the size it had: every item in the half
			 * given up moves down first. */
			if (g == KV_OK && (v & 0x40)) {
				int b = note(C_RESIZE,
				             kv_resize(kv, s0.map_size));
				lock_released(kv, "kv_resize");
				struct kv_stats s2 = {0};
				if (r->sound && (b == KV_OK || b == KV_EFULL)) {
					int ck = note(C_CHECK,
					              kv_check(kv, NULL, NULL));
					lock_released(kv, "kv_check");
					note(C_STATS, kv_stats(kv, &s2));
					uint64_t want = b == KV_OK
					                    ? s0.map_size
					                    : s0.map_size * 2;
					if (ck != KV_OK || s2.map_size != want ||
					    s2.items != s0.items)
						FINDING("ORACLE: on a store "
						        "kv_check called sound, "
						        "a shrink returned %d but "
						        "left it unsound or "
						        "changed (check %d, "
						        "%" PRIu64 " bytes, "
						        "%" PRIu64 " -> %" PRIu64
						        " items)",
						        b, ck, s2.map_size,
						        s0.items, s2.items);
				}
			}
		}
	}

	if (r->mode & M_SWEEP) {
		uint64_t n_exp;
		note(C_SWEEP, kv__sweep(kv, kv->nbuckets, &n_exp));
		lock_released(kv, "kv__sweep");
		note(C_MAINTAIN, kv__maintain(kv));
		lock_released(kv, "kv__maintain");
	}

	struct kv_stats st;
	note(C_STATS, kv_stats(kv, &st));
	struct kv_class_stats cs;
	for (uint32_t i = 0; i <= kv->nclasses; i++)
		note(C_CLASS, kv_class_stats(kv, i, &cs));

	if (r->mode & M_FLUSH) {
		uint64_t removed = 0;
		int rc = note(C_FLUSH, kv_flush(kv, &removed));
		lock_released(kv, "kv_flush");
		if (rc == KV_OK && r->sound) {
			uint64_t keys = 0;
			note(C_STATS, kv_stats(kv, &st));
			int s = do_scan(r, kv, 64, false, &keys);
			if (st.items != 0 || (s == KV_OK && keys != 0))
				FINDING("ORACLE: on a store kv_check called "
				        "sound, kv_flush returned KV_OK and left "
				        "%" PRIu64 " items (a scan sees %" PRIu64
				        ")",
				        st.items, keys);
		}
	}
}

static void rw_phase(struct run *r, int rc0)
{
	kv_t *kv = NULL;
	tick();
	int rc = note(C_OPEN, kv_open(T->path, KV_RDWR, &kv));
	if (rc != KV_OK)
		return;
	F.tot.opened++;
	if (r->mode & M_RECOVER) {
		rc = note(C_LOCK, kv__lock(kv));
		if (rc == KV_OK) {
			note(C_RECOVER, kv__recover_locked(kv));
			kv__unlock(kv);
		}
		lock_released(kv, "kv__recover_locked");
	}
	if (!(r->mode & M_NOCHECK)) {
		rc = note(C_CHECK, kv_check(kv, collect, r));
		lock_released(kv, "kv_check");
		r->sound = rc == KV_OK;
		F.tot.sound_before += r->sound;
		if (r->sound)
			count_sound_patches();
		if (rc0 == KV_OK && !r->sound)
			FINDING("ORACLE: kv_check called the store sound "
			        "before a writer died in it (mode %#x, crash "
			        "point %u); after recovery it reports:\n%s",
			        r->mode, 1 + r->v % 10, r->rep);
	}
	rw_ops(r, kv);
	r->replen = 0;
	r->rep[0] = '\0';
	rc = note(C_CHECK, kv_check(kv, collect, r));
	lock_released(kv, "kv_check");
	if (r->sound && rc != KV_OK)
		FINDING("ORACLE: kv_check called the store sound before the "
		        "operations (mode %#x, variant %u) and after them "
		        "reports:\n%s",
		        r->mode, r->v, r->rep);
	kv_close(kv);
}

/* A writer that dies holding the lock: either right after taking it, or
 * at a numbered crash point inside a write. It runs in a process of its
 * own, forked from a small fork server that was itself forked at start-up:
 * forking the fuzzer (hundreds of MiB of sanitizer and corpus memory) for
 * every input would cost more than everything else together.
 *
 * The dying writer first runs kv_check; its status comes back with the
 * way the writer died. */
struct fork_cmd {
	uint8_t mode, v, tmpl;
	uint64_t clock;
};
struct fork_res {
	int rc0;    /* the writer's kv_check before it died, 1 if none */
	int status; /* its wait status */
	int hung;   /* it did not finish in 20 s and was killed */
};


/* Whole-record pipe I/O; libFuzzer's timer signals interrupt it. */
static bool xfer(int fd, void *buf, size_t n, bool out)
{
	uint8_t *p = buf;
	while (n > 0) {
		ssize_t k = out ? write(fd, p, n) : read(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		p += k;
		n -= (size_t)k;
	}
	return true;
}

static void __attribute__((noreturn)) dying_writer(const struct run *r, int out)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the server */
	kv_t *kv = NULL;
	if (kv_open(T->path, KV_RDWR, &kv) != KV_OK)
		_exit(3);
	int rc0 = kv_check(kv, NULL, NULL);
	if (!xfer(out, &rc0, sizeof rc0, true))
		_exit(7);
	if (!(r->mode & M_FORKCRASH)) {
		if (kv__lock(kv) == KV_OK)
			_exit(4); /* dies holding it */
		_exit(6);
	}
	kv__crash_arm(1 + r->v % 10);
	struct key k;
	uint8_t val[40];
	memset(val, 'x', sizeof val);
	switch ((r->v >> 4) % 4) {
	case 0:
		k = mk("crash.%u", r->v);
		kv_put(kv, k.b, k.n, val, 10, NULL);
		break;
	case 1: /* into a chunk popped from a free list */
		k = mk("n%03u", r->v % 1000);
		kv_put(kv, k.b, k.n, val, r->v & 1 ? 8 : 1, NULL);
		break;
	case 2:
		k = small_key(r->v * 3u);
		kv_put(kv, k.b, k.n, val, sizeof val, NULL);
		break;
	case 3: /* a delete that shifts keys back */
		k = T->coll[(r->v + 3) % NCOLL];
		kv_del(kv, k.b, k.n);
		break;
	}
	_exit(5); /* the point was not on this path */
}

static void __attribute__((noreturn)) fork_server(int cmd, int res)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (;;) {
		struct fork_cmd c;
		if (!xfer(cmd, &c, sizeof c, false))
			_exit(0); /* the fuzzer is gone */
		struct run r = {.mode = c.mode, .v = c.v};
		T = &F.t[c.tmpl % NTEMPLATES];
		struct fork_res out = {.rc0 = 1};
		kv__set_test_clock(c.clock);
		int fds[2];
		if (pipe(fds) != 0)
			die("fork server: pipe: %s", strerror(errno));
		pid_t pid = fork();
		if (pid < 0)
			die("fork server: fork: %s", strerror(errno));
		if (pid == 0) {
			close(fds[0]);
			dying_writer(&r, fds[1]);
		}
		close(fds[1]);
		pid_t w = 0;
		for (int ms = 0; ms < 20000 && w == 0; ms++) {
			w = waitpid(pid, &out.status, WNOHANG);
			if (w == 0)
				fuzz_sleep_real(1000000);
		}
		if (w == 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &out.status, 0);
			out.hung = 1;
		}
		if (!xfer(fds[0], &out.rc0, sizeof out.rc0, false))
			out.rc0 = 1;
		close(fds[0]);
		if (!xfer(res, &out, sizeof out, true))
			die("fork server: write: %s", strerror(errno));
	}
}

static void start_fork_server(void)
{
	int cmd[2], res[2];
	if (pipe(cmd) != 0 || pipe(res) != 0)
		die("pipe: %s", strerror(errno));
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		close(cmd[1]);
		close(res[0]);
		fork_server(cmd[0], res[1]);
	}
	close(cmd[0]);
	close(res[1]);
	srv.pid = pid;
	srv.cmd = cmd[1];
	srv.res = res[0];
}

/* Returns the status of the kv_check the writer ran before it died, or 1
 * when it did not die holding the lock. */
static int fork_phase(struct run *r, uint64_t clock)
{
	struct fork_cmd c = {.mode = r->mode, .v = r->v,
	                     .tmpl = (uint8_t)(T - F.t), .clock = clock};
	struct fork_res res;
	if (!xfer(srv.cmd, &c, sizeof c, true) ||
	    !xfer(srv.res, &res, sizeof res, false)) {
		int st = 0;
		pid_t w = waitpid(srv.pid, &st, WNOHANG);
		die("the fork server is gone (%s; wait %d, status %#x)",
		    strerror(errno), (int)w, st);
	}
	int st = res.status;
	if (res.hung)
		FINDING("the dying writer (mode %#x, variant %u) did not finish "
		        "in 20 s", r->mode, r->v);
	bool killed = WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
	bool exited = WIFEXITED(st) && WEXITSTATUS(st) >= 3 &&
	              WEXITSTATUS(st) <= 6;
	if (!killed && !exited)
		FINDING("the dying writer (mode %#x, variant %u) died "
		        "unexpectedly (%s %d)",
		        r->mode, r->v, WIFSIGNALED(st) ? "signal" : "exit",
		        WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	return killed || (WIFEXITED(st) && WEXITSTATUS(st) == 4) ? res.rc0 : 1;
}

/* ------------------------------------------------------------------------
 * Entry points.
 */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (!F.ready)
		build_template();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!F.ready)
		build_template();
	struct run r = {0};
	r.mode = size > 0 ? data[0] : 0;
	r.v = size > 1 ? data[1] & 0x7f : 0;
	T = &F.t[size > 1 ? data[1] >> 7 : 0];
	struct in in = {.p = data + (size > 2 ? 2 : size),
	                .n = size > 2 ? size - 2 : 0};

	memcpy(T->map, T->bytes, T->size);
	applied.n = 0;
	bool fork = (r.mode & (M_FORKCRASH | M_FORKLOCK)) != 0;
	apply_patches(&in, fork);
	uint64_t clock = r.mode & M_LATE ? T_LATE : T_RUN;
	kv__set_test_clock(clock);
	F.tot.inputs++;

	int rc0 = 1;
	if (fork) {
		rc0 = fork_phase(&r, clock);
		if (in.n > 0) {
			/* Damage over what the writer left: its kv_check
			 * saw the store before it. */
			apply_patches(&in, false);
			rc0 = 1;
		}
	}
	tick();
	if (r.mode & M_RDONLY)
		ro_phase(&r);
	if (!r.skip_rw)
		rw_phase(&r, rc0);
	return 0;
}

void fuzz_totals(struct fuzz_totals *out)
{
	*out = F.tot;
}
