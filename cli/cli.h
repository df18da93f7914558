/*
 * cli.h - what the files of the kv command share: the parsed command line,
 * the exit statuses, the commands' entry points and the message helpers.
 * Private to cli/.
 *
 * Every command returns an exit status and has already written its one
 * error line to stderr when that status is not CLI_OK.
 */
#ifndef KV_CLI_H
#define KV_CLI_H

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

#include "kv.h"

/* Exit statuses, the CLI's contract with scripts. */
enum cli_exit {
	CLI_OK = 0,
	CLI_NOTFOUND = 1, /* key not found: get, del, ttl, info, put --xx/--cas */
	CLI_ERROR = 2,    /* anything else */
};

/* Every option any command knows. Which command accepts which is decided
 * in kv.c's command table. */
enum cli_opt {
	OPT_STORE,
	OPT_HELP,
	OPT_VERSION,
	OPT_TTL,
	OPT_NX,
	OPT_XX,
	OPT_JSON,
	OPT_YES,
	OPT_NULL,
	OPT_CAS,
	OPT_FORCE,
	OPT_PARTIAL,
	OPT_REPAIR,
	OPT_COUNT
};

/* Arguments after the command we keep: every command takes at most two,
 * and one more slot remembers the first surplus one for the error. */
#define CLI_MAX_ARGS 3

/* The command line once parsed. Read-only while a command runs; the
 * strings point into argv or the environment. */
struct cli {
	const char *store;           /* -s, else $KV_STORE, else "default" */
	const char *opt[OPT_COUNT];  /* value given; "" for a flag; NULL if absent */
	const char *arg[CLI_MAX_ARGS];
	int nargs;                   /* arguments after the command, all counted */
	const char *command;         /* the command's name, once parsed */
	int (*run)(const struct cli *cli); /* ... and its code */
};

/* Parse a whole command line into *cli (which need not be initialised).
 * Prints nothing but help, the version, or the one error line; never
 * exits, attaches to no store and reads nothing but argv and $KV_STORE.
 * Returns CLI_OK with cli->run set when that command is to run; CLI_OK
 * with cli->run NULL when there is nothing left to do (help or the version
 * was printed to stdout); CLI_ERROR after the error line. */
int cli_parse(struct cli *cli, int argc, char **argv);

int cli_get(const struct cli *cli);
int cli_put(const struct cli *cli);
int cli_del(const struct cli *cli);
int cli_ttl(const struct cli *cli);
int cli_stats(const struct cli *cli);
int cli_check(const struct cli *cli);
int cli_destroy(const struct cli *cli);
int cli_incr(const struct cli *cli);
int cli_decr(const struct cli *cli);
int cli_info(const struct cli *cli);
int cli_flush(const struct cli *cli);
int cli_resize(const struct cli *cli);

/* "64.0 MiB", with the exact count when one decimal hides some of it. */
void cli_format_bytes(uint64_t n, char *buf, size_t cap);
int cli_keys(const struct cli *cli);
int cli_dump(const struct cli *cli);
int cli_load(const struct cli *cli);

/* The checks "kv put" makes of its options before it attaches to the
 * store: --nx, --xx and --cas exclude each other, --cas VERSION and --ttl
 * DURATION parse. Fills *po. Returns CLI_OK, or CLI_ERROR after the error
 * line. */
int cli_put_options(const struct cli *cli, struct kv_put_opts *po);

/* The DELTA of "kv incr" (negate false) or "kv decr" (negate true), as
 * added to the value: 1 or -1 without one. Returns CLI_OK, or CLI_ERROR
 * after the error line. */
int cli_delta(const struct cli *cli, bool negate, int64_t *delta);

/* A --ttl DURATION: digits and an optional unit (ms, s, m, h, d; none is
 * seconds), from 1 ms to 10 years. Returns 0 with *ms set, or -1 after the
 * error line. */
int cli_parse_duration(const char *s, uint64_t *ms);

/* The --cas VERSION: a decimal uint64. Returns 0, or -1 after the error
 * line. */
int cli_parse_version(const char *s, uint64_t *out);

/* What checking a dump found (dump.c). */
struct cli_dump_verdict {
	uint64_t dump_ms;  /* the header's dump time */
	size_t first;      /* offset of the first record */
	size_t whole;      /* records known whole before the problem */
	char problem[256]; /* empty when the dump is sound */
	bool locatable;    /* the records before the problem can be trusted */
};

