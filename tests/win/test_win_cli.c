/*
 * test_win_cli.c - kvd.exe and kv.exe on Windows, as separate programs:
 *
 *   - the classic two-program example through the tools: kvd.exe creates
 *     the store (the named section Local\kv.NAME), one kv.exe process puts
 *     a message, and a separate kv.exe process prints exactly its bytes,
 *     for an ASCII message and for a UTF-8 one (given on stdin, so that no
 *     code page stands between the test and kv.exe);
 *   - a read-only attach reads but cannot write;
 *   - a second kvd.exe on the same store is refused, naming the first
 *     one's pid;
 *   - kv.exe's exit codes (0, 1 for a key not found, 2 for errors) and
 *     kvd.exe's refusals of bad options, -d and --group;
 *   - kvd.exe stops cleanly on Ctrl-C (sent to the console of its own it
 *     was started with), removing its pid file; a store held by a client
 *     meanwhile is adopted, with its data, by the next kvd.exe; and kvd.exe
 *     stops within a second when the store is destroyed (kv destroy).
 *
 *   test_win_cli KVD.EXE KV.EXE
 *
 * Wine (8.0) generates only CTRL_C_EVENT: Ctrl-Break is sent as well, and
 * checked only where GenerateConsoleCtrlEvent accepts it.
 */
#include <stdint.h>

#include "wtest.h"

#define KVD_START_MS 30000 /* for kvd.exe to create a store under Wine */
#define RUN_MS 30000       /* for one kv.exe command */

static const char *kvd_exe, *kv_exe;

static char out[65536], err[65536];
static size_t outlen;

/* kv.exe -s STORE ARGS, stdin the n bytes of in; returns its exit code,
 * with out, outlen and err set. */
static int run_kv(const char *store, const char *args, const char *in, size_t n)
{
	char a[4096];

	snprintf(a, sizeof a, "-s %s %s", store, args);
	return wt_run(kv_exe, a, in, n, RUN_MS, out, sizeof out, &outlen, err,
	              sizeof err);
}

/* kvd.exe ARGS run to its end (a refusal); returns its exit code. */
static int kvd_refused(const char *args)
{
	return wt_run(kvd_exe, args, NULL, 0, RUN_MS, out, sizeof out, &outlen,
	              err, sizeof err);
}

/* Start kvd.exe -s STORE --size 4M ARGS in a console of its own and wait
 * until it serves the store. */
static bool kvd_start(const char *store, const char *args, struct wt_proc *p)
{
	char a[4096], ready[256];

	snprintf(a, sizeof a, "-s %s --size 4M %s", store, args);
	if (wt_start(kvd_exe, a, NULL, 0, CREATE_NO_WINDOW, p) != 0)
		return false;
	snprintf(ready, sizeof ready, "store '%s' at Local\\kv.%s", store,
	         store);
	return wt_await(p, ready, KVD_START_MS);
}

/* Stop kvd.exe by destroying its store: it sees the store marked dead on
 * its next tick. Returns its exit code; its stderr is in err. */
static int kvd_destroy_stop(const char *store, struct wt_proc *p,
                            DWORD *took)
{
	DWORD t0 = GetTickCount();
	CHECK(run_kv(store, "destroy --yes", NULL, 0) == 0);
	int rc = wt_finish(p, 10000, NULL, 0, NULL, err, sizeof err);
	*took = GetTickCount() - t0;
	return rc;
}

/* Send a console control event to the console of kvd.exe (a console of
 * its own, from CREATE_NO_WINDOW): attach to it, send the event to every
 * process on it (kvd.exe, and this one, which ignores it), detach. */
