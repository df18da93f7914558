/*
 * test_corrupt_loop.c - hundreds of damaged copies of one store, and the
 * real kv commands on each: every command ends within 2 s with exit 0, 1
 * or 2, none is killed by a signal, and none hands out another key's
 * bytes. The brief's promise for a corrupt store ("an error, never a
 * crash, a hang or another key's bytes"), and the issue's ("every kv
 * command ends within 2 s with a result or a clear error"), checked the
 * way an operator would meet them: through the CLI, on a store file whose
 * bytes went bad.
 *
 * The template
 * ------------
 * One small file-backed store (2 MiB, max_value 4096, so pages of 64 KiB
 * and only a dozen of them in use; an index sized for its keys) in the
 * test's temporary directory, so a copy is a plain file copy. It holds
 * NKEYS keys, each value a self-describing one (workload.h: magic, key id,
 * length, checksum, payload), some with an hour's TTL, some with a TTL
 * that has expired by the time the copies are made. The test then reads
 * the template's own bytes (format.h) to learn where each key's item and
 * chunk lie, so it can tell a key's own (damaged) bytes from another's.
 *
 * A copy
 * ------
 * Copy i gets its own random stream (from the seed and i): 1-4 bytes are
 * changed (a bit flipped, a random byte, 0x00 or 0xff; scattered, or in a
 * run), half the time in the first pages, weighted towards the bytes that
 * matter (first_areas: the header's geometry and life word at 0x068, the
 * mutex at 0x080, the lock record, boot tag and repair word at 0x0c0, the
 * counters; the size classes; the journal's head and entries; the reader
 * counters; the index; the page table), and half the time in the data
 * pages (the header of an item the commands will read, anywhere in an
 * item's chunk, or anywhere in the pages in use). Then, in a child process
 * of its own, the real `kv` runs on the copy, each command timed and
 * bounded:
 *
 *   get K1, get K2 (an hour's TTL), get K3 (expired or absent), ttl K2,
 *   keys, stats, dump /dev/null, check, put NEW (value on stdin),
 *   del K4, get NEW, get K1, get K4
 *
 * What must hold, per command: it exits by itself within 2 s (it is
 * killed after 10 s to say how long it would have taken), with status 0,
 * 1 or 2, never by a signal (an ASan or UBSan report aborts: a signal).
 * A get that prints a value (exit 0) must print the key's own bytes:
 * exactly its value; or, when the damage or a repair changed the bytes of
 * its item, bytes that lie inside its own chunk and read as they are in
 * the file. Never a value that names another key, never bytes past the end
 * of its chunk (the next chunk is another key's). NEW must read back
 * exactly as put.
 *
 * At the end the test prints copies, commands, the longest command (and
 * which), results by command and exit status, what `kv check` said of the
 * copies, and the time taken; it fails listing every violation, each with
 * the damage that caused it and the path of the damaged copy, kept for
 * replay: `kv -s PATH COMMAND` reproduces it. (The first it found: a
 * damaged value length made `kv get` print the next chunk's bytes, another
 * key's; fixed in 2cfa701 by holding an item to its chunk.)
 *
 * Environment: KV_CORRUPT_COPIES (320), KV_CORRUPT_SEED (random; printed),
 * KV_CORRUPT_ONLY=N (only copy N, to replay one), KV_CORRUPT_JOBS (2
 * copies at a time), KV_CORRUPT_KEEP (directory for failing copies;
 * default $KV_TEST_BUILD_DIR/corrupt-loop-failures).
 *
 * Not in the "stress" suite: the ThreadSanitizer run executes that suite,
 * and here each process has one thread touching the store at a time (the
 * commands run one after another), so TSan has no race to see and would
 * only make every command slower. The normal and ASan+UBSan runs cover it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "format.h"
#include "harness.h"
#include "workload.h"

#define NKEYS 300
#define STORE_SIZE (2u << 20)
#define MAX_VALUE 4096u
#define TTL_LONG_MS (3600u * 1000u)
#define LIMIT_MS 2000     /* the bound every command must meet */
#define KILL_MS 10000     /* past this the command is killed */
#define NEW_ID 100000u    /* key id of the key each copy puts */
#define MAXDMG 4

/* What a key of the template is and where its item lies. */
struct tkey {
	char name[SW_KEYMAX];
	size_t klen;
	uint8_t *val;
	size_t vlen;
	int ttl;         /* 0 none, 1 an hour, 2 expired */
	uint64_t item;   /* offset of its item (0: not found in the index) */
	uint64_t voff;   /* offset of its value */
	uint64_t cend;   /* end of its chunk */
};

