/*
 * stats.c - "kv stats": every field of struct kv_stats, a few figures
 * derived from them, and one row per size class, as aligned text for
 * people or as one JSON object for programs.
 *
 * Both forms print from one table of fields, so they cannot drift apart; the
 * static_asserts below fail the build when struct kv_stats or struct
 * kv_class_stats gains a field, as a reminder to add it here. Each field
 * has a kind that decides how a person sees it (a size as "64.0 MiB", a
 * time as a UTC date); JSON always gets the plain number. Derived figures
 * follow the fields, then the size classes.
 *
 * The figures are read without the writer lock, one counter at a time, so
 * a busy store may give figures that are each right but not from the same
 * instant; derived ones are clamped so that they stay sensible anyway.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "sys.h"

/* If this fails, struct kv_stats gained or lost a field: fields[] covers
 * everything before probe_hist, which is printed on its own (an array);
 * add the new field to one or the other. */
static_assert(offsetof(struct kv_stats, probe_hist) == 216 &&
                  offsetof(struct kv_stats, resizes) == 296 &&
                  sizeof(struct kv_stats) == 304,
              "struct kv_stats changed: update fields[] in cli/stats.c");
static_assert(offsetof(struct kv_class_stats, reserved) == 32 &&
                  sizeof(struct kv_class_stats) == 64,
              "struct kv_class_stats changed: update cli/stats.c");

/* Bytes per index bucket: one cache line (the brief's format). */
#define BUCKET_BYTES 64u

enum kind { COUNT, BYTES, TIME_MS, PID, NS, POLICY };

struct field {
	const char *name;
	size_t offset;
	unsigned char size; /* 4 or 8 */
	unsigned char kind;
};

#define U32(f, k) { #f, offsetof(struct kv_stats, f), 4, k }
#define U64(f, k) { #f, offsetof(struct kv_stats, f), 8, k }

/* In the order of struct kv_stats. */
static const struct field fields[] = {
	U32(format_version, COUNT), U32(max_key, BYTES),
	U32(max_value, BYTES),      U32(page_size, BYTES),
	U64(map_size, BYTES),       U64(data_bytes, BYTES),
	U64(data_used, BYTES),      U64(pages_total, COUNT),
	U64(pages_used, COUNT),     U64(buckets, COUNT),
	U64(slots, COUNT),          U64(items, COUNT),
	U64(key_bytes, BYTES),      U64(value_bytes, BYTES),
	U64(puts, COUNT),           U64(deletes, COUNT),
	U64(expired, COUNT),        U64(recoveries, COUNT),
	U64(max_probe, COUNT),      U64(created_ms, TIME_MS),
	U32(nclasses, COUNT),       U32(daemon_pid, PID),
	U64(evictions, COUNT),      U64(page_moves, COUNT),
	U32(evict, POLICY),         U64(hits, COUNT),
	U64(misses, COUNT),         U64(sweeps, COUNT),
	U64(sweep_ns, NS),          U64(lock_repairs, COUNT),
	U64(mem_page_size, BYTES),  U64(max_size, BYTES),
	U64(resizes, COUNT),
};

#define NFIELDS (sizeof fields / sizeof fields[0])

/* The buckets of kv_stats.probe_hist: keys by distance from home. */
static const char *const probe_buckets[8] = {"0", "1", "2", "3", "4-7",
                                             "8-15", "16-31", "32+"};
static_assert(sizeof ((struct kv_stats *)0)->probe_hist ==
                  sizeof probe_buckets / sizeof probe_buckets[0] *
                      sizeof(uint64_t),
              "probe_hist changed: update probe_buckets in cli/stats.c");

/* Wide enough for the longest name, "overhead_per_item". */
#define NAME_WIDTH 18

/* What is worked out from the fields. */
struct derived {
	double load;          /* items / slots */
	double hit_ratio;     /* hits / (hits + misses); < 0: no gets yet */
	uint64_t index_bytes; /* buckets * BUCKET_BYTES */
	uint64_t used_bytes;  /* data_used + index_bytes */
	uint64_t overhead;    /* used_bytes - key_bytes - value_bytes */
	double per_item;      /* overhead / items; < 0: no items */
	uint64_t capacity;    /* data_bytes + index_bytes */
};

static void derive(const struct kv_stats *st, struct derived *d)
{
	uint64_t gets = st->hits + st->misses;
	uint64_t payload = st->key_bytes + st->value_bytes;

	d->load = st->slots ? (double)st->items / (double)st->slots : 0.0;
	d->hit_ratio = gets ? (double)st->hits / (double)gets : -1.0;
	d->index_bytes = st->buckets * BUCKET_BYTES;
	d->used_bytes = st->data_used + d->index_bytes;
	d->overhead = d->used_bytes > payload ? d->used_bytes - payload : 0;
	d->per_item = st->items ? (double)d->overhead / (double)st->items
	                        : -1.0;
	d->capacity = st->data_bytes + d->index_bytes;
}

