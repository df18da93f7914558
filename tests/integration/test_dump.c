/*
 * test_dump.c - "kv dump" and "kv load" (docs/dump-format.md): round trips
 * of large and binary data into another store with every byte, TTL and
 * client flag compared; truncated and corrupt dumps refused with the
 * target untouched; --partial; --nx; TTLs that run out before a load; a
 * known-answer dump built here byte by byte; version-1 dumps (no client
 * flags) still loaded, unknown versions refused; value, TTL and flags of
 * a record from one read while a writer changes them; refusal to write
 * binary to a terminal; how a dump FILE is replaced.
 *
 * This file parses and builds dumps with its own code, not kv's, so a
 * mistake shared by the writer and the reader in cli/dump.c still fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "harness.h"
#include "kv.h"
#include "storeutil.h"


#define MAGIC "KVDUMP\0\0"
#define HEADER_LEN 24
#define END_LEN 20
#define VERSION 2     /* what kv dump writes */
#define REC_LEN 20    /* klen, vlen, ttl_ms, client_flags */
#define REC_LEN_V1 16 /* klen, vlen, ttl_ms */

static const char *serve(const char *tag, const char *size)
{
	const char *store = h_store_name(tag);

	h_kvd(store, "--size", size, NULL);
	return store;
}

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static unsigned char *read_file(const char *path, size_t *len)
{
	struct stat st;
	unsigned char *b;
	FILE *f = fopen(path, "rb");

	if (f == NULL)
		fail_msg("%s: %s", path, strerror(errno));
	assert_int_equal(fstat(fileno(f), &st), 0);
	b = h_alloc((size_t)st.st_size + 1);
	*len = fread(b, 1, (size_t)st.st_size, f);
	assert_int_equal(*len, (size_t)st.st_size);
	fclose(f);
	return b;
}

