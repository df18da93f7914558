/*
 * test_crash.c - a writer killed at each numbered point inside a write.
 *
 * A forked child attaches, arms one crash point and starts one operation;
 * it dies by SIGKILL at that point while holding the writer lock. The
 * parent then attaches and uses the store: its first lock gets EOWNERDEAD
 * and runs recovery. Whatever the point, the store must check sound, every
 * key acknowledged before the crash must read back, and the interrupted
 * operation must be either wholly done (killed after its commit point,
 * points 6 and later) or wholly undone (before it, points 1 to 5).
 *
 * The operations cover each path through the allocator and index: a new
 * key into a never-used chunk, a new key into a chunk popped from a free
 * list (whose link recovery must restore), a replace, and a delete; and
 * the same for values that live in pages of their own (large.c), whose
 * pages come off and go back on the free-page list by chain entries, and
 * whose pieces may be chunks popped from a free list at either of the
 * two alignments a chunk can have (their links sit at 8 or 12 bytes in,
 * and must survive a put that dies before its commit).
 */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

#define KV_NPOINTS 10
#define COMMIT_POINT 6 /* points >= this are after the commit */

enum op {
	OP_INSERT,
	OP_INSERT_REUSE,
	OP_REPLACE,
	OP_DELETE,
	OP_DELETE_SHIFT,
	OP_BIG_INSERT,  /* a value in pages, the pages off the free list */
	OP_BIG_REPLACE, /* one value in pages for another */
	OP_BIG_DELETE,  /* a value in pages, its pages back on the list */
	OP_BIG_FRESH,   /* the first value in pages: never-used pages too */
	OP_BIG_REUSE,   /* its last piece a freed chunk only 4-aligned */
};

static const char *op_name[] = {"insert",      "insert-reuse", "replace",
                                "delete",      "delete-shift", "big-insert",
                                "big-replace", "big-delete",   "big-fresh",
                                "big-reuse"};

/* Values of several pages, each byte a function of its place and seed,
 * so a value stitched from two puts' pages does not compare equal. */
enum { BIG_A = 5 * 65536 + 30000, BIG_B = 2 * 65536 + 20000, BIG_SPARE = 700000 };

/* OP_BIG_REUSE's value length, and the class of its last piece: one
 * whose size is an odd multiple of 4, so every other chunk of it is only
 * 4-aligned. Set by the parent before it forks. */
static size_t big_r;
static uint32_t big_r_cls;

static unsigned char *big_value(size_t len, unsigned seed)
{
	unsigned char *v = malloc(len);
	assert_non_null(v);
	for (size_t i = 0; i < len; i++)
		v[i] = (unsigned char)((i * 2654435761u >> 13) + seed * 77 + i / 65536);
	return v;
}

/* Keys that all hash to one home bucket, so they spill over several
 * buckets and deleting the first makes the others shift back. */
enum { NCOLL = 24 };
static char coll[NCOLL][32];
static size_t coll_len[NCOLL];

static void make_colliding(kv_t *kv)
{
	uint64_t home = kv__home(kv, kv__hash(kv, "pre0", 4));
	int n = 0;
	for (unsigned i = 0; n < NCOLL; i++) {
		char k[32];
		size_t kl = (size_t)snprintf(k, sizeof k, "coll%u", i);
		if ((kv__home(kv, kv__hash(kv, k, kl))) != home)
			continue;
		memcpy(coll[n], k, kl);
		coll_len[n++] = kl;
	}
	for (int i = 0; i < n; i++)
		assert_kv(KV_OK, kv_put(kv, coll[i], coll_len[i], coll[i],
		                        coll_len[i], NULL));
}

static void fill(kv_t *kv, int n)
{
	char k[32], v[64];
	for (int i = 0; i < n; i++) {
		int kl = snprintf(k, sizeof k, "pre%d", i);
		int vl = snprintf(v, sizeof v, "value of pre%d", i);
		assert_kv(KV_OK, kv_put(kv, k, (size_t)kl, v, (size_t)vl, NULL));
	}
}

static void expect_fill(kv_t *kv, int n, int skip)
{
	char k[32], v[64];
	for (int i = 0; i < n; i++) {
		if (i == skip)
			continue;
		int kl = snprintf(k, sizeof k, "pre%d", i);
		int vl = snprintf(v, sizeof v, "value of pre%d", i);
		u_expect(kv, k, (size_t)kl, v, (size_t)vl);
	}
}

