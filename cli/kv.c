/*
 * kv.c - the kv command's command line: parsing, help texts, the table
 * that maps a command to its code (commands.c, keys.c, stats.c, dump.c),
 * and the message helpers they share. main() is in main.c, so that a fuzz
 * target (tests/fuzz_cli) can call cli_parse() without running a command.
 *
 * The parser is hand-written rather than getopt_long so that every error is
 * one line in our own words ("kv: <what>: <why>") and so that options may
 * stand before or after the command: "kv -s foo get k" and "kv get -s foo k"
 * mean the same. Rules:
 *   - long options match exactly (no abbreviations, which would break when a
 *     new option is added); "--opt=value" and "--opt value" both work;
 *   - short options cluster ("-yh") and take a value attached or next
 *     ("-sfoo", "-s foo");
 *   - "--" ends the options; "-" alone is an argument;
 *   - any other word starting with '-' is an option, so a VALUE such as "-1"
 *     needs "kv put KEY -- -1".
 * Whether an option applies to the command is checked once the whole line is
 * read, because the command may come after its options.
 *
 * Start-up does nothing the command does not need: "kv get" is meant to run
 * as a whole process in well under 2 ms.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define BIT(o) (1u << (o))

struct opt_def {
	const char *name; /* long form, without "--" */
	char letter;      /* short form, or 0 */
	bool takes_value;
};

static const struct opt_def opt_defs[OPT_COUNT] = {
	[OPT_STORE] = { "store", 's', true },
	[OPT_HELP] = { "help", 'h', false },
	[OPT_VERSION] = { "version", 0, false },
	[OPT_TTL] = { "ttl", 0, true },
	[OPT_NX] = { "nx", 0, false },
	[OPT_XX] = { "xx", 0, false },
	[OPT_JSON] = { "json", 0, false },
	[OPT_YES] = { "yes", 'y', false },
	[OPT_NULL] = { "null", '0', false },
	[OPT_CAS] = { "cas", 0, true },
	[OPT_FORCE] = { "force", 'f', false },
	[OPT_PARTIAL] = { "partial", 0, false },
	[OPT_REPAIR] = { "repair", 0, false },
};

static int cli_help(const struct cli *cli);

struct command {
	const char *name;
	int (*run)(const struct cli *cli);
	unsigned opts; /* options accepted besides --store and --help */
	int min_args, max_args;
	const char *synopsis; /* after "usage: kv " */
	const char *help;     /* what "kv COMMAND --help" prints below it */
};