static void write_file(const char *path, const void *b, size_t len)
{
	FILE *f = fopen(path, "wb");

	if (f == NULL)
		fail_msg("%s: %s", path, strerror(errno));
	assert_int_equal(fwrite(b, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void set32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void set64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* Check a whole dump the way the spec says, independently of kv, and
 * return its record count; off (if not NULL) gets each record's offset. */
static size_t parse_dump(const unsigned char *b, size_t len, size_t *off,
                         size_t max)
{
	size_t pos = HEADER_LEN, n = 0;

	assert_true(len >= HEADER_LEN + END_LEN);
	assert_memory_equal(b, MAGIC, 8);
	assert_int_equal(le32(b + 8), VERSION);
	assert_int_equal(le32(b + 12), 0);
	while (le32(b + pos) != 0xFFFFFFFFu) {
		uint32_t klen = le32(b + pos), vlen = le32(b + pos + 4);
		int64_t ttl = (int64_t)le64(b + pos + 8);

		assert_true(klen >= 1 && klen <= KV_MAX_KEY);
		assert_true(ttl == -1 || ttl > 0);
		if (off != NULL && n < max)
			off[n] = pos;
		pos += REC_LEN + (size_t)klen + vlen;
		assert_true(pos + END_LEN <= len);
		n++;
	}
	assert_int_equal(pos + END_LEN, len);
	assert_int_equal(le64(b + pos + 4), n);
	assert_int_equal(le64(b + pos + 12), XXH64(b, pos + 12, 0));
	return n;
}

static void fill_bytes(unsigned char *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (unsigned char)(seed >> 16);
	}
}

/* One record of a dump built here. */
struct rec {
	const char *key;
	size_t klen; /* 0: strlen(key) */
	const char *val;
	size_t vlen; /* 0 with val not NULL: strlen(val) */
	int64_t ttl;
	uint32_t flags; /* client flags; not written in version 1 */
};

/* A whole dump of the given version (1 or 2, or any other number for the
 * version field alone, laid out as 2), made at dump_ms, of n records, with
 * the right count and checksum; h_alloc'd. */
static unsigned char *build_dump(uint32_t version, uint64_t dump_ms,
                                 const struct rec *r, size_t n, size_t *len)
{
	size_t rl = version == 1 ? REC_LEN_V1 : REC_LEN, total = HEADER_LEN;
	size_t pos = HEADER_LEN;
	unsigned char *b;

	for (size_t i = 0; i < n; i++) {
		size_t k = r[i].klen ? r[i].klen : strlen(r[i].key);
		size_t v = r[i].vlen || r[i].val == NULL ? r[i].vlen
		                                         : strlen(r[i].val);

		total += rl + k + v;
	}
	total += END_LEN;
	b = h_alloc(total);
	memcpy(b, MAGIC, 8);
	set32(b + 8, version);
	set32(b + 12, 0);
	set64(b + 16, dump_ms);
	for (size_t i = 0; i < n; i++) {
		size_t k = r[i].klen ? r[i].klen : strlen(r[i].key);
		size_t v = r[i].vlen || r[i].val == NULL ? r[i].vlen
		                                         : strlen(r[i].val);

		set32(b + pos, (uint32_t)k);
		set32(b + pos + 4, (uint32_t)v);
		set64(b + pos + 8, (uint64_t)r[i].ttl);
		if (rl == REC_LEN)
			set32(b + pos + 16, r[i].flags);
		memcpy(b + pos + rl, r[i].key, k);
		if (v > 0)
			memcpy(b + pos + rl + k, r[i].val, v);
		pos += rl + k + v;
	}
	set32(b + pos, 0xFFFFFFFFu);
	set64(b + pos + 4, n);
	set64(b + pos + 12, XXH64(b, pos + 12, 0));
	*len = pos + END_LEN;
	assert_int_equal(*len, total);
	return b;
}

/* kv_put with a TTL (0: none) and client flags, failing the test on any
 * error. */
static void put_flags(kv_t *kv, const void *key, size_t klen,
                      const void *val, size_t vlen, uint64_t ttl_ms,
                      uint32_t flags)
{
	struct kv_put_opts po;

	memset(&po, 0, sizeof po);
	po.ttl_ms = ttl_ms;
	po.client_flags = flags;
	assert_int_equal(kv_put(kv, key, klen, val, vlen, &po), KV_OK);
}

/* kv_get_info of a key that must be there: its value (malloc'd; free it),
 * length and info. */
static char *info_of(kv_t *kv, const void *key, size_t klen, size_t *vlen,
                     struct kv_item_info *info)
{
	char *buf = NULL;
	size_t cap = 0;
	int rc;

	for (int tries = 0; tries < 16; tries++) {
		rc = kv_get_info(kv, key, klen, buf, cap, vlen, info);
		if (rc != KV_ERANGE)
			break;
		free(buf);
		cap = *vlen;
		buf = malloc(cap);
		assert_non_null(buf);
	}
	if (rc != KV_OK)
		fail_msg("kv_get_info of a key of %zu bytes: %s", klen,
		         kv_strerror(rc));
	return buf != NULL ? buf : malloc(1);
}

/* Every key of store a has the same client flags in store b (the values
 * and TTLs compare_stores checks). */
static void compare_flags(const char *a, const char *b)
{
	kv_t *ka = attach(a), *kb = attach(b);
	struct keylist l;

	all_keys(ka, &l);
	for (size_t i = 0; i < l.n; i++) {
		struct kv_item_info ia, ib;
		size_t va, vb;

		free(info_of(ka, l.k[i], l.len[i], &va, &ia));
		free(info_of(kb, l.k[i], l.len[i], &vb, &ib));
		if (ia.client_flags != ib.client_flags)
			fail_msg("key %zu: client flags 0x%" PRIx32 " in %s, "
			         "0x%" PRIx32 " in %s", i, ia.client_flags, a,
			         ib.client_flags, b);
	}
	keylist_free(&l);
	kv_close(ka);
	kv_close(kb);
}

/* ------------------------------------------------------------------------ */

/* 2000 keys, some with 500 KiB values, some with TTLs, most with client
 * flags, and binary keys and values (NUL, every byte value, empty): dump
 * to a file and load into another store, and pipe a dump straight into a
 * third. */
static void test_round_trip(void **state)
{
	const char *src = serve("src", "64M");
	const char *dst = serve("dst", "64M");
	const char *pipe_dst = serve("pipedst", "64M");
	const char *dir = h_tmpdir("dump");
	size_t big = 500 * 1024, len;
	unsigned char *v = h_alloc(big);
	unsigned char all[256], allv[1024], nuls[1000];
	char path[256], key[32], line[512];
	struct h_result r;
	kv_t *kv;
	size_t nrec;
	unsigned char *b;

	(void)state;
	kv = attach(src);
	for (int i = 0; i < 2000; i++) {
		int n = snprintf(key, sizeof key, "key:%d", i);
		size_t vlen = i % 50 == 0 ? big : (size_t)(i * 37 % 3000);
		uint64_t ttl = i % 3 == 0 ? 3600000 : i % 7 == 0 ? 600000 : 0;

		fill_bytes(v, vlen, (uint32_t)i);
		put_flags(kv, key, (size_t)n, v, vlen, ttl,
		          i % 5 == 0 ? 0 : (uint32_t)i * 2654435761u);
	}
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	for (int i = 0; i < 1024; i++)
		allv[i] = (unsigned char)(255 - i % 256);
	memset(nuls, 0, sizeof nuls);
	lib_put(kv, all, sizeof all, allv, sizeof allv, 0);
	put_flags(kv, "\0", 1, "\0", 1, 0, 0xffffffffu);
	lib_put(kv, "\n", 1, "line\nfeed\r\n", 11, 120000);
	lib_put(kv, "empty", 5, "", 0, 0);
	lib_put(kv, "empty-ttl", 9, "", 0, 60000);
	lib_put(kv, "nuls", 4, nuls, sizeof nuls, 0);
	lib_put(kv, "\xff\xfe\xfd", 3, all, sizeof all, 0);
	kv_close(kv);

	snprintf(path, sizeof path, "%s/src.kvdump", dir);
	KV(&r, src, "dump", path);
	H_ASSERT_EXIT(&r, 0);
	assert_int_equal(r.out_len, 0);
	H_ASSERT_ERR_HAS(&r, "dumped 2007 keys");
	h_result_free(&r);

	b = read_file(path, &len);
	nrec = parse_dump(b, len, NULL, 0);
	assert_int_equal(nrec, 2007);
	h_free(b);

	KV(&r, dst, "load", path);
	H_ASSERT_EXIT(&r, 0);
	assert_int_equal(r.out_len, 0);
	assert_string_equal(r.err, "loaded 2007 keys\n");
	h_result_free(&r);
	compare_stores(src, dst, 3000);
	compare_flags(src, dst);
	KV(&r, dst, "check");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);

	/* stdout to stdin, through a pipe; "-" names them too. */
	snprintf(line, sizeof line,
	         "\"$1\" -s \"$2\" dump | \"$1\" -s \"$3\" load - && "
	         "\"$1\" -s \"$2\" dump - >/dev/null");
	{
		const char *argv[] = {"/bin/sh", "-c", line, "sh", h_kv_bin(),
		                      src, pipe_dst, NULL};

		h_run(&r, argv, NULL);
		H_ASSERT_EXIT(&r, 0);
		H_ASSERT_ERR_HAS(&r, "loaded 2007 keys");
		h_result_free(&r);
	}
	compare_stores(src, pipe_dst, 3000);
	compare_flags(src, pipe_dst);
	h_free(v);
}

/* The version-1 example of docs/dump-format.md ("Version 1"): a = 1, no
 * TTL, made at 2025-01-01T00:00:00Z. */
static const unsigned char example_v1[62] = {
	0x4b, 0x56, 0x44, 0x55, 0x4d, 0x50, 0x00, 0x00, /* magic */
	0x01, 0x00, 0x00, 0x00,                         /* version 1 */
	0x00, 0x00, 0x00, 0x00,                         /* flags */
	0x00, 0x7c, 0x29, 0x1f, 0x94, 0x01, 0x00, 0x00, /* time */
	0x01, 0x00, 0x00, 0x00,                         /* klen */
	0x01, 0x00, 0x00, 0x00,                         /* vlen */
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* ttl -1 */
	0x61, 0x31,                                     /* "a" "1" */
	0xff, 0xff, 0xff, 0xff,                         /* end */
	0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* count */
	0x18, 0x20, 0xae, 0x0b, 0xd9, 0x03, 0x69, 0x7b, /* XXH64 */
};

/* A dump of a store with one key, a = 1 with client flags 42: exactly the
 * bytes of the example in docs/dump-format.md but for the time and the
 * checksum. And that example, built here byte by byte, loads. */
static void test_known_answer(void **state)
{
	static const unsigned char example[66] = {
		0x4b, 0x56, 0x44, 0x55, 0x4d, 0x50, 0x00, 0x00, /* magic */
		0x02, 0x00, 0x00, 0x00,                         /* version */
		0x00, 0x00, 0x00, 0x00,                         /* flags */
		0x00, 0x7c, 0x29, 0x1f, 0x94, 0x01, 0x00, 0x00, /* time */
		0x01, 0x00, 0x00, 0x00,                         /* klen */
		0x01, 0x00, 0x00, 0x00,                         /* vlen */
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* ttl -1 */
		0x2a, 0x00, 0x00, 0x00,                         /* client 42 */
		0x61, 0x31,                                     /* "a" "1" */
		0xff, 0xff, 0xff, 0xff,                         /* end */
		0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* count */
		0xfa, 0xb6, 0xda, 0xc8, 0xad, 0x77, 0xb6, 0xb3, /* XXH64 */
	};
	const char *src = serve("kat", "4M");
	const char *dst = serve("katdst", "4M");
	const char *dir = h_tmpdir("kat");
	struct kv_item_info info;
	char path[256], *val;
	struct h_result r;
	uint64_t before, after, t;
	size_t vlen;
	kv_t *kv;

	(void)state;
	/* The checksums in the document are XXH64 of the bytes before. */
	assert_int_equal(XXH64(example, 58, 0), 0xb3b677adc8dab6faull);
	assert_int_equal(le64(example + 58), 0xb3b677adc8dab6faull);
	assert_int_equal(XXH64(example_v1, 54, 0), 0x7b6903d90bae2018ull);
	assert_int_equal(le64(example_v1 + 54), 0x7b6903d90bae2018ull);

	kv = attach(src);
	put_flags(kv, "a", 1, "1", 1, 0, 42);
	kv_close(kv);
	before = wall_ms();
	KV(&r, src, "dump");
	after = wall_ms();
	H_ASSERT_EXIT(&r, 0);
	assert_int_equal(r.out_len, 66);
	assert_memory_equal(r.out, example, 16);
	t = le64((unsigned char *)r.out + 16);
	assert_true(t >= before - 1 && t <= after + 1);
	assert_memory_equal(r.out + 24, example + 24, 58 - 24);
	assert_int_equal(le64((unsigned char *)r.out + 58),
	                 XXH64(r.out, 58, 0));
	h_result_free(&r);

	snprintf(path, sizeof path, "%s/example.kvdump", dir);
	write_file(path, example, sizeof example);
	KV(&r, dst, "load", path);
	H_ASSERT_EXIT(&r, 0);
	assert_string_equal(r.err, "loaded 1 key\n");
	h_result_free(&r);
	KV(&r, dst, "get", "a");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, "1");
	h_result_free(&r);
	kv = attach(dst);
	val = info_of(kv, "a", 1, &vlen, &info);
	assert_int_equal(info.client_flags, 42);
	assert_int_equal(info.ttl_ms, -1);
	free(val);
	kv_close(kv);

	/* An empty store: header and end record, 44 bytes. */
	KV(&r, dst, "del", "a");
	h_result_free(&r);
	KV(&r, dst, "dump");
	H_ASSERT_EXIT(&r, 0);
	assert_int_equal(r.out_len, 44);
	assert_int_equal(parse_dump((unsigned char *)r.out, r.out_len, NULL,
	                            0),
	                 0);
	H_ASSERT_ERR_HAS(&r, "dumped 0 keys");
	h_result_free(&r);
}

