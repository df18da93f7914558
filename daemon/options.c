/*
 * options.c - kvd's command line.
 *
 * Everything here runs before kvd touches a store or forks, so a mistake on
 * the command line is reported once, on the caller's stderr, as
 * "kvd: <what>: <why>" with exit status 2, and nothing is left behind.
 *
 * Sizes are whole numbers of bytes with an optional binary suffix (K, M, G,
 * T: powers of 1024, either case, optionally followed by "B" or "iB"), so
 * "64M", "4G", "512KiB" and "4096" all work; fractions, signs, spaces, zero
 * and anything that overflows 64 bits are refused rather than guessed at.
 *
 * An error line repeats the user's word through shown(), escaped and cut
 * short, so that it stays one line whatever bytes the word holds. The value
 * parsers are kvd_parse_*() (kvd.h) so that tests/fuzz_cli can call them.
 *
 * What the platform decides comes from sys.h: group names, absolute paths,
 * whether -d and --group exist (Windows refuses both, saying why), and the
 * parts of --help that differ.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kvd.h"
#include "../cli/size.h"
#include "sys.h"

#define DEFAULT_STORE "default"

enum {
	OPT_SIZE = 256,
	OPT_MODE,
	OPT_MAX_VALUE,
	OPT_MAX_ITEMS,
	OPT_PIDFILE,
	OPT_SWEEP_BUCKETS,
	OPT_GROUP,
	OPT_LISTEN,
	OPT_THREADS,
	OPT_MAX_CONNS,
	OPT_IDLE_TIMEOUT,
	OPT_AUTH_FILE,
	OPT_HUGE_PAGES,
	OPT_MAX_SIZE,
};

/* The short options, for getopt_long (after its ':'). */
#define SHORT_OPTIONS "s:dqvhV"

/* Index buckets the expiry sweep looks at per tick (see kvd.c). */
#define DEFAULT_SWEEP_BUCKETS 1024

/* The memcached protocol server's limits (mc_net.c). A thread per CPU is
 * the default; more than this many is a typo, not a plan. Connections are
 * descriptors, and past a million the open-file limit is the real bound. */
#define DEFAULT_MAX_CONNS 1024
#define MAX_THREADS 256
#define MAX_CONNS 1000000

