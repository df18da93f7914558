/*
 * fuzz_mc.c - the memcached protocol engine's fuzzer (daemon/mc_proto.c):
 * random bytes, as a client would send them, fed to a session over a
 * small real store, in pieces cut at random points, with the reply written
 * out at random paces, as the network half does. Any crash, sanitizer
 * report, leak or hang is a finding, and so is a broken promise of mc.h:
 *
 *   - mc_session_input() consumes at most what it is offered;
 *   - while it wants input, it leaves less than MC_MAX_LINE unconsumed
 *     (the network half's buffer is sized by that);
 *   - the reply it holds stays under MC_OUT_HIGH plus one reply;
 *   - it always gets somewhere: offered its bytes again with its reply
 *     written out, it consumes them or is done;
 *   - the store stays sound (kv_check) whatever the commands did.
 *
 * Input format (every byte string is a valid input):
 *
 *   mode:u8 seed:u8 stream...
 *
 *   mode bit 0: the server asks for authentication (users "user:pass" and
 *   "bob:pw:2"); bits 1-7 and seed: the seed of the cuts and write paces.
 *   stream: the bytes the client sends.
 *
 * The seeds in mc_corpus/ are command sessions in plain text after those
 * two bytes (see mc_corpus/README).
 *
 * Built twice: fuzz-mc, the libFuzzer target (clang), and with
 * -DFUZZ_MC_REPLAY fuzz-mc-replay, whose main() runs saved inputs (files
 * or directories of them) each in a child process of its own, so any
 * compiler and sanitizer build replays the corpus. The store is made once
 * per process, named with the pid, and destroyed at exit (an input that
 * crashes the libFuzzer target leaves it behind: kv destroy fuzzmc.PID).
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kv.h"
#include "mc.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static kv_t *kv;
static char store[KV_MAX_NAME + 1];
static pid_t owner;
static struct mc_server srv;
static char u1[] = "user", p1[] = "pass", u2[] = "bob", p2[] = "pw:2";
static struct mc_user users[2] = {{u1, p1}, {u2, p2}};

#define FUZZ_ASSERT(c)                                                         \
	do {                                                                   \
		if (!(c)) {                                                    \
			fprintf(stderr, "fuzz-mc: %s:%d: broken: %s\n",        \
			        __FILE__, __LINE__, #c);                       \
			abort();                                               \
		}                                                              \
	} while (0)

static void cleanup(void)
{
	if (kv == NULL || getpid() != owner)
		return;
	kv_close(kv);
	kv = NULL;
	(void)kv_destroy(store);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct kv_options o;
	struct kv_stats st;

	(void)argc;
	(void)argv;
	owner = getpid();
	snprintf(store, sizeof(store), "fuzzmc.%d", (int)owner);
	memset(&o, 0, sizeof(o));
	o.size = 4u << 20;
	o.max_value = 8192; /* small: refused values are cheap to make */
	o.max_items = 1024; /* a small index: flush and check walk it all
	                     * for every input */
	int rc = kv_create(store, &o, &kv);
	if (rc != KV_OK || kv_stats(kv, &st) != KV_OK) {
		fprintf(stderr, "fuzz-mc: store %s: %s\n", store,
		        kv_strerror(rc));
		abort();
	}
	atexit(cleanup);
	srv.kv = kv;
	srv.max_value = st.max_value;
	srv.threads = 1;
	srv.max_conns = 16;
	srv.started_ms = 1;
	return 0;
}

static uint32_t rng;

static uint32_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