static struct {
	const char *dir;
	const char *keep;
	uint64_t seed;
	uint8_t *img;    /* the template's bytes */
	size_t size;
	uint64_t index_off, nbuckets, ptab_off, arena_off, npages, page_size;
	uint64_t page_bump;
	uint32_t nclasses;
	struct tkey k[NKEYS];
	uint32_t live[NKEYS]; /* ids of keys with an item, and no short TTL */
	uint32_t nlive;
	uint32_t withttl[NKEYS];
	uint32_t nttl;
} T;

/* ------------------------------------------------------------------------
 * Results, one record per copy in memory shared with the children.
 */
enum kind { K_GET, K_TTL, K_KEYS, K_STATS, K_DUMP, K_CHECK, K_PUT, K_DEL,
            K_NKINDS };
static const char *kind_name[K_NKINDS] = {"get", "ttl", "keys", "stats",
                                          "dump", "check", "put", "del"};

enum check_out { CK_NONE, CK_OK, CK_REPAIRED, CK_CORRUPT, CK_NOOPEN,
                 CK_BUSY, CK_OTHER, CK_NOUTS };
static const char *check_name[CK_NOUTS] = {
    "not run", "sound", "sound after repairing the lock", "corrupt",
    "not opened (not a store, version, size...)", "busy", "other error"};

/* Why a command answered 2, from its stderr. */
enum why { W_BUSY, W_CORRUPT, W_NOTSTORE, W_OTHER, W_NWHY };

struct cres {
	uint32_t done;
	uint32_t ncmd;
	uint32_t exits[K_NKINDS][4]; /* exit 0, 1, 2, anything else */
	uint32_t why2[W_NWHY];
	uint32_t over1s;             /* commands that took over 1 s */
	uint32_t v_exact, v_own;     /* values: exact, own damaged bytes */
	uint32_t check;              /* enum check_out */
	uint32_t violations;
	uint64_t total_ns, max_ns;
	char max_cmd[96];
	char damage[160];
	char fail[1536];
};

static struct cres *R;

/* ------------------------------------------------------------------------
 * The template
 */
static void tput(kv_t *kv, uint32_t id, uint64_t *rng)
{
	struct tkey *k = &T.k[id];
	struct kv_put_opts o = {0};

	k->klen = sw_key(id, k->name);
	k->vlen = (size_t)sw_range(rng, SW_VMIN, 200);
	k->val = h_alloc(k->vlen);
	sw_encode(k->val, k->vlen, id, 0, 1);
	k->ttl = id % 5 == 1 ? 1 : id % 10 == 3 ? 2 : 0;
	o.ttl_ms = k->ttl == 1 ? TTL_LONG_MS : k->ttl == 2 ? 1 : 0;
	/* Some items carry client flags, which sit between the expiry and
	 * the key, so damage meets every header shape. */
	o.client_flags = id % 3 == 0 ? 0 : 0x5a000000u | id;
	assert_int_equal(kv_put(kv, k->name, k->klen, k->val, k->vlen, &o),
	                 KV_OK);
}

static uint64_t rd64(uint64_t off)
{
	uint64_t v;
	memcpy(&v, T.img + off, sizeof v);
	return v;
}

static uint32_t rd32(uint64_t off)
{
	uint32_t v;
	memcpy(&v, T.img + off, sizeof v);
	return v;
}

/* Where each key's item lies: walk the index of the template's bytes. */
static void locate(void)
{
	for (uint64_t b = 0; b < T.nbuckets; b++) {
		uint64_t bo = T.index_off + b * KV_CACHELINE;
		for (unsigned s = 0; s < KV_SLOTS; s++) {
			uint64_t w = rd64(bo + 8 + 8 * s);
			if (w == 0)
				continue;
			uint64_t it = KV_SLOT_OFF(w);
			assert_true(it >= T.arena_off && it + 64 <= T.size);
			uint16_t klen;
			memcpy(&klen, T.img + it + 4, 2);
			uint8_t fl = T.img[it + 7];
			uint64_t hl = kv_item_hdr_len(fl);
			unsigned id;
			if (sscanf((const char *)T.img + it + hl, "k%u.", &id) != 1 ||
			    id >= NKEYS || klen != T.k[id].klen ||
			    memcmp(T.img + it + hl, T.k[id].name, klen) != 0)
				fail_msg("template: slot %" PRIu64 "/%u names an "
				         "item that is no key of ours", b, s);
			uint64_t pg = (it - T.arena_off) / T.page_size;
			uint32_t cls = rd32(T.ptab_off + pg * sizeof(struct kv_page));
			assert_true(cls < T.nclasses);
			uint32_t csize = rd32(offsetof(struct kv_hdr, class_size) +
			                      4 * cls);
			struct tkey *k = &T.k[id];
			k->item = it;
			k->voff = it + hl + klen;
			k->cend = it + csize;
			assert_true(k->voff + k->vlen <= k->cend);
		}
	}
	T.nlive = T.nttl = 0;
	for (uint32_t id = 0; id < NKEYS; id++) {
		if (T.k[id].ttl == 2)
			continue;
		if (T.k[id].item == 0)
			fail_msg("template: key %u is not in the index", id);
		T.live[T.nlive++] = id;
		if (T.k[id].ttl == 1)
			T.withttl[T.nttl++] = id;
	}
}

