/*
 * storeutil.c - see storeutil.h.
 */
#include <inttypes.h>
#include <stdlib.h>

#include "harness.h"
#include "storeutil.h"

kv_t *attach(const char *store)
{
	kv_t *kv = NULL;
	int rc = kv_open(store, KV_RDWR, &kv);

	if (rc != KV_OK)
		fail_msg("kv_open %s: %s", store, kv_strerror(rc));
	return kv;
}

void lib_put(kv_t *kv, const void *key, size_t klen, const void *val,
             size_t vlen, uint64_t ttl_ms)
{
	struct kv_put_opts po = {.ttl_ms = ttl_ms};
	int rc = kv_put(kv, key, klen, val, vlen, &po);

	if (rc != KV_OK)
		fail_msg("kv_put (%zu-byte key, %zu-byte value): %s", klen, vlen,
		         kv_strerror(rc));
}

char *get_value(kv_t *kv, const void *key, size_t klen, size_t *vlen)
{
	char probe, *buf;
	int rc = kv_get(kv, key, klen, &probe, 0, vlen);

	if (rc == KV_ENOTFOUND)
		return NULL;
	if (rc == KV_OK)
		return malloc(1);
	assert_int_equal(rc, KV_ERANGE);
	buf = malloc(*vlen);
	assert_non_null(buf);
	assert_int_equal(kv_get(kv, key, klen, buf, *vlen, vlen), KV_OK);
	return buf;
}

static int collect(void *ctx, const void *key, size_t klen)
{
	struct keylist *l = ctx;

	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 256;
		l->k = realloc(l->k, l->cap * sizeof *l->k);
		l->len = realloc(l->len, l->cap * sizeof *l->len);
		assert_non_null(l->k);
		assert_non_null(l->len);
	}
	l->k[l->n] = malloc(klen);
	assert_non_null(l->k[l->n]);
	memcpy(l->k[l->n], key, klen);
	l->len[l->n++] = klen;
	return 0;
}

void keylist_free(struct keylist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->k[i]);
	free(l->k);
	free(l->len);
	memset(l, 0, sizeof *l);
}

void all_keys(kv_t *kv, struct keylist *l)
{
	uint64_t cursor = 0;

	memset(l, 0, sizeof *l);
	do
		assert_int_equal(kv_scan(kv, &cursor, 128, collect, l), KV_OK);
	while (cursor != 0);
}

size_t count_keys(const char *store)
{
	struct keylist l;
	kv_t *kv = attach(store);
	size_t n;

	all_keys(kv, &l);
	n = l.n;
	keylist_free(&l);
	kv_close(kv);
	return n;
}

void compare_stores(const char *a, const char *b, int64_t tol_ms)
{
	kv_t *ka = attach(a), *kb = attach(b);
	struct keylist la, lb;

	all_keys(ka, &la);
	all_keys(kb, &lb);
	if (la.n != lb.n)
		fail_msg("store %s has %zu keys, %s has %zu", a, la.n, b, lb.n);
	for (size_t i = 0; i < la.n; i++) {
		size_t va = 0, vb = 0;
		char *x = get_value(ka, la.k[i], la.len[i], &va);
		char *y = get_value(kb, la.k[i], la.len[i], &vb);
		int64_t ta = 0, tb = 0;

		assert_non_null(x);
		if (y == NULL)
			fail_msg("key %zu (%zu bytes) of %s missing from %s", i,
			         la.len[i], a, b);
		assert_int_equal(va, vb);
		if (memcmp(x, y, va) != 0)
			fail_msg("key %zu: values differ between %s and %s", i,
			         a, b);
		assert_int_equal(kv_ttl(ka, la.k[i], la.len[i], &ta), KV_OK);
		assert_int_equal(kv_ttl(kb, la.k[i], la.len[i], &tb), KV_OK);
		if ((ta < 0) != (tb < 0) ||
		    (ta >= 0 && llabs((long long)(ta - tb)) > tol_ms))
			fail_msg("key %zu: ttl %" PRId64 " ms in %s, %" PRId64
			         " in %s", i, ta, a, tb, b);
		free(x);
		free(y);
	}
	keylist_free(&la);
	keylist_free(&lb);
	kv_close(ka);
	kv_close(kb);
}

void expect_ok(const char *store, const char *cmd, const char *key,
               const char *val)
{
	struct h_result r;

	if (val != NULL)
		KV(&r, store, cmd, key, val);
	else
		KV(&r, store, cmd, key);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
}

void bad_command_lines(const char *store, const char *const lines[][5],
                       size_t n)
{
	struct h_result r;

	for (size_t i = 0; i < n; i++) {
		const char *argv[8] = {h_kv_bin(), "-s", store};
		int k = 3;

		for (int j = 0; lines[i][j] != NULL; j++)
			argv[k++] = lines[i][j];
		argv[k] = NULL;
		h_run(&r, argv, NULL);
		H_ASSERT_EXIT(&r, 2);
		H_ASSERT_ERR_LINE(&r, "kv: ");
		assert_int_equal(r.out_len, 0);
		h_result_free(&r);
	}
}