static bool send_ctrl(struct wt_proc *p, DWORD event)
{
	FreeConsole();
	if (!AttachConsole(p->pi.dwProcessId)) {
		fprintf(stderr, "AttachConsole(%lu): Windows error %lu\n",
		        (unsigned long)p->pi.dwProcessId,
		        (unsigned long)GetLastError());
		return false;
	}
	BOOL ok = GenerateConsoleCtrlEvent(event, 0);
	DWORD e = GetLastError();
	FreeConsole();
	if (!ok)
		fprintf(stderr, "note: GenerateConsoleCtrlEvent(%s): Windows "
		        "error %lu\n", event == CTRL_C_EVENT ? "CTRL_C_EVENT" :
		        "CTRL_BREAK_EVENT", (unsigned long)e);
	return ok;
}

static BOOL WINAPI ignore_ctrl(DWORD type)
{
	(void)type;
	return TRUE;
}

static bool has(const char *text, const char *needle)
{
	if (strstr(text, needle) != NULL)
		return true;
	fprintf(stderr, "no \"%s\" in:\n%s\n", needle, text);
	return false;
}

/* One line, "kvd: ..." or "kv: ...", ending in a newline (CRLF: stderr is
 * in text mode). */
static bool one_line(const char *text, const char *prefix)
{
	const char *nl = strchr(text, '\n');
	bool ok = strncmp(text, prefix, strlen(prefix)) == 0 && nl != NULL &&
	          nl[1] == '\0';
	if (!ok)
		fprintf(stderr, "not one \"%s\" line:\n%s\n", prefix, text);
	return ok;
}

/* The classic example, a read-only attach, a second kvd.exe refused,
 * kv.exe's exit codes: all on one served store. */
static void served_store(void)
{
	static const char ascii[] = "Message from the first process.";
	/* UTF-8 (German, Greek, Chinese, a check mark), with CRLF and LF
	 * inside: stdin and stdout must carry bytes, not text. */
	static const char utf8[] =
	    "Gr\xc3\xbc\xc3\x9f" "e aus dem ersten Prozess\r\n"
	    "\xce\xba\xce\xb1\xce\xbb\xce\xb7\xce\xbc\xce\xad\xcf\x81\xce\xb1\n"
	    "\xe7\xac\xac\xe4\xb8\x80\xe4\xb8\xaa\xe8\xbf\x9b\xe7\xa8\x8b "
	    "\xe2\x9c\x93";
	const char *name = wt_store("cli");
	struct wt_proc d;
	char want[128];
	kv_t *kv;

	CHECK(kvd_start(name, "", &d));

	/* One process writes and exits; another reads. */
	CHECK(run_kv(name, "put greeting \"Message from the first process.\"",
	         NULL, 0) == 0);
	CHECK(outlen == 0 && err[0] == '\0');
	CHECK(run_kv(name, "get greeting", NULL, 0) == 0);
	/* Exactly the bytes: no newline, as stdout is not a terminal. */
	CHECK(outlen == strlen(ascii) && memcmp(out, ascii, outlen) == 0);
	if (outlen != strlen(ascii) || memcmp(out, ascii, outlen) != 0)
		fprintf(stderr, "kv get printed %zu bytes: \"%s\"\n", outlen,
		        out);

	CHECK(run_kv(name, "put umsg", utf8, strlen(utf8)) == 0);
	CHECK(run_kv(name, "get umsg", NULL, 0) == 0);
	CHECK(outlen == strlen(utf8) && memcmp(out, utf8, outlen) == 0);
	if (outlen != strlen(utf8) || memcmp(out, utf8, outlen) != 0)
		fprintf(stderr, "kv get printed %zu bytes, want %zu\n", outlen,
		        strlen(utf8));

	/* A read-only attach reads every key but cannot write. */
	char buf[256];
	size_t vlen = 0;
	CHECK_KV(KV_OK, kv_open(name, KV_RDONLY, &kv));
	CHECK_KV(KV_OK, kv_get(kv, "umsg", 4, buf, sizeof buf, &vlen));
	CHECK(vlen == strlen(utf8) && memcmp(buf, utf8, vlen) == 0);
	CHECK_KV(KV_ERDONLY, kv_put(kv, "greeting", 8, "x", 1, NULL));
	CHECK_KV(KV_ERDONLY, kv_del(kv, "greeting", 8));
	struct kv_stats st;
	CHECK_KV(KV_OK, kv_stats(kv, &st));
	CHECK(st.daemon_pid == d.pi.dwProcessId);
	kv_close(kv);
	CHECK(run_kv(name, "get greeting", NULL, 0) == 0 &&
	      outlen == strlen(ascii));

	/* A second kvd.exe is refused, naming the first one's pid. */
	char args[256];
	snprintf(args, sizeof args, "-s %s", name);
	CHECK(kvd_refused(args) == 2);
	snprintf(want, sizeof want, "kvd: store '%s': already served by kvd "
	         "pid %lu", name, (unsigned long)d.pi.dwProcessId);
	CHECK(has(err, want));
	CHECK(one_line(err, "kvd: "));

	/* kv.exe's exit codes: 0, 1 for a key not found, 2 for errors. */
	CHECK(run_kv(name, "get nokey", NULL, 0) == 1);
	CHECK(outlen == 0 && one_line(err, "kv: get nokey: "));
	CHECK(run_kv(name, "del nokey", NULL, 0) == 1);
	CHECK(run_kv(name, "del greeting", NULL, 0) == 0);
	CHECK(run_kv(name, "get greeting", NULL, 0) == 1);
	CHECK(run_kv(name, "frobnicate", NULL, 0) == 2);
	CHECK(one_line(err, "kv: "));
	CHECK(run_kv(name, "put", NULL, 0) == 2);
	CHECK(one_line(err, "kv: "));
	CHECK(run_kv("w.none.of.these", "get greeting", NULL, 0) == 2);
	CHECK(one_line(err, "kv: "));
	CHECK(run_kv(name, "--version", NULL, 0) == 0 && outlen > 0);

	/* Still served by the first. */
	CHECK(WaitForSingleObject(d.pi.hProcess, 0) == WAIT_TIMEOUT);
	DWORD took = 0;
	CHECK(kvd_destroy_stop(name, &d, &took) == 0);
	CHECK(has(err, "was destroyed; stopping"));
	CHECK(took < 2000);
	printf("kvd.exe stopped %lu ms after kv destroy\n",
	       (unsigned long)took);
}