static void build_template(const char *path)
{
	struct kv_options o = {.size = STORE_SIZE, .max_value = MAX_VALUE,
	                       .max_items = NKEYS + NKEYS / 4,
	                       .flags = KV_CREATE_EXCL | KV_CREATE_NOEVICT};
	uint64_t rng = T.seed ^ UINT64_C(0x74656d706c617465);
	kv_t *kv = NULL;

	assert_int_equal(kv_create(path, &o, &kv), KV_OK);
	for (uint32_t id = 0; id < NKEYS; id++)
		tput(kv, id, &rng);
	assert_int_equal(kv_check(kv, NULL, NULL), KV_OK);
	kv_close(kv);
	/* The short TTLs (1 ms) expire. */
	struct timespec ts = {0, 20 * 1000000L};
	nanosleep(&ts, NULL);

	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	assert_true(fd >= 0 && fstat(fd, &st) == 0);
	T.size = (size_t)st.st_size;
	T.img = h_alloc(T.size);
	assert_true(pread(fd, T.img, T.size, 0) == (ssize_t)T.size);
	close(fd);

	const struct kv_hdr *h = (const void *)T.img;
	T.index_off = h->index_off;
	T.nbuckets = h->nbuckets;
	T.ptab_off = h->ptab_off;
	T.arena_off = h->arena_off;
	T.npages = h->npages;
	T.page_size = h->page_size;
	T.nclasses = h->nclasses;
	T.page_bump = rd64(offsetof(struct kv_hdr, page_bump));
	assert_true(T.page_bump > 0 && T.page_bump <= T.npages);
	locate();
}

/* ------------------------------------------------------------------------
 * Damage
 */
struct dmg {
	unsigned n;
	uint64_t off[MAXDMG];
	uint8_t was[MAXDMG], now[MAXDMG];
	bool data; /* in the data pages, else the first pages */
};

static const char *area_of(uint64_t off)
{
	if (off < 0x068)
		return "geometry";
	if (off < 0x080)
		return "life";
	if (off < 0x0c0)
		return "mutex";
	if (off < 0x100)
		return "lock record";
	if (off < 0x200)
		return "counters";
	if (off < KV_CLASS_OFF)
		return "class sizes";
	if (off < KV_JOURNAL_OFF)
		return "classes";
	if (off < KV_RSTAT_OFF)
		return "journal";
	if (off < KV_ARENA_OFF)
		return "reader counters";
	if (off < T.index_off)
		return "data";
	if (off < T.ptab_off)
		return "index";
	return "page table";
}

/* An offset in the first pages, weighted towards the bytes that matter:
 * percent of the first-pages damage, and where. */
static const struct {
	unsigned pct;
	int area; /* a fixed range, or -1 classes, -2 index, -3 page table */
	uint64_t lo, len;
} first_areas[] = {
    {12, 0, 0x000, 0x080},   /* geometry, life word */
    {10, 0, 0x080, 0x040},   /* the mutex */
    {8, 0, 0x0c0, 0x040},    /* kvd, lock record, boot tag, repair word */
    {6, 0, 0x100, 0x100},    /* the writer counters */
    {3, 0, 0x200, 0x200},    /* class sizes */
    {10, -1, 0, 0},          /* the classes in use */
    {10, 0, KV_JOURNAL_OFF, 0x40 + 64 * sizeof(struct kv_logent)},
    {3, 0, KV_JOURNAL_OFF, KV_RSTAT_OFF - KV_JOURNAL_OFF},
    {3, 0, KV_RSTAT_OFF, KV_ARENA_OFF - KV_RSTAT_OFF},
    {30, -2, 0, 0},          /* the index */
    {5, -3, 0, 0},           /* the page table */
};

