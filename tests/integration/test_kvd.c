/*
 * test_kvd.c - the daemon as an operator meets it: the permissions it gives
 * a new store, one kvd per store, stopping on SIGTERM/SIGINT with the store
 * kept, adopting a store with its data, -d with a pid file, refusing bad
 * sizes and modes, a full tmpfs at creation, and file-backed stores.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "kv.h"

#define SIZE "4M"

static unsigned file_mode(const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0)
		fail_msg("stat %s: %s", path, strerror(errno));
	return (unsigned)st.st_mode & 07777;
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* Some line of stderr starts with prefix. */
static void assert_err_line_with(const struct h_result *r,
                                 const char *prefix)
{
	const char *p = r->err;
	size_t n = strlen(prefix);

	while (p != NULL && *p != '\0') {
		if (strncmp(p, prefix, n) == 0)
			return;
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	h_dump(r);
	fail_msg("no stderr line starts with \"%s\"", prefix);
}

static void put(const char *store, const char *key, const char *val)
{
	struct h_result r;

	h_kv(&r, store, "put", key, val, NULL);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
}

static void want_get(const char *store, const char *key, const char *val)
{
	struct h_result r;

	h_kv(&r, store, "get", key, NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, val);
	h_result_free(&r);
}

static void stop(struct h_proc *p, int sig)
{
	struct h_result r;

	if (!h_stop(p, sig, H_TIMEOUT_MS, &r)) {
		h_dump(&r);
		fail_msg("kvd did not stop on signal %d", sig);
	}
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
}

static void test_default_mode_0600(void **state)
{
	const char *store = h_store_name("mode");

	(void)state;
	h_kvd(store, "--size", SIZE, NULL);
	assert_int_equal(file_mode(h_shm_path(store)), 0600);
}

static void test_mode_0640(void **state)
{
	const char *store = h_store_name("mode640");

	(void)state;
	h_kvd(store, "--size", SIZE, "--mode", "0640", NULL);
	assert_int_equal(file_mode(h_shm_path(store)), 0640);
}

/* A mode any local user could write through is refused, before any store
 * is made. */
static void test_mode_world_writable_refused(void **state)
{
	static const char *const modes[] = {"0666", "0602", "0777", "666"};

	(void)state;
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		const char *store = h_store_name("mode-ww");
		struct h_result r;

		h_kvd_run(&r, store, "--size", SIZE, "--mode", modes[i], NULL);
		H_ASSERT_EXIT(&r, 2);
		H_ASSERT_ERR_LINE(&r, "kvd: ");
		if (exists(h_shm_path(store))) {
			h_dump(&r);
			fail_msg("--mode %s made the store anyway", modes[i]);
		}
		h_result_free(&r);
	}
}

/* A second kvd on a served store exits 2 and names the first one's pid;
 * the first keeps serving. */
static void test_second_kvd_refused(void **state)
{
	const char *store = h_store_name("second");
	struct h_proc *first;
	struct h_result r;
	char pid[32];

	(void)state;
	first = h_kvd(store, "--size", SIZE, NULL);
	snprintf(pid, sizeof(pid), "%ld", (long)first->pid);

	h_kvd_run(&r, store, "--size", SIZE, NULL);
	H_ASSERT_EXIT(&r, 2);
	assert_err_line_with(&r, "kvd: ");
	H_ASSERT_ERR_HAS(&r, pid);
	h_result_free(&r);

	assert_true(h_alive(first->pid));
	assert_true(h_store_served_by(store, first->pid));
	put(store, "k", "still served");
	want_get(store, "k", "still served");
}

/* The pid the store's header names as its daemon (0: none). */
static long daemon_pid(const char *store)
{
	struct kv_stats st;
	kv_t *kv = NULL;
	int rc = kv_open(store, KV_RDONLY, &kv);

	if (rc != KV_OK)
		fail_msg("kv_open %s: %s", store, kv_strerror(rc));
	rc = kv_stats(kv, &st);
	kv_close(kv);
	assert_int_equal(rc, KV_OK);
	return (long)st.daemon_pid;
}

static void stop_keeps_store(int sig, const char *tag)
{
	const char *store = h_store_name(tag);
	struct h_proc *p;

	p = h_kvd(store, "--size", SIZE, NULL);
	assert_int_equal(daemon_pid(store), p->pid);
	put(store, "k", "kept");
	stop(p, sig);
	assert_true(exists(h_shm_path(store)));
	want_get(store, "k", "kept");
	/* A clean stop says nobody serves it now. */
	assert_int_equal(daemon_pid(store), 0);
}