/* How many more bytes the client's next write brings. */
static size_t cut(size_t left)
{
	static const size_t sizes[] = {1, 2, 3, 7, 16, 64, 300, 2047, 2048,
	                               2049, 4096, 16384};
	uint32_t r = next();
	size_t n = (r & 7) == 0 ? left : sizes[(r >> 3) % 12];
	return n < left ? n : left;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t mode = data[0];
	rng = 0x9e3779b9u ^ ((uint32_t)mode << 8 | data[1]);
	const char *in = (const char *)data + 2;
	size_t n = size - 2;

	FUZZ_ASSERT(kv_flush(kv, NULL) == KV_OK);
	atomic_store(&srv.flush_at_ms, 0);
	srv.users = (mode & 1) ? users : NULL;
	srv.nusers = (mode & 1) ? 2 : 0;
	struct mc_session *s = mc_session_new(&srv);
	FUZZ_ASSERT(s != NULL);

	/* in[start, end): received and not yet consumed */
	size_t start = 0, end = 0, len;
	/* a safety net: every turn receives, consumes or writes something */
	size_t turns = 0, max_turns = 1000 + 64 * n;
	const size_t bound = MC_OUT_HIGH + srv.max_value + 64 * 1024;
	for (;;) {
		FUZZ_ASSERT(++turns < max_turns);
		if (end < n)
			end += cut(n - end);
		size_t used = mc_session_input(s, in + start, end - start);
		FUZZ_ASSERT(used <= end - start);
		start += used;
		const char *p = mc_session_output(s, &len);
		FUZZ_ASSERT((p == NULL) == (len == 0));
		FUZZ_ASSERT(len <= bound);
		if (mc_session_closing(s))
			break;
		if (mc_session_wants_input(s))
			FUZZ_ASSERT(end - start < MC_MAX_LINE);
		if ((next() & 15) == 0)
			mc_server_tick(&srv);
		uint32_t r = next();
		if (end < n) {
			/* write out all of the reply, some, or none yet */
			if (len > 0 && r % 3 != 0)
				mc_session_sent(s, (r & 8) ? len
				                           : 1 + next() % len);
			continue;
		}
		/* all input in: write the reply out (in pieces), then offer
		 * what is left again; done when that takes nothing */
		while (mc_session_output(s, &len) != NULL)
			mc_session_sent(s, (next() & 1) ? len : 1 + next() % len);
		used = mc_session_input(s, in + start, end - start);
		FUZZ_ASSERT(used <= end - start);
		start += used;
		(void)mc_session_output(s, &len);
		if (used == 0 && len == 0) {
			if (!mc_session_closing(s))
				FUZZ_ASSERT(end - start < MC_MAX_LINE);
			break;
		}
	}
	while (mc_session_output(s, &len) != NULL)
		mc_session_sent(s, len);
	mc_session_free(s);
	FUZZ_ASSERT(kv_check(kv, NULL, NULL) == KV_OK);
	return 0;
}

#ifdef FUZZ_MC_REPLAY
/*
 * fuzz-mc-replay PATH...: run each input file (or each file of each
 * directory, names starting with '.' and README* skipped) in a child of
 * its own, so a finding does not hide the next; an input running past 20
 * s is a hang. Exit 0 when every input ran clean.
 */
static unsigned failed, count;

static void run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	size_t cap = 4096, n = 0;
	uint8_t *buf = malloc(cap);

	if (f == NULL || buf == NULL) {
		fprintf(stderr, "fuzz-mc-replay: %s: %s\n", path,
		        strerror(errno));
		failed++;
		free(buf);
		if (f != NULL)
			fclose(f);
		return;
	}
	for (;;) {
		if (n == cap) {
			uint8_t *b = realloc(buf, cap *= 2);
			if (b == NULL)
				abort();
			buf = b;
		}
		size_t got = fread(buf + n, 1, cap - n, f);
		if (got == 0)
			break;
		n += got;
	}
	fclose(f);
	count++;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fuzz-mc-replay: fork");
		exit(2);
	}
	if (pid == 0) {
		alarm(20);
		LLVMFuzzerTestOneInput(buf, n);
		free(buf);
		exit(0); /* not _exit: LeakSanitizer checks at exit */
	}
	free(buf);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "fuzz-mc-replay: FAILED: %s (%s %d)\n", path,
		        WIFSIGNALED(st) ? "signal" : "exit",
		        WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
		failed++;
	}
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void run_path(const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		fprintf(stderr, "fuzz-mc-replay: %s: %s\n", path,
		        strerror(errno));
		failed++;
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		run_file(path);
		return;
	}
	DIR *d = opendir(path);
	if (d == NULL) {
		failed++;
		return;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' || strncmp(e->d_name, "README", 6) == 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			char **nn = realloc(names, cap * sizeof(*names));
			if (nn == NULL)
				abort();
			names = nn;
		}
		size_t len = strlen(path) + strlen(e->d_name) + 2;
		names[n] = malloc(len);
		if (names[n] == NULL)
			abort();
		snprintf(names[n], len, "%s/%s", path, e->d_name);
		n++;
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), by_name);
	for (size_t i = 0; i < n; i++) {
		struct stat fs;
		if (stat(names[i], &fs) == 0 && S_ISREG(fs.st_mode))
			run_file(names[i]);
		free(names[i]);
	}
	free(names);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: fuzz-mc-replay PATH...\n");
		return 2;
	}
	LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++)
		run_path(argv[i]);
	printf("fuzz-mc-replay: %u inputs, %u failed\n", count, failed);
	if (count == 0) {
		fprintf(stderr, "fuzz-mc-replay: no inputs found\n");
		return 1;
	}
	return failed == 0 ? 0 : 1;
}
#endif