static const struct option long_options[] = {
	{"store", required_argument, NULL, 's'},
	{"size", required_argument, NULL, OPT_SIZE},
	{"mode", required_argument, NULL, OPT_MODE},
	{"group", required_argument, NULL, OPT_GROUP},
	{"max-value", required_argument, NULL, OPT_MAX_VALUE},
	{"max-items", required_argument, NULL, OPT_MAX_ITEMS},
	{"max-size", required_argument, NULL, OPT_MAX_SIZE},
	{"huge-pages", no_argument, NULL, OPT_HUGE_PAGES},
	{"daemon", no_argument, NULL, 'd'},
	{"pidfile", required_argument, NULL, OPT_PIDFILE},
	{"sweep-buckets", required_argument, NULL, OPT_SWEEP_BUCKETS},
	{"listen", required_argument, NULL, OPT_LISTEN},
	{"threads", required_argument, NULL, OPT_THREADS},
	{"max-conns", required_argument, NULL, OPT_MAX_CONNS},
	{"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
	{"auth-file", required_argument, NULL, OPT_AUTH_FILE},
	{"quiet", no_argument, NULL, 'q'},
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

static void usage(FILE *out)
{
	fputs(
	    "Usage: kvd [OPTION]...\n"
	    KVD_SYS_HELP_INTRO
	    "\n"
	    KVD_SYS_HELP_STORE
	    "      --size BYTES       size of the whole mapping (default 64M)\n"
	    KVD_SYS_HELP_ACCESS
	    "      --max-value BYTES  largest value, at most 1G (default size/16,\n"
	    "                         at least 1M)\n"
	    "      --max-items N      size the index for N keys (default: from\n"
	    "                         --size)\n"
	    "      --max-size BYTES   how large 'kv resize' may grow the store\n"
	    "                         (default 16 x size, at least 16G)\n"
	    "      --huge-pages       back a new store with 2 MiB huge pages\n"
	    "                         (Linux; /dev/shm must be mounted with\n"
	    "                         huge=advise); an error if none are given\n"
	    KVD_SYS_HELP_DAEMON
	    "      --sweep-buckets N  every tick (10 ms), remove the expired keys\n"
	    "                         of the next N index buckets (default 1024;\n"
	    "                         0: no sweep, expired keys then go only when\n"
	    "                         a put needs room or meets them)\n"
	    KVD_SYS_HELP_NET
	    "  -q, --quiet            log errors only\n"
	    "  -v, --verbose          log debug lines too (each second in which\n"
	    "                         the sweep removed keys, and how many)\n"
	    "  -h, --help             show this help and exit\n"
	    "  -V, --version          show the version and exit\n"
	    "\n"
	    "BYTES is a number with an optional suffix K, M, G or T (powers of\n"
	    "1024), e.g. 64M, 4G, 512KiB. " KVD_SYS_HELP_CREATE
	    "\n"
	    KVD_SYS_HELP_STOP
	    "Exit status: 0 after a clean stop, 2 on any error.\n",
	    out);
}

/* How much of a word from the command line an error line shows. */
#define SHOWN_MAX 200
#define SHOWN_BUF (SHOWN_MAX * 4 + 4)

/* Render a word from the command line for an error line: bytes outside
 * printable ASCII become "\xNN" and '\' becomes "\\", so that the fatal
 * line stays one line (a newline in an argument cannot start a second,
 * forged one in a log), and a long word is cut short with "...".
 * Returns buf. */
static const char *shown(const char *s, char buf[SHOWN_BUF])
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	for (i = 0; s[i] != '\0' && i < SHOWN_MAX; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\\') {
			buf[o++] = '\\';
			buf[o++] = '\\';
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
	buf[o] = '\0';
	return buf;
}

/* The long name of an option, for messages: every option whose value we
 * check has one. */
static const char *long_name(int val)
{
	for (const struct option *o = long_options; o->name != NULL; o++)
		if (o->val == val)
			return o->name;
	return "?";
}

int kvd_parse_size(const char *s, uint64_t *out, const char **why)
{
	return kv_size_parse(s, out, why) == 0 ? 0 : -1;
}

int kvd_parse_count(const char *s, uint64_t *out, bool allow_zero,
                    const char **why)
{
	uint64_t v = 0;

	*why = "not a whole number";
	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		unsigned d;

		if (*s < '0' || *s > '9')
			return -1;
		d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10) {
			*why = "too large";
			return -1;
		}
		v = v * 10 + d;
	}
	if (v == 0 && !allow_zero) {
		*why = "must be greater than zero";
		return -1;
	}
	*out = v;
	return 0;
}

/* Parse --group: a group name, else a numeric gid. */
int kvd_parse_group(const char *s, uint32_t *out, const char **why)
{
	char *end;

	if (kvd_sys_group_id(s, out) == 0)
		return 0;
	/* Digits only: strtoul alone would also take " 5" and "+5". */
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (*s < '0' || *s > '9' || *end != '\0' || errno != 0 ||
	    v >= UINT32_MAX) {
		*why = "no such group";
		return -1;
	}
	*out = (uint32_t)v;
	return 0;
}

/* Parse --mode. The store's permissions are its security boundary, so a
 * mode anyone could write through is refused outright, and so is one that
 * would lock kvd itself out of the store it must adopt after a restart. */
int kvd_parse_mode(const char *s, uint32_t *out, const char **why)
{
	uint32_t v = 0;
	const char *p = s;

	*why = "not an octal mode (e.g. 0600, 0640, 0660)";
	if (*p == '\0')
		return -1;
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '7')
			return -1;
		v = v * 8 + (uint32_t)(*p - '0');
		if (v > 0777) {
			*why = "only permission bits (0 to 0777) are allowed";
			return -1;
		}
	}
	if (v & 0002) {
		*why = "world-writable stores are refused: any local user could "
		       "change or corrupt every value (use a group instead, "
		       "e.g. 0660)";
		return -1;
	}
	if ((v & 0600) != 0600) {
		*why = "the owner needs read and write (kvd itself must be able "
		       "to adopt the store after a restart)";
		return -1;
	}
	*out = v;
	return 0;
}

/* A character of a host name or address: names and IPv4 addresses take
 * letters, digits, '.', '-' and '_'; an IPv6 address in brackets also ':'
 * and '%' (a zone, "fe80::1%eth0"). Anything else is refused here rather
 * than handed to the resolver. */
