/*
 * glob.c - shell-style pattern matching over byte strings, for "kv keys".
 *
 * Keys are any bytes, NUL included, so fnmatch(3), which wants C strings
 * (and a locale), will not do. The pattern comes from argv, so it is a C
 * string; it is matched byte by byte, with no locale and no UTF-8
 * decoding: '?' is one byte, and a range [a-z] compares byte values.
 *
 * How it works
 *   Every pattern element other than '*' matches exactly one byte. So the
 *   classic greedy scan is exact: walk key and pattern together; at a '*'
 *   remember where it is and let it match nothing; on a mismatch, go back
 *   to the last '*' and let it swallow one more byte. Only the last '*'
 *   ever needs revisiting (whatever an earlier one matched, the later one
 *   can absorb the difference), so the cost is O(pattern * key) at worst
 *   with no recursion and no allocation.
 */
#include <stdbool.h>
#include <stddef.h>

#include "cli.h"

/* Match "[...]" at *pp (pointing at the '[') against byte c. Returns 1 or
 * 0 and moves *pp past the ']', or -1 when the set is not closed (then the
 * '[' is an ordinary byte and *pp is left alone). */
static int match_set(const char **pp, unsigned char c)
{
	const unsigned char *p = (const unsigned char *)*pp + 1;
	bool negate = false, found = false, first = true;

	if (*p == '!' || *p == '^') {
		negate = true;
		p++;
	}
	for (;; first = false) {
		unsigned char lo, hi;

		if (*p == '\0')
			return -1;
		if (*p == ']' && !first)
			break;
		if (*p == '\\' && p[1] != '\0')
			p++;
		lo = hi = *p++;
		/* "a-z"; a '-' before the closing ']' is literal. */
		if (*p == '-' && p[1] != ']' && p[1] != '\0') {
			p++;
			if (*p == '\\' && p[1] != '\0')
				p++;
			hi = *p++;
		}
		if (lo <= c && c <= hi)
			found = true;
	}
	*pp = (const char *)p + 1;
	return found != negate;
}

/* Match the one-byte element at *pp against c; on a match move *pp past
 * it. The element is not '*' and *pp is not at the end. */
static bool match_one(const char **pp, unsigned char c)
{
	const char *p = *pp;
	unsigned char want;

	switch (*p) {
	case '?':
		*pp = p + 1;
		return true;
	case '[': {
		int m = match_set(pp, c);

		if (m >= 0)
			return m == 1;
		want = '[';
		break;
	}
	case '\\':
		if (p[1] != '\0')
			p++;
		want = (unsigned char)*p;
		break;
	default:
		want = (unsigned char)*p;
		break;
	}
	if (c != want)
		return false;
	*pp = p + 1;
	return true;
}

bool cli_glob_match(const char *pat, const void *s, size_t n)
{
	const unsigned char *k = s;
	const char *p = pat, *star = NULL;
	size_t i = 0, star_i = 0;

	while (i < n) {
		if (*p == '*') {
			while (*p == '*')
				p++;
			star = p;
			star_i = i;
			continue;
		}
		if (*p != '\0' && match_one(&p, k[i])) {
			i++;
			continue;
		}
		if (star == NULL)
			return false;
		/* Let the last '*' take one more byte and try again. */
		p = star;
		i = ++star_i;
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}