static void test_sigterm_stops_keeps_store(void **state)
{
	(void)state;
	stop_keeps_store(SIGTERM, "sigterm");
}

static void test_sigint_stops_keeps_store(void **state)
{
	(void)state;
	stop_keeps_store(SIGINT, "sigint");
}

/* A restarted kvd adopts the store with its data, and keeps the geometry
 * it was made with. */
static void test_restart_adopts(void **state)
{
	const char *store = h_store_name("adopt");
	struct h_proc *p;
	struct h_result r;

	(void)state;
	p = h_kvd(store, "--size", SIZE, "--mode", "0640", NULL);
	put(store, "a", "1");
	put(store, "b", "2");
	stop(p, SIGTERM);

	p = h_kvd(store, "--size", SIZE, NULL);
	want_get(store, "a", "1");
	want_get(store, "b", "2");
	assert_int_equal(file_mode(h_shm_path(store)), 0640);
	h_kv(&r, store, "stats", "--json", NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "\"items\":2");
	h_result_free(&r);
	stop(p, SIGTERM);
}

/* Stop p with SIGTERM; true if its stderr says an option was ignored
 * because the store it adopted was made otherwise ("... keeping it
 * (--size 8M ignored ...)"). */
static bool stop_warned_kept(struct h_proc *p, const char *option)
{
	struct h_result r;
	char what[64];
	bool warned;

	if (!h_stop(p, SIGTERM, H_TIMEOUT_MS, &r)) {
		h_dump(&r);
		fail_msg("kvd did not stop on SIGTERM");
	}
	H_ASSERT_EXIT(&r, 0);
	snprintf(what, sizeof(what), "(%s ", option);
	warned = strstr(r.err, "keeping it") != NULL &&
	         strstr(r.err, what) != NULL;
	h_result_free(&r);
	return warned;
}

/* A store is made with --size rounded down to whole 4 KiB: a restart with
 * the same --size, or any that rounds to the same, adopts it without a
 * word; one 4 KiB larger is a store of another size, and kvd says it kept
 * the old one. (This pins the rounding kvd assumes: kv.h does not state
 * it.) */
static void test_restart_same_size(void **state)
{
	const char *store = h_store_name("samesize");
	/* 4 MiB + 100 B: the store is 4 MiB. */
	static const char *const same[] = {"4194404", "4194304", "4198399"};

	(void)state;
	assert_false(stop_warned_kept(h_kvd(store, "--size", same[0], NULL),
	                              "--size"));
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
		if (stop_warned_kept(h_kvd(store, "--size", same[i], NULL),
		                     "--size"))
			fail_msg("--size %s warned about a store it makes the "
			         "same",
			         same[i]);
	if (!stop_warned_kept(h_kvd(store, "--size", "4198400", NULL),
	                      "--size"))
		fail_msg("--size 4198400 (4 MiB + 4 KiB) adopted a 4 MiB store "
		         "without a warning");
}

static pid_t read_pidfile(const char *path)
{
	char buf[64] = {0};
	FILE *f = fopen(path, "r");
	long pid;

	if (f == NULL)
		fail_msg("pid file %s: %s", path, strerror(errno));
	if (fgets(buf, sizeof(buf), f) == NULL)
		buf[0] = '\0';
	fclose(f);
	if (sscanf(buf, "%ld", &pid) != 1 || pid <= 1)
		fail_msg("pid file %s holds \"%s\"", path, buf);
	return (pid_t)pid;
}

/* -d: the foreground process exits 0 once the daemon serves; the pid file
 * names a live kvd that serves the store; SIGTERM to that pid stops it and
 * removes the pid file. */
static void test_detach_pidfile(void **state)
{
	const char *store = h_store_name("detach");
	const char *dir = h_tmpdir("detach");
	char pidfile[256];
	struct h_result r;
	pid_t pid;

	(void)state;
	snprintf(pidfile, sizeof(pidfile), "%s/kvd.pid", dir);
	h_kvd_run(&r, store, "-d", "--pidfile", pidfile, "--size", SIZE, NULL);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);

	pid = read_pidfile(pidfile);
	h_track_pid(pid);
	assert_true(h_alive(pid));
	assert_true(h_store_served_by(store, pid));
	put(store, "k", "detached");
	want_get(store, "k", "detached");

	assert_int_equal(kill(pid, SIGTERM), 0);
	assert_true(h_wait_pid_gone(pid, H_TIMEOUT_MS));
	if (exists(pidfile))
		fail_msg("pid file %s left after SIGTERM", pidfile);
	want_get(store, "k", "detached");
}