/* Items with client flags 0, 1 and 0xffffffff, each with and without a
 * TTL (and a binary key, an empty value): the dump holds each one's flags
 * in its record (read here with this file's own parser), and a load into
 * a fresh store gives every key its value, TTL and flags back, as
 * kv_get_info reads them. A load over existing keys replaces their flags;
 * with --nx it keeps them. */
static void test_round_trip_flags(void **state)
{
	static const uint32_t flags[] = {0, 1, 0xffffffffu};
	const char *src = serve("flsrc", "4M");
	const char *dst = serve("fldst", "4M");
	const char *dst2 = serve("fldst2", "4M");
	const char *dir = h_tmpdir("flags");
	struct {
		char key[16];
		size_t klen;
		uint64_t ttl;
		uint32_t flags;
		bool seen;
	} item[8];
	size_t n = 0, len, off[16], nrec;
	char path[256];
	struct h_result r;
	unsigned char *b;
	kv_t *kv;

	(void)state;
	memset(item, 0, sizeof item);
	for (size_t i = 0; i < 3; i++)
		for (int ttl = 0; ttl < 2; ttl++) {
			item[n].klen = (size_t)snprintf(item[n].key,
			                                sizeof item[n].key,
			                                "f%zu-%s", i,
			                                ttl ? "ttl" : "forever");
			item[n].ttl = ttl ? 3600000 : 0;
			item[n].flags = flags[i];
			n++;
		}
	memcpy(item[n].key, "\0bin\xff", 6);
	item[n].klen = 6;
	item[n].ttl = 600000;
	item[n].flags = 0x80000000u;
	n++;
	memcpy(item[n].key, "empty", 5);
	item[n].klen = 5;
	item[n].ttl = 0;
	item[n].flags = 0xfffffffeu;
	n++;
	kv = attach(src);
	for (size_t i = 0; i < n; i++)
		put_flags(kv, item[i].key, item[i].klen,
		          i == n - 1 ? "" : item[i].key,
		          i == n - 1 ? 0 : item[i].klen, item[i].ttl,
		          item[i].flags);
	kv_close(kv);

	snprintf(path, sizeof path, "%s/flags.kvdump", dir);
	KV(&r, src, "dump", path);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);

	/* Each record's client_flags field, at offset 16 of its header. */
	b = read_file(path, &len);
	nrec = parse_dump(b, len, off, 16);
	assert_int_equal(nrec, n);
	for (size_t j = 0; j < nrec; j++) {
		const unsigned char *rec = b + off[j];
		size_t i;

		for (i = 0; i < n; i++)
			if (le32(rec) == item[i].klen &&
			    memcmp(rec + REC_LEN, item[i].key, item[i].klen) ==
			        0)
				break;
		assert_true(i < n);
		assert_false(item[i].seen);
		item[i].seen = true;
		assert_int_equal(le32(rec + 16), item[i].flags);
		if (item[i].ttl == 0)
			assert_int_equal((int64_t)le64(rec + 8), -1);
		else
			assert_true((int64_t)le64(rec + 8) > 0);
	}
	h_free(b);

	KV(&r, dst, "load", path);
	H_ASSERT_EXIT(&r, 0);
	assert_string_equal(r.err, "loaded 8 keys\n");
	h_result_free(&r);
	compare_stores(src, dst, 3000);
	kv = attach(dst);
	for (size_t i = 0; i < n; i++) {
		struct kv_item_info info;
		size_t vlen;
		char *val = info_of(kv, item[i].key, item[i].klen, &vlen,
		                    &info);

		if (info.client_flags != item[i].flags)
			fail_msg("key %zu: client flags 0x%" PRIx32 " after "
			         "the load, want 0x%" PRIx32, i,
			         info.client_flags, item[i].flags);
		if (item[i].ttl == 0)
			assert_int_equal(info.ttl_ms, -1);
		else
			assert_true(info.ttl_ms > 0 &&
			            info.ttl_ms <= (int64_t)item[i].ttl);
		assert_int_equal(vlen, i == n - 1 ? 0 : item[i].klen);
		assert_memory_equal(val, item[i].key, vlen);
		free(val);
	}
	kv_close(kv);

	/* Over keys that exist with other flags: a load replaces them, a
	 * load --nx keeps them. */
	kv = attach(dst2);
	put_flags(kv, "f1-forever", 10, "old", 3, 0, 7);
	put_flags(kv, "f2-ttl", 6, "old", 3, 0, 7);
	kv_close(kv);
	KV(&r, dst2, "load", "--nx", path);
	H_ASSERT_EXIT(&r, 0);
	assert_string_equal(r.err, "loaded 6 keys (2 existing kept by --nx)\n");
	h_result_free(&r);
	kv = attach(dst2);
	for (int pass = 0; pass < 2; pass++) {
		struct kv_item_info i1, i2;
		size_t v1, v2;
		char *x = info_of(kv, "f1-forever", 10, &v1, &i1);
		char *y = info_of(kv, "f2-ttl", 6, &v2, &i2);

		assert_int_equal(i1.client_flags, pass == 0 ? 7 : 1);
		assert_int_equal(i2.client_flags, pass == 0 ? 7 : 0xffffffffu);
		assert_int_equal(v1, pass == 0 ? 3 : 10);
		assert_int_equal(v2, pass == 0 ? 3 : 6);
		free(x);
		free(y);
		if (pass == 0) {
			KV(&r, dst2, "load", path);
			H_ASSERT_EXIT(&r, 0);
			assert_string_equal(r.err, "loaded 8 keys\n");
			h_result_free(&r);
		}
	}
	kv_close(kv);
	compare_flags(src, dst2);
}

