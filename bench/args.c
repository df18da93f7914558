/*
 * args.c - option values that kv-bench and peer-bench read the same way:
 * plain unsigned numbers, and lists of counts ("1,2", "1-4").
 */
#include <errno.h>
#include <stdlib.h>

#include "bench.h"

int bench_parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	if (*s == '-' || *s == '+')
		return -1;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

/* One number at *p, advancing p. */
static int number(const char **p, unsigned long *v)
{
	char *end;
	if (**p < '0' || **p > '9')
		return -1;
	errno = 0;
	*v = strtoul(*p, &end, 10);
	if (errno || end == *p)
		return -1;
	*p = end;
	return 0;
}

int bench_parse_counts(const char *s, unsigned lo, unsigned hi,
                       unsigned *out, unsigned max)
{
	unsigned n = 0;
	const char *p = s;

	for (;;) {
		unsigned long a, b;
		if (number(&p, &a) != 0)
			return -1;
		b = a;
		if (*p == '-') {
			p++;
			if (number(&p, &b) != 0 || b < a)
				return -1;
		}
		if (a < lo || b > hi)
			return -1;
		for (unsigned long v = a; v <= b; v++) {
			if (n == max)
				return -1;
			out[n++] = (unsigned)v;
		}
		if (*p == '\0')
			return (int)n;
		if (*p++ != ',')
			return -1;
	}
}
