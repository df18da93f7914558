/*
 * test_alloc.c - the size-class allocator: an item of every size lands in
 * the class that fits it, freed chunks are reused, running out of memory is
 * "store full" with everything acknowledged intact, and the accounting
 * matches what the index holds.
 */
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

#include "unit.h"

static uint32_t class_of_key(kv_t *kv, const char *k)
{
	uint64_t off = u_item_of(kv, k, strlen(k));
	uint32_t cls = 0;
	assert_true(off != 0);
	assert_kv(KV_OK, kv__chunk_check(kv, off, &cls));
	return cls;
}

/* For every class: the largest item that fits it and the smallest that
 * does not fit the class below both land in it, read back intact, and a
 * deleted chunk is the next one handed out for that class. */
static void test_every_class(void **state)
{
	(void)state;
	kv_t *kv = u_create("classes", 16 << 20, 65536, 0);
	static char val[80000];
	char key[16];

	for (size_t i = 0; i < sizeof val; i++)
		val[i] = (char)(i * 131 + 7);
	assert_true(kv->nclasses > 40);
	for (uint32_t c = 0; c < kv->nclasses; c++) {
		uint32_t lo = c ? kv->class_size[c - 1] + 1 : KV_ITEM_HDR + 4;
		uint32_t hi = kv->class_size[c];
		for (int which = 0; which < 2; which++) {
			uint32_t item = which ? hi : lo;
			snprintf(key, sizeof key, "c%03u", c); /* 4 bytes */
			if (item < KV_ITEM_HDR + 4)
				continue;
			size_t vlen = item - KV_ITEM_HDR - 4;
			if (vlen > kv->max_value)
				continue;
			assert_kv(KV_OK, kv_put(kv, key, 4, val, vlen, NULL));
			assert_int_equal(class_of_key(kv, key), c);
			static char got[80000];
			size_t n;
			assert_kv(KV_OK,
			          kv_get(kv, key, 4, got, sizeof got, &n));
			assert_int_equal(n, vlen);
			assert_memory_equal(got, val, vlen);

			uint64_t off = u_item_of(kv, key, 4);
			assert_kv(KV_OK, kv_del(kv, key, 4));
			assert_kv(KV_OK, kv_put(kv, key, 4, val, vlen, NULL));
			assert_int_equal(u_item_of(kv, key, 4), off);
			assert_kv(KV_OK, kv_del(kv, key, 4));
		}
	}
	assert_sound(kv);
	kv_close(kv);
}

/* Fill a small store that does not evict with 1000-byte values until it
 * is full: every put acknowledged before that reads back, the store checks
 * sound, and deleting makes room that is reused. */
static void test_exhaustion(void **state)
{
	(void)state;
	kv_t *kv = u_create_flags("exhaust", 4 << 20, 4096, 0,
	                          KV_CREATE_NOEVICT);
	char key[32], val[1000];
	int n = 0, rc;

	memset(val, 'v', sizeof val);
	for (;;) {
		int kl = snprintf(key, sizeof key, "k%d", n);
		memset(val, 'v', sizeof val);
		memcpy(val, key, (size_t)kl);
		rc = kv_put(kv, key, (size_t)kl, val, sizeof val, NULL);
		if (rc != KV_OK)
			break;
		n++;
	}
	assert_kv(KV_EFULL, rc);
	assert_true(n > 1000);
	struct kv_stats st;
	assert_kv(KV_OK, kv_stats(kv, &st));
	assert_int_equal(st.items, (uint64_t)n);
	assert_int_equal(st.pages_used, st.pages_total);
	print_message("%d items of 1000 bytes in a 4 MiB store, %llu of %llu "
	              "arena bytes in chunks\n",
	              n, (unsigned long long)st.data_used,
	              (unsigned long long)st.data_bytes);
	for (int i = 0; i < n; i++) {
		int kl = snprintf(key, sizeof key, "k%d", i);
		memset(val, 'v', sizeof val);
		memcpy(val, key, (size_t)kl);
		u_expect(kv, key, (size_t)kl, val, sizeof val);
	}
	assert_sound(kv);

	/* A smaller value needs a class that owns no page: still full. */
	assert_kv(KV_EFULL, kv_put(kv, "small", 5, "x", 1, NULL));
	for (int i = 0; i < n; i += 2) {
		int kl = snprintf(key, sizeof key, "k%d", i);
		assert_kv(KV_OK, kv_del(kv, key, (size_t)kl));
	}
	for (int i = 0; i < n / 2; i++) {
		int kl = snprintf(key, sizeof key, "again%d", i);
		assert_kv(KV_OK,
		          kv_put(kv, key, (size_t)kl, val, sizeof val, NULL));
	}
	assert_kv(KV_OK, kv_stats(kv, &st));
	assert_int_equal(st.items, (uint64_t)(n - (n + 1) / 2 + n / 2));
	assert_sound(kv);
	kv_close(kv);
}