/* A small source store and its dump, for the damage tests. */
static unsigned char *small_dump(const char *src, const char *dir,
                                 int keys, size_t *len)
{
	char path[256], key[32], val[64];
	struct h_result r;
	kv_t *kv = attach(src);

	for (int i = 0; i < keys; i++) {
		int k = snprintf(key, sizeof key, "key%02d", i);
		int n = snprintf(val, sizeof val, "value of key %d", i);

		lib_put(kv, key, (size_t)k, val, (size_t)n,
		        i % 4 == 0 ? 3600000 : 0);
	}
	kv_close(kv);
	snprintf(path, sizeof path, "%s/small.kvdump", dir);
	KV(&r, src, "dump", path);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	return read_file(path, len);
}

/* Load bytes into store; expect exit 2, one line with `why` and that
 * nothing was loaded, and the store still empty. */
static void expect_refused(const char *store, const char *path,
                           const void *b, size_t len, const char *why,
                           const char *what)
{
	struct h_result r;

	write_file(path, b, len);
	KV(&r, store, "load", path);
	if (r.code != 2 || (why != NULL && strstr(r.err, why) == NULL) ||
	    strstr(r.err, "nothing was loaded") == NULL) {
		h_dump(&r);
		fail_msg("load of %s: want exit 2, '%s'", what,
		         why ? why : "");
	}
	H_ASSERT_ERR_LINE(&r, "kv: load: ");
	h_result_free(&r);
	if (count_keys(store) != 0)
		fail_msg("load of %s changed the store", what);
}

static void test_truncated(void **state)
{
	const char *src = serve("trsrc", "4M");
	const char *dst = serve("trdst", "4M");
	const char *dir = h_tmpdir("trunc");
	char path[256], what[64];
	size_t len, off[64], n;
	unsigned char *b = small_dump(src, dir, 20, &len);

	(void)state;
	n = parse_dump(b, len, off, 64);
	assert_int_equal(n, 20);
	snprintf(path, sizeof path, "%s/cut.kvdump", dir);
	expect_refused(dst, path, b, 0, "empty", "an empty file");
	/* Every cut inside the header, the first two records, the last one
	 * and the end record; then a sample of the rest. */
	for (size_t cut = 1; cut < len; cut++) {
		bool edge = cut < off[2] || cut >= off[19];

		if (!edge && cut % 7 != 0)
			continue;
		snprintf(what, sizeof what, "a dump cut at %zu of %zu", cut, len);
		expect_refused(dst, path, b, cut, "truncated", what);
	}
	h_free(b);
}

static void test_corrupt(void **state)
{
	const char *src = serve("cosrc", "4M");
	const char *dst = serve("codst", "4M");
	const char *dir = h_tmpdir("corrupt");
	char path[256], what[64];
	size_t len, off[8];
	unsigned char *b = small_dump(src, dir, 3, &len);
	unsigned char *c = h_alloc(len + 1);

	(void)state;
	assert_int_equal(parse_dump(b, len, off, 8), 3);
	snprintf(path, sizeof path, "%s/bad.kvdump", dir);

	/* The named failures. */
	memcpy(c, b, len);
	c[0] = 'X';
	expect_refused(dst, path, c, len, "bad magic", "a bad magic");
	/* Versions this kv does not read, the checksum made right. */
	{
		static const uint32_t bad[] = {0, 3, 0x102, 0xffffffffu};

		for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
			char want[64];

			memcpy(c, b, len);
			set32(c + 8, bad[i]);
			set64(c + len - 8, XXH64(c, len - 8, 0));
			snprintf(want, sizeof want,
			         "dump format version %" PRIu32 " is not "
			         "supported", bad[i]);
			expect_refused(dst, path, c, len, want, want);
		}
	}
	/* A version-2 dump called version 1: its records are misread, and
	 * the checks must refuse it whichever they meet first. */
	memcpy(c, b, len);
	c[8] = 1;
	expect_refused(dst, path, c, len, NULL, "version 2 called 1");
	set64(c + len - 8, XXH64(c, len - 8, 0));
	expect_refused(dst, path, c, len, NULL,
	               "version 2 called 1, checksum made right");
	memcpy(c, b, len);
	c[12] = 1;
	expect_refused(dst, path, c, len, "flags", "unknown flags");
	memcpy(c, b, len);
	c[off[1] + REC_LEN + 2] ^= 0x20; /* a key byte */
	expect_refused(dst, path, c, len, "checksum mismatch", "a key byte");
	memcpy(c, b, len);
	c[off[2] + 16 + 3] ^= 0x80; /* a client flags byte */
	expect_refused(dst, path, c, len, "checksum mismatch",
	               "a client flags byte");
	memcpy(c, b, len);
	c[len - 12 - 20 + 3] ^= 1; /* a value byte of the last record */
	expect_refused(dst, path, c, len, "checksum mismatch", "a value byte");
	memcpy(c, b, len);
	c[len - 1] ^= 0x80; /* the checksum itself */
	expect_refused(dst, path, c, len, "checksum mismatch", "the checksum");
	memcpy(c, b, len);
	set64(c + len - 16, 2); /* the count, with a matching checksum */
	set64(c + len - 8, XXH64(c, len - 8, 0));
	expect_refused(dst, path, c, len, "counts 2 records", "a wrong count");
	memcpy(c, b, len);
	set64(c + off[1] + 8, (uint64_t)-5); /* ttl -5 */
	expect_refused(dst, path, c, len, "record 2 at byte", "ttl -5");
	memcpy(c, b, len);
	set32(c + off[0], 0); /* klen 0 */
	expect_refused(dst, path, c, len, "record 1 at byte", "klen 0");
	memcpy(c, b, len);
	c[len] = 0;
	expect_refused(dst, path, c, len + 1, "trailing data", "a dump + 1");
	expect_refused(dst, path, "hello, world\n", 13, "bad magic",
	               "a text file");

	/* Any one byte flipped anywhere: refused, nothing loaded. */
	for (size_t i = 0; i < len; i++) {
		memcpy(c, b, len);
		c[i] ^= 0xff;
		snprintf(what, sizeof what, "a flip at byte %zu of %zu", i, len);
		expect_refused(dst, path, c, len, NULL, what);
	}
	/* The intact dump loads. */
	write_file(path, b, len);
	{
		struct h_result r;

		KV(&r, dst, "load", path);
		H_ASSERT_EXIT(&r, 0);
		h_result_free(&r);
	}
	compare_stores(src, dst, 2000);
	h_free(b);
	h_free(c);
}

/* --partial: a cut dump gives up the whole records before the cut, and
 * says so with exit 2; damage only the checksum sees loads nothing. */
