/*
 * keys.c - the key sets a timed loop reads.
 *
 * Keys are generated before the clock starts and laid out one per stride
 * in the order the loop will use them, so a loop costs one sequential read
 * of a few bytes per operation besides the operation itself: no RNG, no
 * formatting and no random access into a key table (which at a million
 * keys would add a cache miss of its own to every lookup).
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static unsigned digits(uint64_t v)
{
	unsigned d = 1;
	while (v >= 10) {
		v /= 10;
		d++;
	}
	return d;
}

unsigned bench_key_min(uint64_t n)
{
	return 2 + digits(n ? 2 * n - 1 : 0);
}

/* "k:" then i in decimal, zero-padded to fill klen bytes. No NUL. */
static void format_key(char *out, unsigned klen, uint64_t i)
{
	out[0] = 'k';
	out[1] = ':';
	for (unsigned p = klen; p > 2; p--) {
		out[p - 1] = (char)('0' + i % 10);
		i /= 10;
	}
}

static int keys_alloc(struct bench_keyset *ks, unsigned klen, size_t count)
{
	ks->klen = klen;
	ks->stride = (klen + 7u) / 8u * 8u;
	ks->count = count;
	ks->buf = malloc(count ? count * ks->stride : 1);
	return ks->buf ? 0 : -1;
}

int bench_keys_seq(struct bench_keyset *ks, unsigned klen, uint64_t first,
                   size_t count)
{
	if (keys_alloc(ks, klen, count) != 0)
		return -1;
	for (size_t i = 0; i < count; i++)
		format_key(ks->buf + i * ks->stride, klen, first + i);
	return 0;
}

int bench_keys_random(struct bench_keyset *ks, unsigned klen, uint64_t first,
                      uint64_t n, size_t count, uint64_t seed)
{
	if (keys_alloc(ks, klen, count) != 0)
		return -1;
	for (size_t i = 0; i < count; i++)
		format_key(ks->buf + i * ks->stride, klen,
		           first + bench_below(&seed, n));
	return 0;
}

int bench_keys_shuffled(struct bench_keyset *ks, unsigned klen, uint64_t n,
                        uint64_t seed)
{
	uint64_t *perm = malloc((n ? n : 1) * sizeof *perm);
	if (perm == NULL)
		return -1;
	for (uint64_t i = 0; i < n; i++)
		perm[i] = i;
	for (uint64_t i = n; i > 1; i--) {
		uint64_t j = bench_below(&seed, i);
		uint64_t t = perm[i - 1];
		perm[i - 1] = perm[j];
		perm[j] = t;
	}
	int rc = keys_alloc(ks, klen, (size_t)n);
	if (rc == 0)
		for (uint64_t i = 0; i < n; i++)
			format_key(ks->buf + i * ks->stride, klen, perm[i]);
	free(perm);
	return rc;
}

void bench_keys_free(struct bench_keyset *ks)
{
	free(ks->buf);
	*ks = (struct bench_keyset){0};
}

#define RING_MAX (1u << 20) /* keys in a random key ring */
#define RING_MIN (1u << 16)
#define RING_BYTES (32u << 20)

size_t bench_ring_size(uint64_t n, unsigned klen)
{
	uint64_t r = n * 4;
	size_t stride = (klen + 7u) / 8u * 8u;
	if (r < RING_MIN)
		r = RING_MIN;
	if (r > RING_MAX)
		r = RING_MAX;
	if (r * stride > RING_BYTES)
		r = RING_BYTES / stride;
	return (size_t)(r ? r : 1);
}
