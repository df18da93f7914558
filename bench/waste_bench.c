/*
 * waste_bench.c - the memory each value size costs: for a sweep of value
 * sizes from 1 byte to the largest, fill a store with values of that one
 * size and compare the memory its pages hold with the bytes stored.
 *
 *   kv-waste-bench [--max BYTES] [--fill BYTES] [--key-size N]
 *                  [--csv FILE]
 *
 * For each size, --fill bytes of values (default 64 MiB; at least one
 * value, at most 200,000) are put under keys of --key-size bytes (default
 * 16) into an empty store, then kv_stats says how many pages hold them.
 * Columns:
 *   item      the bytes of one item: header, key and value
 *   held      memory per item: pages in use x page size / items
 *   waste     1 - item / held: all the memory an item holds beyond its
 *             bytes (its chunk's 4-byte alignment, class rounding, unused
 *             page tails, a large value's piece headers and struct
 *             kv_large), the figure the design bounds at 15 % (12.5 % for
 *             a value of at least a byte; test_large checks every length)
 *   value     value / held: the share of memory that is value bytes,
 *             which the header and key lower for small values
 * Pages in use include each class's last, partly filled page, so small
 * fills read a little high; the default fill keeps that under 1 %.
 * Output: a table on stdout and, with --csv, the same rows as CSV (plot
 * them with bench/plot_waste.py).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv.h"

struct row {
	uint64_t vlen, items, item, pages;
	double held, waste, value;
};

static uint64_t arg_size(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	switch (*end) {
	case 'K': v <<= 10; break;
	case 'M': v <<= 20; break;
	case 'G': v <<= 30; break;
	case '\0': break;
	default:
		fprintf(stderr, "kv-waste-bench: bad size '%s'\n", s);
		exit(2);
	}
	return v;
}

/* The sizes: every power of 2 and the midpoints between them (x1.19),
 * and the edges of the layout: the largest class (8 KiB) and a page
 * (64 KiB), a byte either side, for a value under a 16-byte key. */
static size_t sweep(uint64_t max, uint64_t *out, size_t cap)
{
	size_t n = 0;
	for (double v = 1; v <= (double)max && n < cap; v *= 1.189207115) {
		uint64_t u = (uint64_t)(v + 0.5);
		if (n == 0 || u != out[n - 1])
			out[n++] = u;
	}
	const uint64_t edges[] = {8192 - 48, 8192 - 47, 65536 - 1, 65536,
	                          65536 + 1, 2 * 65536 + 7000};
	for (size_t i = 0; i < sizeof edges / sizeof edges[0] && n < cap; i++)
		if (edges[i] <= max)
			out[n++] = edges[i];
	/* Sort (insertion: a few hundred sizes). */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && out[j] < out[j - 1]; j--) {
			uint64_t t = out[j];
			out[j] = out[j - 1];
			out[j - 1] = t;
		}
	size_t m = 0; /* each size once */
	for (size_t i = 0; i < n; i++)
		if (m == 0 || out[i] != out[m - 1])
			out[m++] = out[i];
	if (m == 0 || out[m - 1] != max)
		out[m++] = max;
	return m;
}