static void test_partial(void **state)
{
	const char *src = serve("pasrc", "4M");
	const char *dst = serve("padst", "4M");
	const char *dst2 = serve("padst2", "4M");
	const char *dir = h_tmpdir("partial");
	char path[256];
	size_t len, off[64];
	unsigned char *b = small_dump(src, dir, 50, &len);
	struct h_result r;
	kv_t *ks, *kd;

	(void)state;
	assert_int_equal(parse_dump(b, len, off, 64), 50);
	snprintf(path, sizeof path, "%s/cut.kvdump", dir);
	/* Cut in the middle of record 31. */
	write_file(path, b, off[30] + REC_LEN + 2);
	KV(&r, dst, "load", "--partial", path);
	H_ASSERT_EXIT(&r, 2);
	H_ASSERT_ERR_LINE(&r, "kv: load: ");
	H_ASSERT_ERR_HAS(&r, "truncated");
	H_ASSERT_ERR_HAS(&r, "--partial: loaded 30 keys");
	h_result_free(&r);
	assert_int_equal(count_keys(dst), 30);
	/* Exactly the first 30 records, with their values. */
	ks = attach(src);
	kd = attach(dst);
	for (int i = 0; i < 30; i++) {
		const unsigned char *rec = b + off[i];
		size_t klen = le32(rec), vlen = 0;
		char *x = get_value(kd, rec + REC_LEN, klen, &vlen);
		char *y;
		size_t ylen = 0;

		assert_non_null(x);
		y = get_value(ks, rec + REC_LEN, klen, &ylen);
		assert_int_equal(vlen, ylen);
		assert_memory_equal(x, y, vlen);
		free(x);
		free(y);
	}
	kv_close(ks);
	kv_close(kd);

	/* A cut inside the first record: nothing to load, still exit 2. */
	write_file(path, b, HEADER_LEN + 5);
	KV(&r, dst2, "load", "--partial", path);
	H_ASSERT_EXIT(&r, 2);
	H_ASSERT_ERR_HAS(&r, "loaded 0 keys");
	h_result_free(&r);
	assert_int_equal(count_keys(dst2), 0);

	/* Checksum damage cannot be located: nothing, even with --partial. */
	b[off[40] + REC_LEN + 1] ^= 1;
	write_file(path, b, len);
	KV(&r, dst2, "load", "--partial", path);
	H_ASSERT_FAILS(&r, 2, "kv: load: ", "checksum mismatch");
	H_ASSERT_ERR_HAS(&r, "cannot be located");
	h_result_free(&r);
	assert_int_equal(count_keys(dst2), 0);
	b[off[40] + REC_LEN + 1] ^= 1;

	/* An intact dump with --partial is an ordinary load. */
	write_file(path, b, len);
	KV(&r, dst2, "load", "--partial", path);
	H_ASSERT_EXIT(&r, 0);
	assert_string_equal(r.err, "loaded 50 keys\n");
	h_result_free(&r);
	compare_stores(src, dst2, 2000);
	h_free(b);
}

/* A record the target store cannot hold (value over its max_value) stops
 * the load before it starts; --partial loads the records before it. */
static void test_load_limits(void **state)
{
	const char *src = serve("lisrc", "8M");
	const char *dst = h_store_name("lidst");
	const char *dir = h_tmpdir("limits");
	char path[256], big[2048];
	struct h_result r;
	size_t len, off[8];
	unsigned char *b;
	kv_t *kv;

	(void)state;
	h_kvd(dst, "--size", "4M", "--max-value", "1K", NULL);
	kv = attach(src);
	memset(big, 'B', sizeof big);
	lib_put(kv, "small", 5, "x", 1, 0);
	lib_put(kv, "big", 3, big, sizeof big, 0);
	kv_close(kv);
	snprintf(path, sizeof path, "%s/a.kvdump", dir);
	KV(&r, src, "dump", path);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	b = read_file(path, &len);
	assert_int_equal(parse_dump(b, len, off, 8), 2);

	KV(&r, dst, "load", path);
	H_ASSERT_FAILS(&r, 2, "kv: load: ", "max_value");
	H_ASSERT_ERR_HAS(&r, "nothing was loaded");
	h_result_free(&r);
	assert_int_equal(count_keys(dst), 0);

	KV(&r, dst, "load", "--partial", path);
	H_ASSERT_FAILS(&r, 2, "kv: load: ", "max_value");
	h_result_free(&r);
	/* Whichever order the scan gave: the records before "big" loaded. */
	assert_int_equal(count_keys(dst), le32(b + off[0]) == 3 ? 0 : 1);
	h_free(b);
}

/* TTLs: what a key had left at the dump time, minus the time since; a
 * record whose TTL ran out is skipped. Built by hand to set the time. */
static void test_load_ttl(void **state)
{
	const char *dst = serve("ttldst", "4M");
	const char *dir = h_tmpdir("ttl");
	static const struct rec recs[] = {
		{"old", 0, "v", 0, 5000, 1},
		{"fresh", 0, "v", 0, 60000, 2},
		{"forever", 0, "v", 0, -1, 3},
		{"edge", 0, "v", 0, 10000, 4},
	};
	struct kv_item_info info;
	char path[256], *val;
	struct h_result r;
	size_t len, vlen;
	unsigned char *b;
	kv_t *kv;
	int64_t t;

	(void)state;
	/* Made ten seconds ago. */
	b = build_dump(VERSION, wall_ms() - 10000, recs, 4, &len);
	snprintf(path, sizeof path, "%s/ttl.kvdump", dir);
	write_file(path, b, len);
	h_free(b);

	KV(&r, dst, "load", path);
	H_ASSERT_EXIT(&r, 0);
	assert_string_equal(r.err, "loaded 2 keys (2 expired)\n");
	h_result_free(&r);
	kv = attach(dst);
	assert_int_equal(kv_ttl(kv, "old", 3, &t), KV_ENOTFOUND);
	assert_int_equal(kv_ttl(kv, "edge", 4, &t), KV_ENOTFOUND);
	val = info_of(kv, "forever", 7, &vlen, &info);
	assert_int_equal(info.ttl_ms, -1);
	assert_int_equal(info.client_flags, 3);
	free(val);
	val = info_of(kv, "fresh", 5, &vlen, &info);
	assert_int_equal(info.client_flags, 2);
	free(val);
	t = info.ttl_ms;
	if (t <= 45000 || t > 50000)
		fail_msg("fresh: %" PRId64 " ms left, want about 50000", t);
	kv_close(kv);
}

/* A version-1 dump (records without client flags), built here byte by
 * byte, is checked as strictly as a version-2 one and loads with client
 * flags 0, replacing the flags of a key that had some. */
