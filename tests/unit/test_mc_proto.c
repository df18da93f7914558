/*
 * test_mc_proto.c - kvd's memcached protocol engine (daemon/mc_proto.c),
 * in process: sessions fed request bytes against a real store made with
 * kv_create, their replies compared byte for byte with what memcached
 * 1.6 answers (each expected reply here was checked against Debian's
 * memcached 1.6.18, except where mc_proto.c says it differs, and why).
 *
 * The feeding helper acts as the network half does: it offers the bytes
 * not yet consumed again with the next ones, drains the reply after each
 * call, and checks the engine's promises on every call: it never consumes
 * more than it is offered, never leaves a line of MC_MAX_LINE or more
 * unconsumed while it wants input, and never holds a reply much over
 * MC_OUT_HIGH.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mc.h"
#include "unit.h"

/* ------------------------------------------------------------------------
 * Fixture
 */

struct fx {
	kv_t *kv;
	struct mc_server srv;
	struct mc_session *s;
	size_t max_pending; /* the largest reply held, over the run */
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void fx_open(struct fx *f, const char *tag, uint64_t size,
                    uint32_t max_value)
{
	struct kv_stats st;

	memset(f, 0, sizeof(*f));
	f->kv = u_create(tag, size, max_value, 0);
	assert_kv(KV_OK, kv_stats(f->kv, &st));
	f->srv.kv = f->kv;
	f->srv.max_value = st.max_value;
	f->srv.threads = 1;
	f->srv.max_conns = 64;
	f->srv.started_ms = now_ms();
	f->s = mc_session_new(&f->srv);
	assert_non_null(f->s);
}

static void fx_close(struct fx *f)
{
	mc_session_free(f->s);
	assert_sound(f->kv);
	kv_close(f->kv);
}

/* A new session on the same server (a new connection). */
static void fx_reconnect(struct fx *f)
{
	mc_session_free(f->s);
	f->s = mc_session_new(&f->srv);
	assert_non_null(f->s);
}

/* A growable byte string for replies. */
struct bytes {
	char *p;
	size_t n, cap;
};

static void b_add(struct bytes *b, const void *p, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->n + n + 1)
			cap *= 2;
		char *q = h_alloc(cap);
		if (b->n)
			memcpy(q, b->p, b->n);
		h_free(b->p);
		b->p = q;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->n, p, n);
	b->n += n;
	b->p[b->n] = '\0';
}

/* Take the whole pending reply into out. */
static void drain(struct fx *f, struct bytes *out)
{
	size_t len;
	const char *p = mc_session_output(f->s, &len);

	if (len > f->max_pending)
		f->max_pending = len;
	/* at most MC_OUT_HIGH plus one reply: a value and its header, or a
	 * stats listing */
	assert_true(len <= MC_OUT_HIGH + f->srv.max_value + 64 * 1024);
	if (len == 0) {
		assert_null(p);
		return;
	}
	b_add(out, p, len);
	mc_session_sent(f->s, len);
	assert_null(mc_session_output(f->s, &len));
	assert_int_equal(len, 0);
}

/* Feed in[0..n) as the network half would get it: a first write of
 * `first` bytes, then writes of `chunk` bytes (0: all that is left), and
 * return everything the session answered. */
static struct bytes feed2(struct fx *f, const void *in, size_t n, size_t first,
                          size_t chunk)
{
	struct bytes out = {0};
	struct bytes pend = {0};
	size_t fed = 0;

	b_add(&out, "", 0);
	b_add(&pend, "", 0);
	for (;;) {
		size_t want = fed == 0 ? first : chunk;
		size_t take = want == 0 || n - fed < want ? n - fed : want;
		b_add(&pend, (const char *)in + fed, take);
		fed += take;
		for (;;) {
			size_t before = out.n;
			size_t used = mc_session_input(f->s, pend.p, pend.n);
			assert_true(used <= pend.n);
			memmove(pend.p, pend.p + used, pend.n - used);
			pend.n -= used;
			drain(f, &out);
			if (used == 0 && out.n == before)
				break;
			if (pend.n == 0)
				break;
		}
		if (mc_session_wants_input(f->s))
			assert_true(pend.n < MC_MAX_LINE);
		if (fed == n)
			break;
	}
	/* what is left over is an incomplete line (or the session closed) */
	if (!mc_session_closing(f->s))
		assert_true(pend.n < MC_MAX_LINE);
	h_free(pend.p);
	return out;
}

/* Feed in[0..n) in writes of `chunk` bytes (0: one write). */
static struct bytes feed(struct fx *f, const void *in, size_t n, size_t chunk)
{
	return feed2(f, in, n, chunk, chunk);
}

static void print_escaped(const char *what, const char *p, size_t n)
{
	print_error("%s (%zu bytes): \"", what, n);
	for (size_t i = 0; i < n && i < 600; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '\r')
			print_error("\\r");
		else if (c == '\n')
			print_error("\\n");
		else if (c < 32 || c > 126)
			print_error("\\x%02x", c);
		else
			print_error("%c", c);
	}
	print_error("%s\"\n", n > 600 ? "..." : "");
}

static void expect_bytes(const char *req, size_t rlen, const struct bytes *got,
                         const char *want, size_t wlen, const char *file,
                         int line)
{
	if (got->n == wlen && memcmp(got->p, want, wlen) == 0)
		return;
	print_error("%s:%d: reply differs\n", file, line);
	print_escaped("request", req, rlen);
	print_escaped("want", want, wlen);
	print_escaped("got", got->p, got->n);
	fail();
}

/* Send a request (a C string), expect exactly this reply. */
#define EXPECT(f, req, want)                                                   \
	do {                                                                   \
		struct bytes got_ = feed((f), (req), strlen(req), 0);          \
		expect_bytes((req), strlen(req), &got_, (want), strlen(want),  \
		             __FILE__, __LINE__);                              \
		h_free(got_.p);                                                \
	} while (0)

/* The reply as a string (h_alloc'd). */
static char *ask(struct fx *f, const char *req)
{
	struct bytes got = feed(f, req, strlen(req), 0);
	return got.p;
}

/* A number after "name " in a reply ("STAT curr_items 3", "c123"). */
static uint64_t num_after(const char *reply, const char *name)
{
	const char *p = strstr(reply, name);
	if (p == NULL)
		fail_msg("no %s in %s", name, reply);
	return strtoull(p + strlen(name), NULL, 10);
}

static uint64_t version_of(struct fx *f, const char *key)
{
	struct kv_item_info in;
	size_t n;
	int rc = kv_get_info(f->kv, key, strlen(key), NULL, 0, &n, &in);
	if (rc != KV_OK)
		assert_kv(KV_ERANGE, rc);
	return in.version;
}

/* ------------------------------------------------------------------------
 * Storage and retrieval
 */

