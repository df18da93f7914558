/*
 * test_win_procs.c - libkv on Windows across processes:
 *
 *   - the classic two-program example: one process creates the store
 *     (the named section Local\kv.NAME) and writes a message, a separate
 *     process opens it by name and prints exactly those bytes (an ASCII
 *     and a UTF-8 message);
 *   - a writer process terminated (TerminateProcess) while it holds the
 *     writer lock: the next writer gets the abandoned mutex, recovers, and
 *     every acknowledged put is readable;
 *   - several reader and writer processes at once, with values that carry
 *     their key and a checksum, so a torn or foreign value is seen.
 *
 * Child roles (argv[1]): server STORE KEY MESSAGE, client STORE KEY,
 * holder STORE, writer STORE ID N, reader STORE N.
 */
#include <stdint.h>

#include "kv_internal.h"
#include "wtest.h"

/* Messages travel to the server in hex: a command line goes through the
 * ANSI code page, which need not carry UTF-8 bytes unchanged. */
static void unhex(const char *h, char *out, size_t cap)
{
	size_t n = 0;
	for (; h[0] && h[1] && n + 1 < cap; h += 2) {
		unsigned b;
		sscanf(h, "%2x", &b);
		out[n++] = (char)b;
	}
	out[n] = '\0';
}

static int server(const char *name, const char *key, const char *hex)
{
	kv_t *kv;
	char msg[1024];
	unhex(hex, msg, sizeof msg);
	struct kv_options o = {.size = 4u << 20};
	if (kv_create(name, &o, &kv) != KV_OK ||
	    kv_put(kv, key, strlen(key), msg, strlen(msg), NULL) != KV_OK)
		return 2;
	printf("ready\n");
	fflush(stdout);
	/* The section lives while a handle does: hold it until told. */
	char line[16];
	if (fgets(line, sizeof line, stdin) == NULL)
		Sleep(5000);
	kv_close(kv);
	return 0;
}

static int client(const char *name, const char *key)
{
	kv_t *kv;
	char buf[4096];
	size_t vlen;
	if (kv_open(name, KV_RDONLY, &kv) != KV_OK)
		return 2;
	int rc = kv_get(kv, key, strlen(key), buf, sizeof buf, &vlen);
	kv_close(kv);
	if (rc != KV_OK)
		return rc == KV_ENOTFOUND ? 1 : 2;
	fwrite(buf, 1, vlen, stdout);
	fputc('\n', stdout);
	return 0;
}

static int holder(const char *name)
{
	kv_t *kv;
	if (kv_open(name, KV_RDWR, &kv) != KV_OK || kv__lock(kv) != KV_OK)
		return 2;
	printf("holding\n");
	fflush(stdout);
	Sleep(60000); /* until terminated */
	return 0;
}

static uint32_t sum(const char *p, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 16777619u;
	return h;
}

/* "K<key> R<round> <filler>#<checksum of what precedes>" */
static size_t make_value(const char *key, unsigned round, char *v, size_t cap)
{
	int n = snprintf(v, cap, "K%s R%u ", key, round);
	size_t len = (size_t)n + round % 300;
	for (size_t i = (size_t)n; i < len; i++)
		v[i] = (char)('a' + i % 26);
	len += (size_t)snprintf(v + len, cap - len, "#%08x", sum(v, len));
	return len;
}

static bool value_ok(const char *key, const char *v, size_t n)
{
	char want[64];
	int p = snprintf(want, sizeof want, "K%s R", key);
	if (n < 10 || memcmp(v, want, (size_t)p) != 0 || v[n - 9] != '#')
		return false;
	char s[16];
	snprintf(s, sizeof s, "%08x", sum(v, n - 9));
	return memcmp(v + n - 8, s, 8) == 0;
}

static int writer(const char *name, int id, int n)
{
	kv_t *kv;
	char k[32], v[512];
	if (kv_open(name, KV_RDWR, &kv) != KV_OK)
		return 2;
	int bad = 0;
	for (int r = 0; r < n; r++) {
		snprintf(k, sizeof k, "w%d.k%d", id, r % 50);
		size_t len = make_value(k, (unsigned)r, v, sizeof v);
		bad += kv_put(kv, k, strlen(k), v, len, NULL) != KV_OK;
	}
	kv_close(kv);
	return bad == 0 ? 0 : 3;
}

static int reader(const char *name, int n)
{
	kv_t *kv;
	char k[32], v[512];
	size_t vlen;
	if (kv_open(name, KV_RDONLY, &kv) != KV_OK)
		return 2;
	int bad = 0, hits = 0;
	for (int r = 0; r < n; r++) {
		snprintf(k, sizeof k, "w%d.k%d", r % 3, r % 50);
		int rc = kv_get(kv, k, strlen(k), v, sizeof v, &vlen);
		if (rc == KV_OK) {
			hits++;
			bad += !value_ok(k, v, vlen);
		} else if (rc != KV_ENOTFOUND) {
			bad++;
		}
	}
	kv_close(kv);
	printf("hits %d\n", hits);
	return bad == 0 ? 0 : 3;
}