/* Run op in a child that dies at point; return true if it died there. */
static bool crash_child(const char *name, enum op op, int point)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		kv_t *kv = NULL;
		if (kv_open(name, KV_RDWR, &kv) != KV_OK)
			_exit(20);
		kv__crash_arm(point);
		switch (op) {
		case OP_INSERT:
		case OP_INSERT_REUSE:
			kv_put(kv, "new", 3, "new value", 9, NULL);
			break;
		case OP_REPLACE:
			kv_put(kv, "pre3", 4, "replaced", 8, NULL);
			break;
		case OP_DELETE:
			kv_del(kv, "pre3", 4);
			break;
		case OP_DELETE_SHIFT:
			kv_del(kv, coll[0], coll_len[0]);
			break;
		case OP_BIG_INSERT:
		case OP_BIG_FRESH:
			kv_put(kv, "big", 3, big_value(BIG_A, 1), BIG_A, NULL);
			break;
		case OP_BIG_REPLACE:
			kv_put(kv, "big", 3, big_value(BIG_B, 2), BIG_B, NULL);
			break;
		case OP_BIG_DELETE:
			kv_del(kv, "big", 3);
			break;
		case OP_BIG_REUSE:
			kv_put(kv, "big", 3, big_value(big_r, 4), big_r, NULL);
			break;
		}
		_exit(21); /* the point is not on this path */
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFEXITED(status)) {
		assert_int_equal(WEXITSTATUS(status), 21);
		return false;
	}
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);
	return true;
}

/* Choose big_r, then leave the head of big_r_cls's free list a chunk
 * only 4-aligned, linked to two more (r3 keeps the page in use). */
static void free_odd_chunk(kv_t *kv)
{
	struct kv_split sp;
	big_r = 0;
	for (size_t v = 65536 + 8192; v < 65536 + 65536 && !big_r; v += 4) {
		kv__split(KV_ITEM_HDR, 3, v, &sp);
		if (sp.npieces == 0)
			continue;
		uint32_t c = kv__piece_class(kv, &sp, sp.npieces - 1);
		if (kv->class_size[c] % 8 == 4 && kv->class_size[c] >= 100) {
			big_r = v;
			big_r_cls = c;
		}
	}
	assert_true(big_r != 0);
	size_t vlen = kv->class_size[big_r_cls] - KV_ITEM_HDR - 2;
	char *v = malloc(vlen);
	assert_non_null(v);
	memset(v, 'r', vlen);
	uint64_t off[4];
	for (int i = 0; i < 4; i++) {
		char k[3] = {'r', (char)('0' + i), 0};
		assert_kv(KV_OK, kv_put(kv, k, 2, v, vlen, NULL));
		off[i] = u_item_of(kv, k, 2);
	}
	free(v);
	/* A fresh page of the class: its chunks in order from its start. */
	assert_int_equal(off[1], off[0] + kv->class_size[big_r_cls]);
	assert_int_equal(off[2], off[1] + kv->class_size[big_r_cls]);
	assert_int_equal(off[1] % 8, off[0] % 8 == 0 ? 4 : 0);
	uint64_t odd = off[1] % 8 == 4 ? 1 : 0; /* the 4-aligned one */
	assert_kv(KV_OK, kv_del(kv, odd ? "r0" : "r1", 2));
	assert_kv(KV_OK, kv_del(kv, "r2", 2));
	assert_kv(KV_OK, kv_del(kv, odd ? "r1" : "r0", 2));
	const struct kv_page *pg =
	    kv__page(kv, (off[odd] - kv->arena_off) / kv->page_size);
	assert_int_equal(atomic_load(&pg->free_head), off[odd]);
	assert_int_equal(off[odd] % 8, 4);
}