static uint64_t first_pages_off(uint64_t *rng)
{
	uint64_t r = sw_rand(rng) % 100, lo = 0, len = 1;

	for (size_t i = 0; i < sizeof first_areas / sizeof first_areas[0];
	     i++) {
		if (r >= first_areas[i].pct) {
			r -= first_areas[i].pct;
			continue;
		}
		switch (first_areas[i].area) {
		case -1:
			lo = KV_CLASS_OFF;
			len = (uint64_t)T.nclasses * sizeof(struct kv_class);
			break;
		case -2:
			lo = T.index_off;
			len = T.nbuckets * KV_CACHELINE;
			break;
		case -3:
			lo = T.ptab_off;
			len = T.npages * sizeof(struct kv_page);
			break;
		default:
			lo = first_areas[i].lo;
			len = first_areas[i].len;
			break;
		}
		break;
	}
	return lo + sw_rand(rng) % len;
}

/* An offset in the data pages: the header of an item the commands will
 * read (its lengths, flags, expiry: what bounds the copy), anywhere in
 * such an item's chunk or another key's, or anywhere in the pages in
 * use. */
static uint64_t data_off(uint64_t *rng, const uint32_t *read, unsigned nread)
{
	uint64_t r = sw_rand(rng) % 100;
	const struct tkey *k = &T.k[read[sw_rand(rng) % nread]];

	if (r < 30)
		return k->item + sw_rand(rng) % KV_ITEM_HDR_MAX;
	if (r < 45)
		return k->item + sw_rand(rng) % (k->cend - k->item);
	if (r < 60) {
		k = &T.k[T.live[sw_rand(rng) % T.nlive]];
		return k->item + sw_rand(rng) % (k->cend - k->item);
	}
	return T.arena_off + sw_rand(rng) % (T.page_bump * T.page_size);
}

static uint8_t new_byte(uint8_t was, uint64_t *rng)
{
	uint8_t b;

	switch (sw_rand(rng) % 6) {
	case 0:
	case 1:
		b = was ^ (uint8_t)(1u << (sw_rand(rng) % 8));
		break;
	case 2:
	case 3:
		b = (uint8_t)sw_rand(rng);
		break;
	case 4:
		b = 0x00;
		break;
	default:
		b = 0xff;
		break;
	}
	if (b == was)
		b = was ^ (uint8_t)(1u << (sw_rand(rng) % 8));
	return b;
}

static void make_damage(struct dmg *d, uint8_t *img, uint64_t *rng,
                        const uint32_t *read, unsigned nread)
{
	d->n = 1 + (unsigned)(sw_rand(rng) % MAXDMG);
	d->data = sw_pct(rng, 50);
	bool run = sw_pct(rng, 50); /* consecutive bytes, or scattered */
	uint64_t at = 0;
	for (unsigned i = 0; i < d->n; i++) {
		if (i == 0 || !run)
			at = d->data ? data_off(rng, read, nread)
			             : first_pages_off(rng);
		else
			at = at + 1 < T.size ? at + 1 : at;
		d->off[i] = at;
		d->was[i] = img[at];
		d->now[i] = new_byte(img[at], rng);
		img[at] = d->now[i];
	}
}

static void describe(const struct dmg *d, char *buf, size_t cap)
{
	size_t n = 0;
	for (unsigned i = 0; i < d->n && n < cap; i++)
		n += (size_t)snprintf(buf + n, cap - n, "%s%#" PRIx64 " (%s) "
		                      "%02x->%02x", i ? ", " : "", d->off[i],
		                      area_of(d->off[i]), d->was[i], d->now[i]);
}

/* ------------------------------------------------------------------------
 * One copy, in a child process
 */
struct copy {
	unsigned idx;
	char path[256];
	uint8_t *img; /* the damaged bytes, before any command */
	struct dmg d;
	struct cres *r;
	char new_name[SW_KEYMAX];
	size_t new_klen;
	uint8_t new_val[200];
	size_t new_vlen;
};