/* Sizes that cannot make a store are refused with one "kvd: " line, and
 * leave no store behind. */
static void test_bad_size(void **state)
{
	static const char *const sizes[] = {"junk", "0", "1K", "12Q", "-4M",
	                                    ""};

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		const char *store = h_store_name("badsize");
		struct h_result r;

		h_kvd_run(&r, store, "--size", sizes[i], NULL);
		H_ASSERT_EXIT(&r, 2);
		H_ASSERT_ERR_LINE(&r, "kvd: ");
		if (exists(h_shm_path(store))) {
			h_dump(&r);
			fail_msg("--size '%s' left a store behind", sizes[i]);
		}
		h_result_free(&r);
	}
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		fail_msg("opendir %s: %s", dir, strerror(errno));
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/* Memory is reserved at creation: a store larger than its tmpfs fails at
 * start with a clear message, and leaves no file to SIGBUS a client. */
static void test_full_tmpfs(void **state)
{
	const char *dir;
	char path[256];
	struct h_result r;

	(void)state;
	h_require_root();
	dir = h_tmpdir("tmpfs");
	if (!h_mount_tmpfs(dir, "size=4m")) {
		print_message("(cannot mount a tmpfs here: skipped)\n");
		skip();
	}
	snprintf(path, sizeof(path), "%s/store", dir);
	h_kvd_run(&r, path, "--size", "64M", NULL);
	H_ASSERT_EXIT(&r, 2);
	assert_err_line_with(&r, "kvd: ");
	H_ASSERT_ERR_HAS(&r, "no space");
	h_result_free(&r);
	if (count_entries(dir) != 0)
		fail_msg("a failed create left files in %s", dir);

	/* And one that fits is fine. */
	h_kvd(path, "--size", "2M", "--max-value", "1K", NULL);
	put(path, "k", "fits");
	want_get(path, "k", "fits");
}

/* A store whose name has a '/' is a regular file; it keeps its data over a
 * kvd restart. */
static void test_file_backed_restart(void **state)
{
	const char *dir = h_tmpdir("file");
	char path[256];
	struct h_proc *p;
	struct stat st;

	(void)state;
	snprintf(path, sizeof(path), "%s/data.kv", dir);
	p = h_kvd(path, "--size", SIZE, NULL);
	put(path, "k", "on disk");
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	stop(p, SIGTERM);
	assert_true(exists(path));

	p = h_kvd(path, "--size", SIZE, NULL);
	want_get(path, "k", "on disk");
	stop(p, SIGTERM);
	want_get(path, "k", "on disk");
}

/* The mode asked for is the mode given, whatever the umask. */
static void test_mode_ignores_umask(void **state)
{
	const char *a = h_store_name("umask0");
	const char *b = h_store_name("umask077");
	mode_t old;

	(void)state;
	old = umask(0);
	h_kvd(a, "--size", SIZE, NULL);
	umask(077);
	h_kvd(b, "--size", SIZE, "--mode", "0640", NULL);
	umask(old);
	assert_int_equal(file_mode(h_shm_path(a)), 0600);
	assert_int_equal(file_mode(h_shm_path(b)), 0640);
}

/* Modes kvd cannot use: not octal, not permission bits, or one that would
 * lock kvd itself out of the store. */
static void test_mode_invalid(void **state)
{
	static const char *const modes[] = {"abc", "0o600", "", "8", "01600",
	                                    "0400", "0060"};

	(void)state;
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		const char *store = h_store_name("mode-bad");
		struct h_result r;

		h_kvd_run(&r, store, "--size", SIZE, "--mode", modes[i], NULL);
		H_ASSERT_EXIT(&r, 2);
		H_ASSERT_ERR_LINE(&r, "kvd: ");
		assert_false(exists(h_shm_path(store)));
		h_result_free(&r);
	}
}

static bool logged_puts(void *arg)
{
	size_t n;
	char *err = h_read_err(arg, &n);
	bool found = strstr(err, "puts 1") != NULL;

	h_free(err);
	return found;
}

