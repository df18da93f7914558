/*
 * fuzz_kv_args.c - fuzz-kv-args: the kv command line, cli_parse() (cli/kv.c),
 * and the parsers of the values the commands take before they attach to a
 * store: --ttl DURATION and --cas VERSION (cli_put_options), the DELTA of
 * incr and decr (cli_delta), and the GLOB of keys (cli_glob_match).
 *
 * The input is split at its NUL bytes into argv (fuzz_cli.h). A first word
 * "KV_STORE=..." sets that variable for this input (and is argv[0]);
 * otherwise it is unset. Nothing runs a command: no store is touched.
 *
 * Oracles, besides no crash, no out-of-bounds read (every word is its own
 * exact-size block), no leak, no hang:
 *   - an independent parser written from the rules in kv.c's header
 *     comment and the command table in "kv --help" reaches the same
 *     outcome: error, help/version, or the same command with the same
 *     options, arguments and store;
 *   - an error prints exactly one line "kv: ..." of printable ASCII to
 *     stderr and nothing to stdout; help and the version print to stdout
 *     only; a parse that succeeds prints nothing; every string the parse
 *     hands back points into argv (or is $KV_STORE or "default");
 *   - put's options, incr/decr's delta, every word read as a duration and
 *     as a version, and globs matched against words and against the whole
 *     input (NULs included) agree with reference implementations (the
 *     glob one a dynamic-programming matcher, not a backtracking one).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fuzz_cli.h"

__extension__ typedef unsigned __int128 u128;

/* ------------------------------------------------------------------------
 * The reference command line
 */

struct ropt {
	const char *name;
	char letter;
	bool value;
};

