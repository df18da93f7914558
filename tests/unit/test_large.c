/*
 * test_large.c - values larger than a page (libkv/large.c): every length
 * where the layout changes, the largest value, a full store, readers
 * racing a writer that swaps one large value for another, damage to a
 * large item's pages, and the waste the layout promises.
 */
#include <pthread.h>

#include "daemon.h" /* kv__sweep */
#include "unit.h"

#define PAGE KV_PAGE_SIZE

/* Each byte a function of its place, the seed and its page, so pages of
 * two values, or two pages of one, never compare equal by accident. */
static void pattern(unsigned char *v, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		v[i] = (unsigned char)((i * 2654435761u >> 11) ^ (seed * 97u) ^
		                       (unsigned)(i / PAGE) * 31u);
}

static unsigned char *value(size_t len, unsigned seed)
{
	unsigned char *v = malloc(len ? len : 1);
	assert_non_null(v);
	pattern(v, len, seed);
	return v;
}

/* Put and read back one value with this header (ttl, client flags) and
 * key length; the item must be large exactly when it does not fit a page. */
static void one(kv_t *kv, size_t klen, size_t vlen, uint64_t ttl,
                uint32_t cflags, unsigned seed)
{
	char key[KV_MAX_KEY];
	for (size_t i = 0; i < klen; i++)
		key[i] = (char)('a' + (i + seed) % 26);
	unsigned char *v = value(vlen, seed);
	struct kv_put_opts o = {.ttl_ms = ttl, .client_flags = cflags};
	assert_kv(KV_OK, kv_put(kv, key, klen, v, vlen, &o));

	unsigned char *got = malloc(vlen + 1);
	assert_non_null(got);
	size_t n = 0;
	struct kv_item_info info;
	assert_kv(KV_OK, kv_get_info(kv, key, klen, got, vlen + 1, &n, &info));
	assert_int_equal(n, vlen);
	assert_memory_equal(got, v, vlen);
	assert_int_equal(info.client_flags, cflags);
	assert_true(ttl ? info.ttl_ms > 0 : info.ttl_ms == -1);
	/* One byte short: KV_ERANGE with the length, nothing torn. */
	if (vlen > 0)
		assert_kv(KV_ERANGE,
		          kv_get(kv, key, klen, got, vlen - 1, &n));
	assert_int_equal(n, vlen);

	uint64_t off = u_item_of(kv, key, klen);
	const struct kv_item *it =
	    (const struct kv_item *)(const void *)(kv->base + off);
	uint64_t base = kv_item_hdr_len(kv_item_flags(ttl ? 1 : 0, cflags));
	bool large = base + klen + vlen > KV_CHUNK_MAX;
	assert_int_equal((it->flags & KV_IF_LARGE) != 0, large);
	free(got);
	free(v);
}

/* Every length where the layout changes: each class's last byte and the
 * one after, the page's, each page multiple's, with short and long keys
 * and every header (plain, TTL, client flags, both). */
