/*
 * fuzz_cli.h - what the command-line fuzz targets share (common.c): the
 * libFuzzer entry points, argv made from an input, the capture of stdout
 * and stderr, and the way an oracle reports a finding.
 *
 * Each target (fuzz_dump.c, fuzz_kv_args.c, fuzz_kvd_args.c) defines
 * LLVMFuzzerTestOneInput and LLVMFuzzerInitialize; it is linked either with
 * libFuzzer (clang, -fsanitize=fuzzer) or with replay.c, a plain main()
 * that runs saved inputs with any compiler.
 */
#ifndef FUZZ_CLI_H
#define FUZZ_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A finding of an oracle: print "ORACLE: <formatted>" on the real stderr
 * (fd 2, which the capture leaves alone) and abort, so that libFuzzer
 * saves the input and the replay driver names it. */
void fcli_bug(const char *fmt, ...) __attribute__((format(printf, 1, 2),
                                                   noreturn));
#define FCLI_CHECK(cond, ...)                                                 \
	do {                                                                  \
		if (!(cond))                                                  \
			fcli_bug(__VA_ARGS__);                                \
	} while (0)

/* An argv made from an input: the bytes split at every NUL, a trailing NUL
 * ending the last word rather than starting an empty one, after argv0.
 * At most FCLI_MAX_WORDS words are kept. Every word is a malloc'd block of
 * exactly its length + 1, so a read past a word's NUL is an ASan report.
 * argv[argc] is NULL, as from the kernel. words[] keeps the blocks (a
 * parser may permute argv, as getopt_long does). */
#define FCLI_MAX_WORDS 64
struct fcli_args {
	int argc;
	char *argv[FCLI_MAX_WORDS + 2];
	char *words[FCLI_MAX_WORDS + 1];
	size_t lens[FCLI_MAX_WORDS + 1]; /* strlen of words[i] */
	int nwords;
};
void fcli_args_make(struct fcli_args *a, const char *argv0,
                    const uint8_t *data, size_t size);
void fcli_args_free(struct fcli_args *a);
/* Is p a pointer into one of the words (its NUL included)? */
bool fcli_args_owns(const struct fcli_args *a, const char *p);

/* Capture: stdout and stderr (the FILE *s; fd 1 and 2 stay) become memory
 * streams, so what the parsers print is checked rather than shown. Call
 * fcli_capture_init once; fcli_capture_begin before the code under test,
 * fcli_capture_end after it: *out and *err get the bytes (NUL-terminated) and
 * their lengths. */
void fcli_capture_init(void);
void fcli_capture_begin(void);
void fcli_capture_end(const char **out, size_t *out_len, const char **err,
                      size_t *err_len);

/* Is buf[0, len) exactly one line that starts with prefix, of printable
 * ASCII, ending in its one '\n'? */
bool fcli_one_line(const char *buf, size_t len, const char *prefix);

/* Show (on fd 2) the bytes a finding was about: escaped, cut to 200. */
const char *fcli_show(const char *s, size_t len);

#endif /* FUZZ_CLI_H */
