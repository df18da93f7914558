/*
 * test_glob.c - cli_glob_match (cli/glob.c), the byte-wise shell pattern
 * matcher behind "kv keys GLOB", tested directly: every element, escapes,
 * sets and ranges, bytes that are not text, and patterns that would take
 * exponential time in a naive backtracking matcher.
 */
#include <time.h>

#include "harness.h"
#include "cli.h"

struct tcase {
	const char *pat;
	const char *key;
	size_t len; /* 0: strlen(key) */
	bool match;
};

static const struct tcase cases[] = {
	{"", "", 0, true},
	{"", "a", 0, false},
	{"*", "", 0, true},
	{"*", "anything", 0, true},
	{"**", "x", 0, true},
	{"?", "", 0, false},
	{"?", "a", 0, true},
	{"?", "ab", 0, false},
	{"a*", "a", 0, true},
	{"a*", "ba", 0, false},
	{"*a", "ba", 0, true},
	{"*a", "ab", 0, false},
	{"a*b*c", "axxbyyc", 0, true},
	{"a*b*c", "axxbyyc d", 0, false},
	{"a*b*c", "abcbc", 0, true},
	{"*ab", "aab", 0, true},
	{"*aab", "aaab", 0, true},
	{"user:*", "user:", 0, true},
	{"[abc]", "b", 0, true},
	{"[abc]", "d", 0, false},
	{"[a-c]x", "bx", 0, true},
	{"[a-c]x", "dx", 0, false},
	{"[!a-c]", "d", 0, true},
	{"[!a-c]", "a", 0, false},
	{"[^a-c]", "a", 0, false},
	{"[]]", "]", 0, true},
	{"[]a]", "a", 0, true},
	{"[!]]", "]", 0, false},
	{"[!]]", "x", 0, true},
	{"[a-]", "-", 0, true},
	{"[-a]", "-", 0, true},
	{"[\\]]", "]", 0, true},
	{"[\\-]", "-", 0, true},
	{"[a\\-z]", "b", 0, false},
	{"[", "[", 0, true},      /* unclosed: literal */
	{"[ab", "[ab", 0, true},
	{"[ab", "a", 0, false},
	{"\\*", "*", 0, true},
	{"\\*", "a", 0, false},
	{"\\?", "?", 0, true},
	{"\\[a]", "[a]", 0, true},
	{"\\\\", "\\", 0, true},
	{"a\\", "a\\", 0, true},  /* trailing backslash: literal */
	{"\\a", "a", 0, true},
	{"?", "\0", 1, true},     /* NUL is a byte like any other */
	{"a?b", "a\0b", 3, true},
	{"a*", "a\0\0\0", 4, true},
	{"*\n", "x\n", 0, true},
	{"[\x80-\xff]", "\xc3", 0, true},
	{"[\x80-\xff]", "c", 0, false},
	{"caf?", "caf\xc3\xa9", 0, false},
	{"caf??", "caf\xc3\xa9", 0, true},
	{"[z-a]", "m", 0, false}, /* an empty range matches nothing */
};

static void test_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct tcase *c = &cases[i];
		size_t len = c->len ? c->len : strlen(c->key);

		if (cli_glob_match(c->pat, c->key, len) != c->match)
			fail_msg("case %zu: pattern '%s' %s match a %zu-byte key",
			         i, c->pat, c->match ? "should" : "should not",
			         len);
	}
}

/* "a*a*a*...b" against a long run of 'a': exponential for recursive
 * matchers, quadratic at worst here. */
static void test_no_blowup(void **state)
{
	char pat[64], key[4096];
	struct timespec t0, t1;

	(void)state;
	strcpy(pat, "a*a*a*a*a*a*a*a*a*a*a*a*b");
	memset(key, 'a', sizeof key);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 10; i++)
		assert_false(cli_glob_match(pat, key, sizeof key));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(t1.tv_sec - t0.tv_sec < 5);
	key[sizeof key - 1] = 'b';
	assert_true(cli_glob_match(pat, key, sizeof key));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_no_blowup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