static void test_every_boundary(void **state)
{
	(void)state;
	kv_t *kv = u_create("bounds", 64 << 20, 1 << 20, 0);
	const uint64_t ttls[] = {0, 3600000};
	const uint32_t cfs[] = {0, 7};
	const size_t keys[] = {1, 40, KV_MAX_KEY};
	unsigned seed = 0;

	for (unsigned t = 0; t < 2; t++)
		for (unsigned c = 0; c < 2; c++)
			for (unsigned k = 0; k < sizeof keys / sizeof keys[0]; k++) {
				uint64_t base = kv_item_hdr_len(
				    kv_item_flags(ttls[t], cfs[c]));
				size_t kl = keys[k];
				/* Class edges of the chunk (small items). */
				for (uint32_t i = 0; i < kv->nclasses; i++) {
					uint64_t cs = kv->class_size[i];
					if (cs < base + kl + 1)
						continue;
					size_t v = (size_t)(cs - base - kl);
					one(kv, kl, v, ttls[t], cfs[c], seed++);
					one(kv, kl, v + 1, ttls[t], cfs[c],
					    seed++);
				}
				/* The page edge and page multiples: the
				 * last item that fits a page, the first that
				 * does not, and values that fill pages
				 * exactly or by one byte more or less. */
				size_t fit = (size_t)(PAGE - base - kl);
				one(kv, kl, fit, ttls[t], cfs[c], seed++);
				one(kv, kl, fit + 1, ttls[t], cfs[c], seed++);
				for (size_t m = 1; m <= 4; m++)
					for (int d = -1; d <= 1; d++)
						one(kv, kl, m * PAGE + (size_t)d,
						    ttls[t], cfs[c], seed++);
				one(kv, kl, 1 << 20, ttls[t], cfs[c], seed++);
				assert_sound(kv);
			}
	/* Emptied, the store holds no page and no byte. */
	assert_kv(KV_OK, kv_flush(kv, NULL));
	struct kv_stats st;
	assert_kv(KV_OK, kv_stats(kv, &st));
	assert_int_equal(st.data_used, 0);
	assert_int_equal(st.pages_used, 0);
	assert_sound(kv);
	kv_close(kv);
}

/* The store's max value in full, one byte more refused; a value larger
 * than the whole store refused without harm. */
static void test_max_value(void **state)
{
	(void)state;
	uint32_t max = 3u << 20;
	kv_t *kv = u_create("max", 16 << 20, max, 0);
	unsigned char *v = value(6u << 20, 5);

	assert_kv(KV_OK, kv_put(kv, "k", 1, v, max, NULL));
	u_expect(kv, "k", 1, v, max);
	assert_kv(KV_EVALSIZE, kv_put(kv, "k", 1, v, max + 1, NULL));
	u_expect(kv, "k", 1, v, max);
	assert_sound(kv);
	kv_close(kv);

	/* max_value above the store: KV_EFULL, and nothing evicted. */
	kv = u_create("tiny", 4 << 20, 8u << 20, 0);
	assert_kv(KV_OK, u_puts(kv, "small", "kept"));
	assert_kv(KV_EFULL, kv_put(kv, "k", 1, v, 6u << 20, NULL));
	u_expect_str(kv, "small", "kept");
	assert_sound(kv);
	kv_close(kv);
	free(v);
}

/* The limit: a 1 GiB value in a store just large enough. */
static void test_one_gib(void **state)
{
	(void)state;
#if defined(__SANITIZE_THREAD__)
	skip(); /* the race detector's shadow of 2 GiB is not the point */
#else
	const uint32_t max = KV_MAX_VALUE_LIMIT;
	kv_t *kv = u_create("gib", (uint64_t)max + (16u << 20), max, 1000);
	unsigned char *v = value(max, 9);
	unsigned char *got = malloc(max);
	assert_non_null(got);
	size_t n = 0;

	assert_kv(KV_OK, kv_put(kv, "gib", 3, v, max, NULL));
	assert_kv(KV_OK, kv_get(kv, "gib", 3, got, max, &n));
	assert_int_equal(n, max);
	assert_memory_equal(got, v, max);
	assert_kv(KV_EVALSIZE, kv_put(kv, "gib", 3, v, (size_t)max + 1, NULL));
	assert_sound(kv);
	assert_kv(KV_OK, kv_del(kv, "gib", 3));
	struct kv_stats st;
	assert_kv(KV_OK, kv_stats(kv, &st));
	assert_int_equal(st.data_used, 0);
	kv_close(kv);
	free(got);
	free(v);
#endif
}

/* A full store: large puts evict small items and other large ones (by
 * whole pages), small puts evict large ones, and the store stays sound;
 * without eviction a put that finds no pages is KV_EFULL and changes
 * nothing. */
