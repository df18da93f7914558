/*
 * test_lifecycle.c - a store's life as the processes attached to it see it,
 * and the writer lock of a store whose last writer is gone.
 *
 * Destroyed stores. kv destroy (kv_destroy) marks a store dead before it
 * unlinks it, and kvd marks a store dead when it finds its file removed by
 * other means. Every handle still attached then gets KV_EDESTROYED from its
 * next call: never the old data, never a way into the new store that took
 * the name. kvd stops when its store goes. A store whose destroyer died
 * between marking and unlinking keeps its name but is refused (kv, kvd,
 * kv_open, kv_create) until kv destroy finishes the job.
 *
 * Stale locks. A writer lock whose word names a thread that no longer
 * exists, or that was taken on a previous boot of a file-backed store, is
 * repaired by the next writer (kv put, kv check) or by kvd, so no command
 * waits out its lock timeout. The damage is made by writing the store's
 * bytes at the offsets the format pins (see the static_asserts below),
 * exactly as a killed process or a power loss would leave them.
 *
 * Every command that the issue says must not hang is run with a timeout
 * and its duration asserted below LIMIT_MS.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "storeutil.h"
#include "daemon.h"
#include "format.h"
#include "kv.h"

#define SIZE "4M"
#define FILE_SIZE "8M"
#define LIMIT_MS 2000   /* what the issue allows a command */
#define WAIT_MS 5000    /* past this a command has hung: kill it */

/* The header words these tests write, as the format pins them. */
#define OFF_LIFE 0x068u
#define OFF_LOCK 0x080u /* the mutex; its first 32 bits are the futex word */
#define OFF_DAEMON_PID 0x0c0u
#define OFF_OWNER_TID 0x0c4u
#define OFF_OWNER_START 0x0d0u
#define OFF_OWNER_PIDNS 0x0d8u
#define OFF_BOOT_TAG 0x0e0u
#define LIFE_DEAD (UINT64_C(1) << 63)
static_assert(offsetof(struct kv_hdr, life) == OFF_LIFE, "format");
static_assert(offsetof(struct kv_hdr, mutex) == OFF_LOCK, "format");
static_assert(offsetof(struct kv_hdr, daemon_pid) == OFF_DAEMON_PID, "format");
static_assert(offsetof(struct kv_hdr, owner_tid) == OFF_OWNER_TID, "format");
static_assert(offsetof(struct kv_hdr, owner_start) == OFF_OWNER_START,
              "format");
static_assert(offsetof(struct kv_hdr, owner_pidns) == OFF_OWNER_PIDNS,
              "format");
static_assert(offsetof(struct kv_hdr, boot_tag) == OFF_BOOT_TAG, "format");
static_assert(KV_LIFE_DEAD == LIFE_DEAD, "format");
/* glibc's holder field (__data.__owner), set alongside the futex word
 * when a robust mutex is really held. */
#define OFF_MUTEX_OWNER                                                        \
	(OFF_LOCK + (unsigned)offsetof(pthread_mutex_t, __data.__owner))

/* A thread id that no thread has: above any pid_max (2^22), within the
 * futex word's tid bits. */
#define NO_SUCH_TID 0x3ffffff0u

/* ------------------------------------------------------------------------
 * Helpers
 */

static long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* Run `prog -s store ARGS...` (args end with NULL), kill it if it runs
 * past WAIT_MS, and fail unless it finished within limit_ms (0: no
 * limit). Returns how long it took. */
static long long timed_v(struct h_result *r, const char *prog,
                         long long limit_ms, const char *store, va_list ap)
{
	const char *argv[24] = {prog, "-s", store};
	const char *a;
	struct h_proc *p;
	long long t0, took;
	int n = 3;

	while ((a = va_arg(ap, const char *)) != NULL) {
		assert_true(n < 23);
		argv[n++] = a;
	}
	argv[n] = NULL;
	t0 = mono_ms();
	p = h_start(argv, NULL);
	if (!h_wait(p, WAIT_MS, r)) {
		h_dump(r);
		fail_msg("hung: killed after %d ms", WAIT_MS);
	}
	took = mono_ms() - t0;
	if (limit_ms > 0 && took >= limit_ms) {
		h_dump(r);
		fail_msg("took %lld ms (the limit is %lld ms)", took, limit_ms);
	}
	return took;
}

static long long kv_timed(struct h_result *r, long long limit_ms,
                          const char *store, ...)
{
	va_list ap;
	long long took;

	va_start(ap, store);
	took = timed_v(r, h_kv_bin(), limit_ms, store, ap);
	va_end(ap);
	return took;
}

static long long kvd_timed(struct h_result *r, long long limit_ms,
                           const char *store, ...)
{
	va_list ap;
	long long took;

	h_register_store(store);
	va_start(ap, store);
	took = timed_v(r, h_kvd_bin(), limit_ms, store, ap);
	va_end(ap);
	return took;
}

/* kv -s store ARGS... within LIMIT_MS: KVT(&r, store, "put", "k", "v"). */
#define KVT(r, store, ...) kv_timed((r), LIMIT_MS, (store), __VA_ARGS__, NULL)

static void put_ok(const char *store, const char *key, const char *val)
{
	struct h_result r;

	KVT(&r, store, "put", key, val);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
}

