/*
 * mc_proto.c - the protocol half of kvd's memcached server: a session per
 * connection that turns request bytes into reply bytes against the store,
 * through libkv's public calls only, with no I/O of its own (mc.h).
 *
 * What it speaks
 *   The memcached text protocol as memcached 1.6 speaks it: storage
 *   commands (set add replace append prepend cas), retrieval (get gets gat
 *   gats, and the ancient bget), delete, incr/decr, touch, flush_all,
 *   verbosity, version, quit, stats (general, items, slabs, settings,
 *   sizes, detail, reset), the meta commands (mg ms md ma mn me) and the
 *   ASCII authentication of `memcached -Y`. The reference is Debian's
 *   memcached 1.6.18: replies, errors and their order are its own, byte for
 *   byte, wherever they are deterministic. Where this file chooses to
 *   differ it says so at the place, and the list is at the end of this
 *   comment.
 *
 * The store behind it
 *   Items are libkv items: client flags are kv_put_opts.client_flags, the
 *   CAS unique is the item's version (kv_get_info), exptimes become TTLs in
 *   milliseconds. A key put with libkv reads here with flags 0 and vice
 *   versa. Commands that read and then write (append, prepend, incr, decr,
 *   ma, the C flag of ms) do it with kv_put(KV_PUT_CAS) on the version they
 *   read, retried a bounded number of times when another writer got in
 *   first, so they are atomic with respect to every writer of the store,
 *   kv processes included.
 *
 * How input is consumed
 *   mc_session_input() is given the bytes the connection has; it runs every
 *   complete command and returns how many bytes it consumed. The caller
 *   keeps the rest and offers it again with more, so a request may arrive
 *   split at any byte boundary and gives the same replies. Nothing here
 *   ever reads past n, and the session keeps only:
 *     - no command line: a line is run from the caller's bytes once its
 *       '\n' is there, and left to the caller until then; one that has no
 *       '\n' within MC_MAX_LINE bytes is refused ("CLIENT_ERROR line too
 *       long") and skipped to its '\n' without being buffered;
 *     - one data block of a storage command, at most the store's max value
 *       plus "\r\n": a block announced larger is refused at once and
 *       swallowed as it arrives, never buffered;
 *     - the pending reply: see "Backpressure".
 *   A line ends at '\n', with or without '\r' before it, as in memcached.
 *
 * Get lines are streamed
 *   A get (gets, gat, gats) runs key by key over the caller's bytes: each
 *   key's reply is made and the key consumed before the next is looked at.
 *   A get line that fits in MC_MAX_LINE is first checked whole (every key
 *   at most MC_MAX_KEY bytes), so a bad key answers only the error, as in
 *   memcached. A longer get line (memcached serves multigets of any length;
 *   clients send hundreds of keys on one line) is run as it arrives, each
 *   key checked when it is complete: a bad key then ends the reply with the
 *   error after the values already sent for the keys before it.
 *
 * Backpressure
 *   The session stops consuming input once its pending reply reaches
 *   MC_OUT_HIGH, also in the middle of a get line: the keys not yet run
 *   stay unconsumed in the caller's buffer, with nothing held back in the
 *   session, and the get resumes exactly where it stopped when the caller
 *   offers those bytes again after mc_session_sent() made room. So the
 *   pending reply never holds more than MC_OUT_HIGH plus one reply (one
 *   value with its header, or one stats listing). Offering 0 bytes is
 *   allowed and does nothing: there is never paused work that input does
 *   not carry.
 *
 * Threads
 *   A session belongs to one connection, run by one thread at a time.
 *   What sessions share is the mc_server: its counters and the pending
 *   flush are atomics, and the kv handle is safe for many threads.
 *
 * Where it differs from memcached 1.6.18, and why
 *   - Keys with a control character (below 0x20, or 0x7f) are refused
 *     as CLIENT_ERROR bad command line format, as the protocol's
 *     definition of a key asks; memcached stores them (and stumbles on
 *     NUL, its strings' end).
 *   - Numbers in command lines are digits only (with '-' where a number
 *     may be negative), range-checked, as memcached's newer parser reads
 *     them. 1.6.18 read them with strtoul/strtol and truncated to 32 bits,
 *     so "set k 4294967296 0 1" stored flags 0 and a length of 4294967297
 *     read one byte; here both are CLIENT_ERROR bad command line format.
 *   - A data block that does not end in "\r\n" where its length says: the
 *     reply is memcached's CLIENT_ERROR bad data chunk, but what follows
 *     is not parsed from the byte after the block, which would run the
 *     tail of a value as commands. See finish_bad_chunk().
 *   - A command line over MC_MAX_LINE that is not a get is refused with
 *     CLIENT_ERROR line too long and skipped; memcached closes the
 *     connection.
 *   - append/prepend past the max value answer SERVER_ERROR object too
 *     large for cache (memcached: NOT_STORED, from its failed allocation).
 *   - The meta flags that need per-item state kv does not keep: h and l
 *     answer 0; R, I (stale/invalidate) are accepted and act as the plain
 *     command; the W flag is sent for an mg/ma that created its item with
 *     N, but Z and X never are. An item stored through a base64 key (b)
 *     echoes its key with k as it is asked for.
 *   - stats shows what kv has a meaning for; conns and cachedump answer
 *     ERROR.
 *   - VERSION answers 1.6.18 (see MC_PROTO_VERSION).
 *   - A command that starts with the binary protocol's magic byte (0x80)
 *     gets SERVER_ERROR binary protocol is not supported and the
 *     connection is closed: the binary protocol is not served, and such
 *     a request has no line end to wait for. (memcached serves it, or
 *     with -B ascii reads it as text and waits.)
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "mc.h"

/*
 * The version we answer. Clients parse it: libmemcached reads "VERSION
 * x.y.z" as three numbers, refuses a major of 0 and any part over 255, and
 * some clients enable features (touch, gat, meta commands) by it. kv's own
 * version (0.1.0) would fail the first rule, and a suffix would be a
 * gamble with every other parser; so the line names the memcached release
 * whose text protocol this file matches reply for reply. `stats` shows
 * kv's own version as kv_version.
 */
#define MC_PROTO_VERSION "1.6.18"

#define MC_TOKENS 24           /* memcached's MAX_TOKENS: 23 and the rest */
#define MC_META_MAX_TOKENS 20  /* MFLAG_MAX_OPT_LENGTH */
#define MC_OPAQUE_MAX 32       /* MFLAG_MAX_OPAQUE_LENGTH, 'O' included */
#define MC_AUTH_MAX 16384      /* longest authentication token */
#define MC_REALTIME_MAXDELTA 2592000 /* 30 days: larger exptimes are dates */
#define MC_BINARY_MAGIC 0x80     /* first byte of a binary request */
#define MC_CAS_TRIES 64        /* read-modify-write attempts under contention */
#define MC_GET_TRIES 8         /* reads of one value that keeps growing */
#define MC_META_HDR 1536       /* room for a meta reply line */
#define MC_BUF_KEEP (16u * 1024u) /* larger buffers are freed once idle */

/* ------------------------------------------------------------------------
 * The session
 */

enum mc_state {
	ST_LINE,     /* at the start of a command line */
	ST_GETKEYS,  /* inside a get line: its keys, one at a time */
	ST_DATA,     /* reading a storage command's data block */
	ST_SWALLOW,  /* discarding a refused data block */
	ST_SKIPLINE, /* discarding the rest of a line */
};

enum mc_cmd {
	C_SET, C_ADD, C_REPLACE, C_APPEND, C_PREPEND, C_CAS,
	C_MS,        /* ms: its mode and flags say which */
	C_AUTH,      /* the set that carries "user password" */
};

/* A time to live, from an exptime. */
struct mc_ttl {
	bool expired;  /* the item is to be gone at once */
	uint64_t ms;   /* else its TTL; 0: never expires */
};

/* A growable byte buffer. */
struct mc_buf {
	char *p;
	size_t cap;
};

/* A storage command waiting for its data block. */
struct mc_store {
	enum mc_cmd cmd;
	char key[MC_MAX_KEY];
	size_t klen;
	bool key_b64;       /* ms b: echo the key base64-encoded */
	uint32_t flags;
	struct mc_ttl ttl;
	uint64_t cas;
	bool has_cas;
	char mode;          /* ms M */
	bool q;             /* noreply, or ms's q */
	char echo[MC_MAX_LINE]; /* ms: its flag tokens, for the reply */
	size_t echo_len;
};

struct mc_session {
	struct mc_server *srv;
	kv_t *kv;
	size_t max_value;
	enum mc_state st;
	bool authed;
	bool closing;
	bool noreply;       /* the command running said noreply (or q) */

	/* The pending reply: out[off, len). */
	char *out;
	size_t off, len, cap;

	/* ST_GETKEYS */
	struct {
		bool cas;       /* gets, gats */
		bool touch;     /* gat, gats */
		bool checked;   /* the whole line was checked before */
		struct mc_ttl ttl;
		size_t nkeys;
	} get;

	/* ST_DATA, ST_SWALLOW */
	size_t need;        /* block bytes, "\r\n" included */
	size_t have;        /* ST_DATA: held in val */
	struct mc_buf val;
	struct mc_store req;
	struct mc_buf tmp;  /* scratch: read-modify-write */
};

/* One token of a command line: memcached splits at ' ' only. */
struct tok {
	const char *p;
	size_t n;
};

/* ------------------------------------------------------------------------
 * Small helpers
 */

#define CNT(s, field)                                                          \
	atomic_fetch_add_explicit(&(s)->srv->c.field, 1, memory_order_relaxed)

static uint64_t real_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* C's isspace in the "C" locale, which memcached's strtoull skips. */
static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
	       c == '\r';
}

static bool tok_is(struct tok t, const char *s)
{
	size_t n = strlen(s);
	return t.n == n && memcmp(t.p, s, n) == 0;
}

/* A key as the protocol defines it: 1..MC_MAX_KEY bytes with no control
 * character (spaces cannot occur: they split tokens). memcached's C-string
 * parser stumbles on a NUL in a key; here any control byte is refused the
 * same way an over-long key is. Meta commands' base64 keys ('b') are
 * checked encoded, and may decode to any bytes. */
static bool key_bytes_bad(const char *p, size_t n)
{
	if (n > MC_MAX_KEY)
		return true;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c < 0x20 || c == 0x7f)
			return true;
	}
	return false;
}

static bool key_bad(struct tok t)
{
	return key_bytes_bad(t.p, t.n);
}

/* memcached's tokenizer: tokens split at ' ', at most MC_TOKENS - 1 of
 * them (the rest of a longer line is not looked at). Returns memcached's
 * ntokens: the tokens found plus one. */
static size_t tokenize(const char *line, size_t len, struct tok *t)
{
	size_t nt = 0, i = 0;

	while (nt < MC_TOKENS - 1) {
		while (i < len && line[i] == ' ')
			i++;
		if (i == len)
			break;
		size_t start = i;
		while (i < len && line[i] != ' ')
			i++;
		t[nt].p = line + start;
		t[nt].n = i - start;
		nt++;
	}
	t[nt].p = line + len;
	t[nt].n = 0;
	return nt + 1;
}

/* Numbers in a command line, as memcached's newer parser reads them:
 * digits only, range-checked, at most 11 (32-bit) or 22 (64-bit)
 * characters. */
static bool tok_u64(struct tok t, uint64_t *out)
{
	uint64_t x = 0;

	if (t.n == 0 || t.n > 22)
		return false;
	for (size_t i = 0; i < t.n; i++) {
		unsigned d = (unsigned char)t.p[i] - '0';
		if (d > 9 || x > (UINT64_MAX - d) / 10)
			return false;
		x = x * 10 + d;
	}
	*out = x;
	return true;
}