static void test_full_store(void **state)
{
	(void)state;
	kv_t *kv = u_create("full", 16 << 20, 2 << 20, 0);
	unsigned char *v = value(2 << 20, 3);
	char k[32];

	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 40; i++) {
			int kl = snprintf(k, sizeof k, "big%d", i);
			size_t len = (size_t)(300000 + i * 37000);
			assert_kv(KV_OK, kv_put(kv, k, (size_t)kl, v, len, NULL));
			u_expect(kv, k, (size_t)kl, v, len);
		}
		for (int i = 0; i < 20000; i++) {
			int kl = snprintf(k, sizeof k, "small%d", i);
			assert_kv(KV_OK, kv_put(kv, k, (size_t)kl, v, 700, NULL));
		}
		assert_sound(kv);
	}
	struct kv_stats st;
	assert_kv(KV_OK, kv_stats(kv, &st));
	assert_true(st.evictions > 0);
	kv_close(kv);

	kv = u_create_flags("noevict", 8 << 20, 2 << 20, 0, KV_CREATE_NOEVICT);
	int stored = 0;
	for (int i = 0; i < 100; i++) {
		int kl = snprintf(k, sizeof k, "big%d", i);
		int rc = kv_put(kv, k, (size_t)kl, v, 1 << 20, NULL);
		if (rc == KV_EFULL)
			break;
		assert_kv(KV_OK, rc);
		stored++;
	}
	assert_true(stored >= 4 && stored < 100);
	for (int i = 0; i < stored; i++) {
		int kl = snprintf(k, sizeof k, "big%d", i);
		u_expect(kv, k, (size_t)kl, v, 1 << 20);
	}
	assert_sound(kv);
	kv_close(kv);
	free(v);
}

/* Readers never see a torn large value: a writer swaps a key between two
 * values of different lengths and patterns (and deletes it now and then)
 * while readers copy it; every copy must be one of the two, whole. */
struct race {
	kv_t *kv;
	const unsigned char *a, *b;
	size_t alen, blen;
	atomic_bool stop;
	atomic_long reads, bad;
};

static void *reader(void *arg)
{
	struct race *r = arg;
	size_t cap = (r->alen > r->blen ? r->alen : r->blen) + 1;
	unsigned char *buf = malloc(cap);
	while (!atomic_load(&r->stop)) {
		size_t n = 0;
		int rc = kv_get(r->kv, "swap", 4, buf, cap, &n);
		if (rc == KV_ENOTFOUND)
			continue;
		if (rc != KV_OK ||
		    !((n == r->alen && memcmp(buf, r->a, n) == 0) ||
		      (n == r->blen && memcmp(buf, r->b, n) == 0)))
			atomic_fetch_add(&r->bad, 1);
		atomic_fetch_add(&r->reads, 1);
	}
	free(buf);
	return NULL;
}

static void test_readers_never_torn(void **state)
{
	(void)state;
	struct race r = {0};
	r.kv = u_create("race", 32 << 20, 1 << 20, 0);
	r.alen = 3 * PAGE + 100;
	r.blen = 5 * PAGE - 7;
	unsigned char *a = value(r.alen, 1), *b = value(r.blen, 2);
	r.a = a;
	r.b = b;
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, reader, &r), 0);
	for (int i = 0; i < 3000; i++) {
		if (i % 50 == 49)
			(void)kv_del(r.kv, "swap", 4);
		else
			assert_kv(KV_OK, kv_put(r.kv, "swap", 4,
			                        i % 2 ? b : a,
			                        i % 2 ? r.blen : r.alen, NULL));
	}
	atomic_store(&r.stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	print_message("%ld reads of a large value racing 3000 writes, %ld "
	              "bad\n",
	              atomic_load(&r.reads), atomic_load(&r.bad));
	assert_int_equal(atomic_load(&r.bad), 0);
	assert_sound(r.kv);
	kv_close(r.kv);
	free(a);
	free(b);
}

/* Expiry frees all of a large value: the sweep reclaims it, and so does
 * a put that finds it expired; either way no page or chunk stays held. */