static uint64_t field_value(const struct kv_stats *st, const struct field *f)
{
	const char *p = (const char *)st + f->offset;
	uint32_t v32;
	uint64_t v64;

	if (f->size == 4) {
		memcpy(&v32, p, sizeof v32);
		return v32;
	}
	memcpy(&v64, p, sizeof v64);
	return v64;
}

/* "64.0 MiB"; the exact count follows when one decimal hides some of it,
 * as in "1.0 MiB (1056768)", since an operator may need the real figure. */
void cli_format_bytes(uint64_t n, char *buf, size_t cap)
{
	static const char *const units[] = { "KiB", "MiB", "GiB",
		                             "TiB", "PiB", "EiB" };
	uint64_t scale = 1024;
	size_t u = 0;
	double v;

	if (n < 1024) {
		snprintf(buf, cap, "%" PRIu64 " B", n);
		return;
	}
	while (n / scale >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
		scale *= 1024;
		u++;
	}
	v = (double)n / (double)scale;
	if (n < UINT64_MAX / 10 && (n * 10) % scale == 0)
		snprintf(buf, cap, "%.1f %s", v, units[u]);
	else
		snprintf(buf, cap, "%.1f %s (%" PRIu64 ")", v, units[u], n);
}

static void format_time(uint64_t ms, char *buf, size_t cap)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms == 0 || !cli_sys_gmtime(t, &tm) ||
	    strftime(buf, cap, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, cap, "%" PRIu64 " ms", ms);
}

static void format_field(const struct field *f, uint64_t v, char *text,
                         size_t cap)
{
	switch (f->kind) {
	case BYTES:
		cli_format_bytes(v, text, cap);
		break;
	case TIME_MS:
		format_time(v, text, cap);
		break;
	case PID:
		if (v == 0)
			snprintf(text, cap, "none");
		else
			snprintf(text, cap, "%" PRIu64, v);
		break;
	case NS:
		snprintf(text, cap, "%.3f ms", (double)v / 1e6);
		break;
	case POLICY:
		snprintf(text, cap, "%" PRIu64 " (%s)", v,
		         v ? "evict" : "noevict");
		break;
	default:
		snprintf(text, cap, "%" PRIu64, v);
		break;
	}
}

/* fill: used / capacity of a class, 0 when it has no chunks. */
static double class_fill(const struct kv_class_stats *c)
{
	uint64_t capacity = c->pages * c->per_page;

	return capacity ? (double)c->used / (double)capacity : 0.0;
}

static void print_human(const char *store, const struct kv_stats *st,
                        const struct derived *d,
                        const struct kv_class_stats *cls)
{
	char q[CLI_QUOTE_MAX], text[64];
	bool any = false;

	printf("%-*s %s\n", NAME_WIDTH, "store", cli_quote(store, false, q));
	for (size_t i = 0; i < NFIELDS; i++) {
		format_field(&fields[i], field_value(st, &fields[i]), text,
		             sizeof text);
		printf("%-*s %s\n", NAME_WIDTH, fields[i].name, text);
	}
	printf("%-*s", NAME_WIDTH, "probe_hist");
	for (size_t i = 0; i < 8; i++)
		printf(" %s:%" PRIu64, probe_buckets[i], st->probe_hist[i]);
	printf(" (keys by buckets from home)\n");
	printf("%-*s %.6f (items / slots)\n", NAME_WIDTH, "load_factor",
	       d->load);
	if (d->hit_ratio < 0)
		printf("%-*s - (no gets yet)\n", NAME_WIDTH, "hit_ratio");
	else
		printf("%-*s %.6f (hits / gets)\n", NAME_WIDTH, "hit_ratio",
		       d->hit_ratio);
	printf("%-*s %s\n", NAME_WIDTH, "eviction_policy",
	       st->evict ? "evict (when full, the least recently used go)"
	                 : "noevict (when full, puts fail)");
	cli_format_bytes(d->index_bytes, text, sizeof text);
	printf("%-*s %s (buckets * %u)\n", NAME_WIDTH, "index_bytes", text,
	       BUCKET_BYTES);
	cli_format_bytes(d->used_bytes, text, sizeof text);
	printf("%-*s %s (data_used + index_bytes)\n", NAME_WIDTH, "used_bytes",
	       text);
	cli_format_bytes(d->overhead, text, sizeof text);
	printf("%-*s %s (used_bytes - key_bytes - value_bytes)\n", NAME_WIDTH,
	       "overhead_bytes", text);
	if (d->per_item < 0)
		printf("%-*s - (no items)\n", NAME_WIDTH, "overhead_per_item");
	else
		printf("%-*s %.1f B\n", NAME_WIDTH, "overhead_per_item",
		       d->per_item);
	cli_format_bytes(d->capacity, text, sizeof text);
	printf("%-*s %s (data_bytes + index_bytes)\n", NAME_WIDTH,
	       "capacity_bytes", text);

	/* Only the classes in use: most of a fresh store's are empty. */
	for (uint32_t i = 0; i < st->nclasses; i++) {
		const struct kv_class_stats *c = &cls[i];

		if (c->pages == 0 && c->used == 0)
			continue;
		if (!any) {
			printf("\n%5s %10s %8s %10s %10s %7s %10s\n", "class",
			       "chunk", "pages", "used", "capacity", "fill",
			       "evictions");
			any = true;
		}
		printf("%5" PRIu32 " %10" PRIu32 " %8" PRIu64 " %10" PRIu64
		       " %10" PRIu64 " %6.1f%% %10" PRIu64 "\n",
		       i, c->chunk_size, c->pages, c->used,
		       c->pages * c->per_page, 100.0 * class_fill(c),
		       c->evictions);
	}
	if (!any)
		printf("\n(no size class holds a page yet)\n");
}

