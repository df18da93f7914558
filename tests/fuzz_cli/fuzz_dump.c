/*
 * fuzz_dump.c - fuzz-dump: "kv load"'s check of a dump image,
 * cli_dump_verify() (cli/dump.c), against hostile bytes.
 *
 * The input is a dump file image. Each input is checked under several
 * store limits (max_key, max_value): fixed ones, and ones just at and just
 * under the largest key and value the image holds, so the "fits this
 * store" boundary is crossed both ways. Then, when the image has an end
 * record, it is checked once more with its checksum made right, so that
 * mutations reach the checks that come after the checksum (the count,
 * trailing bytes, the limits), which a random byte would almost never
 * pass.
 *
 * Oracles, besides no crash, no out-of-bounds read (the image is an
 * exact-size heap copy), no leak, no hang:
 *   - an independent re-parse written from docs/dump-format.md ("Reading a
 *     dump", "Version 1") must reach the same verdict: which problem (told
 *     by the message's wording), the number of whole records, whether the
 *     damage is locatable, the dump time, and the record number and byte
 *     offset, length or version the message gives. Versions 1 (16-byte
 *     record headers) and 2 (20 bytes, with client flags) are read, any
 *     other refused;
 *   - the records the verdict calls whole can be walked as "kv load"
 *     walks them, each inside the image, and fit the limits whenever they
 *     would be loaded.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "cli.h"
#include "fuzz_cli.h"

/* The format's numbers, from docs/dump-format.md, not from dump.c. */
#define R_HEADER 24u
#define R_RECORD 20u    /* version 2: klen, vlen, ttl_ms, client_flags */
#define R_RECORD_V1 16u /* version 1: klen, vlen, ttl_ms */
#define R_END 20u
#define R_MARK 0xFFFFFFFFu
#define R_KEY_MAX 4096u
#define R_VALUE_MAX 1073741824u

enum kind {
	K_OK,
	K_EMPTY,
	K_MAGIC,
	K_SHORT_HEADER,
	K_VERSION,
	K_FLAGS,
	K_CORRUPT,
	K_TRUNCATED,
	K_CHECKSUM,
	K_COUNT,
	K_TRAILING,
	K_KEY_LIMIT,
	K_VALUE_LIMIT,
};

static const char *const kind_name[] = {
	"sound", "empty", "bad magic", "truncated header", "version", "flags",
	"corrupt record", "truncated", "checksum", "count", "trailing data",
	"key over max_key", "value over max_value",
};

struct ref {
	enum kind kind;
	bool locatable;
	uint64_t dump_ms;
	uint64_t whole;     /* records whole before the problem */
	uint64_t bad_rec;   /* K_CORRUPT, limits: 1-based record number */
	uint64_t bad_off;   /* ... and its offset */
	bool has_end;       /* an end record was found at end_off ... */
	uint64_t end_off;   /* ... with its 20 bytes inside the image */
	uint32_t big_key, big_value; /* largest among the whole records */
	uint64_t version;   /* the header's, once it is there */
};

static uint64_t le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* A record header's length in a dump of a version the spec defines. */
static uint64_t rec_len(uint64_t version)
{
	return version == 1 ? R_RECORD_V1 : R_RECORD;
}