static void test_storage(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "mcstore", 8 << 20, 4096);

	EXPECT(&f, "set a 0 0 5\r\nhello\r\n", "STORED\r\n");
	EXPECT(&f, "get a\r\n", "VALUE a 0 5\r\nhello\r\nEND\r\n");
	EXPECT(&f, "set a 123 0 5\r\nworld\r\n", "STORED\r\n");
	EXPECT(&f, "get a\r\n", "VALUE a 123 5\r\nworld\r\nEND\r\n");
	EXPECT(&f, "set b 4294967295 0 3\r\nmax\r\nget b\r\n",
	       "STORED\r\nVALUE b 4294967295 3\r\nmax\r\nEND\r\n");
	EXPECT(&f, "set e 0 0 0\r\n\r\nget e\r\n",
	       "STORED\r\nVALUE e 0 0\r\n\r\nEND\r\n");
	/* binary data, "\r\nEND\r\n" and a NUL inside */
	struct bytes r = feed(&f, "set bin 0 0 8\r\n\r\nEND\r\n\0\r\n", 25, 0);
	expect_bytes("set bin", 7, &r, "STORED\r\n", 8, __FILE__, __LINE__);
	h_free(r.p);
	r = feed(&f, "get bin\r\n", 9, 0);
	expect_bytes("get bin", 7, &r, "VALUE bin 0 8\r\n\r\nEND\r\n\0\r\nEND\r\n",
	             30, __FILE__, __LINE__);
	h_free(r.p);

	EXPECT(&f, "add a 0 0 1\r\nx\r\n", "NOT_STORED\r\n");
	EXPECT(&f, "add c 7 0 1\r\nc\r\n", "STORED\r\n");
	EXPECT(&f, "replace nope 0 0 1\r\nx\r\n", "NOT_STORED\r\n");
	EXPECT(&f, "replace c 8 0 2\r\ncc\r\nget c\r\n",
	       "STORED\r\nVALUE c 8 2\r\ncc\r\nEND\r\n");
	/* append and prepend keep the item's flags, not the command's */
	EXPECT(&f, "append c 99 0 3\r\n-ap\r\nprepend c 99 0 3\r\npp-\r\n"
	           "get c\r\n",
	       "STORED\r\nSTORED\r\nVALUE c 8 8\r\npp-cc-ap\r\nEND\r\n");
	EXPECT(&f, "append nope 0 0 1\r\nx\r\nprepend nope 0 0 1\r\nx\r\n"
	           "get nope\r\n",
	       "NOT_STORED\r\nNOT_STORED\r\nEND\r\n");
	/* noreply: nothing, but the work is done */
	EXPECT(&f, "set nr 0 0 2 noreply\r\nnr\r\nadd nr 0 0 2 noreply\r\nxx\r\n"
	           "replace nr 0 0 2 noreply\r\nrr\r\n"
	           "append nr 0 0 1 noreply\r\na\r\n"
	           "prepend nr 0 0 1 noreply\r\np\r\nget nr\r\n",
	       "VALUE nr 0 4\r\nprra\r\nEND\r\n");
	/* multi-get: hits in order, misses left out, repeats repeated */
	EXPECT(&f, "get a nope b a e\r\n",
	       "VALUE a 123 5\r\nworld\r\nVALUE b 4294967295 3\r\nmax\r\n"
	       "VALUE a 123 5\r\nworld\r\nVALUE e 0 0\r\n\r\nEND\r\n");
	EXPECT(&f, "get n1 n2 n3\r\n", "END\r\n");
	/* extra spaces, a bare LF, the old bget */
	EXPECT(&f, "set  sp  0  0  1\r\nx\r\nget  sp \r\nget sp\nbget sp\r\n",
	       "STORED\r\nVALUE sp 0 1\r\nx\r\nEND\r\nVALUE sp 0 1\r\nx\r\nEND\r\n"
	       "VALUE sp 0 1\r\nx\r\nEND\r\n");
	EXPECT(&f, "set lf 0 0 1\nx\r\nget lf\r\n",
	       "STORED\r\nVALUE lf 0 1\r\nx\r\nEND\r\n");
	/* a set with a sixth token that is not noreply is a set */
	EXPECT(&f, "set six 0 0 1 foo\r\nx\r\n", "STORED\r\n");

	/* the longest key, and one byte more */
	char req[600];
	char key[260];
	memset(key, 'k', 251);
	key[250] = '\0';
	snprintf(req, sizeof(req), "set %s 0 0 1\r\nx\r\nget %s\r\n", key, key);
	char want[600];
	snprintf(want, sizeof(want), "STORED\r\nVALUE %s 0 1\r\nx\r\nEND\r\n",
	         key);
	EXPECT(&f, req, want);
	key[250] = 'k';
	key[251] = '\0';
	snprintf(req, sizeof(req), "set %s 0 0 1\r\nx\r\n", key);
	/* no data is swallowed after a bad command line: memcached runs
	 * "x" as a command */
	EXPECT(&f, req, "CLIENT_ERROR bad command line format\r\nERROR\r\n");
	snprintf(req, sizeof(req), "get a %s\r\n", key);
	EXPECT(&f, req, "CLIENT_ERROR bad command line format\r\n");
	fx_close(&f);
}

static void test_cas(void **state)
{
	(void)state;
	struct fx f;
	char req[128], want[128];
	fx_open(&f, "mccas", 8 << 20, 4096);

	EXPECT(&f, "set k 5 0 3\r\none\r\n", "STORED\r\n");
	uint64_t v = version_of(&f, "k");
	snprintf(want, sizeof(want), "VALUE k 5 3 %" PRIu64 "\r\none\r\nEND\r\n",
	         v);
	EXPECT(&f, "gets k\r\n", want);
	snprintf(req, sizeof(req), "cas k 6 0 3 %" PRIu64 "\r\ntwo\r\n", v);
	EXPECT(&f, req, "STORED\r\n");
	EXPECT(&f, "get k\r\n", "VALUE k 6 3\r\ntwo\r\nEND\r\n");
	/* the unique seen before that store is stale now */
	EXPECT(&f, req, "EXISTS\r\n");
	uint64_t v2 = version_of(&f, "k");
	assert_true(v2 != v);
	snprintf(req, sizeof(req), "cas k 0 0 4 %" PRIu64 " noreply\r\nfour\r\n",
	         v2);
	EXPECT(&f, req, "");
	EXPECT(&f, "get k\r\n", "VALUE k 0 4\r\nfour\r\nEND\r\n");
	EXPECT(&f, "cas nope 0 0 1 1\r\nx\r\n", "NOT_FOUND\r\n");
	EXPECT(&f, "cas k 0 0 1 0\r\nx\r\n", "EXISTS\r\n");
	EXPECT(&f, "cas k 0 0 1 abc\r\nx\r\n",
	       "CLIENT_ERROR bad command line format\r\nERROR\r\n");
	EXPECT(&f, "cas k 0 0 1\r\n", "ERROR\r\n");
	/* a libkv put changes the unique too */
	uint64_t v3 = version_of(&f, "k");
	assert_kv(KV_OK, u_puts(f.kv, "k", "kv"));
	snprintf(req, sizeof(req), "cas k 0 0 1 %" PRIu64 "\r\nx\r\n", v3);
	EXPECT(&f, req, "EXISTS\r\n");
	/* a touch keeps it */
	uint64_t v4 = version_of(&f, "k");
	EXPECT(&f, "touch k 100\r\n", "TOUCHED\r\n");
	assert_int_equal(version_of(&f, "k"), v4);
	/* gats shows the unique after the touch */
	snprintf(want, sizeof(want), "VALUE k 0 2 %" PRIu64 "\r\nkv\r\nEND\r\n",
	         v4);
	EXPECT(&f, "gats 100 k\r\n", want);

	char *st = ask(&f, "stats\r\n");
	assert_int_equal(num_after(st, "STAT cas_hits "), 2);
	assert_int_equal(num_after(st, "STAT cas_badval "), 3);
	assert_int_equal(num_after(st, "STAT cas_misses "), 1);
	fx_close(&f);
}

/* Items put with libkv read with flags 0; items set here read with libkv,
 * their flags in kv_get_info. */
static void test_libkv_both_ways(void **state)
{
	(void)state;
	struct fx f;
	struct kv_item_info in;
	char buf[16];
	size_t n;
	fx_open(&f, "mcboth", 8 << 20, 4096);

	assert_kv(KV_OK, u_puts(f.kv, "fromkv", "value"));
	EXPECT(&f, "get fromkv\r\n", "VALUE fromkv 0 5\r\nvalue\r\nEND\r\n");
	EXPECT(&f, "mg fromkv f v t\r\n", "VA 5 f0 t-1\r\nvalue\r\n");
	EXPECT(&f, "set frommc 42 0 2\r\nhi\r\n", "STORED\r\n");
	assert_kv(KV_OK, kv_get_info(f.kv, "frommc", 6, buf, sizeof(buf), &n,
	                             &in));
	assert_int_equal(n, 2);
	assert_memory_equal(buf, "hi", 2);
	assert_int_equal(in.client_flags, 42);
	assert_int_equal(in.ttl_ms, -1);
	/* incr on a number put with libkv */
	assert_kv(KV_OK, u_puts(f.kv, "cnt", "41"));
	EXPECT(&f, "incr cnt 1\r\n", "42\r\n");
	u_expect_str(f.kv, "cnt", "42");
	assert_kv(KV_OK, kv_del(f.kv, "frommc", 6));
	EXPECT(&f, "get frommc\r\n", "END\r\n");
	fx_close(&f);
}

static int64_t ttl_of(struct fx *f, const char *key)
{
	int64_t t = -2;
	assert_kv(KV_OK, kv_ttl(f->kv, key, strlen(key), &t));
	return t;
}