static void get_is(const char *store, const char *key, const char *val)
{
	struct h_result r;

	KVT(&r, store, "get", key);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, val);
	h_result_free(&r);
}

/* kv check: exit 0, stdout exactly want. */
static void check_says(const char *store, const char *want)
{
	struct h_result r;

	KVT(&r, store, "check");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, want);
	h_result_free(&r);
}

static void stop_kvd(struct h_proc *p)
{
	struct h_result r;

	if (!h_stop(p, SIGTERM, H_TIMEOUT_MS, &r)) {
		h_dump(&r);
		fail_msg("kvd did not stop on SIGTERM");
	}
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
}

/* Wait up to timeout_ms for kvd's stderr to contain needle. */
static void kvd_logs(struct h_proc *p, const char *needle, int timeout_ms)
{
	long long end = mono_ms() + timeout_ms;

	for (;;) {
		size_t len;
		char *err = h_read_err(p, &len);
		bool found = strstr(err, needle) != NULL;

		if (found) {
			h_free(err);
			return;
		}
		if (mono_ms() >= end) {
			print_error("kvd's stderr so far:\n%s\n", err);
			fail_msg("kvd did not log \"%s\" within %d ms", needle,
			         timeout_ms);
		}
		h_free(err);
		sleep_ms(5);
	}
}

/* The file behind a store, copied (h_shm_path's string is reused). */
static const char *store_file(const char *store)
{
	static char path[4][512];
	static int next;
	char *p = path[next++ % 4];

	snprintf(p, sizeof path[0], "%s",
	         strchr(store, '/') != NULL ? store : h_shm_path(store));
	return p;
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static void poke(const char *store, unsigned off, const void *v, size_t n)
{
	const char *path = store_file(store);
	int fd = open(path, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		fail_msg("open %s: %s", path, strerror(errno));
	if (pwrite(fd, v, n, off) != (ssize_t)n)
		fail_msg("pwrite %s at %#x: %s", path, off, strerror(errno));
	close(fd);
}

static void peek(const char *store, unsigned off, void *v, size_t n)
{
	const char *path = store_file(store);
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		fail_msg("open %s: %s", path, strerror(errno));
	if (pread(fd, v, n, off) != (ssize_t)n)
		fail_msg("pread %s at %#x: %s", path, off, strerror(errno));
	close(fd);
}

static void poke32(const char *store, unsigned off, uint32_t v)
{
	poke(store, off, &v, sizeof v);
}

static void poke64(const char *store, unsigned off, uint64_t v)
{
	poke(store, off, &v, sizeof v);
}

static uint32_t peek32(const char *store, unsigned off)
{
	uint32_t v;

	peek(store, off, &v, sizeof v);
	return v;
}

static uint64_t peek64(const char *store, unsigned off)
{
	uint64_t v;

	peek(store, off, &v, sizeof v);
	return v;
}

/* What a kv destroy killed between marking and unlinking leaves. */
static void mark_dead_by_hand(const char *store)
{
	poke64(store, OFF_LIFE, peek64(store, OFF_LIFE) | LIFE_DEAD);
}

/* This boot as the store records it: the first 16 hex digits of the
 * boot id as a 64-bit number. */
static uint64_t this_boot_tag(void)
{
	char buf[64] = {0};
	uint64_t tag = 0;
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY), digits = 0;

	if (fd < 0 || read(fd, buf, sizeof buf - 1) <= 0)
		fail_msg("cannot read the boot id: %s", strerror(errno));
	close(fd);
	for (const char *s = buf; *s != '\0' && digits < 16; s++) {
		int v = *s >= '0' && *s <= '9'   ? *s - '0'
		        : *s >= 'a' && *s <= 'f' ? *s - 'a' + 10
		                                 : -1;
		if (v < 0)
			continue;
		tag = tag << 4 | (uint64_t)v;
		digits++;
	}
	assert_int_equal(digits, 16);
	return tag;
}

/* Start time of a process's main thread, in clock ticks since boot
 * (field 22 of /proc/PID/task/PID/stat). */
static uint64_t start_ticks(pid_t pid)
{
	char path[64], buf[1024] = {0};
	unsigned long long v;
	char *p;
	int fd;

	snprintf(path, sizeof path, "/proc/%ld/task/%ld/stat", (long)pid,
	         (long)pid);
	fd = open(path, O_RDONLY);
	if (fd < 0 || read(fd, buf, sizeof buf - 1) <= 0)
		fail_msg("%s: %s", path, strerror(errno));
	close(fd);
	p = strrchr(buf, ')');
	assert_non_null(p);
	p += 2; /* field 3 */
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		assert_non_null(p);
		p++;
	}
	assert_int_equal(sscanf(p, "%llu", &v), 1);
	return v;
}

static uint32_t my_pidns(void)
{
	struct stat st;

	if (stat("/proc/self/ns/pid", &st) != 0)
		fail_msg("/proc/self/ns/pid: %s", strerror(errno));
	return (uint32_t)st.st_ino;
}

/* A pid that no process has now: one we just reaped. */
static pid_t reaped_pid(void)
{
	const char *argv[] = {"true", NULL};
	struct h_proc *p = h_start(argv, NULL);
	pid_t pid = p->pid;
	struct h_result r;

	assert_true(h_wait(p, H_TIMEOUT_MS, &r));
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	return pid;
}