/* The spec's reading of a dump, in 64-bit arithmetic throughout. */
static void reparse(const uint8_t *b, uint64_t len, uint32_t max_key,
                    uint32_t max_value, struct ref *r)
{
	static const uint8_t magic[8] = {'K', 'V', 'D', 'U', 'M', 'P', 0, 0};
	uint64_t off = R_HEADER, n = 0, rl;

	memset(r, 0, sizeof *r);
	if (len == 0) {
		r->kind = K_EMPTY;
		return;
	}
	if (memcmp(b, magic, len < 8 ? len : 8) != 0) {
		r->kind = K_MAGIC;
		return;
	}
	if (len < R_HEADER) {
		r->kind = K_SHORT_HEADER;
		return;
	}
	r->dump_ms = le(b + 16, 8);
	r->version = le(b + 8, 4);
	if (r->version != 1 && r->version != 2) {
		r->kind = K_VERSION;
		return;
	}
	rl = rec_len(r->version);
	if (le(b + 12, 4) != 0) {
		r->kind = K_FLAGS;
		return;
	}
	r->kind = K_TRUNCATED;
	r->locatable = true;
	for (;;) {
		uint64_t klen, vlen;
		int64_t ttl;

		if (off + 4 > len)
			break;
		klen = le(b + off, 4);
		if (klen == R_MARK) {
			if (off + R_END <= len) {
				r->has_end = true;
				r->end_off = off;
			}
			break;
		}
		if (off + rl > len)
			break;
		vlen = le(b + off + 4, 4);
		ttl = (int64_t)le(b + off + 8, 8);
		if (klen < 1 || klen > R_KEY_MAX || vlen > R_VALUE_MAX ||
		    ttl < -1) {
			r->kind = K_CORRUPT;
			r->bad_rec = n + 1;
			r->bad_off = off;
			break;
		}
		if (off + rl + klen + vlen > len)
			break;
		if (klen > r->big_key)
			r->big_key = (uint32_t)klen;
		if (vlen > r->big_value)
			r->big_value = (uint32_t)vlen;
		off += rl + klen + vlen;
		n++;
	}
	r->whole = n;
	if (r->has_end) {
		if (XXH64(b, (size_t)off + 12, 0) != le(b + off + 12, 8)) {
			r->kind = K_CHECKSUM;
			r->locatable = false;
			return;
		} else if (le(b + off + 4, 8) != n) {
			r->kind = K_COUNT;
		} else if (off + R_END != len) {
			r->kind = K_TRAILING;
		} else {
			r->kind = K_OK;
			r->locatable = false;
		}
	}
	/* The limits, over the whole records, in order; the first record
	 * over them is the problem, being earlier than any found above. */
	off = R_HEADER;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t klen = le(b + off, 4), vlen = le(b + off + 4, 4);

		if (klen > max_key || vlen > max_value) {
			r->kind = klen > max_key ? K_KEY_LIMIT : K_VALUE_LIMIT;
			r->locatable = true;
			r->whole = i;
			r->bad_rec = i + 1;
			r->bad_off = off;
			return;
		}
		off += rl + klen + vlen;
	}
}

/* Which problem a verdict's message names (the wording of dump.c, which
 * docs/dump-format.md quotes). */
static enum kind kind_of(const char *p)
{
	if (p[0] == '\0')
		return K_OK;
	if (strstr(p, "input is empty"))
		return K_EMPTY;
	if (strstr(p, "bad magic"))
		return K_MAGIC;
	if (strstr(p, "(in the header)"))
		return K_SHORT_HEADER;
	if (strncmp(p, "dump format version", 19) == 0)
		return K_VERSION;
	if (strstr(p, "unknown flags"))
		return K_FLAGS;
	if (strstr(p, "is corrupt ("))
		return K_CORRUPT;
	if (strncmp(p, "dump is truncated at byte", 25) == 0)
		return K_TRUNCATED;
	if (strstr(p, "checksum mismatch"))
		return K_CHECKSUM;
	if (strstr(p, "the end record counts"))
		return K_COUNT;
	if (strstr(p, "trailing data"))
		return K_TRAILING;
	if (strstr(p, "longer than the store's max_key"))
		return K_KEY_LIMIT;
	if (strstr(p, "larger than the store's max_value"))
		return K_VALUE_LIMIT;
	fcli_bug("dump: unknown problem \"%s\"", p);
}

/* The TTL "kv load" would put a record with, at several clocks: the
 * record skipped exactly when its TTL ran out, the TTL what is left, and
 * one kv_put accepts (libkv: at most UINT64_MAX / 2 - now), so that a load
 * the check passed never fails half-way on a TTL. */
