/*
 * wtest.h - the few assertions the Windows tests need. cmocka is not
 * packaged for mingw in Debian, so these tests carry their own: each
 * CHECK that fails prints both sides and where, the test goes on, and
 * main() returns non-zero if any failed (meson counts the binary as one
 * test, run under Wine).
 *
 * Processes: wt_spawn starts this same program again with arguments (the
 * tests' child roles), with its stdout on a pipe; wt_line reads one line
 * of it. wt_start starts another program (kv.exe, kvd.exe) with its stdin
 * read from given bytes and its stdout and stderr written to files, which
 * the test reads while it runs (wt_await) and after it ends (wt_finish);
 * wt_run does both, with a timeout. Files rather than pipes: a child that
 * writes a lot cannot block on a pipe nobody reads, and a daemon's log can
 * be looked at without reading it to the end.
 */
#ifndef KV_WTEST_H
#define KV_WTEST_H

#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <stdbool.h>
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

/* Another program, started by wt_start. */
struct wt_proc {
	PROCESS_INFORMATION pi;
	char in[MAX_PATH], out[MAX_PATH], err[MAX_PATH]; /* its stdio files */
	DWORD started;                                    /* GetTickCount */
};

/* Make a new temporary file holding n bytes of data; its path goes to
 * path. Returns 0 or -1. */