/* A file-backed store "DIR/store" in a fresh directory. */
static const char *file_store(const char *tag)
{
	static char path[4][512];
	static int next;
	char *p = path[next++ % 4];

	snprintf(p, sizeof path[0], "%s/store", h_tmpdir(tag));
	h_register_store(p);
	return p;
}

static kv_t *open_ro(const char *store)
{
	kv_t *kv = NULL;
	int rc = kv_open(store, KV_RDONLY, &kv);

	if (rc != KV_OK)
		fail_msg("kv_open %s read-only: %s", store, kv_strerror(rc));
	return kv;
}

/* Handles a test keeps across assertions: a failed assertion longjmps past
 * the test's own kv_close, so teardown() closes what is left. */
static kv_t *kept[64];

static kv_t *keep(kv_t *kv)
{
	for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++)
		if (kept[i] == NULL)
			return kept[i] = kv;
	fail_msg("too many handles kept");
	return kv;
}

static void drop(kv_t *kv)
{
	for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++)
		if (kept[i] == kv)
			kept[i] = NULL;
	kv_close(kv);
}

static int teardown(void **state)
{
	for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
		kv_close(kept[i]);
		kept[i] = NULL;
	}
	return h_teardown(state);
}

#define ASSERT_STATUS(got, want)                                               \
	do {                                                                   \
		int got_ = (got), want_ = (want);                              \
		if (got_ != want_)                                             \
			fail_msg("%s: %s (%d), want %s", #got,                 \
			         kv_errname(got_), got_, kv_errname(want_));   \
	} while (0)

/* ------------------------------------------------------------------------
 * Calls on a handle whose store was destroyed
 */

#define OLD_VALUE "old-value-of-k"

enum op {
	OP_GET, OP_GET_VERSION, OP_MGET, OP_TTL, OP_SCAN, OP_STATS, OP_CHECK,
	OP_PUT, OP_DEL, OP_INCR, OP_FLUSH, NOPS
};
#define FIRST_WRITE OP_PUT

static const char *const op_name[NOPS] = {
	"kv_get", "kv_get_version", "kv_mget", "kv_ttl", "kv_scan",
	"kv_stats", "kv_check", "kv_put", "kv_del", "kv_incr", "kv_flush",
};

static int count_visit(void *ctx, const void *key, size_t klen)
{
	(void)key;
	(void)klen;
	++*(unsigned *)ctx;
	return 0;
}

static void count_problem(void *ctx, const char *problem)
{
	(void)problem;
	++*(unsigned *)ctx;
}

static bool has_old_value(const char *buf, size_t n)
{
	return memmem(buf, n, OLD_VALUE, strlen(OLD_VALUE)) != NULL;
}

/* Make one call of kind op on kv and return its status. Fails the test if
 * the call handed out anything of the old store: its value, a key. */
static int call_op(kv_t *kv, enum op op)
{
	char buf[64], buf2[64];
	size_t vlen = 0;
	uint64_t version = 0, cursor = 0, removed = 0;
	int64_t ttl = 0, n = 0;
	unsigned visits = 0, problems = 0;
	struct kv_stats st;
	int rc;

	memset(buf, 0x5a, sizeof buf);
	memset(buf2, 0x5a, sizeof buf2);
	switch (op) {
	case OP_GET:
		rc = kv_get(kv, "k", 1, buf, sizeof buf, &vlen);
		break;
	case OP_GET_VERSION:
		rc = kv_get_version(kv, "k", 1, buf, sizeof buf, &vlen,
		                    &version);
		break;
	case OP_MGET: {
		struct kv_getv v[2] = {
			{.key = "k", .klen = 1, .buf = buf, .cap = sizeof buf,
			 .status = 12345},
			{.key = "absent", .klen = 6, .buf = buf2,
			 .cap = sizeof buf2, .status = 12345},
		};

		rc = kv_mget(kv, v, 2);
		/* The call itself succeeds; each entry says why it got
		 * nothing, and both say the same. */
		if (rc != KV_OK)
			fail_msg("kv_mget: %s", kv_errname(rc));
		if (v[1].status != v[0].status)
			fail_msg("kv_mget: entry statuses %s and %s differ",
			         kv_errname(v[0].status),
			         kv_errname(v[1].status));
		rc = v[0].status;
		break;
	}
	case OP_TTL:
		rc = kv_ttl(kv, "k", 1, &ttl);
		break;
	case OP_SCAN:
		rc = kv_scan(kv, &cursor, 1u << 20, count_visit, &visits);
		if (visits != 0)
			fail_msg("kv_scan visited %u key(s) of a dead store",
			         visits);
		break;
	case OP_STATS:
		rc = kv_stats(kv, &st);
		break;
	case OP_CHECK:
		rc = kv_check(kv, count_problem, &problems);
		break;
	case OP_PUT:
		rc = kv_put(kv, "k", 1, "zombie", 6, NULL);
		break;
	case OP_DEL:
		rc = kv_del(kv, "k", 1);
		break;
	case OP_INCR:
		rc = kv_incr(kv, "n", 1, 1, &n);
		break;
	case OP_FLUSH:
		rc = kv_flush(kv, &removed);
		break;
	default:
		fail_msg("no op %d", (int)op);
		return 0;
	}
	if (has_old_value(buf, sizeof buf) || has_old_value(buf2, sizeof buf2))
		fail_msg("%s returned the old store's value", op_name[op]);
	return rc;
}