/* kvd.exe refuses bad options with one clear line and exit 2, and makes
 * no store doing so. */
static void kvd_options(void)
{
	static const struct {
		const char *args, *want;
	} bad[] = {
		{"-d", "kvd: -d: not available on Windows"},
		{"--daemon", "service manager"},
		{"--group users", "kvd: --group: not available on Windows"},
		{"--size 0", "kvd: --size '0': must be greater than zero"},
		{"--size 12Q", "kvd: --size '12Q': not a size"},
		{"--mode 0666", "kvd: --mode '0666': world-writable stores are "
		                "refused"},
		{"--max-value 1025M", "kvd: --max-value '1025M': larger than"},
		{"--bogus", "kvd: --bogus: unknown option"},
		{"--size", "kvd: --size: option needs an argument"},
		{"extra", "kvd: extra: unexpected argument"},
		{"-s bad!name", "kvd: store 'bad!name': "},
	};
	const char *name = wt_store("opts");
	char args[256];
	kv_t *kv;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(args, sizeof args, "-s %s %s", name, bad[i].args);
		CHECK(kvd_refused(args) == 2);
		CHECK(outlen == 0);
		CHECK(has(err, bad[i].want) && one_line(err, "kvd: "));
	}
	CHECK_KV(KV_ENOSTORE, kv_open(name, KV_RDONLY, &kv));

	CHECK(kvd_refused("--help") == 0);
	CHECK(strncmp(out, "Usage: kvd", 10) == 0 && err[0] == '\0');
	CHECK(has(out, "service manager"));
	CHECK(kvd_refused("--version") == 0);
	CHECK(strncmp(out, "kvd ", 4) == 0);
}

/* Ctrl-C (and Ctrl-Break, where it can be sent) stop kvd.exe cleanly; a
 * client holding the store keeps it for the next kvd.exe, which adopts it
 * with its data. */
