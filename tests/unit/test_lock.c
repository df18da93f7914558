/*
 * test_lock.c - the writer lock when its word names a holder that is gone.
 *
 * hdr.mutex is a glibc robust process-shared mutex; its first 32-bit word
 * is the futex word (0, or holder tid | FUTEX_WAITERS | FUTEX_OWNER_DIED).
 * The kernel sets FUTEX_OWNER_DIED only for a holder it sees exit on this
 * boot with the mutex on its robust list, so each test here leaves the
 * word in a state the kernel never repairs (another boot, a thread that
 * never existed, a thread that exited without a robust list, a reused id,
 * our own id, damaged bytes) and checks what libkv promises (lock.c, "The
 * lock word and stale locks"):
 *
 *   - the call that meets it ends within QUICK_MS with the right status:
 *     KV_OK when the lock is stale (it is broken and the next locker
 *     recovers), KV_EBUSY when a live thread holds it or may hold it;
 *   - a live holder's lock is never broken;
 *   - afterwards the store takes a put at once, reads back every key
 *     acknowledged before, has every bucket even and passes kv_check.
 *
 * Holders and bystanders are forked children: each is registered with the
 * harness (h_track_pid) as soon as it exists, so h_teardown kills and
 * reaps it whatever happens, and it dies with the test process
 * (PR_SET_PDEATHSIG). Children report through a shared anonymous page,
 * never through cmocka, and leave with _exit().
 *
 * The random-damage test prints its seed; KV_TEST_SEED=<seed> replays it.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "unit.h"
#include "lock_posix.h"

#define QUICK_MS 2000  /* every call under test must end within this */
#define AT_ONCE_MS 500 /* a put that must not have waited out a holder */
#define NO_TID 0x3ffffff0u /* above any pid_max: never a thread */
#define NPRE 100           /* keys put before the lock is spoiled */

/* ------------------------------------------------------------------------
 * Time, the lock word and the record
 */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void nap_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Fail unless the call that began at t0 has ended within QUICK_MS. */
static uint64_t assert_quick(uint64_t t0, const char *what)
{
	uint64_t ms = now_ms() - t0;
	if (ms >= QUICK_MS)
		fail_msg("%s took %llu ms (must end within %d ms)", what,
		         (unsigned long long)ms, QUICK_MS);
	return ms;
}

static _Atomic uint32_t *lock_word(kv_t *kv)
{
	return (_Atomic uint32_t *)(void *)&kv__hdr(kv)->mutex.__data.__lock;
}

static uint32_t word(kv_t *kv)
{
	return atomic_load(lock_word(kv));
}

/* Make the lock look taken by tid, as glibc leaves it (word and __owner). */
static void plant_word(kv_t *kv, uint32_t w)
{
	kv__hdr(kv)->mutex.__data.__owner = (int)(w & FUTEX_TID_MASK);
	atomic_store(lock_word(kv), w);
}

/* The lock record a holder writes right after taking the lock. */
static void plant_record(kv_t *kv, uint32_t tid, uint64_t start)
{
	struct kv_hdr *h = kv__hdr(kv);
	atomic_store(&h->owner_start, start);
	atomic_store(&h->owner_pidns, kv__pidns());
	atomic_store(&h->owner_tid, tid);
}

static enum kv_holder judge(kv_t *kv)
{
	char why[160];
	enum kv_holder j = kv__judge(kv, word(kv), why, sizeof why);
	print_message("  lock word %#x: %s\n", word(kv),
	              why[0] ? why : "free");
	return j;
}

static uint64_t start_of(pid_t tid)
{
	uint64_t start = 0;
	assert_int_equal(kv__thread_start((uint32_t)tid, &start),
	                 KV_THREAD_ALIVE);
	assert_true(start != 0);
	return start;
}

/* A thread's state letter from /proc, or 0 once it is gone (reaped). */
static char proc_state(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	return p != NULL && p[1] == ' ' ? p[2] : '?';
}

static struct kv_stats stats_of(kv_t *kv)
{
	struct kv_stats s;
	assert_kv(KV_OK, kv_stats(kv, &s));
	return s;
}

/* ------------------------------------------------------------------------
 * Stores
 *
 * Handles are registered so that a test that fails (cmocka longjmps out of
 * it) still has them closed by its teardown.
 */

enum { MAX_HANDLES = 8 };
static kv_t *handles[MAX_HANDLES];

static kv_t *keep(kv_t *kv)
{
	for (int i = 0; i < MAX_HANDLES; i++) {
		if (handles[i] == NULL) {
			handles[i] = kv;
			return kv;
		}
	}
	fail_msg("too many open handles");
	return kv;
}

static void close_kv(kv_t *kv)
{
	for (int i = 0; i < MAX_HANDLES; i++)
		if (handles[i] == kv)
			handles[i] = NULL;
	kv_close(kv);
}

static kv_t *open_kv(const char *name, unsigned flags)
{
	kv_t *kv = NULL;
	assert_kv(KV_OK, kv_open(name, flags, &kv));
	return keep(kv);
}

static const char *name_of(kv_t *kv)
{
	return kv__path(kv) + strlen("/dev/shm/kv.");
}

static void fill(kv_t *kv, const char *prefix, int n)
{
	char k[32], v[64];
	for (int i = 0; i < n; i++) {
		int kl = snprintf(k, sizeof k, "%s%d", prefix, i);
		int vl = snprintf(v, sizeof v, "value of %s%d", prefix, i);
		assert_kv(KV_OK, kv_put(kv, k, (size_t)kl, v, (size_t)vl, NULL));
	}
}

static void expect_fill(kv_t *kv, const char *prefix, int n)
{
	char k[32], v[64];
	for (int i = 0; i < n; i++) {
		int kl = snprintf(k, sizeof k, "%s%d", prefix, i);
		int vl = snprintf(v, sizeof v, "value of %s%d", prefix, i);
		u_expect(kv, k, (size_t)kl, v, (size_t)vl);
	}
}