/* The first call of each kind on its own handle, then every kind again on
 * one handle: all KV_EDESTROYED. */
static void expect_dead(kv_t *const *kvs, const char *which, enum op from,
                        enum op to)
{
	for (int op = from; op < (int)to; op++) {
		int rc = call_op(kvs[op], (enum op)op);

		if (rc != KV_EDESTROYED)
			fail_msg("first %s on the old %s handle: %s (%d), want "
			         "KV_EDESTROYED", op_name[op], which,
			         kv_errname(rc), rc);
	}
	for (int round = 0; round < 2; round++)
		for (int op = from; op < (int)to; op++) {
			int rc = call_op(kvs[from], (enum op)op);

			if (rc != KV_EDESTROYED)
				fail_msg("%s on the old %s handle, after other "
				         "calls: %s (%d), want KV_EDESTROYED",
				         op_name[op], which, kv_errname(rc),
				         rc);
		}
}

/* Store s served by a kvd, with k = OLD_VALUE and n = 41 put through the
 * library; one read-write and one read-only handle per kind of call,
 * attached before the store is destroyed with `kv destroy --yes`. Then a
 * new kvd makes s again and k = new is put through the CLI. Returns the
 * new kvd. */
static struct h_proc *destroy_and_recreate(const char *s, kv_t **rw,
                                           kv_t **ro)
{
	struct h_proc *p;
	struct h_result r;
	char *v;
	size_t vlen;

	p = h_kvd(s, "--size", SIZE, NULL);
	for (int i = 0; i < NOPS; i++) {
		rw[i] = keep(attach(s));
		ro[i] = keep(open_ro(s));
	}
	lib_put(rw[0], "k", 1, OLD_VALUE, strlen(OLD_VALUE), 0);
	lib_put(rw[0], "n", 1, "41", 2, 0);
	/* Before: every handle sees the old store. */
	for (int i = 0; i < NOPS; i++) {
		v = get_value(ro[i], "k", 1, &vlen);
		assert_non_null(v);
		assert_int_equal(vlen, strlen(OLD_VALUE));
		free(v);
	}

	KVT(&r, s, "destroy", "--yes");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	assert_false(exists(store_file(s)));
	/* Its kvd goes with it (test_kvd_stops_when_destroyed times it). */
	assert_true(h_wait(p, H_TIMEOUT_MS, &r));
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);

	p = h_kvd(s, "--size", SIZE, NULL);
	kvd_logs(p, "created store", 1000);
	put_ok(s, "k", "new");
	put_ok(s, "n", "7");
	return p;
}

/* The new store holds exactly what the CLI put after the recreation:
 * nothing any old handle did reached it. */
static void new_store_untouched(const char *s)
{
	kv_t *kv;
	struct kv_stats st;
	char *v;
	size_t vlen;

	get_is(s, "k", "new");
	get_is(s, "n", "7");
	kv = keep(attach(s));
	v = get_value(kv, "k", 1, &vlen);
	assert_non_null(v);
	assert_int_equal(vlen, 3);
	assert_memory_equal(v, "new", 3);
	free(v);
	assert_int_equal(kv_stats(kv, &st), KV_OK);
	assert_int_equal(st.items, 2);
	assert_int_equal(st.puts, 2);
	assert_int_equal(st.deletes, 0);
	drop(kv);
}

/* A. A store destroyed with kv destroy and made again by a new kvd: every
 * call on handles attached to the old one returns KV_EDESTROYED from the
 * first, gives none of the old data and changes nothing in the new one,
 * which a new kv_open sees. */
static void test_destroyed_store_noticed(void **state)
{
	const char *s = h_store_name("destroyed");
	kv_t *rw[NOPS], *ro[NOPS];

	(void)state;
	destroy_and_recreate(s, rw, ro);
	expect_dead(rw, "read-write", 0, NOPS);
	expect_dead(ro, "read-only", 0, FIRST_WRITE);
	new_store_untouched(s);
	for (int i = 0; i < NOPS; i++) {
		drop(rw[i]);
		drop(ro[i]);
	}
}

/* A, continued: a read-only handle's writes, and kv_class_stats, on a dead
 * store. "Every call on a handle attached to a dead store returns
 * KV_EDESTROYED" (kv.h: the handle is dead for good), so a caller learns
 * to attach again whatever it calls first, rather than that the handle is
 * read-only, or the old store's figures. */
static void test_destroyed_store_every_call(void **state)
{
	const char *s = h_store_name("destroyed-all");
	kv_t *rw[NOPS], *ro[NOPS];
	struct kv_class_stats cs;

	char bad[1024] = "";
	int rc;

	(void)state;
	destroy_and_recreate(s, rw, ro);
	/* Every deviation is listed, not just the first. */
	for (int op = FIRST_WRITE; op < NOPS; op++) {
		rc = call_op(ro[op], (enum op)op);
		if (rc != KV_EDESTROYED)
			snprintf(bad + strlen(bad), sizeof bad - strlen(bad),
			         "\n  %s on the old read-only handle: %s",
			         op_name[op], kv_errname(rc));
	}
	for (int i = 0; i < 2; i++) {
		rc = kv_class_stats(i == 0 ? rw[0] : ro[0], 0, &cs);
		if (rc != KV_EDESTROYED)
			snprintf(bad + strlen(bad), sizeof bad - strlen(bad),
			         "\n  kv_class_stats on the old %s handle: %s",
			         i == 0 ? "read-write" : "read-only",
			         kv_errname(rc));
	}
	if (bad[0] != '\0')
		fail_msg("calls on a dead store that did not return "
		         "KV_EDESTROYED:%s", bad);
	new_store_untouched(s);
	for (int i = 0; i < NOPS; i++) {
		drop(rw[i]);
		drop(ro[i]);
	}
}

