/*
 * replay.c - the replay driver of the command-line fuzz targets: a plain
 * main() linked with one target instead of libFuzzer, so that any compiler
 * and any sanitizer build replays the seed corpus and the regression
 * inputs as tests of suite `fuzz`.
 *
 *   fuzz-TARGET-replay [--in-process] PATH...
 *
 * Each PATH is an input file or a directory of them (not recursive; names
 * starting with '.' and README* are skipped), run in name order. Each
 * input runs in a child process of its own, so that one finding (an oracle
 * or a sanitizer aborts; a leak is reported at the child's exit) does not
 * hide the next; an input that runs past FCLI_TIMEOUT seconds (default 10)
 * is a hang. Failing inputs are named at the end. --in-process runs them
 * in this process and stops at the first finding (for a debugger).
 * Exit 0 when every input ran clean, 1 otherwise, 2 on a usage error.
 */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuzz_cli.h"

static bool in_process;
static unsigned timeout_s = 10;
static unsigned ran, failed;

static void on_alarm(int sig)
{
	static const char msg[] = "replay: HANG: an input ran past its "
	                          "timeout\n";

	(void)sig;
	(void)!write(STDERR_FILENO, msg, sizeof msg - 1);
	abort();
}

static int read_file(const char *path, uint8_t **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	size_t cap = 4096, n = 0;
	uint8_t *b = malloc(cap);

	if (f == NULL || b == NULL) {
		dprintf(STDERR_FILENO, "replay: %s: cannot read\n", path);
		if (f != NULL)
			fclose(f);
		free(b);
		return -1;
	}
	for (;;) {
		size_t got;

		if (n == cap) {
			uint8_t *bigger = realloc(b, cap * 2);

			if (bigger == NULL)
				abort();
			b = bigger;
			cap *= 2;
		}
		got = fread(b + n, 1, cap - n, f);
		if (got == 0)
			break;
		n += got;
	}
	fclose(f);
	*buf = b;
	*len = n;
	return 0;
}

static void run_one(const char *path)
{
	uint8_t *buf;
	size_t len;
	pid_t pid;
	int st;

	if (read_file(path, &buf, &len) != 0) {
		failed++;
		return;
	}
	ran++;
	if (in_process) {
		alarm(timeout_s);
		LLVMFuzzerTestOneInput(buf, len);
		alarm(0);
		free(buf);
		return;
	}
	pid = fork();
	if (pid < 0) {
		perror("replay: fork");
		exit(2);
	}
	if (pid == 0) {
		alarm(timeout_s);
		LLVMFuzzerTestOneInput(buf, len);
		alarm(0);
		free(buf);
		exit(0); /* exit, not _exit: LeakSanitizer checks at exit */
	}
	free(buf);
	if (waitpid(pid, &st, 0) < 0) {
		perror("replay: waitpid");
		exit(2);
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		failed++;
		if (WIFSIGNALED(st))
			dprintf(STDERR_FILENO, "replay: FAIL %s (signal %d)\n",
			        path, WTERMSIG(st));
		else
			dprintf(STDERR_FILENO, "replay: FAIL %s (exit %d)\n",
			        path, WEXITSTATUS(st));
	}
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void run_path(const char *path)
{
	struct stat sb;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;
	DIR *d;

	if (stat(path, &sb) != 0) {
		dprintf(STDERR_FILENO, "replay: %s: no such file\n", path);
		failed++;
		return;
	}
	if (!S_ISDIR(sb.st_mode)) {
		run_one(path);
		return;
	}
	d = opendir(path);
	if (d == NULL) {
		failed++;
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || strncmp(de->d_name, "README", 6) == 0)
			continue;
		if (n == cap) {
			char **bigger;

			cap = cap ? cap * 2 : 64;
			bigger = realloc(names, cap * sizeof *names);
			if (bigger == NULL)
				abort();
			names = bigger;
		}
		names[n] = malloc(strlen(path) + strlen(de->d_name) + 2);
		if (names[n] == NULL)
			abort();
		sprintf(names[n], "%s/%s", path, de->d_name);
		n++;
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof *names, by_name);
	for (size_t i = 0; i < n; i++) {
		if (stat(names[i], &sb) == 0 && S_ISREG(sb.st_mode))
			run_one(names[i]);
		free(names[i]);
	}
	free(names);
}

int main(int argc, char **argv)
{
	const char *t = getenv("FCLI_TIMEOUT");
	int i = 1;

	if (argc > 1 && strcmp(argv[1], "--in-process") == 0) {
		in_process = true;
		i++;
	}
	if (i >= argc) {
		dprintf(STDERR_FILENO,
		        "usage: %s [--in-process] PATH...\n", argv[0]);
		return 2;
	}
	if (t != NULL && atoi(t) > 0)
		timeout_s = (unsigned)atoi(t);
	signal(SIGALRM, on_alarm);
	LLVMFuzzerInitialize(&argc, &argv);
	for (; i < argc; i++)
		run_path(argv[i]);
	/* On fd 2: the target may have taken over the stdio streams. */
	dprintf(STDERR_FILENO, "replay: %u input%s, %u failed\n", ran,
	        ran == 1 ? "" : "s", failed);
	return failed == 0 && ran > 0 ? 0 : 1;
}