/* A store holding NPRE acknowledged keys "pre0".. with a free lock. */
static kv_t *fixture(const char *tag)
{
	kv_t *kv = keep(u_create(tag, 8 << 20, 4096, 0));
	fill(kv, "pre", NPRE);
	assert_int_equal(word(kv), 0);
	return kv;
}

static void assert_all_even(kv_t *kv)
{
	for (uint64_t b = 0; b < kv->nbuckets; b++) {
		uint32_t s = atomic_load(&kv__bucket(kv, b)->seq);
		if (s & 1u)
			fail_msg("bucket %llu left odd (seq %u)",
			         (unsigned long long)b, s);
	}
}

/* After a repair: the lock is free, every key acknowledged before reads
 * back, a put is taken at once and reads back, every bucket is even, and
 * the store checks sound. */
static void assert_usable(kv_t *kv)
{
	expect_fill(kv, "pre", NPRE);
	uint64_t t0 = now_ms();
	assert_kv(KV_OK, u_puts(kv, "after", "the repair"));
	if (now_ms() - t0 >= AT_ONCE_MS)
		fail_msg("a put after the repair waited %llu ms",
		         (unsigned long long)(now_ms() - t0));
	u_expect_str(kv, "after", "the repair");
	assert_int_equal(word(kv), 0);
	assert_all_even(kv);
	assert_sound(kv);
}

/* The lock is stale: the next put breaks it (one repair), recovers (one
 * recovery) and succeeds within QUICK_MS. */
static void expect_put_repairs(kv_t *kv, const char *what)
{
	struct kv_stats s0 = stats_of(kv);
	uint64_t t0 = now_ms();
	int rc = u_puts(kv, what, "put through a stale lock");
	uint64_t ms = assert_quick(t0, what);
	assert_kv(KV_OK, rc);
	print_message("  %s: put took %llu ms\n", what,
	              (unsigned long long)ms);
	struct kv_stats s1 = stats_of(kv);
	assert_int_equal(s1.lock_repairs, s0.lock_repairs + 1);
	assert_int_equal(s1.recoveries, s0.recoveries + 1);
	assert_int_equal(word(kv), 0);
	u_expect_str(kv, what, "put through a stale lock");
}

/* ------------------------------------------------------------------------
 * Children
 */

enum { NKIDS = 4 };
enum kid_state { KID_NEW = 0, KID_READY, KID_HOLDING, KID_DONE, KID_FAILED };

struct kid {
	_Atomic int state;
	_Atomic int rc;
	_Atomic uint32_t tid;
	_Atomic uint64_t first_ms; /* first put, from the go signal */
	_Atomic uint64_t total_ms; /* all puts */
};

struct kids {
	_Atomic int go;
	struct kid kid[NKIDS];
};

static struct kids *kids;

/* The page children report through, cleared. */
static void kids_reset(void)
{
	if (kids == NULL) {
		void *p = mmap(NULL, sizeof *kids, PROT_READ | PROT_WRITE,
		               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			fail_msg("mmap: %s", strerror(errno));
		kids = p;
	}
	memset(kids, 0, sizeof *kids);
}

static void kid_fail(int i, int rc)
{
	atomic_store(&kids->kid[i].rc, rc);
	atomic_store(&kids->kid[i].state, KID_FAILED);
	_exit(1);
}

/* In a child: wait for the go signal (bounded; the parent may be gone). */
static void kid_wait_go(void)
{
	for (int i = 0; i < 200000 && !atomic_load(&kids->go); i++) {
		struct timespec ts = {0, 50000};
		nanosleep(&ts, NULL);
	}
}

typedef void (*kid_fn)(int i, const char *name);

/* Fork a child that runs fn(i, name) and _exit()s. It is registered with
 * the harness at once, so teardown kills and reaps it. */
static pid_t kid_start(kid_fn fn, int i, const char *name)
{
	pid_t parent = getpid();
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(99);
		fn(i, name);
		_exit(0);
	}
	h_track_pid(pid);
	return pid;
}

static void kid_reap(pid_t pid)
{
	if (!h_wait_pid_gone(pid, 10000))
		fail_msg("child %d did not exit", (int)pid);
}

static void kid_kill(pid_t pid)
{
	kill(pid, SIGKILL);
	kid_reap(pid);
}

/* Wait until child i reaches state want (or fails). */
static void kid_await(int i, int want)
{
	uint64_t end = now_ms() + 10000;
	int s;
	while ((s = atomic_load(&kids->kid[i].state)) != want) {
		if (s == KID_FAILED)
			fail_msg("child %d failed: %s", i,
			         kv_errname(atomic_load(&kids->kid[i].rc)));
		if (now_ms() > end)
			fail_msg("child %d stuck in state %d (waiting for %d)",
			         i, s, want);
		nap_ms(1);
	}
}

static void kid_sleep(int i, const char *name)
{
	(void)i;
	(void)name;
	for (;;)
		pause();
}

/* A live thread that holds nothing: its id, and its real start time. */
static pid_t sleeper(uint64_t *start)
{
	pid_t p = kid_start(kid_sleep, 0, NULL);
	*start = start_of(p);
	return p;
}

/* ------------------------------------------------------------------------
 * 1. A lock word from another boot, naming a live thread whose record
 *    matches: nothing but the boot tells it is stale.
 */