static void test_load_version1(void **state)
{
	const char *dst = serve("v1dst", "4M");
	const char *dst2 = serve("v1dst2", "4M");
	const char *dir = h_tmpdir("v1");
	const struct rec recs[] = {
		{"forever", 0, "plain", 0, -1, 0},
		{"hour", 0, "with a ttl", 0, 3600000, 0},
		{"nul\0key", 7, "\0\1\2", 3, -1, 0},
		{"empty", 0, NULL, 0, -1, 0},
		{"gone", 0, "expired", 0, 1000, 0},
	};
	const size_t nrecs = sizeof recs / sizeof recs[0];
	struct kv_item_info info;
	char path[256], what[96], *val;
	struct h_result r;
	size_t len, vlen;
	unsigned char *b;
	kv_t *kv;

	(void)state;
	/* The document's version-1 example. */
	snprintf(path, sizeof path, "%s/example1.kvdump", dir);
	write_file(path, example_v1, sizeof example_v1);
	kv = attach(dst);
	put_flags(kv, "a", 1, "old", 3, 0, 99);
	put_flags(kv, "hour", 4, "old", 3, 0, 0xffffffffu);
	KV(&r, dst, "load", path);
	H_ASSERT_EXIT(&r, 0);
	assert_string_equal(r.err, "loaded 1 key\n");
	h_result_free(&r);
	val = info_of(kv, "a", 1, &vlen, &info);
	assert_int_equal(vlen, 1);
	assert_memory_equal(val, "1", 1);
	assert_int_equal(info.client_flags, 0);
	assert_int_equal(info.ttl_ms, -1);
	free(val);

	/* Several records, made ten seconds ago: "gone" has run out. */
	b = build_dump(1, wall_ms() - 10000, recs, nrecs, &len);
	snprintf(path, sizeof path, "%s/v1.kvdump", dir);
	write_file(path, b, len);
	KV(&r, dst, "load", path);
	H_ASSERT_EXIT(&r, 0);
	assert_string_equal(r.err, "loaded 4 keys (1 expired)\n");
	h_result_free(&r);
	for (size_t i = 0; i < nrecs - 1; i++) {
		size_t k = recs[i].klen ? recs[i].klen : strlen(recs[i].key);
		size_t v = recs[i].vlen || recs[i].val == NULL
		               ? recs[i].vlen : strlen(recs[i].val);

		val = info_of(kv, recs[i].key, k, &vlen, &info);
		assert_int_equal(vlen, v);
		assert_memory_equal(val, recs[i].val ? recs[i].val : "", v);
		if (info.client_flags != 0)
			fail_msg("%s: client flags 0x%" PRIx32 " from a "
			         "version-1 dump", recs[i].key,
			         info.client_flags);
		if (recs[i].ttl < 0)
			assert_int_equal(info.ttl_ms, -1);
		else if (info.ttl_ms <= 3585000 || info.ttl_ms > 3590000)
			fail_msg("%s: %" PRId64 " ms left, want about 3590000",
			         recs[i].key, info.ttl_ms);
		free(val);
	}
	assert_int_equal(kv_get_info(kv, "gone", 4, NULL, 0, &vlen, &info),
	                 KV_ENOTFOUND);
	kv_close(kv);
	h_free(b);

	/* An impossible record: klen 0 in the second one. */
	{
		const struct rec bad[] = {{"k", 0, "v", 0, -1, 0},
		                          {"x", 0, "v", 0, -1, 0}};
		char want[64];

		b = build_dump(1, wall_ms(), bad, 2, &len);
		set32(b + HEADER_LEN + REC_LEN_V1 + 2, 0);
		set64(b + len - 8, XXH64(b, len - 8, 0));
		snprintf(want, sizeof want, "record 2 at byte %d is corrupt",
		         HEADER_LEN + REC_LEN_V1 + 2);
		expect_refused(dst2, path, b, len, want, "a v1 klen 0");
		h_free(b);
	}
	b = build_dump(1, wall_ms() - 10000, recs, nrecs, &len);

	/* The same checks as version 2: a cut anywhere refused, nothing
	 * loaded (every cut in the header, the first two records and the
	 * end record, a sample of the rest); with --partial, the whole
	 * records before a cut load. */
	for (size_t cut = 1; cut < len; cut++) {
		size_t two = HEADER_LEN + 2 * REC_LEN_V1 + 7 + 5 + 4 + 10;

		if (cut > two && cut < len - END_LEN && cut % 5 != 0)
			continue;
		snprintf(what, sizeof what, "a version-1 dump cut at %zu of %zu",
		         cut, len);
		expect_refused(dst2, path, b, cut, "truncated", what);
	}
	write_file(path, b, HEADER_LEN + 2 * REC_LEN_V1 + 7 + 5 + 4 + 10 + 3);
	KV(&r, dst2, "load", "--partial", path);
	H_ASSERT_FAILS(&r, 2, "kv: load: ", "truncated");
	H_ASSERT_ERR_HAS(&r, "--partial: loaded 2 keys");
	h_result_free(&r);
	assert_int_equal(count_keys(dst2), 2);
	h_free(b);
}

/* Keys that expire before the dump reads them are not in it. */
static void test_dump_skips_expired(void **state)
{
	const char *src = h_store_name("expsrc");
	struct h_result r;
	char key[16];
	kv_t *kv;

	(void)state;
	/* No sweep, so the expired keys are still in the index. */
	h_kvd(src, "--size", "4M", "--sweep-buckets", "0", NULL);
	kv = attach(src);
	for (int i = 0; i < 10; i++) {
		int n = snprintf(key, sizeof key, "short%d", i);

		lib_put(kv, key, (size_t)n, "x", 1, 50);
	}
	for (int i = 0; i < 5; i++) {
		int n = snprintf(key, sizeof key, "long%d", i);

		lib_put(kv, key, (size_t)n, "y", 1, 0);
	}
	kv_close(kv);
	sleep_ms(200);
	KV(&r, src, "dump");
	H_ASSERT_EXIT(&r, 0);
	assert_string_equal(r.err, "dumped 5 keys\n");
	assert_int_equal(parse_dump((unsigned char *)r.out, r.out_len, NULL,
	                            0),
	                 5);
	h_result_free(&r);
}

static void test_load_nx(void **state)
{
	const char *src = serve("nxsrc", "4M");
	const char *dst = serve("nxdst", "4M");
	const char *dir = h_tmpdir("nx");
	char path[256];
	struct h_result r;

	(void)state;
	KV(&r, src, "put", "a", "new");
	h_result_free(&r);
	KV(&r, src, "put", "b", "2");
	h_result_free(&r);
	KV(&r, dst, "put", "a", "old");
	h_result_free(&r);
	snprintf(path, sizeof path, "%s/nx.kvdump", dir);
	KV(&r, src, "dump", path);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);

	KV(&r, dst, "load", "--nx", path);
	H_ASSERT_EXIT(&r, 0);
	assert_string_equal(r.err, "loaded 1 key (1 existing kept by --nx)\n");
	h_result_free(&r);
	KV(&r, dst, "get", "a");
	H_ASSERT_OUT_STR(&r, "old");
	h_result_free(&r);
	KV(&r, dst, "get", "b");
	H_ASSERT_OUT_STR(&r, "2");
	h_result_free(&r);

	KV(&r, dst, "load", path);
	H_ASSERT_EXIT(&r, 0);
	assert_string_equal(r.err, "loaded 2 keys\n");
	h_result_free(&r);
	KV(&r, dst, "get", "a");
	H_ASSERT_OUT_STR(&r, "new");
	h_result_free(&r);
}

/* Keys a writer thread of test_dump_one_read keeps putting. Put number n
 * goes to key hot<n % HOT_KEYS> with a value of n in decimal padded with
 * (n % 5) * 300 bytes, client flags n, and a TTL of an hour when n is
 * even, none when it is odd. */
#define HOT_KEYS 8

struct hot_writer {
	kv_t *kv;
	atomic_bool stop;
	atomic_uint_fast64_t puts;
	int rc; /* the put that failed, read after the join */
};

