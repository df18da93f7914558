/*
 * dump.c - "kv dump" and "kv load": a store's keys, values, TTLs and
 * client flags as a portable, versioned, checksummed stream of bytes
 * (docs/dump-format.md is the byte-level specification; keep the two in
 * step).
 *
 *   header   "KVDUMP\0\0", u32 version (2), u32 flags (0), u64 dump time
 *   records  u32 klen, u32 vlen, i64 ttl_ms (-1: none), u32 client_flags,
 *            key, value
 *   end      u32 0xFFFFFFFF, u64 record count, u64 XXH64 (seed 0) of every
 *            byte before the checksum
 *
 * Every integer is little-endian and is written and read byte by byte, so
 * the format is the same on every machine and no struct layout leaks in.
 *
 * Versions
 *   The writer always writes version 2. The reader also takes version 1,
 *   whose records have no client_flags field (a 16-byte record header):
 *   its keys load with client flags 0. The two differ only in the record
 *   header's length, so one walk reads both (record_header_len()); any
 *   other version is refused before anything else is read.
 *
 * Dump
 *   Walks the keys with kv_scan (no lock: writers go on meanwhile) and
 *   reads each one with kv_get_info: value, TTL and client flags from one
 *   lock-free snapshot, so they always belong to the same put. A key
 *   deleted or expired between the scan and that read is left out. The
 *   TTL written is what the key had left at the dump time of the header
 *   (the time spent dumping is added back), so a load can tell how much
 *   is left. The dump is not a snapshot of one instant: each key is as it
 *   was when it was read (see scan.c). A dump into a new or regular FILE
 *   goes to a temporary file beside it that is renamed over FILE once
 *   complete, so an interrupted dump never leaves a half-written FILE
 *   behind.
 *
 * Load
 *   Reads the whole input and checks all of it - magic, version, the
 *   bounds of every record, the end record's count, the checksum, and the
 *   target store's key and value limits - before the first put, so a
 *   damaged dump changes nothing. With --partial, a dump damaged in a way
 *   that can be located (cut short, or a record whose header is impossible)
 *   gives up the records before the damage; damage only the checksum sees
 *   cannot be located, so then nothing is loaded even with --partial.
 *   Records whose TTL ran out since the dump are skipped. Each key is put
 *   with its record's client flags (0 from a version-1 dump).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "cli.h"
#include "sys.h"

#define DUMP_MAGIC "KVDUMP\0\0"
#define DUMP_MAGIC_LEN 8
#define DUMP_VERSION 2u /* what "kv dump" writes */
#define DUMP_VERSION_MIN 1u /* the oldest "kv load" reads */
#define DUMP_HEADER_LEN 24 /* magic, version, flags, dump time */
#define RECORD_HEADER_LEN 20 /* klen, vlen, ttl_ms, client_flags */
#define RECORD_HEADER_LEN_V1 16 /* klen, vlen, ttl_ms */
#define END_MARK 0xFFFFFFFFu
#define END_LEN 20 /* mark, count, checksum */

/* Bytes buffered before a write(2). */
#define OUT_BUF (256u * 1024)

/* ------------------------------------------------------------------------
 * Little-endian integers, byte by byte
 */

static void put_u32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get_u64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t wall_ms(void)
{
	return cli_sys_wall_ms();
}

static uint64_t mono_ms(void)
{
	return cli_sys_mono_ms();
}

/* ------------------------------------------------------------------------
 * Dump
 */

/* A buffered writer that hashes what it writes. */
struct out {
	int fd;
	const char *name; /* "stdout" or the file, for messages */
	unsigned char *buf;
	size_t used;
	XXH64_state_t *hash;
	int err; /* errno of the first failed write, then nothing more */
};