static void test_other_boot(void **state)
{
	(void)state;
	kv_t *kv = fixture("boot");
	const char *name = name_of(kv);
	struct kv_hdr *h = kv__hdr(kv);
	uint64_t start;
	pid_t p = sleeper(&start);
	uint64_t boot = kv__boot_tag();

	for (int round = 0; round < 2; round++) {
		uint64_t tag; /* what the attach must leave in the store */
		if (round == 0) {
			/* The store says it was locked on another boot. */
			if (boot == 0) {
				print_message("no boot id here: only a "
				              "pretended boot is tried\n");
				continue;
			}
			atomic_store(&h->boot_tag,
			             boot ^ UINT64_C(0x5a5a5a5a5a5a5a5a));
			tag = boot;
		} else {
			/* This process pretends another boot. */
			tag = atomic_load(&h->boot_tag) ^
			      UINT64_C(0x0123456789abcdef);
			kv__set_test_boot_tag(tag);
		}
		plant_word(kv, (uint32_t)p);
		plant_record(kv, (uint32_t)p, start);
		assert_int_equal(judge(kv), KV_HOLDER_LIVE);
		struct kv_stats s0 = stats_of(kv);

		uint64_t t0 = now_ms();
		kv_t *kv2 = open_kv(name, KV_RDWR);
		uint64_t t1 = now_ms();
		int rc = u_puts(kv2, "boot", round == 0 ? "real" : "pretend");
		uint64_t put_ms = now_ms() - t1;
		assert_quick(t0, "attach and put");
		assert_kv(KV_OK, rc);
		print_message("  %s boot: attach + put took %llu ms\n",
		              round == 0 ? "store from another" : "pretended",
		              (unsigned long long)(now_ms() - t0));
		if (put_ms >= AT_ONCE_MS)
			fail_msg("the put waited %llu ms: the attach did not "
			         "reset the lock", (unsigned long long)put_ms);
		struct kv_stats s1 = stats_of(kv2);
		assert_true(s1.lock_repairs > s0.lock_repairs);
		assert_int_equal(s1.recoveries, s0.recoveries + 1);
		assert_int_equal(atomic_load(&h->boot_tag), tag);
		u_expect_str(kv2, "boot", round == 0 ? "real" : "pretend");
		assert_usable(kv2);
		close_kv(kv2);
		/* The sleeper was only named; it is untouched. */
		assert_true(h_alive(p));
	}
	kv__set_test_boot_tag(0);
	kid_kill(p);
	close_kv(kv);
}

/* ------------------------------------------------------------------------
 * 2. An owner id no thread ever had, recorded as the holder or not.
 */

static void test_tid_never_existed(void **state)
{
	(void)state;
	kv_t *kv = fixture("notid");
	uint64_t start;
	assert_int_equal(kv__thread_start(NO_TID, &start), KV_THREAD_GONE);

	plant_word(kv, NO_TID);
	assert_int_equal(judge(kv), KV_HOLDER_STALE);
	expect_put_repairs(kv, "unrecorded");

	plant_word(kv, NO_TID | FUTEX_WAITERS);
	plant_record(kv, NO_TID, 12345);
	assert_int_equal(judge(kv), KV_HOLDER_STALE);
	expect_put_repairs(kv, "recorded");

	/* Taken, with sleepers, by nobody at all. */
	plant_word(kv, FUTEX_WAITERS);
	assert_int_equal(judge(kv), KV_HOLDER_STALE);
	expect_put_repairs(kv, "no id");

	assert_usable(kv);
	close_kv(kv);
}

/* ------------------------------------------------------------------------
 * 3. A holder that exited without a robust list: the kernel never marks
 *    its lock, and its id lingers as a zombie until reaped.
 */

static void kid_lock_and_vanish(int i, const char *name)
{
	/* An empty robust list, laid out as glibc's. */
	struct robust_list_head head;
	head.list.next = &head.list;
	head.futex_offset =
	    (long)offsetof(pthread_mutex_t, __data.__lock) -
	    (long)offsetof(pthread_mutex_t, __data.__list.__next);
	head.list_op_pending = NULL;
	if (syscall(SYS_set_robust_list, &head, sizeof head) != 0)
		kid_fail(i, KV_ESYS);
	kv_t *kv = NULL;
	int rc = kv_open(name, KV_RDWR, &kv);
	if (rc != KV_OK)
		kid_fail(i, rc);
	rc = kv__lock(kv);
	if (rc != KV_OK)
		kid_fail(i, rc);
	atomic_store(&kids->kid[i].tid, kv__gettid());
	atomic_store(&kids->kid[i].state, KID_HOLDING);
	_exit(0); /* holding it */
}

static void test_exited_without_robust_list(void **state)
{
	(void)state;
	kv_t *kv = fixture("norobust");

	for (int reaped = 0; reaped < 2; reaped++) {
		kids_reset();
		pid_t p = kid_start(kid_lock_and_vanish, 0, name_of(kv));
		kid_await(0, KID_HOLDING);
		assert_int_equal(atomic_load(&kids->kid[0].tid), (uint32_t)p);
		uint64_t end = now_ms() + 5000;
		while (proc_state(p) != 'Z') {
			if (now_ms() > end)
				fail_msg("child %d did not exit (state %c)",
				         (int)p, proc_state(p));
			nap_ms(1);
		}
		/* The kernel did not release it: no FUTEX_OWNER_DIED. */
		uint32_t w = word(kv);
		assert_int_equal(w & FUTEX_TID_MASK, (uint32_t)p);
		assert_int_equal(w & FUTEX_OWNER_DIED, 0);
		if (reaped) {
			kid_reap(p);
			assert_int_equal(proc_state(p), 0);
		}
		assert_int_equal(judge(kv), KV_HOLDER_STALE);
		expect_put_repairs(kv, reaped ? "after reaping"
		                              : "while a zombie");
		if (!reaped) {
			assert_int_equal(proc_state(p), 'Z');
			kid_reap(p);
		}
	}
	assert_usable(kv);
	close_kv(kv);
}

/* ------------------------------------------------------------------------
 * 4. A reused id: the word and the record name a live thread, but the
 *    record's start time is not that thread's.
 */