/* data_used counts whole chunks; items, key and value bytes match. */
static void test_accounting(void **state)
{
	(void)state;
	kv_t *kv = u_create("account", 8 << 20, 4096, 0);
	uint64_t chunks = 0, kb = 0, vb = 0;
	char key[32], val[600];

	memset(val, 'x', sizeof val);
	for (int i = 0; i < 500; i++) {
		int kl = snprintf(key, sizeof key, "acct%d", i);
		size_t vl = (size_t)(i % 600);
		assert_kv(KV_OK, kv_put(kv, key, (size_t)kl, val, vl, NULL));
		chunks += kv->class_size[kv__class_for(
		    kv, KV_ITEM_HDR + (uint64_t)kl + vl)];
		kb += (uint64_t)kl;
		vb += vl;
	}
	struct kv_stats st;
	assert_kv(KV_OK, kv_stats(kv, &st));
	assert_int_equal(st.items, 500);
	assert_int_equal(st.key_bytes, kb);
	assert_int_equal(st.value_bytes, vb);
	assert_int_equal(st.data_used, chunks);
	/* Waste inside chunks stays within the 1/8 growth of the classes. */
	double waste = (double)(chunks - 500 * KV_ITEM_HDR - kb - vb) /
	               (double)chunks;
	print_message("size-class waste %.1f %%\n", waste * 100);
	assert_true(waste <= 0.125);
	assert_sound(kv);
	kv_close(kv);
}

/* Pages go back to a common pool when they empty: a store filled with
 * one size, emptied, then filled with another holds as much again. */
static void test_pages_return(void **state)
{
	(void)state;
	kv_t *kv = u_create_flags("return", 4 << 20, 4096, 0,
	                          KV_CREATE_NOEVICT);
	char key[32], val[2000];
	int n = 0;
	memset(val, 'r', sizeof val);
	while (kv_put(kv, key, (size_t)snprintf(key, sizeof key, "a%d", n),
	              val, 1000, NULL) == KV_OK)
		n++;
	for (int i = 0; i < n; i++)
		assert_kv(KV_OK, kv_del(kv, key, (size_t)snprintf(
		                                    key, sizeof key, "a%d", i)));
	struct kv_stats st;
	assert_kv(KV_OK, kv_stats(kv, &st));
	assert_int_equal(st.data_used, 0);
	int m = 0;
	while (kv_put(kv, key, (size_t)snprintf(key, sizeof key, "b%d", m),
	              val, 100, NULL) == KV_OK)
		m++;
	print_message("%d items of 1000 bytes, then %d of 100 bytes\n", n, m);
	assert_true(m > 5 * n);
	assert_sound(kv);
	kv_close(kv);
}

/* Put 20,000 values of 1000 bytes into kv (a 4 MiB store: most are
 * evicted), reading the first 200 keys again through reader after each;
 * every one of those must survive, and the store stay sound. */
