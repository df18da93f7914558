/*
 * fuzz_kvd_args.c - fuzz-kvd-args: kvd's command line, kvd_config_parse()
 * (daemon/options.c), and its value parsers: sizes (--size, --max-value,
 * --max-size),
 * counts (--max-items, --sweep-buckets, --threads, --max-conns,
 * --idle-timeout), modes (--mode), groups (--group) and listen addresses
 * (--listen).
 *
 * The input is split at its NUL bytes into argv (fuzz_cli.h). A first word
 * "KV_STORE=..." sets that variable for this input (and is argv[0]);
 * otherwise it is unset. Nothing creates a store or forks.
 *
 * Oracles, besides no crash, no out-of-bounds read, no leak, no hang:
 *   - kvd either runs (true, status 0, nothing printed), prints help or
 *     its version (false, status 0, stdout only), or refuses (false,
 *     status 2, exactly one line "kvd: ..." of printable ASCII on stderr,
 *     nothing on stdout);
 *   - when it runs, what it decided is possible: a store name kv accepts,
 *     a size above zero, max_value at most 1 GiB, a mode with owner rw
 *     and no world write, an absolute pid file exactly when asked for one,
 *     at most 16 listen addresses, each a UNIX path that is absolute and
 *     fits a sockaddr_un or a host and a port, 1 to 256 threads, 1 to a
 *     million connections;
 *   - every word read as a listen address agrees with a reference split
 *     into host and port (or "unix:" and path);
 *   - every word read as a size, a count and a mode, and (bounded) as a
 *     group, agrees with a reference parser written from kvd --help and
 *     the header comment of options.c.
 */
#include <ctype.h>
#include <grp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kvd.h"
#include "fuzz_cli.h"

__extension__ typedef unsigned __int128 u128;

static u128 digits(const char *s, const char **end)
{
	u128 v = 0;

	for (; *s >= '0' && *s <= '9'; s++)
		if (v < ((u128)1 << 100))
			v = v * 10 + (unsigned)(*s - '0');
	*end = s;
	return v;
}

/* 0: ok; 1: junk; 2: zero; 3: too large. */
static int ref_size(const char *s, uint64_t *out)
{
	static const struct {
		const char *suffix;
		unsigned shift;
	} sfx[] = {
		{ "", 0 }, { "b", 0 },
		{ "k", 10 }, { "kb", 10 }, { "kib", 10 },
		{ "m", 20 }, { "mb", 20 }, { "mib", 20 },
		{ "g", 30 }, { "gb", 30 }, { "gib", 30 },
		{ "t", 40 }, { "tb", 40 }, { "tib", 40 },
	};
	const char *end;
	u128 v = digits(s, &end);
	size_t i;

	if (end == s)
		return 1;
	for (i = 0; i < sizeof sfx / sizeof sfx[0]; i++)
		if (strcasecmp(end, sfx[i].suffix) == 0)
			break;
	if (i == sizeof sfx / sizeof sfx[0])
		return 1;
	if (v == 0)
		return 2;
	v <<= sfx[i].shift;
	if (v > UINT64_MAX)
		return 3;
	*out = (uint64_t)v;
	return 0;
}

/* 0: ok; 1: junk; 2: zero; 3: too large. */
static int ref_count(const char *s, bool allow_zero, uint64_t *out)
{
	const char *end;
	u128 v = digits(s, &end);

	if (end == s || *end != '\0')
		return 1;
	if (v > UINT64_MAX)
		return 3;
	if (v == 0 && !allow_zero)
		return 2;
	*out = (uint64_t)v;
	return 0;
}

static bool ref_mode(const char *s, uint32_t *out)
{
	uint64_t v = 0;

	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '7')
			return false;
		v = v * 8 + (unsigned)(*s - '0');
		if (v > 0777)
			return false;
	}
	if ((v & 0002) || (v & 0600) != 0600)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* A store name kv takes: [A-Za-z0-9._-]{1,64}, or one with a '/'. */
static bool ref_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0)
		return false;
	if (strchr(s, '/') != NULL)
		return true;
	if (n > 64)
		return false;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	                 "0123456789._-") == n;
}