static void test_tid_reused(void **state)
{
	(void)state;
	kv_t *kv = fixture("reuse");
	uint64_t start;
	pid_t p = sleeper(&start);

	/* A record whose start time is not the live thread's was left by an
	 * earlier thread of that id that died holding the lock; the live one
	 * may be a new holder that has not yet replaced the record, so it is
	 * unsure, never stale, and an operator's break repairs it. */
	plant_word(kv, (uint32_t)p);
	plant_record(kv, (uint32_t)p, start > 1 ? start - 1 : start + 1);
	assert_int_equal(judge(kv), KV_HOLDER_UNSURE);
	assert_int_equal(kv__break_unsure(kv, 20), KV_OK);
	assert_usable(kv);
	assert_true(h_alive(p));

	/* The same thread with its real start time is a live holder (the
	 * contrast that makes the case above mean something). */
	plant_word(kv, (uint32_t)p);
	plant_record(kv, (uint32_t)p, start);
	assert_int_equal(judge(kv), KV_HOLDER_LIVE);
	/* And a record from another pid namespace is never judged: there
	 * the id names some other thread. */
	plant_record(kv, (uint32_t)p, start > 1 ? start - 1 : start + 1);
	atomic_store(&kv__hdr(kv)->owner_pidns, kv__pidns() + 1);
	assert_int_equal(judge(kv), KV_HOLDER_LIVE);
	plant_word(kv, 0);

	kid_kill(p);
	assert_usable(kv);
	close_kv(kv);
}

/* ------------------------------------------------------------------------
 * 5. A live holder: a child really holds the lock and sleeps. Another
 *    process is told KV_EBUSY in time, and the lock is not broken.
 */

static void kid_hold_then_write(int i, const char *name)
{
	kv_t *kv = NULL;
	int rc = kv_open(name, KV_RDWR, &kv);
	if (rc != KV_OK)
		kid_fail(i, rc);
	rc = kv__lock(kv);
	if (rc != KV_OK)
		kid_fail(i, rc);
	atomic_store(&kids->kid[i].tid, kv__gettid());
	atomic_store(&kids->kid[i].state, KID_HOLDING);
	kid_wait_go();
	struct kv_put_meta m = {0};
	rc = kv__put_locked(kv, kv__hash(kv, "held", 4), "held", 4,
	                    "by the child", 12, &m);
	kv__unlock(kv);
	kv_close(kv);
	atomic_store(&kids->kid[i].rc, rc);
	atomic_store(&kids->kid[i].state, KID_DONE);
}

static void test_live_holder(void **state)
{
	(void)state;
	kv_t *kv = fixture("live");
	kids_reset();
	pid_t p = kid_start(kid_hold_then_write, 0, name_of(kv));
	kid_await(0, KID_HOLDING);
	uint32_t tid = atomic_load(&kids->kid[0].tid);
	assert_int_equal(tid, (uint32_t)p);
	assert_int_equal(word(kv) & FUTEX_TID_MASK, tid);
	assert_int_equal(judge(kv), KV_HOLDER_LIVE);
	struct kv_stats s0 = stats_of(kv);

	uint64_t t0 = now_ms();
	int rc = u_puts(kv, "parent", "waits");
	uint64_t ms = assert_quick(t0, "put against a live holder");
	assert_kv(KV_EBUSY, rc);
	print_message("  put against a live holder: KV_EBUSY after %llu ms\n",
	              (unsigned long long)ms);
	/* Not broken: the child still holds it, nothing was repaired. */
	assert_int_equal(word(kv) & (FUTEX_TID_MASK | FUTEX_OWNER_DIED), tid);
	assert_int_equal(stats_of(kv).lock_repairs, s0.lock_repairs);

	/* Readers take no lock: they are not held up. */
	t0 = now_ms();
	expect_fill(kv, "pre", NPRE);
	if (now_ms() - t0 >= AT_ONCE_MS)
		fail_msg("gets waited %llu ms behind a live writer",
		         (unsigned long long)(now_ms() - t0));

	/* Nor does an operator's break take a live holder's lock. */
	t0 = now_ms();
	assert_kv(KV_EBUSY, kv__break_unsure(kv, 50));
	assert_quick(t0, "kv__break_unsure on a live holder");
	assert_int_equal(word(kv) & (FUTEX_TID_MASK | FUTEX_OWNER_DIED), tid);
	assert_int_equal(stats_of(kv).lock_repairs, s0.lock_repairs);

	/* The child finishes its write and unlocks as if nothing happened. */
	atomic_store(&kids->go, 1);
	kid_await(0, KID_DONE);
	assert_kv(KV_OK, atomic_load(&kids->kid[0].rc));
	kid_reap(p);
	u_expect_str(kv, "held", "by the child");
	assert_kv(KV_OK, u_puts(kv, "parent", "got in"));
	struct kv_stats s1 = stats_of(kv);
	assert_int_equal(s1.lock_repairs, s0.lock_repairs);
	assert_int_equal(s1.recoveries, s0.recoveries);
	assert_usable(kv);
	close_kv(kv);
}

/* ------------------------------------------------------------------------
 * 6. Unsure: the word names a live thread whose process maps the store,
 *    and no record says it took the lock. KV_EBUSY in time; an operator's
 *    kv__break_unsure breaks it. (Not mapping the store, it is stale.)
 */