static bool tok_u32(struct tok t, uint32_t *out)
{
	uint64_t x;

	if (t.n > 11 || !tok_u64(t, &x) || x > UINT32_MAX)
		return false;
	*out = (uint32_t)x;
	return true;
}

static bool tok_i32(struct tok t, int32_t *out)
{
	uint64_t x;
	bool neg = t.n > 0 && t.p[0] == '-';
	struct tok d = {t.p + neg, t.n - neg};

	if (t.n > 11 || !tok_u64(d, &x))
		return false;
	if (x > (uint64_t)INT32_MAX + neg)
		return false;
	*out = neg ? (int32_t)(-(int64_t)x) : (int32_t)x;
	return true;
}

/*
 * A stored value read as a number the way memcached's incr reads it
 * (strtoull, then its checks): leading white space, a sign, at least one
 * digit, no overflow, and then the end of the value, white space or a NUL
 * ("12 abc" is 12, "12abc" is not a number). A '-' is refused only when
 * the result would be negative as a signed number, as memcached does.
 */
static bool value_u64(const char *v, size_t n, uint64_t *out)
{
	size_t i = 0;
	bool neg = false;
	uint64_t x = 0;

	while (i < n && is_space(v[i]))
		i++;
	if (i < n && (v[i] == '+' || v[i] == '-'))
		neg = v[i++] == '-';
	size_t d0 = i;
	while (i < n && v[i] >= '0' && v[i] <= '9') {
		unsigned d = (unsigned)(v[i] - '0');
		if (x > (UINT64_MAX - d) / 10)
			return false;
		x = x * 10 + d;
		i++;
	}
	if (i == d0)
		return false;
	if (i < n && !is_space(v[i]) && v[i] != '\0')
		return false;
	if (neg)
		x = (uint64_t)0 - x;
	if (x > (uint64_t)INT64_MAX && memchr(v, '-', n) != NULL)
		return false;
	*out = x;
	return true;
}

/* exptime -> TTL, as memcached's realtime(): 0 never expires; up to 30
 * days relative seconds; beyond, a Unix time (one now or past is
 * expired); negative is already expired. */
static struct mc_ttl exptime_ttl(int64_t e)
{
	struct mc_ttl t = {false, 0};

	if (e == 0)
		return t;
	if (e < 0) {
		t.expired = true;
		return t;
	}
	if (e <= MC_REALTIME_MAXDELTA) {
		t.ms = (uint64_t)e * 1000u;
		return t;
	}
	uint64_t at = (uint64_t)e * 1000u, now = real_ms();
	if (at <= now)
		t.expired = true;
	else
		t.ms = at - now;
	return t;
}

/* The TTL an item read with kv_get_info keeps when rewritten. */
static struct mc_ttl kept_ttl(const struct kv_item_info *info)
{
	struct mc_ttl t = {false, 0};

	if (info->ttl_ms > 0)
		t.ms = (uint64_t)info->ttl_ms;
	else if (info->ttl_ms == 0)
		t.ms = 1; /* due now: not "never" */
	return t;
}

/* Seconds left, as meta's t flag shows them (-1: never expires). */
static int64_t ttl_secs(struct mc_ttl t)
{
	if (t.expired)
		return 0;
	if (t.ms == 0)
		return -1;
	return (int64_t)((t.ms + 999) / 1000);
}

static bool buf_grow(struct mc_buf *b, size_t need)
{
	if (b->cap >= need)
		return true;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	char *p = realloc(b->p, cap);
	if (p == NULL)
		return false;
	b->p = p;
	b->cap = cap;
	return true;
}

/* Free a scratch buffer that grew large, so an idle connection keeps
 * little. */
static void buf_trim(struct mc_buf *b)
{
	if (b->cap > MC_BUF_KEEP) {
		free(b->p);
		b->p = NULL;
		b->cap = 0;
	}
}

/* base64 with '=' padding, the alphabet of memcached's b flag. */
static const char b64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decode src[0..n) into out (room for n * 3 / 4 bytes). Returns the
 * length, or 0 when it is not base64 (or decodes to nothing). */