/* Check a whole dump image (docs/dump-format.md, "Reading a dump"): the
 * header, the bounds of every record, the end record, the checksum; then
 * every record against a store's max_key and max_value. Reads only
 * buf[0, len), allocates nothing, prints nothing. Fills *v: v->problem is
 * empty when all of [v->first ...) may be loaded; otherwise the records
 * [0, v->whole) from v->first are whole and within buf, and, when
 * v->locatable, fit max_key and max_value. */
void cli_dump_verify(const unsigned char *buf, size_t len, uint32_t max_key,
                     uint32_t max_value, struct cli_dump_verdict *v);

/* The TTL "kv load" puts a record with: ttl is the record's ttl_ms
 * (>= -1), dump_ms the header's dump time, now the wall clock in ms.
 * Returns false when the record has expired since the dump (it is then
 * skipped); otherwise true with *ttl_ms the TTL for kv_put (0: none), at
 * most 2^62 ms so that kv_put always accepts it. */
bool cli_dump_record_ttl(int64_t ttl, uint64_t dump_ms, uint64_t now,
                         uint64_t *ttl_ms);

/* After "incompatible store format version": how to move the data. */
#define CLI_EVERSION_HINT                                                      \
	" (another version of kv made it: dump it with that version's "        \
	"'kv dump FILE', then 'kv destroy --yes' and 'kv load FILE' with "      \
	"this one)"

/* Print "kv: <formatted>\n" on stderr: the one line of an error. */
/* printf-style checking for mingw's C99 stdio too (__MINGW_PRINTF_FORMAT
 * is gnu_printf there). */
#ifdef __MINGW_PRINTF_FORMAT
#define CLI_PRINTF(f, a) __attribute__((format(__MINGW_PRINTF_FORMAT, f, a)))
#else
#define CLI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#endif
void cli_fail(const char *fmt, ...) CLI_PRINTF(1, 2);

/* Room for any cli_quote() result: 60 bytes shown, 4 per escaped byte,
 * quotes, "..." and the NUL. */
#define CLI_QUOTE_MAX 256

/* Render a string from the user (a key, a store name, an option) so that
 * an error stays one printable line: bytes outside printable ASCII are
 * escaped and long strings are cut short. Quoted when `always`, or when it
 * is empty or holds a space, quote, backslash or escaped byte.
 * Returns buf. */
const char *cli_quote(const char *s, bool always, char buf[CLI_QUOTE_MAX]);

/* Attach to the command line's store; on failure print
 * "kv: store 'NAME': <why>" and return the status. */
int cli_open(const struct cli *cli, unsigned flags, kv_t **kv);

/* Report a failed operation on a key ("kv: CMD KEY: why") and map the
 * status to an exit status: KV_ENOTFOUND is CLI_NOTFOUND, all else
 * CLI_ERROR. */
int cli_key_error(const char *cmd, const char *key, int rc);

/* Copy out the value of key, whatever its size: ask for the size with cap
 * 0, allocate, fetch, and grow and retry while a writer keeps replacing it
 * with a longer one. *buf and *cap are a malloc'd buffer the caller owns and
 * may pass again (NULL/0 to start); it is grown as needed. *vlen gets the
 * value's length, *version (if not NULL) its version.
 * Returns KV_OK or a kv_get status (KV_ENOTFOUND, KV_EBUSY, KV_ENOMEM...). */
int cli_fetch(kv_t *kv, const void *key, size_t klen, char **buf,
              size_t *cap, size_t *vlen, uint64_t *version);

/* Visit every live key with kv_scan, a few index slices per call (keys.c),
 * retrying a slice that writers keep busy for up to a second. fn as for
 * kv_scan: a positive return stops the walk and is returned. With skipped
 * not NULL, a slice that cannot be read (busy past the bound, corrupt) is
 * stepped over and counted there instead of ending the walk. Returns
 * KV_OK, fn's value or a kv_scan status. */
int cli_scan_all(kv_t *kv, int (*fn)(void *ctx, const void *key, size_t klen),
                 void *ctx, uint64_t *skipped);

/* Shell-style glob match of a byte string (glob.c). pat is a C string;
 * s/n are any bytes, NUL included. '*' matches any run of bytes, '?' any
 * one byte, "[...]" one byte of a set (ranges "a-z", negation "[!...]" or
 * "[^...]", "]" first is literal), '\' makes the next byte literal. An
 * unclosed '[' and a trailing '\' stand for themselves. */
bool cli_glob_match(const char *pat, const void *s, size_t n);

#endif /* KV_CLI_H */
