/*
 * common.c - the helpers of the command-line fuzz targets (fuzz_cli.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_cli.h"

void fcli_bug(const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	int n;

	n = snprintf(line, sizeof line, "ORACLE: ");
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	strcat(line, "\n");
	(void)!write(STDERR_FILENO, line, strlen(line));
	abort();
}

const char *fcli_show(const char *s, size_t len)
{
	static char buf[1024];
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < len && i < 200; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= ' ' && c < 0x7f && c != '\\') {
			buf[o++] = (char)c;
		} else {
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = hex[c >> 4];
			buf[o++] = hex[c & 15];
		}
	}
	if (len > 200) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

void fcli_args_make(struct fcli_args *a, const char *argv0,
                    const uint8_t *data, size_t size)
{
	size_t start = 0;

	memset(a, 0, sizeof *a);
	a->words[0] = strdup(argv0);
	if (a->words[0] == NULL)
		abort();
	a->lens[0] = strlen(argv0);
	a->nwords = 1;
	while (start < size && a->nwords <= FCLI_MAX_WORDS) {
		const uint8_t *nul = memchr(data + start, 0, size - start);
		size_t len = nul ? (size_t)(nul - (data + start)) : size - start;
		char *w = malloc(len + 1);

		if (w == NULL)
			abort();
		memcpy(w, data + start, len);
		w[len] = '\0';
		a->lens[a->nwords] = len;
		a->words[a->nwords++] = w;
		start += len + 1;
	}
	for (int i = 0; i < a->nwords; i++)
		a->argv[i] = a->words[i];
	a->argv[a->nwords] = NULL;
	a->argc = a->nwords;
}

void fcli_args_free(struct fcli_args *a)
{
	for (int i = 0; i < a->nwords; i++)
		free(a->words[i]);
	a->nwords = 0;
	a->argc = 0;
}

bool fcli_args_owns(const struct fcli_args *a, const char *p)
{
	for (int i = 0; i < a->nwords; i++)
		if (p >= a->words[i] && p <= a->words[i] + a->lens[i])
			return true;
	return false;
}

/* Far more than any help text; a parser that writes more is a finding. */
#define CAPTURE_MAX (64u * 1024)

static char out_buf[CAPTURE_MAX + 1], err_buf[CAPTURE_MAX + 1];
static FILE *out_f, *err_f;

void fcli_capture_init(void)
{
	if (out_f != NULL)
		return;
	out_f = fmemopen(out_buf, CAPTURE_MAX, "w");
	err_f = fmemopen(err_buf, CAPTURE_MAX, "w");
	if (out_f == NULL || err_f == NULL) {
		perror("fuzz: fmemopen");
		abort();
	}
	/* glibc's stdout and stderr are plain variables: the parsers' stdio
	 * goes to the memory streams, while libFuzzer and the sanitizers,
	 * which write to fd 2 (or took their FILE earlier), still reach the
	 * terminal. */
	stdout = out_f;
	stderr = err_f;
}

void fcli_capture_begin(void)
{
	rewind(out_f);
	rewind(err_f);
	clearerr(out_f);
	clearerr(err_f);
}

static size_t take(FILE *f, char *buf)
{
	long n;

	FCLI_CHECK(fflush(f) == 0 && !ferror(f),
	           "more than %u bytes of output", CAPTURE_MAX);
	n = ftell(f);
	if (n < 0 || (unsigned long)n > CAPTURE_MAX)
		abort();
	buf[n] = '\0';
	return (size_t)n;
}

void fcli_capture_end(const char **out, size_t *out_len, const char **err,
                      size_t *err_len)
{
	*out_len = take(out_f, out_buf);
	*err_len = take(err_f, err_buf);
	*out = out_buf;
	*err = err_buf;
}

bool fcli_one_line(const char *buf, size_t len, const char *prefix)
{
	size_t plen = strlen(prefix);

	if (len < plen + 1 || memcmp(buf, prefix, plen) != 0 ||
	    buf[len - 1] != '\n')
		return false;
	for (size_t i = 0; i + 1 < len; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (c < ' ' || c >= 0x7f)
			return false;
	}
	return true;
}
