/*
 * test_outlive.c - the store outlives its daemon: clients keep reading and
 * writing while kvd is stopped (cleanly or killed) and restarted, and the
 * new kvd adopts the store with everything written in between.
 */
#include <signal.h>

#include "harness.h"
#include "storeutil.h"
#include "kv.h"


static void put(const char *s, const char *key, const char *val)
{
	struct h_result r;

	KV(&r, s, "put", key, val);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
}

static void want_value(const char *s, const char *key, const char *val)
{
	struct h_result r;

	KV(&r, s, "get", key);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, val);
	h_result_free(&r);
}

/* Get through a handle this process keeps attached the whole time. */
static void expect_in_process(kv_t *kv, const char *key, const char *val)
{
	char buf[64];
	size_t n = 0;
	int rc = kv_get(kv, key, strlen(key), buf, sizeof(buf), &n);

	if (rc != KV_OK)
		fail_msg("kv_get %s: %s", key, kv_strerror(rc));
	assert_int_equal(n, strlen(val));
	assert_memory_equal(buf, val, n);
}

static long daemon_pid(kv_t *kv)
{
	struct kv_stats st;

	assert_int_equal(kv_stats(kv, &st), KV_OK);
	return (long)st.daemon_pid;
}

static void outlive(int sig, const char *tag)
{
	const char *s = h_store_name(tag);
	struct h_proc *p;
	struct h_result r;
	kv_t *kv = NULL;

	p = h_kvd(s, "--size", "4M", NULL);
	put(s, "before", "1");
	assert_int_equal(kv_open(s, KV_RDONLY, &kv), KV_OK);
	expect_in_process(kv, "before", "1");

	assert_true(h_stop(p, sig, H_TIMEOUT_MS, &r));
	if (sig == SIGKILL)
		assert_int_equal(r.sig, SIGKILL);
	else
		H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);

	/* However kvd went, the store no longer names a daemon. */
	assert_int_equal(daemon_pid(kv), 0);

	/* No daemon: clients go on reading and writing. */
	want_value(s, "before", "1");
	expect_in_process(kv, "before", "1");
	put(s, "between", "2");
	want_value(s, "between", "2");
	expect_in_process(kv, "between", "2");

	/* A new kvd adopts it all, and the attached handle never noticed. */
	p = h_kvd(s, "--size", "4M", NULL);
	assert_int_equal(daemon_pid(kv), p->pid);
	want_value(s, "before", "1");
	want_value(s, "between", "2");
	put(s, "after", "3");
	expect_in_process(kv, "after", "3");
	expect_in_process(kv, "before", "1");

	KV(&r, s, "check");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	kv_close(kv);
}

static void test_outlive_sigterm(void **state)
{
	(void)state;
	outlive(SIGTERM, "outlive-term");
}

/* A kvd that dies without cleaning up (SIGKILL) leaves the store usable
 * and does not block the next kvd. */
static void test_outlive_sigkill(void **state)
{
	(void)state;
	outlive(SIGKILL, "outlive-kill");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_outlive_sigterm, h_teardown),
		cmocka_unit_test_teardown(test_outlive_sigkill, h_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