static void test_exptime(void **state)
{
	(void)state;
	struct fx f;
	char req[128];
	fx_open(&f, "mcexp", 8 << 20, 4096);

	/* relative seconds */
	EXPECT(&f, "set r 0 100 1\r\nx\r\n", "STORED\r\n");
	int64_t t = ttl_of(&f, "r");
	assert_true(t > 98000 && t <= 100000);
	char *mg = ask(&f, "mg r t\r\n");
	assert_true(strcmp(mg, "HD t100\r\n") == 0 ||
	            strcmp(mg, "HD t99\r\n") == 0);
	/* 30 days is still relative */
	EXPECT(&f, "set d30 0 2592000 1\r\nx\r\n", "STORED\r\n");
	t = ttl_of(&f, "d30");
	assert_true(t > 2591998000 && t <= 2592000000);
	/* beyond: a Unix time */
	uint64_t now = now_ms() / 1000;
	snprintf(req, sizeof(req), "set abs 0 %" PRIu64 " 1\r\nx\r\n", now + 100);
	EXPECT(&f, req, "STORED\r\n");
	t = ttl_of(&f, "abs");
	assert_true(t > 97000 && t <= 100000);
	/* a Unix time in the past: stored (STORED) and gone, the old value
	 * with it */
	EXPECT(&f, "set old 0 0 1\r\no\r\n", "STORED\r\n");
	EXPECT(&f, "set old 0 2592001 1\r\nx\r\nget old\r\n",
	       "STORED\r\nEND\r\n");
	/* negative: the same */
	EXPECT(&f, "set neg 0 0 1\r\no\r\n", "STORED\r\n");
	EXPECT(&f, "set neg 0 -1 1\r\nx\r\nget neg\r\n", "STORED\r\nEND\r\n");
	EXPECT(&f, "set neg 0 -100 1\r\nx\r\nget neg\r\n", "STORED\r\nEND\r\n");
	u_absent(f.kv, "neg", 3);
	EXPECT(&f, "add neg 0 -1 1\r\nx\r\nget neg\r\n", "STORED\r\nEND\r\n");
	EXPECT(&f, "set rep 0 0 1\r\no\r\nreplace rep 0 -1 1\r\nx\r\nget rep\r\n",
	       "STORED\r\nSTORED\r\nEND\r\n");
	/* 0: never */
	EXPECT(&f, "set never 0 0 1\r\nx\r\n", "STORED\r\n");
	assert_int_equal(ttl_of(&f, "never"), -1);
	/* append keeps the TTL (and ignores the command's exptime) */
	EXPECT(&f, "append r 0 -1 1\r\ny\r\nget r\r\n",
	       "STORED\r\nVALUE r 0 2\r\nxy\r\nEND\r\n");
	t = ttl_of(&f, "r");
	assert_true(t > 98000 && t <= 100000);
	/* touch and gat set it; into the past they remove the item (gat
	 * shows it this once) */
	EXPECT(&f, "touch never 50\r\n", "TOUCHED\r\n");
	t = ttl_of(&f, "never");
	assert_true(t > 48000 && t <= 50000);
	EXPECT(&f, "gat 0 never\r\n", "VALUE never 0 1\r\nx\r\nEND\r\n");
	assert_int_equal(ttl_of(&f, "never"), -1);
	EXPECT(&f, "gat -1 never\r\nget never\r\n",
	       "VALUE never 0 1\r\nx\r\nEND\r\nEND\r\n");
	EXPECT(&f, "touch r -1\r\nget r\r\n", "TOUCHED\r\nEND\r\n");
	/* ms T, mg T, ma T */
	EXPECT(&f, "ms m 1 T30\r\nx\r\n", "HD\r\n");
	t = ttl_of(&f, "m");
	assert_true(t > 28000 && t <= 30000);
	/* t shows the TTL as of its place among the flags, as memcached */
	mg = ask(&f, "mg m t T60\r\n");
	assert_true(strcmp(mg, "HD t30\r\n") == 0 ||
	            strcmp(mg, "HD t29\r\n") == 0);
	t = ttl_of(&f, "m");
	assert_true(t > 58000 && t <= 60000);
	EXPECT(&f, "mg m T70 t\r\n", "HD t70\r\n");
	t = ttl_of(&f, "m");
	assert_true(t > 68000 && t <= 70000);
	EXPECT(&f, "ms m 1 T-1\r\nx\r\nmg m v\r\n", "HD\r\nEN\r\n");
	fx_close(&f);
}

static void test_incr_decr(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "mcincr", 8 << 20, 4096);

	EXPECT(&f, "set a 3 100 2\r\n10\r\n", "STORED\r\n");
	EXPECT(&f, "incr a 5\r\ndecr a 3\r\nget a\r\n",
	       "15\r\n12\r\nVALUE a 3 2\r\n12\r\nEND\r\n");
	/* flags and TTL kept */
	int64_t t = ttl_of(&f, "a");
	assert_true(t > 98000 && t <= 100000);
	EXPECT(&f, "decr a 100\r\n", "0\r\n");
	EXPECT(&f, "incr a 18446744073709551615\r\nincr a 1\r\n",
	       "18446744073709551615\r\n0\r\n");
	EXPECT(&f, "set max 0 0 20\r\n18446744073709551615\r\nincr max 1\r\n"
	           "get max\r\n",
	       "STORED\r\n0\r\nVALUE max 0 1\r\n0\r\nEND\r\n");
	EXPECT(&f, "incr a 18446744073709551616\r\nincr a -1\r\nincr a abc\r\n"
	           "decr a 1x\r\n",
	       "CLIENT_ERROR invalid numeric delta argument\r\n"
	       "CLIENT_ERROR invalid numeric delta argument\r\n"
	       "CLIENT_ERROR invalid numeric delta argument\r\n"
	       "CLIENT_ERROR invalid numeric delta argument\r\n");
	EXPECT(&f, "incr nope 1\r\ndecr nope 1\r\n", "NOT_FOUND\r\nNOT_FOUND\r\n");
	/* what memcached takes as a number, and what not */
	EXPECT(&f, "set s 0 0 3\r\nabc\r\nincr s 1\r\n",
	       "STORED\r\nCLIENT_ERROR cannot increment or decrement "
	       "non-numeric value\r\n");
	EXPECT(&f, "set s 0 0 2\r\n-1\r\nincr s 1\r\n",
	       "STORED\r\nCLIENT_ERROR cannot increment or decrement "
	       "non-numeric value\r\n");
	EXPECT(&f, "set s 0 0 21\r\n123456789012345678901\r\nincr s 1\r\n",
	       "STORED\r\nCLIENT_ERROR cannot increment or decrement "
	       "non-numeric value\r\n");
	EXPECT(&f, "set s 0 0 0\r\n\r\nincr s 1\r\n",
	       "STORED\r\nCLIENT_ERROR cannot increment or decrement "
	       "non-numeric value\r\n");
	EXPECT(&f, "set s 0 0 5\r\n12abc\r\nincr s 1\r\n",
	       "STORED\r\nCLIENT_ERROR cannot increment or decrement "
	       "non-numeric value\r\n");
	EXPECT(&f, "set s 0 0 6\r\n12 abc\r\nincr s 1\r\n", "STORED\r\n13\r\n");
	EXPECT(&f, "set s 0 0 4\r\n 12 \r\nincr s 1\r\n", "STORED\r\n13\r\n");
	EXPECT(&f, "set s 0 0 2\r\n01\r\nincr s 1\r\n", "STORED\r\n2\r\n");
	EXPECT(&f, "set s 0 0 2\r\n+5\r\nincr s 1\r\n", "STORED\r\n6\r\n");
	EXPECT(&f, "set s 0 0 2\r\n-0\r\nincr s 1\r\n", "STORED\r\n1\r\n");
	EXPECT(&f, "incr s 2 noreply\r\ndecr s 1 noreply\r\nget s\r\n",
	       "VALUE s 0 1\r\n2\r\nEND\r\n");
	EXPECT(&f, "incr\r\nincr s\r\nincr s 1 2 3\r\n",
	       "ERROR\r\nERROR\r\nERROR\r\n");
	/* a fourth token that is not noreply is ignored */
	EXPECT(&f, "incr s 1 2\r\n", "3\r\n");
	char *st = ask(&f, "stats\r\n");
	assert_true(num_after(st, "STAT incr_hits ") >= 10);
	assert_int_equal(num_after(st, "STAT incr_misses "), 1);
	assert_int_equal(num_after(st, "STAT decr_misses "), 1);
	fx_close(&f);
}

static void test_delete_touch(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "mcdel", 8 << 20, 4096);

	EXPECT(&f, "set a 0 0 1\r\n1\r\ndelete a\r\ndelete a\r\nget a\r\n",
	       "STORED\r\nDELETED\r\nNOT_FOUND\r\nEND\r\n");
	EXPECT(&f, "set a 0 0 1\r\n1\r\ndelete a noreply\r\nget a\r\n",
	       "STORED\r\nEND\r\n");
	EXPECT(&f, "set a 0 0 1\r\n1\r\ndelete a 0\r\n", "STORED\r\nDELETED\r\n");
	EXPECT(&f, "set a 0 0 1\r\n1\r\ndelete a 0 noreply\r\nget a\r\n",
	       "STORED\r\nEND\r\n");
	EXPECT(&f, "delete a 1\r\n",
	       "CLIENT_ERROR bad command line format.  "
	       "Usage: delete <key> [noreply]\r\n");
	EXPECT(&f, "delete a x noreply\r\ndelete\r\ndelete a b c d\r\n",
	       "ERROR\r\nERROR\r\n");
	EXPECT(&f, "set t 1 0 2\r\naa\r\ntouch t 100\r\ntouch nope 10\r\n"
	           "touch t 30 noreply\r\n",
	       "STORED\r\nTOUCHED\r\nNOT_FOUND\r\n");
	int64_t t = ttl_of(&f, "t");
	assert_true(t > 28000 && t <= 30000);
	EXPECT(&f, "touch t abc\r\ntouch t\r\n",
	       "CLIENT_ERROR invalid exptime argument\r\nERROR\r\n");
	EXPECT(&f, "gat 100 t\r\ngat 0 t nope t\r\n",
	       "VALUE t 1 2\r\naa\r\nEND\r\nVALUE t 1 2\r\naa\r\n"
	       "VALUE t 1 2\r\naa\r\nEND\r\n");
	EXPECT(&f, "gats 30 nope\r\ngat abc t\r\ngat 10\r\ngat\r\n",
	       "END\r\nCLIENT_ERROR invalid exptime argument\r\nEND\r\nERROR\r\n");
	char *st = ask(&f, "stats\r\n");
	assert_int_equal(num_after(st, "STAT delete_hits "), 4);
	assert_int_equal(num_after(st, "STAT delete_misses "), 1);
	assert_int_equal(num_after(st, "STAT touch_hits "), 5);
	assert_int_equal(num_after(st, "STAT touch_misses "), 3);
	fx_close(&f);
}

