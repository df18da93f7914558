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
#include <stddef.h>

#include "kv.h"

/* Exit statuses, the CLI's contract with scripts. */
enum cli_exit {
	CLI_OK = 0,
	CLI_NOTFOUND = 1, /* key not found: get, del, ttl, put --xx */
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
};

int cli_get(const struct cli *cli);
int cli_put(const struct cli *cli);
int cli_del(const struct cli *cli);
int cli_ttl(const struct cli *cli);
int cli_stats(const struct cli *cli);
int cli_check(const struct cli *cli);
int cli_destroy(const struct cli *cli);

/* Print "kv: <formatted>\n" on stderr: the one line of an error. */
void cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

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

#endif /* KV_CLI_H */