static bool host_char(char c, bool bracketed)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_')
		return true;
	return bracketed && (c == ':' || c == '%');
}

int kvd_parse_listen(const char *s, struct kvd_listen *out,
                     const char **why)
{
	const char *host, *port;
	size_t hlen, plen;
	bool bracketed = s[0] == '[';
	unsigned long v = 0;

	memset(out, 0, sizeof(*out));
	out->arg = s;

	if (strncmp(s, "unix:", 5) == 0) {
		const char *p = s + 5;

		if (*p == '\0') {
			*why = "no path after \"unix:\"";
			return -1;
		}
		/* The path goes into log lines: keep them one line each. */
		for (const char *q = p; *q != '\0'; q++) {
			if ((unsigned char)*q < ' ' || *q == 0x7f) {
				*why = "control characters are not allowed in a "
				       "socket path";
				return -1;
			}
		}
		if (kvd_absolute_path(p, out->path, sizeof(out->path)) != 0) {
			*why = errno == ENAMETOOLONG ?
			           "path too long for a UNIX socket (at most "
			           "107 bytes once made absolute)" :
			           "cannot make the path absolute";
			return -1;
		}
		out->is_unix = true;
		return 0;
	}

	*why = "not an address (use HOST:PORT, [IPv6]:PORT or unix:PATH)";
	if (bracketed) {
		const char *end = strchr(s, ']');

		if (end == NULL || end[1] != ':')
			return -1;
		host = s + 1;
		hlen = (size_t)(end - host);
		port = end + 2;
	} else {
		const char *colon = strrchr(s, ':');

		if (colon == NULL)
			return -1;
		host = s;
		hlen = (size_t)(colon - s);
		port = colon + 1;
		if (memchr(host, ':', hlen) != NULL) {
			*why = "an IPv6 address needs brackets, e.g. "
			       "[::1]:11211";
			return -1;
		}
	}
	if (hlen == 0) {
		*why = "no host (127.0.0.1 or [::1] for this machine only; "
		       "0.0.0.0 or [::] for every address)";
		return -1;
	}
	if (hlen >= sizeof(out->host)) {
		*why = "host name too long";
		return -1;
	}
	for (size_t i = 0; i < hlen; i++) {
		if (!host_char(host[i], bracketed)) {
			*why = "not a host name or address";
			return -1;
		}
	}

	plen = strlen(port);
	*why = "not a port (0 to 65535; 0 lets the system pick one)";
	if (plen == 0 || plen > 5)
		return -1;
	for (size_t i = 0; i < plen; i++) {
		if (port[i] < '0' || port[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(port[i] - '0');
	}
	if (v > 65535)
		return -1;

	memcpy(out->host, host, hlen);
	out->host[hlen] = '\0';
	snprintf(out->port, sizeof(out->port), "%lu", v);
	return 0;
}

int kvd_absolute_path(const char *path, char *buf, size_t cap)
{
	return kvd_sys_absolute_path(path, buf, cap);
}

/* The default pid file of a detached kvd serving store: one per store,
 * in the per-user runtime directory when there is one. A file-backed
 * store's name is a path, so its '/' become '_' to stay one file name. */
static int default_pidfile(const char *store, char *buf, size_t cap)
{
	const char *dir = getenv("XDG_RUNTIME_DIR");
	int n;

	if (dir == NULL || dir[0] == '\0')
		dir = kvd_sys_run_dir();
	n = snprintf(buf, cap, "%s/kvd.%s.pid", dir, store);
	if (n < 0 || (size_t)n >= cap) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (char *p = buf + strlen(dir) + 1; *p != '\0'; p++)
		if (*p == '/')
			*p = '_';
	return 0;
}

/* One option of the memcached protocol server into cfg. Returns false
 * with *why set when its value is refused. */
static bool net_option(int c, const char *arg, struct kvd_config *cfg,
                       const char **why)
{
	uint64_t v;

	switch (c) {
	case OPT_LISTEN:
		if (cfg->nlisten == KVD_MAX_LISTEN) {
			*why = "too many addresses (at most 16 --listen)";
			return false;
		}
		if (kvd_parse_listen(arg, &cfg->listen[cfg->nlisten], why) != 0)
			return false;
		cfg->nlisten++;
		return true;
	case OPT_THREADS:
		if (kvd_parse_count(arg, &v, false, why) != 0)
			return false;
		if (v > MAX_THREADS) {
			*why = "too many (at most 256)";
			return false;
		}
		cfg->threads = (unsigned)v;
		break;
	case OPT_MAX_CONNS:
		if (kvd_parse_count(arg, &v, false, why) != 0)
			return false;
		if (v > MAX_CONNS) {
			*why = "too many (at most 1000000)";
			return false;
		}
		cfg->max_conns = (unsigned)v;
		break;
	case OPT_IDLE_TIMEOUT:
		if (kvd_parse_count(arg, &v, true, why) != 0)
			return false;
		if (v > UINT32_MAX) {
			*why = "too large";
			return false;
		}
		cfg->idle_timeout = (unsigned)v;
		break;
	default: /* OPT_AUTH_FILE; kvd reads it when it starts serving */
		if (arg[0] == '\0') {
			*why = "must not be empty";
			return false;
		}
		cfg->auth_file = arg;
		break;
	}
	cfg->net_given = true;
	return true;
}

bool kvd_config_parse(int argc, char **argv, struct kvd_config *cfg,
                      int *status)
{
	const char *pidfile = NULL;
	const char *why = NULL;
	char q[SHOWN_BUF];
	uint64_t v;
	int c;

	memset(cfg, 0, sizeof(*cfg));
	cfg->sweep_buckets = DEFAULT_SWEEP_BUCKETS;
	cfg->max_conns = DEFAULT_MAX_CONNS;
	*status = 2;

	/* We print our own one-line errors; a leading ':' makes getopt
	 * tell a missing argument (':') from an unknown option ('?'). An
	 * optind of 0 makes glibc's getopt start afresh, as at its first
	 * call, so that a test may parse one command line after another. */
	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, ":" SHORT_OPTIONS, long_options,
	                        NULL)) != -1) {
		switch (c) {
		case 's':
			cfg->store = optarg;
			break;
		case OPT_SIZE:
			if (kvd_parse_size(optarg, &v, &why) != 0)
				goto bad_value;
			cfg->opts.size = v;
			cfg->size_given = true;
			break;
		case OPT_HUGE_PAGES:
			cfg->opts.flags |= KV_CREATE_HUGE;
			break;
		case OPT_MAX_SIZE:
			if (kvd_parse_size(optarg, &v, &why) != 0)
				goto bad_value;
			if (v > (UINT64_C(1) << 40)) {
				why = "larger than the limit of 1T";
				goto bad_value;
			}
			cfg->opts.max_size = v;
			break;
		case OPT_MODE:
			if (kvd_parse_mode(optarg, &cfg->opts.mode, &why) != 0)
				goto bad_value;
			cfg->mode_given = true;
			break;
		case OPT_GROUP:
			if (kvd_sys_no_group() != NULL) {
				fprintf(stderr, "kvd: --group: %s\n",
				        kvd_sys_no_group());
				return false;
			}
			if (kvd_parse_group(optarg, &cfg->opts.gid, &why) != 0)
				goto bad_value;
			cfg->opts.flags |= KV_CREATE_GID;
			break;
		case OPT_MAX_VALUE:
			if (kvd_parse_size(optarg, &v, &why) != 0)
				goto bad_value;
			if (v > KV_MAX_VALUE_LIMIT) {
				why = "larger than the limit of 1 GiB";
				goto bad_value;
			}
			cfg->opts.max_value = (uint32_t)v;
			cfg->max_value_given = true;
			break;
		case OPT_MAX_ITEMS:
			if (kvd_parse_count(optarg, &cfg->opts.max_items, false,
			                &why) != 0)
				goto bad_value;
			cfg->max_items_given = true;
			break;
		case 'd':
			if (kvd_sys_no_detach() != NULL) {
				fprintf(stderr, "kvd: -d: %s\n",
				        kvd_sys_no_detach());
				return false;
			}
			cfg->daemonize = true;
			break;
		case OPT_PIDFILE:
			if (optarg[0] == '\0') {
				why = "must not be empty";
				goto bad_value;
			}
			pidfile = optarg;
			break;
		case OPT_SWEEP_BUCKETS:
			if (kvd_parse_count(optarg, &cfg->sweep_buckets, true,
			                &why) != 0)
				goto bad_value;
			break;
		case OPT_LISTEN:
		case OPT_THREADS:
		case OPT_MAX_CONNS:
		case OPT_IDLE_TIMEOUT:
		case OPT_AUTH_FILE:
			if (kvd_sys_no_net() != NULL) {
				fprintf(stderr, "kvd: --%s: %s\n", long_name(c),
				        kvd_sys_no_net());
				return false;
			}
			if (!net_option(c, optarg, cfg, &why))
				goto bad_value;
			break;
		case 'q':
			cfg->quiet = true;
			break;
		case 'v':
			cfg->verbose = true;
			break;
		case 'h':
			usage(stdout);
			*status = fflush(stdout) == 0 ? 0 : 2;
			return false;
		case 'V':
			printf("kvd %s (libkv %s)\n", KV_VERSION_STRING,
			       kv_version());
			*status = fflush(stdout) == 0 ? 0 : 2;
			return false;
		case ':':
			fprintf(stderr,
			        "kvd: %s: option needs an argument (see kvd "
			        "--help)\n",
			        shown(argv[optind - 1], q));
			return false;
		default:
			/* A known letter cannot be unknown: getopt_long
			 * reports "--daemon=1" (a value for an option that
			 * takes none) as '?' with optopt 'd'. */
			if (optopt > 0 && optopt < 256 && optopt != ':' &&
			    strchr(SHORT_OPTIONS, optopt) != NULL) {
				fprintf(stderr,
				        "kvd: --%s: option takes no value (see "
				        "kvd --help)\n",
				        long_name(optopt));
			} else if (optopt != 0 && optopt < 256) {
				/* A short option: glibc stores the byte as a
				 * (signed) char, so one above 0x7f is
				 * negative, and argv[optind - 1] may be the
				 * word before its cluster. */
				char letter[3] = {'-', (char)optopt, '\0'};

				fprintf(stderr,
				        "kvd: %s: unknown option (see kvd "
				        "--help)\n",
				        shown(letter, q));
			} else {
				fprintf(stderr,
				        "kvd: %s: unknown option (see kvd "
				        "--help)\n",
				        shown(argv[optind - 1], q));
			}
			return false;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kvd: %s: unexpected argument (see kvd --help)\n",
		        shown(argv[optind], q));
		return false;
	}

	/* An empty $KV_STORE is treated as unset, as shells make it easy to
	 * export one by accident. */
	if (cfg->store == NULL) {
		cfg->store = getenv("KV_STORE");
		if (cfg->store == NULL || cfg->store[0] == '\0')
			cfg->store = DEFAULT_STORE;
	}
	if (kv_name_check(cfg->store) != KV_OK) {
		fprintf(stderr, "kvd: store '%s': %s\n", shown(cfg->store, q),
		        kv_strerror(KV_ENAME));
		return false;
	}

	if (pidfile != NULL) {
		if (kvd_absolute_path(pidfile, cfg->pidfile, sizeof(cfg->pidfile)) !=
		    0) {
			fprintf(stderr, "kvd: pid file '%s': %s\n",
			        shown(pidfile, q), strerror(errno));
			return false;
		}
	} else if (cfg->daemonize) {
		char def[PATH_MAX];

		if (default_pidfile(cfg->store, def, sizeof(def)) != 0 ||
		    kvd_absolute_path(def, cfg->pidfile, sizeof(cfg->pidfile)) !=
		        0) {
			fprintf(stderr, "kvd: pid file for store '%s': %s\n",
			        shown(cfg->store, q), strerror(errno));
			return false;
		}
	}
	*status = 0;
	return true;

bad_value:
	fprintf(stderr, "kvd: --%s '%s': %s\n", long_name(c), shown(optarg, q),
	        why);
	return false;
}

void kvd_fmt_bytes(uint64_t bytes, char *buf, size_t cap)
{
	static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB", "PiB",
	                                   "EiB"};
	unsigned u = 0;
	uint64_t scale = 1024;

	if (bytes < 1024) {
		snprintf(buf, cap, "%" PRIu64 " bytes", bytes);
		return;
	}
	while (u + 1 < sizeof(unit) / sizeof(unit[0]) &&
	       bytes / scale >= 1024) {
		scale *= 1024;
		u++;
	}
	if (bytes % scale == 0)
		snprintf(buf, cap, "%" PRIu64 " %s", bytes / scale, unit[u]);
	else
		snprintf(buf, cap, "%.1f %s", (double)bytes / (double)scale,
		         unit[u]);
}
