/*
 * workload.c - self-describing values, the stress writer and reader loops,
 * and forked children that are always reaped. See workload.h.
 *
 * Nothing here calls cmocka except sw_fork/sw_shared (which run in the test
 * process): the loops run in forked children and in threads, and report a
 * violation through their err buffer.
 */
#include "workload.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "harness.h"

/* ------------------------------------------------------------------------
 * Random numbers, time, environment
 */

uint64_t sw_rand(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

uint64_t sw_range(uint64_t *s, uint64_t lo, uint64_t hi)
{
	return lo + sw_rand(s) % (hi - lo + 1);
}

bool sw_pct(uint64_t *s, unsigned pct)
{
	return sw_rand(s) % 100 < pct;
}

uint64_t sw_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t sw_env_u64(const char *name, uint64_t dflt)
{
	const char *s = getenv(name);
	char *end;

	if (s == NULL || *s == '\0')
		return dflt;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno != 0 || *end != '\0')
		return dflt;
	return (uint64_t)v;
}

uint64_t sw_store_size(void)
{
	return sw_env_u64("KV_STRESS_STORE_MB", 64) << 20;
}

uint32_t sw_create_flags(bool *evict)
{
	*evict = sw_env_u64("KV_STRESS_EVICT", 0) == 1;
	return KV_CREATE_EXCL | (*evict ? 0 : KV_CREATE_NOEVICT);
}

uint64_t sw_max_items(const struct sw_params *p)
{
	return sw_env_u64("KV_STRESS_MAX_ITEMS", sw_nkeys(p));
}

uint64_t sw_seed(void)
{
	uint64_t s = sw_env_u64("KV_STRESS_SEED", 0);
	if (s != 0)
		return s;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
	    ((uint64_t)getpid() << 40);
	return s != 0 ? s : 1;
}

/* ------------------------------------------------------------------------
 * Keys and values
 */

size_t sw_key(uint32_t id, char *buf)
{
	int n = snprintf(buf, SW_KEYMAX, "k%u.", id);
	size_t len = (size_t)n, fill = id % 29;

	for (size_t i = 0; i < fill && len < SW_KEYMAX - 1; i++)
		buf[len++] = (char)('a' + (id + i) % 26);
	return len;
}

size_t sw_len(uint64_t *rng)
{
	uint64_t r = sw_rand(rng) % 100;

	if (r < 45)
		return (size_t)sw_range(rng, SW_VMIN, 256);
	if (r < 97)
		return (size_t)sw_range(rng, 257, 8192);
	return (size_t)sw_range(rng, 8193, SW_VMAX);
}

static uint64_t payload_seed(uint32_t key, uint32_t writer, uint64_t seq,
                             uint32_t len)
{
	return ((uint64_t)key * UINT64_C(0x9e3779b97f4a7c15)) ^
	       ((uint64_t)writer << 48) ^ (seq * UINT64_C(0xd6e8feb86659fd93)) ^
	       ((uint64_t)len << 20);
}

/* The payload: 8-byte words (seed + i) * odd constant. Cheap (it vectorises)
 * so that writers spend their time in the store, not making values, yet no
 * two (key, writer, seq, len) give the same bytes at the same offset. */
static void fill_payload(uint8_t *p, size_t n, uint64_t seed)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w = (seed + i) * UINT64_C(0xff51afd7ed558ccd);
		memcpy(p + i, &w, 8);
	}
	if (i < n) {
		uint64_t w = (seed + i) * UINT64_C(0xff51afd7ed558ccd);
		memcpy(p + i, &w, n - i);
	}
}

static uint64_t checksum(const uint8_t *v, size_t len)
{
	uint64_t hs = XXH64(v, offsetof(struct sw_vhdr, check), 0);
	return XXH64(v + SW_VMIN, len - SW_VMIN, hs);
}