static void test_flush_all(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "mcflush", 8 << 20, 4096);

	EXPECT(&f, "set a 0 0 1\r\nx\r\nset b 0 0 1\r\nx\r\nflush_all\r\n"
	           "get a b\r\n",
	       "STORED\r\nSTORED\r\nOK\r\nEND\r\n");
	EXPECT(&f, "set a 0 0 1\r\ny\r\nflush_all noreply\r\nget a\r\n",
	       "STORED\r\nEND\r\n");
	EXPECT(&f, "set a 0 0 1\r\nz\r\nflush_all 0\r\nget a\r\n",
	       "STORED\r\nOK\r\nEND\r\n");
	EXPECT(&f, "flush_all abc\r\nflush_all 1 2 3\r\nflush_all -5\r\n",
	       "CLIENT_ERROR invalid exptime argument\r\nERROR\r\nOK\r\n");
	/* a delay: nothing goes now; everything there when it is up goes,
	 * what was stored meanwhile too */
	EXPECT(&f, "set d 0 0 1\r\nd\r\nflush_all 100\r\nget d\r\n",
	       "STORED\r\nOK\r\nVALUE d 0 1\r\nd\r\nEND\r\n");
	uint64_t at = atomic_load(&f.srv.flush_at_ms);
	uint64_t now = now_ms();
	assert_true(at > now + 98000 && at <= now + 100000);
	mc_server_tick(&f.srv); /* not due: nothing */
	EXPECT(&f, "set e 0 0 1\r\ne\r\nget d e\r\n",
	       "STORED\r\nVALUE d 0 1\r\nd\r\nVALUE e 0 1\r\ne\r\nEND\r\n");
	atomic_store(&f.srv.flush_at_ms, now_ms() - 1);
	mc_server_tick(&f.srv);
	assert_int_equal(atomic_load(&f.srv.flush_at_ms), 0);
	EXPECT(&f, "get d e\r\n", "END\r\n");
	/* a session that runs first runs the due flush itself */
	EXPECT(&f, "set d 0 0 1\r\nd\r\nflush_all 5\r\n", "STORED\r\nOK\r\n");
	atomic_store(&f.srv.flush_at_ms, now_ms() - 1);
	EXPECT(&f, "get d\r\n", "END\r\n");
	/* flush_all now cancels a delayed one */
	EXPECT(&f, "flush_all 100\r\nflush_all\r\n", "OK\r\nOK\r\n");
	assert_int_equal(atomic_load(&f.srv.flush_at_ms), 0);
	char *st = ask(&f, "stats\r\n");
	/* flush_all 1 2 3 is not one */
	assert_int_equal(num_after(st, "STAT cmd_flush "), 9);
	fx_close(&f);
}

static void test_misc_commands(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "mcmisc", 8 << 20, 4096);

	EXPECT(&f, "verbosity 1\r\nverbosity 0 noreply\r\nverbosity\r\n"
	           "verbosity x\r\nverbosity 1 2\r\nverbosity 5\r\n",
	       "OK\r\nERROR\r\nCLIENT_ERROR bad command line format\r\nOK\r\n"
	       "OK\r\n");
	assert_int_equal(atomic_load(&f.srv.verbosity), 2);
	EXPECT(&f, "version\r\nversion x y\r\n",
	       "VERSION 1.6.18\r\nVERSION 1.6.18\r\n");
	EXPECT(&f, "shutdown\r\n", "ERROR: shutdown not enabled\r\n");
	/* quit: nothing more is read, the session is done */
	EXPECT(&f, "set q 0 0 1\r\nx\r\nquit\r\nget q\r\n", "STORED\r\n");
	assert_true(mc_session_closing(f.s));
	assert_false(mc_session_wants_input(f.s));
	fx_reconnect(&f);
	/* an HTTP request is hung up on, as memcached does */
	EXPECT(&f, "GET / HTTP/1.1\r\nHost: x\r\n", "");
	assert_true(mc_session_closing(f.s));
	fx_reconnect(&f);
	/* a binary-protocol get (24-byte header, key "k"): refused at once,
	 * though it has no line end, then hung up on; also after a text
	 * command on the same connection */
	static const char bin_get[25] = "\x80\x00\x00\x01\x00\x00\x00\x00"
	                                "\x00\x00\x00\x01\x00\x00\x00\x00"
	                                "\x00\x00\x00\x00\x00\x00\x00\x00k";
	static const char bin_no[] =
	    "SERVER_ERROR binary protocol is not supported\r\n";
	for (size_t first = 1; first <= sizeof bin_get; first += 8) {
		struct bytes got = feed(&f, bin_get, first, 0);
		expect_bytes(bin_get, first, &got, bin_no, strlen(bin_no),
		             __FILE__, __LINE__);
		h_free(got.p);
		assert_true(mc_session_closing(f.s));
		fx_reconnect(&f);
	}
	EXPECT(&f, "version\r\n", "VERSION 1.6.18\r\n");
	{
		struct bytes got = feed(&f, bin_get, sizeof bin_get, 0);
		expect_bytes(bin_get, sizeof bin_get, &got, bin_no,
		             strlen(bin_no), __FILE__, __LINE__);
		h_free(got.p);
	}
	assert_true(mc_session_closing(f.s));
	fx_reconnect(&f);
	/* offering nothing is allowed and does nothing */
	assert_int_equal(mc_session_input(f.s, "", 0), 0);
	fx_close(&f);
}

static void test_stats(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "mcstats", 8 << 20, 4096);

	EXPECT(&f, "set a 0 0 1\r\nx\r\nset b 0 0 2\r\nxy\r\nget a b c\r\n",
	       "STORED\r\nSTORED\r\nVALUE a 0 1\r\nx\r\nVALUE b 0 2\r\nxy\r\n"
	       "END\r\n");
	assert_kv(KV_OK, u_puts(f.kv, "fromkv", "v"));
	char *st = ask(&f, "stats\r\n");
	/* STAT lines, then END */
	const char *p = st;
	while (strncmp(p, "STAT ", 5) == 0) {
		const char *e = strstr(p, "\r\n");
		assert_non_null(e);
		p = e + 2;
	}
	assert_string_equal(p, "END\r\n");
	assert_int_equal(num_after(st, "STAT curr_items "), 3);
	assert_int_equal(num_after(st, "STAT cmd_get "), 3);
	assert_int_equal(num_after(st, "STAT get_hits "), 2);
	assert_int_equal(num_after(st, "STAT get_misses "), 1);
	assert_int_equal(num_after(st, "STAT cmd_set "), 2);
	assert_int_equal(num_after(st, "STAT threads "), 1);
	assert_int_equal(num_after(st, "STAT pid "), (uint64_t)getpid());
	assert_non_null(strstr(st, "STAT version 1.6.18\r\n"));
	assert_non_null(strstr(st, "STAT rusage_user "));
	assert_true(num_after(st, "STAT limit_maxbytes ") > 0);

	char *items = ask(&f, "stats items\r\n");
	assert_non_null(strstr(items, ":number "));
	char *slabs = ask(&f, "stats slabs\r\n");
	assert_non_null(strstr(slabs, ":chunk_size "));
	assert_non_null(strstr(slabs, "STAT active_slabs "));
	char *settings = ask(&f, "stats settings\r\n");
	assert_int_equal(num_after(settings, "STAT item_size_max "), 4096);
	EXPECT(&f, "stats sizes\r\n", "STAT sizes_status disabled\r\nEND\r\n");
	EXPECT(&f, "stats detail\r\nstats detail on\r\nstats nonsense\r\n",
	       "CLIENT_ERROR usage: stats detail on|off|dump\r\nOK\r\nERROR\r\n");
	EXPECT(&f, "stats reset\r\n", "RESET\r\n");
	st = ask(&f, "stats\r\n");
	assert_int_equal(num_after(st, "STAT cmd_get "), 0);
	assert_int_equal(num_after(st, "STAT curr_items "), 3);
	fx_close(&f);
}

/* ------------------------------------------------------------------------
 * Errors
 */