static void test_expiry_frees_all(void **state)
{
	(void)state;
	kv_t *kv = u_create("expire", 16 << 20, 2 << 20, 0);
	size_t len = 5 * PAGE + 30000; /* pages and pieces */
	unsigned char *v = value(len, 11);
	uint64_t t0 = kv__now_ms();
	struct kv_put_opts o = {.ttl_ms = 1000};

	kv__set_test_clock(t0);
	assert_kv(KV_OK, kv_put(kv, "a", 1, v, len, &o));
	assert_kv(KV_OK, kv_put(kv, "b", 1, v, len, &o));
	u_expect(kv, "a", 1, v, len);
	kv__set_test_clock(t0 + 1001);
	u_absent(kv, "a", 1);
	assert_kv(KV_OK, kv__sweep(kv, kv->nbuckets, NULL));
	/* "b" went with the sweep too; a new "b" takes the room. */
	assert_kv(KV_OK, kv_put(kv, "b", 1, v, 100, NULL));
	assert_kv(KV_OK, kv_del(kv, "b", 1));
	kv__set_test_clock(0);
	struct kv_stats st;
	assert_kv(KV_OK, kv_stats(kv, &st));
	assert_int_equal(st.items, 0);
	assert_int_equal(st.data_used, 0);
	assert_int_equal(st.pages_used, 0);
	assert_int_equal(st.expired, 2);
	assert_sound(kv);
	kv_close(kv);
	free(v);
}

/* Touch and incr read a large value under the lock. */
static void test_touch_and_incr(void **state)
{
	(void)state;
	kv_t *kv = u_create("touch", 16 << 20, 1 << 20, 0);
	size_t len = 2 * PAGE + 5;
	unsigned char *v = value(len, 4);
	assert_kv(KV_OK, kv_put(kv, "t", 1, v, len, NULL));
	assert_kv(KV_OK, kv_touch(kv, "t", 1, 60000));
	u_expect(kv, "t", 1, v, len);
	int64_t ttl;
	assert_kv(KV_OK, kv_ttl(kv, "t", 1, &ttl));
	assert_true(ttl > 0);
	int64_t res;
	assert_kv(KV_ENOTNUM, kv_incr(kv, "t", 1, 1, &res));
	u_expect(kv, "t", 1, v, len);
	assert_sound(kv);
	kv_close(kv);
	free(v);
}

/* Damage to a large item's pages is refused, never followed: a get says
 * KV_ECORRUPT and check names the problem. */
static void test_damaged_pages(void **state)
{
	(void)state;
	for (int what = 0; what < 7; what++) {
		kv_t *kv = u_create("damage", 16 << 20, 1 << 20, 0);
		size_t len = 3 * PAGE + 20000; /* three pages, two pieces */
		unsigned char *v = value(len, 6);
		assert_kv(KV_OK, kv_put(kv, "d", 1, v, len, NULL));
		uint64_t off = u_item_of(kv, "d", 1);
		struct kv_item *it = (struct kv_item *)(void *)(kv->base + off);
		/* struct kv_large is only 4-aligned in the item: copy it. */
		uint8_t *meta = kv->base + off + kv_item_hdr_len(it->flags) -
		                KV_ITEM_LARGE;
		struct kv_large l;
		struct kv_large *lg = &l;
		memcpy(&l, meta, sizeof l);
		assert_true(l.piece[1] != 0);
		struct kv_page *pg = kv__page(kv, lg->first - 1);
		switch (what) {
		case 0: /* the page count */
			lg->npages++;
			break;
		case 1: /* a link out of the table */
			pg->next = (uint32_t)kv->npages + 5;
			break;
		case 2: /* a page that names another owner */
			pg->free_head = off + 8;
			break;
		case 3: /* a page that is not a large item's */
			pg->cls = KV_PAGE_FREE;
			break;
		case 4: /* a piece that names another owner */
			((struct kv_item *)(void *)(kv->base +
			                            lg->piece[1]))->version_lo += 4;
			break;
		case 5: /* a piece that carries another length */
			((struct kv_item *)(void *)(kv->base +
			                            lg->piece[0]))->vlen--;
			break;
		case 6: /* a piece slot naming another chunk */
			lg->piece[0] = lg->piece[1];
			break;
		}
		memcpy(meta, &l, sizeof l);
		unsigned char *got = malloc(len);
		size_t n;
		assert_kv(KV_ECORRUPT, kv_get(kv, "d", 1, got, len, &n));
		assert_kv(KV_ECORRUPT, kv_check(kv, NULL, NULL));
		free(got);
		free(v);
		kv_close(kv);
		h_cleanup();
	}
}

