/*
 * memlat.c - the memory yardstick: what one dependent cache miss, and what
 * a stream of independent ones, cost in a buffer the size of the store.
 *
 * The brief measures a get against this: a lookup reads the key's bucket
 * line, then the item's line(s), each address depending on the last load,
 * so a cold get costs about two dependent misses. The buffer is a POSIX
 * shared-memory object like a store (4 KiB tmpfs pages, unlinked as soon
 * as it is mapped so nothing leaks if we are killed), so the chase pays the
 * same TLB misses and page walks a get does.
 *
 * chase: each cache line's first word holds the offset of the next line of
 *        one random cycle through all lines (Sattolo's shuffle), so every
 *        load depends on the previous one and the prefetchers cannot guess.
 * indep: loads of random lines whose addresses come from a register RNG,
 *        so the core overlaps as many misses as it has fill buffers for.
 */
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

#define LINE 64u
#define CHUNK (1u << 16) /* accesses between clock reads */

static volatile uint64_t sink;

static uint64_t chase(const uint8_t *base, uint64_t p, uint64_t steps)
{
	for (uint64_t i = 0; i < steps; i += 8) {
		p = *(const uint64_t *)(const void *)(base + p);
		p = *(const uint64_t *)(const void *)(base + p);
		p = *(const uint64_t *)(const void *)(base + p);
		p = *(const uint64_t *)(const void *)(base + p);
		p = *(const uint64_t *)(const void *)(base + p);
		p = *(const uint64_t *)(const void *)(base + p);
		p = *(const uint64_t *)(const void *)(base + p);
		p = *(const uint64_t *)(const void *)(base + p);
	}
	return p;
}

static uint64_t indep(const uint8_t *base, uint64_t nlines, uint64_t *rng,
                      uint64_t steps)
{
	uint64_t sum = 0;
	for (uint64_t i = 0; i < steps; i += 4) {
		uint64_t a = bench_below(rng, nlines) * LINE;
		uint64_t b = bench_below(rng, nlines) * LINE;
		uint64_t c = bench_below(rng, nlines) * LINE;
		uint64_t d = bench_below(rng, nlines) * LINE;
		sum += *(const uint64_t *)(const void *)(base + a);
		sum += *(const uint64_t *)(const void *)(base + b);
		sum += *(const uint64_t *)(const void *)(base + c);
		sum += *(const uint64_t *)(const void *)(base + d);
	}
	return sum;
}

static void fill_result(struct bench_result *r, const char *phase,
                        uint64_t ops, double secs)
{
	*r = (struct bench_result){0};
	snprintf(r->phase, sizeof r->phase, "%s", phase);
	snprintf(r->mode, sizeof r->mode, "single");
	snprintf(r->unit, sizeof r->unit, "line");
	r->procs = 1;
	r->ops = ops;
	r->secs = secs;
	r->p50_ns = r->p99_ns = r->p999_ns = NAN;
}

int bench_memlat(uint64_t bytes, bool huge, double secs, uint64_t seed,
                 const volatile sig_atomic_t *stop,
                 struct bench_result *rc, struct bench_result *ri,
                 char *err, size_t errlen)
{
	char name[64];
	uint64_t nlines = bytes / LINE;
	int ret = -1;

	if (nlines < 2) {
		snprintf(err, errlen, "buffer of %llu bytes is too small",
		         (unsigned long long)bytes);
		return -1;
	}
	bytes = nlines * LINE;
	snprintf(name, sizeof name, "/kv-bench.%ld.memlat", (long)getpid());
	int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "shm_open %s: %s", name, strerror(errno));
		return -1;
	}
	shm_unlink(name);
	uint8_t *base = MAP_FAILED;
	if (huge) {
		/* As a store made with KV_CREATE_HUGE: 2 MiB pages of
		 * /dev/shm, asked for before the first touch. */
		uint64_t hp = 2u << 20;
		bytes = (bytes + hp - 1) / hp * hp;
		nlines = bytes / LINE;
		if (ftruncate(fd, (off_t)bytes) != 0) {
			snprintf(err, errlen, "size the buffer: %s",
			         strerror(errno));
			goto out;
		}
		base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
		            fd, 0);
		if (base == MAP_FAILED ||
		    madvise(base, bytes, MADV_HUGEPAGE) != 0 ||
		    madvise(base, bytes, MADV_POPULATE_WRITE) != 0) {
			snprintf(err, errlen, "a buffer of huge pages: %s",
			         strerror(errno));
			goto out;
		}
	} else if ((errno = posix_fallocate(fd, 0, (off_t)bytes)) != 0) {
		snprintf(err, errlen, "reserve %llu bytes in /dev/shm: %s",
		         (unsigned long long)bytes, strerror(errno));
		goto out;
	}
	if (!huge)
		base = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		            MAP_SHARED | MAP_POPULATE, fd, 0);
	if (base == MAP_FAILED) {
		snprintf(err, errlen, "mmap %llu bytes: %s",
		         (unsigned long long)bytes, strerror(errno));
		goto out;
	}

	/* Sattolo: line i points at line w[i], one cycle through all. */
	uint64_t *w0 = (uint64_t *)(void *)base;
	for (uint64_t i = 0; i < nlines; i++)
		w0[i * (LINE / 8)] = i * LINE;
	uint64_t rng = seed;
	for (uint64_t i = nlines - 1; i > 0; i--) {
		uint64_t j = bench_below(&rng, i);
		uint64_t t = w0[i * (LINE / 8)];
		w0[i * (LINE / 8)] = w0[j * (LINE / 8)];
		w0[j * (LINE / 8)] = t;
	}

	/* Warm up (page tables, caches) for a tenth of the time, then
	 * measure. */
	uint64_t p = 0, t0 = bench_now_ns();
	while (bench_now_ns() - t0 < (uint64_t)(secs * 1e8) && !*stop)
		p = chase(base, p, CHUNK);
	uint64_t ops = 0;
	t0 = bench_now_ns();
	uint64_t t1 = t0, limit = (uint64_t)(secs * 1e9);
	while (!*stop) {
		p = chase(base, p, CHUNK);
		ops += CHUNK;
		t1 = bench_now_ns();
		if (t1 - t0 >= limit)
			break;
	}
	sink = p;
	fill_result(rc, "mem-chase", ops, (double)(t1 - t0) / 1e9);

	uint64_t sum = 0;
	ops = 0;
	t0 = t1 = bench_now_ns();
	while (!*stop) {
		sum += indep(base, nlines, &rng, CHUNK);
		ops += CHUNK;
		t1 = bench_now_ns();
		if (t1 - t0 >= limit)
			break;
	}
	sink = sum;
	fill_result(ri, "mem-indep", ops, (double)(t1 - t0) / 1e9);
	ret = 0;
out:
	if (base != MAP_FAILED)
		munmap(base, bytes);
	close(fd);
	return ret;
}