static inline int wt_temp(const char *data, size_t n, char path[MAX_PATH])
{
	char dir[MAX_PATH];
	DWORD put = 0;

	if (GetTempPathA(sizeof dir, dir) == 0 ||
	    GetTempFileNameA(dir, "wt", 0, path) == 0)
		return -1;
	HANDLE h = CreateFileA(path, GENERIC_WRITE, FILE_SHARE_READ, NULL,
	                       CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
	if (h == INVALID_HANDLE_VALUE)
		return -1;
	BOOL ok = n == 0 || (WriteFile(h, data, (DWORD)n, &put, NULL) &&
	                     put == (DWORD)n);
	CloseHandle(h);
	return ok ? 0 : -1;
}

/* An inheritable handle on path, for a child's stdio. */
static inline HANDLE wt_stdio(const char *path, bool write)
{
	SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, TRUE};

	return CreateFileA(path, write ? GENERIC_WRITE : GENERIC_READ,
	                   FILE_SHARE_READ | FILE_SHARE_WRITE |
	                       FILE_SHARE_DELETE,
	                   &sa, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
}

/* Start exe ARGS (ARGS one string, already quoted), with stdin the n bytes
 * of in (none if NULL), stdout and stderr to files of their own, and the
 * CreateProcess flags given (e.g. CREATE_NO_WINDOW: a console of its own,
 * which a test can send Ctrl-C to). Returns 0 or -1. */
static inline int wt_start(const char *exe, const char *args, const char *in,
                           size_t n, DWORD flags, struct wt_proc *p)
{
	char cmd[8192];
	STARTUPINFOA si;
	HANDLE h[3];

	memset(p, 0, sizeof *p);
	if (wt_temp(in, in != NULL ? n : 0, p->in) != 0 ||
	    wt_temp(NULL, 0, p->out) != 0 || wt_temp(NULL, 0, p->err) != 0)
		return -1;
	snprintf(cmd, sizeof cmd, "\"%s\" %s", exe, args);
	h[0] = wt_stdio(p->in, false);
	h[1] = wt_stdio(p->out, true);
	h[2] = wt_stdio(p->err, true);
	memset(&si, 0, sizeof si);
	si.cb = sizeof si;
	si.dwFlags = STARTF_USESTDHANDLES;
	si.hStdInput = h[0];
	si.hStdOutput = h[1];
	si.hStdError = h[2];
	p->started = GetTickCount();
	BOOL ok = h[0] != INVALID_HANDLE_VALUE &&
	          h[1] != INVALID_HANDLE_VALUE &&
	          h[2] != INVALID_HANDLE_VALUE &&
	          CreateProcessA(NULL, cmd, NULL, NULL, TRUE, flags, NULL, NULL,
	                         &si, &p->pi);
	for (int i = 0; i < 3; i++)
		if (h[i] != INVALID_HANDLE_VALUE)
			CloseHandle(h[i]);
	if (!ok) {
		fprintf(stderr, "wt_start: %s: Windows error %lu\n", cmd,
		        (unsigned long)GetLastError());
		DeleteFileA(p->in);
		DeleteFileA(p->out);
		DeleteFileA(p->err);
	}
	return ok ? 0 : -1;
}

/* Read what is in path now (at most cap - 1 bytes, then a NUL); returns
 * how many bytes. */
static inline size_t wt_slurp(const char *path, char *buf, size_t cap)
{
	DWORD got = 0;
	HANDLE h = CreateFileA(path, GENERIC_READ,
	                       FILE_SHARE_READ | FILE_SHARE_WRITE |
	                           FILE_SHARE_DELETE,
	                       NULL, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
	if (h == INVALID_HANDLE_VALUE || cap == 0) {
		if (cap > 0)
			buf[0] = '\0';
		return 0;
	}
	if (!ReadFile(h, buf, (DWORD)(cap - 1), &got, NULL))
		got = 0;
	CloseHandle(h);
	buf[got] = '\0';
	return got;
}

/* Wait until the child's stderr holds needle (true), or it ends, or ms
 * pass (false). */
static inline bool wt_await(struct wt_proc *p, const char *needle, DWORD ms)
{
	static char buf[65536];
	DWORD t0 = GetTickCount();

	for (;;) {
		wt_slurp(p->err, buf, sizeof buf);
		if (strstr(buf, needle) != NULL)
			return true;
		if (GetTickCount() - t0 > ms ||
		    WaitForSingleObject(p->pi.hProcess, 0) == WAIT_OBJECT_0)
			break;
		Sleep(10);
	}
	/* It may have written the line just before it ended. */
	wt_slurp(p->err, buf, sizeof buf);
	if (strstr(buf, needle) != NULL)
		return true;
	fprintf(stderr, "wt_await: no \"%s\" in the child's stderr:\n%s\n",
	        needle, buf);
	return false;
}

/* Wait for the child, at most ms (then terminate it), collect its stdout
 * and stderr (NULL: not wanted; *outlen, if not NULL, gets stdout's
 * length), remove its files. Returns its exit code, or -1 if it had to
 * be terminated. */
static inline int wt_finish(struct wt_proc *p, DWORD ms, char *out,
                            size_t outcap, size_t *outlen, char *err,
                            size_t errcap)
{
	DWORD code = (DWORD)-1;

	if (WaitForSingleObject(p->pi.hProcess, ms) != WAIT_OBJECT_0) {
		fprintf(stderr, "wt_finish: still running after %lu ms: "
		        "terminated\n", (unsigned long)ms);
		TerminateProcess(p->pi.hProcess, 99);
		WaitForSingleObject(p->pi.hProcess, INFINITE);
	} else {
		GetExitCodeProcess(p->pi.hProcess, &code);
	}
	CloseHandle(p->pi.hProcess);
	CloseHandle(p->pi.hThread);
	size_t n = out != NULL ? wt_slurp(p->out, out, outcap) : 0;
	if (outlen != NULL)
		*outlen = n;
	if (err != NULL)
		wt_slurp(p->err, err, errcap);
	DeleteFileA(p->in);
	DeleteFileA(p->out);
	DeleteFileA(p->err);
	return (int)code;
}

/* Run exe ARGS to its end (at most ms) with stdin the n bytes of in;
 * returns its exit code (-1: terminated), its stdout and stderr as for
 * wt_finish. */
static inline int wt_run(const char *exe, const char *args, const char *in,
                         size_t n, DWORD ms, char *out, size_t outcap,
                         size_t *outlen, char *err, size_t errcap)
{
	struct wt_proc p;

	if (wt_start(exe, args, in, n, 0, &p) != 0)
		return -1;
	return wt_finish(&p, ms, out, outcap, outlen, err, errcap);
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