/* Foreground kvd logs to stderr; SIGHUP logs the figures and kvd goes on. */
static void test_logs_and_sighup(void **state)
{
	const char *store = h_store_name("hup");
	struct h_proc *p;
	struct h_result r;
	char *err;
	size_t n;

	(void)state;
	p = h_kvd(store, "--size", SIZE, NULL);
	put(store, "k", "v");
	err = h_read_err(p, &n);
	if (strstr(err, store) == NULL)
		fail_msg("kvd logged nothing about '%s' on stderr: \"%s\"",
		         store, err);
	h_free(err);

	assert_int_equal(kill(p->pid, SIGHUP), 0);
	/* The statistics line (only SIGHUP logs "puts"). */
	if (!h_wait_for(logged_puts, p, H_TIMEOUT_MS)) {
		err = h_read_err(p, &n);
		fail_msg("no statistics on stderr after SIGHUP: \"%s\"", err);
	}
	assert_true(h_alive(p->pid));
	assert_true(h_store_served_by(store, p->pid));
	assert_true(h_stop(p, SIGTERM, H_TIMEOUT_MS, &r));
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_ERR_HAS(&r, "puts 1");
	h_result_free(&r);
}

/* With -d, a kvd that cannot serve says why on the caller's stderr and the
 * caller's exit status is 2. */
static void test_detach_reports_failure(void **state)
{
	const char *store = h_store_name("detach-fail");
	const char *dir = h_tmpdir("detachfail");
	struct h_proc *first;
	char pidfile[256], pid[32];
	struct h_result r;

	(void)state;
	first = h_kvd(store, "--size", SIZE, NULL);
	snprintf(pid, sizeof(pid), "%ld", (long)first->pid);
	snprintf(pidfile, sizeof(pidfile), "%s/kvd.pid", dir);
	h_kvd_run(&r, store, "-d", "--pidfile", pidfile, NULL);
	H_ASSERT_EXIT(&r, 2);
	H_ASSERT_ERR_HAS(&r, "kvd: ");
	H_ASSERT_ERR_HAS(&r, pid);
	h_result_free(&r);
	assert_false(exists(pidfile));
	assert_true(h_store_served_by(store, first->pid));
}

/* -d with a relative file-backed store path: resolved where kvd was
 * started, although the daemon then moves to "/". */
static void test_detach_relative_path(void **state)
{
	const char *dir = h_tmpdir("detachrel");
	char pidfile[256], abs[256];
	const char *argv[] = {h_kvd_bin(), "-s", "./rel.kv", "-d", "--pidfile",
	                      pidfile, "--size", SIZE, NULL};
	struct h_spawn_opts o = {.cwd = dir};
	struct h_result r;
	pid_t pid;

	(void)state;
	snprintf(pidfile, sizeof(pidfile), "%s/kvd.pid", dir);
	snprintf(abs, sizeof(abs), "%s/rel.kv", dir);
	h_register_store(abs);
	h_run(&r, argv, &o);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	pid = read_pidfile(pidfile);
	h_track_pid(pid);
	assert_true(exists(abs));
	assert_true(h_store_served_by(abs, pid));
	put(abs, "k", "relative");
	/* Still serving a moment later: its upkeep finds the store. */
	usleep(50 * 1000);
	assert_true(h_alive(pid));
	assert_true(h_store_served_by(abs, pid));
	want_get(abs, "k", "relative");
	assert_int_equal(kill(pid, SIGTERM), 0);
	assert_true(h_wait_pid_gone(pid, H_TIMEOUT_MS));
	assert_false(exists(pidfile));
	want_get(abs, "k", "relative");
}

/* The longest valid name works end to end; a longer one or a bad one is
 * refused by kvd too. */
static void test_store_names(void **state)
{
	char name[65], longer[66];
	struct h_result r;
	int n;

	(void)state;
	n = snprintf(name, sizeof(name), "t.long.%ld.", (long)getpid());
	memset(name + n, 'x', sizeof(name) - 1 - (size_t)n);
	name[64] = '\0';
	h_register_store(name);
	h_kvd(name, "--size", SIZE, NULL);
	put(name, "k", "64");
	want_get(name, "k", "64");

	memcpy(longer, name, 64);
	longer[64] = 'x';
	longer[65] = '\0';
	h_kvd_run(&r, longer, "--size", SIZE, NULL);
	H_ASSERT_EXIT(&r, 2);
	H_ASSERT_ERR_LINE(&r, "kvd: ");
	h_result_free(&r);
	assert_false(exists(h_shm_path(longer)));

	h_kvd_run(&r, "bad name", "--size", SIZE, NULL);
	H_ASSERT_EXIT(&r, 2);
	H_ASSERT_ERR_LINE(&r, "kvd: ");
	h_result_free(&r);
}