void sw_encode(void *buf, size_t len, uint32_t key, uint32_t writer,
               uint64_t seq)
{
	uint8_t *v = buf;
	struct sw_vhdr h = {
		.magic = SW_MAGIC,
		.key = key,
		.writer = writer,
		.len = (uint32_t)len,
		.seq = seq,
		.check = 0,
	};

	memcpy(v, &h, sizeof(h));
	fill_payload(v + SW_VMIN, len - SW_VMIN,
	             payload_seed(key, writer, seq, (uint32_t)len));
	h.check = checksum(v, len);
	memcpy(v, &h, sizeof(h));
}

static void append(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void append(char *err, size_t errlen, const char *fmt, ...)
{
	size_t used = strnlen(err, errlen);
	va_list ap;

	if (used + 1 >= errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err + used, errlen - used, fmt, ap);
	va_end(ap);
}

void sw_dump(char *err, size_t errlen, const void *buf, size_t vlen,
             size_t off, size_t n)
{
	const uint8_t *b = buf;

	if (off > vlen)
		off = vlen;
	if (n > vlen - off)
		n = vlen - off;
	off &= ~(size_t)15;
	for (size_t i = off; i < off + n; i += 16) {
		append(err, errlen, "\n    %06zx:", i);
		for (size_t j = i; j < i + 16 && j < vlen; j++)
			append(err, errlen, " %02x", b[j]);
	}
}

int sw_verify(const void *buf, size_t vlen, uint32_t key, struct sw_vhdr *h,
              char *err, size_t errlen)
{
	const uint8_t *v = buf;
	char k[SW_KEYMAX];
	size_t kl = sw_key(key, k);

	err[0] = '\0';
	if (vlen < SW_VMIN) {
		append(err, errlen,
		       "key %u \"%.*s\": value of %zu bytes is shorter than any "
		       "value written (%u):",
		       key, (int)kl, k, vlen, SW_VMIN);
		sw_dump(err, errlen, v, vlen, 0, vlen);
		return -1;
	}
	memcpy(h, v, sizeof(*h));
	const char *why = NULL;
	if (h->magic != SW_MAGIC)
		why = "bad magic";
	else if (h->key != key)
		why = "the value names another key";
	else if (h->len != vlen)
		why = "length field differs from the length returned";
	else if (h->check != checksum(v, vlen))
		why = "checksum mismatch (torn or corrupt value)";
	if (why == NULL)
		return 0;

	append(err, errlen,
	       "key %u \"%.*s\": %s: got %zu bytes {magic %#x, key %u, writer "
	       "%u, len %u, seq %" PRIu64 ", check %#" PRIx64 "}",
	       key, (int)kl, k, why, vlen, h->magic, h->key, h->writer, h->len,
	       h->seq, h->check);
	/* Where does the payload first differ from what its header says? */
	size_t diff = 0;
	if (h->magic == SW_MAGIC && h->len == vlen) {
		uint8_t *want = malloc(vlen);
		if (want != NULL) {
			fill_payload(want + SW_VMIN, vlen - SW_VMIN,
			             payload_seed(h->key, h->writer, h->seq,
			                          h->len));
			for (diff = SW_VMIN; diff < vlen; diff++)
				if (want[diff] != v[diff])
					break;
			free(want);
			if (diff < vlen)
				append(err, errlen,
				       "; payload differs from offset %zu",
				       diff);
			else
				append(err, errlen, "; payload as expected");
		}
	}
	append(err, errlen, "\n  first bytes:");
	sw_dump(err, errlen, v, vlen, 0, 64);
	if (diff > 64 && diff < vlen) {
		append(err, errlen, "\n  around offset %zu:", diff);
		sw_dump(err, errlen, v, vlen, diff > 32 ? diff - 32 : 0, 96);
	}
	return -1;
}

/* ------------------------------------------------------------------------
 * The writer
 */

static int wfail(struct sw_writer *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int wfail(struct sw_writer *w, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(w->err, sizeof(w->err), "writer %u: ", w->id);

	va_start(ap, fmt);
	vsnprintf(w->err + n, sizeof(w->err) - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

static const char *pstate_name(uint32_t s)
{
	return s == SW_ABSENT ? "absent" : s == SW_PRESENT ? "present" :
	                                                     "present (1 ms ttl)";
}

/* The write just acknowledged must read back as itself. */
static int readback(struct sw_writer *w, uint8_t *rb, uint32_t id,
                    const char *key, size_t kl, uint64_t seq, size_t len)
{
	size_t vlen = 0;
	struct sw_vhdr h;
	char why[SW_ERRLEN];
	int rc = kv_get(w->kv, key, kl, rb, SW_VMAX, &vlen);

	w->st.readback++;
	if (rc == KV_ENOTFOUND && w->p->evict) {
		w->st.evicted++;
		return 0;
	}
	if (rc != KV_OK)
		return wfail(w, "key %u: read back after an acknowledged put of "
		                "seq %" PRIu64 ": %s",
		             id, seq, kv_errname(rc));
	if (sw_verify(rb, vlen, id, &h, why, sizeof(why)) != 0)
		return wfail(w, "read back: %s", why);
	if (h.writer != w->id || h.seq != seq || vlen != len)
		return wfail(w, "key %u: read back seq %" PRIu64 " writer %u "
		                "(%zu bytes) right after putting seq %" PRIu64
		                " (%zu bytes)",
		             id, h.seq, h.writer, vlen, seq, len);
	return 0;
}

static int shared_op(struct sw_writer *w, uint8_t *val)
{
	const struct sw_params *p = w->p;
	uint32_t id = (uint32_t)(sw_rand(&w->rng) % p->nshared);
	char key[SW_KEYMAX];
	size_t kl = sw_key(id, key);
	uint64_t seq = ++w->seq;
	int rc;

	if (sw_pct(&w->rng, 10)) {
		w->st.dels++;
		rc = kv_del(w->kv, key, kl);
		if (rc == KV_ENOTFOUND)
			w->st.enotfound++;
		else if (rc != KV_OK)
			return wfail(w, "kv_del(key %u): %s", id, kv_errname(rc));
		return 0;
	}
	size_t len = sw_len(&w->rng);
	struct kv_put_opts o = {0};
	unsigned r = (unsigned)(sw_rand(&w->rng) % 100);
	if (r < 8) {
		o.flags = KV_PUT_NX;
		w->st.nx++;
	} else if (r < 16) {
		o.flags = KV_PUT_XX;
		w->st.xx++;
	} else if (r < 22) {
		o.ttl_ms = p->ttl_long_ms;
		w->st.ttl++;
	} else if (r < 24) {
		o.ttl_ms = 1;
		w->st.ttl1++;
	}
	sw_encode(val, len, id, w->id, seq);
	w->st.puts++;
	rc = kv_put(w->kv, key, kl, val, len, &o);
	if (rc == KV_OK)
		return 0;
	if (rc == KV_EEXIST && (o.flags & KV_PUT_NX)) {
		w->st.eexist++;
		return 0;
	}
	if (rc == KV_ENOTFOUND && (o.flags & KV_PUT_XX)) {
		w->st.enotfound++;
		return 0;
	}
	if (rc == KV_EFULL) {
		w->st.efull++;
		return 0;
	}
	return wfail(w, "kv_put(key %u, %zu bytes, flags %#x, ttl %" PRIu64
	                "): %s",
	             id, len, o.flags, o.ttl_ms, kv_errname(rc));
}

static int private_op(struct sw_writer *w, uint8_t *val, uint8_t *rb)
{
	const struct sw_params *p = w->p;
	uint32_t i = (uint32_t)(sw_rand(&w->rng) % p->npriv);
	uint32_t id = sw_priv(p, w->id, i);
	struct sw_priv *m = &w->priv[i];
	char key[SW_KEYMAX];
	size_t kl = sw_key(id, key);
	uint64_t seq = ++w->seq;
	unsigned r = (unsigned)(sw_rand(&w->rng) % 100);
	int rc;

	if (r < 12) {
		w->st.dels++;
		rc = kv_del(w->kv, key, kl);
		if (rc != KV_OK && rc != KV_ENOTFOUND)
			return wfail(w, "kv_del(own key %u): %s", id,
			             kv_errname(rc));
		/* In a store that evicts, a present key may be gone. */
		if ((m->state == SW_PRESENT && rc != KV_OK && !p->evict) ||
		    (m->state == SW_ABSENT && rc != KV_ENOTFOUND))
			return wfail(w, "kv_del(own key %u) gave %s, but its last "
			                "acknowledged state is %s (seq %" PRIu64
			                ")",
			             id, kv_errname(rc), pstate_name(m->state),
			             m->seq);
		if (rc == KV_ENOTFOUND)
			w->st.enotfound++;
		*m = (struct sw_priv){seq, 0, SW_ABSENT};
		return 0;
	}

	size_t len = sw_len(&w->rng);
	struct kv_put_opts o = {0};
	bool short_ttl = false;
	if (r < 17) {
		o.ttl_ms = 1;
		short_ttl = true;
		w->st.ttl1++;
	} else if (r < 25) {
		o.flags = KV_PUT_NX;
		w->st.nx++;
	} else if (r < 33) {
		o.flags = KV_PUT_XX;
		w->st.xx++;
	} else if (r < 41) {
		o.ttl_ms = p->ttl_long_ms;
		w->st.ttl++;
	}
	sw_encode(val, len, id, w->id, seq);
	w->st.puts++;
	rc = kv_put(w->kv, key, kl, val, len, &o);
	if (rc == KV_EFULL) {
		w->st.efull++;
		return 0;
	}
	if (rc != KV_OK && !(rc == KV_EEXIST && (o.flags & KV_PUT_NX)) &&
	    !(rc == KV_ENOTFOUND && (o.flags & KV_PUT_XX)))
		return wfail(w, "kv_put(own key %u, %zu bytes, flags %#x, ttl "
		                "%" PRIu64 "): %s",
		             id, len, o.flags, o.ttl_ms, kv_errname(rc));
	/* With the key's state known, NX and XX have one right answer. */
	bool live = m->state == SW_PRESENT && !p->evict;
	bool dead = m->state == SW_ABSENT;
	bool wrong = ((o.flags & KV_PUT_NX) && ((live && rc != KV_EEXIST) ||
	                                        (dead && rc != KV_OK))) ||
	             ((o.flags & KV_PUT_XX) && ((live && rc != KV_OK) ||
	                                        (dead && rc != KV_ENOTFOUND)));
	if (wrong)
		return wfail(w, "kv_put(own key %u, %s) gave %s, but its last "
		                "acknowledged state is %s (seq %" PRIu64 ")",
		             id, (o.flags & KV_PUT_NX) ? "NX" : "XX",
		             kv_errname(rc), pstate_name(m->state), m->seq);
	if (rc == KV_EEXIST) {
		w->st.eexist++;
		return 0;
	}
	if (rc == KV_ENOTFOUND) {
		w->st.enotfound++;
		return 0;
	}
	*m = (struct sw_priv){seq, (uint32_t)len,
	                      short_ttl ? SW_SHORT : SW_PRESENT};
	if (!short_ttl && sw_pct(&w->rng, 20))
		return readback(w, rb, id, key, kl, seq, len);
	return 0;
}

int sw_writer_run(struct sw_writer *w)
{
	const struct sw_params *p = w->p;
	uint8_t *val = malloc(SW_VMAX), *rb = malloc(SW_VMAX);
	int rc = 0;

	w->err[0] = '\0';
	if (val == NULL || rb == NULL) {
		rc = wfail(w, "out of memory");
		goto out;
	}
	for (uint64_t n = 0;; n++) {
		if ((n & 15) == 0 &&
		    (atomic_load_explicit(w->stop, memory_order_relaxed) ||
		     sw_now_ns() >= w->deadline_ns))
			break;
		bool priv = p->nshared == 0 ||
		            (p->npriv != 0 && sw_pct(&w->rng, 25));
		rc = priv ? private_op(w, val, rb) : shared_op(w, val);
		w->st.ops++;
		if (rc != 0)
			break;
	}
out:
	free(val);
	free(rb);
	return rc;
}

/* ------------------------------------------------------------------------
 * The reader
 */

static int rfail(struct sw_reader *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int rfail(struct sw_reader *r, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(r->err, sizeof(r->err), "reader %u%s: ", r->id,
	                 r->rdonly ? " (read-only)" : "");

	va_start(ap, fmt);
	vsnprintf(r->err + n, sizeof(r->err) - (size_t)n, fmt, ap);
	va_end(ap);
	return 1;
}

int sw_reader_init(struct sw_reader *r)
{
	size_t n = (size_t)sw_nkeys(r->p) * r->p->nwriters;

	r->last_seq = calloc(n ? n : 1, sizeof(uint64_t));
	r->buf = malloc(SW_VMAX + 64);
	r->err[0] = '\0';
	return r->last_seq != NULL && r->buf != NULL ? 0 : -1;
}

void sw_reader_fini(struct sw_reader *r)
{
	free(r->last_seq);
	free(r->buf);
	r->last_seq = NULL;
	r->buf = NULL;
}

int sw_get_verified(struct sw_reader *r, uint32_t key, struct sw_vhdr *h)
{
	const struct sw_params *p = r->p;
	const size_t full = SW_VMAX + 64;
	char k[SW_KEYMAX];
	size_t kl = sw_key(key, k);
	size_t cap, vlen = SIZE_MAX;
	unsigned c = (unsigned)(sw_rand(&r->rng) % 100);
	int rc;

	/* Mostly a buffer big enough for anything; sometimes none, or one
	 * too small for most values, to go through KV_ERANGE. */
	if (c < 70)
		cap = full;
	else if (c < 78)
		cap = 0;
	else if (c < 89)
		cap = (size_t)sw_range(&r->rng, 1, 256);
	else
		cap = (size_t)sw_range(&r->rng, 257, 9000);

	for (int tries = 0;; tries++) {
		/* A small buffer gets a canary, to see whether KV_ERANGE
		 * really leaves it untouched. */
		bool canary = cap > 0 && cap <= 9000;
		if (canary)
			memset(r->buf, 0xa5, cap);
		uint64_t t0 = sw_now_ns();
		rc = kv_get(r->kv, k, kl, r->buf, cap, &vlen);
		uint64_t dt = sw_now_ns() - t0;
		if (dt > r->st.max_get_ns)
			r->st.max_get_ns = dt;
		if (dt > 1000000u)
			r->st.slow[dt > 100000000u ? 2 : dt > 10000000u ? 1 : 0]++;
		r->st.ops++;
		if (rc != KV_ERANGE)
			break;
		r->st.erange++;
		if (vlen <= cap || vlen > SW_VMAX)
			return rfail(r, "key %u: KV_ERANGE with a %zu-byte buffer "
			                "but a value length of %zu",
			             key, cap, vlen);
		if (canary) {
			for (size_t i = 0; i < cap; i++) {
				if (r->buf[i] != 0xa5) {
					r->st.erange_touched++;
					break;
				}
			}
		}
		/* Retry with exactly the size asked for; a concurrent
		 * writer may have grown it again, so give up on exact
		 * sizes after a few tries. */
		cap = tries < 4 ? vlen : full;
		vlen = SIZE_MAX;
	}

	switch (rc) {
	case KV_OK:
		break;
	case KV_ENOTFOUND:
		r->st.misses++;
		return rc;
	case KV_EBUSY:
		if (r->rdonly) {
			r->st.busy++;
			return rc;
		}
		return rfail(r, "key %u: kv_get gave KV_EBUSY on a read-write "
		                "handle", key);
	default:
		return rfail(r, "key %u: kv_get: %s (%s)", key, kv_errname(rc),
		             kv_strerror(rc));
	}
	if (vlen > cap)
		return rfail(r, "key %u: KV_OK with vlen %zu > cap %zu", key,
		             vlen, cap);
	if (sw_verify(r->buf, vlen, key, h, r->err, sizeof(r->err)) != 0) {
		char why[SW_ERRLEN];
		memcpy(why, r->err, sizeof(why));
		return rfail(r, "%s", why);
	}
	int owner = sw_owner(p, key);
	if ((owner >= 0 && h->writer != (uint32_t)owner) ||
	    h->writer >= p->nwriters)
		return rfail(r, "key %u: value written by writer %u, but %s",
		             key, h->writer,
		             owner >= 0 ? "only its owner writes it" :
		                          "there is no such writer");
	/* One writer's puts of one key have increasing seqs: a reader that
	 * saw one must never see an older one afterwards. */
	uint64_t *last = &r->last_seq[(size_t)key * p->nwriters + h->writer];
	if (h->seq < *last)
		return rfail(r, "key %u: read seq %" PRIu64 " of writer %u "
		                "after having read its seq %" PRIu64
		                " (a stale value came back)",
		             key, h->seq, h->writer, *last);
	*last = h->seq;
	r->st.hits++;
	r->st.bytes += vlen;
	return KV_OK;
}

int sw_reader_run(struct sw_reader *r)
{
	const struct sw_params *p = r->p;
	struct sw_vhdr h;

	for (uint64_t n = 0;; n++) {
		if ((n & 15) == 0 &&
		    (atomic_load_explicit(r->stop, memory_order_relaxed) ||
		     sw_now_ns() >= r->deadline_ns))
			break;
		uint32_t key;
		if (p->nshared != 0 && (p->npriv == 0 || sw_pct(&r->rng, 80)))
			key = (uint32_t)(sw_rand(&r->rng) % p->nshared);
		else
			key = sw_priv(p,
			              (uint32_t)(sw_rand(&r->rng) % p->nwriters),
			              (uint32_t)(sw_rand(&r->rng) % p->npriv));
		if (sw_get_verified(r, key, &h) == 1)
			return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * The end of a run: every private key as its writer last saw it acked
 */

struct h_proc *sw_kvd(const char *store)
{
	if (sw_env_u64("KV_STRESS_KVD", 1) == 0)
		return NULL;
	return h_kvd(store, NULL);
}

int sw_kvd_stop(struct h_proc *kvd, char *err, size_t errlen)
{
	struct h_result r;
	int ret = 0;

	err[0] = '\0';
	if (kvd == NULL)
		return 0;
	bool ok = h_stop(kvd, SIGTERM, 10000, &r);
	if (!ok || r.code != 0) {
		snprintf(err, errlen, "kvd: %s, exit %d, signal %d; stderr: %.1000s",
		         ok ? "stopped" : "did not stop in 10 s", r.code, r.sig,
		         r.err != NULL ? r.err : "");
		ret = -1;
	}
	h_result_free(&r);
	return ret;
}

struct check_ctx {
	char *err;
	size_t errlen;
	unsigned n;
};

static void check_report(void *ctx, const char *problem)
{
	struct check_ctx *c = ctx;
	if (c->n++ < 20)
		append(c->err, c->errlen, "\n  kv_check: %s", problem);
}

int sw_check(kv_t *kv, char *err, size_t errlen)
{
	struct check_ctx c = {err, errlen, 0};
	err[0] = '\0';
	int rc = kv_check(kv, check_report, &c);
	if (c.n > 20)
		append(err, errlen, "\n  (%u problems in all)", c.n);
	return rc;
}

int sw_check_private(kv_t *kv, const struct sw_params *p, uint32_t w,
                     const struct sw_priv *priv, struct sw_vcount *c,
                     char *err, size_t errlen)
{
	uint8_t *buf = malloc(SW_VMAX + 64);
	int ret = 0;

	err[0] = '\0';
	if (buf == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (uint32_t i = 0; i < p->npriv && ret == 0; i++) {
		const struct sw_priv *m = &priv[i];
		uint32_t id = sw_priv(p, w, i);
		char k[SW_KEYMAX];
		size_t kl = sw_key(id, k), vlen = 0;
		struct sw_vhdr h;
		int rc = kv_get(kv, k, kl, buf, SW_VMAX + 64, &vlen);

		if (rc != KV_OK && rc != KV_ENOTFOUND) {
			snprintf(err, errlen, "key %u \"%.*s\": kv_get: %s", id,
			         (int)kl, k, kv_errname(rc));
			ret = -1;
			break;
		}
		if (rc == KV_ENOTFOUND) {
			if (m->state == SW_PRESENT && p->evict) {
				c->evicted++;
			} else if (m->state == SW_PRESENT) {
				snprintf(err, errlen,
				         "key %u \"%.*s\" of writer %u is missing; "
				         "its last acknowledged op put seq %" PRIu64
				         " (%u bytes)",
				         id, (int)kl, k, w, m->seq, m->len);
				ret = -1;
			} else if (m->state == SW_SHORT) {
				c->short_gone++;
			} else {
				c->absent++;
			}
			continue;
		}
		if (sw_verify(buf, vlen, id, &h, err, errlen) != 0) {
			ret = -1;
			break;
		}
		if (m->state == SW_ABSENT || h.writer != w || h.seq != m->seq ||
		    vlen != m->len) {
			char why[SW_ERRLEN];
			if (m->state == SW_ABSENT)
				snprintf(why, sizeof(why),
				         "absent (deleted at seq %" PRIu64 ")",
				         m->seq);
			else
				snprintf(why, sizeof(why),
				         "seq %" PRIu64 " (%u bytes)", m->seq,
				         m->len);
			snprintf(err, errlen,
			         "key %u \"%.*s\" of writer %u holds writer %u's "
			         "seq %" PRIu64 " (%zu bytes), but its last "
			         "acknowledged state is %s",
			         id, (int)kl, k, w, h.writer, h.seq, vlen, why);
			ret = -1;
			break;
		}
		if (m->state == SW_SHORT)
			c->short_kept++;
		else
			c->present++;
	}
	free(buf);
	return ret;
}

/* ------------------------------------------------------------------------
 * Children
 */

#define SW_MAXCHILD 256

static pid_t children[SW_MAXCHILD];
static int nchildren;

static void forget(pid_t pid)
{
	for (int i = 0; i < nchildren; i++) {
		if (children[i] == pid) {
			children[i] = children[--nchildren];
			return;
		}
	}
}

pid_t sw_fork(int (*fn)(void *), void *arg)
{
	pid_t parent = getpid();
	pid_t pid;

	if (nchildren == SW_MAXCHILD)
		fail_msg("stress: too many children");
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		fail_msg("stress: fork: %s", strerror(errno));
	if (pid == 0) {
		/* Die with the test, whatever happens to it. */
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		if (getppid() != parent)
			_exit(99);
		_exit(fn(arg));
	}
	children[nchildren++] = pid;
	return pid;
}

bool sw_poll(pid_t pid, int *status)
{
	pid_t r;

	do
		r = waitpid(pid, status, WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r == pid) {
		forget(pid);
		return true;
	}
	if (r < 0 && errno == ECHILD) {
		/* Not ours any more (reaped elsewhere): treat as gone. */
		forget(pid);
		*status = 0;
		return true;
	}
	return false;
}

bool sw_wait(pid_t pid, int timeout_ms, int *status)
{
	uint64_t end = sw_now_ns() + (uint64_t)timeout_ms * 1000000u;
	long step_us = 50;

	for (;;) {
		if (sw_poll(pid, status))
			return true;
		if (sw_now_ns() >= end)
			break;
		struct timespec ts = {0, step_us * 1000};
		nanosleep(&ts, NULL);
		if (step_us < 2000)
			step_us *= 2;
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
	forget(pid);
	return false;
}

void sw_kill_all(void)
{
	for (int i = 0; i < nchildren; i++)
		kill(children[i], SIGKILL);
	for (int i = 0; i < nchildren; i++)
		while (waitpid(children[i], NULL, 0) < 0 && errno == EINTR)
			;
	nchildren = 0;
}

int sw_teardown(void **state)
{
	sw_kill_all();
	return h_teardown(state);
}

const char *sw_status_str(int status, char *buf, size_t n)
{
	if (WIFEXITED(status))
		snprintf(buf, n, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, n, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(buf, n, "status %#x", status);
	return buf;
}

void *sw_shared(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE,
	               MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		fail_msg("stress: mmap: %s", strerror(errno));
	return p;
}