static void violation(struct copy *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void violation(struct copy *c, const char *fmt, ...)
{
	struct cres *r = c->r;
	size_t n = strlen(r->fail);
	va_list ap;

	r->violations++;
	if (n + 2 >= sizeof r->fail)
		return;
	va_start(ap, fmt);
	n += (size_t)vsnprintf(r->fail + n, sizeof r->fail - n, fmt, ap);
	va_end(ap);
	if (n + 1 < sizeof r->fail)
		strcat(r->fail, "\n");
}

static bool damaged_in(const struct copy *c, uint64_t lo, uint64_t hi)
{
	for (unsigned i = 0; i < c->d.n; i++)
		if (c->d.off[i] >= lo && c->d.off[i] < hi)
			return true;
	return false;
}

/* The first line of a command's stderr, for messages. */
static const char *first_line(const struct h_result *res, char *buf,
                              size_t cap)
{
	size_t n = 0;
	while (n + 1 < cap && n < res->err_len && res->err[n] != '\n') {
		char ch = res->err[n];
		buf[n++] = ch >= 0x20 && ch < 0x7f ? ch : '?';
	}
	buf[n] = '\0';
	return buf;
}

/* Is v, whole and with its checksum, the value of a key other than id?
 * (A value whose key field alone was damaged is not: its checksum fails.) */
static bool names_other_key(const uint8_t *v, size_t n, uint32_t id,
                            uint32_t *other)
{
	struct sw_vhdr h;
	char err[SW_ERRLEN];
	if (n < sizeof h)
		return false;
	memcpy(&h, v, sizeof h);
	if (h.magic != SW_MAGIC || h.key == id ||
	    sw_verify(v, n, h.key, &h, err, sizeof err) != 0)
		return false;
	*other = h.key;
	return true;
}

/* A get of template key id printed v (exit 0): is it the key's own? */
static void judge_value(struct copy *c, uint32_t id, const uint8_t *v,
                        size_t n, const char *cmd)
{
	const struct tkey *k = &T.k[id];
	uint32_t other;

	if (n == k->vlen && memcmp(v, k->val, n) == 0) {
		c->r->v_exact++;
		return;
	}
	if (names_other_key(v, n, id, &other)) {
		violation(c, "%s: printed %zu bytes that are the value of "
		          "another key (id %u), not its own (%zu bytes)",
		          cmd, n, other, k->vlen);
		return;
	}
	if (k->item == 0 || k->voff + n > k->cend) {
		violation(c, "%s: printed %zu bytes: its value starts at %#"
		          PRIx64 " and its chunk ends at %#" PRIx64 ", so "
		          "bytes past its chunk (another key's) were printed",
		          cmd, n, k->voff, k->cend);
		return;
	}
	/* Its own chunk's bytes, as the damage left them or as they are now
	 * (a repair, e.g. a replayed journal, may have changed them). */
	bool as_damaged = memcmp(v, c->img + k->voff, n) == 0;
	bool as_now = false;
	int fd = open(c->path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		uint8_t *cur = malloc(n ? n : 1);
		as_now = cur != NULL &&
		         pread(fd, cur, n, (off_t)k->voff) == (ssize_t)n &&
		         memcmp(v, cur, n) == 0;
		free(cur);
		close(fd);
	}
	if (as_damaged || as_now) {
		c->r->v_own++;
		if (!damaged_in(c, k->item, k->cend) && !as_now)
			violation(c, "%s: printed %zu bytes of its chunk that "
			          "differ from its value, yet no damaged byte "
			          "lies in its chunk", cmd, n);
		return;
	}
	violation(c, "%s: printed %zu bytes that are neither its value "
	          "(%zu bytes) nor the bytes of its chunk", cmd, n, k->vlen);
}

static enum why why_of(const struct h_result *res)
{
	const char *e = res->err ? res->err : "";
	if (strstr(e, "busy") != NULL)
		return W_BUSY;
	if (strstr(e, "corrupt") != NULL)
		return W_CORRUPT;
	if (strstr(e, "not a kv store") != NULL ||
	    strstr(e, "version") != NULL || strstr(e, "truncated") != NULL ||
	    strstr(e, "not initialised") != NULL ||
	    strstr(e, "destroyed") != NULL)
		return W_NOTSTORE;
	return W_OTHER;
}

/* Run `kv -s PATH args...` (NULL-terminated) with an optional stdin, time
 * it and check what every command must do. Returns its exit code (-1 if
 * it did not exit); *res is filled and must be freed. */
static int run_kv(struct copy *c, enum kind kind, struct h_result *res,
                  const void *in, size_t inlen, const char *a1,
                  const char *a2)
{
	const char *argv[8];
	int n = 0;
	argv[n++] = h_kv_bin();
	argv[n++] = "-s";
	argv[n++] = c->path;
	argv[n++] = kind_name[kind];
	if (a1 != NULL)
		argv[n++] = a1;
	if (a2 != NULL)
		argv[n++] = a2;
	argv[n] = NULL;

	char cmd[96];
	snprintf(cmd, sizeof cmd, "kv %s%s%.40s%s%.40s", kind_name[kind],
	         a1 ? " " : "", a1 ? a1 : "", a2 ? " " : "", a2 ? a2 : "");
	struct h_spawn_opts o = {.stdin_data = in, .stdin_len = inlen};
	uint64_t t0 = sw_now_ns();
	struct h_proc *p = h_start(argv, &o);
	h_wait(p, KILL_MS, res);
	uint64_t dt = sw_now_ns() - t0;

	struct cres *r = c->r;
	r->ncmd++;
	r->total_ns += dt;
	if (dt > r->max_ns) {
		r->max_ns = dt;
		snprintf(r->max_cmd, sizeof r->max_cmd, "%s", cmd);
	}
	if (dt > 1000000000u)
		r->over1s++;
	char line[200];
	if (res->timed_out)
		violation(c, "%s: still running after %d ms (killed): %s", cmd,
		          KILL_MS, first_line(res, line, sizeof line));
	else if (res->sig != 0)
		violation(c, "%s: killed by signal %d: %s", cmd, res->sig,
		          first_line(res, line, sizeof line));
	else if (dt > (uint64_t)LIMIT_MS * 1000000u)
		violation(c, "%s: took %.2f s (limit %d ms), exit %d: %s", cmd,
		          (double)dt / 1e9, LIMIT_MS, res->code,
		          first_line(res, line, sizeof line));
	int code = res->code;
	unsigned slot = code >= 0 && code <= 2 ? (unsigned)code : 3;
	r->exits[kind][slot]++;
	if (slot == 3 && !res->timed_out && res->sig == 0)
		violation(c, "%s: exit status %d (only 0, 1 or 2 are allowed): "
		          "%s", cmd, code, first_line(res, line, sizeof line));
	if (code == 2)
		r->why2[why_of(res)]++;
	return code;
}

static void do_get(struct copy *c, uint32_t id)
{
	struct h_result res;
	const char *name = id == NEW_ID ? c->new_name : T.k[id].name;
	int code = run_kv(c, K_GET, &res, NULL, 0, name, NULL);
	if (code == 0) {
		char cmd[96];
		snprintf(cmd, sizeof cmd, "kv get %s", name);
		if (id != NEW_ID)
			judge_value(c, id, (const uint8_t *)res.out,
			            res.out_len, cmd);
		else if (res.out_len != c->new_vlen ||
		         memcmp(res.out, c->new_val, res.out_len) != 0)
			violation(c, "%s: printed %zu bytes, not the %zu-byte "
			          "value it was just given", cmd, res.out_len,
			          c->new_vlen);
		else
			c->r->v_exact++;
	}
	h_result_free(&res);
}

static void do_check(struct copy *c)
{
	struct h_result res;
	int code = run_kv(c, K_CHECK, &res, NULL, 0, NULL, NULL);
	const char *out = res.out ? res.out : "";
	if (code == 0)
		c->r->check = strstr(out, "repaired") ? CK_REPAIRED : CK_OK;
	else if (code == 2)
		switch (why_of(&res)) {
		case W_BUSY: c->r->check = CK_BUSY; break;
		case W_CORRUPT: c->r->check = CK_CORRUPT; break;
		case W_NOTSTORE: c->r->check = CK_NOOPEN; break;
		default: c->r->check = CK_OTHER; break;
		}
	else
		c->r->check = CK_OTHER;
	h_result_free(&res);
}

static void simple(struct copy *c, enum kind kind, const char *a1)
{
	struct h_result res;
	run_kv(c, kind, &res, NULL, 0, a1, NULL);
	h_result_free(&res);
}

static uint32_t pick(uint64_t *rng, const uint32_t *ids, uint32_t n,
                     uint32_t not1, uint32_t not2)
{
	for (;;) {
		uint32_t id = ids[sw_rand(rng) % n];
		if (id != not1 && id != not2)
			return id;
	}
}

static struct copy *C; /* the copy a child works on */

static int copy_main(void *arg)
{
	struct copy *c = C;
	uint64_t rng = T.seed ^ (UINT64_C(0x9e3779b97f4a7c15) * (c->idx + 1));
	(void)arg;

	c->img = malloc(T.size);
	if (c->img == NULL)
		return 2;
	uint32_t k1 = pick(&rng, T.live, T.nlive, NKEYS, NKEYS);
	uint32_t k2 = pick(&rng, T.withttl, T.nttl, k1, NKEYS);
	uint32_t k4 = pick(&rng, T.live, T.nlive, k1, k2);
	uint32_t k3 = (uint32_t)sw_rand(&rng) % NKEYS;
	while (T.k[k3].ttl != 2)
		k3 = (k3 + 1) % NKEYS;
	const uint32_t read[] = {k1, k2, k4};
	c->new_klen = sw_key(NEW_ID + c->idx, c->new_name);
	c->new_vlen = (size_t)sw_range(&rng, SW_VMIN, sizeof c->new_val);
	sw_encode(c->new_val, c->new_vlen, NEW_ID + c->idx, 0, 1);

	memcpy(c->img, T.img, T.size);
	make_damage(&c->d, c->img, &rng, read, 3);
	describe(&c->d, c->r->damage, sizeof c->r->damage);
	snprintf(c->path, sizeof c->path, "%s/copy%u", T.dir, c->idx);
	int fd = open(c->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, c->img, T.size) != (ssize_t)T.size) {
		snprintf(c->r->fail, sizeof c->r->fail, "write %s: %s",
		         c->path, strerror(errno));
		c->r->violations++;
		return 3;
	}
	close(fd);

	do_get(c, k1);
	do_get(c, k2);
	do_get(c, k3);
	simple(c, K_TTL, T.k[k2].name);
	simple(c, K_KEYS, NULL);
	simple(c, K_STATS, NULL);
	simple(c, K_DUMP, "/dev/null");
	do_check(c);
	struct h_result res;
	run_kv(c, K_PUT, &res, c->new_val, c->new_vlen, c->new_name, NULL);
	h_result_free(&res);
	simple(c, K_DEL, T.k[k4].name);
	do_get(c, NEW_ID);
	do_get(c, k1);
	do_get(c, k4);

	/* Keep a copy that broke a rule, as it was before the commands. */
	if (c->r->violations != 0 && T.keep != NULL) {
		char kp[512];
		mkdir(T.keep, 0700);
		snprintf(kp, sizeof kp, "%s/copy-%" PRIx64 "-%u", T.keep,
		         T.seed, c->idx);
		fd = open(kp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd >= 0 && write(fd, c->img, T.size) == (ssize_t)T.size)
			violation(c, "the damaged copy is kept as %s", kp);
		if (fd >= 0)
			close(fd);
	}
	unlink(c->path);
	c->r->done = 1;
	return 0;
}

