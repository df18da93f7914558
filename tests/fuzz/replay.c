/*
 * replay.c - fuzz-store-replay: run the store-image fuzzer's harness over
 * saved inputs, without libFuzzer, so any compiler (and any sanitizer
 * build) can replay the corpus and the regression inputs as a test.
 *
 *   fuzz-store-replay [--in-process] PATH...
 *
 * Each PATH is an input file or a directory of them (not recursive; names
 * starting with '.' and README* are skipped). The template store is built
 * once; then each input runs in a child process of its own, so one
 * finding (the harness aborts; a sanitizer reports and exits; a leak is
 * reported at the child's exit) does not hide the next, and an input that
 * runs longer than KVFUZZ_INPUT_TIMEOUT seconds (default 20) is a hang:
 * the child prints its stack and aborts. Every failing input is named at
 * the end. --in-process runs the inputs in this process instead, stopping
 * at the first finding (for a debugger). Exit 0 when every input ran clean.
 */
#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fuzz_store.h"

static const char *current;

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "fuzz-store-replay: HANG: input ran past "
	                          "its timeout: ";
	(void)!write(2, msg, sizeof msg - 1);
	if (current != NULL)
		(void)!write(2, current, strlen(current));
	(void)!write(2, "\n", 1);
	fuzz_stack(); /* where it was stuck */
	abort();
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static double now_s(void)
{
	struct timespec ts; /* not CLOCK_MONOTONIC: that one is virtual here */
	clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned timeout_s = 20;
static double slowest;
static char slowest_name[512];

static bool in_process;
static unsigned failed;
static struct fuzz_totals *shared_tot; /* the children's totals, summed */

static void run_input(const char *path, const uint8_t *buf, size_t n)
{
	current = path;
	if (getenv("KVFUZZ_VERBOSE") != NULL)
		fprintf(stderr, "fuzz-store-replay: %s (%zu bytes)\n", path, n);
	alarm(timeout_s);
	LLVMFuzzerTestOneInput(buf, n);
	alarm(0);
	current = NULL;
}

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, "fuzz-store-replay: %s: %s\n", path,
		        strerror(errno));
		return -1;
	}
	size_t cap = 4096, n = 0;
	uint8_t *buf = malloc(cap);
	for (;;) {
		if (n == cap)
			buf = realloc(buf, cap *= 2);
		size_t got = fread(buf + n, 1, cap - n, f);
		if (got == 0)
			break;
		n += got;
	}
	fclose(f);
	double t = now_s();
	int rc = 0;
	if (in_process) {
		run_input(path, buf, n);
	} else {
		fflush(NULL);
		pid_t pid = fork();
		if (pid < 0) {
			perror("fuzz-store-replay: fork");
			exit(2);
		}
		if (pid == 0) {
			run_input(path, buf, n);
			struct fuzz_totals tot;
			fuzz_totals(&tot);
			shared_tot->inputs += tot.inputs;
			shared_tot->calls += tot.calls;
			shared_tot->opened += tot.opened;
			shared_tot->sound_before += tot.sound_before;
			shared_tot->undocumented += tot.undocumented;
			free(buf);
			exit(0); /* not _exit: LeakSanitizer checks at exit */
		}
		int st;
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr,
			        "fuzz-store-replay: FAILED: %s (%s %d)\n", path,
			        WIFSIGNALED(st) ? "signal" : "exit",
			        WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
			failed++;
			rc = -1;
		}
	}
	t = now_s() - t;
	if (t > slowest) {
		slowest = t;
		snprintf(slowest_name, sizeof slowest_name, "%s", path);
	}
	free(buf);
	return rc;
}

static int run_path(const char *path, unsigned *count)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		fprintf(stderr, "fuzz-store-replay: %s: %s\n", path,
		        strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		(*count)++;
		return run_file(path);
	}
	DIR *d = opendir(path);
	if (d == NULL)
		return -1;
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' || strncmp(e->d_name, "README", 6) == 0)
			continue;
		if (n == cap)
			names = realloc(names, (cap = cap ? cap * 2 : 64) *
			                           sizeof *names);
		size_t len = strlen(path) + strlen(e->d_name) + 2;
		names[n] = malloc(len);
		snprintf(names[n], len, "%s/%s", path, e->d_name);
		n++;
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof *names, by_name);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		struct stat fs;
		if (stat(names[i], &fs) == 0 && S_ISREG(fs.st_mode)) {
			(*count)++;
			if (run_file(names[i]) != 0)
				rc = -1;
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

int main(int argc, char **argv)
{
	int first = 1;
	if (argc > 1 && strcmp(argv[1], "--in-process") == 0) {
		in_process = true;
		first = 2;
	}
	if (argc <= first) {
		fprintf(stderr, "usage: fuzz-store-replay [--in-process] PATH...\n");
		return 2;
	}
	const char *t = getenv("KVFUZZ_INPUT_TIMEOUT");
	if (t != NULL && atoi(t) > 0)
		timeout_s = (unsigned)atoi(t);
	signal(SIGALRM, on_alarm);
	shared_tot = mmap(NULL, sizeof *shared_tot, PROT_READ | PROT_WRITE,
	                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared_tot == MAP_FAILED)
		return 2;
	memset(shared_tot, 0, sizeof *shared_tot);
	LLVMFuzzerInitialize(&argc, &argv);

	unsigned count = 0;
	int rc = 0;
	double t0 = now_s();
	for (int i = first; i < argc; i++)
		if (run_path(argv[i], &count) != 0)
			rc = 1;
	struct fuzz_totals tot = *shared_tot;
	if (in_process)
		fuzz_totals(&tot);
	printf("fuzz-store-replay: %u inputs in %.2f s (slowest %.2f s: %s); "
	       "%llu calls; %llu attached, %llu sound before their "
	       "operations; %llu undocumented statuses; %u failed\n",
	       count, now_s() - t0, slowest, slowest_name[0] ? slowest_name : "-",
	       (unsigned long long)tot.calls, (unsigned long long)tot.opened,
	       (unsigned long long)tot.sound_before,
	       (unsigned long long)tot.undocumented, failed);
	if (count == 0) {
		fprintf(stderr, "fuzz-store-replay: no inputs found\n");
		rc = 1;
	}
	return rc;
}