static void one_case(enum op op, int point, int *crashed)
{
	bool big = op >= OP_BIG_INSERT;
	kv_t *kv = u_create("crash", 8 << 20, big ? 1 << 20 : 4096, 0);
	const char *name = kv__path(kv) + strlen("/dev/shm/kv.");
	enum { N = 200 };
	unsigned char *a = big_value(BIG_A, 1), *b = big_value(BIG_B, 2);

	fill(kv, N);
	if (op == OP_DELETE_SHIFT)
		make_colliding(kv);
	if (op == OP_BIG_INSERT || op == OP_BIG_REPLACE ||
	    op == OP_BIG_REUSE) {
		/* Pages enough on the free-page list, so the put's own
		 * transaction is the first the crash point meets. */
		unsigned char *spare = big_value(BIG_SPARE, 3);
		assert_kv(KV_OK, kv_put(kv, "spare", 5, spare, BIG_SPARE, NULL));
		assert_kv(KV_OK, kv_del(kv, "spare", 5));
		free(spare);
	}
	if (op == OP_BIG_REPLACE || op == OP_BIG_DELETE)
		assert_kv(KV_OK, kv_put(kv, "big", 3, a, BIG_A, NULL));
	if (op == OP_BIG_REUSE)
		free_odd_chunk(kv);
	if (op == OP_INSERT_REUSE) {
		/* Free a chunk of the class "new" will use. */
		assert_kv(KV_OK, kv_put(kv, "gone", 4, "new value", 9, NULL));
		assert_kv(KV_OK, kv_del(kv, "gone", 4));
	}
	struct kv_stats before;
	assert_kv(KV_OK, kv_stats(kv, &before));

	if (!crash_child(name, op, point)) {
		kv_close(kv);
		free(a);
		free(b);
		return;
	}
	(*crashed)++;
	/* kv_check takes the lock: this is where recovery runs. */
	assert_sound(kv);
	struct kv_stats after;
	assert_kv(KV_OK, kv_stats(kv, &after));
	assert_int_equal(after.recoveries, before.recoveries + 1);

	bool done = point >= COMMIT_POINT;
	switch (op) {
	case OP_INSERT:
	case OP_INSERT_REUSE:
		expect_fill(kv, N, -1);
		if (done)
			u_expect_str(kv, "new", "new value");
		else
			u_absent(kv, "new", 3);
		assert_int_equal(after.items, before.items + (done ? 1 : 0));
		break;
	case OP_REPLACE:
		expect_fill(kv, N, 3);
		u_expect_str(kv, "pre3", done ? "replaced" : "value of pre3");
		assert_int_equal(after.items, before.items);
		break;
	case OP_DELETE:
		expect_fill(kv, N, 3);
		if (done)
			u_absent(kv, "pre3", 4);
		else
			u_expect_str(kv, "pre3", "value of pre3");
		assert_int_equal(after.items, before.items - (done ? 1 : 0));
		break;
	case OP_DELETE_SHIFT:
		expect_fill(kv, N, -1);
		for (int i = 1; i < NCOLL; i++)
			u_expect(kv, coll[i], coll_len[i], coll[i], coll_len[i]);
		if (done)
			u_absent(kv, coll[0], coll_len[0]);
		else
			u_expect(kv, coll[0], coll_len[0], coll[0], coll_len[0]);
		assert_int_equal(after.items, before.items - (done ? 1 : 0));
		break;
	case OP_BIG_INSERT:
		expect_fill(kv, N, -1);
		if (done)
			u_expect(kv, "big", 3, a, BIG_A);
		else
			u_absent(kv, "big", 3);
		break;
	case OP_BIG_REPLACE:
		expect_fill(kv, N, -1);
		if (done)
			u_expect(kv, "big", 3, b, BIG_B);
		else
			u_expect(kv, "big", 3, a, BIG_A);
		break;
	case OP_BIG_DELETE:
		expect_fill(kv, N, -1);
		if (done)
			u_absent(kv, "big", 3);
		else
			u_expect(kv, "big", 3, a, BIG_A);
		break;
	case OP_BIG_REUSE: {
		expect_fill(kv, N, -1);
		unsigned char *r = big_value(big_r, 4);
		if (done)
			u_expect(kv, "big", 3, r, big_r);
		else
			u_absent(kv, "big", 3);
		free(r);
		break;
	}
	case OP_BIG_FRESH:
		/* Killed in the transaction that puts never-used pages on
		 * the free list, or in the put's: either way the value is
		 * whole or absent. */
		expect_fill(kv, N, -1);
		if (u_item_of(kv, "big", 3))
			u_expect(kv, "big", 3, a, BIG_A);
		break;
	}
	if (big) {
		/* The pages freed or never used serve the next large put. */
		assert_kv(KV_OK, kv_put(kv, "big2", 4, b, BIG_B, NULL));
		u_expect(kv, "big2", 4, b, BIG_B);
	}
	free(a);
	free(b);
	/* The store keeps working: more writes, then sound again. */
	assert_kv(KV_OK, u_puts(kv, "after", "crash"));
	assert_kv(KV_OK, u_puts(kv, "new", "again"));
	assert_kv(KV_OK, kv_del(kv, "pre7", 4));
	assert_sound(kv);
	kv_close(kv);
	h_cleanup();
}

static void test_crash_points(void **state)
{
	(void)state;
	for (int op = OP_INSERT; op <= OP_BIG_REUSE; op++) {
		int crashed = 0;
		for (int point = 1; point <= KV_NPOINTS; point++)
			one_case((enum op)op, point, &crashed);
		print_message("%-13s killed at %d of %d points, recovered each\n",
		              op_name[op], crashed, KV_NPOINTS);
		/* Puts pass every point; deletes skip the two inside the
		 * item copy. */
		bool del = op == OP_DELETE || op == OP_DELETE_SHIFT ||
		           op == OP_BIG_DELETE;
		assert_int_equal(crashed, del ? KV_NPOINTS - 2 : KV_NPOINTS);
	}
}

/* Recovery is idempotent: a recoverer killed while recovering is itself
 * recovered, with the same result. Simulate by running recovery twice on
 * a journal left committed. */
static void test_recover_twice(void **state)
{
	(void)state;
	kv_t *kv = u_create("recover2", 8 << 20, 4096, 0);
	const char *name = kv__path(kv) + strlen("/dev/shm/kv.");
	fill(kv, 50);
	assert_true(crash_child(name, OP_REPLACE, 7)); /* mid-apply */
	assert_kv(KV_OK, kv__lock(kv));
	/* Recovery ran inside kv__lock; run it again by hand. */
	assert_kv(KV_OK, kv__recover_locked(kv));
	kv__unlock(kv);
	u_expect_str(kv, "pre3", "replaced");
	expect_fill(kv, 50, 3);
	assert_sound(kv);
	kv_close(kv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_crash_points, h_teardown),
		cmocka_unit_test_teardown(test_recover_twice, h_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
