/*
 * win_bench.c - single-process figures of libkv on Windows (or under Wine):
 * load, put (replace) and get (hit) on N keys of 12 bytes with 100-byte
 * values, uniform random keys, one thread. Prints a table and, with
 * --csv, the same as CSV. Portable C over kv.h (and libkv's clock): it
 * builds for Linux too, so the two can be compared on one machine.
 *
 *   kv-bench-win [--keys N] [--seconds S] [--csv FILE]
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "os.h"

static uint64_t now_ns(void)
{
	return kv__os_mono_ns(); /* libkv's platform layer (os.h) */
}

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void key_of(uint64_t i, char k[13])
{
	snprintf(k, 13, "k:%010u", (unsigned)(i % 1000000000u));
}

struct row {
	const char *phase;
	uint64_t ops;
	double secs;
};

int main(int argc, char **argv)
{
	uint64_t keys = 100000;
	double seconds = 1.0;
	const char *csv = NULL;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--keys") == 0)
			keys = strtoull(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--seconds") == 0)
			seconds = atof(argv[i + 1]);
		else if (strcmp(argv[i], "--csv") == 0)
			csv = argv[i + 1];
	}
	char name[64];
	snprintf(name, sizeof name, "winbench.%" PRIu64, now_ns() % 1000000u);
	struct kv_options o = {.size = (keys * 256 + (16u << 20)) / KV_SIZE_ALIGN *
	                               KV_SIZE_ALIGN};
	kv_t *kv;
	int rc = kv_create(name, &o, &kv);
	if (rc != KV_OK) {
		fprintf(stderr, "kv-bench-win: create: %s\n", kv_strerror(rc));
		return 2;
	}
	char k[13], v[100], buf[256];
	memset(v, 'v', sizeof v);
	struct row rows[3];
	int nrows = 0;

	uint64_t t0 = now_ns();
	for (uint64_t i = 0; i < keys; i++) {
		key_of(i, k);
		if (kv_put(kv, k, 12, v, sizeof v, NULL) != KV_OK) {
			fprintf(stderr, "kv-bench-win: load failed at %" PRIu64
			        "\n", i);
			goto out;
		}
	}
	rows[nrows++] = (struct row){"load", keys, (now_ns() - t0) / 1e9};

	const char *phases[2] = {"put-replace", "get-hit"};
	for (int p = 0; p < 2; p++) {
		uint64_t ops = 0, end = now_ns() + (uint64_t)(seconds * 1e9);
		t0 = now_ns();
		while (now_ns() < end) {
			for (int b = 0; b < 1024; b++, ops++) {
				key_of(next() % keys, k);
				size_t vlen;
				rc = p == 0 ? kv_put(kv, k, 12, v, sizeof v, NULL)
				            : kv_get(kv, k, 12, buf, sizeof buf,
				                     &vlen);
				if (rc != KV_OK) {
					fprintf(stderr, "kv-bench-win: %s: %s\n",
					        phases[p], kv_strerror(rc));
					goto out;
				}
			}
		}
		rows[nrows++] = (struct row){phases[p], ops, (now_ns() - t0) / 1e9};
	}

	printf("kv-bench-win: %" PRIu64 " keys of 12 B, values of 100 B, one "
	       "thread\n", keys);
	printf("%-12s %12s %10s %10s\n", "phase", "ops", "Mops/s", "ns/op");
	for (int i = 0; i < nrows; i++)
		printf("%-12s %12" PRIu64 " %10.3f %10.1f\n", rows[i].phase,
		       rows[i].ops, rows[i].ops / rows[i].secs / 1e6,
		       rows[i].secs * 1e9 / rows[i].ops);
	if (csv != NULL) {
		FILE *f = fopen(csv, "w");
		if (f != NULL) {
			fprintf(f, "phase,ops,seconds,mops,ns_per_op\n");
			for (int i = 0; i < nrows; i++)
				fprintf(f, "%s,%" PRIu64 ",%.6f,%.4f,%.2f\n",
				        rows[i].phase, rows[i].ops, rows[i].secs,
				        rows[i].ops / rows[i].secs / 1e6,
				        rows[i].secs * 1e9 / rows[i].ops);
			fclose(f);
		}
	}
out:
	kv_destroy(name);
	kv_close(kv);
	return 0;
}