/* B. The handle kv_create gave a store's creator: the store is destroyed
 * with the CLI and made again with kv_create, once by another process and
 * once by this one; the creator's handle gets KV_EDESTROYED, and its calls
 * reach neither the old data nor the new store. */
static void test_creator_handle_after_recreate(void **state)
{
	const char *s = h_store_name("recreated");
	struct kv_options o = {.size = 4u << 20};
	kv_t *creator = NULL, *again = NULL;
	struct kv_stats st;
	struct h_result r;
	char buf[64];
	size_t vlen = 0;
	pid_t pid;
	int status;

	(void)state;
	ASSERT_STATUS(kv_create(s, &o, &creator), KV_OK);
	keep(creator);
	lib_put(creator, "k", 1, OLD_VALUE, strlen(OLD_VALUE), 0);

	for (int round = 0; round < 2; round++) {
		KVT(&r, s, "destroy", "--yes");
		H_ASSERT_EXIT(&r, 0);
		h_result_free(&r);
		if (round == 0) {
			/* Made again by another process. */
			pid = fork();
			assert_true(pid >= 0);
			if (pid == 0) {
				kv_t *kv = NULL;
				int ok = kv_create(s, &o, &kv) == KV_OK &&
				         kv_put(kv, "k", 1, "new", 3, NULL) ==
				             KV_OK;

				kv_close(kv);
				_exit(ok ? 0 : 1);
			}
			assert_int_equal(waitpid(pid, &status, 0), pid);
			assert_true(WIFEXITED(status));
			assert_int_equal(WEXITSTATUS(status), 0);
		} else {
			/* Made again by this very process. */
			ASSERT_STATUS(kv_create(s, &o, &again), KV_OK);
			keep(again);
			lib_put(again, "k", 1, "new", 3, 0);
		}

		memset(buf, 0, sizeof buf);
		ASSERT_STATUS(kv_get(creator, "k", 1, buf, sizeof buf, &vlen),
		              KV_EDESTROYED);
		assert_false(has_old_value(buf, sizeof buf));
		ASSERT_STATUS(kv_put(creator, "k", 1, "zombie", 6, NULL),
		              KV_EDESTROYED);
		ASSERT_STATUS(kv_put(creator, "other", 5, "zombie", 6, NULL),
		              KV_EDESTROYED);
		ASSERT_STATUS(kv_del(creator, "k", 1), KV_EDESTROYED);
		ASSERT_STATUS(kv_stats(creator, &st), KV_EDESTROYED);

		get_is(s, "k", "new");
		KVT(&r, s, "get", "other");
		H_ASSERT_EXIT(&r, 1);
		h_result_free(&r);
	}
	/* The handle of the second creation is alive and well. */
	ASSERT_STATUS(kv_stats(again, &st), KV_OK);
	assert_int_equal(st.items, 1);
	drop(again);
	drop(creator);
}

struct unlinker {
	const char *store;
	long delay_ms;
};

static void *unlink_later(void *arg)
{
	const struct unlinker *u = arg;

	sleep_ms(u->delay_ms);
	(void)kv_destroy(u->store);
	return NULL;
}

/* kv_open and kv_create of a store marked dead whose name is still there:
 * kv_open refuses at once; kv_create waits about a second for the name to
 * go, then refuses; if the name goes meanwhile, it makes a new store. */
static void test_create_waits_for_dead_name(void **state)
{
	const char *s = h_store_name("dead-wait");
	struct kv_options o = {.size = 4u << 20};
	struct unlinker u = {s, 200};
	kv_t *kv = NULL;
	pthread_t t;
	long long t0, took;
	size_t vlen;

	(void)state;
	ASSERT_STATUS(kv_create(s, &o, &kv), KV_OK);
	keep(kv);
	lib_put(kv, "k", 1, OLD_VALUE, strlen(OLD_VALUE), 0);
	drop(kv);
	mark_dead_by_hand(s);

	t0 = mono_ms();
	ASSERT_STATUS(kv_open(s, KV_RDONLY, &kv), KV_EDESTROYED);
	assert_null(kv);
	ASSERT_STATUS(kv_open(s, KV_RDWR, &kv), KV_EDESTROYED);
	assert_null(kv);
	took = mono_ms() - t0;
	if (took > 200)
		fail_msg("kv_open of a dead store took %lld ms", took);

	t0 = mono_ms();
	ASSERT_STATUS(kv_create(s, &o, &kv), KV_EDESTROYED);
	assert_null(kv);
	took = mono_ms() - t0;
	if (took < 800 || took >= LIMIT_MS)
		fail_msg("kv_create of a dead store gave up after %lld ms, "
		         "want about 1 s", took);
	assert_true(exists(store_file(s)));

	/* The name goes 200 ms into the wait: a fresh store, not the old. */
	assert_int_equal(pthread_create(&t, NULL, unlink_later, &u), 0);
	t0 = mono_ms();
	ASSERT_STATUS(kv_create(s, &o, &kv), KV_OK);
	keep(kv);
	took = mono_ms() - t0;
	pthread_join(t, NULL);
	if (took < 150 || took >= 1000)
		fail_msg("kv_create took %lld ms; the name went after 200",
		         took);
	assert_null(get_value(kv, "k", 1, &vlen));
	lib_put(kv, "k", 1, "new", 3, 0);
	drop(kv);
	get_is(s, "k", "new");
}

