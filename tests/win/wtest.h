/*
 * wtest.h - the few assertions the Windows tests need. cmocka is not
 * packaged for mingw in Debian, so these tests carry their own: each
 * CHECK that fails prints both sides and where, the test goes on, and
 * main() returns non-zero if any failed (meson counts the binary as one
 * test, run under Wine).
 *
 * Processes: wt_spawn starts this same program again with arguments (the
 * tests' child roles), with its stdout on a pipe; wt_line reads one line
 * of it.
 */
#ifndef KV_WTEST_H
#define KV_WTEST_H

#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"

static int wt_failed, wt_checks;

#define CHECK(cond)                                                            \
	do {                                                                   \
		wt_checks++;                                                   \
		if (!(cond)) {                                                 \
			wt_failed++;                                           \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, \
			        __LINE__, #cond);                              \
		}                                                              \
	} while (0)

#define CHECK_KV(want, expr)                                                   \
	do {                                                                   \
		int wt_got = (expr);                                           \
		wt_checks++;                                                   \
		if (wt_got != (want)) {                                        \
			wt_failed++;                                           \
			fprintf(stderr, "%s:%d: %s: got %s, want %s\n",        \
			        __FILE__, __LINE__, #expr, kv_errname(wt_got), \
			        kv_errname(want));                             \
		}                                                              \
	} while (0)

struct wt_child {
	PROCESS_INFORMATION pi;
	HANDLE out; /* read end of its stdout */
};

/* Start this program again as argv0 ARGS (one string, already quoted). */
static inline int wt_spawn(const char *args, struct wt_child *c)
{
	char exe[MAX_PATH], cmd[4096];
	SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, TRUE};
	HANDLE rd, wr;
	STARTUPINFOA si;

	memset(c, 0, sizeof *c);
	if (GetModuleFileNameA(NULL, exe, sizeof exe) == 0 ||
	    !CreatePipe(&rd, &wr, &sa, 0))
		return -1;
	SetHandleInformation(rd, HANDLE_FLAG_INHERIT, 0);
	snprintf(cmd, sizeof cmd, "\"%s\" %s", exe, args);
	memset(&si, 0, sizeof si);
	si.cb = sizeof si;
	si.dwFlags = STARTF_USESTDHANDLES;
	si.hStdOutput = wr;
	si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
	si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
	BOOL ok = CreateProcessA(NULL, cmd, NULL, NULL, TRUE, 0, NULL, NULL,
	                         &si, &c->pi);
	CloseHandle(wr);
	if (!ok) {
		CloseHandle(rd);
		return -1;
	}
	c->out = rd;
	return 0;
}

/* Read one line (without its newline) of the child's stdout. */
static inline int wt_line(struct wt_child *c, char *buf, size_t cap)
{
	size_t n = 0;
	for (;;) {
		char ch;
		DWORD got = 0;
		if (!ReadFile(c->out, &ch, 1, &got, NULL) || got == 0)
			break;
		if (ch == '\n')
			break;
		if (ch != '\r' && n + 1 < cap)
			buf[n++] = ch;
	}
	buf[n] = '\0';
	return (int)n;
}

/* Wait for the child (at most ms) and return its exit code, or -1. */
static inline int wt_wait(struct wt_child *c, DWORD ms)
{
	DWORD code = (DWORD)-1;
	if (WaitForSingleObject(c->pi.hProcess, ms) != WAIT_OBJECT_0) {
		TerminateProcess(c->pi.hProcess, 99);
		WaitForSingleObject(c->pi.hProcess, INFINITE);
		code = (DWORD)-1;
	} else {
		GetExitCodeProcess(c->pi.hProcess, &code);
	}
	CloseHandle(c->pi.hProcess);
	CloseHandle(c->pi.hThread);
	if (c->out != NULL)
		CloseHandle(c->out);
	c->out = NULL;
	return (int)code;
}

static inline int wt_report(const char *name)
{
	printf("%s: %d checks, %d failed\n", name, wt_checks, wt_failed);
	return wt_failed == 0 ? 0 : 1;
}

/* A store name unique to this process and call. */
static inline const char *wt_store(const char *tag)
{
	static char names[16][64];
	static int next;
	char *n = names[next++ % 16];
	snprintf(n, 64, "w.%s.%lu.%d", tag, (unsigned long)GetCurrentProcessId(),
	         next);
	return n;
}

#endif /* KV_WTEST_H */