/* Memory an item of these lengths holds in the store: its chunk's and
 * pieces' shares of their pages (a page of class c holds per_page[c]
 * chunks) and its pages. */
static double held(kv_t *kv, uint64_t hlen, uint64_t klen, uint64_t vlen)
{
	struct kv_split sp;
	kv__split(hlen, klen, vlen, &sp);
	uint32_t c = kv__class_for(kv, sp.chunk);
	double b = (double)PAGE / kv->class_per_page[c];
	for (uint64_t i = 0; i < sp.npieces; i++)
		b += (double)PAGE / kv->class_per_page[kv__piece_class(kv, &sp, i)];
	return b + (double)sp.npages * PAGE;
}

/* Waste: for every value length from 1 byte to the max (every length to
 * a few pages, then every 61st, then every page), with short and long
 * keys and every header, the memory the item holds exceeds its bytes
 * (header, key and value) by at most 15 % of it: alignment, a class's
 * rounding, a page's unused end, pieces, pages and struct kv_large all
 * count as waste. */
static void test_waste(void **state)
{
	(void)state;
	kv_t *kv = u_create("waste", 64 << 20, KV_MAX_VALUE_LIMIT, 1000);
	const size_t keys[] = {1, 8, 16, 250, KV_MAX_KEY};
	double worst = 0;
	size_t worst_at = 0, worst_key = 0;
	for (unsigned k = 0; k < sizeof keys / sizeof keys[0]; k++)
		for (unsigned f = 0; f < 4; f++) {
			uint64_t hl = kv_item_hdr_len((uint8_t)f);
			for (uint64_t v = 1; v <= KV_MAX_VALUE_LIMIT;
			     v += v < 4 * PAGE ? 1 : v < (16u << 20) ? 61 : PAGE) {
				uint64_t need = hl + keys[k] + v;
				double w = 1.0 - (double)need /
				                     held(kv, hl, keys[k], v);
				if (w > worst) {
					worst = w;
					worst_at = v;
					worst_key = keys[k];
				}
			}
		}
	print_message("worst waste: %.1f %% (a %zu-byte value, %zu-byte key)\n",
	              worst * 100, worst_at, worst_key);
	assert_true(worst <= 0.15);

	/* And the store agrees: what a value of several pages and pieces
	 * takes is what held() says (its pages, and its chunks' bytes). */
	unsigned char *v = value(3 * PAGE + 30000, 8);
	assert_kv(KV_OK, kv_put(kv, "w", 1, v, 3 * PAGE + 30000, NULL));
	struct kv_stats st;
	assert_kv(KV_OK, kv_stats(kv, &st));
	struct kv_split sp;
	kv__split(KV_ITEM_HDR, 1, 3 * PAGE + 30000, &sp);
	assert_int_equal(sp.npages, 3);
	assert_int_equal(sp.npieces, 3);
	uint64_t chunks = kv->class_size[kv__class_for(kv, sp.chunk)];
	for (uint64_t i = 0; i < sp.npieces; i++)
		chunks += kv->class_size[kv__piece_class(kv, &sp, i)];
	assert_int_equal(st.data_used, 3 * PAGE + chunks);
	kv_close(kv);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_every_boundary, h_teardown),
		cmocka_unit_test_teardown(test_max_value, h_teardown),
		cmocka_unit_test_teardown(test_one_gib, h_teardown),
		cmocka_unit_test_teardown(test_full_store, h_teardown),
		cmocka_unit_test_teardown(test_readers_never_torn, h_teardown),
		cmocka_unit_test_teardown(test_expiry_frees_all, h_teardown),
		cmocka_unit_test_teardown(test_touch_and_incr, h_teardown),
		cmocka_unit_test_teardown(test_damaged_pages, h_teardown),
		cmocka_unit_test_teardown(test_waste, h_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