static void test_errors(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "mcerr", 8 << 20, 4096);

	EXPECT(&f, "foo\r\n\r\n\n \r\nGET a\r\nget\r\nget \r\nx\r\n",
	       "ERROR\r\nERROR\r\nERROR\r\nERROR\r\nERROR\r\nERROR\r\nERROR\r\n"
	       "ERROR\r\n");
	/* bad storage lines: no data is swallowed after them */
	EXPECT(&f, "set a 0 0 -1\r\n", "CLIENT_ERROR bad command line format\r\n");
	EXPECT(&f, "set a 0 0 abc\r\nx\r\n",
	       "CLIENT_ERROR bad command line format\r\nERROR\r\n");
	EXPECT(&f, "set a abc 0 1\r\nx\r\n",
	       "CLIENT_ERROR bad command line format\r\nERROR\r\n");
	EXPECT(&f, "set a -1 0 1\r\nx\r\n",
	       "CLIENT_ERROR bad command line format\r\nERROR\r\n");
	EXPECT(&f, "set a 18446744073709551616 0 1\r\nx\r\n",
	       "CLIENT_ERROR bad command line format\r\nERROR\r\n");
	/* 32-bit fields do not wrap (memcached 1.6.18 truncated them) */
	EXPECT(&f, "set a 4294967296 0 1\r\nx\r\n",
	       "CLIENT_ERROR bad command line format\r\nERROR\r\n");
	EXPECT(&f, "set a 0 0 4294967297\r\nx\r\n",
	       "CLIENT_ERROR bad command line format\r\nERROR\r\n");
	EXPECT(&f, "set a 0 0 2147483647\r\n",
	       "CLIENT_ERROR bad command line format\r\n");
	EXPECT(&f, "set a 0 abc 1\r\nx\r\n",
	       "CLIENT_ERROR bad command line format\r\nERROR\r\n");
	EXPECT(&f, "set a 0 0\r\nset a 0 0 1 2 3 4\r\nset a\r\n",
	       "ERROR\r\nERROR\r\nERROR\r\n");
	/* noreply hides the errors of its command too */
	EXPECT(&f, "set a 0 0 abc noreply\r\n", "");
	EXPECT(&f, "get a\r\n", "END\r\n");
	EXPECT(&f, "gxx a\r\nadx\r\ncasx\r\nix\r\ndx\r\ntx\r\nmx\r\n",
	       "ERROR\r\nERROR\r\nERROR\r\nERROR\r\nERROR\r\nERROR\r\nERROR\r\n");
	/* Keys with control characters are refused by every command, and
	 * nothing is stored under them. */
	EXPECT(&f, "set a\tb 0 0 1\r\nx\r\n",
	       "CLIENT_ERROR bad command line format\r\nERROR\r\n");
	EXPECT(&f, "get a\x01b\r\n", "CLIENT_ERROR bad command line format\r\n");
	EXPECT(&f, "gets ok a\x7f\r\n",
	       "CLIENT_ERROR bad command line format\r\n");
	EXPECT(&f, "delete a\x1b\r\nincr a\x02 1\r\ntouch a\x03 0\r\n",
	       "CLIENT_ERROR bad command line format\r\n"
	       "CLIENT_ERROR bad command line format\r\n"
	       "CLIENT_ERROR bad command line format\r\n");
	EXPECT(&f, "mg a\x04 v\r\n", "CLIENT_ERROR bad command line format\r\n");
	{
		static const char nul[] = "set a\0b 0 0 1\r\nx\r\nget a\r\n";
		static const char want[] = "CLIENT_ERROR bad command line format"
		                           "\r\nERROR\r\nEND\r\n";
		struct bytes got = feed(&f, nul, sizeof nul - 1, 0);
		expect_bytes(nul, sizeof nul - 1, &got, want, sizeof want - 1,
		             __FILE__, __LINE__);
		h_free(got.p);
	}
	size_t n = 0;
	assert_kv(KV_ENOTFOUND, kv_get(f.kv, "a\tb", 3, NULL, 0, &n));
	fx_close(&f);
}

/* A line with no "\n" in MC_MAX_LINE bytes is refused and skipped, in
 * sync; a get line of any length is served. */
static void test_long_lines(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "mclong", 8 << 20, 4096);
	enum { BIG = 100000 };
	static char req[BIG + 64];
	size_t big = BIG;

	EXPECT(&f, "set k 0 0 3\r\nval\r\n", "STORED\r\n");
	/* exactly MC_MAX_LINE with its "\r\n": a line (an unknown one) */
	memset(req, 'x', MC_MAX_LINE - 2);
	memcpy(req + MC_MAX_LINE - 2, "\r\nget k\r\n", 10);
	EXPECT(&f, req, "ERROR\r\nVALUE k 0 3\r\nval\r\nEND\r\n");
	/* one byte more: too long */
	memset(req, 'x', MC_MAX_LINE - 1);
	memcpy(req + MC_MAX_LINE - 1, "\r\nget k\r\n", 10);
	EXPECT(&f, req, "CLIENT_ERROR line too long\r\nVALUE k 0 3\r\nval\r\n"
	                "END\r\n");
	/* 100 KB, fed in pieces: refused once, in sync after */
	memset(req, 'z', big);
	memcpy(req + big, "\r\nget k\r\n", 10);
	for (size_t chunk = 1000; chunk <= big + 100; chunk *= 7) {
		struct bytes r = feed(&f, req, strlen(req), chunk);
		const char *w = "CLIENT_ERROR line too long\r\nVALUE k 0 3\r\n"
		                "val\r\nEND\r\n";
		expect_bytes("100 KB line", 11, &r, w, strlen(w), __FILE__,
		             __LINE__);
		h_free(r.p);
	}
	/* a set with a 3000-byte key */
	memcpy(req, "set ", 4);
	memset(req + 4, 'k', 3000);
	memcpy(req + 3004, " 0 0 1\r\nget k\r\n", 16);
	EXPECT(&f, req, "CLIENT_ERROR line too long\r\nVALUE k 0 3\r\nval\r\n"
	                "END\r\n");

	/* a get of 300 keys, 4 KB on one line, as clients send them */
	struct bytes line = {0};
	struct bytes want = {0};
	b_add(&line, "get", 3);
	for (int i = 0; i < 300; i++) {
		char k[32], set[64];
		int n = snprintf(k, sizeof(k), " many-key-%05d", i);
		b_add(&line, k, (size_t)n);
		if (i % 3 == 0)
			continue; /* every third key a miss */
		snprintf(set, sizeof(set), "set %s 0 0 1\r\n%d\r\n", k + 1, i % 10);
		EXPECT(&f, set, "STORED\r\n");
		n = snprintf(set, sizeof(set), "VALUE %s 0 1\r\n%d\r\n", k + 1,
		             i % 10);
		b_add(&want, set, (size_t)n);
	}
	b_add(&line, "\r\n", 2);
	b_add(&want, "END\r\n", 5);
	assert_true(line.n > MC_MAX_LINE);
	for (size_t chunk = 0; chunk < line.n; chunk = chunk ? chunk * 3 : 1) {
		struct bytes r = feed(&f, line.p, line.n, chunk);
		expect_bytes(line.p, line.n, &r, want.p, want.n, __FILE__,
		             __LINE__);
		h_free(r.p);
	}
	/* a long gets line of one key and many spaces, then a gat */
	memcpy(req, "gets k", 6);
	memset(req + 6, ' ', 3000);
	memcpy(req + 3006, "\r\ngat 10 k", 11);
	memset(req + 3016, ' ', 3000);
	memcpy(req + 6016, "\r\n", 3);
	char *r = ask(&f, req);
	assert_true(strncmp(r, "VALUE k 0 3 ", 12) == 0);
	assert_non_null(strstr(r, "\r\nval\r\nEND\r\nVALUE k 0 3\r\nval\r\nEND\r\n"));
	/* a long get line with no key: ERROR, as memcached */
	memcpy(req, "get", 3);
	memset(req + 3, ' ', 3000);
	memcpy(req + 3003, "\r\n", 3);
	EXPECT(&f, req, "ERROR\r\n");
	/* a long get line with a bad key ends with the error */
	memcpy(req, "get k ", 6);
	memset(req + 6, 'b', 3000);
	memcpy(req + 3006, " k\r\nget k\r\n", 12);
	EXPECT(&f, req, "VALUE k 0 3\r\nval\r\nCLIENT_ERROR bad command line "
	                "format\r\nVALUE k 0 3\r\nval\r\nEND\r\n");
	/* a long gat with a bad exptime */
	memcpy(req, "gat x k", 7);
	memset(req + 7, ' ', 3000);
	memcpy(req + 3007, "\r\nget k\r\n", 10);
	EXPECT(&f, req, "CLIENT_ERROR invalid exptime argument\r\n"
	                "VALUE k 0 3\r\nval\r\nEND\r\n");
	fx_close(&f);
}

/* A data block that does not end where its length says. */
static void test_bad_data_chunk(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "mcchunk", 8 << 20, 4096);

	EXPECT(&f, "set k 0 0 3\r\nval\r\n", "STORED\r\n");
	/* longer than its length: the rest of its line is skipped, not run
	 * (memcached would run "\r\n" and answer ERROR) */
	EXPECT(&f, "set bd 0 0 1\r\nxyz\r\nget k\r\n",
	       "CLIENT_ERROR bad data chunk\r\nVALUE k 0 3\r\nval\r\nEND\r\n");
	EXPECT(&f, "set bd 0 0 3\r\nabcde\r\nget bd k\r\n",
	       "CLIENT_ERROR bad data chunk\r\nVALUE k 0 3\r\nval\r\nEND\r\n");
	/* the rest of a value is never run as a command (memcached would
	 * flush here) */
	EXPECT(&f, "set bd 0 0 3\r\nabcde flush_all\r\nget k\r\n",
	       "CLIENT_ERROR bad data chunk\r\nVALUE k 0 3\r\nval\r\nEND\r\n");
	/* shorter than its length: the command it ran into gets ERROR, as
	 * in memcached, and the next one works */
	EXPECT(&f, "set bd 0 0 3\r\nab\r\nget k\r\nget k\r\n",
	       "CLIENT_ERROR bad data chunk\r\nERROR\r\nVALUE k 0 3\r\nval\r\n"
	       "END\r\n");
	/* the block ends in a bare "\n": nothing to skip */
	EXPECT(&f, "set bd 0 0 3\r\nabcd\nget k\r\n",
	       "CLIENT_ERROR bad data chunk\r\nVALUE k 0 3\r\nval\r\nEND\r\n");
	/* noreply hides the error; ms always shows it */
	EXPECT(&f, "set bd 0 0 3 noreply\r\nabcdef\r\nget bd\r\n", "END\r\n");
	EXPECT(&f, "ms bd 2 q\r\nabc\r\nget bd\r\n",
	       "CLIENT_ERROR bad data chunk\r\nEND\r\n");
	/* split anywhere, the same */
	const char *req = "set bd 0 0 3\r\nabcdefgh\r\nget k\r\n";
	const char *want = "CLIENT_ERROR bad data chunk\r\nVALUE k 0 3\r\nval\r\n"
	                   "END\r\n";
	for (size_t c = 1; c < strlen(req); c++) {
		struct bytes r = feed(&f, req, strlen(req), c);
		expect_bytes(req, strlen(req), &r, want, strlen(want), __FILE__,
		             __LINE__);
		h_free(r.p);
	}
	u_absent(f.kv, "bd", 2);
	fx_close(&f);
}