/* ------------------------------------------------------------------------
 * The loop
 */
static void print_summary(unsigned first, unsigned ncopies, double secs)
{
	uint64_t ncmd = 0, total = 0, max = 0, over1 = 0, exact = 0, own = 0;
	uint32_t exits[K_NKINDS][4] = {{0}}, why2[W_NWHY] = {0};
	uint32_t checks[CK_NOUTS] = {0};
	unsigned maxi = first;

	for (unsigned i = first; i < first + ncopies; i++) {
		const struct cres *r = &R[i - first];
		ncmd += r->ncmd;
		total += r->total_ns;
		over1 += r->over1s;
		exact += r->v_exact;
		own += r->v_own;
		checks[r->check < CK_NOUTS ? r->check : CK_OTHER]++;
		for (unsigned k = 0; k < K_NKINDS; k++)
			for (unsigned e = 0; e < 4; e++)
				exits[k][e] += r->exits[k][e];
		for (unsigned w = 0; w < W_NWHY; w++)
			why2[w] += r->why2[w];
		if (r->max_ns > max) {
			max = r->max_ns;
			maxi = i;
		}
	}
	print_message("corrupt-loop: %u copies, %" PRIu64 " commands in "
	              "%.1f s (%.1f ms a command on average, seed %#" PRIx64
	              ")\n", ncopies, ncmd, secs,
	              ncmd ? (double)total / 1e6 / (double)ncmd : 0.0, T.seed);
	print_message("corrupt-loop: longest command %.3f s: %s on copy %u "
	              "(damage %s); %" PRIu64 " took over 1 s\n",
	              (double)max / 1e9, R[maxi - first].max_cmd, maxi,
	              R[maxi - first].damage, over1);
	print_message("corrupt-loop: exit status by command (0 / 1 / 2 / "
	              "other):\n");
	for (unsigned k = 0; k < K_NKINDS; k++)
		print_message("corrupt-loop:   %-6s %5u %5u %5u %5u\n",
		              kind_name[k], exits[k][0], exits[k][1],
		              exits[k][2], exits[k][3]);
	print_message("corrupt-loop: exit 2 said: busy %u, corrupt %u, not "
	              "opened %u, other %u\n", why2[W_BUSY], why2[W_CORRUPT],
	              why2[W_NOTSTORE], why2[W_OTHER]);
	print_message("corrupt-loop: values printed: %" PRIu64 " exact, %"
	              PRIu64 " the key's own damaged bytes\n", exact, own);
	print_message("corrupt-loop: kv check on the copies:");
	for (unsigned o = 1; o < CK_NOUTS; o++)
		print_message("%s %s %u", o > 1 ? "," : "", check_name[o],
		              checks[o]);
	print_message("\n");
}