static void test_unsure_holder(void **state)
{
	(void)state;
	uint64_t start;
	/* First a live thread that does not seem to map the store (forked
	 * before it was made). /proc/PID/maps can name a file by another
	 * device than fstat does (overlayfs, btrfs subvolumes), so that is no
	 * proof: unsure too, and broken on request. */
	pid_t q = sleeper(&start);
	kv_t *kv = fixture("unsure");
	assert_int_equal(kv__thread_maps((uint32_t)q, kv->os.dev, kv->os.ino), 0);
	plant_word(kv, (uint32_t)q);
	plant_record(kv, 0, 0);
	assert_int_equal(judge(kv), KV_HOLDER_UNSURE);
	assert_int_equal(kv__break_unsure(kv, 20), KV_OK);
	assert_usable(kv);
	assert_true(h_alive(q));
	kid_kill(q);
	/* A kernel thread maps nothing at all: surely no holder. */
	assert_int_equal(kv__thread_maps(2, kv->os.dev, kv->os.ino) == 2 ||
	                     kv__thread_maps(2, kv->os.dev, kv->os.ino) == -1,
	                 1);

	pid_t p = sleeper(&start); /* forked now: it maps the store */
	assert_int_equal(kv__thread_maps((uint32_t)p, kv->os.dev, kv->os.ino), 1);

	plant_word(kv, (uint32_t)p);
	plant_record(kv, 0, 0);
	assert_int_equal(judge(kv), KV_HOLDER_UNSURE);
	struct kv_stats s0 = stats_of(kv);

	uint64_t t0 = now_ms();
	int rc = u_puts(kv, "unsure", "waits");
	uint64_t ms = assert_quick(t0, "put against an unsure holder");
	assert_kv(KV_EBUSY, rc);
	print_message("  put against an unsure holder: KV_EBUSY after %llu "
	              "ms\n", (unsigned long long)ms);
	assert_int_equal(word(kv) & (FUTEX_TID_MASK | FUTEX_OWNER_DIED),
	                 (uint32_t)p);
	assert_int_equal(stats_of(kv).lock_repairs, s0.lock_repairs);

	t0 = now_ms();
	assert_kv(KV_OK, kv__break_unsure(kv, 200));
	assert_quick(t0, "kv__break_unsure");
	assert_int_equal(stats_of(kv).lock_repairs, s0.lock_repairs + 1);

	t0 = now_ms();
	assert_kv(KV_OK, u_puts(kv, "unsure", "broken on request"));
	if (now_ms() - t0 >= AT_ONCE_MS)
		fail_msg("put after the break waited %llu ms",
		         (unsigned long long)(now_ms() - t0));
	assert_int_equal(stats_of(kv).recoveries, s0.recoveries + 1);
	u_expect_str(kv, "unsure", "broken on request");
	assert_true(h_alive(p));
	kid_kill(p);
	assert_usable(kv);
	close_kv(kv);
}

/* ------------------------------------------------------------------------
 * 7. Our own id in the word while this thread holds no kv lock.
 */

static void test_own_tid(void **state)
{
	(void)state;
	kv_t *kv = fixture("owntid");
	uint32_t me = kv__gettid();

	plant_word(kv, me);
	assert_int_equal(judge(kv), KV_HOLDER_STALE);
	expect_put_repairs(kv, "own id");

	/* Recorded as ours too (a record this very thread wrote). */
	plant_word(kv, me | FUTEX_WAITERS);
	plant_record(kv, me, start_of((pid_t)me));
	assert_int_equal(judge(kv), KV_HOLDER_STALE);
	expect_put_repairs(kv, "own id, recorded");

	assert_usable(kv);
	close_kv(kv);
}

/* ------------------------------------------------------------------------
 * 8. Damaged mutex bytes.
 */

static int sane_kind(void)
{
	pthread_mutex_t m;
	memset(&m, 0, sizeof m);
	assert_int_equal(kv__init_mutex(&m), 0);
	int k = m.__data.__kind;
	pthread_mutex_destroy(&m);
	return k;
}

static void test_damaged_kind(void **state)
{
	(void)state;
	kv_t *kv = fixture("kind");
	struct kv_hdr *h = kv__hdr(kv);
	int good = sane_kind();
	/* Another protocol (plain, adaptive, PI), another robust kind,
	 * process-private, garbage. */
	const int bad[] = {0,    1,         3,       0x20 | 0x80, good | 0x20,
	                   good | 0x1, good | 0x2, good & ~0x80, 0x7fffffff,
	                   -1};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char what[48];
		snprintf(what, sizeof what, "kind %#x", (unsigned)bad[i]);
		h->mutex.__data.__kind = bad[i];
		expect_put_repairs(kv, what);
		assert_int_equal(h->mutex.__data.__kind & ~0x300, good);
	}
	/* Bad kind and a lock word that names nobody, both at once. */
	h->mutex.__data.__kind = 0;
	plant_word(kv, NO_TID);
	expect_put_repairs(kv, "kind 0 and a dead id");
	assert_usable(kv);
	close_kv(kv);
}

/* glibc gives no robust mutex an elision bit, and refuses one with it
 * (EINVAL). A word of damage that sets it must be repaired like any
 * other bad kind. */
static void test_damaged_kind_elision(void **state)
{
	(void)state;
	kv_t *kv = fixture("elision");
	struct kv_hdr *h = kv__hdr(kv);
	int good = sane_kind();
	const int bad[] = {good | 0x100, good | 0x300};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char what[48];
		snprintf(what, sizeof what, "kind %#x", (unsigned)bad[i]);
		h->mutex.__data.__kind = bad[i];
		uint64_t t0 = now_ms();
		int rc = u_puts(kv, what, "put through a stale lock");
		assert_quick(t0, what);
		if (rc == KV_EBUSY) {
			/* What an operator would do next. */
			assert_kv(KV_OK, kv__break_unsure(kv, 20));
			rc = u_puts(kv, what, "put through a stale lock");
		}
		if (rc != KV_OK)
			fail_msg("%s: put: %s, and again after "
			         "kv__break_unsure: the mutex is never "
			         "repaired", what, kv_errname(rc));
	}
	assert_usable(kv);
	close_kv(kv);
}

static void test_not_recoverable(void **state)
{
	(void)state;
	kv_t *kv = fixture("notrec");
	struct kv_hdr *h = kv__hdr(kv);

	h->mutex.__data.__owner = INT_MAX - 1;
	expect_put_repairs(kv, "owner not recoverable");
	assert_true(h->mutex.__data.__owner != INT_MAX - 1);

	/* Marked not recoverable and taken by a thread that is gone. */
	plant_word(kv, NO_TID);
	h->mutex.__data.__owner = INT_MAX - 1;
	expect_put_repairs(kv, "not recoverable, dead id");

	/* Inconsistent (a holder took it with EOWNERDEAD and died before
	 * marking it consistent), word of a thread that is gone. */
	plant_word(kv, NO_TID);
	h->mutex.__data.__owner = INT_MAX;
	expect_put_repairs(kv, "inconsistent, dead id");
	assert_usable(kv);
	close_kv(kv);
}

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64* */
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * UINT64_C(0x2545f4914f6cdd1d);
}