static void lru_run(kv_t *kv, kv_t *reader, const char *who)
{
	char key[32], val[1000], buf[1000];
	size_t n;
	memset(val, 'l', sizeof val);
	enum { HOT = 200, TOTAL = 20000 };
	for (int i = 0; i < TOTAL; i++) {
		int kl = snprintf(key, sizeof key, "k%d", i);
		assert_kv(KV_OK,
		          kv_put(kv, key, (size_t)kl, val, sizeof val, NULL));
		/* Keep reading the first HOT keys. */
		int h = i % HOT;
		kl = snprintf(key, sizeof key, "k%d", h);
		if (i >= HOT)
			assert_kv(KV_OK, kv_get(reader, key, (size_t)kl, buf,
			                        sizeof buf, &n));
	}
	struct kv_stats st;
	assert_kv(KV_OK, kv_stats(kv, &st));
	assert_true(st.evictions > 0);
	assert_int_equal(st.items + st.evictions, TOTAL);
	int hot_alive = 0;
	for (int i = 0; i < HOT; i++) {
		int kl = snprintf(key, sizeof key, "k%d", i);
		hot_alive += kv_get(reader, key, (size_t)kl, buf, sizeof buf,
		                    &n) == KV_OK;
	}
	print_message("%llu evictions, %d of %d keys read %s kept\n",
	              (unsigned long long)st.evictions, hot_alive, HOT, who);
	assert_int_equal(hot_alive, HOT);
	assert_sound(kv);
}

/* A full store evicts: the least recently read go first, keys that are
 * read keep their place, and the store stays sound. */
static void test_lru_eviction(void **state)
{
	(void)state;
	kv_t *kv = u_create("lru", 4 << 20, 4096, 0);
	lru_run(kv, kv, "read-write");
	kv_close(kv);
}

/* The same with the hot keys read only through a read-only handle, which
 * cannot set an index slot's reference bit: its hits go to the read hints
 * (libkv/hint_posix.c), and the hot keys must survive just the same. */
static void test_lru_eviction_readonly(void **state)
{
	(void)state;
	struct kv_options o = {.size = 4 << 20, .max_value = 4096};
	const char *name = h_store_name("lruro");
	kv_t *kv = NULL, *ro = NULL;
	assert_kv(KV_OK, kv_create(name, &o, &kv));
	assert_kv(KV_OK, kv_open(name, KV_RDONLY, &ro));
	assert_non_null(ro->hint);
	lru_run(kv, ro, "read-only");
	kv_close(ro);
	kv_close(kv);
}

/* The read-hint segment: writable by exactly who may read the store,
 * ignored when it does not check out (a stale or planted id), replaced by
 * the next read-write attach, and gone when the last handle detaches, so
 * nothing can leave one behind. */
static bool seg_exists(uint64_t id)
{
	struct shmid_ds ds;
	return shmctl((int)(id - 1), IPC_STAT, &ds) == 0;
}

static void test_read_hints_segment(void **state)
{
	(void)state;
	struct kv_options o = {.size = 4 << 20, .mode = 0640};
	kv_t *kv = NULL, *ro = NULL, *rw = NULL;
	const char *name = h_store_name("hints");
	assert_kv(KV_OK, kv_create(name, &o, &kv));
	struct kv_hdr *h = kv__hdr(kv);
	uint64_t id = atomic_load(&h->hint_id);
	assert_true(id != 0);
	struct shmid_ds ds;
	assert_int_equal(shmctl((int)(id - 1), IPC_STAT, &ds), 0);
	/* Read by the group: written by the group, by nobody else; and
	 * already marked to go with its last user. */
	assert_int_equal(ds.shm_perm.mode & 0777, 0660);
	assert_int_equal(ds.shm_perm.uid, geteuid());
	assert_true(ds.shm_perm.mode & SHM_DEST);

	/* A segment that is not this store's: ignored by a reader. */
	int other = shmget(IPC_PRIVATE, 1 << 20, IPC_CREAT | 0600);
	assert_true(other >= 0);
	atomic_store(&h->hint_id, (uint64_t)other + 1);
	assert_kv(KV_OK, kv_open(name, KV_RDONLY, &ro));
	assert_null(ro->hint);
	char buf[16];
	size_t n;
	assert_kv(KV_OK, u_puts(kv, "a", "b"));
	assert_kv(KV_OK, kv_get(ro, "a", 1, buf, sizeof buf, &n));
	kv_close(ro);
	/* A read-write attach replaces it with a good one. */
	assert_kv(KV_OK, kv_open(name, KV_RDWR, &rw));
	assert_non_null(rw->hint);
	uint64_t id2 = atomic_load(&h->hint_id);
	assert_true(id2 != 0 && id2 != (uint64_t)other + 1 && id2 != id);
	assert_int_equal(shmctl(other, IPC_RMID, NULL), 0);
	assert_kv(KV_OK, kv_open(name, KV_RDONLY, &ro));
	assert_non_null(ro->hint);
	assert_ptr_not_equal(ro->hint, rw->hint);

	/* The first segment went with... nothing yet: the creator's
	 * handle has it. Closing the handles frees each. */
	assert_true(seg_exists(id));
	kv_close(kv);
	assert_false(seg_exists(id));
	assert_kv(KV_OK, kv_destroy(name));
	assert_kv(KV_EDESTROYED, kv_get(ro, "a", 1, buf, sizeof buf, &n));
	assert_true(seg_exists(id2));
	kv_close(rw);
	assert_true(seg_exists(id2)); /* the reader still has it */
	kv_close(ro);
	assert_false(seg_exists(id2));
}

