/*
 * test_api.c - the public calls' contracts: every status code is reachable
 * and has its own message, bad arguments change nothing, TTLs under a
 * pinned clock, put flags, and one handle shared by many threads.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "unit.h"

static void test_messages(void **state)
{
	(void)state;
	static const int codes[] = {
#define X(name, val, msg) KV_##name,
		KV_ERRNO_MAP(X)
#undef X
	};
	size_t n = sizeof codes / sizeof *codes;
	for (size_t i = 0; i < n; i++) {
		const char *m = kv_strerror(codes[i]);
		assert_true(codes[i] < 0);
		assert_true(strlen(m) > 5);
		assert_string_not_equal(m, "unknown error");
		assert_int_equal(strncmp(kv_errname(codes[i]), "KV_E", 4), 0);
		for (size_t j = 0; j < i; j++) {
			assert_int_not_equal(codes[i], codes[j]);
			assert_string_not_equal(m, kv_strerror(codes[j]));
		}
	}
	assert_string_equal(kv_strerror(KV_OK), "success");
	assert_string_equal(kv_strerror(-9999), "unknown error");
	assert_string_equal(kv_errname(KV_ENOTFOUND), "KV_ENOTFOUND");
	assert_string_equal(kv_version(), KV_VERSION_STRING);
}

static void test_bad_arguments(void **state)
{
	(void)state;
	kv_t *kv = u_create("args", 8 << 20, 1000, 0);
	char buf[8];
	size_t n;
	static char big[KV_MAX_KEY + 2];
	memset(big, 'k', sizeof big);

	assert_kv(KV_EINVAL, kv_get(NULL, "k", 1, buf, 8, &n));
	assert_kv(KV_EINVAL, kv_get(kv, NULL, 1, buf, 8, &n));
	assert_kv(KV_EINVAL, kv_get(kv, "k", 1, NULL, 8, &n));
	assert_kv(KV_EKEYSIZE, kv_get(kv, "", 0, buf, 8, &n));
	assert_kv(KV_EKEYSIZE, kv_get(kv, big, KV_MAX_KEY + 1, buf, 8, &n));
	assert_kv(KV_EKEYSIZE, kv_put(kv, big, KV_MAX_KEY + 1, "v", 1, NULL));
	assert_kv(KV_EKEYSIZE, kv_put(kv, "", 0, "v", 1, NULL));
	assert_kv(KV_EKEYSIZE, kv_del(kv, "", 0));
	assert_kv(KV_OK, kv_put(kv, big, KV_MAX_KEY, "v", 1, NULL));
	u_expect(kv, big, KV_MAX_KEY, "v", 1);

	static char val[1001];
	assert_kv(KV_EVALSIZE, kv_put(kv, "k", 1, val, 1001, NULL));
	assert_kv(KV_OK, kv_put(kv, "k", 1, val, 1000, NULL));
	assert_kv(KV_EINVAL, kv_put(kv, "k", 1, NULL, 5, NULL));

	struct kv_put_opts o = {.flags = 0x80};
	assert_kv(KV_EINVAL, kv_put(kv, "k", 1, "v", 1, &o));
	o.flags = KV_PUT_NX | KV_PUT_XX;
	assert_kv(KV_EINVAL, kv_put(kv, "k", 1, "v", 1, &o));
	o.flags = 0;
	o.ttl_ms = UINT64_MAX;
	assert_kv(KV_EINVAL, kv_put(kv, "k", 1, "v", 1, &o));
	assert_kv(KV_EINVAL, kv_stats(kv, NULL));
	assert_kv(KV_EINVAL, kv_ttl(kv, "k", 1, NULL));
	assert_kv(KV_EINVAL, kv_open("x", 0x40, &kv));

	/* None of it changed the store. */
	struct kv_stats st;
	assert_kv(KV_OK, kv_stats(kv, &st));
	assert_int_equal(st.items, 2);
	assert_int_equal(st.puts, 2);
	n = 0;
	assert_kv(KV_OK, kv_get(kv, "k", 1, val, sizeof val, &n));
	assert_int_equal(n, 1000);
	assert_sound(kv);
	kv_close(kv);
}

/* KV_ERANGE: the needed size comes back and the buffer is untouched. */
static void test_range(void **state)
{
	(void)state;
	kv_t *kv = u_create("range", 8 << 20, 4096, 0);
	char buf[4] = "abc";
	size_t n = 0;
	assert_kv(KV_OK, u_puts(kv, "k", "0123456789"));
	assert_kv(KV_ERANGE, kv_get(kv, "k", 1, buf, sizeof buf, &n));
	assert_int_equal(n, 10);
	assert_kv(KV_ERANGE, kv_get(kv, "k", 1, NULL, 0, &n));
	assert_int_equal(n, 10);
	kv_close(kv);
}