static void out_flush(struct out *o)
{
	size_t done = 0;

	while (o->err == 0 && done < o->used) {
		ssize_t n = write(o->fd, o->buf + done, o->used - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			o->err = errno;
		else
			done += (size_t)n;
	}
	o->used = 0;
}

/* Write bytes, hashed unless they are the checksum itself. */
static void out_write(struct out *o, const void *p, size_t n, bool hashed)
{
	const unsigned char *b = p;

	if (hashed && n > 0)
		XXH64_update(o->hash, b, n);
	while (n > 0 && o->err == 0) {
		size_t room = OUT_BUF - o->used, k = n < room ? n : room;

		memcpy(o->buf + o->used, b, k);
		o->used += k;
		b += k;
		n -= k;
		if (o->used == OUT_BUF)
			out_flush(o);
	}
}

struct dump_ctx {
	kv_t *kv;
	struct out *out;
	uint64_t start_mono; /* when the header's dump time was taken */
	uint64_t records;
	char *val;           /* value buffer, reused from key to key */
	size_t cap;
	int rc;              /* the library status that stopped the walk */
	char key[CLI_QUOTE_MAX]; /* ... and the key it was about (quoted) */
	bool partial;        /* --partial: skip what cannot be read */
	uint64_t skipped;    /* keys and index slices skipped */
};

/* Positive, so kv_scan's return tells it from a library status. */
#define STOP_DUMP 1

/* Times a value may outgrow the buffer between two reads before the key
 * counts as too busy to read (as cli_fetch does for "kv get"). */
#define FETCH_RETRIES 16

/* kv_get_info into c->val, grown as needed: the value, TTL and client
 * flags of one put. */
static int fetch_info(struct dump_ctx *c, const void *key, size_t klen,
                      size_t *vlen, struct kv_item_info *info)
{
	char probe;
	int rc, tries = 0;

	/* The buffer of the last key first (probe, never written, before
	 * there is one); on KV_ERANGE size it from *vlen and read again: a
	 * writer may have put a longer value in between. */
	rc = kv_get_info(c->kv, key, klen, c->val ? c->val : &probe, c->cap,
	                 vlen, info);
	while (rc == KV_ERANGE) {
		char *bigger;

		if (++tries > FETCH_RETRIES)
			return KV_EBUSY;
		bigger = realloc(c->val, *vlen);
		if (bigger == NULL)
			return KV_ENOMEM;
		c->val = bigger;
		c->cap = *vlen;
		rc = kv_get_info(c->kv, key, klen, c->val, c->cap, vlen, info);
	}
	return rc;
}

static int dump_key(void *ctx, const void *key, size_t klen)
{
	struct dump_ctx *c = ctx;
	unsigned char head[RECORD_HEADER_LEN];
	struct kv_item_info info;
	size_t vlen = 0;
	int64_t ttl;
	int rc;

	memset(&info, 0, sizeof info);
	rc = fetch_info(c, key, klen, &vlen, &info);
	ttl = info.ttl_ms;
	/* Deleted or expired since the scan saw it: not in the dump. */
	if (rc == KV_ENOTFOUND || (rc == KV_OK && ttl == 0))
		return 0;
	if (rc != KV_OK) {
		char *k = malloc(klen + 1);

		c->rc = rc;
		if (k != NULL) {
			memcpy(k, key, klen);
			k[klen] = '\0';
			cli_quote(k, true, c->key);
			free(k);
		}
		if (c->partial && rc != KV_EDESTROYED && rc != KV_ENOMEM) {
			cli_fail("dump: key %s: %s; skipped", c->key,
			         kv_strerror(rc));
			c->skipped++;
			c->rc = KV_OK;
			return 0;
		}
		return STOP_DUMP;
	}
	/* The TTL as of the header's dump time: add back the time since. */
	if (ttl > 0)
		ttl += (int64_t)(mono_ms() - c->start_mono);
	put_u32(head, (uint32_t)klen);
	put_u32(head + 4, (uint32_t)vlen);
	put_u64(head + 8, (uint64_t)ttl);
	put_u32(head + 16, info.client_flags);
	out_write(c->out, head, sizeof head, true);
	out_write(c->out, key, klen, true);
	out_write(c->out, c->val, vlen, true);
	c->records++;
	return c->out->err != 0 ? STOP_DUMP : 0;
}

/* Where a dump goes. A new file, or an existing regular one, is written
 * as a temporary file beside it and renamed over it at the end; anything
 * else (a symbolic link, a FIFO, a device) is written in place. */
struct target {
	const char *path;  /* NULL: stdout */
	char *tmp;         /* temporary file to rename, or NULL */
	int fd;
};

static int open_target(struct target *t, const char *path)
{
	struct stat sb;

	t->path = path;
	t->tmp = NULL;
	t->fd = STDOUT_FILENO;
	if (path == NULL)
		return 0;
	if (cli_sys_lstat(path, &sb) != 0) {
		if (errno != ENOENT) {
			cli_fail("dump: %s: %s", path, strerror(errno));
			return -1;
		}
		sb.st_mode = S_IFREG; /* new: made like a regular file */
	}
	if (S_ISREG(sb.st_mode)) {
		size_t n = strlen(path);

		t->tmp = malloc(n + 8);
		if (t->tmp == NULL) {
			cli_fail("dump: %s", kv_strerror(KV_ENOMEM));
			return -1;
		}
		memcpy(t->tmp, path, n);
		memcpy(t->tmp + n, ".XXXXXX", 8);
		/* mkstemp makes it 0600: a dump holds every value. */
		t->fd = cli_sys_mkstemp(t->tmp);
		if (t->fd < 0) {
			cli_fail("dump: %s: %s", path, strerror(errno));
			free(t->tmp);
			t->tmp = NULL;
			return -1;
		}
		return 0;
	}
	t->fd = cli_sys_open_trunc(path);
	if (t->fd < 0) {
		cli_fail("dump: %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Make the dump FILE, or throw it away when !ok. Returns 0 or -1 after
 * printing the error. */
static int close_target(struct target *t, bool ok)
{
	int rc = 0;

	if (t->path == NULL)
		return 0;
	if (ok && t->tmp != NULL && cli_sys_fsync(t->fd) != 0) {
		cli_fail("dump: %s: %s", t->path, strerror(errno));
		ok = false;
		rc = -1;
	}
	if (close(t->fd) != 0 && ok) {
		cli_fail("dump: %s: %s", t->path, strerror(errno));
		ok = false;
		rc = -1;
	}
	if (t->tmp != NULL) {
		if (ok && cli_sys_replace(t->tmp, t->path) != 0) {
			cli_fail("dump: %s: %s", t->path, strerror(errno));
			rc = -1;
			ok = false;
		}
		if (!ok)
			unlink(t->tmp);
		free(t->tmp);
	}
	return rc;
}

int cli_dump(const struct cli *cli)
{
	const char *path = cli->nargs == 1 && strcmp(cli->arg[0], "-") != 0
	                       ? cli->arg[0] : NULL;
	unsigned char head[DUMP_HEADER_LEN], end[END_LEN];
	struct target t = {NULL, NULL, -1};
	struct dump_ctx c;
	struct out o;
	char q[CLI_QUOTE_MAX];
	bool opened = false, ok = false;
	int rc;

	memset(&c, 0, sizeof c);
	memset(&o, 0, sizeof o);
	o.name = path ? path : "stdout";
	cli_quote(cli->store, true, q);

	/* A person at a terminal gets a clear refusal, not a screenful of
	 * binary that may leave the terminal in a strange state. */
	if (path == NULL && isatty(STDOUT_FILENO) &&
	    cli->opt[OPT_FORCE] == NULL) {
		cli_fail("dump: refusing to write binary data to a terminal "
		         "(give a FILE, redirect stdout, or pass --force)");
		return CLI_ERROR;
	}
	/* Attach before touching FILE: a missing store leaves no file. */
	if (cli_open(cli, KV_RDONLY, &c.kv) != KV_OK)
		goto out;
	if (open_target(&t, path) != 0)
		goto out;
	opened = true;
	if (path != NULL && isatty(t.fd) && cli->opt[OPT_FORCE] == NULL) {
		cli_fail("dump: %s: refusing to write binary data to a terminal "
		         "(pass --force)", path);
		goto out;
	}
	o.fd = t.fd;
	o.buf = malloc(OUT_BUF);
	o.hash = XXH64_createState();
	if (o.buf == NULL || o.hash == NULL) {
		cli_fail("dump: %s", kv_strerror(KV_ENOMEM));
		goto out;
	}
	XXH64_reset(o.hash, 0);

	memcpy(head, DUMP_MAGIC, DUMP_MAGIC_LEN);
	put_u32(head + 8, DUMP_VERSION);
	put_u32(head + 12, 0);
	put_u64(head + 16, wall_ms());
	c.start_mono = mono_ms();
	c.out = &o;
	out_write(&o, head, sizeof head, true);

	c.partial = cli->opt[OPT_PARTIAL] != NULL;
	uint64_t skipped_slices = 0;
	rc = cli_scan_all(c.kv, dump_key, &c,
	                  c.partial ? &skipped_slices : NULL);
	c.skipped += skipped_slices;
	if (rc == STOP_DUMP && c.rc != KV_OK) {
		cli_fail("dump: key %s: %s", c.key, kv_strerror(c.rc));
		goto out;
	}
	if (rc != KV_OK && rc != STOP_DUMP) {
		cli_fail("dump: store %s: %s", q, kv_strerror(rc));
		goto out;
	}
	put_u32(end, END_MARK);
	put_u64(end + 4, c.records);
	out_write(&o, end, 12, true);
	put_u64(end + 12, XXH64_digest(o.hash));
	out_write(&o, end + 12, 8, false);
	out_flush(&o);
	if (o.err != 0) {
		cli_fail("dump: write to %s: %s", o.name, strerror(o.err));
		goto out;
	}
	ok = true;
out:
	if (opened && close_target(&t, ok) != 0)
		ok = false;
	if (ok && c.skipped != 0)
		fprintf(stderr, "dumped %" PRIu64 " key%s; skipped %" PRIu64
		        " key%s or index slice%s that could not be read\n",
		        c.records, c.records == 1 ? "" : "s", c.skipped,
		        c.skipped == 1 ? "" : "s", c.skipped == 1 ? "" : "s");
	else if (ok)
		fprintf(stderr, "dumped %" PRIu64 " key%s\n", c.records,
		        c.records == 1 ? "" : "s");
	XXH64_freeState(o.hash);
	free(o.buf);
	free(c.val);
	kv_close(c.kv);
	return ok ? CLI_OK : CLI_ERROR;
}

/* ------------------------------------------------------------------------
 * Load
 */

/* The length of a record's header in a dump of a version the reader
 * takes (DUMP_VERSION_MIN to DUMP_VERSION): version 1 has no
 * client_flags. */
static size_t record_header_len(uint32_t version)
{
	return version == 1 ? RECORD_HEADER_LEN_V1 : RECORD_HEADER_LEN;
}

static void problem(struct cli_dump_verdict *v, bool locatable,
                    const char *fmt, ...) CLI_PRINTF(3, 4);

static void problem(struct cli_dump_verdict *v, bool locatable,
                    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(v->problem, sizeof v->problem, fmt, ap);
	va_end(ap);
	v->locatable = locatable;
}

/* Walk the whole dump: header, the bounds of every record, the end
 * record, the checksum; then the records against the store's limits. */
void cli_dump_verify(const unsigned char *b, size_t len, uint32_t max_key,
                     uint32_t max_value, struct cli_dump_verdict *v)
{
	size_t off = DUMP_HEADER_LEN, n = 0, rhl;
	uint32_t version, flags;
	bool at_end = false;

	memset(v, 0, sizeof *v);
	v->first = DUMP_HEADER_LEN;
	if (len == 0) {
		problem(v, false, "the input is empty (not a kv dump)");
		return;
	}
	if (memcmp(b, DUMP_MAGIC, len < DUMP_MAGIC_LEN ? len
	                                                : DUMP_MAGIC_LEN) != 0) {
		problem(v, false, "not a kv dump (bad magic)");
		return;
	}
	if (len < DUMP_HEADER_LEN) {
		problem(v, false, "dump is truncated at byte %zu (in the header)",
		        len);
		return;
	}
	version = get_u32(b + 8);
	flags = get_u32(b + 12);
	v->dump_ms = get_u64(b + 16);
	if (version < DUMP_VERSION_MIN || version > DUMP_VERSION) {
		problem(v, false, "dump format version %" PRIu32 " is not "
		        "supported (this kv reads versions %u to %u)", version,
		        DUMP_VERSION_MIN, DUMP_VERSION);
		return;
	}
	rhl = record_header_len(version);
	if (flags != 0) {
		problem(v, false, "dump has unknown flags 0x%" PRIx32, flags);
		return;
	}

	/* Structure: every record within the input, its fields possible;
	 * then the end record and the checksum. */
	for (;;) {
		uint32_t klen, vlen;
		int64_t ttl;

		if (len - off < 4)
			break;
		klen = get_u32(b + off);
		if (klen == END_MARK) {
			at_end = true;
			break;
		}
		if (len - off < rhl)
			break;
		vlen = get_u32(b + off + 4);
		ttl = (int64_t)get_u64(b + off + 8);
		if (klen == 0 || klen > KV_MAX_KEY || vlen > KV_MAX_VALUE_LIMIT ||
		    ttl < -1) {
			problem(v, true, "record %zu at byte %zu is corrupt "
			        "(key length %" PRIu32 ", value length %" PRIu32
			        ", ttl %" PRId64 ")", n + 1, off, klen, vlen, ttl);
			break;
		}
		if (len - off - rhl < (size_t)klen + vlen)
			break;
		off += rhl + (size_t)klen + vlen;
		n++;
	}
	v->whole = n;
	if (v->problem[0] != '\0')
		; /* an impossible record header */
	else if (!at_end || len - off < END_LEN)
		problem(v, true, "dump is truncated at byte %zu", len);
	else if (XXH64(b, off + 12, 0) != get_u64(b + off + 12))
		problem(v, false, "checksum mismatch (the dump is corrupt)");
	else if (get_u64(b + off + 4) != n)
		problem(v, true, "the end record counts %" PRIu64 " records but "
		        "the dump holds %zu", get_u64(b + off + 4), n);
	else if (off + END_LEN != len)
		problem(v, true, "%zu bytes of trailing data after the end "
		        "record at byte %zu", len - off - END_LEN, off);
	if (v->problem[0] != '\0' && !v->locatable)
		return;

	/* Does every record we could load fit this store? The first that
	 * does not is the (earlier) problem. */
	off = DUMP_HEADER_LEN;
	for (size_t i = 0; i < v->whole; i++) {
		uint32_t klen = get_u32(b + off), vlen = get_u32(b + off + 4);

		if (klen > max_key)
			problem(v, true, "record %zu at byte %zu: a key of %"
			        PRIu32 " bytes is longer than the store's "
			        "max_key (%" PRIu32 ")", i + 1, off, klen,
			        max_key);
		else if (vlen > max_value)
			problem(v, true, "record %zu at byte %zu: a value of %"
			        PRIu32 " bytes is larger than the store's "
			        "max_value (%" PRIu32 ")", i + 1, off, vlen,
			        max_value);
		else {
			off += rhl + (size_t)klen + vlen;
			continue;
		}
		v->whole = i;
		return;
	}
}

/* Read all of fd into a malloc'd buffer. Returns 0, or -1 after printing
 * the error. */
static int read_all(int fd, const char *name, unsigned char **out,
                    size_t *len)
{
	struct stat sb;
	unsigned char *buf = NULL;
	size_t cap = 0, n = 0, first = 1u << 20;

	/* A regular file tells its size: one read, and one more for EOF. */
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0 &&
	    (uint64_t)sb.st_size < SIZE_MAX)
		first = (size_t)sb.st_size + 1;
	for (;;) {
		ssize_t got;

		if (n == cap) {
			size_t want = cap ? cap * 2 : first;
			unsigned char *bigger = want > cap ? realloc(buf, want)
			                                   : NULL;

			if (bigger == NULL) {
				cli_fail("load: %s: %s", name,
				         kv_strerror(KV_ENOMEM));
				goto fail;
			}
			buf = bigger;
			cap = want;
		}
		got = read(fd, buf + n, cap - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			cli_fail("load: reading %s: %s", name, strerror(errno));
			goto fail;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	*out = buf;
	*len = n;
	return 0;
fail:
	free(buf);
	return -1;
}

struct load_counts {
	uint64_t loaded, expired, kept;
};

/* libkv refuses a TTL that would put the expiry past UINT64_MAX / 2 ms,
 * while the format allows any up to INT64_MAX. A longer one is loaded as
 * 2^62 ms (146 million years): the same in practice, and always accepted,
 * so that a dump the check passed cannot fail half-way through the load. */
#define LOAD_TTL_MAX (UINT64_C(1) << 62)

bool cli_dump_record_ttl(int64_t ttl, uint64_t dump_ms, uint64_t now,
                         uint64_t *ttl_ms)
{
	/* How long ago the dump was made; a clock behind the dump's counts
	 * as no time at all. */
	uint64_t age = now > dump_ms ? now - dump_ms : 0;

	*ttl_ms = 0;
	if (ttl < 0)
		return true;
	if ((uint64_t)ttl <= age)
		return false;
	*ttl_ms = (uint64_t)ttl - age;
	if (*ttl_ms > LOAD_TTL_MAX)
		*ttl_ms = LOAD_TTL_MAX;
	return true;
}

/* Put records [0, v->whole) of a dump cli_dump_verify() passed (so, when
 * there is a whole record, its header and version were checked). Returns
 * 0, or -1 after printing the error (the records before the failing one
 * stay loaded). */
static int put_records(kv_t *kv, const unsigned char *b,
                       const struct cli_dump_verdict *v, bool nx,
                       struct load_counts *n)
{
	uint64_t now = wall_ms();
	size_t off = v->first;
	size_t rhl = v->whole > 0 ? record_header_len(get_u32(b + 8)) : 0;

	for (size_t i = 0; i < v->whole; i++) {
		uint32_t klen = get_u32(b + off), vlen = get_u32(b + off + 4);
		int64_t ttl = (int64_t)get_u64(b + off + 8);
		/* Version 1 records carry no client flags: 0. */
		uint32_t cflags = rhl == RECORD_HEADER_LEN
		                      ? get_u32(b + off + 16) : 0;
		const unsigned char *key = b + off + rhl;
		struct kv_put_opts po;
		int rc;

		off += rhl + (size_t)klen + vlen;
		memset(&po, 0, sizeof po);
		if (!cli_dump_record_ttl(ttl, v->dump_ms, now, &po.ttl_ms)) {
			n->expired++;
			continue;
		}
		po.flags = nx ? KV_PUT_NX : 0;
		po.client_flags = cflags;
		rc = kv_put(kv, key, klen, key + klen, vlen, &po);
		if (rc == KV_EEXIST && nx) {
			n->kept++;
			continue;
		}
		if (rc != KV_OK) {
			char *k = malloc((size_t)klen + 1), q[CLI_QUOTE_MAX];

			if (k != NULL) {
				memcpy(k, key, klen);
				k[klen] = '\0';
			}
			cli_fail("load: record %zu (key %s): %s; %" PRIu64
			         " key%s loaded before it", i + 1,
			         k ? cli_quote(k, true, q) : "?",
			         kv_strerror(rc), n->loaded,
			         n->loaded == 1 ? "" : "s");
			free(k);
			return -1;
		}
		n->loaded++;
	}
	return 0;
}

/* " (2 expired, 1 kept by --nx)", or "". */
static void describe_skips(const struct load_counts *n, char *buf,
                           size_t cap)
{
	if (n->expired && n->kept)
		snprintf(buf, cap, " (%" PRIu64 " expired, %" PRIu64
		         " existing kept by --nx)", n->expired, n->kept);
	else if (n->expired)
		snprintf(buf, cap, " (%" PRIu64 " expired)", n->expired);
	else if (n->kept)
		snprintf(buf, cap, " (%" PRIu64 " existing kept by --nx)",
		         n->kept);
	else
		buf[0] = '\0';
}

int cli_load(const struct cli *cli)
{
	const char *path = cli->nargs == 1 && strcmp(cli->arg[0], "-") != 0
	                       ? cli->arg[0] : NULL;
	const char *name = path ? path : "stdin";
	bool partial = cli->opt[OPT_PARTIAL] != NULL;
	struct load_counts n = {0, 0, 0};
	unsigned char *buf = NULL;
	struct kv_stats st;
	struct cli_dump_verdict v;
	char skips[128];
	kv_t *kv = NULL;
	size_t len = 0;
	int fd = STDIN_FILENO, rc, status = CLI_ERROR;

	if (path == NULL && isatty(STDIN_FILENO) &&
	    cli->opt[OPT_FORCE] == NULL) {
		cli_fail("load: refusing to read a binary dump from a terminal "
		         "(give a FILE, redirect stdin, or pass --force)");
		return CLI_ERROR;
	}
	/* Attach first: a missing store should fail before a producer has
	 * sent a whole dump down the pipe. */
	if (cli_open(cli, KV_RDWR, &kv) != KV_OK)
		goto out;
	rc = kv_stats(kv, &st);
	if (rc != KV_OK) {
		char q[CLI_QUOTE_MAX];

		cli_fail("load: store %s: %s", cli_quote(cli->store, true, q),
		         kv_strerror(rc));
		goto out;
	}
	if (path != NULL) {
		fd = cli_sys_open_read(path);
		if (fd < 0) {
			cli_fail("load: %s: %s", path, strerror(errno));
			goto out;
		}
	}
	rc = read_all(fd, name, &buf, &len);
	if (path != NULL)
		close(fd);
	if (rc != 0)
		goto out;

	cli_dump_verify(buf, len, st.max_key, st.max_value, &v);
	if (v.problem[0] != '\0' && !(partial && v.locatable)) {
		if (partial)
			cli_fail("load: %s; the damage cannot be located, so "
			         "nothing was loaded", v.problem);
		else
			cli_fail("load: %s; nothing was loaded", v.problem);
		goto out;
	}
	if (put_records(kv, buf, &v, cli->opt[OPT_NX] != NULL, &n) != 0)
		goto out;
	describe_skips(&n, skips, sizeof skips);
	if (v.problem[0] != '\0') {
		/* --partial on a damaged dump: what we could, and still 2. */
		cli_fail("load: %s; --partial: loaded %" PRIu64 " key%s%s from "
		         "the %zu whole record%s before it", v.problem, n.loaded,
		         n.loaded == 1 ? "" : "s", skips, v.whole,
		         v.whole == 1 ? "" : "s");
		goto out;
	}
	fprintf(stderr, "loaded %" PRIu64 " key%s%s\n", n.loaded,
	        n.loaded == 1 ? "" : "s", skips);
	status = CLI_OK;
out:
	free(buf);
	kv_close(kv);
	return status;
}