/* Indexed like enum cli_opt. */
static const struct ropt ropts[OPT_COUNT] = {
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

#define B(o) (1u << (o))
static const struct rcmd {
	const char *name;
	unsigned opts;
	int min, max;
} rcmds[] = {
	{ "get", 0, 1, 1 },
	{ "put", B(OPT_TTL) | B(OPT_NX) | B(OPT_XX) | B(OPT_CAS), 1, 2 },
	{ "del", 0, 1, 1 },
	{ "ttl", 0, 1, 1 },
	{ "info", 0, 1, 1 },
	{ "incr", 0, 1, 2 },
	{ "decr", 0, 1, 2 },
	{ "keys", B(OPT_NULL), 0, 1 },
	{ "stats", B(OPT_JSON), 0, 0 },
	{ "check", B(OPT_REPAIR), 0, 0 },
	{ "flush", B(OPT_YES), 0, 0 },
	{ "dump", B(OPT_FORCE) | B(OPT_PARTIAL), 0, 1 },
	{ "load", B(OPT_NX) | B(OPT_PARTIAL) | B(OPT_FORCE), 0, 1 },
	{ "resize", 0, 1, 1 },
	{ "destroy", B(OPT_YES), 0, 0 },
	{ "help", 0, 0, 1 },
};
#define NRCMDS (sizeof rcmds / sizeof rcmds[0])

enum outcome { R_ERROR, R_PRINTED, R_RUN };

struct rline {
	enum outcome out;
	const struct rcmd *cmd;
	const char *opt[OPT_COUNT];
	const char *arg[3];
	int nargs;
	const char *store;
};

static void ref_parse(int argc, char **argv, struct rline *r)
{
	const char *command = NULL, *env;
	bool done = false;
	int i;

	memset(r, 0, sizeof *r);
	r->out = R_ERROR;
	for (i = 1; i < argc; i++) {
		const char *w = argv[i];
		size_t wl = strlen(w);

		if (done || w[0] != '-' || wl == 1) {
			if (command == NULL)
				command = w;
			else if (r->nargs++ < 3)
				r->arg[r->nargs - 1] = w;
		} else if (strcmp(w, "--") == 0) {
			done = true;
		} else if (w[1] == '-') {
			const char *eq = strchr(w + 2, '=');
			size_t nl = eq ? (size_t)(eq - w - 2) : wl - 2;
			int id;

			for (id = 0; id < OPT_COUNT; id++)
				if (strlen(ropts[id].name) == nl &&
				    strncmp(ropts[id].name, w + 2, nl) == 0)
					break;
			if (id == OPT_COUNT)
				return;
			if (!ropts[id].value && eq)
				return;
			if (!ropts[id].value)
				r->opt[id] = "";
			else if (eq)
				r->opt[id] = eq + 1;
			else if (i + 1 < argc)
				r->opt[id] = argv[++i];
			else
				return;
		} else {
			for (size_t k = 1; k < wl; k++) {
				int id;

				for (id = 0; id < OPT_COUNT; id++)
					if (ropts[id].letter == w[k])
						break;
				if (id == OPT_COUNT)
					return;
				if (!ropts[id].value) {
					r->opt[id] = "";
					continue;
				}
				if (k + 1 < wl)
					r->opt[id] = w + k + 1;
				else if (i + 1 < argc)
					r->opt[id] = argv[++i];
				else
					return;
				break;
			}
		}
	}
	if (command == NULL) {
		if (r->opt[OPT_HELP] || r->opt[OPT_VERSION])
			r->out = R_PRINTED;
		return;
	}
	for (size_t k = 0; k < NRCMDS; k++)
		if (strcmp(rcmds[k].name, command) == 0)
			r->cmd = &rcmds[k];
	if (r->cmd == NULL)
		return;
	if (r->opt[OPT_HELP]) {
		r->out = R_PRINTED;
		return;
	}
	for (int id = 0; id < OPT_COUNT; id++)
		if (r->opt[id] && id != OPT_STORE && id != OPT_HELP &&
		    !(r->cmd->opts & B(id)))
			return;
	if (r->nargs < r->cmd->min || r->nargs > r->cmd->max)
		return;
	env = getenv("KV_STORE");
	r->store = r->opt[OPT_STORE] ? r->opt[OPT_STORE]
	           : env && *env ? env : "default";
	r->out = R_RUN;
}

static bool same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	       (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* ------------------------------------------------------------------------
 * Reference value parsers
 */

#define TTL_MAX (3653ull * 24 * 3600 * 1000)

/* Decimal digits at s, as a saturated 128-bit number; *end after them. */
static u128 digits(const char *s, const char **end)
{
	u128 v = 0;

	for (; *s >= '0' && *s <= '9'; s++)
		if (v < ((u128)1 << 100))
			v = v * 10 + (unsigned)(*s - '0');
	*end = s;
	return v;
}

enum dur { D_OK, D_INVALID, D_POSITIVE, D_LONG };

static enum dur ref_duration(const char *s, uint64_t *ms)
{
	static const struct {
		const char *u;
		uint64_t ms;
	} units[] = { { "", 1000 }, { "ms", 1 }, { "s", 1000 },
		      { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 } };
	const char *end;
	u128 n = digits(s, &end), t;
	size_t i;

	for (i = 0; i < 6; i++)
		if (strcmp(end, units[i].u) == 0)
			break;
	if (end == s || i == 6)
		return s[0] == '-' ? D_POSITIVE : D_INVALID;
	if (n == 0)
		return D_POSITIVE;
	t = n * units[i].ms;
	if (t > TTL_MAX)
		return D_LONG;
	*ms = (uint64_t)t;
	return D_OK;
}

static bool ref_version(const char *s, uint64_t *v)
{
	const char *end;
	u128 n = digits(s, &end);

	if (end == s || *end != '\0' || n > UINT64_MAX)
		return false;
	*v = (uint64_t)n;
	return true;
}

static bool ref_delta(const char *s, bool negate, int64_t *d)
{
	const char *end, *p = s;
	bool neg = false;
	u128 n;

	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	n = digits(p, &end);
	if (end == p || *end != '\0')
		return false;
	if (neg != negate) {
		/* The result is -n: at least INT64_MIN, except that decr
		 * of INT64_MIN (n = 2^63, neg) is refused by the code, as
		 * its negation does not fit. */
		if (n > (u128)INT64_MAX + 1 || (negate && n > INT64_MAX))
			return false;
		*d = n == (u128)INT64_MAX + 1 ? INT64_MIN
		                              : -(int64_t)(uint64_t)n;
	} else {
		/* The result is +n. */
		if (n > INT64_MAX)
			return false;
		*d = (int64_t)n;
	}
	return true;
}

/* Glob: the pattern turned into elements, then matched by dynamic
 * programming over (element, byte). */
enum gel { G_STAR, G_BYTE };
struct gelem {
	enum gel kind;
	uint8_t set[32]; /* G_BYTE: the bytes it matches */
};

static void set_bit(uint8_t *set, unsigned c)
{
	set[c / 8] |= (uint8_t)(1u << (c % 8));
}

static size_t glob_compile(const char *pat, struct gelem *el)
{
	const unsigned char *p = (const unsigned char *)pat;
	size_t n = 0;

	while (*p != '\0') {
		struct gelem *e = &el[n++];

		memset(e, 0, sizeof *e);
		e->kind = G_BYTE;
		if (*p == '*') {
			e->kind = G_STAR;
			p++;
		} else if (*p == '?') {
			memset(e->set, 0xff, sizeof e->set);
			p++;
		} else if (*p == '\\') {
			set_bit(e->set, p[1] != '\0' ? p[1] : '\\');
			p += p[1] != '\0' ? 2 : 1;
		} else if (*p == '[') {
			const unsigned char *q = p + 1;
			bool neg = false, closed = false, first = true;
			uint8_t set[32] = {0};

			if (*q == '!' || *q == '^') {
				neg = true;
				q++;
			}
			for (; *q != '\0'; first = false) {
				unsigned lo, hi;

				if (*q == ']' && !first) {
					closed = true;
					q++;
					break;
				}
				if (*q == '\\' && q[1] != '\0')
					q++;
				lo = hi = *q++;
				if (q[0] == '-' && q[1] != ']' && q[1] != '\0') {
					q++;
					if (*q == '\\' && q[1] != '\0')
						q++;
					hi = *q++;
				}
				for (unsigned c = lo; c <= hi; c++)
					set_bit(set, c);
			}
			if (closed) {
				for (int k = 0; k < 32; k++)
					e->set[k] = neg ? (uint8_t)~set[k]
					                : set[k];
				p = q;
			} else {
				set_bit(e->set, '[');
				p++;
			}
		} else {
			set_bit(e->set, *p++);
		}
	}
	return n;
}

/* -1 when too big to bother, else 0 or 1. */
static int ref_glob(const char *pat, const uint8_t *s, size_t n)
{
	size_t plen = strlen(pat), ne;
	struct gelem *el;
	bool *row, *next;
	int result;

	if ((plen + 1) * (n + 1) > (1u << 18))
		return -1;
	el = malloc((plen + 1) * sizeof *el);
	row = malloc(n + 1);
	next = malloc(n + 1);
	if (el == NULL || row == NULL || next == NULL)
		abort();
	ne = glob_compile(pat, el);
	/* row[j]: elements [e, ne) match s[j, n). Built from the end. */
	for (size_t j = 0; j <= n; j++)
		row[j] = j == n;
	for (size_t e = ne; e-- > 0;) {
		for (size_t j = n + 1; j-- > 0;) {
			if (el[e].kind == G_STAR)
				next[j] = row[j] || (j < n && next[j + 1]);
			else
				next[j] = j < n && (el[e].set[s[j] / 8] >>
				                    (s[j] % 8) & 1) && row[j + 1];
		}
		memcpy(row, next, n + 1);
	}
	result = row[0];
	free(el);
	free(row);
	free(next);
	return result;
}

/* ------------------------------------------------------------------------
 * The target
 */

static const char *cap_out, *cap_err;
static size_t cap_out_len, cap_err_len;

static void end_capture(void)
{
	fcli_capture_end(&cap_out, &cap_out_len, &cap_err, &cap_err_len);
}

/* A call that may print its one error line: quiet on success. */
static void expect_quiet_or_line(bool ok, const char *what)
{
	end_capture();
	FCLI_CHECK(cap_out_len == 0, "%s: wrote to stdout", what);
	if (ok)
		FCLI_CHECK(cap_err_len == 0, "%s: succeeded but said \"%s\"",
		           what, fcli_show(cap_err, cap_err_len));
	else
		FCLI_CHECK(fcli_one_line(cap_err, cap_err_len, "kv: "),
		           "%s: failed with \"%s\", not one line", what,
		           fcli_show(cap_err, cap_err_len));
}

static void check_duration(const char *w)
{
	uint64_t ms = 0, rms = 0;
	enum dur want = ref_duration(w, &rms);
	int rc;

	fcli_capture_begin();
	rc = cli_parse_duration(w, &ms);
	expect_quiet_or_line(rc == 0, "cli_parse_duration");
	FCLI_CHECK((rc == 0) == (want == D_OK),
	           "duration \"%s\": rc %d, the reference %d",
	           fcli_show(w, strlen(w)), rc, (int)want);
	if (rc == 0)
		FCLI_CHECK(ms == rms, "duration \"%s\": %" PRIu64 " ms, the "
		           "reference %" PRIu64, fcli_show(w, strlen(w)), ms,
		           rms);
	else
		FCLI_CHECK(strstr(cap_err, want == D_POSITIVE ? "positive"
		                  : want == D_LONG ? "too long"
		                  : "invalid duration") != NULL,
		           "duration \"%s\": \"%s\", the reference %d",
		           fcli_show(w, strlen(w)),
		           fcli_show(cap_err, cap_err_len), (int)want);
}

static void check_version(const char *w)
{
	uint64_t v = 0, rv = 0;
	bool want = ref_version(w, &rv);
	int rc;

	fcli_capture_begin();
	rc = cli_parse_version(w, &v);
	expect_quiet_or_line(rc == 0, "cli_parse_version");
	FCLI_CHECK((rc == 0) == want && (rc != 0 || v == rv),
	           "version \"%s\": rc %d %" PRIu64 ", the reference %d %"
	           PRIu64, fcli_show(w, strlen(w)), rc, v, want, rv);
}

static void check_glob(const char *pat, const void *s, size_t n)
{
	bool got = cli_glob_match(pat, s, n);
	int want = ref_glob(pat, s, n);

	FCLI_CHECK(want < 0 || got == (want == 1),
	           "glob \"%s\" on \"%s\": %d, the reference %d",
	           fcli_show(pat, strlen(pat)), fcli_show(s, n), got, want);
}

/* What "kv put" and "kv incr/decr" check before they attach. */
static void check_values(const struct cli *cli, const struct rline *r)
{
	if (strcmp(cli->command, "put") == 0) {
		struct kv_put_opts po;
		uint64_t ttl = 0, cas = 0;
		bool nx = r->opt[OPT_NX], xx = r->opt[OPT_XX];
		bool want = !(nx && xx) && !(r->opt[OPT_CAS] && (nx || xx)) &&
		            (!r->opt[OPT_CAS] ||
		             ref_version(r->opt[OPT_CAS], &cas)) &&
		            (!r->opt[OPT_TTL] ||
		             ref_duration(r->opt[OPT_TTL], &ttl) == D_OK);
		int rc;

		fcli_capture_begin();
		rc = cli_put_options(cli, &po);
		expect_quiet_or_line(rc == CLI_OK, "cli_put_options");
		FCLI_CHECK((rc == CLI_OK) == want, "put options: rc %d, the "
		           "reference %d", rc, want);
		if (rc == CLI_OK)
			FCLI_CHECK(po.ttl_ms == ttl && po.cas == cas &&
			           po.flags == (r->opt[OPT_CAS] ? KV_PUT_CAS
			                        : nx ? KV_PUT_NX
			                        : xx ? KV_PUT_XX : 0u),
			           "put options: ttl %" PRIu64 " cas %" PRIu64
			           " flags %u", po.ttl_ms, po.cas, po.flags);
	} else if (strcmp(cli->command, "incr") == 0 ||
	           strcmp(cli->command, "decr") == 0) {
		bool negate = cli->command[0] == 'd';
		int64_t d = 0, rd = negate ? -1 : 1;
		bool want = r->nargs < 2 || ref_delta(r->arg[1], negate, &rd);
		int rc;

		fcli_capture_begin();
		rc = cli_delta(cli, negate, &d);
		expect_quiet_or_line(rc == CLI_OK, "cli_delta");
		FCLI_CHECK((rc == CLI_OK) == want && (rc != CLI_OK || d == rd),
		           "%s delta \"%s\": rc %d %" PRId64 ", the reference "
		           "%d %" PRId64, cli->command,
		           r->nargs < 2 ? "" : fcli_show(r->arg[1],
		                                         strlen(r->arg[1])),
		           rc, d, want, rd);
	}
}

static void check_line(struct fcli_args *a, int argc, char **argv)
{
	struct rline r;
	struct cli cli;
	int status;

	/* The reference first: the parser may not change argv, but if it
	 * did the reference would see the original. */
	ref_parse(argc, argv, &r);
	memset(&cli, 0x5a, sizeof cli); /* cli_parse must set every field */
	fcli_capture_begin();
	status = cli_parse(&cli, argc, argv);
	end_capture();

	FCLI_CHECK(status == CLI_OK || status == CLI_ERROR, "status %d",
	           status);
	if (status == CLI_ERROR) {
		FCLI_CHECK(r.out == R_ERROR, "cli_parse failed (\"%s\"), the "
		           "reference parsed it (%d)",
		           fcli_show(cap_err, cap_err_len), (int)r.out);
		FCLI_CHECK(cap_out_len == 0, "an error wrote to stdout");
		FCLI_CHECK(fcli_one_line(cap_err, cap_err_len, "kv: "),
		           "error output is not one \"kv: \" line: \"%s\"",
		           fcli_show(cap_err, cap_err_len));
		return;
	}
	if (cli.run == NULL) {
		FCLI_CHECK(r.out == R_PRINTED, "cli_parse printed help or the "
		           "version, the reference says %d", (int)r.out);
		FCLI_CHECK(cap_err_len == 0 && cap_out_len > 0,
		           "help/version: %zu bytes out, %zu err", cap_out_len,
		           cap_err_len);
		FCLI_CHECK(strncmp(cap_out, "usage: kv ", 10) == 0 ||
		           strncmp(cap_out, "kv ", 3) == 0,
		           "help/version: \"%s\"",
		           fcli_show(cap_out, cap_out_len));
		return;
	}
	FCLI_CHECK(r.out == R_RUN, "cli_parse gave command %s, the reference "
	           "says %d", fcli_show(cli.command, strlen(cli.command)),
	           (int)r.out);
	FCLI_CHECK(cap_out_len == 0 && cap_err_len == 0,
	           "a successful parse printed something");
	FCLI_CHECK(strcmp(cli.command, r.cmd->name) == 0, "command %s, the "
	           "reference %s", cli.command, r.cmd->name);
	FCLI_CHECK(cli.nargs == r.nargs, "nargs %d, the reference %d",
	           cli.nargs, r.nargs);
	FCLI_CHECK(same(cli.store, r.store), "store \"%s\", the reference "
	           "\"%s\"", cli.store, r.store);
	FCLI_CHECK(cli.store == r.opt[OPT_STORE] ||
	           cli.store == getenv("KV_STORE") ||
	           strcmp(cli.store, "default") == 0, "store from nowhere");
	for (int id = 0; id < OPT_COUNT; id++) {
		FCLI_CHECK(same(cli.opt[id], r.opt[id]),
		           "--%s: \"%s\", the reference \"%s\"", ropts[id].name,
		           cli.opt[id] ? cli.opt[id] : "(none)",
		           r.opt[id] ? r.opt[id] : "(none)");
		FCLI_CHECK(cli.opt[id] == NULL || !ropts[id].value ||
		           fcli_args_owns(a, cli.opt[id]),
		           "--%s: value outside argv", ropts[id].name);
	}
	for (int k = 0; k < cli.nargs && k < CLI_MAX_ARGS; k++)
		FCLI_CHECK(same(cli.arg[k], r.arg[k]) &&
		           fcli_args_owns(a, cli.arg[k]),
		           "argument %d: \"%s\", the reference \"%s\"", k,
		           cli.arg[k], r.arg[k]);
	check_values(&cli, &r);
	if (strcmp(cli.command, "keys") == 0 && cli.nargs == 1)
		for (int k = 0; k < a->nwords; k++)
			check_glob(cli.arg[0], a->words[k], a->lens[k]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fcli_capture_init();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fcli_args a;
	int first = 0;

	fcli_capture_init();
	fcli_args_make(&a, "kv", data, size);
	if (a.argc > 1 && strncmp(a.argv[1], "KV_STORE=", 9) == 0) {
		setenv("KV_STORE", a.argv[1] + 9, 1);
		first = 1; /* it stands in for argv[0] */
	} else {
		unsetenv("KV_STORE");
	}
	check_line(&a, a.argc - first, a.argv + first);

	/* Every word as a duration and as a version; each word as a glob
	 * against the next word, and the first few against the whole input
	 * (NULs included). */
	for (int k = 1; k < a.nwords; k++) {
		check_duration(a.words[k]);
		check_version(a.words[k]);
		if (k + 1 < a.nwords)
			check_glob(a.words[k], a.words[k + 1], a.lens[k + 1]);
		if (k <= 3)
			check_glob(a.words[k], data, size);
	}
	fcli_args_free(&a);
	return 0;
}