static size_t b64_decode(const char *src, size_t n, char *out)
{
	size_t o = 0;

	if (n == 0 || n % 4 != 0)
		return 0;
	for (size_t i = 0; i < n; i += 4) {
		int v[4];
		size_t pad = 0;
		for (size_t j = 0; j < 4; j++) {
			unsigned char c = (unsigned char)src[i + j];
			if (c == '=' && i + 4 == n && j >= 2) {
				v[j] = 0;
				pad++;
				continue;
			}
			if (pad != 0 || (v[j] = b64_val(c)) < 0)
				return 0;
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 |
		             (uint32_t)v[2] << 6 | (uint32_t)v[3];
		out[o++] = (char)(w >> 16);
		if (pad < 2)
			out[o++] = (char)(w >> 8);
		if (pad < 1)
			out[o++] = (char)w;
	}
	return o;
}

/* Encode src[0..n) into out (room for (n + 2) / 3 * 4 bytes). */
static size_t b64_encode(const char *src, size_t n, char *out)
{
	size_t o = 0, i = 0;

	for (; i + 3 <= n; i += 3) {
		uint32_t w = (uint32_t)(unsigned char)src[i] << 16 |
		             (uint32_t)(unsigned char)src[i + 1] << 8 |
		             (uint32_t)(unsigned char)src[i + 2];
		out[o++] = b64_chars[w >> 18 & 63];
		out[o++] = b64_chars[w >> 12 & 63];
		out[o++] = b64_chars[w >> 6 & 63];
		out[o++] = b64_chars[w & 63];
	}
	if (i < n) {
		uint32_t w = (uint32_t)(unsigned char)src[i] << 16;
		if (i + 1 < n)
			w |= (uint32_t)(unsigned char)src[i + 1] << 8;
		out[o++] = b64_chars[w >> 18 & 63];
		out[o++] = b64_chars[w >> 12 & 63];
		out[o++] = i + 1 < n ? b64_chars[w >> 6 & 63] : '=';
		out[o++] = '=';
	}
	return o;
}

/* ------------------------------------------------------------------------
 * Building replies
 */

/* A reply line being built, bounded. */
struct line {
	char b[MC_META_HDR];
	size_t n;
	bool over;
};

static void l_mem(struct line *l, const void *p, size_t n)
{
	if (n > sizeof(l->b) - l->n) {
		l->over = true;
		return;
	}
	memcpy(l->b + l->n, p, n);
	l->n += n;
}

static void l_str(struct line *l, const char *s)
{
	l_mem(l, s, strlen(s));
}

static void l_u64(struct line *l, uint64_t v)
{
	char d[24];
	int k = snprintf(d, sizeof(d), "%" PRIu64, v);
	l_mem(l, d, (size_t)k);
}

static void l_i64(struct line *l, int64_t v)
{
	char d[24];
	int k = snprintf(d, sizeof(d), "%" PRId64, v);
	l_mem(l, d, (size_t)k);
}

static size_t pending(const struct mc_session *s)
{
	return s->len - s->off;
}

/* Room for need more reply bytes at s->out + s->len. Out of memory ends
 * the session (there is no way left to answer). */
static bool out_reserve(struct mc_session *s, size_t need)
{
	if (s->cap - s->len >= need)
		return true;
	if (s->off > 0) {
		memmove(s->out, s->out + s->off, s->len - s->off);
		s->len -= s->off;
		s->off = 0;
		if (s->cap - s->len >= need)
			return true;
	}
	size_t cap = s->cap ? s->cap : 4096;
	while (cap - s->len < need) {
		if (cap > SIZE_MAX / 2) {
			cap = SIZE_MAX;
			break;
		}
		cap *= 2;
	}
	char *p = cap - s->len >= need ? realloc(s->out, cap) : NULL;
	if (p == NULL) {
		s->closing = true;
		return false;
	}
	s->out = p;
	s->cap = cap;
	return true;
}

static void out_raw(struct mc_session *s, const void *p, size_t n)
{
	if (n == 0 || !out_reserve(s, n))
		return;
	memcpy(s->out + s->len, p, n);
	s->len += n;
}

/* A reply line; nothing when the command said noreply (memcached's
 * out_string). */
static void out_str(struct mc_session *s, const char *str)
{
	if (s->noreply)
		return;
	out_raw(s, str, strlen(str));
	out_raw(s, "\r\n", 2);
}

/* An error line that noreply does not hide (memcached's out_errstring,
 * used by the meta commands). */
static void out_err(struct mc_session *s, const char *str)
{
	s->noreply = false;
	out_str(s, str);
}

static void out_line(struct mc_session *s, const struct line *l)
{
	out_raw(s, l->b, l->n);
}

/* "SERVER_ERROR <why>" for a store error with no memcached equivalent. */
static void out_kverr(struct mc_session *s, int rc, bool force)
{
	struct line l = {.n = 0};

	if (rc == KV_EFULL) {
		l_str(&l, "SERVER_ERROR out of memory storing object");
	} else if (rc == KV_EVALSIZE) {
		l_str(&l, "SERVER_ERROR object too large for cache");
	} else if (rc == KV_EKEYSIZE) {
		/* a store made with keys shorter than memcached's */
		l_str(&l, "CLIENT_ERROR bad command line format");
	} else {
		l_str(&l, "SERVER_ERROR ");
		l_str(&l, kv_strerror(rc));
	}
	if (force)
		s->noreply = false;
	if (s->noreply)
		return;
	l_str(&l, "\r\n");
	out_line(s, &l);
}

/* Read a value into s->out at s->len + gap, growing the buffer to the
 * value's size: the first try reads into the room there is, so a value
 * that fits costs one read and a miss no growth. The bytes there are not
 * yet part of the reply. */
static int fetch_to_out(struct mc_session *s, const char *key, size_t klen,
                        size_t gap, size_t *vlen,
                        struct kv_item_info *info)
{
	int rc = KV_ERANGE;

	for (unsigned i = 0; i < MC_GET_TRIES && rc == KV_ERANGE; i++) {
		size_t want = i == 0 ? 0 : *vlen;
		if (!out_reserve(s, gap + want + 2))
			return KV_ENOMEM;
		size_t room = s->cap - s->len - gap - 2;
		rc = kv_get_info(s->kv, key, klen,
		                 room ? s->out + s->len + gap : NULL, room,
		                 vlen, info);
	}
	return rc;
}

/* Commit a reply of head then the value fetch_to_out left at gap, then
 * "\r\n". */
static void place_value(struct mc_session *s, const struct line *head,
                        size_t gap, size_t vlen)
{
	/* fetch_to_out reserved gap + vlen + 2, and head is <= gap. */
	memmove(s->out + s->len + head->n, s->out + s->len + gap, vlen);
	memcpy(s->out + s->len, head->b, head->n);
	s->len += head->n + vlen;
	memcpy(s->out + s->len, "\r\n", 2);
	s->len += 2;
}

/* Read a whole value into b. */
static int read_value(struct mc_session *s, const char *key, size_t klen,
                      struct mc_buf *b, size_t *vlen,
                      struct kv_item_info *info)
{
	int rc = KV_ERANGE;

	for (unsigned i = 0; i < MC_GET_TRIES && rc == KV_ERANGE; i++) {
		if (i > 0 && !buf_grow(b, *vlen))
			return KV_ENOMEM;
		rc = kv_get_info(s->kv, key, klen, b->cap ? b->p : NULL,
		                 b->cap, vlen, info);
	}
	return rc;
}

/* ------------------------------------------------------------------------
 * Writing to the store
 */

/* kv_put with a TTL that may be "already expired": memcached stores such
 * an item and never shows it. Here it is written (so every other check
 * and error is the same), with the shortest TTL, then removed. libkv has
 * no delete-if-version, so a put of the same key by another writer
 * between the two calls (a window of microseconds) goes with it. */
static int put_ttl(struct mc_session *s, const char *key, size_t klen,
                   const void *val, size_t vlen, uint32_t flags,
                   struct mc_ttl ttl, uint32_t cond, uint64_t cas)
{
	struct kv_put_opts o;

	memset(&o, 0, sizeof(o));
	o.ttl_ms = ttl.expired ? 1 : ttl.ms;
	o.flags = cond;
	o.client_flags = flags;
	o.cas = cas;
	int rc = kv_put(s->kv, key, klen, val, vlen, &o);
	if (rc == KV_OK && ttl.expired)
		(void)kv_del(s->kv, key, klen);
	return rc;
}

/* What a storage command came to, in memcached's words. */
enum mc_stored { R_STORED, R_NOT_STORED, R_EXISTS, R_NOT_FOUND, R_ERROR };

/*
 * append/prepend: read the item, write old+new (or new+old) with the
 * item's flags and TTL on the version read; another writer in between
 * makes it read again. With has_cas (ms A/P with C) the version read must
 * be cas.
 */
static enum mc_stored store_concat(struct mc_session *s,
                                   const struct mc_store *r,
                                   const char *data, size_t dlen, int *err)
{
	bool append = r->cmd == C_APPEND || r->mode == 'A';

	for (unsigned i = 0; i < MC_CAS_TRIES; i++) {
		struct kv_item_info info;
		size_t olen = 0;
		int rc = read_value(s, r->key, r->klen, &s->tmp, &olen, &info);
		if (rc == KV_ENOTFOUND)
			return R_NOT_STORED;
		if (rc != KV_OK) {
			*err = rc;
			return R_ERROR;
		}
		if (r->has_cas && info.version != r->cas)
			return R_EXISTS;
		if (olen + dlen > s->max_value) {
			CNT(s, store_too_large);
			*err = KV_EVALSIZE;
			return R_ERROR;
		}
		if (!buf_grow(&s->tmp, olen + dlen + 1)) {
			*err = KV_ENOMEM;
			return R_ERROR;
		}
		if (append) {
			memcpy(s->tmp.p + olen, data, dlen);
		} else {
			memmove(s->tmp.p + dlen, s->tmp.p, olen);
			memcpy(s->tmp.p, data, dlen);
		}
		rc = put_ttl(s, r->key, r->klen, s->tmp.p, olen + dlen,
		             info.client_flags, kept_ttl(&info), KV_PUT_CAS,
		             info.version);
		if (rc == KV_OK)
			return R_STORED;
		if (rc == KV_ENOTFOUND)
			return R_NOT_STORED;
		if (rc != KV_ECHANGED) {
			*err = rc;
			return R_ERROR;
		}
	}
	*err = KV_EBUSY;
	return R_ERROR;
}

/* Run a storage command on its data. */
static enum mc_stored store_run(struct mc_session *s, const struct mc_store *r,
                                const char *data, size_t dlen, int *err)
{
	enum mc_cmd cmd = r->cmd;
	uint32_t cond = 0;
	int rc;

	if (cmd == C_MS) {
		switch (r->mode) {
		case 'E': cmd = C_ADD; break;
		case 'A': cmd = C_APPEND; break;
		case 'P': cmd = C_PREPEND; break;
		case 'R': cmd = r->has_cas ? C_CAS : C_REPLACE; break;
		default: cmd = r->has_cas ? C_CAS : C_SET; break;
		}
	}
	switch (cmd) {
	case C_APPEND:
	case C_PREPEND:
		return store_concat(s, r, data, dlen, err);
	case C_ADD:
		cond = KV_PUT_NX;
		break;
	case C_REPLACE:
		cond = KV_PUT_XX;
		break;
	case C_CAS:
		cond = KV_PUT_CAS;
		break;
	default:
		break;
	}
	rc = put_ttl(s, r->key, r->klen, data, dlen, r->flags, r->ttl, cond,
	             r->cas);
	switch (rc) {
	case KV_OK:
		if (cmd == C_CAS)
			CNT(s, cas_hits);
		return R_STORED;
	case KV_EEXIST:
		return R_NOT_STORED;
	case KV_ENOTFOUND:
		if (cmd == C_CAS) {
			CNT(s, cas_misses);
			return R_NOT_FOUND;
		}
		return R_NOT_STORED;
	case KV_ECHANGED:
		CNT(s, cas_badval);
		return R_EXISTS;
	default:
		if (rc == KV_EFULL)
			CNT(s, store_no_memory);
		else if (rc == KV_EVALSIZE)
			CNT(s, store_too_large);
		/* memcached drops the old value of a set it could not store,
		 * so no stale value outlives a set the client meant */
		if (cmd == C_SET && (rc == KV_EFULL || rc == KV_EVALSIZE))
			(void)kv_del(s->kv, r->key, r->klen);
		*err = rc;
		return R_ERROR;
	}
}

/* ------------------------------------------------------------------------
 * Data blocks
 */

static void swallow(struct mc_session *s, size_t n)
{
	s->need = n;
	s->st = ST_SWALLOW;
}

static void expect_data(struct mc_session *s, size_t n)
{
	s->need = n;
	s->have = 0;
	s->st = ST_DATA;
}

/*
 * A data block did not end in "\r\n" where its length said. memcached
 * answers CLIENT_ERROR bad data chunk and parses on from the byte after
 * the block; when the block was shorter than its line (the common case: a
 * client that counted characters, not bytes) the rest of the value is then
 * run as commands - a value holding "\r\nflush_all" would flush. Here the
 * line the block was cut from is skipped to its '\n' instead, so no byte
 * of a value is ever run:
 *   - the block ends in '\n': its line ended with it; nothing to skip
 *     (as memcached);
 *   - the block holds a '\n' before its end: the value was shorter than
 *     its length, so the block ran into the next command line, whose
 *     rest is skipped with the ERROR memcached gives such a fragment
 *     (one reply per request line, as the client counts them);
 *   - no '\n' in the block: the value was longer than its length, and
 *     the rest of its line is skipped silently.
 */
static void finish_bad_chunk(struct mc_session *s, const char *d, size_t n,
                             const char *fragment_reply)
{
	s->st = ST_LINE;
	if (n > 0 && d[n - 1] == '\n')
		return;
	if (n > 1 && memchr(d, '\n', n - 1) != NULL) {
		s->noreply = false;
		out_str(s, fragment_reply);
	}
	s->st = ST_SKIPLINE;
}

static bool auth_check(const struct mc_server *srv, const char *user,
                       size_t ulen, const char *pass, size_t plen);

static void auth_data(struct mc_session *s, const char *d, size_t n)
{
	struct tok t[MC_TOKENS + 1];

	if (n < 2 || d[n - 2] != '\r' || d[n - 1] != '\n') {
		out_str(s, "CLIENT_ERROR bad command line termination");
		finish_bad_chunk(s, d, n, "CLIENT_ERROR unauthenticated");
		return;
	}
	if (tokenize(d, n - 2, t) < 3) {
		out_str(s, "CLIENT_ERROR bad authentication token format");
		return;
	}
	CNT(s, auth_cmds);
	if (auth_check(s->srv, t[0].p, t[0].n, t[1].p, t[1].n)) {
		s->authed = true;
		out_str(s, "STORED");
	} else {
		CNT(s, auth_errors);
		out_str(s, "CLIENT_ERROR authentication failure");
	}
}

/* The reply of ms: its code, then the O, k and c flags in their order. */
static void ms_reply(struct mc_session *s, const struct mc_store *r,
                     enum mc_stored res)
{
	struct tok t[MC_TOKENS + 1];
	struct line l = {.n = 0};
	size_t nt = tokenize(r->echo, r->echo_len, t);
	bool have_cas = false;
	uint64_t cas = 0;

	switch (res) {
	case R_STORED:
		l_str(&l, "HD");
		if (r->q)
			return;
		break;
	case R_NOT_STORED: l_str(&l, "NS"); break;
	case R_EXISTS: l_str(&l, "EX"); break;
	default: l_str(&l, "NF"); break;
	}
	for (size_t i = 0; i + 1 < nt; i++) {
		switch (t[i].p[0]) {
		case 'O':
			l_str(&l, " ");
			l_mem(&l, t[i].p, t[i].n);
			break;
		case 'k':
			l_str(&l, " k");
			if (r->key_b64) {
				char enc[(MC_MAX_KEY + 2) / 3 * 4];
				l_mem(&l, enc, b64_encode(r->key, r->klen, enc));
				l_str(&l, " b");
			} else {
				l_mem(&l, r->key, r->klen);
			}
			break;
		case 'c':
			/* memcached gives the new item's CAS unique only
			 * once stored, else 0 */
			if (res == R_STORED && !have_cas) {
				struct kv_item_info info;
				size_t vl;
				int rc = kv_get_info(s->kv, r->key, r->klen,
				                     NULL, 0, &vl, &info);
				if (rc == KV_OK || rc == KV_ERANGE)
					cas = info.version;
				have_cas = true;
			}
			l_str(&l, " c");
			l_u64(&l, cas);
			break;
		default:
			break;
		}
	}
	l_str(&l, "\r\n");
	out_line(s, &l);
}

/* A complete data block d[0..n), "\r\n" included: run its command. */
static void data_done(struct mc_session *s, const char *d, size_t n)
{
	struct mc_store *r = &s->req;
	int err = KV_OK;

	s->st = ST_LINE;
	s->noreply = false;
	if (r->cmd == C_AUTH) {
		auth_data(s, d, n);
		return;
	}
	CNT(s, cmd_set);
	/* the classic commands' noreply hides every reply; ms's q only its
	 * HD (ms_reply), its errors always answer */
	s->noreply = r->cmd != C_MS && r->q;
	if (d[n - 2] != '\r' || d[n - 1] != '\n') {
		out_str(s, "CLIENT_ERROR bad data chunk");
		finish_bad_chunk(s, d, n, "ERROR");
		s->noreply = false;
		return;
	}
	enum mc_stored res = store_run(s, r, d, n - 2, &err);
	if (res == R_ERROR) {
		out_kverr(s, err, r->cmd == C_MS);
	} else if (r->cmd == C_MS) {
		ms_reply(s, r, res);
	} else {
		static const char *const words[] = {
			[R_STORED] = "STORED", [R_NOT_STORED] = "NOT_STORED",
			[R_EXISTS] = "EXISTS", [R_NOT_FOUND] = "NOT_FOUND",
		};
		out_str(s, words[res]);
	}
	s->noreply = false;
	buf_trim(&s->val);
	buf_trim(&s->tmp);
}

/* ------------------------------------------------------------------------
 * Retrieval
 */

/* VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n, if the key is live. */
static int emit_value(struct mc_session *s, const char *key, size_t klen,
                      bool with_cas)
{
	struct kv_item_info info;
	size_t vlen = 0, gap = klen + 64;
	int rc = fetch_to_out(s, key, klen, gap, &vlen, &info);

	if (rc != KV_OK)
		return rc;
	struct line l = {.n = 0};
	l_str(&l, "VALUE ");
	l_mem(&l, key, klen);
	l_str(&l, " ");
	l_u64(&l, info.client_flags);
	l_str(&l, " ");
	l_u64(&l, vlen);
	if (with_cas) {
		l_str(&l, " ");
		l_u64(&l, info.version);
	}
	l_str(&l, "\r\n");
	place_value(s, &l, gap, vlen);
	return KV_OK;
}

/* One key of a get line. False when the store failed (the reply then
 * ends with the error). */
static bool get_one(struct mc_session *s, const char *key, size_t klen)
{
	int rc;

	if (!s->get.touch) {
		CNT(s, cmd_get);
		rc = emit_value(s, key, klen, s->get.cas);
		if (rc == KV_OK)
			CNT(s, get_hits);
		else if (rc == KV_ENOTFOUND)
			CNT(s, get_misses);
		else
			goto fail;
		return true;
	}
	CNT(s, cmd_touch);
	if (s->get.ttl.expired) {
		/* touched into the past: shown this once, then gone */
		rc = emit_value(s, key, klen, s->get.cas);
		if (rc == KV_OK)
			(void)kv_del(s->kv, key, klen);
	} else {
		rc = kv_touch(s->kv, key, klen, s->get.ttl.ms);
		if (rc == KV_OK)
			rc = emit_value(s, key, klen, s->get.cas);
	}
	if (rc == KV_OK)
		CNT(s, touch_hits);
	else if (rc == KV_ENOTFOUND)
		CNT(s, touch_misses);
	else
		goto fail;
	return true;
fail:
	out_kverr(s, rc, true);
	return false;
}

/* End of a get line. */
static void get_end(struct mc_session *s)
{
	s->st = ST_LINE;
	/* a get of no key at all (possible only in a line too long to be
	 * checked first) is memcached's ERROR; gat's exptime counts */
	if (!s->get.checked && s->get.nkeys == 0 && !s->get.touch)
		out_str(s, "ERROR");
	else
		out_raw(s, "END\r\n", 5);
}

/* A key the get line cannot have: the reply ends with the error and the
 * rest of the line is skipped. */
static size_t get_bad_key(struct mc_session *s, size_t at, bool eol)
{
	out_str(s, "CLIENT_ERROR bad command line format");
	s->st = eol ? ST_LINE : ST_SKIPLINE;
	return at;
}

/*
 * ST_GETKEYS: run the keys in p[0..n), one at a time, until the line's
 * '\n'. Returns the bytes consumed; stops early (leaving the rest to the
 * caller) when the reply reached MC_OUT_HIGH, or when a key is not
 * complete yet (at most MC_MAX_KEY + 1 bytes are left then).
 */
static size_t get_keys(struct mc_session *s, const char *p, size_t n)
{
	size_t i = 0;

	for (;;) {
		if (pending(s) >= MC_OUT_HIGH || s->closing)
			return i;
		while (i < n && p[i] == ' ')
			i++;
		if (i == n)
			return i;
		/* a key is a run of bytes up to ' ' or '\n', without the
		 * '\r' of a "\r\n" */
		size_t lim = n - i, j = 0;
		if (lim > MC_MAX_KEY + 2)
			lim = MC_MAX_KEY + 2;
		while (j < lim && p[i + j] != ' ' && p[i + j] != '\n')
			j++;
		if (j == lim) {
			if (lim < MC_MAX_KEY + 2)
				return i; /* wait for the rest of it */
			return get_bad_key(s, i, false);
		}
		bool eol = p[i + j] == '\n';
		size_t klen = j;
		if (eol && klen > 0 && p[i + klen - 1] == '\r')
			klen--;
		if (key_bytes_bad(p + i, klen))
			return get_bad_key(s, i + j + eol, eol);
		if (klen > 0) {
			s->get.nkeys++;
			if (!get_one(s, p + i, klen)) {
				s->st = eol ? ST_LINE : ST_SKIPLINE;
				return i + j + eol;
			}
		}
		i += j;
		if (eol) {
			get_end(s);
			return i + 1;
		}
	}
}

/* A get, gets, gat or gats line that fits in MC_MAX_LINE: check it whole,
 * then run its keys from the caller's bytes. Returns the bytes of the line
 * consumed (up to its first key). */
static size_t cmd_get(struct mc_session *s, const char *line, size_t n,
                      size_t len, const struct tok *t, bool cas, bool touch)
{
	struct mc_ttl ttl = {false, 0};
	const struct tok *last = &t[touch ? 1 : 0];

	if (touch) {
		int32_t e;
		if (!tok_i32(t[1], &e)) {
			out_str(s, "CLIENT_ERROR invalid exptime argument");
			return len;
		}
		ttl = exptime_ttl(e);
	}
	size_t ks = (size_t)(last->p + last->n - line);
	for (size_t i = ks; i < n;) {
		while (i < n && line[i] == ' ')
			i++;
		size_t k0 = i;
		while (i < n && line[i] != ' ')
			i++;
		if (key_bytes_bad(line + k0, i - k0)) {
			out_str(s, "CLIENT_ERROR bad command line format");
			return len;
		}
	}
	s->get.cas = cas;
	s->get.touch = touch;
	s->get.checked = true;
	s->get.ttl = ttl;
	s->get.nkeys = 0;
	s->st = ST_GETKEYS;
	return ks;
}

/* ------------------------------------------------------------------------
 * Storage commands
 */

/* memcached's set_noreply_maybe: the last token is "noreply". */
static void noreply_maybe(struct mc_session *s, const struct tok *t, size_t nt)
{
	if (nt >= 2 && tok_is(t[nt - 2], "noreply"))
		s->noreply = true;
}

static void cmd_update(struct mc_session *s, const struct tok *t, size_t nt,
                       enum mc_cmd cmd)
{
	struct mc_store *r = &s->req;
	uint32_t flags;
	int32_t e, vlen;
	uint64_t cas = 0;

	noreply_maybe(s, t, nt);
	if (key_bad(t[1]) || !tok_u32(t[2], &flags) ||
	    !tok_i32(t[3], &e) || !tok_i32(t[4], &vlen) ||
	    (cmd == C_CAS && !tok_u64(t[5], &cas)) || vlen < 0 ||
	    vlen > INT32_MAX - 2) {
		out_str(s, "CLIENT_ERROR bad command line format");
		return;
	}
	size_t need = (size_t)vlen + 2;
	if ((size_t)vlen > s->max_value) {
		CNT(s, store_too_large);
		out_str(s, "SERVER_ERROR object too large for cache");
		if (cmd == C_SET)
			(void)kv_del(s->kv, t[1].p, t[1].n);
		swallow(s, need);
		return;
	}
	r->cmd = cmd;
	memcpy(r->key, t[1].p, t[1].n);
	r->klen = t[1].n;
	r->key_b64 = false;
	r->flags = flags;
	r->ttl = exptime_ttl(e);
	r->cas = cas;
	r->has_cas = cmd == C_CAS;
	r->mode = 0;
	r->q = s->noreply;
	r->echo_len = 0;
	expect_data(s, need);
}

static void cmd_delete(struct mc_session *s, const struct tok *t, size_t nt)
{
	if (nt > 3) {
		bool zero = tok_is(t[2], "0");
		noreply_maybe(s, t, nt);
		bool valid = (nt == 4 && (zero || s->noreply)) ||
		             (nt == 5 && zero && s->noreply);
		if (!valid) {
			out_str(s, "CLIENT_ERROR bad command line format.  "
			           "Usage: delete <key> [noreply]");
			return;
		}
	}
	if (key_bad(t[1])) {
		out_str(s, "CLIENT_ERROR bad command line format");
		return;
	}
	int rc = kv_del(s->kv, t[1].p, t[1].n);
	if (rc == KV_OK) {
		CNT(s, delete_hits);
		out_str(s, "DELETED");
	} else if (rc == KV_ENOTFOUND) {
		CNT(s, delete_misses);
		out_str(s, "NOT_FOUND");
	} else {
		out_kverr(s, rc, false);
	}
}

/* The result of an arithmetic command. */
enum mc_delta { D_OK, D_NOT_FOUND, D_NON_NUMERIC, D_EXISTS, D_ERROR };

/* What ma asks besides incr/decr. */
struct mc_arith {
	bool incr;
	uint64_t delta;
	bool has_cas;        /* C: the item must have this version */
	uint64_t cas;
	bool vivify;         /* N: create a missing item with initial */
	uint64_t initial;
	bool ttl_hit_set;    /* a TTL for an item that was found */
	struct mc_ttl ttl_hit;
	struct mc_ttl ttl_new; /* the TTL of an item created */
	/* out */
	uint64_t value;
	bool created;
	struct mc_ttl ttl;   /* the item's TTL now */
};

/*
 * incr/decr (and ma): read the number, write the result with the item's
 * flags and TTL on the version read, again if another writer got in. incr
 * wraps at 2^64, decr stops at 0 (memcached's rules); the value is stored
 * as its digits alone (memcached pads a shorter result with spaces when it
 * changes the item in place).
 */
static enum mc_delta arith(struct mc_session *s, const char *key,
                           size_t klen, struct mc_arith *a, int *err)
{
	for (unsigned i = 0; i < MC_CAS_TRIES; i++) {
		struct kv_item_info info;
		size_t vlen = 0;
		char num[24];
		int rc = read_value(s, key, klen, &s->tmp, &vlen, &info);

		if (rc == KV_ENOTFOUND) {
			if (!a->vivify)
				return D_NOT_FOUND;
			int k = snprintf(num, sizeof(num), "%" PRIu64,
			                 a->initial);
			rc = put_ttl(s, key, klen, num, (size_t)k, 0, a->ttl_new,
			             KV_PUT_NX, 0);
			if (rc == KV_EEXIST)
				continue;
			if (rc != KV_OK) {
				*err = rc;
				return D_ERROR;
			}
			a->value = a->initial;
			a->created = true;
			a->ttl = a->ttl_new;
			return D_OK;
		}
		if (rc != KV_OK) {
			*err = rc;
			return D_ERROR;
		}
		if (a->has_cas && a->cas != info.version)
			return D_EXISTS;
		uint64_t v;
		if (vlen == 0 || !value_u64(s->tmp.p, vlen, &v))
			return D_NON_NUMERIC;
		if (a->incr)
			v += a->delta;
		else
			v = a->delta > v ? 0 : v - a->delta;
		int k = snprintf(num, sizeof(num), "%" PRIu64, v);
		struct mc_ttl ttl = a->ttl_hit_set ? a->ttl_hit : kept_ttl(&info);
		rc = put_ttl(s, key, klen, num, (size_t)k, info.client_flags,
		             ttl, KV_PUT_CAS, info.version);
		if (rc == KV_OK) {
			a->value = v;
			a->ttl = ttl;
			return D_OK;
		}
		if (rc != KV_ECHANGED && rc != KV_ENOTFOUND) {
			*err = rc;
			return D_ERROR;
		}
	}
	*err = KV_EBUSY;
	return D_ERROR;
}

static void cmd_arith(struct mc_session *s, const struct tok *t, size_t nt,
                      bool incr)
{
	struct mc_arith a;
	int err = KV_OK;

	noreply_maybe(s, t, nt);
	if (key_bad(t[1])) {
		out_str(s, "CLIENT_ERROR bad command line format");
		return;
	}
	memset(&a, 0, sizeof(a));
	a.incr = incr;
	if (!tok_u64(t[2], &a.delta)) {
		out_str(s, "CLIENT_ERROR invalid numeric delta argument");
		return;
	}
	switch (arith(s, t[1].p, t[1].n, &a, &err)) {
	case D_OK: {
		char num[24];
		snprintf(num, sizeof(num), "%" PRIu64, a.value);
		if (incr)
			CNT(s, incr_hits);
		else
			CNT(s, decr_hits);
		out_str(s, num);
		break;
	}
	case D_NON_NUMERIC:
		out_str(s, "CLIENT_ERROR cannot increment or decrement "
		           "non-numeric value");
		break;
	case D_NOT_FOUND:
	case D_EXISTS:
		if (incr)
			CNT(s, incr_misses);
		else
			CNT(s, decr_misses);
		out_str(s, "NOT_FOUND");
		break;
	case D_ERROR:
		if (err == KV_EFULL)
			out_str(s, "SERVER_ERROR out of memory");
		else
			out_kverr(s, err, false);
		break;
	}
	buf_trim(&s->tmp);
}

static void cmd_touch(struct mc_session *s, const struct tok *t, size_t nt)
{
	int32_t e;
	int rc;

	noreply_maybe(s, t, nt);
	if (key_bad(t[1])) {
		out_str(s, "CLIENT_ERROR bad command line format");
		return;
	}
	if (!tok_i32(t[2], &e)) {
		out_str(s, "CLIENT_ERROR invalid exptime argument");
		return;
	}
	struct mc_ttl ttl = exptime_ttl(e);
	rc = kv_touch(s->kv, t[1].p, t[1].n, ttl.expired ? 1 : ttl.ms);
	if (rc == KV_OK && ttl.expired)
		(void)kv_del(s->kv, t[1].p, t[1].n);
	CNT(s, cmd_touch);
	if (rc == KV_OK) {
		CNT(s, touch_hits);
		out_str(s, "TOUCHED");
	} else if (rc == KV_ENOTFOUND) {
		CNT(s, touch_misses);
		out_str(s, "NOT_FOUND");
	} else if (rc == KV_EFULL) {
		out_str(s, "SERVER_ERROR out of memory");
	} else {
		out_kverr(s, rc, false);
	}
}

static void cmd_flush_all(struct mc_session *s, const struct tok *t, size_t nt)
{
	int32_t e = 0;

	noreply_maybe(s, t, nt);
	CNT(s, cmd_flush);
	if (nt != (s->noreply ? 3u : 2u) && !tok_i32(t[1], &e)) {
		out_str(s, "CLIENT_ERROR invalid exptime argument");
		return;
	}
	if (e > 0) {
		/* memcached: every item that exists when the delay is up is
		 * gone then, those stored meanwhile too; a later flush_all
		 * replaces a pending one */
		struct mc_ttl ttl = exptime_ttl(e);
		uint64_t at = real_ms() + (ttl.expired ? 0 : ttl.ms);
		atomic_store(&s->srv->flush_at_ms, at ? at : 1);
		out_str(s, "OK");
		return;
	}
	atomic_store(&s->srv->flush_at_ms, 0);
	int rc = kv_flush(s->kv, NULL);
	if (rc == KV_OK)
		out_str(s, "OK");
	else
		out_kverr(s, rc, false);
}

static void cmd_verbosity(struct mc_session *s, const struct tok *t,
                          size_t nt)
{
	uint32_t level;

	noreply_maybe(s, t, nt);
	if (!tok_u32(t[1], &level)) {
		out_str(s, "CLIENT_ERROR bad command line format");
		return;
	}
	atomic_store(&s->srv->verbosity, level > 2 ? 2 : (int)level);
	out_str(s, "OK");
}

/* ------------------------------------------------------------------------
 * stats
 */

static void stat_u64(struct mc_session *s, const char *name, uint64_t v)
{
	struct line l = {.n = 0};
	l_str(&l, "STAT ");
	l_str(&l, name);
	l_str(&l, " ");
	l_u64(&l, v);
	l_str(&l, "\r\n");
	out_line(s, &l);
}

static void stat_str(struct mc_session *s, const char *name, const char *v)
{
	struct line l = {.n = 0};
	l_str(&l, "STAT ");
	l_str(&l, name);
	l_str(&l, " ");
	l_str(&l, v);
	l_str(&l, "\r\n");
	out_line(s, &l);
}

/* "STAT <prefix><cls>:<name> <v>" */
static void stat_cls(struct mc_session *s, const char *prefix, uint32_t cls,
                     const char *name, uint64_t v)
{
	struct line l = {.n = 0};
	l_str(&l, "STAT ");
	l_str(&l, prefix);
	l_u64(&l, cls);
	l_str(&l, ":");
	l_str(&l, name);
	l_str(&l, " ");
	l_u64(&l, v);
	l_str(&l, "\r\n");
	out_line(s, &l);
}

static uint64_t ld(_Atomic uint64_t *a)
{
	return atomic_load_explicit(a, memory_order_relaxed);
}

static void stats_general(struct mc_session *s)
{
	struct mc_counters *c = &s->srv->c;
	struct kv_stats st;
	struct rusage ru;
	char tv[48];
	uint64_t now = real_ms();

	memset(&st, 0, sizeof(st));
	(void)kv_stats(s->kv, &st);
	stat_u64(s, "pid", (uint64_t)getpid());
	stat_u64(s, "uptime", now > s->srv->started_ms ?
	                          (now - s->srv->started_ms) / 1000u : 0);
	stat_u64(s, "time", now / 1000u);
	stat_str(s, "version", MC_PROTO_VERSION);
	stat_str(s, "kv_version", kv_version());
	stat_u64(s, "pointer_size", 8 * sizeof(void *));
	memset(&ru, 0, sizeof(ru));
	(void)getrusage(RUSAGE_SELF, &ru);
	snprintf(tv, sizeof(tv), "%ld.%06ld", (long)ru.ru_utime.tv_sec,
	         (long)ru.ru_utime.tv_usec);
	stat_str(s, "rusage_user", tv);
	snprintf(tv, sizeof(tv), "%ld.%06ld", (long)ru.ru_stime.tv_sec,
	         (long)ru.ru_stime.tv_usec);
	stat_str(s, "rusage_system", tv);
	stat_u64(s, "max_connections", s->srv->max_conns);
	stat_u64(s, "curr_connections", ld(&c->curr_connections));
	stat_u64(s, "total_connections", ld(&c->total_connections));
	stat_u64(s, "rejected_connections", ld(&c->rejected_connections));
	stat_u64(s, "cmd_get", ld(&c->cmd_get));
	stat_u64(s, "cmd_set", ld(&c->cmd_set));
	stat_u64(s, "cmd_flush", ld(&c->cmd_flush));
	stat_u64(s, "cmd_touch", ld(&c->cmd_touch));
	stat_u64(s, "cmd_meta", ld(&c->cmd_meta));
	stat_u64(s, "get_hits", ld(&c->get_hits));
	stat_u64(s, "get_misses", ld(&c->get_misses));
	stat_u64(s, "get_expired", ld(&c->get_expired));
	stat_u64(s, "get_flushed", 0);
	stat_u64(s, "delete_misses", ld(&c->delete_misses));
	stat_u64(s, "delete_hits", ld(&c->delete_hits));
	stat_u64(s, "incr_misses", ld(&c->incr_misses));
	stat_u64(s, "incr_hits", ld(&c->incr_hits));
	stat_u64(s, "decr_misses", ld(&c->decr_misses));
	stat_u64(s, "decr_hits", ld(&c->decr_hits));
	stat_u64(s, "cas_misses", ld(&c->cas_misses));
	stat_u64(s, "cas_hits", ld(&c->cas_hits));
	stat_u64(s, "cas_badval", ld(&c->cas_badval));
	stat_u64(s, "touch_hits", ld(&c->touch_hits));
	stat_u64(s, "touch_misses", ld(&c->touch_misses));
	stat_u64(s, "store_too_large", ld(&c->store_too_large));
	stat_u64(s, "store_no_memory", ld(&c->store_no_memory));
	stat_u64(s, "auth_cmds", ld(&c->auth_cmds));
	stat_u64(s, "auth_errors", ld(&c->auth_errors));
	stat_u64(s, "bytes_read", ld(&c->bytes_read));
	stat_u64(s, "bytes_written", ld(&c->bytes_written));
	stat_u64(s, "limit_maxbytes", st.data_bytes);
	stat_u64(s, "accepting_conns", 1);
	stat_u64(s, "threads", s->srv->threads);
	/* the store's own figures: every item, whoever put it */
	stat_u64(s, "bytes", st.key_bytes + st.value_bytes +
	                         st.items * st.item_header);
	stat_u64(s, "curr_items", st.items);
	stat_u64(s, "total_items", st.puts);
	stat_u64(s, "evictions", st.evictions);
	stat_u64(s, "reclaimed", st.expired);
	out_raw(s, "END\r\n", 5);
}

static void stats_settings(struct mc_session *s)
{
	struct kv_stats st;

	memset(&st, 0, sizeof(st));
	(void)kv_stats(s->kv, &st);
	stat_u64(s, "maxbytes", st.data_bytes);
	stat_u64(s, "maxconns", s->srv->max_conns);
	stat_u64(s, "verbosity",
	         (uint64_t)atomic_load(&s->srv->verbosity));
	stat_u64(s, "oldest", 0);
	stat_str(s, "evictions", st.evict ? "on" : "off");
	stat_u64(s, "num_threads", s->srv->threads);
	stat_str(s, "cas_enabled", "yes");
	stat_str(s, "auth_enabled_sasl", "no");
	stat_str(s, "auth_enabled_ascii",
	         s->srv->users != NULL ? "yes" : "no");
	stat_u64(s, "item_size_max", s->max_value);
	stat_str(s, "flush_enabled", "yes");
	stat_u64(s, "slab_page_size", st.page_size);
	stat_u64(s, "slab_classes", st.nclasses);
	out_raw(s, "END\r\n", 5);
}

/* Size classes as memcached's slab classes, numbered from 1. */
static void stats_classes(struct mc_session *s, bool items)
{
	struct kv_stats st;
	uint64_t active = 0;

	memset(&st, 0, sizeof(st));
	(void)kv_stats(s->kv, &st);
	for (uint32_t i = 0; i < st.nclasses; i++) {
		struct kv_class_stats cs;
		if (kv_class_stats(s->kv, i, &cs) != KV_OK)
			break;
		uint32_t id = i + 1;
		if (items) {
			if (cs.used == 0)
				continue;
			stat_cls(s, "items:", id, "number", cs.used);
			stat_cls(s, "items:", id, "number_hot", 0);
			stat_cls(s, "items:", id, "number_warm", 0);
			stat_cls(s, "items:", id, "number_cold", cs.used);
			stat_cls(s, "items:", id, "evicted", cs.evictions);
			stat_cls(s, "items:", id, "outofmemory", 0);
			continue;
		}
		if (cs.pages == 0)
			continue;
		uint64_t total = cs.pages * cs.per_page;
		active++;
		stat_cls(s, "", id, "chunk_size", cs.chunk_size);
		stat_cls(s, "", id, "chunks_per_page", cs.per_page);
		stat_cls(s, "", id, "total_pages", cs.pages);
		stat_cls(s, "", id, "total_chunks", total);
		stat_cls(s, "", id, "used_chunks", cs.used);
		stat_cls(s, "", id, "free_chunks",
		         total > cs.used ? total - cs.used : 0);
		stat_cls(s, "", id, "free_chunks_end", 0);
	}
	if (!items) {
		stat_u64(s, "active_slabs", active);
		stat_u64(s, "total_malloced", st.pages_used * st.page_size);
	}
	out_raw(s, "END\r\n", 5);
}

static void stats_reset(struct mc_session *s)
{
	struct mc_counters *c = &s->srv->c;
	_Atomic uint64_t *all[] = {
		&c->total_connections, &c->rejected_connections,
		&c->bytes_read, &c->bytes_written, &c->cmd_get,
		&c->get_hits, &c->get_misses, &c->get_expired, &c->cmd_set,
		&c->cmd_touch, &c->touch_hits, &c->touch_misses,
		&c->cmd_flush, &c->delete_hits, &c->delete_misses,
		&c->incr_hits, &c->incr_misses, &c->decr_hits,
		&c->decr_misses, &c->cas_hits, &c->cas_misses,
		&c->cas_badval, &c->auth_cmds, &c->auth_errors,
		&c->cmd_meta, &c->store_too_large, &c->store_no_memory,
	};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		atomic_store_explicit(all[i], 0, memory_order_relaxed);
}

static void cmd_stats(struct mc_session *s, const struct tok *t, size_t nt)
{
	if (nt == 2) {
		stats_general(s);
		return;
	}
	struct tok sub = t[1];
	if (tok_is(sub, "reset")) {
		stats_reset(s);
		out_str(s, "RESET");
	} else if (tok_is(sub, "detail")) {
		if (nt >= 4 && (tok_is(t[2], "on") || tok_is(t[2], "off")))
			out_str(s, "OK");
		else if (nt >= 4 && tok_is(t[2], "dump"))
			out_raw(s, "END\r\n", 5);
		else
			out_str(s, "CLIENT_ERROR usage: stats detail "
			           "on|off|dump");
	} else if (tok_is(sub, "settings")) {
		stats_settings(s);
	} else if (tok_is(sub, "items")) {
		stats_classes(s, true);
	} else if (tok_is(sub, "slabs")) {
		stats_classes(s, false);
	} else if (tok_is(sub, "sizes")) {
		out_raw(s, "STAT sizes_status disabled\r\nEND\r\n", 33);
	} else {
		out_str(s, "ERROR");
	}
}

/* ------------------------------------------------------------------------
 * Meta commands
 */

/* The flags of a meta command, as memcached's _meta_flag_preparse reads
 * them: one token each, its first byte the flag, the rest its argument. */
struct mflags {
	const char *errstr;
	bool err;
	bool b, v, q, I;
	bool has_T, has_N, has_C, has_D, has_J;
	struct mc_ttl T, N;
	uint64_t C, D, J;
	uint32_t F;
	char mode;
	char key[MC_MAX_KEY]; /* the key, decoded when b */
	size_t klen;
};

/* Returns 0, or -1 with f->errstr. */
static int mflags_parse(const struct tok *t, size_t nt, size_t first,
                        struct mflags *f)
{
	unsigned char seen[127];
	int32_t e;

	memset(seen, 0, sizeof(seen));
	f->errstr = "CLIENT_ERROR bad command line format";
	memcpy(f->key, t[1].p, t[1].n);
	f->klen = t[1].n;
	for (size_t i = first; i + 1 < nt; i++) {
		unsigned char o = (unsigned char)t[i].p[0];
		struct tok arg = {t[i].p + 1, t[i].n - 1};
		if (o >= 127 || seen[o]) {
			f->errstr = "CLIENT_ERROR duplicate flag";
			return -1;
		}
		seen[o] = 1;
		switch (o) {
		case 'b': {
			char dec[MC_MAX_KEY];
			size_t n = b64_decode(t[1].p, t[1].n, dec);
			if (n == 0) {
				f->errstr = "CLIENT_ERROR error decoding key";
				f->err = true;
			}
			memcpy(f->key, dec, n);
			f->klen = n;
			f->b = true;
			break;
		}
		case 'N':
		case 'T':
		case 'R':
			if (!tok_i32(arg, &e)) {
				f->errstr = "CLIENT_ERROR bad token in command "
				            "line format";
				f->err = true;
			} else if (o == 'N') {
				f->has_N = true;
				f->N = exptime_ttl(e);
			} else if (o == 'T') {
				f->has_T = true;
				f->T = exptime_ttl(e);
			}
			break;
		case 'l': case 'h': case 'O': case 'P': case 'L': case 'k':
		case 's': case 't': case 'c': case 'f': case 'u':
			break;
		case 'v':
			f->v = true;
			break;
		case 'q':
			f->q = true;
			break;
		case 'F':
			if (!tok_u32(arg, &f->F))
				f->err = true;
			break;
		case 'C':
			if (!tok_u64(arg, &f->C)) {
				f->errstr = "CLIENT_ERROR bad token in command "
				            "line format";
				f->err = true;
			} else {
				f->has_C = true;
			}
			break;
		case 'M':
			if (t[i].n != 2) {
				f->errstr = "CLIENT_ERROR incorrect length for "
				            "M token";
				f->err = true;
			} else {
				f->mode = t[i].p[1];
			}
			break;
		case 'J':
			if (!tok_u64(arg, &f->J)) {
				f->errstr = "CLIENT_ERROR invalid numeric "
				            "initial value";
				f->err = true;
			} else {
				f->has_J = true;
			}
			break;
		case 'D':
			if (!tok_u64(arg, &f->D)) {
				f->errstr = "CLIENT_ERROR invalid numeric delta "
				            "value";
				f->err = true;
			} else {
				f->has_D = true;
			}
			break;
		case 'I':
			f->I = true;
			break;
		default:
			f->errstr = "CLIENT_ERROR invalid flag";
			return -1;
		}
	}
	return f->err ? -1 : 0;
}

/* " k<key>", base64 with " b" when the command gave it so. */
static void l_key(struct line *l, const struct mflags *f)
{
	l_str(l, " k");
	if (f->b) {
		char enc[(MC_MAX_KEY + 2) / 3 * 4];
		l_mem(l, enc, b64_encode(f->key, f->klen, enc));
		l_str(l, " b");
	} else {
		l_mem(l, f->key, f->klen);
	}
}

/* The O and k flags of a miss (and of md, ma without an item). False
 * when an opaque is too long (the error is the reply). */
static bool l_echo(struct mc_session *s, struct line *l, const struct tok *t,
                   size_t nt, const struct mflags *f)
{
	for (size_t i = 2; i + 1 < nt; i++) {
		if (t[i].p[0] == 'O') {
			if (t[i].n > MC_OPAQUE_MAX) {
				out_err(s, "CLIENT_ERROR opaque token too long");
				return false;
			}
			l_str(l, " ");
			l_mem(l, t[i].p, t[i].n);
		} else if (t[i].p[0] == 'k') {
			l_key(l, f);
		}
	}
	return true;
}

/* Checks every meta command starts with; false when it answered. */
static bool meta_start(struct mc_session *s, const struct tok *t, size_t nt,
                       size_t first, struct mflags *f, const char *toolong,
                       const char *flagerr, bool keyerr_forced)
{
	CNT(s, cmd_meta);
	if (nt < 3) {
		out_str(s, "ERROR");
		return false;
	}
	if (key_bad(t[1])) {
		if (keyerr_forced)
			out_err(s, "CLIENT_ERROR bad command line format");
		else
			out_str(s, "CLIENT_ERROR bad command line format");
		return false;
	}
	if (nt > MC_META_MAX_TOKENS) {
		out_err(s, toolong);
		return false;
	}
	memset(f, 0, sizeof(*f));
	if (mflags_parse(t, nt, first, f) != 0) {
		out_err(s, flagerr != NULL ? flagerr : f->errstr);
		return false;
	}
	s->noreply = f->q;
	return true;
}

static void cmd_mg(struct mc_session *s, const struct tok *t, size_t nt)
{
	struct mflags f;
	struct kv_item_info info;
	size_t vlen = 0;
	bool created = false;
	int rc;

	if (!meta_start(s, t, nt, 2, &f, "CLIENT_ERROR options flags are "
	                "too long", NULL, true))
		return;
	for (unsigned i = 0;; i++) {
		if (f.v)
			rc = fetch_to_out(s, f.key, f.klen, MC_META_HDR, &vlen,
			                  &info);
		else
			rc = kv_get_info(s->kv, f.key, f.klen, NULL, 0, &vlen,
			                 &info);
		if (rc == KV_ERANGE && !f.v)
			rc = KV_OK;
		if (rc != KV_ENOTFOUND || !f.has_N || created ||
		    i == MC_CAS_TRIES)
			break;
		/* N: a miss creates the item, empty, and this client is told
		 * it won (W) the right to fill it */
		rc = put_ttl(s, f.key, f.klen, "", 0, 0, f.N, KV_PUT_NX, 0);
		if (rc == KV_OK && f.N.expired)
			break; /* made and gone at once */
		if (rc != KV_OK && rc != KV_EEXIST)
			break;
		created = rc == KV_OK;
	}
	if (rc != KV_OK && rc != KV_ENOTFOUND) {
		out_kverr(s, rc, true);
		return;
	}
	struct line l = {.n = 0};
	if (rc == KV_ENOTFOUND) {
		if (f.has_T) {
			CNT(s, cmd_touch);
			CNT(s, touch_misses);
		} else {
			CNT(s, cmd_get);
			CNT(s, get_misses);
		}
		l_str(&l, "EN");
		if (!l_echo(s, &l, t, nt, &f) || s->noreply)
			return;
		l_str(&l, "\r\n");
		out_line(s, &l);
		return;
	}
	struct mc_ttl cur = kept_ttl(&info);
	if (info.ttl_ms < 0)
		cur.ms = 0;
	if (f.has_T) {
		CNT(s, cmd_touch);
		CNT(s, touch_hits);
		if (f.T.expired)
			(void)kv_del(s->kv, f.key, f.klen);
		else
			(void)kv_touch(s->kv, f.key, f.klen, f.T.ms);
	} else {
		CNT(s, cmd_get);
		CNT(s, get_hits);
	}
	if (f.v) {
		l_str(&l, "VA ");
		l_u64(&l, vlen);
	} else {
		l_str(&l, "HD");
	}
	for (size_t i = 2; i + 1 < nt; i++) {
		switch (t[i].p[0]) {
		case 'T':
			cur = f.T;
			break;
		case 'N':
			if (created)
				cur = f.N;
			break;
		case 's':
			l_str(&l, " s");
			l_u64(&l, vlen);
			break;
		case 't':
			l_str(&l, " t");
			l_i64(&l, ttl_secs(cur));
			break;
		case 'c':
			l_str(&l, " c");
			l_u64(&l, info.version);
			break;
		case 'f':
			l_str(&l, " f");
			l_u64(&l, info.client_flags);
			break;
		case 'l':
			l_str(&l, " l0");
			break;
		case 'h':
			l_str(&l, " h0");
			break;
		case 'O':
			if (t[i].n > MC_OPAQUE_MAX) {
				out_err(s, "CLIENT_ERROR opaque token too long");
				return;
			}
			l_str(&l, " ");
			l_mem(&l, t[i].p, t[i].n);
			break;
		case 'k':
			l_key(&l, &f);
			break;
		default:
			break;
		}
	}
	if (created)
		l_str(&l, " W");
	l_str(&l, "\r\n");
	if (f.v) {
		place_value(s, &l, MC_META_HDR, vlen);
	} else {
		out_line(s, &l);
	}
}

static void cmd_ms(struct mc_session *s, const struct tok *t, size_t nt,
                   const char *line, size_t n)
{
	struct mc_store *r = &s->req;
	struct mflags f;
	int32_t vlen;

	CNT(s, cmd_meta);
	if (nt < 3) {
		out_str(s, "ERROR");
		return;
	}
	if (key_bad(t[1]) || nt == 3) {
		out_err(s, "CLIENT_ERROR bad command line format");
		return;
	}
	if (nt > MC_META_MAX_TOKENS) {
		out_err(s, "CLIENT_ERROR options flags too long");
		return;
	}
	if (!tok_i32(t[2], &vlen) || vlen < 0 || vlen > INT32_MAX - 2) {
		out_err(s, "CLIENT_ERROR bad command line format");
		return;
	}
	size_t need = (size_t)vlen + 2;
	memset(&f, 0, sizeof(f));
	if (mflags_parse(t, nt, 3, &f) != 0) {
		out_err(s, f.errstr);
		swallow(s, need);
		return;
	}
	s->noreply = f.q;
	const char *err = NULL;
	for (size_t i = 3; i + 1 < nt; i++)
		if (t[i].p[0] == 'O' && t[i].n > MC_OPAQUE_MAX)
			err = "CLIENT_ERROR opaque token too long";
	if (f.mode != 0 && f.mode != 'E' && f.mode != 'A' && f.mode != 'P' &&
	    f.mode != 'R' && f.mode != 'S')
		err = "CLIENT_ERROR invalid mode for ms M token";
	if (err == NULL && (size_t)vlen > s->max_value) {
		CNT(s, store_too_large);
		err = "SERVER_ERROR object too large for cache";
		(void)kv_del(s->kv, f.key, f.klen);
	}
	if (err != NULL) {
		out_err(s, err);
		swallow(s, need);
		return;
	}
	r->cmd = C_MS;
	memcpy(r->key, f.key, f.klen);
	r->klen = f.klen;
	r->key_b64 = f.b;
	r->flags = f.F;
	r->ttl = f.has_T ? f.T : (struct mc_ttl){false, 0};
	r->cas = f.C;
	r->has_cas = f.has_C;
	r->mode = f.mode;
	r->q = f.q;
	/* the flag tokens, for the reply once the data is in */
	size_t from = (size_t)(t[3].p - line);
	r->echo_len = n - from;
	memcpy(r->echo, line + from, r->echo_len);
	s->noreply = false;
	expect_data(s, need);
}

static void cmd_md(struct mc_session *s, const struct tok *t, size_t nt)
{
	struct mflags f;
	struct kv_item_info info;
	struct line l = {.n = 0};
	size_t vlen;
	int rc;

	if (!meta_start(s, t, nt, 2, &f, "CLIENT_ERROR options flags too long",
	                "CLIENT_ERROR invalid or duplicate flag", false))
		return;
	struct line echo = {.n = 0};
	if (!l_echo(s, &echo, t, nt, &f))
		return;
	if (f.has_C) {
		rc = kv_get_info(s->kv, f.key, f.klen, NULL, 0, &vlen, &info);
		if (rc == KV_ERANGE)
			rc = KV_OK;
		if (rc == KV_OK && info.version != f.C) {
			CNT(s, delete_misses);
			l_str(&l, "EX");
			goto reply;
		}
		if (rc == KV_OK)
			rc = kv_del(s->kv, f.key, f.klen);
	} else {
		rc = kv_del(s->kv, f.key, f.klen);
	}
	if (rc == KV_OK) {
		CNT(s, delete_hits);
		if (s->noreply)
			return;
		l_str(&l, "HD");
	} else if (rc == KV_ENOTFOUND) {
		CNT(s, delete_misses);
		l_str(&l, "NF");
	} else {
		out_kverr(s, rc, true);
		return;
	}
reply:
	l_mem(&l, echo.b, echo.n);
	l_str(&l, "\r\n");
	out_line(s, &l);
}

static void cmd_ma(struct mc_session *s, const struct tok *t, size_t nt)
{
	struct mflags f;
	struct mc_arith a;
	struct line l = {.n = 0};
	int err = KV_OK;

	if (!meta_start(s, t, nt, 2, &f, "CLIENT_ERROR options flags too long",
	                "CLIENT_ERROR invalid or duplicate flag", false))
		return;
	memset(&a, 0, sizeof(a));
	switch (f.mode) {
	case 0: case 'I': case '+':
		a.incr = true;
		break;
	case 'D': case '-':
		a.incr = false;
		break;
	default:
		out_err(s, "CLIENT_ERROR invalid mode for ma M token");
		return;
	}
	a.delta = f.has_D ? f.D : 1;
	a.has_cas = f.has_C;
	a.cas = f.C;
	a.vivify = f.has_N;
	a.initial = f.J;
	/* The TTL the item ends with: memcached sets it flag by flag, in
	 * their order, T always and N only on an item it created. */
	a.ttl_new = (struct mc_ttl){false, 0};
	for (size_t i = 2; i + 1 < nt; i++) {
		if (t[i].p[0] == 'T') {
			a.ttl_hit_set = true;
			a.ttl_hit = f.T;
			a.ttl_new = f.T;
		} else if (t[i].p[0] == 'N') {
			a.ttl_new = f.N;
		}
	}
	enum mc_delta res = arith(s, f.key, f.klen, &a, &err);
	buf_trim(&s->tmp);
	switch (res) {
	case D_NON_NUMERIC:
		out_err(s, "CLIENT_ERROR cannot increment or decrement "
		           "non-numeric value");
		return;
	case D_ERROR:
		if (err == KV_EFULL)
			out_err(s, "SERVER_ERROR out of memory");
		else
			out_kverr(s, err, true);
		return;
	case D_NOT_FOUND:
		if (a.incr)
			CNT(s, incr_misses);
		else
			CNT(s, decr_misses);
		l_str(&l, "NF");
		if (!l_echo(s, &l, t, nt, &f))
			return;
		break;
	case D_EXISTS:
		l_str(&l, "EX");
		if (!l_echo(s, &l, t, nt, &f))
			return;
		break;
	case D_OK: {
		char num[24];
		int k = snprintf(num, sizeof(num), "%" PRIu64, a.value);
		struct mc_ttl cur = a.ttl;
		uint64_t cas = 0;
		bool have_cas = false;
		if (!a.created) {
			if (a.incr)
				CNT(s, incr_hits);
			else
				CNT(s, decr_hits);
		}
		if (f.v) {
			l_str(&l, "VA ");
			l_u64(&l, (uint64_t)k);
		} else {
			l_str(&l, "HD");
		}
		for (size_t i = 2; i + 1 < nt; i++) {
			switch (t[i].p[0]) {
			case 'c':
				if (!have_cas) {
					struct kv_item_info info;
					size_t vl;
					int rc = kv_get_info(s->kv, f.key,
					                     f.klen, NULL, 0,
					                     &vl, &info);
					if (rc == KV_OK || rc == KV_ERANGE)
						cas = info.version;
					have_cas = true;
				}
				l_str(&l, " c");
				l_u64(&l, cas);
				break;
			case 't':
				l_str(&l, " t");
				l_i64(&l, ttl_secs(cur));
				break;
			case 'O':
				if (t[i].n > MC_OPAQUE_MAX) {
					out_err(s, "CLIENT_ERROR opaque token "
					           "too long");
					return;
				}
				l_str(&l, " ");
				l_mem(&l, t[i].p, t[i].n);
				break;
			case 'k':
				l_key(&l, &f);
				break;
			default:
				break;
			}
		}
		/* q hides the reply of a hit; memcached still answers for an
		 * item N created */
		if (s->noreply && !a.created)
			return;
		if (f.v) {
			l_str(&l, "\r\n");
			l_mem(&l, num, (size_t)k);
		}
		break;
	}
	}
	l_str(&l, "\r\n");
	out_line(s, &l);
}

/* me <key> [b]: memcached's debug line about an item. */
static void cmd_me(struct mc_session *s, const struct tok *t, size_t nt)
{
	struct kv_item_info info;
	char key[MC_MAX_KEY];
	size_t klen, vlen = 0;

	CNT(s, cmd_meta);
	if (nt < 3 || key_bad(t[1])) {
		out_str(s, "CLIENT_ERROR bad command line format");
		return;
	}
	memcpy(key, t[1].p, t[1].n);
	klen = t[1].n;
	if (nt >= 4 && tok_is(t[2], "b")) {
		klen = b64_decode(t[1].p, t[1].n, key);
		if (klen == 0) {
			out_str(s, "CLIENT_ERROR bad command line format");
			return;
		}
	}
	int rc = kv_get_info(s->kv, key, klen, NULL, 0, &vlen, &info);
	if (rc == KV_ENOTFOUND) {
		out_str(s, "EN");
		return;
	}
	if (rc != KV_OK && rc != KV_ERANGE) {
		out_kverr(s, rc, false);
		return;
	}
	struct line l = {.n = 0};
	l_str(&l, "ME ");
	l_mem(&l, t[1].p, t[1].n);
	l_str(&l, " exp=");
	l_i64(&l, info.ttl_ms < 0 ? -1 : (info.ttl_ms + 999) / 1000);
	l_str(&l, " la=0 cas=");
	l_u64(&l, info.version);
	l_str(&l, " fetch=no cls=1 size=");
	l_u64(&l, klen + vlen);
	l_str(&l, "\r\n");
	out_line(s, &l);
}

/* ------------------------------------------------------------------------
 * Command lines
 */

/* Before authenticating (memcached -Y): only a set, whose data is the
 * token "user password", is taken. */
static void auth_line(struct mc_session *s, const char *line, size_t n)
{
	struct tok t[MC_TOKENS + 1];
	size_t nt = tokenize(line, n, t);
	uint32_t size;

	if (nt < 6 || !tok_is(t[0], "set") || !tok_u32(t[4], &size)) {
		out_str(s, "CLIENT_ERROR unauthenticated");
		return;
	}
	if (size > MC_AUTH_MAX) {
		out_str(s, "CLIENT_ERROR auth token too long");
		return;
	}
	s->req.cmd = C_AUTH;
	expect_data(s, (size_t)size + 2);
}

/* Run one command line (len bytes, its '\n' included). Returns the bytes
 * consumed: len, or less for a get, whose keys are then run from the
 * caller's bytes (ST_GETKEYS). memcached's dispatch, by first letter
 * first, is kept: it decides which unknown lines answer ERROR and which
 * (an HTTP request) close the connection. */
static size_t run_line(struct mc_session *s, const char *line, size_t len)
{
	struct tok t[MC_TOKENS + 1];
	size_t n = len - 1;

	if (n > 0 && line[n - 1] == '\r')
		n--;
	s->noreply = false;
	if (!s->authed) {
		auth_line(s, line, n);
		return len;
	}
	size_t nt = tokenize(line, n, t);
	if (nt < 2 || t[0].n < 2) {
		out_str(s, "ERROR");
		return len;
	}
	struct tok c = t[0];
	char first = c.p[0];

#define WANT(ok)                                                               \
	do {                                                                   \
		if (!(ok)) {                                                   \
			out_str(s, "ERROR");                                   \
			return len;                                            \
		}                                                              \
	} while (0)

	if (first == 'm' && c.n == 2) {
		switch (c.p[1]) {
		case 'g': cmd_mg(s, t, nt); break;
		case 's': cmd_ms(s, t, nt, line, n); break;
		case 'd': cmd_md(s, t, nt); break;
		case 'a': cmd_ma(s, t, nt); break;
		case 'e': cmd_me(s, t, nt); break;
		case 'n':
			CNT(s, cmd_meta);
			out_raw(s, "MN\r\n", 4);
			break;
		default: out_str(s, "ERROR"); break;
		}
	} else if (first == 'g') {
		WANT(nt >= 3);
		if (tok_is(c, "get"))
			return cmd_get(s, line, n, len, t, false, false);
		if (tok_is(c, "gets"))
			return cmd_get(s, line, n, len, t, true, false);
		if (tok_is(c, "gat"))
			return cmd_get(s, line, n, len, t, false, true);
		if (tok_is(c, "gats"))
			return cmd_get(s, line, n, len, t, true, true);
		out_str(s, "ERROR");
	} else if (first == 's') {
		if (tok_is(c, "set")) {
			WANT(nt == 6 || nt == 7);
			cmd_update(s, t, nt, C_SET);
		} else if (tok_is(c, "stats")) {
			cmd_stats(s, t, nt);
		} else if (tok_is(c, "shutdown")) {
			out_str(s, "ERROR: shutdown not enabled");
		} else {
			out_str(s, "ERROR");
		}
	} else if (first == 'a') {
		WANT(tok_is(c, "add") || tok_is(c, "append"));
		WANT(nt == 6 || nt == 7);
		cmd_update(s, t, nt, tok_is(c, "add") ? C_ADD : C_APPEND);
	} else if (first == 'c') {
		WANT(tok_is(c, "cas"));
		WANT(nt == 7 || nt == 8);
		cmd_update(s, t, nt, C_CAS);
	} else if (first == 'i') {
		WANT(tok_is(c, "incr"));
		WANT(nt == 4 || nt == 5);
		cmd_arith(s, t, nt, true);
	} else if (first == 'd') {
		if (tok_is(c, "delete")) {
			WANT(nt >= 3 && nt <= 5);
			cmd_delete(s, t, nt);
		} else {
			WANT(tok_is(c, "decr"));
			WANT(nt == 4 || nt == 5);
			cmd_arith(s, t, nt, false);
		}
	} else if (first == 't') {
		WANT(tok_is(c, "touch"));
		WANT(nt == 4 || nt == 5);
		cmd_touch(s, t, nt);
	} else if (tok_is(c, "replace") || tok_is(c, "prepend")) {
		WANT(nt == 6 || nt == 7);
		cmd_update(s, t, nt,
		           tok_is(c, "replace") ? C_REPLACE : C_PREPEND);
	} else if (tok_is(c, "bget")) {
		WANT(nt >= 3);
		return cmd_get(s, line, n, len, t, false, false);
	} else if (tok_is(c, "flush_all")) {
		WANT(nt >= 2 && nt <= 4);
		cmd_flush_all(s, t, nt);
	} else if (tok_is(c, "version")) {
		out_str(s, "VERSION " MC_PROTO_VERSION);
	} else if (tok_is(c, "quit")) {
		s->closing = true;
	} else if (tok_is(c, "verbosity")) {
		WANT(nt == 3 || nt == 4);
		cmd_verbosity(s, t, nt);
	} else if (t[nt - 2].n >= 5 && memcmp(t[nt - 2].p, "HTTP/", 5) == 0) {
		/* someone speaks HTTP to us: memcached hangs up */
		s->closing = true;
	} else {
		out_str(s, "ERROR");
	}
#undef WANT
	return len;
}

/*
 * A line with no '\n' in its first MC_MAX_LINE bytes (p[0..n), n >=
 * MC_MAX_LINE). A get line is run as it comes (see the top of the file);
 * any other is refused and skipped to its end. memcached does the same
 * for gets and closes the connection for anything else; before
 * authenticating it closes, and so does this. Returns the bytes consumed
 * (0 when the new state, ST_SKIPLINE, is to take them).
 */
static size_t line_too_long(struct mc_session *s, const char *p, size_t n)
{
	size_t i = 0;

	s->noreply = false;
	if (!s->authed) {
		s->closing = true;
		return n;
	}
	while (i < n && p[i] == ' ')
		i++;
	size_t c0 = i;
	while (i < n && p[i] != ' ')
		i++;
	struct tok c = {p + c0, i - c0};
	bool get = tok_is(c, "get") || tok_is(c, "bget"),
	     gets = tok_is(c, "gets"), gat = tok_is(c, "gat"),
	     gats = tok_is(c, "gats");
	if (i < n && (get || gets || gat || gats)) {
		struct mc_ttl ttl = {false, 0};
		if (gat || gats) {
			while (i < n && p[i] == ' ')
				i++;
			size_t e0 = i;
			while (i < n && p[i] != ' ')
				i++;
			struct tok e = {p + e0, i - e0};
			int32_t v;
			if (i == n || !tok_i32(e, &v)) {
				out_str(s, "CLIENT_ERROR invalid exptime "
				           "argument");
				s->st = ST_SKIPLINE;
				return 0;
			}
			ttl = exptime_ttl(v);
		}
		s->get.cas = gets || gats;
		s->get.touch = gat || gats;
		s->get.checked = false;
		s->get.ttl = ttl;
		s->get.nkeys = 0;
		s->st = ST_GETKEYS;
		return i;
	}
	out_str(s, "CLIENT_ERROR line too long");
	s->st = ST_SKIPLINE; /* the caller's loop skips to the '\n' */
	return 0;
}

/* ------------------------------------------------------------------------
 * The interface (mc.h)
 */

struct mc_session *mc_session_new(struct mc_server *srv)
{
	struct mc_session *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->srv = srv;
	s->kv = srv->kv;
	s->max_value = srv->max_value;
	if (s->max_value == 0) {
		struct kv_stats st;
		if (kv_stats(srv->kv, &st) == KV_OK)
			s->max_value = st.max_value;
	}
	s->authed = srv->users == NULL;
	s->st = ST_LINE;
	return s;
}

void mc_session_free(struct mc_session *s)
{
	if (s == NULL)
		return;
	free(s->out);
	free(s->val.p);
	free(s->tmp.p);
	free(s);
}

size_t mc_session_input(struct mc_session *s, const char *in, size_t n)
{
	size_t pos = 0;

	if (s->closing)
		return n; /* quit: what follows is not read */
	if (atomic_load_explicit(&s->srv->flush_at_ms, memory_order_relaxed))
		mc_server_tick(s->srv);
	while (pos < n) {
		const char *p = in + pos;
		size_t avail = n - pos, used;

		if (s->closing)
			return n;
		if (pending(s) >= MC_OUT_HIGH)
			break;
		switch (s->st) {
		case ST_LINE: {
			if ((unsigned char)p[0] == MC_BINARY_MAGIC) {
				/* A binary-protocol request: it has no line
				 * end to wait for, and its client cannot read
				 * text. Say why and hang up. */
				out_str(s, "SERVER_ERROR binary protocol is not "
				           "supported");
				s->closing = true;
				return n;
			}
			size_t lim = avail < MC_MAX_LINE ? avail : MC_MAX_LINE;
			const char *nl = memchr(p, '\n', lim);
			if (nl != NULL)
				used = run_line(s, p, (size_t)(nl - p) + 1);
			else if (avail >= MC_MAX_LINE)
				used = line_too_long(s, p, avail);
			else
				return pos; /* the rest of the line later */
			break;
		}
		case ST_GETKEYS:
			used = get_keys(s, p, avail);
			if (used == 0 && s->st == ST_GETKEYS)
				return pos;
			break;
		case ST_SKIPLINE: {
			const char *nl = memchr(p, '\n', avail);
			used = nl != NULL ? (size_t)(nl - p) + 1 : avail;
			if (nl != NULL)
				s->st = ST_LINE;
			break;
		}
		case ST_SWALLOW:
			used = avail < s->need ? avail : s->need;
			s->need -= used;
			if (s->need == 0)
				s->st = ST_LINE;
			break;
		case ST_DATA:
			if (s->have == 0 && avail >= s->need) {
				/* the whole block is here: no copy */
				used = s->need;
				data_done(s, p, used);
				break;
			}
			if (!buf_grow(&s->val, s->need)) {
				s->closing = true;
				return n;
			}
			used = s->need - s->have;
			if (used > avail)
				used = avail;
			memcpy(s->val.p + s->have, p, used);
			s->have += used;
			if (s->have == s->need)
				data_done(s, s->val.p, s->need);
			break;
		default:
			used = avail;
			break;
		}
		pos += used;
	}
	return pos;
}

const char *mc_session_output(struct mc_session *s, size_t *len)
{
	*len = pending(s);
	return *len != 0 ? s->out + s->off : NULL;
}

void mc_session_sent(struct mc_session *s, size_t k)
{
	if (k > pending(s))
		k = pending(s);
	s->off += k;
	if (s->off == s->len) {
		s->off = s->len = 0;
		if (s->cap > MC_BUF_KEEP) {
			free(s->out);
			s->out = NULL;
			s->cap = 0;
		}
	}
}

bool mc_session_closing(const struct mc_session *s)
{
	return s->closing;
}

bool mc_session_wants_input(const struct mc_session *s)
{
	return !s->closing && pending(s) < MC_OUT_HIGH;
}

void mc_server_tick(struct mc_server *srv)
{
	uint64_t at = atomic_load(&srv->flush_at_ms);

	if (at == 0 || real_ms() < at)
		return;
	if (atomic_compare_exchange_strong(&srv->flush_at_ms, &at, 0))
		(void)kv_flush(srv->kv, NULL);
}

/* ------------------------------------------------------------------------
 * Authentication
 */

/* Equal, in a time that depends only on the length of b (the secret
 * side). */
static bool ct_equal(const char *a, size_t an, const char *b, size_t bn)
{
	volatile unsigned char d = an != bn;

	for (size_t i = 0; i < bn; i++)
		d |= (unsigned char)((i < an ? a[i] : 0) ^ b[i]);
	return d == 0;
}

static bool auth_check(const struct mc_server *srv, const char *user,
                       size_t ulen, const char *pass, size_t plen)
{
	bool ok = false;

	/* every user is compared, whichever matches, so the time taken
	 * says nothing about which users exist */
	for (size_t i = 0; i < srv->nusers; i++) {
		const struct mc_user *u = &srv->users[i];
		bool m = ct_equal(user, ulen, u->user, strlen(u->user));
		m &= ct_equal(pass, plen, u->pass, strlen(u->pass));
		ok |= m;
	}
	return ok;
}

static void wipe(char *p)
{
	if (p != NULL)
		explicit_bzero(p, strlen(p));
}

void mc_auth_free(struct mc_user *users, size_t n)
{
	if (users == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		wipe(users[i].pass);
		free(users[i].user);
		free(users[i].pass);
	}
	free(users);
}

int mc_auth_load(const char *path, struct mc_user **users, size_t *n,
                 char *why, size_t cap)
{
	FILE *f = fopen(path, "r");
	struct mc_user *u = NULL;
	size_t nu = 0, ucap = 0, lineno = 0, lcap = 0;
	char *line = NULL;
	ssize_t got;

	*users = NULL;
	*n = 0;
	if (f == NULL) {
		snprintf(why, cap, "%s", strerror(errno));
		return -1;
	}
	while ((got = getline(&line, &lcap, f)) >= 0) {
		size_t len = (size_t)got;
		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0 || line[0] == '#')
			continue;
		char *colon = memchr(line, ':', len);
		const char *bad = NULL;
		if (memchr(line, '\0', len) != NULL)
			bad = "a NUL byte";
		else if (colon == NULL)
			bad = "no ':' between user and password";
		else if (colon == line)
			bad = "an empty user name";
		else if (colon + 1 == line + len)
			bad = "an empty password";
		else if (memchr(line, ' ', len) != NULL)
			bad = "a space (the token \"user password\" is split "
			      "at spaces)";
		if (bad != NULL) {
			snprintf(why, cap, "line %zu: %s", lineno, bad);
			goto fail;
		}
		if (nu == ucap) {
			size_t nc = ucap ? ucap * 2 : 8;
			struct mc_user *nv = realloc(u, nc * sizeof(*u));
			if (nv == NULL)
				goto oom;
			u = nv;
			ucap = nc;
		}
		u[nu].user = strndup(line, (size_t)(colon - line));
		u[nu].pass = strdup(colon + 1);
		nu++;
		if (u[nu - 1].user == NULL || u[nu - 1].pass == NULL)
			goto oom;
	}
	if (ferror(f)) {
		snprintf(why, cap, "%s", strerror(errno));
		goto fail;
	}
	if (nu == 0) {
		snprintf(why, cap, "no user in the file (lines user:password)");
		goto fail;
	}
	if (line != NULL)
		explicit_bzero(line, lcap);
	free(line);
	fclose(f);
	*users = u;
	*n = nu;
	return 0;
oom:
	snprintf(why, cap, "out of memory");
fail:
	if (line != NULL)
		explicit_bzero(line, lcap);
	free(line);
	fclose(f);
	mc_auth_free(u, nu);
	return -1;
}