/* A group name, else digits only, below 2^32 - 1 ((gid_t)-1 means "no
 * change" to chown). */
static bool ref_group(const char *s, uint32_t *out)
{
	struct group *gr = getgrnam(s);
	const char *end;
	u128 v;

	if (gr != NULL) {
		*out = (uint32_t)gr->gr_gid;
		return true;
	}
	v = digits(s, &end);
	if (end == s || *end != '\0' || v >= UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* The reference for --listen: 0 and host/port/path filled, or -1. */
static int ref_listen(const char *s, bool *is_unix, char *host, size_t hcap,
                      unsigned long *port, const char **path)
{
	const char *h, *p, *q;
	size_t hlen;
	const char *end;
	u128 v;

	if (strncmp(s, "unix:", 5) == 0) {
		*is_unix = true;
		*path = s + 5;
		if (s[5] == '\0')
			return -1;
		for (q = s + 5; *q != '\0'; q++)
			if ((unsigned char)*q < ' ' || *q == 0x7f)
				return -1;
		return 0;
	}
	*is_unix = false;
	if (s[0] == '[') {
		q = strstr(s, "]:");
		if (q == NULL || memchr(s, ']', (size_t)(q - s)) != NULL)
			return -1;
		h = s + 1;
		hlen = (size_t)(q - h);
		p = q + 2;
		for (size_t i = 0; i < hlen; i++)
			if (!(isalnum((unsigned char)h[i]) ||
			      strchr(".-_:%", h[i]) != NULL) || h[i] == '\0')
				return -1;
	} else {
		q = strrchr(s, ':');
		if (q == NULL)
			return -1;
		h = s;
		hlen = (size_t)(q - s);
		p = q + 1;
		for (size_t i = 0; i < hlen; i++)
			if (!(isalnum((unsigned char)h[i]) ||
			      strchr(".-_", h[i]) != NULL) || h[i] == '\0')
				return -1;
	}
	if (hlen == 0 || hlen >= hcap)
		return -1;
	v = digits(p, &end);
	if (end == p || *end != '\0' || end - p > 5 || v > 65535)
		return -1;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	*port = (unsigned long)v;
	return 0;
}

static void check_listen(const char *w)
{
	struct kvd_listen l;
	const char *why = NULL, *path = NULL;
	char host[256];
	unsigned long port = 0;
	bool is_unix = false;
	int rc = kvd_parse_listen(w, &l, &why);
	int want = ref_listen(w, &is_unix, host, sizeof(host), &port, &path);

	FCLI_CHECK(rc == 0 || why != NULL, "listen: no reason");
	/* A relative or long UNIX path may still be refused: made absolute
	 * it must fit a sockaddr_un. */
	if (want == 0 && is_unix) {
		FCLI_CHECK(rc == 0 || strstr(why, "too long") ||
		           strstr(why, "absolute"),
		           "listen \"%s\": refused (%s), the reference takes "
		           "it", fcli_show(w, strlen(w)), why);
		if (rc != 0)
			return;
		size_t pl = strlen(path), al = strlen(l.path);

		FCLI_CHECK(l.is_unix && l.path[0] == '/' &&
		           al < KVD_UNIX_PATH_MAX && al >= pl &&
		           strcmp(l.path + al - pl, path) == 0,
		           "listen \"%s\": path \"%s\"",
		           fcli_show(w, strlen(w)),
		           fcli_show(l.path, strlen(l.path)));
		return;
	}
	FCLI_CHECK((rc == 0) == (want == 0),
	           "listen \"%s\": rc %d (%s), the reference %d",
	           fcli_show(w, strlen(w)), rc, rc == 0 ? "" : why, want);
	if (rc != 0)
		return;
	FCLI_CHECK(!l.is_unix && l.arg == w && strcmp(l.host, host) == 0 &&
	           strtoul(l.port, NULL, 10) == port,
	           "listen \"%s\": host \"%s\" port \"%s\"",
	           fcli_show(w, strlen(w)), fcli_show(l.host, strlen(l.host)),
	           l.port);
}

static const char *cap_out, *cap_err;
static size_t cap_out_len, cap_err_len;

static void check_group(const char *w)
{
	const char *why = NULL;
	uint32_t g = 0, rg = 0;
	int rc = kvd_parse_group(w, &g, &why);
	bool want = ref_group(w, &rg);

	FCLI_CHECK((rc == 0) == want && (rc != 0 || g == rg),
	           "group \"%s\": rc %d %" PRIu32 ", the reference %d %" PRIu32,
	           fcli_show(w, strlen(w)), rc, g, want, rg);
}

static void check_values(const char *w)
{
	const char *why = NULL;
	uint64_t v = 0, rv = 0;
	uint32_t m = 0, rm = 0;
	int rc, want;

	rc = kvd_parse_size(w, &v, &why);
	want = ref_size(w, &rv);
	FCLI_CHECK((rc == 0) == (want == 0) && (rc != 0 || v == rv),
	           "size \"%s\": rc %d %" PRIu64 ", the reference %d %" PRIu64,
	           fcli_show(w, strlen(w)), rc, v, want, rv);
	FCLI_CHECK(rc == 0 || why != NULL, "size: no reason");
	if (rc != 0 && want != 1)
		FCLI_CHECK(strstr(why, want == 2 ? "zero" : "too large"),
		           "size \"%s\": \"%s\", the reference %d",
		           fcli_show(w, strlen(w)), why, want);
	/* Junk after digits that overflow is "too large" first; any other
	 * junk is "not a size". */
	if (rc != 0 && want == 1 && strstr(why, "too large") == NULL)
		FCLI_CHECK(strstr(why, "not a size"), "size: \"%s\"", why);

	for (int z = 0; z < 2; z++) {
		rc = kvd_parse_count(w, &v, z, &why);
		want = ref_count(w, z, &rv);
		FCLI_CHECK((rc == 0) == (want == 0) && (rc != 0 || v == rv),
		           "count \"%s\" (zero %d): rc %d %" PRIu64 ", the "
		           "reference %d %" PRIu64, fcli_show(w, strlen(w)), z,
		           rc, v, want, rv);
	}

	rc = kvd_parse_mode(w, &m, &why);
	FCLI_CHECK((rc == 0) == ref_mode(w, &rm) && (rc != 0 || m == rm),
	           "mode \"%s\": rc %d %#o, the reference %#o",
	           fcli_show(w, strlen(w)), rc, m, rm);
}

/* glibc's: make one database use only the given NSS services. */
int __nss_configure_lookup(const char *db, const char *service_line);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fcli_capture_init();
	/* Groups from /etc/group only: the same answers in every run, and
	 * no systemd userdb walk (two dozen opens) per getgrnam. */
	__nss_configure_lookup("group", "files");
	/* The default pid file's directory, the same in every run. */
	setenv("XDG_RUNTIME_DIR", "/run/user/fuzz", 1);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fcli_args a;
	struct kvd_config cfg;
	int first = 0, status = -1;
	bool run;

	fcli_capture_init();
	fcli_args_make(&a, "kvd", data, size);
	if (a.argc > 1 && strncmp(a.argv[1], "KV_STORE=", 9) == 0) {
		setenv("KV_STORE", a.argv[1] + 9, 1);
		first = 1;
	} else {
		unsetenv("KV_STORE");
	}

	memset(&cfg, 0x5a, sizeof cfg);
	fcli_capture_begin();
	run = kvd_config_parse(a.argc - first, a.argv + first, &cfg, &status);
	fcli_capture_end(&cap_out, &cap_out_len, &cap_err, &cap_err_len);

	if (run) {
		FCLI_CHECK(status == 0, "runs with status %d", status);
		FCLI_CHECK(cap_out_len == 0 && cap_err_len == 0,
		           "runs, but printed \"%s\" \"%s\"",
		           fcli_show(cap_out, cap_out_len),
		           fcli_show(cap_err, cap_err_len));
		FCLI_CHECK(cfg.store != NULL && ref_name(cfg.store) &&
		           kv_name_check(cfg.store) == KV_OK,
		           "runs with store \"%s\"",
		           cfg.store ? fcli_show(cfg.store, strlen(cfg.store))
		                     : "(null)");
		FCLI_CHECK(!cfg.size_given || cfg.opts.size > 0, "size 0");
		FCLI_CHECK(cfg.size_given || cfg.opts.size == 0, "size set");
		FCLI_CHECK(!cfg.max_value_given ||
		           (cfg.opts.max_value > 0 &&
		            cfg.opts.max_value <= KV_MAX_VALUE_LIMIT),
		           "max_value %" PRIu32, cfg.opts.max_value);
		FCLI_CHECK(!cfg.max_items_given || cfg.opts.max_items > 0,
		           "max_items 0");
		FCLI_CHECK(cfg.opts.max_size <= (UINT64_C(1) << 40),
		           "max_size %" PRIu64, cfg.opts.max_size);
		FCLI_CHECK(cfg.mode_given ? ((cfg.opts.mode & 0600) == 0600 &&
		                             !(cfg.opts.mode & 0002) &&
		                             cfg.opts.mode <= 0777)
		                          : cfg.opts.mode == 0,
		           "mode %#o", cfg.opts.mode);
		FCLI_CHECK(memchr(cfg.pidfile, '\0', sizeof cfg.pidfile) &&
		           (cfg.pidfile[0] == '\0' || cfg.pidfile[0] == '/'),
		           "pid file \"%s\"", fcli_show(cfg.pidfile,
		                                        strlen(cfg.pidfile)));
		FCLI_CHECK(!cfg.daemonize || cfg.pidfile[0] == '/',
		           "-d without a pid file");
		FCLI_CHECK(cfg.nlisten <= KVD_MAX_LISTEN, "%u listeners",
		           cfg.nlisten);
		for (unsigned i = 0; i < cfg.nlisten && i < KVD_MAX_LISTEN;
		     i++) {
			const struct kvd_listen *l = &cfg.listen[i];

			FCLI_CHECK(l->is_unix ?
			               l->path[0] == '/' &&
			                   memchr(l->path, '\0',
			                          KVD_UNIX_PATH_MAX) != NULL :
			               l->host[0] != '\0' &&
			                   memchr(l->host, '\0',
			                          sizeof(l->host)) != NULL &&
			                   strtoul(l->port, NULL, 10) <= 65535,
			           "listen %u", i);
		}
		FCLI_CHECK(cfg.threads <= 256, "threads %u", cfg.threads);
		FCLI_CHECK(cfg.max_conns >= 1 && cfg.max_conns <= 1000000,
		           "max_conns %u", cfg.max_conns);
		FCLI_CHECK(cfg.auth_file == NULL || cfg.auth_file[0] != '\0',
		           "empty auth file");
	} else if (status == 0) {
		FCLI_CHECK(cap_out_len > 0 && cap_err_len == 0,
		           "help/version: %zu bytes out, \"%s\"", cap_out_len,
		           fcli_show(cap_err, cap_err_len));
		FCLI_CHECK(strncmp(cap_out, "Usage: kvd", 10) == 0 ||
		           strncmp(cap_out, "kvd ", 4) == 0,
		           "help/version: \"%s\"",
		           fcli_show(cap_out, cap_out_len));
	} else {
		FCLI_CHECK(status == 2, "refused with status %d", status);
		FCLI_CHECK(cap_out_len == 0, "an error wrote to stdout");
		FCLI_CHECK(fcli_one_line(cap_err, cap_err_len, "kvd: "),
		           "error output is not one \"kvd: \" line: \"%s\"",
		           fcli_show(cap_err, cap_err_len));
		/* A letter kvd knows is never "unknown". */
		FCLI_CHECK(!(cap_err_len > 8 && cap_err[5] == '-' &&
		             cap_err[7] == ':' &&
		             strchr("sdqvhV", cap_err[6]) != NULL &&
		             strstr(cap_err, "unknown option") != NULL),
		           "\"%s\"", fcli_show(cap_err, cap_err_len));
	}

	/* getgrnam reads /etc/group: only the first few words. */
	for (int k = 1; k < a.nwords; k++) {
		check_values(a.words[k]);
		check_listen(a.words[k]);
		if (k <= 4)
			check_group(a.words[k]);
	}
	fcli_args_free(&a);
	return 0;
}