static void stop_and_adopt(void)
{
	const char *name = wt_store("stop");
	char pidfile[MAX_PATH], dir[MAX_PATH], args[MAX_PATH + 64], buf[64];
	struct wt_proc d;
	kv_t *kv = NULL;

	GetTempPathA(sizeof dir, dir);
	snprintf(pidfile, sizeof pidfile, "%skvd.%s.pid", dir, name);
	snprintf(args, sizeof args, "--pidfile \"%s\"", pidfile);
	CHECK(kvd_start(name, args, &d));
	CHECK(run_kv(name, "put kept \"through a restart\"", NULL, 0) == 0);
	/* kvd writes its pid file just after the log line kvd_start waits
	 * for: give it a moment. */
	for (int i = 0; i < 500; i++) {
		if (wt_slurp(pidfile, buf, sizeof buf) > 0 &&
		    strchr(buf, '\n') != NULL)
			break;
		Sleep(10);
	}
	CHECK(strtoul(buf, NULL, 10) == d.pi.dwProcessId);

	/* This process keeps the section alive across the restart. */
	CHECK_KV(KV_OK, kv_open(name, KV_RDWR, &kv));

	CHECK(send_ctrl(&d, CTRL_C_EVENT));
	CHECK(wt_finish(&d, 10000, NULL, 0, NULL, err, sizeof err) == 0);
	CHECK(has(err, "Ctrl-C: stopping"));
	CHECK(has(err, "stopped; store"));
	CHECK(GetFileAttributesA(pidfile) == INVALID_FILE_ATTRIBUTES);

	/* The client still works, and the next kvd.exe adopts the store. */
	char v[64];
	size_t vlen = 0;
	CHECK_KV(KV_OK, kv_get(kv, "kept", 4, v, sizeof v, &vlen));
	CHECK(kvd_start(name, "", &d));
	wt_slurp(d.err, err, sizeof err);
	CHECK(has(err, "adopted store"));
	CHECK(run_kv(name, "get kept", NULL, 0) == 0 &&
	      outlen == strlen("through a restart"));
	kv_close(kv);

	/* Ctrl-Break: Wine's GenerateConsoleCtrlEvent knows only Ctrl-C. */
	if (send_ctrl(&d, CTRL_BREAK_EVENT)) {
		CHECK(wt_finish(&d, 10000, NULL, 0, NULL, err, sizeof err) == 0);
		CHECK(has(err, "Ctrl-Break: stopping"));
	} else {
		printf("Ctrl-Break: not sent here (Wine generates only "
		       "CTRL_C_EVENT); stopping with Ctrl-C\n");
		CHECK(send_ctrl(&d, CTRL_C_EVENT));
		CHECK(wt_finish(&d, 10000, NULL, 0, NULL, err, sizeof err) == 0);
		CHECK(has(err, "Ctrl-C: stopping"));
	}
	/* No handle is left: the section is gone with the last one. */
	CHECK_KV(KV_ENOSTORE, kv_open(name, KV_RDONLY, &kv));
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: test_win_cli KVD.EXE KV.EXE\n");
		return 2;
	}
	kvd_exe = argv[1];
	kv_exe = argv[2];
	/* This process sends Ctrl-C to kvd.exe's console, which it shares
	 * for that moment; it must not stop itself. A handler, not
	 * SetConsoleCtrlHandler(NULL, TRUE): that "ignore Ctrl-C" is
	 * inherited, and a kvd.exe that inherits it does not get Ctrl-C under
	 * Wine 8, though it asks for it back (SetConsoleCtrlHandler(NULL,
	 * FALSE), which on Windows restores it). */
	SetConsoleCtrlHandler(ignore_ctrl, TRUE);
	DWORD t0 = GetTickCount();
	served_store();
	kvd_options();
	stop_and_adopt();
	printf("test_win_cli: %lu ms\n", (unsigned long)(GetTickCount() - t0));
	return wt_report("test_win_cli");
}