static void test_kvd_command_line(void **state)
{
	const char *store = h_store_name("cmdline");
	static const char *const bad[][4] = {
		{"--frobnicate", NULL},
		{"--max-value", "1025M", NULL},
		{"--max-value", "junk", NULL},
		{"--max-items", "lots", NULL},
		{"--pidfile", "", NULL},
		{"--size", NULL},
		{"extra-argument", NULL},
	};
	const char *help[] = {h_kvd_bin(), "--help", NULL};
	const char *version[] = {h_kvd_bin(), "--version", NULL};
	struct h_result r;

	(void)state;
	h_run(&r, help, NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "kvd");
	assert_int_equal(r.err_len, 0);
	h_result_free(&r);
	h_run(&r, version, NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "0.1.0");
	h_result_free(&r);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *argv[8] = {h_kvd_bin(), "-s", store};
		int n = 3;

		for (int j = 0; bad[i][j] != NULL; j++)
			argv[n++] = bad[i][j];
		argv[n] = NULL;
		h_run(&r, argv, NULL);
		H_ASSERT_EXIT(&r, 2);
		H_ASSERT_ERR_LINE(&r, "kvd: ");
		h_result_free(&r);
		assert_false(exists(h_shm_path(store)));
	}
}

/* A kvd that fails to start leaves nothing behind: here the pid file
 * cannot be written (its directory does not exist). Leaving the store it
 * had just created would keep its memory reserved with no daemon, for an
 * operator to find and remove by hand. */
static void test_failed_start_leaves_no_store(void **state)
{
	const char *store = h_store_name("pidfile-bad");
	const char *dir = h_tmpdir("pidfilebad");
	char pidfile[256];
	struct h_result r;

	(void)state;
	snprintf(pidfile, sizeof(pidfile), "%s/missing/kvd.pid", dir);
	h_kvd_run(&r, store, "-d", "--pidfile", pidfile, "--size", SIZE,
	          NULL);
	H_ASSERT_EXIT(&r, 2);
	H_ASSERT_ERR_HAS(&r, "kvd: ");
	H_ASSERT_ERR_HAS(&r, "pid file");
	if (exists(h_shm_path(store))) {
		h_dump(&r);
		fail_msg("kvd failed to start but left the store it created: "
		         "%s", h_shm_path(store));
	}
	h_result_free(&r);
}

struct race {
	const char *store;
	long pid;
};

/* The store exists and some kvd has claimed it. */
static bool claimed(void *arg)
{
	struct race *c = arg;
	struct kv_stats st;
	kv_t *kv = NULL;

	if (kv_open(c->store, KV_RDONLY, &kv) != KV_OK)
		return false;
	if (kv_stats(kv, &st) == KV_OK)
		c->pid = (long)st.daemon_pid;
	kv_close(kv);
	return c->pid != 0;
}

/* Many kvds started at once on a new store: one wins and serves, every
 * other exits 2 naming the winner, and the store is sound. */
static void test_start_race(void **state)
{
	enum { N = 8 };
	const char *store = h_store_name("race");
	const char *argv[] = {h_kvd_bin(), "-s", store, "--size", SIZE, NULL};
	struct h_proc *p[N];
	pid_t pids[N];
	struct race c = {store, 0};
	struct h_result r;
	char winner[64];
	int won = 0;

	(void)state;
	for (int i = 0; i < N; i++) {
		p[i] = h_start(argv, NULL);
		pids[i] = p[i]->pid;
	}
	if (!h_wait_for(claimed, &c, H_TIMEOUT_MS))
		fail_msg("no kvd claimed store '%s'", store);
	snprintf(winner, sizeof(winner), "already served by kvd pid %ld",
	         c.pid);
	for (int i = 0; i < N; i++) {
		if (pids[i] == (pid_t)c.pid) {
			won++;
			continue;
		}
		if (!h_wait(p[i], H_TIMEOUT_MS, &r)) {
			h_dump(&r);
			fail_msg("a second kvd kept running on store '%s'",
			         store);
		}
		H_ASSERT_EXIT(&r, 2);
		H_ASSERT_ERR_HAS(&r, winner);
		h_result_free(&r);
	}
	if (won != 1)
		fail_msg("store '%s' names pid %ld, not one of our kvds", store,
		         c.pid);
	assert_true(h_store_served_by(store, (pid_t)c.pid));
	put(store, "k", "raced");
	want_get(store, "k", "raced");
	h_kv(&r, store, "check", NULL);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	for (int i = 0; i < N; i++)
		if (pids[i] == (pid_t)c.pid)
			stop(p[i], SIGTERM);
}