static void test_put_flags(void **state)
{
	(void)state;
	kv_t *kv = u_create("flags", 8 << 20, 4096, 0);
	struct kv_put_opts nx = {.flags = KV_PUT_NX};
	struct kv_put_opts xx = {.flags = KV_PUT_XX};

	assert_kv(KV_ENOTFOUND, kv_put(kv, "k", 1, "a", 1, &xx));
	u_absent(kv, "k", 1);
	assert_kv(KV_OK, kv_put(kv, "k", 1, "b", 1, &nx));
	assert_kv(KV_EEXIST, kv_put(kv, "k", 1, "c", 1, &nx));
	u_expect_str(kv, "k", "b");
	assert_kv(KV_OK, kv_put(kv, "k", 1, "d", 1, &xx));
	u_expect_str(kv, "k", "d");
	kv_close(kv);
}

/* Time to live, with the clock pinned: visible until the last
 * millisecond, invisible from the expiry on, reclaimed by a later write. */
static void test_ttl(void **state)
{
	(void)state;
	kv_t *kv = u_create("ttl", 8 << 20, 4096, 0);
	uint64_t t0 = UINT64_C(1800000000000);
	struct kv_put_opts o = {.ttl_ms = 1500};
	int64_t left;

	kv__set_test_clock(t0);
	assert_kv(KV_OK, kv_put(kv, "t", 1, "v", 1, &o));
	assert_kv(KV_OK, u_puts(kv, "forever", "v"));
	assert_kv(KV_OK, kv_ttl(kv, "t", 1, &left));
	assert_int_equal(left, 1500);
	assert_kv(KV_OK, kv_ttl(kv, "forever", 7, &left));
	assert_int_equal(left, -1);
	kv__set_test_clock(t0 + 1499);
	u_expect_str(kv, "t", "v");
	assert_kv(KV_OK, kv_ttl(kv, "t", 1, &left));
	assert_int_equal(left, 1);
	kv__set_test_clock(t0 + 1500);
	u_absent(kv, "t", 1);
	assert_kv(KV_ENOTFOUND, kv_ttl(kv, "t", 1, &left));

	/* Only-if-absent treats an expired key as absent. */
	struct kv_put_opts nx = {.flags = KV_PUT_NX};
	assert_kv(KV_OK, kv_put(kv, "t", 1, "new", 3, &nx));
	u_expect_str(kv, "t", "new");
	struct kv_stats st;
	assert_kv(KV_OK, kv_stats(kv, &st));
	assert_int_equal(st.expired, 1);
	assert_int_equal(st.items, 2);

	/* Deleting an expired key finds nothing but reclaims it. */
	assert_kv(KV_OK, kv_put(kv, "d", 1, "v", 1, &o));
	kv__set_test_clock(t0 + 5000);
	assert_kv(KV_ENOTFOUND, kv_del(kv, "d", 1));
	assert_kv(KV_OK, kv_stats(kv, &st));
	assert_int_equal(st.expired, 2);
	assert_int_equal(st.items, 2);
	u_expect_str(kv, "forever", "v");
	kv__set_test_clock(0);
	assert_sound(kv);
	kv_close(kv);
}

/* Bytes that point outside the arena are "corrupt", for readers, writers
 * and the checker alike; nothing crashes. */
static void test_corrupt_slot(void **state)
{
	(void)state;
	kv_t *kv = u_create("corrupt", 8 << 20, 4096, 0);
	assert_kv(KV_OK, u_puts(kv, "victim", "v"));
	struct kv_found f;
	uint64_t h = kv__hash(kv, "victim", 6);
	assert_kv(KV_OK, kv__find_locked(kv, h, "victim", 6, &f));
	struct kv_bucket *bk = kv__bucket(kv, f.bucket);
	uint64_t saved = bk->slot[f.slot];

	bk->slot[f.slot] = KV_SLOT_MAKE(h >> 48, 0, kv->size - 8);
	char buf[8];
	size_t n;
	assert_kv(KV_ECORRUPT, kv_get(kv, "victim", 6, buf, sizeof buf, &n));
	assert_kv(KV_ECORRUPT, u_puts(kv, "victim", "w"));
	assert_kv(KV_ECORRUPT, kv_check(kv, NULL, NULL));
	bk->slot[f.slot] = KV_SLOT_MAKE(h >> 48, 0, 64); /* in the header */
	assert_kv(KV_ECORRUPT, kv_get(kv, "victim", 6, buf, sizeof buf, &n));
	bk->slot[f.slot] = saved;
	u_expect_str(kv, "victim", "v");
	assert_sound(kv);
	kv_close(kv);
}

/* A bucket held odd with nobody to finish it (damage: no writer is at
 * work): a read-only handle gives up with KV_EBUSY after its bounded wait;
 * a read-write handle takes the lock, answers, and heals the bucket, so
 * read-only readers are served again; so does kvd's sweep. */