/* A value over the store's max value is refused and its data swallowed,
 * even when it looks like commands; at the max value it is stored. */
static void test_max_value(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "mcmax", 8 << 20, 4096);
	size_t mx = f.srv.max_value, n;
	char *req = h_alloc(3 * 1024 * 1024);

	n = (size_t)sprintf(req, "set atmax 0 0 %zu\r\n", mx);
	memset(req + n, 'v', mx);
	memcpy(req + n + mx, "\r\n", 3);
	EXPECT(&f, req, "STORED\r\n");
	EXPECT(&f, "set old 0 0 1\r\no\r\n", "STORED\r\n");
	n = (size_t)sprintf(req, "set old 0 0 %zu\r\n", mx + 1);
	for (size_t i = 0; i <= mx; i++)
		req[n + i] = "get k\r\n"[i % 7];
	memcpy(req + n + mx + 1, "\r\nget old atmax2\r\n", 19);
	/* the old value goes with a set that cannot be stored */
	EXPECT(&f, req, "SERVER_ERROR object too large for cache\r\nEND\r\n");
	/* 2 MB, fed in 16 KB pieces: swallowed, never buffered */
	size_t huge = 2 * 1024 * 1024;
	n = (size_t)sprintf(req, "set huge 0 0 %zu\r\n", huge);
	for (size_t i = 0; i < huge; i++)
		req[n + i] = "\r\nget k\r\n"[i % 9];
	memcpy(req + n + huge, "\r\nmn\r\n", 7);
	struct bytes r = feed(&f, req, n + huge + 6, 16384);
	expect_bytes("set huge", 8, &r,
	             "SERVER_ERROR object too large for cache\r\nMN\r\n", 45,
	             __FILE__, __LINE__);
	h_free(r.p);
	/* ms too */
	n = (size_t)sprintf(req, "ms huge %zu T0\r\n", mx + 1);
	memset(req + n, 'x', mx + 1);
	memcpy(req + n + mx + 1, "\r\nmn\r\n", 7);
	EXPECT(&f, req, "SERVER_ERROR object too large for cache\r\nMN\r\n");
	/* append past the max value: refused, the value as it was */
	EXPECT(&f, "append atmax 0 0 1\r\nx\r\n",
	       "SERVER_ERROR object too large for cache\r\n");
	assert_kv(KV_ERANGE, kv_get(f.kv, "atmax", 5, NULL, 0, &n));
	assert_int_equal(n, mx);
	char *st = ask(&f, "stats\r\n");
	assert_int_equal(num_after(st, "STAT store_too_large "), 4);
	fx_close(&f);
}

/* ------------------------------------------------------------------------
 * Meta commands
 */

static void test_meta(void **state)
{
	(void)state;
	struct fx f;
	char req[256], want[256];
	fx_open(&f, "mcmeta", 8 << 20, 4096);

	EXPECT(&f, "ms a 3\r\nabc\r\n", "HD\r\n");
	EXPECT(&f, "ms a 3 T0 F5\r\nabc\r\n", "HD\r\n");
	EXPECT(&f, "mg a\r\nmg a v\r\nmg a v f t s k\r\nmg a k v O123 q\r\n",
	       "HD\r\nVA 3\r\nabc\r\nVA 3 f5 t-1 s3 ka\r\nabc\r\n"
	       "VA 3 ka O123\r\nabc\r\n");
	EXPECT(&f, "mg nope v\r\nmg nope v q\r\nmg nope v k O9\r\nmg a q\r\n",
	       "EN\r\nEN knope O9\r\nHD\r\n");
	/* c: the item's version */
	snprintf(want, sizeof(want), "HD c%" PRIu64 "\r\n", version_of(&f, "a"));
	EXPECT(&f, "mg a c\r\n", want);
	EXPECT(&f, "mg a h l\r\n", "HD h0 l0\r\n");
	/* errors */
	EXPECT(&f, "mg a v v\r\n", "CLIENT_ERROR duplicate flag\r\n");
	EXPECT(&f, "mg a Oxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n",
	       "HD Oxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n");
	EXPECT(&f, "mg a Oxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx v\r\n",
	       "CLIENT_ERROR opaque token too long\r\n");
	EXPECT(&f, "mg a Tabc\r\nmg a Z\r\nmg\r\n",
	       "CLIENT_ERROR bad token in command line format\r\n"
	       "CLIENT_ERROR invalid flag\r\nERROR\r\n");
	EXPECT(&f, "mg a q q\r\n", "CLIENT_ERROR duplicate flag\r\n");
	EXPECT(&f, "mg a 1 2 3 4 5 6 7 8 9 a b c d e f g h i j\r\n",
	       "CLIENT_ERROR options flags are too long\r\n");

	/* ms modes */
	EXPECT(&f, "ms b 2\r\nab\r\nms b 2 MA\r\ncd\r\nms c 2 MA\r\nab\r\n"
	           "ms b 2 MP\r\nxy\r\nmg b v\r\n",
	       "HD\r\nHD\r\nNS\r\nHD\r\nVA 6\r\nxyabcd\r\n");
	EXPECT(&f, "ms b 2 ME\r\nqq\r\nms d 2 ME\r\nqq\r\nms b 2 MR\r\nrr\r\n"
	           "ms nope 2 MR\r\nqq\r\nms b 2 MS\r\nss\r\n",
	       "NS\r\nHD\r\nHD\r\nNS\r\nHD\r\n");
	EXPECT(&f, "ms b 2 MX\r\nzz\r\nms b 2 q\r\nzz\r\nms b 2 k O5\r\nzz\r\n",
	       "CLIENT_ERROR invalid mode for ms M token\r\nHD kb O5\r\n");
	EXPECT(&f, "ms b 2 C1\r\nzz\r\nms nope 2 C1\r\nzz\r\n", "EX\r\nNF\r\n");
	uint64_t v = version_of(&f, "b");
	snprintf(req, sizeof(req), "ms b 2 C%" PRIu64 " c\r\nok\r\n", v);
	char *r = ask(&f, req);
	snprintf(want, sizeof(want), "HD c%" PRIu64 "\r\n", version_of(&f, "b"));
	assert_string_equal(r, want);
	/* append with a CAS that does not match */
	EXPECT(&f, "ms b 1 MA C1\r\nx\r\nmg b v\r\n", "EX\r\nVA 2\r\nok\r\n");
	EXPECT(&f, "ms b 2 Tabc\r\nab\r\nms b 2 Z\r\nab\r\nms b\r\n"
	           "ms b abc\r\nzz\r\nms b -1\r\nab\r\n",
	       "CLIENT_ERROR bad token in command line format\r\n"
	       "CLIENT_ERROR invalid flag\r\n"
	       "CLIENT_ERROR bad command line format\r\n"
	       "CLIENT_ERROR bad command line format\r\nERROR\r\n"
	       "CLIENT_ERROR bad command line format\r\nERROR\r\n");
	EXPECT(&f, "ms f 2 F7 T0\r\nff\r\nmg f s v f t\r\n",
	       "HD\r\nVA 2 s2 f7 t-1\r\nff\r\n");
	EXPECT(&f, "ms f 2 Oxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\nff\r\nmn\r\n",
	       "CLIENT_ERROR opaque token too long\r\nMN\r\n");

	/* md */
	EXPECT(&f, "md f\r\nmd f\r\nmd f q\r\nmd f k O7\r\n",
	       "HD\r\nNF\r\nNF\r\nNF kf O7\r\n");
	EXPECT(&f, "ms f 1\r\nx\r\nmd f q\r\nmd a C1\r\nmd a X\r\nmd\r\n",
	       "HD\r\nEX\r\nCLIENT_ERROR invalid or duplicate flag\r\nERROR\r\n");
	snprintf(req, sizeof(req), "md a C%" PRIu64 "\r\n", version_of(&f, "a"));
	EXPECT(&f, req, "HD\r\n");
	u_absent(f.kv, "a", 1);

	/* ma */
	EXPECT(&f, "ma n\r\nma n N0 J13\r\nma n v\r\nma n MD D20 v\r\n"
	           "ma n MI D5 v\r\nma n q\r\nmg n v\r\n",
	       "NF\r\nHD\r\nVA 2\r\n14\r\nVA 1\r\n0\r\nVA 1\r\n5\r\n"
	       "VA 1\r\n6\r\n");
	EXPECT(&f, "ma n MX\r\nma nope\r\nma n D\r\nma n Dx\r\nma n C1\r\n",
	       "CLIENT_ERROR invalid mode for ma M token\r\nNF\r\n"
	       "CLIENT_ERROR invalid or duplicate flag\r\n"
	       "CLIENT_ERROR invalid or duplicate flag\r\nEX\r\n");
	EXPECT(&f, "ms s 3\r\nabc\r\nma s\r\n",
	       "HD\r\nCLIENT_ERROR cannot increment or decrement non-numeric "
	       "value\r\n");
	EXPECT(&f, "ma c N0 J13 v t\r\nma c M+ D5 v N0 O1 k\r\nma c M- t T50 v\r\n",
	       "VA 2 t-1\r\n13\r\nVA 2 O1 kc\r\n18\r\nVA 2 t50\r\n17\r\n");
	int64_t t = ttl_of(&f, "c");
	assert_true(t > 48000 && t <= 50000);
	snprintf(want, sizeof(want), "HD c%" PRIu64 "\r\n",
	         version_of(&f, "c") + 0);
	r = ask(&f, "ma c c\r\n");
	snprintf(want, sizeof(want), "HD c%" PRIu64 "\r\n", version_of(&f, "c"));
	assert_string_equal(r, want);
	/* the mg of a miss with N creates the item, and says it won */
	EXPECT(&f, "mg viv N30 v t\r\nmg viv N30 v\r\n",
	       "VA 0 t30 W\r\n\r\nVA 0\r\n\r\n");

	/* base64 keys */
	EXPECT(&f, "ms bXRfYjY0 2 b k\r\nbb\r\nmg bXRfYjY0 b v k\r\n"
	           "mg mt_b64 v\r\n",
	       "HD kbXRfYjY0 b\r\nVA 2 kbXRfYjY0 b\r\nbb\r\nVA 2\r\nbb\r\n");
	EXPECT(&f, "mg !!!! b v\r\nmg bXRfYjY0 b b\r\n",
	       "CLIENT_ERROR error decoding key\r\nCLIENT_ERROR duplicate flag\r\n");
	EXPECT(&f, "md bXRfYjY0 b\r\nmg mt_b64 v\r\n", "HD\r\nEN\r\n");

	/* mn, and quiet mode: only what matters is said */
	EXPECT(&f, "ms q 1 q\r\n1\r\nmg q v q\r\nmg nope v q\r\nmd nope q\r\n"
	           "mn\r\n",
	       "VA 1\r\n1\r\nNF\r\nMN\r\n");
	EXPECT(&f, "mn foo\r\n", "MN\r\n");
	/* me */
	EXPECT(&f, "me nope\r\nme\r\n",
	       "EN\r\nCLIENT_ERROR bad command line format\r\n");
	r = ask(&f, "me q\r\n");
	assert_true(strncmp(r, "ME q exp=-1 la=0 cas=", 21) == 0);
	char *st = ask(&f, "stats\r\n");
	assert_true(num_after(st, "STAT cmd_meta ") > 50);
	fx_close(&f);
}