/* Clients racing a kvd that is creating the store get an error or "not
 * found", never a crash. */
static void test_clients_race_creation(void **state)
{
	enum { N = 12 };
	const char *store = h_store_name("race-clients");
	const char *get[] = {h_kv_bin(), "-s", store, "get", "k", NULL};
	struct h_proc *c[N];
	struct h_result r;

	(void)state;
	h_register_store(store);
	for (int i = 0; i < N / 2; i++)
		c[i] = h_start(get, NULL);
	h_kvd(store, "--size", SIZE, NULL);
	for (int i = N / 2; i < N; i++)
		c[i] = h_start(get, NULL);
	for (int i = 0; i < N; i++) {
		assert_true(h_wait(c[i], H_TIMEOUT_MS, &r));
		if (r.sig != 0 || (r.code != 1 && r.code != 2)) {
			h_dump(&r);
			fail_msg("a client racing store creation ended badly");
		}
		H_ASSERT_ERR_LINE(&r, "kv: ");
		h_result_free(&r);
	}
}

/* A store someone made world-writable with chmod is not served (kvd
 * cannot vouch for its contents), and kvd leaves it as it is. */
static void test_refuses_world_writable_store(void **state)
{
	const char *store = h_store_name("chmod");
	struct h_proc *p;
	struct h_result r;

	(void)state;
	p = h_kvd(store, "--size", SIZE, NULL);
	put(store, "k", "v");
	stop(p, SIGTERM);
	assert_int_equal(chmod(h_shm_path(store), 0666), 0);

	h_kvd_run(&r, store, NULL);
	H_ASSERT_EXIT(&r, 2);
	assert_err_line_with(&r, "kvd: ");
	H_ASSERT_ERR_HAS(&r, "world-writable");
	h_result_free(&r);
	assert_int_equal(file_mode(h_shm_path(store)), 0666);
	/* Clients refuse it too: a store anyone can write is not trusted. */
	h_kv(&r, store, "get", "k", NULL);
	H_ASSERT_EXIT(&r, 2);
	H_ASSERT_ERR_HAS(&r, "world-writable");
	h_result_free(&r);
	/* Made private again, its data is all there. */
	assert_int_equal(chmod(h_shm_path(store), 0600), 0);
	want_get(store, "k", "v");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_default_mode_0600, h_teardown),
		cmocka_unit_test_teardown(test_mode_0640, h_teardown),
		cmocka_unit_test_teardown(test_mode_world_writable_refused,
		                          h_teardown),
		cmocka_unit_test_teardown(test_second_kvd_refused, h_teardown),
		cmocka_unit_test_teardown(test_sigterm_stops_keeps_store,
		                          h_teardown),
		cmocka_unit_test_teardown(test_sigint_stops_keeps_store,
		                          h_teardown),
		cmocka_unit_test_teardown(test_restart_adopts, h_teardown),
		cmocka_unit_test_teardown(test_restart_same_size, h_teardown),
		cmocka_unit_test_teardown(test_detach_pidfile, h_teardown),
		cmocka_unit_test_teardown(test_bad_size, h_teardown),
		cmocka_unit_test_teardown(test_full_tmpfs, h_teardown),
		cmocka_unit_test_teardown(test_file_backed_restart,
		                          h_teardown),
		cmocka_unit_test_teardown(test_mode_ignores_umask, h_teardown),
		cmocka_unit_test_teardown(test_mode_invalid, h_teardown),
		cmocka_unit_test_teardown(test_logs_and_sighup, h_teardown),
		cmocka_unit_test_teardown(test_detach_reports_failure,
		                          h_teardown),
		cmocka_unit_test_teardown(test_detach_relative_path,
		                          h_teardown),
		cmocka_unit_test_teardown(test_store_names, h_teardown),
		cmocka_unit_test_teardown(test_kvd_command_line, h_teardown),
		cmocka_unit_test_teardown(test_failed_start_leaves_no_store,
		                          h_teardown),
		cmocka_unit_test_teardown(test_start_race, h_teardown),
		cmocka_unit_test_teardown(test_refuses_world_writable_store,
		                          h_teardown),
		cmocka_unit_test_teardown(test_clients_race_creation,
		                          h_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
