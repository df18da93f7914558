/*
 * stats.c - "kv stats": every field of struct kv_stats, as an aligned table
 * for people or as one JSON object for programs.
 *
 * Both forms print from one table of fields, so they cannot drift apart; the
 * static_assert below fails the build when struct kv_stats gains a field,
 * as a reminder to add it here. Each field has a kind that decides how a
 * person sees it (a size as "64.0 MiB", a time as a UTC date); JSON always
 * gets the plain number. Derived figures (load_factor) come last.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* reserved0 follows evict directly: if this fails, a field was added to
 * struct kv_stats (carved out of reserved[]); add it to fields[]. */
static_assert(offsetof(struct kv_stats, reserved0) == 172,
              "struct kv_stats changed: update fields[] in cli/stats.c");

enum kind { COUNT, BYTES, TIME_MS, PID };

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
	U32(evict, COUNT),
};

#define NFIELDS (sizeof fields / sizeof fields[0])

/* Wide enough for the longest name, "format_version", and "load_factor". */
#define NAME_WIDTH 16

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
static void format_bytes(uint64_t n, char *buf, size_t cap)
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

	if (ms == 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(buf, cap, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, cap, "%" PRIu64 " ms", ms);
}

static void print_human(const char *store, const struct kv_stats *st,
                        double load)
{
	char q[CLI_QUOTE_MAX], text[64];

	printf("%-*s %s\n", NAME_WIDTH, "store", cli_quote(store, false, q));
	for (size_t i = 0; i < NFIELDS; i++) {
		const struct field *f = &fields[i];
		uint64_t v = field_value(st, f);

		switch (f->kind) {
		case BYTES:
			format_bytes(v, text, sizeof text);
			break;
		case TIME_MS:
			format_time(v, text, sizeof text);
			break;
		case PID:
			if (v == 0)
				snprintf(text, sizeof text, "none");
			else
				snprintf(text, sizeof text, "%" PRIu64, v);
			break;
		default:
			snprintf(text, sizeof text, "%" PRIu64, v);
			break;
		}
		printf("%-*s %s\n", NAME_WIDTH, f->name, text);
	}
	printf("%-*s %.6f (items / slots)\n", NAME_WIDTH, "load_factor", load);
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
                       double load)
{
	fputs("{\"store\":", stdout);
	print_json_string(store);
	for (size_t i = 0; i < NFIELDS; i++)
		printf(",\"%s\":%" PRIu64, fields[i].name,
		       field_value(st, &fields[i]));
	printf(",\"load_factor\":%.6f}\n", load);
}

int cli_stats(const struct cli *cli)
{
	struct kv_stats st;
	kv_t *kv = NULL;
	double load;
	int rc, status = CLI_ERROR;

	if (cli_open(cli, KV_RDONLY, &kv) != KV_OK)
		goto out;
	rc = kv_stats(kv, &st);
	if (rc != KV_OK) {
		char q[CLI_QUOTE_MAX];

		cli_fail("stats: store %s: %s", cli_quote(cli->store, true, q),
		         kv_strerror(rc));
		goto out;
	}
	load = st.slots ? (double)st.items / (double)st.slots : 0.0;
	if (cli->opt[OPT_JSON] != NULL)
		print_json(cli->store, &st, load);
	else
		print_human(cli->store, &st, load);
	status = CLI_OK;
out:
	kv_close(kv);
	return status;
}