/* A JSON string: a file-backed store's path may hold any byte but NUL. */
static void print_json_string(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void print_json(const char *store, const struct kv_stats *st,
                       const struct derived *d,
                       const struct kv_class_stats *cls)
{
	fputs("{\"store\":", stdout);
	print_json_string(store);
	for (size_t i = 0; i < NFIELDS; i++)
		printf(",\"%s\":%" PRIu64, fields[i].name,
		       field_value(st, &fields[i]));
	fputs(",\"probe_hist\":[", stdout);
	for (size_t i = 0; i < 8; i++)
		printf("%s%" PRIu64, i ? "," : "", st->probe_hist[i]);
	printf("],\"load_factor\":%.6f", d->load);
	if (d->hit_ratio < 0)
		fputs(",\"hit_ratio\":null", stdout);
	else
		printf(",\"hit_ratio\":%.6f", d->hit_ratio);
	printf(",\"eviction_policy\":\"%s\"", st->evict ? "evict" : "noevict");
	printf(",\"index_bytes\":%" PRIu64 ",\"used_bytes\":%" PRIu64
	       ",\"overhead_bytes\":%" PRIu64,
	       d->index_bytes, d->used_bytes, d->overhead);
	if (d->per_item < 0)
		fputs(",\"overhead_per_item\":null", stdout);
	else
		printf(",\"overhead_per_item\":%.1f", d->per_item);
	printf(",\"capacity_bytes\":%" PRIu64 ",\"classes\":[", d->capacity);
	for (uint32_t i = 0; i < st->nclasses; i++) {
		const struct kv_class_stats *c = &cls[i];

		printf("%s{\"class\":%" PRIu32 ",\"chunk_size\":%" PRIu32
		       ",\"per_page\":%" PRIu32 ",\"pages\":%" PRIu64
		       ",\"used\":%" PRIu64 ",\"capacity\":%" PRIu64
		       ",\"fill\":%.6f,\"evictions\":%" PRIu64 "}",
		       i ? "," : "", i, c->chunk_size, c->per_page, c->pages,
		       c->used, c->pages * c->per_page, class_fill(c),
		       c->evictions);
	}
	fputs("]}\n", stdout);
}

int cli_stats(const struct cli *cli)
{
	struct kv_class_stats *cls = NULL;
	struct kv_stats st;
	struct derived d;
	char q[CLI_QUOTE_MAX];
	kv_t *kv = NULL;
	int rc, status = CLI_ERROR;

	if (cli_open(cli, KV_RDONLY, &kv) != KV_OK)
		goto out;
	rc = kv_stats(kv, &st);
	if (rc != KV_OK) {
		cli_fail("stats: store %s: %s", cli_quote(cli->store, true, q),
		         kv_strerror(rc));
		goto out;
	}
	/* calloc(0) may return NULL: ask for one at least. */
	cls = calloc(st.nclasses ? st.nclasses : 1, sizeof *cls);
	if (cls == NULL) {
		cli_fail("stats: %s", kv_strerror(KV_ENOMEM));
		goto out;
	}
	for (uint32_t i = 0; i < st.nclasses; i++) {
		rc = kv_class_stats(kv, i, &cls[i]);
		if (rc != KV_OK) {
			cli_fail("stats: store %s: size class %" PRIu32 ": %s",
			         cli_quote(cli->store, true, q), i,
			         kv_strerror(rc));
			goto out;
		}
	}
	derive(&st, &d);
	if (cli->opt[OPT_JSON] != NULL)
		print_json(cli->store, &st, &d, cls);
	else
		print_human(cli->store, &st, &d, cls);
	status = CLI_OK;
out:
	free(cls);
	kv_close(kv);
	return status;
}