static void test_busy(void **state)
{
	(void)state;
	kv_t *kv = u_create("busy", 8 << 20, 4096, 0);
	assert_kv(KV_OK, u_puts(kv, "k", "v"));
	kv_t *ro = NULL;
	assert_kv(KV_OK, kv_open(kv__path(kv) + strlen("/dev/shm/kv."),
	                         KV_RDONLY, &ro));
	struct kv_bucket *bk =
	    kv__bucket(kv, kv__home(kv, kv__hash(kv, "k", 1)));
	bk->seq |= 1u;
	char buf[8];
	size_t n;
	assert_kv(KV_EBUSY, kv_get(ro, "k", 1, buf, sizeof buf, &n));
	/* Under the lock the damage is seen for what it is. */
	assert_kv(KV_ECORRUPT, kv_check(kv, NULL, NULL));
	u_expect_str(kv, "k", "v");
	assert_int_equal(bk->seq & 1u, 0);
	u_expect_str(ro, "k", "v");
	assert_sound(kv);

	/* The sweep heals too. */
	bk->seq |= 1u;
	assert_kv(KV_OK, kv__sweep(kv, kv->nbuckets, NULL));
	assert_int_equal(bk->seq & 1u, 0);
	u_expect_str(ro, "k", "v");
	kv_close(ro);
	kv_close(kv);
}

static void test_daemon_claim(void **state)
{
	(void)state;
	kv_t *a = u_create("claim", 8 << 20, 4096, 0);
	kv_t *b = NULL;
	pid_t other;
	assert_kv(KV_OK, kv_create(kv__path(a) + strlen("/dev/shm/kv."), NULL,
	                           &b));
	assert_kv(KV_OK, kv__daemon_claim(a, &other));
	assert_kv(KV_ESERVED, kv__daemon_claim(b, &other));
	assert_int_equal(other, getpid());
	struct kv_stats st;
	assert_kv(KV_OK, kv_stats(b, &st));
	assert_int_equal(st.daemon_pid, (uint32_t)getpid());
	kv__daemon_release(a);
	assert_kv(KV_OK, kv__daemon_claim(b, &other));
	kv_close(a);
	kv_close(b);
}

/* Permissions: a process that may not read the store gets KV_EPERM. As
 * root that needs another user, so the check runs in a child that drops
 * to nobody. */
static void test_permission(void **state)
{
	(void)state;
	kv_t *kv = u_create("perm", 8 << 20, 4096, 0);
	const char *name = kv__path(kv) + strlen("/dev/shm/kv.");
	if (geteuid() != 0) {
		assert_int_equal(chmod(kv__path(kv), 0), 0);
		kv_t *x = NULL;
		assert_kv(KV_EPERM, kv_open(name, KV_RDONLY, &x));
		assert_int_equal(chmod(kv__path(kv), 0600), 0);
		kv_close(kv);
		return;
	}
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		kv_t *x = NULL;
		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(10);
		if (kv_open(name, KV_RDONLY, &x) != KV_EPERM)
			_exit(11);
		if (kv_open(name, KV_RDWR, &x) != KV_EPERM)
			_exit(12);
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	kv_close(kv);
}

/* A full tmpfs at creation is KV_ENOSPC, with nothing left behind. */
static void test_no_space(void **state)
{
	(void)state;
	const char *dir = h_tmpdir("nospc");
	if (!h_mount_tmpfs(dir, "size=4m"))
		skip();
	char path[KV_PATH_MAX];
	snprintf(path, sizeof path, "%s/store", dir);
	h_register_store(path);
	struct kv_options o = {.size = 64 << 20};
	kv_t *kv = NULL;
	assert_kv(KV_ENOSPC, kv_create(path, &o, &kv));
	struct stat st;
	assert_int_equal(stat(path, &st), -1);
	o.size = 3 << 20;
	o.max_value = 4096;
	assert_kv(KV_OK, kv_create(path, &o, &kv));
	assert_kv(KV_OK, u_puts(kv, "fits", "yes"));
	kv_close(kv);
}