static void check_ttl(int64_t ttl, uint64_t dump_ms)
{
	const uint64_t nows[] = {
		dump_ms, dump_ms + 1, dump_ms - 1, dump_ms + (uint64_t)ttl,
		0, 1735689600000u /* 2025 */, 4102444800000u /* 2100 */,
		UINT64_MAX,
	};

	for (size_t i = 0; i < sizeof nows / sizeof nows[0]; i++) {
		uint64_t now = nows[i], ms = 12345;
		uint64_t age = now > dump_ms ? now - dump_ms : 0;
		bool put = cli_dump_record_ttl(ttl, dump_ms, now, &ms);

		if (ttl == -1) {
			FCLI_CHECK(put && ms == 0, "dump: ttl -1 gives %d %"
			           PRIu64, put, ms);
			continue;
		}
		FCLI_CHECK(put == ((uint64_t)ttl > age),
		           "dump: ttl %" PRId64 " at age %" PRIu64 ": put %d",
		           ttl, age, put);
		if (!put)
			continue;
		FCLI_CHECK(ms >= 1 && ms <= (uint64_t)ttl - age,
		           "dump: ttl %" PRId64 " at age %" PRIu64 " gives %"
		           PRIu64, ttl, age, ms);
		/* What kv_put accepts, at any clock before the year
		 * 73 million. */
		if (now < (UINT64_C(1) << 61))
			FCLI_CHECK(ms <= UINT64_MAX / 2 - now,
			           "dump: ttl %" PRId64 " loads as %" PRIu64
			           " ms, which kv_put refuses", ttl, ms);
		if ((uint64_t)ttl - age <= (UINT64_C(1) << 62))
			FCLI_CHECK(ms == (uint64_t)ttl - age,
			           "dump: ttl %" PRId64 " at age %" PRIu64
			           " gives %" PRIu64, ttl, age, ms);
	}
}