static unsigned rng_below(uint64_t *s, unsigned n)
{
	return (unsigned)(rng_next(s) >> 33) % n;
}

/* Write 1-8 random bytes somewhere in [lo, hi) of the header; describe
 * them in msg. */
static void scribble(kv_t *kv, uint64_t *rng, unsigned lo, unsigned hi,
                     char *msg, size_t cap)
{
	unsigned n = 1 + rng_below(rng, 8);
	if (n > hi - lo)
		n = hi - lo;
	unsigned at = lo + rng_below(rng, hi - lo - n + 1);
	size_t used = strlen(msg);
	used += (size_t)snprintf(msg + used, cap - used, " [%#x]=", at);
	for (unsigned i = 0; i < n; i++) {
		uint8_t b = (uint8_t)rng_next(rng);
		kv->base[at + i] = b;
		if (used < cap)
			used += (size_t)snprintf(msg + used, cap - used,
			                         "%02x", b);
	}
}

static void test_damage_random(void **state)
{
	(void)state;
	enum { ROUNDS = 300 };
	const char *env = getenv("KV_TEST_SEED");
	uint64_t seed = env != NULL ? strtoull(env, NULL, 0)
	                            : ((uint64_t)time(NULL) << 20) ^
	                                  (uint64_t)getpid();
	if (seed == 0)
		seed = 1;
	print_message("  seed %llu (replay with KV_TEST_SEED=%llu)\n",
	              (unsigned long long)seed, (unsigned long long)seed);
	uint64_t rng = seed;
	kv_t *kv = fixture("random");
	unsigned busy = 0, repaired = 0;
	uint64_t worst = 0;

	for (int r = 0; r < ROUNDS; r++) {
		char what[256];
		snprintf(what, sizeof what, "seed %llu round %d:",
		         (unsigned long long)seed, r);
		/* The mutex's line at 0x080, and now and then the lock
		 * record (0x0c4..0x0dc) or the repair word (0x0e8). */
		scribble(kv, &rng, 0x080, 0x0c0, what, sizeof what);
		switch (rng_below(&rng, 8)) {
		case 0:
			scribble(kv, &rng, 0x0c4, 0x0c8, what, sizeof what);
			break;
		case 1:
			scribble(kv, &rng, 0x0d0, 0x0dc, what, sizeof what);
			break;
		case 2:
			scribble(kv, &rng, 0x0e8, 0x0f0, what, sizeof what);
			break;
		default:
			break;
		}
		uint64_t r0 = stats_of(kv).lock_repairs;
		char k[32], v[64];
		int kl = snprintf(k, sizeof k, "r%d", r);
		int vl = snprintf(v, sizeof v, "round %d of seed %llu", r,
		                  (unsigned long long)seed);
		uint64_t t0 = now_ms();
		int rc = kv_put(kv, k, (size_t)kl, v, (size_t)vl, NULL);
		uint64_t ms = now_ms() - t0;
		if (ms >= QUICK_MS)
			fail_msg("%s put took %llu ms", what,
			         (unsigned long long)ms);
		if (ms > worst)
			worst = ms;
		if (rc == KV_EBUSY) {
			busy++;
			int b = kv__break_unsure(kv, 20);
			if (b != KV_OK)
				fail_msg("%s put: KV_EBUSY, then "
				         "kv__break_unsure: %s", what,
				         kv_errname(b));
			rc = kv_put(kv, k, (size_t)kl, v, (size_t)vl, NULL);
			if (rc != KV_OK)
				fail_msg("%s put: KV_EBUSY, and %s after "
				         "kv__break_unsure", what,
				         kv_errname(rc));
		}
		if (rc != KV_OK)
			fail_msg("%s put: %s", what, kv_errname(rc));
		if (stats_of(kv).lock_repairs != r0)
			repaired++;
		if (word(kv) != 0)
			fail_msg("%s lock word %#x after the put", what,
			         word(kv));
		u_expect(kv, k, (size_t)kl, v, (size_t)vl);
		if (r % 50 == 49) {
			expect_fill(kv, "pre", NPRE);
			assert_sound(kv);
		}
	}
	print_message("  %d rounds: %u repaired, %u busy, slowest put %llu "
	              "ms\n", ROUNDS, repaired, busy,
	              (unsigned long long)worst);
	for (int r = 0; r < ROUNDS; r++) {
		char k[32], v[64];
		int kl = snprintf(k, sizeof k, "r%d", r);
		int vl = snprintf(v, sizeof v, "round %d of seed %llu", r,
		                  (unsigned long long)seed);
		u_expect(kv, k, (size_t)kl, v, (size_t)vl);
	}
	assert_usable(kv);
	close_kv(kv);
}

/* ------------------------------------------------------------------------
 * 9. A journal left committed but not applied, under a lock word a reboot
 *    would leave (a dead id, no FUTEX_OWNER_DIED).
 */

static void kid_crash(int i, const char *name)
{
	kv_t *kv = NULL;
	int rc = kv_open(name, KV_RDWR, &kv);
	if (rc != KV_OK)
		kid_fail(i, rc);
	int point = atomic_load(&kids->kid[i].rc);
	atomic_store(&kids->kid[i].state, KID_READY);
	kv__crash_arm(point);
	if (i == 0)
		rc = u_puts(kv, "new", "new value");
	else
		rc = u_puts(kv, "pre3", "replaced");
	kid_fail(i, rc); /* still alive: the point is not on the path */
}