/* ------------------------------------------------------------------------
 * Framing
 */

/* A script of every kind of command, fed whole, then split in two at
 * every byte boundary, then a byte at a time: the same replies. */
static const char *build_script(size_t *len, size_t max_value)
{
	static char script[16384];
	size_t n = 0;
	n += (size_t)sprintf(script + n,
	    "set a 5 0 3\r\nabc\r\n"
	    "get a b a\r\n"
	    "add a 0 0 1\r\nx\r\n"
	    "append a 0 0 2 noreply\r\nde\r\n"
	    "prepend a 0 0 1\r\nz\r\n"
	    "get a\r\n"
	    "incr n 1\r\n"
	    "set n 0 0 2\r\n10\r\n"
	    "incr n 5\r\n"
	    "decr n 100\r\n"
	    "touch a 100\r\n"
	    "mg a v f s k O12\r\n"
	    "ms m 3 F9 T0\r\nxyz\r\n"
	    "mg m v f t\r\n"
	    "md m q\r\nmd m\r\n"
	    "ma n v\r\n"
	    "ma cnt N0 J5 v\r\n"
	    "mn\r\n"
	    "delete a\r\nget a\r\n"
	    "bogus\r\n"
	    "set bad 0 0 2\r\nabcd\r\n"
	    "set short 0 0 5\r\nab\r\nget a\r\n"
	    "verbosity 1\r\nversion\r\n"
	    "set big 0 0 %zu\r\n", max_value + 1);
	for (size_t i = 0; i <= max_value; i++)
		script[n++] = "get a\r\n"[i % 7];
	n += (size_t)sprintf(script + n, "\r\nget");
	for (int i = 0; i < 250; i++)
		n += (size_t)sprintf(script + n, " key%d", i % 20);
	n += (size_t)sprintf(script + n, "\r\n");
	script[n++] = 'y';
	memset(script + n, 'y', 2500);
	n += 2500;
	n += (size_t)sprintf(script + n, "\r\nmg n v\r\nmn\r\n");
	*len = n;
	return script;
}

static struct bytes run_script(struct fx *f, const char *script, size_t len,
                               size_t first, size_t chunk)
{
	assert_kv(KV_OK, kv_flush(f->kv, NULL));
	for (int i = 0; i < 20; i += 3) {
		char k[16];
		snprintf(k, sizeof(k), "key%d", i);
		assert_kv(KV_OK, u_puts(f->kv, k, "v"));
	}
	return feed2(f, script, len, first, chunk);
}

static void test_splits(void **state)
{
	(void)state;
	struct fx f;
	size_t len;
	fx_open(&f, "mcsplit", 8 << 20, 1024);
	const char *script = build_script(&len, f.srv.max_value);

	struct bytes want = run_script(&f, script, len, 0, 0);
	/* a sanity check of the whole: it ends with the last mn */
	assert_true(want.n > 2000);
	assert_memory_equal(want.p, "STORED\r\nVALUE a 5 3\r\nabc\r\n", 26);
	assert_memory_equal(want.p + want.n - 4, "MN\r\n", 4);
	for (size_t i = 1; i < len; i++) {
		struct bytes got = run_script(&f, script, len, i, 0);
		if (got.n != want.n || memcmp(got.p, want.p, want.n) != 0) {
			print_error("split at byte %zu\n", i);
			expect_bytes(script, len, &got, want.p, want.n,
			             __FILE__, __LINE__);
		}
		h_free(got.p);
	}
	struct bytes got = run_script(&f, script, len, 1, 1);
	expect_bytes(script, len, &got, want.p, want.n, __FILE__, __LINE__);
	h_free(got.p);
	h_free(want.p);
	fx_close(&f);
}

/* Many requests in one write, answered in order. */
static void test_pipeline(void **state)
{
	(void)state;
	struct fx f;
	struct bytes req = {0}, want = {0};
	fx_open(&f, "mcpipe", 8 << 20, 4096);

	for (int i = 0; i < 2000; i++) {
		char line[128];
		int n = snprintf(line, sizeof(line),
		                 "set p%d %d 0 %d\r\n%d\r\nget p%d\r\n", i, i,
		                 snprintf(NULL, 0, "%d", i), i, i);
		b_add(&req, line, (size_t)n);
		n = snprintf(line, sizeof(line),
		             "STORED\r\nVALUE p%d %d %d\r\n%d\r\nEND\r\n", i, i,
		             snprintf(NULL, 0, "%d", i), i);
		b_add(&want, line, (size_t)n);
	}
	for (size_t chunk = 0; chunk < 20000; chunk = chunk ? chunk * 4 : 7) {
		struct bytes got = feed(&f, req.p, req.n, chunk);
		expect_bytes(req.p, req.n, &got, want.p, want.n, __FILE__,
		             __LINE__);
		h_free(got.p);
	}
	fx_close(&f);
}

/*
 * Backpressure: a get of many large values stops consuming once its reply
 * reaches MC_OUT_HIGH, keeps the rest of its line unconsumed, and resumes
 * where it stopped once the reply is written; the reply held never
 * exceeds MC_OUT_HIGH plus one value. Pipelined gets from a client that
 * does not read are not consumed either.
 */