/* C. kvd stops, exit 0, within a second of its store being destroyed with
 * kv destroy, saying so. */
static void test_kvd_stops_when_destroyed(void **state)
{
	const char *s = h_store_name("kvd-destroyed");
	struct h_proc *p;
	struct h_result r;
	kv_t *ro;
	char line[600];
	char buf[64];
	size_t vlen;
	long long t0, took;

	(void)state;
	p = h_kvd(s, "--size", SIZE, NULL);
	put_ok(s, "k", OLD_VALUE);
	ro = keep(open_ro(s));

	t0 = mono_ms();
	KVT(&r, s, "destroy", "--yes");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	if (!h_wait(p, 3000, &r)) {
		h_dump(&r);
		fail_msg("kvd still runs 3 s after its store was destroyed");
	}
	took = mono_ms() - t0;
	H_ASSERT_EXIT(&r, 0);
	snprintf(line, sizeof line, "store '%s': %s was destroyed; stopping",
	         s, store_file(s));
	H_ASSERT_ERR_HAS(&r, line);
	h_result_free(&r);
	if (took >= 1000)
		fail_msg("kvd stopped %lld ms after kv destroy", took);

	ASSERT_STATUS(kv_get(ro, "k", 1, buf, sizeof buf, &vlen),
	              KV_EDESTROYED);
	drop(ro);
	/* kvd did not keep or make anything on its way out. */
	assert_false(exists(store_file(s)));
	KVT(&r, s, "get", "k");
	H_ASSERT_FAILS(&r, 2, "kv: ", "store does not exist");
	h_result_free(&r);
}

/* C, continued: the store's file removed with unlink(2), not kv destroy,
 * for a named store and a file-backed one, and each again with a new store
 * made under the name at once, before kvd's next tick. kvd finds its store
 * gone, marks it dead for the handles still attached (its own store, never
 * the new one), says so and stops; those handles then get KV_EDESTROYED. */
static void test_kvd_stops_when_unlinked(void **state)
{
	(void)state;
	for (int i = 0; i < 4; i++) {
		bool file = i % 2 != 0, taken = i >= 2;
		const char *s = file ? file_store("unlinked")
		                     : h_store_name("kvd-unlinked");
		struct kv_options o = {.size = (file ? 8u : 4u) << 20};
		struct h_proc *p;
		struct h_result r;
		kv_t *ro, *rw, *fresh = NULL;
		char line[600], buf[64];
		size_t vlen;
		long long t0, took;

		p = h_kvd(s, "--size", file ? FILE_SIZE : SIZE, NULL);
		put_ok(s, "k", OLD_VALUE);
		ro = keep(open_ro(s));
		rw = keep(attach(s));

		t0 = mono_ms();
		if (unlink(store_file(s)) != 0)
			fail_msg("unlink %s: %s", store_file(s),
			         strerror(errno));
		if (taken) {
			ASSERT_STATUS(kv_create(s, &o, &fresh), KV_OK);
			keep(fresh);
			lib_put(fresh, "k", 1, "new", 3, 0);
		}
		if (!h_wait(p, 3000, &r)) {
			h_dump(&r);
			fail_msg("kvd still runs 3 s after %s was removed",
			         store_file(s));
		}
		took = mono_ms() - t0;
		H_ASSERT_EXIT(&r, 0);
		snprintf(line, sizeof line,
		         "store '%s': %s was removed; stopping", s,
		         store_file(s));
		H_ASSERT_ERR_HAS(&r, line);
		h_result_free(&r);
		if (took >= 1000)
			fail_msg("kvd stopped %lld ms after the unlink", took);

		memset(buf, 0, sizeof buf);
		ASSERT_STATUS(kv_get(ro, "k", 1, buf, sizeof buf, &vlen),
		              KV_EDESTROYED);
		ASSERT_STATUS(kv_get(rw, "k", 1, buf, sizeof buf, &vlen),
		              KV_EDESTROYED);
		assert_false(has_old_value(buf, sizeof buf));
		ASSERT_STATUS(kv_put(rw, "k", 1, "zombie", 6, NULL),
		              KV_EDESTROYED);
		drop(ro);
		drop(rw);
		if (!taken) {
			assert_false(exists(store_file(s)));
			continue;
		}
		/* The new store lives on, untouched. */
		memset(buf, 0, sizeof buf);
		ASSERT_STATUS(kv_get(fresh, "k", 1, buf, sizeof buf, &vlen),
		              KV_OK);
		assert_int_equal(vlen, 3);
		assert_memory_equal(buf, "new", 3);
		drop(fresh);
		get_is(s, "k", "new");
		put_ok(s, "k2", "v2");
	}
}