static void test_corrupt_loop(void **state)
{
	(void)state;
	unsigned ncopies = (unsigned)sw_env_u64("KV_CORRUPT_COPIES", 320);
	unsigned jobs = (unsigned)sw_env_u64("KV_CORRUPT_JOBS", 2);
	uint64_t only = sw_env_u64("KV_CORRUPT_ONLY", UINT64_MAX);
	const char *bd = getenv("KV_TEST_BUILD_DIR");
	static char keep[512];

	T.seed = sw_env_u64("KV_CORRUPT_SEED", 0);
	if (T.seed == 0) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		T.seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
		         ((uint64_t)getpid() << 40);
	}
	if (getenv("KV_CORRUPT_KEEP") != NULL)
		T.keep = getenv("KV_CORRUPT_KEEP");
	else if (bd != NULL) {
		snprintf(keep, sizeof keep, "%s/corrupt-loop-failures", bd);
		T.keep = keep;
	}
	if (jobs == 0)
		jobs = 1;
	(void)h_kv_bin(); /* fails here, not in every child, if unset */
	print_message("corrupt-loop: seed %#" PRIx64 " (replay: "
	              "KV_CORRUPT_SEED=%#" PRIx64 ", one copy: "
	              "KV_CORRUPT_ONLY=N)\n", T.seed, T.seed);

	T.dir = h_tmpdir("corrupt");
	char tpath[256];
	snprintf(tpath, sizeof tpath, "%s/template", T.dir);
	build_template(tpath);
	print_message("corrupt-loop: template %zu bytes, %" PRIu64 " buckets "
	              "at %#" PRIx64 ", %" PRIu64 " of %" PRIu64 " pages of %"
	              PRIu64 " KiB in use, %u keys (%u live, %u with an "
	              "hour's TTL)\n", T.size, T.nbuckets, T.index_off,
	              T.page_bump, T.npages, T.page_size >> 10, NKEYS, T.nlive,
	              T.nttl);

	unsigned first = 0;
	if (only != UINT64_MAX) {
		first = (unsigned)only;
		ncopies = 1;
	}
	R = sw_shared(sizeof(struct cres) * ncopies);
	static struct copy cur;
	pid_t pid[64] = {0};
	unsigned slot_copy[64];
	if (jobs > 64)
		jobs = 64;

	uint64_t t0 = sw_now_ns();
	unsigned next = 0, running = 0;
	while (next < ncopies || running > 0) {
		while (running < jobs && next < ncopies) {
			unsigned s = 0;
			while (pid[s] != 0)
				s++;
			struct copy *c = &cur;
			memset(c, 0, sizeof *c);
			c->idx = first + next;
			c->r = &R[next];
			C = c;
			pid[s] = sw_fork(copy_main, NULL);
			slot_copy[s] = next;
			next++;
			running++;
		}
		bool reaped = false;
		for (unsigned s = 0; s < jobs; s++) {
			int st;
			if (pid[s] == 0 || !sw_poll(pid[s], &st))
				continue;
			struct cres *r = &R[slot_copy[s]];
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !r->done) {
				char sb[64];
				size_t n = strlen(r->fail);
				snprintf(r->fail + n, sizeof r->fail - n,
				         "the copy's test process ended with %s\n",
				         sw_status_str(st, sb, sizeof sb));
				r->violations++;
			}
			pid[s] = 0;
			running--;
			reaped = true;
		}
		if (!reaped) {
			struct timespec ts = {0, 1000000L};
			nanosleep(&ts, NULL);
		}
	}
	double secs = (double)(sw_now_ns() - t0) / 1e9;
	print_summary(first, ncopies, secs);

	unsigned bad = 0;
	for (unsigned i = 0; i < ncopies; i++) {
		const struct cres *r = &R[i];
		if (r->violations == 0)
			continue;
		bad++;
		print_error("corrupt-loop: copy %u (KV_CORRUPT_SEED=%#" PRIx64
		            " KV_CORRUPT_ONLY=%u), damage %s:\n%s",
		            first + i, T.seed, first + i, r->damage, r->fail);
	}
	if (bad != 0)
		fail_msg("corrupt-loop: %u of %u copies broke a rule (seed %#"
		         PRIx64 ")", bad, ncopies, T.seed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_corrupt_loop, sw_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