/* kv_mget answers each entry exactly as kv_get would. */
static void test_mget(void **state)
{
	(void)state;
	kv_t *kv = u_create("mget", 8 << 20, 4096, 0);
	enum { N = 53 }; /* not a multiple of the internal group */
	struct kv_getv v[N];
	char keys[N][16], bufs[N][32];

	for (int i = 0; i < N; i++) {
		int kl = snprintf(keys[i], sizeof keys[i], "m%d", i);
		if (i % 3 != 0)
			assert_kv(KV_OK, kv_put(kv, keys[i], (size_t)kl,
			                        keys[i], (size_t)kl, NULL));
		v[i] = (struct kv_getv){.key = keys[i], .klen = (size_t)kl,
		                        .buf = bufs[i], .cap = sizeof bufs[i]};
	}
	v[5].cap = 1;                /* too small */
	v[7].klen = 0;               /* bad key */
	v[8].buf = NULL;             /* bad buffer */
	assert_kv(KV_OK, kv_mget(kv, v, N));
	for (int i = 0; i < N; i++) {
		size_t kl = strlen(keys[i]);
		if (i == 5) {
			assert_kv(KV_ERANGE, v[i].status);
			assert_int_equal(v[i].vlen, kl);
		} else if (i == 7) {
			assert_kv(KV_EKEYSIZE, v[i].status);
		} else if (i == 8) {
			assert_kv(KV_EINVAL, v[i].status);
		} else if (i % 3 == 0) {
			assert_kv(KV_ENOTFOUND, v[i].status);
		} else {
			assert_kv(KV_OK, v[i].status);
			assert_int_equal(v[i].vlen, kl);
			assert_memory_equal(bufs[i], keys[i], kl);
		}
	}
	assert_kv(KV_OK, kv_mget(kv, NULL, 0));
	assert_kv(KV_EINVAL, kv_mget(kv, NULL, 3));
	assert_kv(KV_EINVAL, kv_mget(NULL, v, 3));
	kv_close(kv);
}

/* With every file descriptor in use, attaching fails with its own error
 * and an attached handle keeps working (it needs no new descriptor). */
static void test_fd_limit(void **state)
{
	(void)state;
	kv_t *kv = u_create("fdlimit", 8 << 20, 4096, 0);
	char name[KV_PATH_MAX];
	snprintf(name, sizeof name, "%s", kv__path(kv) + strlen("/dev/shm/kv."));
	assert_kv(KV_OK, u_puts(kv, "k", "v"));
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl = {32, 32};
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			_exit(10);
		while (open("/dev/null", O_RDONLY) >= 0)
			;
		kv_t *x = NULL;
		if (kv_open(name, KV_RDONLY, &x) != KV_ENOFD)
			_exit(11);
		if (kv_create(name, NULL, &x) != KV_ENOFD)
			_exit(12);
		char buf[4];
		size_t n;
		if (kv_get(kv, "k", 1, buf, sizeof buf, &n) != KV_OK ||
		    kv_put(kv, "k2", 2, "w", 1, NULL) != KV_OK)
			_exit(13);
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	u_expect_str(kv, "k2", "w");
	assert_sound(kv);
	kv_close(kv);
}

struct worker {
	kv_t *kv;
	int id;
	int errors;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	char k[32], v[64], buf[64];
	for (int i = 0; i < 20000; i++) {
		int kl = snprintf(k, sizeof k, "t%d:%d", w->id, i % 500);
		int vl = snprintf(v, sizeof v, "value %d %d", w->id, i);
		size_t n;
		if (kv_put(w->kv, k, (size_t)kl, v, (size_t)vl, NULL) != KV_OK)
			w->errors++;
		if (kv_get(w->kv, k, (size_t)kl, buf, sizeof buf, &n) !=
		        KV_OK ||
		    n != (size_t)vl || memcmp(buf, v, n) != 0)
			w->errors++;
		if (i % 7 == 0 && kv_del(w->kv, k, (size_t)kl) != KV_OK)
			w->errors++;
		int r = kv_get(w->kv, "shared", 6, buf, sizeof buf, &n);
		if (r != KV_OK && r != KV_ENOTFOUND)
			w->errors++;
		if (i % 100 == 0)
			kv_put(w->kv, "shared", 6, v, (size_t)vl, NULL);
	}
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	kv_t *kv = u_create("threads", 16 << 20, 4096, 0);
	enum { N = 4 };
	pthread_t t[N];
	struct worker w[N];
	for (int i = 0; i < N; i++) {
		w[i] = (struct worker){kv, i, 0};
		assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].errors, 0);
	}
	assert_sound(kv);
	kv_close(kv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_messages, h_teardown),
		cmocka_unit_test_teardown(test_bad_arguments, h_teardown),
		cmocka_unit_test_teardown(test_range, h_teardown),
		cmocka_unit_test_teardown(test_put_flags, h_teardown),
		cmocka_unit_test_teardown(test_ttl, h_teardown),
		cmocka_unit_test_teardown(test_corrupt_slot, h_teardown),
		cmocka_unit_test_teardown(test_busy, h_teardown),
		cmocka_unit_test_teardown(test_daemon_claim, h_teardown),
		cmocka_unit_test_teardown(test_permission, h_teardown),
		cmocka_unit_test_teardown(test_no_space, h_teardown),
		cmocka_unit_test_teardown(test_mget, h_teardown),
		cmocka_unit_test_teardown(test_fd_limit, h_teardown),
		cmocka_unit_test_teardown(test_threads, h_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