/* D. A store marked dead whose name remains, as a kv destroy killed
 * between marking and unlinking leaves it: by writing the life word (a
 * named store), and through kv__mark_dead (a file-backed one). kv refuses
 * it with one line, kvd refuses to start within ~2 s, kv destroy removes
 * it, and then kvd makes a fresh store. */
static void test_dead_name_remains(void **state)
{
	const char *stores[2];

	(void)state;
	stores[0] = h_store_name("dead-name");
	stores[1] = file_store("deadname");
	for (int i = 0; i < 2; i++) {
		const char *s = stores[i];
		const char *size = i == 0 ? SIZE : FILE_SIZE;
		struct h_proc *p;
		struct h_result r;
		kv_t *kv;

		p = h_kvd(s, "--size", size, NULL);
		put_ok(s, "k", OLD_VALUE);
		stop_kvd(p);
		if (i == 0) {
			mark_dead_by_hand(s);
		} else {
			kv = attach(s);
			kv__mark_dead(kv);
			kv_close(kv);
		}
		assert_true((peek64(s, OFF_LIFE) & LIFE_DEAD) != 0);

		KVT(&r, s, "get", "k");
		H_ASSERT_FAILS(&r, 2, "kv: ", "store was destroyed");
		assert_int_equal(r.out_len, 0);
		h_result_free(&r);
		KVT(&r, s, "put", "k", "v");
		H_ASSERT_FAILS(&r, 2, "kv: ", "store was destroyed");
		h_result_free(&r);

		kvd_timed(&r, LIMIT_MS, s, "--size", size, NULL);
		H_ASSERT_EXIT(&r, 2);
		H_ASSERT_ERR_LINE(&r, "kvd: ");
		H_ASSERT_ERR_HAS(&r, "destroyed");
		h_result_free(&r);
		/* Refused, and left for kv destroy to remove. */
		assert_true(exists(store_file(s)));

		KVT(&r, s, "destroy", "--yes");
		H_ASSERT_EXIT(&r, 0);
		h_result_free(&r);
		assert_false(exists(store_file(s)));

		p = h_kvd(s, "--size", size, NULL);
		kvd_logs(p, "created store", 1000);
		KVT(&r, s, "get", "k");
		H_ASSERT_EXIT(&r, 1);
		h_result_free(&r);
		put_ok(s, "k", "new");
		get_is(s, "k", "new");
		stop_kvd(p);
	}
}

/* ------------------------------------------------------------------------
 * Stale writer locks
 */

/* A file-backed store made by kvd with keys k0..k{n-1} = v0.., kvd
 * stopped: the lock free, the boot this one. */
static void make_file_store(const char *s, int n)
{
	struct h_proc *p = h_kvd(s, "--size", FILE_SIZE, NULL);

	for (int i = 0; i < n; i++) {
		char k[16], v[16];

		snprintf(k, sizeof k, "k%d", i);
		snprintf(v, sizeof v, "v%d", i);
		put_ok(s, k, v);
	}
	stop_kvd(p);
	assert_int_equal(peek32(s, OFF_LOCK) & FUTEX_TID_MASK, 0);
	assert_true(peek64(s, OFF_BOOT_TAG) == this_boot_tag());
	assert_int_equal(peek64(s, OFF_LIFE), 0);
}

static void all_keys_there(const char *s, int n)
{
	for (int i = 0; i < n; i++) {
		char k[16], v[16];

		snprintf(k, sizeof k, "k%d", i);
		snprintf(v, sizeof v, "v%d", i);
		get_is(s, k, v);
	}
}

/* E. The reproduction: the lock word names a thread that does not
 * exist. kv put breaks it at once, kv get and kv check then work; kv check
 * as the first command repairs it and says so; kvd started on it repairs
 * it at adoption or on its first ticks, and logs it. */
static void test_stale_lock_cli(void **state)
{
	const char *s = file_store("stalelock");
	struct h_proc *p;
	struct h_result r;
	char line[600];

	(void)state;
	make_file_store(s, 3);

	poke32(s, OFF_LOCK, NO_SUCH_TID);
	put_ok(s, "after", "1");
	all_keys_there(s, 3);
	get_is(s, "after", "1");
	check_says(s, "ok\n");
	assert_int_equal(peek32(s, OFF_LOCK) & FUTEX_TID_MASK, 0);

	/* kv check first: it repairs, as any writer does, and tells. This
	 * time writers were asleep on the lock when its holder went. */
	poke32(s, OFF_LOCK, NO_SUCH_TID | FUTEX_WAITERS);
	KVT(&r, s, "check");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "repaired: broke a stale writer lock: ");
	H_ASSERT_OUT_HAS(&r, "\nok\n");
	h_result_free(&r);
	check_says(s, "ok\n");

	/* A pid we just reaped, and kvd started on it. */
	poke32(s, OFF_LOCK, (uint32_t)reaped_pid());
	p = h_kvd(s, "--size", FILE_SIZE, NULL);
	snprintf(line, sizeof line, "store '%s': broke a stale writer lock: ",
	         s);
	kvd_logs(p, line, 1000);
	put_ok(s, "served", "2");
	all_keys_there(s, 3);
	get_is(s, "served", "2");
	check_says(s, "ok\n");
	assert_true(h_alive(p->pid));
	stop_kvd(p);
}