static void check(const uint8_t *img, size_t len, uint32_t max_key,
                  uint32_t max_value, struct ref *out)
{
	struct cli_dump_verdict v;
	struct ref r;
	enum kind got;
	size_t off;

	/* Poison the verdict: every field must be written. */
	memset(&v, 0xa5, sizeof v);
	cli_dump_verify(img, len, max_key, max_value, &v);
	reparse(img, len, max_key, max_value, &r);
	if (out != NULL)
		*out = r;

	FCLI_CHECK(memchr(v.problem, '\0', sizeof v.problem) != NULL,
	           "dump: problem not terminated");
	got = kind_of(v.problem);
	FCLI_CHECK(got == r.kind,
	           "dump (%zu bytes, max_key %" PRIu32 ", max_value %" PRIu32
	           "): verify says \"%s\" (%s), the re-parse %s",
	           len, max_key, max_value, v.problem, kind_name[got],
	           kind_name[r.kind]);
	FCLI_CHECK(v.first == R_HEADER, "dump: first %zu", v.first);
	FCLI_CHECK(v.whole == r.whole,
	           "dump: %s: verify counts %zu whole records, the re-parse "
	           "%" PRIu64, kind_name[r.kind], v.whole, r.whole);
	if (r.kind != K_OK)
		FCLI_CHECK(v.locatable == r.locatable,
		           "dump: %s: locatable %d, the re-parse %d",
		           kind_name[r.kind], v.locatable, r.locatable);
	if (r.kind >= K_VERSION)
		FCLI_CHECK(v.dump_ms == r.dump_ms, "dump: dump time %" PRIu64
		           ", the re-parse %" PRIu64, v.dump_ms, r.dump_ms);

	/* The numbers the message gives. */
	if (r.kind == K_CORRUPT || r.kind == K_KEY_LIMIT ||
	    r.kind == K_VALUE_LIMIT) {
		unsigned long long rec = 0, at = 0;

		FCLI_CHECK(sscanf(v.problem, "record %llu at byte %llu", &rec,
		                  &at) == 2 && rec == r.bad_rec &&
		           at == r.bad_off,
		           "dump: \"%s\": the re-parse says record %" PRIu64
		           " at byte %" PRIu64, v.problem, r.bad_rec,
		           r.bad_off);
	}
	if (r.kind == K_VERSION) {
		unsigned long long ver = ~0ull;

		FCLI_CHECK(sscanf(v.problem, "dump format version %llu", &ver)
		           == 1 && ver == r.version,
		           "dump: \"%s\": the header says version %" PRIu64,
		           v.problem, r.version);
	}
	if (r.kind == K_TRUNCATED || r.kind == K_SHORT_HEADER) {
		unsigned long long at = 0;

		FCLI_CHECK(sscanf(v.problem, "dump is truncated at byte %llu",
		                  &at) == 1 && at == len,
		           "dump: \"%s\" of %zu bytes", v.problem, len);
	}

	/* Walk the whole records as put_records() does: all inside the
	 * image, and within the limits whenever "kv load" would load them
	 * (no problem, or a locatable one with --partial). Whole records
	 * mean a header of a version the spec defines. */
	if (v.whole > 0)
		FCLI_CHECK(len >= R_HEADER && (r.version == 1 || r.version == 2),
		           "dump: %zu whole records in a dump of version %"
		           PRIu64, v.whole, r.version);
	off = v.first;
	for (size_t i = 0; i < v.whole; i++) {
		uint64_t klen, vlen, rl = rec_len(r.version);

		FCLI_CHECK(off <= len && len - off >= rl,
		           "dump: whole record %zu at %zu is past the end", i,
		           off);
		klen = le(img + off, 4);
		vlen = le(img + off + 4, 4);
		FCLI_CHECK(klen >= 1 && (int64_t)le(img + off + 8, 8) >= -1,
		           "dump: whole record %zu is impossible", i);
		FCLI_CHECK(len - off - rl >= klen + vlen,
		           "dump: whole record %zu at %zu overruns the image",
		           i, off);
		if (v.problem[0] == '\0' || v.locatable) {
			FCLI_CHECK(klen <= max_key && vlen <= max_value,
			           "dump: record %zu would load past the "
			           "limits", i);
			check_ttl((int64_t)le(img + off + 8, 8), v.dump_ms);
		}
		off += rl + klen + vlen;
	}
}

static const struct {
	uint32_t max_key, max_value;
} limits[] = {
	{ 4096, 1073741824 }, /* the format's own bounds */
	{ 4096, 1048576 },  /* a default store */
	{ 250, 65536 },
	{ 16, 64 },
	{ 1, 0 },
	{ 0, 0 },
	{ UINT32_MAX, UINT32_MAX },
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *img = malloc(size ? size : 1);
	struct ref r;

	if (img == NULL)
		abort();
	memcpy(img, data, size);
	check(img, size, limits[0].max_key, limits[0].max_value, &r);
	for (size_t i = 1; i < sizeof limits / sizeof limits[0]; i++)
		check(img, size, limits[i].max_key, limits[i].max_value, NULL);
	/* Just at, and just under, the largest record the image holds. */
	check(img, size, r.big_key, r.big_value, NULL);
	if (r.big_key > 0)
		check(img, size, r.big_key - 1, r.big_value, NULL);
	if (r.big_value > 0)
		check(img, size, r.big_key, r.big_value - 1, NULL);

	/* The same image with a right checksum. */
	if (r.has_end) {
		uint64_t h = XXH64(img, (size_t)r.end_off + 12, 0);

		for (int i = 0; i < 8; i++)
			img[r.end_off + 12 + (size_t)i] = (uint8_t)(h >> (8 * i));
		check(img, size, limits[0].max_key, limits[0].max_value, &r);
		check(img, size, limits[3].max_key, limits[3].max_value, NULL);
		check(img, size, r.big_key, r.big_value, NULL);
		if (r.big_value > 0)
			check(img, size, r.big_key, r.big_value - 1, NULL);
	}
	free(img);
	return 0;
}