static void test_backpressure(void **state)
{
	(void)state;
	struct fx f;
	struct bytes want = {0}, got = {0};
	enum { NV = 40, VSZ = 100 * 1024 };
	char *val = h_alloc(VSZ);
	char line[4096];
	size_t n = 0, len;
	fx_open(&f, "mcback", 64 << 20, 1 << 20);

	n += (size_t)sprintf(line + n, "get");
	for (int i = 0; i < NV; i++) {
		char k[16];
		snprintf(k, sizeof(k), "big%d", i);
		memset(val, 'a' + i % 26, VSZ);
		struct kv_put_opts o = {.client_flags = (uint32_t)i};
		assert_kv(KV_OK, kv_put(f.kv, k, strlen(k), val, VSZ, &o));
		n += (size_t)sprintf(line + n, " %s", k);
		char h[64];
		int hn = snprintf(h, sizeof(h), "VALUE %s %d %d\r\n", k, i, VSZ);
		b_add(&want, h, (size_t)hn);
		b_add(&want, val, VSZ);
		b_add(&want, "\r\n", 2);
	}
	n += (size_t)sprintf(line + n, "\r\n");
	b_add(&want, "END\r\n", 5);
	b_add(&got, "", 0);

	size_t off = 0, rounds = 0;
	while (off < n || mc_session_output(f.s, &len) != NULL) {
		size_t used = mc_session_input(f.s, line + off, n - off);
		assert_true(used <= n - off);
		off += used;
		(void)mc_session_output(f.s, &len);
		/* the reply held: at most MC_OUT_HIGH and one value */
		assert_true(len < MC_OUT_HIGH + VSZ + 64);
		if (off < n) {
			/* paused: it wants nothing until the reply is out */
			assert_true(len >= MC_OUT_HIGH);
			assert_false(mc_session_wants_input(f.s));
			assert_int_equal(mc_session_input(f.s, line + off,
			                                  n - off), 0);
		}
		/* write it out in two parts */
		const char *p = mc_session_output(f.s, &len);
		if (len > 0) {
			b_add(&got, p, len / 2);
			mc_session_sent(f.s, len / 2);
			p = mc_session_output(f.s, &len);
			b_add(&got, p, len);
			mc_session_sent(f.s, len);
		}
		rounds++;
		assert_true(rounds < 10 * NV);
	}
	assert_true(rounds > NV / 2); /* it did stop and go */
	expect_bytes(line, n, &got, want.p, want.n, __FILE__, __LINE__);

	/* a client that pipelines gets and never reads */
	struct bytes req = {0};
	for (int i = 0; i < 1000; i++)
		b_add(&req, "get big1\r\n", 10);
	size_t used = mc_session_input(f.s, req.p, req.n);
	(void)mc_session_output(f.s, &len);
	assert_true(used < 100);
	assert_true(len >= MC_OUT_HIGH && len < MC_OUT_HIGH + VSZ + 64);
	assert_int_equal(mc_session_input(f.s, req.p + used, req.n - used), 0);
	fx_close(&f);
}

/* ------------------------------------------------------------------------
 * Authentication
 */

static const char *write_file(const char *name, const char *text)
{
	static char path[512];
	snprintf(path, sizeof(path), "%s/%s", h_tmpdir("mcauth"), name);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	return path;
}

static void test_auth_load(void **state)
{
	(void)state;
	struct mc_user *u;
	size_t n;
	char why[256];

	assert_int_equal(mc_auth_load(write_file("ok", "# users\n\nalice:secret\n"
	                                         "bob:pw:with:colons\r\n"),
	                              &u, &n, why, sizeof(why)), 0);
	assert_int_equal(n, 2);
	assert_string_equal(u[0].user, "alice");
	assert_string_equal(u[0].pass, "secret");
	assert_string_equal(u[1].user, "bob");
	assert_string_equal(u[1].pass, "pw:with:colons");
	mc_auth_free(u, n);

	static const struct {
		const char *text, *why;
	} bad[] = {
		{"", "no user"},
		{"# only a comment\n\n", "no user"},
		{"alice\n", "line 1: no ':'"},
		{"a:b\n:pass\n", "line 2: an empty user name"},
		{"alice:\n", "line 1: an empty password"},
		{"al ice:pw\n", "line 1: a space"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		u = (struct mc_user *)1;
		assert_int_equal(mc_auth_load(write_file("bad", bad[i].text),
		                              &u, &n, why, sizeof(why)), -1);
		assert_null(u);
		assert_int_equal(n, 0);
		if (strstr(why, bad[i].why) == NULL)
			fail_msg("auth file %zu: %s", i, why);
	}
	assert_int_equal(mc_auth_load("/nonexistent/users", &u, &n, why,
	                              sizeof(why)), -1);
	assert_non_null(strstr(why, "No such file"));
}

static void test_auth(void **state)
{
	(void)state;
	struct fx f;
	struct mc_user *u;
	size_t n;
	char why[256];

	fx_open(&f, "mcauth", 8 << 20, 4096);
	assert_int_equal(mc_auth_load(write_file("users", "alice:secret\n"
	                                         "bob:pw2\n"),
	                              &u, &n, why, sizeof(why)), 0);
	f.srv.users = u;
	f.srv.nusers = n;
	fx_reconnect(&f);

	/* before authenticating every command is refused */
	EXPECT(&f, "get k\r\nversion\r\nmg k v\r\nstats\r\nflush_all\r\n"
	           "delete k\r\nincr k 1\r\nquit\r\n",
	       "CLIENT_ERROR unauthenticated\r\nCLIENT_ERROR unauthenticated\r\n"
	       "CLIENT_ERROR unauthenticated\r\nCLIENT_ERROR unauthenticated\r\n"
	       "CLIENT_ERROR unauthenticated\r\nCLIENT_ERROR unauthenticated\r\n"
	       "CLIENT_ERROR unauthenticated\r\nCLIENT_ERROR unauthenticated\r\n");
	assert_false(mc_session_closing(f.s));
	EXPECT(&f, "ms k 1\r\nx\r\n",
	       "CLIENT_ERROR unauthenticated\r\nCLIENT_ERROR unauthenticated\r\n");
	/* a set is an attempt: its data the token */
	EXPECT(&f, "set k 0 0 1\r\nx\r\n",
	       "CLIENT_ERROR bad authentication token format\r\n");
	EXPECT(&f, "set auth 0 0 12\r\nalice wrong!\r\n",
	       "CLIENT_ERROR authentication failure\r\n");
	EXPECT(&f, "set auth 0 0 14\r\nmallory secret\r\n",
	       "CLIENT_ERROR authentication failure\r\n");
	EXPECT(&f, "set auth 0 0 0\r\n\r\n",
	       "CLIENT_ERROR bad authentication token format\r\n");
	EXPECT(&f, "set auth 0 0 11\r\nalice secre\r\n",
	       "CLIENT_ERROR authentication failure\r\n");
	EXPECT(&f, "set auth 0 0 99999\r\n", "CLIENT_ERROR auth token too long\r\n");
	EXPECT(&f, "set auth 0 0 3\r\nabcde\r\nget k\r\n",
	       "CLIENT_ERROR bad command line termination\r\n"
	       "CLIENT_ERROR unauthenticated\r\n");
	u_absent(f.kv, "auth", 4);
	u_absent(f.kv, "k", 1);
	/* split anywhere, the right token authenticates */
	const char *ok = "set auth 0 0 12\r\nalice secret\r\nset k 0 0 2\r\nhi\r\n"
	                 "get k\r\n";
	const char *w = "STORED\r\nSTORED\r\nVALUE k 0 2\r\nhi\r\nEND\r\n";
	for (size_t c = 1; c <= strlen(ok); c++) {
		fx_reconnect(&f);
		struct bytes r = feed(&f, ok, strlen(ok), c);
		expect_bytes(ok, strlen(ok), &r, w, strlen(w), __FILE__,
		             __LINE__);
		h_free(r.p);
	}
	u_absent(f.kv, "auth", 4);
	fx_reconnect(&f);
	EXPECT(&f, "set x 1 2 7\r\nbob pw2\r\nmn\r\n", "STORED\r\nMN\r\n");
	/* a new connection starts over */
	fx_reconnect(&f);
	EXPECT(&f, "get k\r\n", "CLIENT_ERROR unauthenticated\r\n");
	/* a long line before authenticating closes */
	char *big = h_alloc(4000);
	memset(big, 'x', 3999);
	big[3999] = '\0';
	EXPECT(&f, big, "");
	assert_true(mc_session_closing(f.s));

	fx_reconnect(&f);
	EXPECT(&f, "set auth 0 0 7\r\nbob pw2\r\n", "STORED\r\n");
	char *st = ask(&f, "stats\r\n");
	assert_int_equal(num_after(st, "STAT auth_cmds "), strlen(ok) + 5);
	assert_int_equal(num_after(st, "STAT auth_errors "), 3);
	f.srv.users = NULL;
	f.srv.nusers = 0;
	mc_auth_free(u, n);
	fx_close(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_storage, h_teardown),
		cmocka_unit_test_teardown(test_cas, h_teardown),
		cmocka_unit_test_teardown(test_libkv_both_ways, h_teardown),
		cmocka_unit_test_teardown(test_exptime, h_teardown),
		cmocka_unit_test_teardown(test_incr_decr, h_teardown),
		cmocka_unit_test_teardown(test_delete_touch, h_teardown),
		cmocka_unit_test_teardown(test_flush_all, h_teardown),
		cmocka_unit_test_teardown(test_misc_commands, h_teardown),
		cmocka_unit_test_teardown(test_stats, h_teardown),
		cmocka_unit_test_teardown(test_errors, h_teardown),
		cmocka_unit_test_teardown(test_long_lines, h_teardown),
		cmocka_unit_test_teardown(test_bad_data_chunk, h_teardown),
		cmocka_unit_test_teardown(test_max_value, h_teardown),
		cmocka_unit_test_teardown(test_meta, h_teardown),
		cmocka_unit_test_teardown(test_splits, h_teardown),
		cmocka_unit_test_teardown(test_pipeline, h_teardown),
		cmocka_unit_test_teardown(test_backpressure, h_teardown),
		cmocka_unit_test_teardown(test_auth_load, h_teardown),
		cmocka_unit_test_teardown(test_auth, h_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