/* Leave the store as a power loss and a reboot would: the lock held by
 * `holder`, whose record matches that process exactly (tid, start time,
 * pid namespace: a live holder by every test but the boot), the boot tag
 * another boot's, the daemon pid that of the kvd of that boot (here the
 * same process). With other_boot false the boot tag stays this boot's: a
 * lock really held by a live process. */
static void power_loss(const char *s, pid_t holder, bool other_boot)
{
	uint64_t boot = this_boot_tag();

	poke32(s, OFF_LOCK, (uint32_t)holder);
	poke32(s, OFF_MUTEX_OWNER, (uint32_t)holder);
	poke32(s, OFF_OWNER_TID, (uint32_t)holder);
	poke64(s, OFF_OWNER_START, start_ticks(holder));
	poke32(s, OFF_OWNER_PIDNS, my_pidns());
	poke32(s, OFF_DAEMON_PID, (uint32_t)holder);
	poke64(s, OFF_BOOT_TAG,
	       other_boot ? boot ^ UINT64_C(0x5a5a0123456789a5) : boot);
}

/* F. A file-backed store that outlived a reboot, its lock held on the
 * boot before by a thread whose id now names a live process with the same
 * start time: only the boot tells the lock is stale. kvd adopts it,
 * resets the lock, logs it and serves; without kvd the first kv put does
 * it, or kv check, which says so. Every command within the limit, every
 * key kept. */
static void test_reboot_lock(void **state)
{
	enum { NKEYS = 6 };
	const char *s = file_store("reboot");
	const char *sleep_argv[] = {"sleep", "30", NULL};
	struct h_proc *holder, *p;
	struct h_result r;
	struct kv_stats st;
	char line[600];
	long long took;
	kv_t *kv;

	(void)state;
	make_file_store(s, NKEYS);
	holder = h_start(sleep_argv, NULL);
	/* The process must have exec'd sleep before its start time means
	 * anything; it never changes afterwards, so any moment will do. */
	assert_true(h_alive(holder->pid));

	/* Control: the same lock on this boot is a live writer's, and kv
	 * waits it out and gives up (so the test below tells the boot
	 * check from any other). */
	power_loss(s, holder->pid, false);
	took = kv_timed(&r, 0, s, "put", "x", "1", NULL);
	H_ASSERT_FAILS(&r, 2, "kv: ", "busy");
	h_result_free(&r);
	if (took < 1000)
		fail_msg("kv put gave up on a live holder after %lld ms",
		         took);

	/* With kvd. */
	power_loss(s, holder->pid, true);
	p = h_kvd(s, "--size", FILE_SIZE, NULL);
	snprintf(line, sizeof line, "store '%s': reset the writer lock: ", s);
	kvd_logs(p, line, 1000);
	put_ok(s, "after", "1");
	all_keys_there(s, NKEYS);
	get_is(s, "after", "1");
	check_says(s, "ok\n");
	KVT(&r, s, "get", "x");
	H_ASSERT_EXIT(&r, 1); /* the control's put never happened */
	h_result_free(&r);
	assert_true(h_alive(p->pid));
	stop_kvd(p);
	assert_true(peek64(s, OFF_BOOT_TAG) == this_boot_tag());

	/* Without kvd: readers need no lock; the first kv put repairs. */
	power_loss(s, holder->pid, true);
	get_is(s, "k0", "v0");
	put_ok(s, "again", "2");
	all_keys_there(s, NKEYS);
	get_is(s, "after", "1");
	get_is(s, "again", "2");
	check_says(s, "ok\n");
	assert_true(peek64(s, OFF_BOOT_TAG) == this_boot_tag());
	kv = keep(open_ro(s));
	ASSERT_STATUS(kv_stats(kv, &st), KV_OK);
	/* The old boot's daemon pid is forgotten with its lock. */
	assert_int_equal(st.daemon_pid, 0);
	assert_true(st.lock_repairs >= 2);
	assert_int_equal(st.items, NKEYS + 2);
	drop(kv);

	/* kv check as the first command: it repairs, and says so. */
	power_loss(s, holder->pid, true);
	KVT(&r, s, "check");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "repaired: reset the writer lock: ");
	H_ASSERT_OUT_HAS(&r, "\nok\n");
	h_result_free(&r);
	put_ok(s, "third", "3");
	all_keys_there(s, NKEYS);

	/* The holder was never touched. */
	assert_true(h_alive(holder->pid));
	h_stop(holder, SIGKILL, H_TIMEOUT_MS, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_destroyed_store_noticed,
		                          teardown),
		cmocka_unit_test_teardown(test_destroyed_store_every_call,
		                          teardown),
		cmocka_unit_test_teardown(test_creator_handle_after_recreate,
		                          teardown),
		cmocka_unit_test_teardown(test_create_waits_for_dead_name,
		                          teardown),
		cmocka_unit_test_teardown(test_kvd_stops_when_destroyed,
		                          teardown),
		cmocka_unit_test_teardown(test_kvd_stops_when_unlinked,
		                          teardown),
		cmocka_unit_test_teardown(test_dead_name_remains, teardown),
		cmocka_unit_test_teardown(test_stale_lock_cli, teardown),
		cmocka_unit_test_teardown(test_reboot_lock, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