/* Filled by one size, the store then takes a flood of another size: the
 * new class takes pages from the old one instead of failing or evicting
 * only among its own few items, and both sizes keep working. */
static void test_no_calcification(void **state)
{
	(void)state;
	kv_t *kv = u_create("calcify", 4 << 20, 4096, 0);
	char key[32], val[3000];
	memset(val, 'c', sizeof val);
	for (int i = 0; i < 5000; i++)
		assert_kv(KV_OK, kv_put(kv, key, (size_t)snprintf(key, sizeof key,
		                                                  "big%d", i),
		                        val, 3000, NULL));
	for (int i = 0; i < 40000; i++)
		assert_kv(KV_OK, kv_put(kv, key, (size_t)snprintf(key, sizeof key,
		                                                  "small%d", i),
		                        val, 60, NULL));
	struct kv_stats st;
	assert_kv(KV_OK, kv_stats(kv, &st));
	print_message("%llu items, %llu page moves, %llu evictions\n",
	              (unsigned long long)st.items,
	              (unsigned long long)st.page_moves,
	              (unsigned long long)st.evictions);
	assert_true(st.page_moves > 10);
	/* Most of the store now holds small items. */
	assert_true(st.items > 20000);
	for (int i = 39000; i < 40000; i++) {
		int kl = snprintf(key, sizeof key, "small%d", i);
		u_expect(kv, key, (size_t)kl, val, 60);
	}
	assert_sound(kv);
	kv_close(kv);
}

/* Mixed sizes far beyond capacity: every put succeeds, the last ones read
 * back, and the store checks sound after the storm. */
static void test_mixed_fill(void **state)
{
	(void)state;
	kv_t *kv = u_create("mixed", 4 << 20, 8192, 0);
	static char val[8192];
	char key[32];
	uint64_t x = 12345;
	for (size_t i = 0; i < sizeof val; i++)
		val[i] = (char)i;
	for (int i = 0; i < 30000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t vl = (x % 100 < 90) ? x % 300 : x % 8192;
		int kl = snprintf(key, sizeof key, "m%d", i);
		assert_kv(KV_OK, kv_put(kv, key, (size_t)kl, val, vl, NULL));
		u_expect(kv, key, (size_t)kl, val, vl);
		if (i % 5000 == 0)
			assert_sound(kv);
	}
	assert_sound(kv);
	kv_close(kv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_every_class, h_teardown),
		cmocka_unit_test_teardown(test_exhaustion, h_teardown),
		cmocka_unit_test_teardown(test_accounting, h_teardown),
		cmocka_unit_test_teardown(test_pages_return, h_teardown),
		cmocka_unit_test_teardown(test_lru_eviction, h_teardown),
		cmocka_unit_test_teardown(test_lru_eviction_readonly,
		                          h_teardown),
		cmocka_unit_test_teardown(test_read_hints_segment, h_teardown),
		cmocka_unit_test_teardown(test_no_calcification, h_teardown),
		cmocka_unit_test_teardown(test_mixed_fill, h_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