static size_t hot_value(uint32_t n, char *val, size_t cap)
{
	size_t len = (size_t)snprintf(val, cap, "%" PRIu32 ";", n);
	size_t pad = (size_t)(n % 5) * 300;

	assert_true(len + pad <= cap);
	memset(val + len, 'p', pad);
	return len + pad;
}

static int hot_put(kv_t *kv, uint32_t n)
{
	char key[16], val[1600];
	int k = snprintf(key, sizeof key, "hot%" PRIu32, n % HOT_KEYS);
	size_t vlen = hot_value(n, val, sizeof val);
	struct kv_put_opts po;

	memset(&po, 0, sizeof po);
	po.client_flags = n;
	po.ttl_ms = n % 2 ? 0 : 3600000;
	return kv_put(kv, key, (size_t)k, val, vlen, &po);
}

static void *hot_write(void *arg)
{
	struct hot_writer *w = arg;

	for (uint32_t n = HOT_KEYS + 1; !atomic_load(&w->stop); n++) {
		w->rc = hot_put(w->kv, n);
		if (w->rc != KV_OK)
			break;
		atomic_fetch_add(&w->puts, 1);
	}
	return NULL;
}

static bool hot_started(void *ctx)
{
	struct hot_writer *w = ctx;

	return atomic_load(&w->puts) > 0 || w->rc != KV_OK;
}

/* Each record's value, TTL and client flags come from one read of its
 * key, so they belong to the same put even while a writer replaces the
 * key over and over with values, TTLs and flags that differ from put to
 * put (as separate reads of value and TTL would not). Every hot key is in
 * each dump exactly once. */
static void test_dump_one_read(void **state)
{
	const char *src = serve("oneread", "8M");
	struct hot_writer w;
	pthread_t t;
	char want[1600];
	int rounds;

	(void)state;
	memset(&w, 0, sizeof w);
	w.kv = attach(src);
	atomic_init(&w.stop, false);
	atomic_init(&w.puts, 0);
	for (uint32_t n = 1; n <= HOT_KEYS; n++)
		assert_int_equal(hot_put(w.kv, n), KV_OK);
	assert_int_equal(pthread_create(&t, NULL, hot_write, &w), 0);
	(void)h_wait_for(hot_started, &w, H_TIMEOUT_MS);
	for (rounds = 0; rounds < 6; rounds++) {
		struct h_result r;
		const unsigned char *b;
		size_t pos = HEADER_LEN, hot = 0;

		KV(&r, src, "dump");
		H_ASSERT_EXIT(&r, 0);
		b = (const unsigned char *)r.out;
		assert_int_equal(parse_dump(b, r.out_len, NULL, 0), HOT_KEYS);
		while (le32(b + pos) != 0xFFFFFFFFu) {
			uint32_t klen = le32(b + pos), vlen = le32(b + pos + 4);
			int64_t ttl = (int64_t)le64(b + pos + 8);
			uint32_t n = le32(b + pos + 16);
			char key[16];
			int k = snprintf(key, sizeof key, "hot%" PRIu32,
			                 n % HOT_KEYS);
			size_t wlen = hot_value(n, want, sizeof want);

			/* The flags say which put; the rest must agree. */
			if (klen != (uint32_t)k ||
			    memcmp(b + pos + REC_LEN, key, klen) != 0 ||
			    vlen != wlen ||
			    memcmp(b + pos + REC_LEN + klen, want, wlen) != 0 ||
			    (n % 2 ? ttl != -1 : ttl <= 0))
				fail_msg("dump %d, record at byte %zu: client "
				         "flags %" PRIu32 " but another put's "
				         "key, value or TTL (ttl %" PRId64 ")",
				         rounds, pos, n, ttl);
			hot++;
			pos += REC_LEN + (size_t)klen + vlen;
		}
		assert_int_equal(hot, HOT_KEYS);
		h_result_free(&r);
	}
	atomic_store(&w.stop, true);
	assert_int_equal(pthread_join(t, NULL), 0);
	if (w.rc != KV_OK)
		fail_msg("the writer's put failed: %s", kv_strerror(w.rc));
	print_message("dump one read: %d dumps while the writer made %" PRIu64
	              " puts\n", rounds, (uint64_t)atomic_load(&w.puts));
	kv_close(w.kv);
}

/* Binary on a terminal is refused unless --force. */
static void test_dump_terminal(void **state)
{
	const char *src = serve("tty", "4M");
	const char *dir = h_tmpdir("tty");
	struct h_spawn_opts o = {.stdout_tty = true};
	char path[256];
	struct h_result r;

	(void)state;
	KV(&r, src, "put", "a", "1");
	h_result_free(&r);
	h_kv_opts(&r, &o, src, "dump", NULL);
	H_ASSERT_FAILS(&r, 2, "kv: dump: ", "terminal");
	assert_int_equal(r.out_len, 0);
	h_result_free(&r);
	h_kv_opts(&r, &o, src, "dump", "-", NULL);
	H_ASSERT_FAILS(&r, 2, "kv: dump: ", "--force");
	h_result_free(&r);
	h_kv_opts(&r, &o, src, "dump", "--force", NULL);
	H_ASSERT_EXIT(&r, 0);
	assert_true(r.out_len >= 62);
	h_result_free(&r);
	/* A FILE is fine with a terminal on stdout. */
	snprintf(path, sizeof path, "%s/t.kvdump", dir);
	h_kv_opts(&r, &o, src, "dump", path, NULL);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	{
		size_t len;
		unsigned char *b = read_file(path, &len);

		assert_int_equal(parse_dump(b, len, NULL, 0), 1);
		h_free(b);
	}
}

/* FILE is replaced only by a complete dump, made 0600, with no temporary
 * file left; a failed dump leaves an existing FILE alone. */
static void test_dump_file(void **state)
{
	const char *src = serve("file", "4M");
	const char *dir = h_tmpdir("dumpfile");
	const char *missing = h_store_name("nostore");
	char path[256], nodir[256];
	struct h_result r;
	struct stat st;
	size_t len;
	unsigned char *b;
	int files = 0;

	(void)state;
	KV(&r, src, "put", "a", "1");
	h_result_free(&r);
	snprintf(path, sizeof path, "%s/out.kvdump", dir);
	write_file(path, "precious", 8);
	chmod(path, 0644);

	KV(&r, missing, "dump", path);
	H_ASSERT_FAILS(&r, 2, "kv: ", "does not exist");
	h_result_free(&r);
	b = read_file(path, &len);
	assert_int_equal(len, 8);
	h_free(b);

	KV(&r, src, "dump", path);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	b = read_file(path, &len);
	assert_int_equal(parse_dump(b, len, NULL, 0), 1);
	h_free(b);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	{
		char line[512];
		const char *argv[] = {"/bin/sh", "-c", line, NULL};

		snprintf(line, sizeof line, "ls -A '%s' | wc -l", dir);
		h_run(&r, argv, NULL);
		files = atoi(r.out);
		h_result_free(&r);
	}
	assert_int_equal(files, 1);

	snprintf(nodir, sizeof nodir, "%s/no/such/dir/x.kvdump", dir);
	KV(&r, src, "dump", nodir);
	H_ASSERT_FAILS(&r, 2, "kv: dump: ", "No such file");
	h_result_free(&r);

	/* Load errors: no file, no store. */
	KV(&r, src, "load", nodir);
	H_ASSERT_FAILS(&r, 2, "kv: load: ", "No such file");
	h_result_free(&r);
	KV(&r, missing, "load", path);
	H_ASSERT_FAILS(&r, 2, "kv: ", "does not exist");
	h_result_free(&r);
	/* Empty stdin. */
	{
		struct h_spawn_opts o = {.stdin_data = "", .stdin_len = 0};

		h_kv_opts(&r, &o, src, "load", NULL);
		H_ASSERT_FAILS(&r, 2, "kv: load: ", "empty");
		h_result_free(&r);
	}
}

