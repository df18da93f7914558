/*
 * test_classic.c - the classic two-program example kv grew from: one
 * process creates a named mapping and writes a message, another opens it by
 * name and reads the message back. Done with the library in two small
 * programs (classic_server, classic_client: paths given as argv[1], argv[2]
 * by meson), and again with the real tools: kvd, `kv put`, `kv get`.
 */
#include <signal.h>
#include <string.h>

#include "harness.h"

static const char *server_bin;
static const char *client_bin;

static const char message[] = "Message from the first process.";
static const char utf8[] = "Gr\xc3\xbc\xc3\x9f" "e, \xe4\xb8\x96\xe7\x95\x8c "
                           "\xe2\x80\x94 \xe2\x9c\x93"; /* Grüße, 世界 — ✓ */

struct ready_ctx {
	struct h_proc *p;
	bool exited;
};

/* The server printed "ready" (or died trying). */
static bool server_ready(void *arg)
{
	struct ready_ctx *c = arg;
	size_t n;
	char *out = h_read_out(c->p, &n);
	bool ready = strstr(out, "ready\n") != NULL;

	h_free(out);
	c->exited = !h_alive(c->p->pid);
	return ready || c->exited;
}

static struct h_proc *start_server(const char *store, const char *key,
                                   const char *msg)
{
	const char *argv[] = {server_bin, store, key, msg, NULL};
	struct h_spawn_opts o = {.keep_stdin = true};
	struct ready_ctx c;
	struct h_result r;

	h_register_store(store);
	c.p = h_start(argv, &o);
	c.exited = false;
	if (!h_wait_for(server_ready, &c, H_TIMEOUT_MS) || c.exited) {
		h_stop(c.p, SIGKILL, 1000, &r);
		h_dump(&r);
		fail_msg("classic_server did not become ready");
	}
	return c.p;
}

static void run_client(struct h_result *r, const char *store,
                       const char *key)
{
	const char *argv[] = {client_bin, store, key, NULL};

	h_run(r, argv, NULL);
}

/* The message crosses from one process to the other byte for byte; the
 * server stops when its stdin closes. */
static void test_classic_message(void **state)
{
	const char *store = h_store_name("classic");
	struct h_proc *srv;
	struct h_result r;

	(void)state;
	srv = start_server(store, "msg", message);
	run_client(&r, store, "msg");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT(&r, message, strlen(message));
	assert_int_equal(r.err_len, 0);
	h_result_free(&r);

	/* A key nobody wrote is "not found", not some other bytes. */
	run_client(&r, store, "other");
	H_ASSERT_EXIT(&r, 1);
	h_result_free(&r);

	h_close_stdin(srv);
	assert_true(h_wait(srv, H_TIMEOUT_MS, &r));
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
}

/* A UTF-8 message (multi-byte characters, an em dash, a check mark) comes
 * back with exactly the same bytes; the server stops on SIGTERM. */
static void test_classic_utf8(void **state)
{
	const char *store = h_store_name("classic-utf8");
	struct h_proc *srv;
	struct h_result r;

	(void)state;
	srv = start_server(store, "gr\xc3\xbc\xc3\x9f" "e", utf8);
	run_client(&r, store, "gr\xc3\xbc\xc3\x9f" "e");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT(&r, utf8, strlen(utf8));
	h_result_free(&r);

	assert_true(h_stop(srv, SIGTERM, H_TIMEOUT_MS, &r));
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
}

/* The client outlives the server: the store stays once its creator has
 * gone, and a later reader still gets the message. */
static void test_classic_after_server_exit(void **state)
{
	const char *store = h_store_name("classic-after");
	struct h_proc *srv;
	struct h_result r;

	(void)state;
	srv = start_server(store, "msg", message);
	assert_true(h_stop(srv, SIGINT, H_TIMEOUT_MS, &r));
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);

	run_client(&r, store, "msg");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT(&r, message, strlen(message));
	h_result_free(&r);
}

/* The same scenario with the real tools: kvd serves, `kv put` writes in
 * one process, `kv get` reads in another. */
static void test_classic_with_kv(void **state)
{
	const char *store = h_store_name("classic-kv");
	struct h_result r;

	(void)state;
	h_kvd(store, "--size", "4M", NULL);

	h_kv(&r, store, "put", "msg", message, NULL);
	H_ASSERT_EXIT(&r, 0);
	assert_int_equal(r.out_len, 0);
	assert_int_equal(r.err_len, 0);
	h_result_free(&r);

	h_kv(&r, store, "get", "msg", NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT(&r, message, strlen(message));
	h_result_free(&r);

	h_kv(&r, store, "put", "utf8", utf8, NULL);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	h_kv(&r, store, "get", "utf8", NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT(&r, utf8, strlen(utf8));
	h_result_free(&r);

	/* And the library client reads what the CLI wrote. */
	run_client(&r, store, "utf8");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT(&r, utf8, strlen(utf8));
	h_result_free(&r);
}

/* What classic_server wrote, kv get reads, and the other way round. */
static void test_classic_mixed(void **state)
{
	const char *store = h_store_name("classic-mix");
	struct h_proc *srv;
	struct h_result r;

	(void)state;
	srv = start_server(store, "msg", message);
	h_kv(&r, store, "get", "msg", NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT(&r, message, strlen(message));
	h_result_free(&r);

	h_kv(&r, store, "put", "reply", utf8, NULL);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	run_client(&r, store, "reply");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT(&r, utf8, strlen(utf8));
	h_result_free(&r);

	h_close_stdin(srv);
	assert_true(h_wait(srv, H_TIMEOUT_MS, &r));
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_classic_message, h_teardown),
		cmocka_unit_test_teardown(test_classic_utf8, h_teardown),
		cmocka_unit_test_teardown(test_classic_after_server_exit,
		                          h_teardown),
		cmocka_unit_test_teardown(test_classic_with_kv, h_teardown),
		cmocka_unit_test_teardown(test_classic_mixed, h_teardown),
	};

	if (argc != 3) {
		fprintf(stderr, "usage: test_classic SERVER CLIENT\n");
		return 2;
	}
	server_bin = argv[1];
	client_bin = argv[2];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