static void classic(const char *msg)
{
	const char *name = wt_store("classic");
	struct wt_child s, c;
	char args[512], line[4096];

	char hex[1024];
	for (size_t i = 0; msg[i] && 2 * i + 3 < sizeof hex; i++)
		snprintf(hex + 2 * i, 3, "%02x", (unsigned char)msg[i]);
	snprintf(args, sizeof args, "server %s greeting %s", name, hex);
	CHECK(wt_spawn(args, &s) == 0);
	wt_line(&s, line, sizeof line);
	CHECK(strcmp(line, "ready") == 0);
	snprintf(args, sizeof args, "client %s greeting", name);
	CHECK(wt_spawn(args, &c) == 0);
	wt_line(&c, line, sizeof line);
	CHECK(wt_wait(&c, 30000) == 0);
	CHECK(strcmp(line, msg) == 0);
	if (strcmp(line, msg) != 0)
		fprintf(stderr, "client printed \"%s\"\n", line);
	TerminateProcess(s.pi.hProcess, 0);
	wt_wait(&s, 10000);
	/* With the server gone, no handle is left: the section is gone. */
	kv_t *kv;
	CHECK_KV(KV_ENOSTORE, kv_open(name, KV_RDONLY, &kv));
}

static void terminated_writer(void)
{
	const char *name = wt_store("term");
	kv_t *kv;
	struct wt_child h;
	char args[256], line[64], v[512], got[512];
	size_t vlen;

	CHECK_KV(KV_OK, kv_create(name, NULL, &kv));
	for (unsigned i = 0; i < 200; i++) {
		char k[32];
		snprintf(k, sizeof k, "acked.%u", i);
		size_t len = make_value(k, i, v, sizeof v);
		CHECK_KV(KV_OK, kv_put(kv, k, strlen(k), v, len, NULL));
	}
	snprintf(args, sizeof args, "holder %s", name);
	CHECK(wt_spawn(args, &h) == 0);
	wt_line(&h, line, sizeof line);
	CHECK(strcmp(line, "holding") == 0);
	/* Held by a live process: a put waits its bound and says busy. */
	CHECK_KV(KV_EBUSY, kv_put(kv, "x", 1, "y", 1, NULL));
	TerminateProcess(h.pi.hProcess, 9);
	wt_wait(&h, 10000);
	struct kv_stats before, after;
	CHECK_KV(KV_OK, kv_stats(kv, &before));
	CHECK_KV(KV_OK, kv_put(kv, "x", 1, "y", 1, NULL));
	CHECK_KV(KV_OK, kv_stats(kv, &after));
	CHECK(after.recoveries == before.recoveries + 1);
	unsigned bad = 0;
	for (unsigned i = 0; i < 200; i++) {
		char k[32];
		snprintf(k, sizeof k, "acked.%u", i);
		bad += kv_get(kv, k, strlen(k), got, sizeof got, &vlen) != KV_OK ||
		       !value_ok(k, got, vlen);
	}
	CHECK(bad == 0);
	CHECK_KV(KV_OK, kv_check(kv, NULL, NULL));
	kv_destroy(name);
	kv_close(kv);
}

static void readers_and_writers(void)
{
	const char *name = wt_store("rw");
	kv_t *kv;
	struct wt_child w[3], r[2];
	char args[256], line[64];

	CHECK_KV(KV_OK, kv_create(name, NULL, &kv));
	for (int i = 0; i < 3; i++) {
		snprintf(args, sizeof args, "writer %s %d 3000", name, i);
		CHECK(wt_spawn(args, &w[i]) == 0);
	}
	for (int i = 0; i < 2; i++) {
		snprintf(args, sizeof args, "reader %s 20000", name);
		CHECK(wt_spawn(args, &r[i]) == 0);
	}
	for (int i = 0; i < 2; i++) {
		wt_line(&r[i], line, sizeof line);
		CHECK(wt_wait(&r[i], 60000) == 0);
	}
	for (int i = 0; i < 3; i++)
		CHECK(wt_wait(&w[i], 60000) == 0);
	/* Every key's last value is the last round its writer put. */
	for (int id = 0; id < 3; id++)
		for (int k = 0; k < 50; k++) {
			char key[32], v[512], want[512];
			size_t vlen;
			snprintf(key, sizeof key, "w%d.k%d", id, k);
			CHECK_KV(KV_OK, kv_get(kv, key, strlen(key), v, sizeof v,
			                       &vlen));
			size_t len = make_value(key, (unsigned)(2950 + k), want,
			                        sizeof want);
			CHECK(vlen == len && memcmp(v, want, len) == 0);
		}
	CHECK_KV(KV_OK, kv_check(kv, NULL, NULL));
	kv_destroy(name);
	kv_close(kv);
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "server") == 0)
		return server(argv[2], argv[3], argv[4]);
	if (argc == 4 && strcmp(argv[1], "client") == 0)
		return client(argv[2], argv[3]);
	if (argc == 3 && strcmp(argv[1], "holder") == 0)
		return holder(argv[2]);
	if (argc == 5 && strcmp(argv[1], "writer") == 0)
		return writer(argv[2], atoi(argv[3]), atoi(argv[4]));
	if (argc == 4 && strcmp(argv[1], "reader") == 0)
		return reader(argv[2], atoi(argv[3]));
	classic("Message from the first process.");
	classic("Grüße aus dem ersten Prozess: \xe2\x9c\x93");
	terminated_writer();
	readers_and_writers();
	return wt_report("test_win_procs");
}