static void test_journal_and_dead_id(void **state)
{
	(void)state;
	const int points[] = {6, 7, 8}; /* after the commit point */

	for (int op = 0; op < 2; op++) {
		for (size_t pi = 0; pi < sizeof points / sizeof points[0];
		     pi++) {
			kv_t *kv = fixture("journal");
			struct kv_journal *j = kv__journal(kv);
			kids_reset();
			atomic_store(&kids->kid[op].rc, points[pi]);
			pid_t p = kid_start(kid_crash, op, name_of(kv));
			kid_reap(p);
			if (atomic_load(&kids->kid[op].state) != KID_READY)
				fail_msg("child did not die at point %d (%s)",
				         points[pi],
				         kv_errname(atomic_load(
				             &kids->kid[op].rc)));
			/* It died holding the lock, in a committed write. */
			assert_int_equal(word(kv) & FUTEX_OWNER_DIED,
			                 FUTEX_OWNER_DIED);
			assert_int_equal(atomic_load(&j->state), KV_J_COMMIT);
			/* As a reboot leaves it: a dead id, not marked. */
			plant_word(kv, NO_TID);
			struct kv_stats s0 = stats_of(kv);

			uint64_t t0 = now_ms();
			int rc = u_puts(kv, "next", "writer");
			assert_quick(t0, "put over a committed journal");
			assert_kv(KV_OK, rc);
			struct kv_stats s1 = stats_of(kv);
			assert_int_equal(s1.lock_repairs, s0.lock_repairs + 1);
			assert_int_equal(s1.recoveries, s0.recoveries + 1);
			assert_int_equal(atomic_load(&j->state), KV_J_IDLE);
			/* Recovery made every bucket even (before any get
			 * could make those on its path even itself). */
			assert_all_even(kv);
			/* The interrupted write is wholly applied. */
			if (op == 0) {
				u_expect_str(kv, "new", "new value");
				assert_int_equal(s1.items, NPRE + 2);
			} else {
				u_expect_str(kv, "pre3", "replaced");
				assert_int_equal(s1.items, NPRE + 1);
			}
			u_expect_str(kv, "next", "writer");
			char k[32], v[64];
			for (int i = 0; i < NPRE; i++) {
				if (op == 1 && i == 3)
					continue;
				int kl = snprintf(k, sizeof k, "pre%d", i);
				int vl = snprintf(v, sizeof v,
				                  "value of pre%d", i);
				u_expect(kv, k, (size_t)kl, v, (size_t)vl);
			}
			assert_all_even(kv);
			assert_sound(kv);
			close_kv(kv);
			h_cleanup();
		}
	}
}

/* ------------------------------------------------------------------------
 * 10. Several processes meet the same stale lock at the same moment.
 */

enum { KID_KEYS = 50 };

static void kid_race(int i, const char *name)
{
	kv_t *kv = NULL;
	int rc = kv_open(name, KV_RDWR, &kv);
	if (rc != KV_OK)
		kid_fail(i, rc);
	atomic_store(&kids->kid[i].state, KID_READY);
	kid_wait_go();
	uint64_t t0 = now_ms();
	for (int n = 0; n < KID_KEYS; n++) {
		char k[32], v[64];
		int kl = snprintf(k, sizeof k, "kid%d.%d", i, n);
		int vl = snprintf(v, sizeof v, "value of kid%d.%d", i, n);
		rc = kv_put(kv, k, (size_t)kl, v, (size_t)vl, NULL);
		if (n == 0)
			atomic_store(&kids->kid[i].first_ms, now_ms() - t0);
		if (rc != KV_OK)
			kid_fail(i, rc);
	}
	atomic_store(&kids->kid[i].total_ms, now_ms() - t0);
	atomic_store(&kids->kid[i].rc, KV_OK);
	atomic_store(&kids->kid[i].state, KID_DONE);
	kv_close(kv);
}

static void test_repairers_race(void **state)
{
	(void)state;
	const char *what[] = {"a dead id", "a dead id, waiters",
	                      "a damaged kind", "not recoverable"};

	/* Each twice: losing the race is a matter of timing. */
	for (int pass = 0; pass < 8; pass++) {
		int round = pass % 4;
		kv_t *kv = fixture("race");
		struct kv_hdr *h = kv__hdr(kv);
		pid_t pids[NKIDS];
		kids_reset();
		for (int i = 0; i < NKIDS; i++)
			pids[i] = kid_start(kid_race, i, name_of(kv));
		for (int i = 0; i < NKIDS; i++)
			kid_await(i, KID_READY);
		switch (round) {
		case 0:
			plant_word(kv, NO_TID);
			break;
		case 1:
			plant_word(kv, NO_TID | FUTEX_WAITERS);
			plant_record(kv, NO_TID, 1);
			break;
		case 2:
			h->mutex.__data.__kind = 0;
			break;
		case 3:
			h->mutex.__data.__owner = INT_MAX - 1;
			break;
		}
		struct kv_stats s0 = stats_of(kv);
		atomic_store(&kids->go, 1);
		for (int i = 0; i < NKIDS; i++) {
			kid_await(i, KID_DONE);
			kid_reap(pids[i]);
		}
		uint64_t slowest = 0;
		for (int i = 0; i < NKIDS; i++) {
			uint64_t ms = atomic_load(&kids->kid[i].total_ms);
			if (ms >= QUICK_MS)
				fail_msg("%s: child %d took %llu ms for its "
				         "puts (first %llu ms)", what[round], i,
				         (unsigned long long)ms,
				         (unsigned long long)atomic_load(
				             &kids->kid[i].first_ms));
			if (ms > slowest)
				slowest = ms;
		}
		print_message("  %s, %d writers at once: slowest %llu ms\n",
		              what[round], NKIDS,
		              (unsigned long long)slowest);
		/* One of them repaired it, once. */
		struct kv_stats s1 = stats_of(kv);
		assert_int_equal(s1.lock_repairs, s0.lock_repairs + 1);
		assert_int_equal(s1.recoveries, s0.recoveries + 1);
		assert_int_equal(s1.items, NPRE + NKIDS * KID_KEYS);
		for (int i = 0; i < NKIDS; i++) {
			char prefix[16];
			snprintf(prefix, sizeof prefix, "kid%d.", i);
			expect_fill(kv, prefix, KID_KEYS);
		}
		assert_usable(kv);
		close_kv(kv);
		h_cleanup();
	}
}