int main(int argc, char **argv)
{
	uint64_t max = 64u << 20, fill = 64u << 20;
	size_t klen = 16;
	const char *csv = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--max") && i + 1 < argc)
			max = arg_size(argv[++i]);
		else if (!strcmp(argv[i], "--fill") && i + 1 < argc)
			fill = arg_size(argv[++i]);
		else if (!strcmp(argv[i], "--key-size") && i + 1 < argc)
			klen = (size_t)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--csv") && i + 1 < argc)
			csv = argv[++i];
		else {
			fprintf(stderr, "usage: kv-waste-bench [--max BYTES] "
			                "[--fill BYTES] [--key-size N] "
			                "[--csv FILE]\n");
			return 2;
		}
	}
	if (max == 0 || max > KV_MAX_VALUE_LIMIT || klen < 12 ||
	    klen > 64) {
		fprintf(stderr, "kv-waste-bench: --max 1..1G, --key-size "
		                "12..64\n");
		return 2;
	}

	char name[KV_MAX_NAME + 1];
	snprintf(name, sizeof name, "wastebench.%d", (int)getpid());
	struct kv_options o = {0};
	uint64_t most = fill > max ? fill : max;
	o.size = most + most / 4 + (64u << 20);
	o.max_value = (uint32_t)max;
	o.max_items = 400000;
	o.flags = KV_CREATE_EXCL | KV_CREATE_NOEVICT;
	kv_t *kv = NULL;
	int rc = kv_create(name, &o, &kv);
	if (rc != KV_OK) {
		fprintf(stderr, "kv-waste-bench: store %s: %s\n", name,
		        kv_strerror(rc));
		return 2;
	}
	struct kv_stats st;
	kv_stats(kv, &st);
	uint8_t *v = malloc(max);
	if (v == NULL) {
		fprintf(stderr, "kv-waste-bench: out of memory\n");
		kv_close(kv);
		kv_destroy(name);
		return 2;
	}
	for (uint64_t i = 0; i < max; i++)
		v[i] = (uint8_t)(i * 131 + 7);

	static uint64_t sizes[512];
	size_t nsizes = sweep(max, sizes, 500);
	static struct row rows[512];
	size_t nrows = 0;
	double worst = 0;
	uint64_t worst_at = 0;
	printf("kv-waste-bench: values of %zu sizes, 1 B .. %" PRIu64
	       " B, %zu-byte keys, %" PRIu64 " MiB of each; pages of %" PRIu32
	       " B\n\n",
	       nsizes, max, klen, fill >> 20, st.page_size);
	printf("%12s %8s %12s %12s %8s %8s\n", "value B", "items", "item B",
	       "held B", "waste", "value");
	for (size_t s = 0; s < nsizes; s++) {
		uint64_t vl = sizes[s];
		uint64_t n = fill / vl;
		if (n < 1)
			n = 1;
		if (n > 200000)
			n = 200000;
		char key[80];
		for (uint64_t i = 0; i < n; i++) {
			snprintf(key, sizeof key, "w:%0*" PRIu64, (int)klen - 2,
			         i);
			rc = kv_put(kv, key, klen, v, vl, NULL);
			if (rc != KV_OK) {
				fprintf(stderr, "kv-waste-bench: put of %" PRIu64
				                " B: %s\n",
				        vl, kv_strerror(rc));
				goto out;
			}
		}
		kv_stats(kv, &st);
		struct row *r = &rows[nrows++];
		r->vlen = vl;
		r->items = n;
		r->item = st.item_header + klen + vl;
		r->pages = st.pages_used;
		r->held = (double)st.pages_used * st.page_size / (double)n;
		r->waste = 1.0 - (double)r->item / r->held;
		r->value = (double)vl / r->held;
		if (r->waste > worst) {
			worst = r->waste;
			worst_at = vl;
		}
		printf("%12" PRIu64 " %8" PRIu64 " %12" PRIu64 " %12.1f %7.1f%% "
		       "%7.1f%%\n",
		       vl, n, r->item, r->held, r->waste * 100,
		       r->value * 100);
		fflush(stdout);
		rc = kv_flush(kv, NULL);
		if (rc != KV_OK) {
			fprintf(stderr, "kv-waste-bench: flush: %s\n",
			        kv_strerror(rc));
			goto out;
		}
	}
	printf("\nworst waste: %.1f %% (a %" PRIu64 "-byte value)\n",
	       worst * 100, worst_at);
	if (csv != NULL) {
		FILE *f = fopen(csv, "w");
		if (f == NULL) {
			perror(csv);
			rc = KV_EINVAL;
			goto out;
		}
		fprintf(f, "value_bytes,items,item_bytes,pages,held_bytes,"
		           "waste,value_share\n");
		for (size_t i = 0; i < nrows; i++)
			fprintf(f,
			        "%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64
			        ",%.1f,%.4f,%.4f\n",
			        rows[i].vlen, rows[i].items, rows[i].item,
			        rows[i].pages, rows[i].held, rows[i].waste,
			        rows[i].value);
		fclose(f);
	}
out:
	free(v);
	kv_close(kv);
	kv_destroy(name);
	return rc == KV_OK ? 0 : 1;
}