static const struct command commands[] = {
	{ "get", cli_get, 0, 1, 1, "get [-s NAME] KEY",
	  "Write the value of KEY to stdout, byte for byte. A newline is added\n"
	  "only when stdout is a terminal. Exit 1 if KEY is absent or expired.\n" },
	{ "put", cli_put,
	  BIT(OPT_TTL) | BIT(OPT_NX) | BIT(OPT_XX) | BIT(OPT_CAS), 1, 2,
	  "put [-s NAME] [--ttl DURATION] [--nx | --xx | --cas VERSION] KEY "
	  "[VALUE]",
	  "Set KEY to VALUE. Without VALUE the value is all of stdin: any bytes,\n"
	  "at most the store's max_value (see 'kv stats').\n"
	  "\n"
	  "Options:\n"
	  "      --ttl DURATION   expire KEY after DURATION: a whole number and a\n"
	  "                       unit, ms, s, m, h or d (500ms, 30s, 5m, 2h, 1d);\n"
	  "                       no unit means seconds; from 1ms to 10 years\n"
	  "      --nx             only if KEY is absent (exit 2 if it exists)\n"
	  "      --xx             only if KEY exists (exit 1 if it is absent)\n"
	  "      --cas VERSION    only if KEY still has VERSION, as printed by\n"
	  "                       'kv info KEY': exit 2 if it has changed since,\n"
	  "                       exit 1 if it is gone\n" },
	{ "del", cli_del, 0, 1, 1, "del [-s NAME] KEY",
	  "Remove KEY. Exit 1 if it is absent.\n" },
	{ "ttl", cli_ttl, 0, 1, 1, "ttl [-s NAME] KEY",
	  "Print the time KEY has left to live, in seconds to the millisecond\n"
	  "(e.g. 29.731), or -1 if it never expires. Exit 1 if KEY is absent.\n" },
	{ "info", cli_info, 0, 1, 1, "info [-s NAME] KEY",
	  "Print what is known about KEY, one 'name value' line each:\n"
	  "  version N   changes with every put of KEY; for 'kv put --cas N'\n"
	  "  size N      the value's length in bytes\n"
	  "  ttl S       seconds left to live, to the millisecond; -1: never\n"
	  "Exit 1 if KEY is absent.\n" },
	{ "incr", cli_incr, 0, 1, 2, "incr [-s NAME] KEY [DELTA]",
	  "Add DELTA (default 1) to the decimal integer stored under KEY and\n"
	  "print the result. An absent key counts as 0; the key keeps its TTL.\n"
	  "The change is atomic: concurrent incr calls never lose an update.\n"
	  "DELTA is a signed 64-bit decimal integer; a negative one needs '--'\n"
	  "before it: kv incr KEY -- -5 (or use 'kv decr'). Exit 2 if the value\n"
	  "is not a decimal integer or the result would not fit in 64 bits\n"
	  "(the value is then unchanged).\n" },
	{ "decr", cli_decr, 0, 1, 2, "decr [-s NAME] KEY [DELTA]",
	  "Subtract DELTA (default 1) from the decimal integer stored under KEY\n"
	  "and print the result; otherwise exactly like 'kv incr'.\n" },
	{ "keys", cli_keys, BIT(OPT_NULL), 0, 1, "keys [-s NAME] [-0] [GLOB]",
	  "List the live keys that match GLOB (default '*': all), one per line,\n"
	  "in no particular order. Listing takes no lock, so writers are never\n"
	  "held up; a key added or removed meanwhile may or may not be listed.\n"
	  "Quote GLOB so the shell leaves it alone.\n"
	  "\n"
	  "GLOB is matched against the key's bytes: '*' any bytes, '?' any one\n"
	  "byte, '[abc]' '[a-z]' one of a set, '[!a-z]' or '[^a-z]' one not in\n"
	  "it, '\\' makes the next character literal.\n"
	  "\n"
	  "Options:\n"
	  "  -0, --null           end each key with a NUL byte instead of a\n"
	  "                       newline (for xargs -0). Keys may hold any\n"
	  "                       bytes, so a key with a newline makes the plain\n"
	  "                       list ambiguous, and one with a NUL makes both\n"
	  "                       forms ambiguous; 'kv dump' is exact.\n" },
	{ "stats", cli_stats, BIT(OPT_JSON), 0, 0, "stats [-s NAME] [--json]",
	  "Print every size and counter of the store, figures derived from them\n"
	  "and a table of the size classes in use, as aligned text, or with\n"
	  "--json as one JSON object (sizes in bytes, times in ms since the Unix\n"
	  "epoch, sweep_ns in nanoseconds, every size class under \"classes\").\n"
	  "\n"
	  "hits and misses count the gets of read-write attachers only: a\n"
	  "read-only mapping (that of 'kv get') cannot record them.\n"
	  "\n"
	  "Derived: load_factor = items / slots; hit_ratio = hits / (hits +\n"
	  "misses), null before the first get; index_bytes = buckets * 64;\n"
	  "used_bytes = data_used + index_bytes; overhead_bytes = used_bytes -\n"
	  "key_bytes - value_bytes; overhead_per_item = overhead_bytes / items;\n"
	  "capacity_bytes = data_bytes + index_bytes. probe_hist counts keys by\n"
	  "their distance from their home bucket: 0, 1, 2, 3, 4-7, 8-15, 16-31,\n"
	  "32 or more.\n"
	  "Per class: chunk size, pages, used chunks, capacity (pages * chunks\n"
	  "per page), fill (used / capacity) and evictions.\n" },
	{ "check", cli_check, BIT(OPT_REPAIR), 0, 0, "check [-s NAME] [--repair]",
	  "Walk the whole store and verify every invariant of its index and its\n"
	  "allocator. Print 'ok' and exit 0 if it is sound; otherwise print each\n"
	  "problem on stderr as 'kv: check: PROBLEM' and exit 2.\n"
	  "First it looks at the writer lock. A lock whose holder is gone (a\n"
	  "killed writer, a previous boot of a file-backed store, damaged bytes)\n"
	  "is repaired, as any writer would, and said on stdout; read-only, it is\n"
	  "reported as a problem. A lock held by a live thread that never\n"
	  "recorded itself as the holder cannot be judged safely: it is reported,\n"
	  "and --repair breaks it once it has not moved for a second. Use\n"
	  "--repair only when no kv writer is stopped (in a debugger, by SIGSTOP).\n" },
	{ "flush", cli_flush, BIT(OPT_YES), 0, 0, "flush [-s NAME] --yes",
	  "Remove every key and print how many were removed. The store stays.\n"
	  "Writers are held up only briefly at a time, and a key put during the\n"
	  "flush may survive it. There is no prompt: -y or --yes is required.\n" },
	{ "dump", cli_dump, BIT(OPT_FORCE) | BIT(OPT_PARTIAL), 0, 1,
	  "dump [-s NAME] [--force] [--partial] [FILE]",
	  "Write every key with its value and remaining TTL to FILE (default or\n"
	  "'-': stdout) in kv's binary dump format (docs/dump-format.md):\n"
	  "versioned, checksummed, the same on every machine. A FILE that is new\n"
	  "or a regular file is replaced only once the dump is complete, and\n"
	  "made with mode 0600. Prints 'dumped N keys' on stderr. The dump takes\n"
	  "no lock: each key is as it was when read, not as of one instant.\n"
	  "\n"
	  "Options:\n"
	  "  -f, --force          write to a terminal anyway\n"
	  "  --partial            on a damaged store, skip each key or index\n"
	  "                       slice that cannot be read (each is named on\n"
	  "                       stderr) instead of stopping: save what can be\n"
	  "                       saved before 'kv destroy'\n" },
	{ "load", cli_load, BIT(OPT_NX) | BIT(OPT_PARTIAL) | BIT(OPT_FORCE), 0,
	  1, "load [-s NAME] [--nx] [--partial] [FILE]",
	  "Put every key of a dump made by 'kv dump' from FILE (default or '-':\n"
	  "stdin), with what its TTL had left at the dump time minus the time\n"
	  "since; keys whose TTL ran out since are skipped. Prints 'loaded N\n"
	  "keys' on stderr.\n"
	  "\n"
	  "The whole dump is checked first (format, every record, the count,\n"
	  "the checksum, and that every key and value fits this store), so a\n"
	  "truncated or corrupt dump loads nothing and exits 2.\n"
	  "\n"
	  "Options:\n"
	  "      --nx             keep keys that already exist (default: replace)\n"
	  "      --partial        from a dump cut short or with a damaged record,\n"
	  "                       load the records before the damage, say how\n"
	  "                       many, and still exit 2. Damage that only the\n"
	  "                       checksum shows cannot be located: nothing loads\n"
	  "  -f, --force          read from a terminal anyway\n" },
	{ "resize", cli_resize, 0, 1, 1, "resize [-s NAME] SIZE",
	  "Grow or shrink the store to SIZE (bytes, or with a suffix: 256M, 4G)\n"
	  "while it serves: every process attached goes on reading and writing\n"
	  "and follows the new size by itself; kvd keeps running. The index\n"
	  "changes in proportion. Writers wait while keys move and the index is\n"
	  "rebuilt (about 0.2 s per million keys); readers do not. A store grows\n"
	  "up to its limit, set when it was made (kvd --max-size; 16 times its\n"
	  "size by default); it shrinks as far as its keys fit, and says so\n"
	  "when they do not, changing nothing.\n" },
	{ "destroy", cli_destroy, BIT(OPT_YES), 0, 0, "destroy [-s NAME] --yes",
	  "Remove the store and all its data (gone once every process has\n"
	  "detached). There is no prompt: -y or --yes is required.\n" },
	{ "help", cli_help, 0, 0, 1, "help [COMMAND]",
	  "Print the list of commands, or the help of COMMAND.\n" },
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const char usage_text[] =
	"usage: kv [-s NAME] COMMAND [ARGS]\n"
	"\n"
	"Read and change a kv shared-memory key-value store.\n"
	"\n"
	"Commands:\n"
	"  get KEY              write the value of KEY to stdout\n"
	"  put KEY [VALUE]      set KEY to VALUE, or to all of stdin\n"
	"  del KEY              remove KEY\n"
	"  ttl KEY              print the seconds KEY has left (-1: no expiry)\n"
	"  info KEY             print KEY's version, size and TTL\n"
	"  incr KEY [DELTA]     add DELTA (default 1) to a decimal value\n"
	"  decr KEY [DELTA]     subtract DELTA (default 1) from a decimal value\n"
	"  keys [-0] [GLOB]     list the keys that match GLOB (default: all)\n"
	"  stats [--json]       print the store's sizes, counters, size classes\n"
	"  check                verify every invariant of the store\n"
	"  flush --yes          remove every key\n"
	"  resize SIZE          grow the store while it serves\n"
	"  dump [FILE]          write every key, value and TTL to FILE or stdout\n"
	"  load [FILE]          put every key of a dump from FILE or stdin\n"
	"  destroy --yes        remove the store and all its data\n"
	"  help [COMMAND]       print this help, or a command's\n"
	"\n"
	"Options:\n"
	"  -s, --store NAME     the store (default: $KV_STORE, else 'default')\n"
	"  -h, --help           print help; after a command, that command's\n"
	"      --version        print the version\n"
	"\n"
	"Options may come before or after the command. '--' ends the options;\n"
	"an argument that starts with '-' needs it: kv put KEY -- -1\n"
	"A NAME of letters, digits, '.', '_' and '-' (at most 64) is a shared-\n"
	"memory store, /dev/shm/kv.NAME; a NAME with a '/' is a file-backed one.\n"
	"Run 'kv COMMAND --help' for a command's options.\n"
	"\n"
	"Exit status: 0 success; 1 key not found (get, del, ttl, info, put --xx,\n"
	"put --cas); 2 any other error, reported on stderr as\n"
	"'kv: <what>: <why>'.\n";

static const char common_options[] =
	"\n"
	"Common options:\n"
	"  -s, --store NAME     the store (default: $KV_STORE, else 'default')\n"
	"  -h, --help           print this help\n";

void cli_fail(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	/* Format first and write once: stderr is unbuffered, and one write
	 * keeps the line whole when several processes share a log. */
	memcpy(line, "kv: ", 4);
	va_start(ap, fmt);
	n = vsnprintf(line + 4, sizeof line - 5, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof line - 6)
		n = (int)(sizeof line - 6);
	line[4 + n] = '\n';
	line[5 + n] = '\0';
	fputs(line, stderr);
}

const char *cli_quote(const char *s, bool always, char buf[CLI_QUOTE_MAX])
{
	static const char hex[] = "0123456789abcdef";
	const size_t shown = 60;
	bool quote = always || *s == '\0';
	size_t i, o = 0;

	for (i = 0; s[i] != '\0' && !quote; i++) {
		unsigned char c = (unsigned char)s[i];
		quote = c <= ' ' || c >= 0x7f || c == '\'' || c == '\\';
	}
	if (quote)
		buf[o++] = '\'';
	for (i = 0; s[i] != '\0' && i < shown; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\'' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c < ' ' || c >= 0x7f) {
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = hex[c >> 4];
			buf[o++] = hex[c & 15];
		} else {
			buf[o++] = (char)c;
		}
	}
	if (s[i] != '\0') {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	if (quote)
		buf[o++] = '\'';
	buf[o] = '\0';
	return buf;
}

int cli_open(const struct cli *cli, unsigned flags, kv_t **kv)
{
	char q[CLI_QUOTE_MAX];
	/* A command makes a few calls and exits: warming its page tables
	 * in the background (kv_open) would only cost it a thread. */
	int rc = kv_open(cli->store, flags | KV_NOWARM, kv);

	/* Attaching to a store marked destroyed fails only when its
	 * destroyer died before removing the name: say how to finish. A
	 * store of another format: say how to carry its data over. */
	if (rc != KV_OK)
		cli_fail("store %s: %s%s", cli_quote(cli->store, true, q),
		         kv_strerror(rc),
		         rc == KV_EDESTROYED ? " (its name is left over: remove "
		                               "it with 'kv destroy --yes')"
		         : rc == KV_EVERSION ? CLI_EVERSION_HINT
		                             : "");
	return rc;
}

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void unknown_command(const char *name)
{
	char q[CLI_QUOTE_MAX];

	cli_fail("unknown command %s (run 'kv --help' for the list)",
	         cli_quote(name, true, q));
}

static void print_command_help(const struct command *cmd)
{
	/* --store means nothing to "help", so it gets no options footer. */
	printf("usage: kv %s\n\n%s%s", cmd->synopsis, cmd->help,
	       cmd->run == cli_help ? "" : common_options);
}

static int cli_help(const struct cli *cli)
{
	const struct command *cmd;

	if (cli->nargs == 0) {
		fputs(usage_text, stdout);
		return CLI_OK;
	}
	cmd = find_command(cli->arg[0]);
	if (cmd == NULL) {
		unknown_command(cli->arg[0]);
		return CLI_ERROR;
	}
	print_command_help(cmd);
	return CLI_OK;
}

static void unknown_option(const char *word, size_t len)
{
	char copy[CLI_QUOTE_MAX], q[CLI_QUOTE_MAX];

	/* Show "--name" without its "=value"; cli_quote cuts long names. */
	if (len >= sizeof copy)
		len = sizeof copy - 1;
	memcpy(copy, word, len);
	copy[len] = '\0';
	cli_fail("unknown option %s (to pass it as an argument, write '--' "
	         "before it)", cli_quote(copy, true, q));
}

/* "--name", "--name=value" or "--name value"; *i moves past a value taken
 * from the next word. Returns 0, or -1 after printing the error. */
static int parse_long(struct cli *cli, int argc, char **argv, int *i)
{
	const char *word = argv[*i];
	const char *name = word + 2;
	const char *eq = strchr(name, '=');
	size_t len = eq ? (size_t)(eq - name) : strlen(name);
	const struct opt_def *def;
	int id;

	for (id = 0; id < OPT_COUNT; id++)
		if (strlen(opt_defs[id].name) == len &&
		    memcmp(opt_defs[id].name, name, len) == 0)
			break;
	if (id == OPT_COUNT) {
		unknown_option(word, len + 2);
		return -1;
	}
	def = &opt_defs[id];
	if (!def->takes_value) {
		if (eq != NULL) {
			cli_fail("option '--%s' takes no value", def->name);
			return -1;
		}
		cli->opt[id] = "";
	} else if (eq != NULL) {
		cli->opt[id] = eq + 1;
	} else if (*i + 1 < argc) {
		cli->opt[id] = argv[++*i];
	} else {
		cli_fail("option '--%s' needs a value", def->name);
		return -1;
	}
	return 0;
}

/* "-y", "-yh" (a cluster of flags), "-sNAME" or "-s NAME". */
static int parse_short(struct cli *cli, int argc, char **argv, int *i)
{
	const char *word = argv[*i];

	for (const char *p = word + 1; *p != '\0'; p++) {
		int id;

		for (id = 0; id < OPT_COUNT; id++)
			if (opt_defs[id].letter == *p)
				break;
		if (id == OPT_COUNT) {
			unknown_option(word, strlen(word));
			return -1;
		}
		if (!opt_defs[id].takes_value) {
			cli->opt[id] = "";
			continue;
		}
		if (p[1] != '\0') {
			cli->opt[id] = p + 1;
		} else if (*i + 1 < argc) {
			cli->opt[id] = argv[++*i];
		} else {
			cli_fail("option '-%c' needs a value", *p);
			return -1;
		}
		break;
	}
	return 0;
}

/* Split argv into options, the command word and its arguments.
 * Returns 0, or -1 after printing the error. */
static int parse_words(struct cli *cli, int argc, char **argv,
                       const char **command)
{
	bool options_done = false;

	*command = NULL;
	for (int i = 1; i < argc; i++) {
		const char *w = argv[i];
		int rc = 0;

		if (!options_done && w[0] == '-' && w[1] != '\0') {
			if (strcmp(w, "--") == 0)
				options_done = true;
			else if (w[1] == '-')
				rc = parse_long(cli, argc, argv, &i);
			else
				rc = parse_short(cli, argc, argv, &i);
			if (rc != 0)
				return -1;
		} else if (*command == NULL) {
			*command = w;
		} else {
			if (cli->nargs < CLI_MAX_ARGS)
				cli->arg[cli->nargs] = w;
			cli->nargs++;
		}
	}
	return 0;
}

/* The checks that need the command: options it takes, argument count. */
static int validate(const struct cli *cli, const struct command *cmd)
{
	unsigned allowed = cmd->opts | BIT(OPT_STORE) | BIT(OPT_HELP);
	char q[CLI_QUOTE_MAX];

	for (int id = 0; id < OPT_COUNT; id++) {
		if (cli->opt[id] != NULL && !(allowed & BIT(id))) {
			cli_fail("%s: option '--%s' does not apply to this command",
			         cmd->name, opt_defs[id].name);
			return -1;
		}
	}
	if (cli->nargs < cmd->min_args) {
		cli_fail("%s: missing argument (usage: kv %s)", cmd->name,
		         cmd->synopsis);
		return -1;
	}
	if (cli->nargs > cmd->max_args) {
		cli_fail("%s: unexpected argument %s (usage: kv %s)", cmd->name,
		         cli_quote(cli->arg[cmd->max_args], true, q),
		         cmd->synopsis);
		return -1;
	}
	return 0;
}

/* Parse the whole line. Returns the command to run, or NULL with *status
 * set when there is nothing left to do (help, version, or an error). */
static const struct command *parse_line(struct cli *cli, int argc,
                                        char **argv, int *status)
{
	const struct command *cmd;
	const char *name, *env;

	*status = CLI_ERROR;
	if (parse_words(cli, argc, argv, &name) != 0)
		return NULL;
	if (name == NULL) {
		if (cli->opt[OPT_HELP] != NULL) {
			fputs(usage_text, stdout);
			*status = CLI_OK;
		} else if (cli->opt[OPT_VERSION] != NULL) {
			printf("kv %s\n", kv_version());
			*status = CLI_OK;
		} else {
			cli_fail("missing command (run 'kv --help' for usage)");
		}
		return NULL;
	}
	cmd = find_command(name);
	if (cmd == NULL) {
		unknown_command(name);
		return NULL;
	}
	if (cli->opt[OPT_HELP] != NULL) {
		print_command_help(cmd);
		*status = CLI_OK;
		return NULL;
	}
	if (validate(cli, cmd) != 0)
		return NULL;

	/* An empty $KV_STORE counts as unset, as shells make that easy. */
	env = getenv("KV_STORE");
	if (cli->opt[OPT_STORE] != NULL)
		cli->store = cli->opt[OPT_STORE];
	else if (env != NULL && *env != '\0')
		cli->store = env;
	else
		cli->store = "default";
	return cmd;
}

int cli_parse(struct cli *cli, int argc, char **argv)
{
	const struct command *cmd;
	int status;

	memset(cli, 0, sizeof *cli);
	cmd = parse_line(cli, argc, argv, &status);
	if (cmd == NULL)
		return status;
	cli->command = cmd->name;
	cli->run = cmd->run;
	return CLI_OK;
}