/* ------------------------------------------------------------------------
 * 11. A read-only handle can see the damage but not repair it.
 */

struct reports {
	char text[2048];
	unsigned n;
};

static void collect(void *ctx, const char *problem)
{
	struct reports *r = ctx;
	size_t used = strlen(r->text);
	snprintf(r->text + used, sizeof r->text - used, "%s\n", problem);
	r->n++;
}

static void test_read_only(void **state)
{
	(void)state;
	kv_t *kv = fixture("rdonly");
	struct kv_hdr *h = kv__hdr(kv);
	kv_t *ro = open_kv(name_of(kv), KV_RDONLY);

	plant_word(kv, NO_TID);
	plant_record(kv, NO_TID, 1);
	uint64_t repairs0 = atomic_load(&h->lock_repairs);
	uint64_t recov0 = atomic_load(&h->recoveries);

	/* kv_check says what is wrong, and changes nothing. */
	struct reports rep = {{0}, 0};
	uint64_t t0 = now_ms();
	int rc = kv_check(ro, collect, &rep);
	assert_quick(t0, "read-only kv_check");
	print_message("  read-only kv_check: %s\n  %s", kv_errname(rc),
	              rep.text);
	assert_kv(KV_ECORRUPT, rc);
	assert_true(rep.n >= 1);
	assert_non_null(strstr(rep.text, "lock"));
	assert_int_equal(word(kv), NO_TID);
	assert_int_equal(atomic_load(&h->owner_tid), NO_TID);
	assert_int_equal(atomic_load(&h->lock_repairs), repairs0);
	assert_int_equal(atomic_load(&h->recoveries), recov0);

	/* A bucket left odd by the writer that is gone: a read-only get of
	 * a key there gives up in time; one elsewhere is not held up. */
	const char *key = "pre7";
	struct kv_found f;
	assert_kv(KV_OK, kv__find_locked(kv, kv__hash(kv, key, 4), key, 4,
	                                 &f));
	assert_true(f.item != 0);
	_Atomic uint32_t *seq = &kv__bucket(kv, f.bucket)->seq;
	atomic_store(seq, atomic_load(seq) | 1u);
	char buf[64];
	size_t n = 0;
	t0 = now_ms();
	rc = kv_get(ro, key, 4, buf, sizeof buf, &n);
	uint64_t ms = assert_quick(t0, "read-only get of an odd bucket");
	assert_kv(KV_EBUSY, rc);
	print_message("  read-only get of an odd bucket: KV_EBUSY after %llu "
	              "ms\n", (unsigned long long)ms);
	for (int i = 0; i < NPRE; i++) {
		char k[32], v[64];
		int kl = snprintf(k, sizeof k, "pre%d", i);
		int vl = snprintf(v, sizeof v, "value of pre%d", i);
		uint64_t kh = kv__hash(kv, k, (size_t)kl);
		struct kv_found g;
		assert_kv(KV_OK, kv__find_locked(kv, kh, k, (size_t)kl, &g));
		uint64_t home = kv__home(kv, kh);
		if (kv__bdist(kv, home, f.bucket) <= g.dist)
			continue; /* its probe passes the odd bucket */
		t0 = now_ms();
		u_expect(ro, k, (size_t)kl, v, (size_t)vl);
		if (now_ms() - t0 >= AT_ONCE_MS)
			fail_msg("read-only get of %s waited %llu ms", k,
			         (unsigned long long)(now_ms() - t0));
	}
	assert_true(atomic_load(seq) & 1u);
	assert_int_equal(word(kv), NO_TID);
	assert_kv(KV_ECORRUPT, kv_check(ro, NULL, NULL));

	/* A read-write get repairs both: it breaks the lock, recovers and
	 * makes the bucket even. Then the read-only handle reads it. */
	t0 = now_ms();
	u_expect_str(kv, key, "value of pre7");
	assert_quick(t0, "read-write get of an odd bucket");
	assert_int_equal(atomic_load(&h->lock_repairs), repairs0 + 1);
	assert_int_equal(atomic_load(&h->recoveries), recov0 + 1);
	assert_int_equal(atomic_load(seq) & 1u, 0);
	u_expect_str(ro, key, "value of pre7");
	assert_usable(kv);
	memset(&rep, 0, sizeof rep);
	assert_kv(KV_OK, kv_check(ro, collect, &rep));
	close_kv(ro);
	close_kv(kv);
}

/* ------------------------------------------------------------------------ */

static int lock_teardown(void **state)
{
	kv__set_test_boot_tag(0);
	for (int i = 0; i < MAX_HANDLES; i++)
		if (handles[i] != NULL)
			close_kv(handles[i]);
	return h_teardown(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_other_boot, lock_teardown),
		cmocka_unit_test_teardown(test_tid_never_existed,
		                          lock_teardown),
		cmocka_unit_test_teardown(test_exited_without_robust_list,
		                          lock_teardown),
		cmocka_unit_test_teardown(test_tid_reused, lock_teardown),
		cmocka_unit_test_teardown(test_live_holder, lock_teardown),
		cmocka_unit_test_teardown(test_unsure_holder, lock_teardown),
		cmocka_unit_test_teardown(test_own_tid, lock_teardown),
		cmocka_unit_test_teardown(test_damaged_kind, lock_teardown),
		cmocka_unit_test_teardown(test_damaged_kind_elision,
		                          lock_teardown),
		cmocka_unit_test_teardown(test_not_recoverable, lock_teardown),
		cmocka_unit_test_teardown(test_damage_random, lock_teardown),
		cmocka_unit_test_teardown(test_journal_and_dead_id,
		                          lock_teardown),
		cmocka_unit_test_teardown(test_repairers_race, lock_teardown),
		cmocka_unit_test_teardown(test_read_only, lock_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
