/*
 * size.c - see size.h.
 */
#include "size.h"

#include <strings.h>

int kv_size_parse(const char *s, uint64_t *out, const char **why)
{
	const char *p = s;
	uint64_t v = 0;
	unsigned shift = 0;

	*why = "not a size (use bytes or a suffix: 64M, 4G, 512KiB)";
	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			goto too_large;
		v = v * 10 + d;
	}
	switch (*p) {
	case 'k': case 'K': shift = 10; p++; break;
	case 'm': case 'M': shift = 20; p++; break;
	case 'g': case 'G': shift = 30; p++; break;
	case 't': case 'T': shift = 40; p++; break;
	default: break;
	}
	/* "B" after anything; "iB" only after a multiplier ("4iB" is junk). */
	if (*p != '\0' && strcasecmp(p, "b") != 0 &&
	    !(shift > 0 && strcasecmp(p, "ib") == 0))
		return -1;
	if (v == 0) {
		*why = "must be greater than zero";
		return -1;
	}
	if (v > (UINT64_MAX >> shift))
		goto too_large;
	*out = v << shift;
	return 0;

too_large:
	*why = "too large";
	return -2;
}