/* Puts a churn writer of test_dump_while_writing has made so far: it
 * prints a line after each one that succeeded. */
static size_t count_lines(const char *s)
{
	size_t n = 0;

	for (const char *p = s; (p = strchr(p, '\n')) != NULL; p++)
		n++;
	return n;
}

static size_t churn_puts(struct h_proc *w)
{
	size_t len, n;
	char *out = h_read_out(w, &len);

	n = count_lines(out);
	h_free(out);
	return n;
}

struct churn {
	struct h_proc **w;
	size_t least;
};

/* Has each writer made c->least puts, or stopped (so waiting is over:
 * its exit status says why)? */
static bool churn_reached(void *ctx)
{
	const struct churn *c = ctx;

	for (int i = 0; i < 2; i++)
		if (churn_puts(c->w[i]) < c->least && h_alive(c->w[i]->pid))
			return false;
	return true;
}

/* Dumps and key listings taken while other processes put and delete keys
 * are each whole and valid, and always hold every key that stayed.
 *
 * The writers are shell loops of kv commands. Every put must succeed (a
 * writer exits with the failed put's status, so the test fails), and so
 * must every delete but one of a key already gone (the loop deletes each
 * key twice: exit 1 is "key not found"). The dumps start once each writer
 * has put a key, and go on past five rounds until each has made
 * CHURN_PUTS puts (five rounds gave 9 to 16 in ten runs on a 2-core
 * machine), so they always overlap real writes. */
#define CHURN_PUTS 10u
static void test_dump_while_writing(void **state)
{
	const char *src = serve("busy", "16M");
	static const char loop[] =
	    "i=0; while [ ! -e \"$4\" ]; do "
	    "\"$1\" -s \"$2\" put churn$3.$i x >/dev/null || exit; "
	    "echo put; "
	    "e=$(\"$1\" -s \"$2\" del churn$3.$((i/2)) 2>&1 >/dev/null); "
	    "s=$?; if [ $s -gt 1 ]; then echo \"$e\" >&2; exit $s; fi; "
	    "i=$((i+1)); done";
	const char *dir = h_tmpdir("busy");
	struct h_proc *w[2];
	struct churn c = {w, 1};
	size_t made[2];
	int rounds = 0;
	uint64_t until;
	char key[32], stop[256];
	kv_t *kv = attach(src);

	(void)state;
	snprintf(stop, sizeof stop, "%s/stop", dir);
	for (int i = 0; i < 1000; i++) {
		int n = snprintf(key, sizeof key, "stable%d", i);

		lib_put(kv, key, (size_t)n, key, (size_t)n, 0);
	}
	kv_close(kv);
	for (int i = 0; i < 2; i++) {
		const char *argv[] = {"/bin/sh", "-c", loop, "sh", h_kv_bin(),
		                      src, i ? "b" : "a", stop, NULL};

		w[i] = h_start(argv, NULL);
	}
	(void)h_wait_for(churn_reached, &c, H_TIMEOUT_MS);
	c.least = CHURN_PUTS;
	until = wall_ms() + H_TIMEOUT_MS;
	for (; rounds < 5 || !churn_reached(&c); rounds++) {
		struct h_result r;
		size_t stable = 0, pos = 0;

		/* A writer that stopped, or one too slow to make its puts:
		 * the checks after the loop say which. */
		if (!h_alive(w[0]->pid) || !h_alive(w[1]->pid) ||
		    (rounds >= 5 && wall_ms() > until))
			break;

		KV(&r, src, "dump");
		H_ASSERT_EXIT(&r, 0);
		parse_dump((unsigned char *)r.out, r.out_len, NULL, 0);
		/* Count the stable keys: each exactly once. */
		pos = HEADER_LEN;
		while (le32((unsigned char *)r.out + pos) != 0xFFFFFFFFu) {
			const unsigned char *rec = (unsigned char *)r.out + pos;
			uint32_t klen = le32(rec), vlen = le32(rec + 4);

			if (klen > 6 && memcmp(rec + REC_LEN, "stable", 6) ==
			                    0) {
				assert_int_equal(vlen, klen);
				assert_memory_equal(rec + REC_LEN,
				                    rec + REC_LEN + klen, klen);
				stable++;
			}
			pos += REC_LEN + (size_t)klen + vlen;
		}
		assert_int_equal(stable, 1000);
		h_result_free(&r);

		KV(&r, src, "keys", "stable*");
		H_ASSERT_EXIT(&r, 0);
		stable = 0;
		for (const char *p = r.out; (p = strchr(p, '\n')) != NULL; p++)
			stable++;
		assert_int_equal(stable, 1000);
		h_result_free(&r);
	}
	/* Let the writers finish their last command and stop. */
	write_file(stop, "", 0);
	for (int i = 0; i < 2; i++) {
		struct h_result r;

		assert_true(h_wait(w[i], H_TIMEOUT_MS, &r));
		H_ASSERT_EXIT(&r, 0);
		made[i] = count_lines(r.out);
		h_result_free(&r);
		if (made[i] < CHURN_PUTS)
			fail_msg("writer %d made %zu puts during %d rounds of "
			         "dumps (want %u)",
			         i, made[i], rounds, CHURN_PUTS);
	}
	print_message("dump while writing: %d rounds of dumps; the writers "
	              "made %zu and %zu puts\n",
	              rounds, made[0], made[1]);
	{
		struct h_result r;

		KV(&r, src, "check");
		H_ASSERT_EXIT(&r, 0);
		h_result_free(&r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_round_trip, h_teardown),
		cmocka_unit_test_teardown(test_known_answer, h_teardown),
		cmocka_unit_test_teardown(test_round_trip_flags, h_teardown),
		cmocka_unit_test_teardown(test_load_version1, h_teardown),
		cmocka_unit_test_teardown(test_truncated, h_teardown),
		cmocka_unit_test_teardown(test_corrupt, h_teardown),
		cmocka_unit_test_teardown(test_partial, h_teardown),
		cmocka_unit_test_teardown(test_load_limits, h_teardown),
		cmocka_unit_test_teardown(test_load_ttl, h_teardown),
		cmocka_unit_test_teardown(test_dump_skips_expired, h_teardown),
		cmocka_unit_test_teardown(test_load_nx, h_teardown),
		cmocka_unit_test_teardown(test_dump_one_read, h_teardown),
		cmocka_unit_test_teardown(test_dump_terminal, h_teardown),
		cmocka_unit_test_teardown(test_dump_file, h_teardown),
		cmocka_unit_test_teardown(test_dump_while_writing, h_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
