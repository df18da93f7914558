/*
 * test_huge.c - kvd --huge-pages: a store backed by 2 MiB pages of tmpfs,
 * and a clear refusal, never a SIGBUS, where the system gives none.
 *
 * The test needs to choose how /dev/shm is mounted, so it runs in a mount
 * namespace of its own (root only) with a private tmpfs over /dev/shm:
 * kvd and kv, its children, see that one and the machine's stays as it
 * was. Where that cannot be done (not root, no CAP_SYS_ADMIN, a kernel
 * without transparent huge pages) the whole file is skipped (exit 77)
 * with the reason.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "harness.h"
#include "kv.h"

#define HUGE (2u * 1024u * 1024u)

static const char *why_not; /* set when the tests cannot run here */

static bool shm_mount(unsigned long flags, const char *options)
{
	return mount("tmpfs", "/dev/shm", "tmpfs", flags, options) == 0;
}

static void setup_namespace(void)
{
	if (geteuid() != 0) {
		why_not = "not root";
		return;
	}
	if (access("/sys/kernel/mm/transparent_hugepage", F_OK) != 0) {
		why_not = "the kernel has no transparent huge pages";
		return;
	}
	if (unshare(CLONE_NEWNS) != 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
		why_not = "cannot make a mount namespace";
		return;
	}
	if (!shm_mount(MS_NOSUID | MS_NODEV,
	               "size=256m,mode=1777,huge=advise"))
		why_not = "cannot mount a tmpfs on /dev/shm";
}

/* Remount the private /dev/shm with options. */
static void remount(const char *options)
{
	if (!shm_mount(MS_REMOUNT | MS_NOSUID | MS_NODEV, options))
		fail_msg("remount /dev/shm %s: %s", options,
		         strerror(errno));
}

/* The store's kv_stats, through a handle of this process. */
static struct kv_stats stats_of(const char *s)
{
	struct kv_stats st;
	kv_t *kv = NULL;

	assert_int_equal(kv_open(s, KV_RDONLY | KV_NOWARM, &kv), KV_OK);
	assert_int_equal(kv_stats(kv, &st), KV_OK);
	kv_close(kv);
	return st;
}

static uint64_t mem_page_size(const char *s)
{
	return stats_of(s).mem_page_size;
}

static uint64_t map_size(const char *s)
{
	return stats_of(s).map_size;
}

/* The store is gone: no object, and kv says so. */
static void assert_no_store(const char *s)
{
	struct h_result r;

	if (access(h_shm_path(s), F_OK) == 0)
		fail_msg("a refused create left %s behind", h_shm_path(s));
	h_kv(&r, s, "stats", NULL);
	H_ASSERT_EXIT(&r, 2);
	H_ASSERT_ERR_HAS(&r, "does not exist");
	h_result_free(&r);
}

/* kvd --huge-pages makes a store that every process maps with 2 MiB
 * pages; kv and libkv use it as any other; the size is whole huge
 * pages. */
static void test_huge_store(void **state)
{
	const char *s = h_store_name("huge");
	struct h_result r;
	struct h_proc *p;

	(void)state;
	remount("size=256m,huge=advise");
	p = h_kvd(s, "--huge-pages", "--size", "11M", NULL);
	/* Rounded up to 12 MiB: a last partial huge page would be small. */
	assert_int_equal(map_size(s), 12u * 1024 * 1024);

	h_kv(&r, s, "put", "k", "huge value", NULL);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	h_kv(&r, s, "get", "k", NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, "huge value");
	h_result_free(&r);

	/* Another process (this one, attaching anew) maps it huge too. */
	assert_int_equal(mem_page_size(s), HUGE);
	h_kv(&r, s, "stats", NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "mem_page_size      2.0 MiB");
	h_result_free(&r);

	assert_true(h_stop(p, SIGTERM, H_TIMEOUT_MS, &r));
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_ERR_HAS(&r, ", 2 MiB huge pages");
	h_result_free(&r);

	/* Adopted again, with or without the option, it keeps its pages. */
	p = h_kvd(s, "--huge-pages", "--size", "11M", NULL);
	assert_true(h_stop(p, SIGTERM, H_TIMEOUT_MS, &r));
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_ERR_HAS(&r, "adopted store");
	H_ASSERT_ERR_HAS(&r, ", 2 MiB huge pages");
	if (strstr(r.err, "--size") != NULL || strstr(r.err, "warn") != NULL)
		fail_msg("restarting with the same options warned:\n%s",
		         r.err);
	h_result_free(&r);
	h_kv(&r, s, "check", NULL);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
}

/* Without the option a store is backed by small pages, even where the
 * mount would give huge ones to those that ask; --huge-pages on such a
 * store, adopted, says it is kept as it is. */
static void test_small_store(void **state)
{
	const char *s = h_store_name("small");
	struct h_result r;
	struct h_proc *p;

	(void)state;
	remount("size=256m,huge=advise");
	p = h_kvd(s, "--size", "8M", NULL);
	assert_int_equal(mem_page_size(s), (uint64_t)sysconf(_SC_PAGESIZE));
	h_kv(&r, s, "stats", NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "mem_page_size      4.0 KiB");
	h_result_free(&r);
	assert_true(h_stop(p, SIGTERM, H_TIMEOUT_MS, &r));
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);

	p = h_kvd(s, "--huge-pages", NULL);
	assert_true(h_stop(p, SIGTERM, H_TIMEOUT_MS, &r));
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_ERR_HAS(&r, "is not backed by huge pages: keeping it");
	h_result_free(&r);
	assert_int_equal(mem_page_size(s), (uint64_t)sysconf(_SC_PAGESIZE));
}

/* A mount that gives no huge pages: kvd refuses, names the setting, and
 * leaves nothing behind. So does a file-backed store. */
static void test_refused(void **state)
{
	const char *s = h_store_name("refused");
	char path[512];
	struct h_result r;

	(void)state;
	remount("size=256m,huge=never");
	h_kvd_run(&r, s, "--huge-pages", "--size", "8M", NULL);
	H_ASSERT_EXIT(&r, 2);
	H_ASSERT_ERR_HAS(&r, "huge pages are not available");
	H_ASSERT_ERR_HAS(&r, "huge=never");
	H_ASSERT_ERR_HAS(&r, "mount -o remount,huge=advise /dev/shm");
	h_result_free(&r);
	assert_no_store(s);

	snprintf(path, sizeof path, "%s/store", h_tmpdir("hugefile"));
	h_kvd_run(&r, path, "--huge-pages", "--size", "8M", NULL);
	H_ASSERT_EXIT(&r, 2);
	H_ASSERT_ERR_HAS(&r, "this one is a file");
	h_result_free(&r);
	if (access(path, F_OK) == 0)
		fail_msg("a refused create left %s behind", path);
}

/* A tmpfs too small for the store: an error at creation, as for small
 * pages, never a SIGBUS in a client later. */
static void test_full_tmpfs(void **state)
{
	const char *s = h_store_name("full");
	struct h_result r;

	(void)state;
	remount("size=16m,huge=advise");
	h_kvd_run(&r, s, "--huge-pages", "--size", "64M", NULL);
	H_ASSERT_EXIT(&r, 2);
	H_ASSERT_ERR_HAS(&r, "no space");
	h_result_free(&r);
	assert_no_store(s);

	/* One that fits is fine. */
	h_kvd(s, "--huge-pages", "--size", "8M", NULL);
	assert_int_equal(mem_page_size(s), HUGE);
	remount("size=256m,huge=advise");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_huge_store, h_teardown),
		cmocka_unit_test_teardown(test_small_store, h_teardown),
		cmocka_unit_test_teardown(test_refused, h_teardown),
		cmocka_unit_test_teardown(test_full_tmpfs, h_teardown),
	};

	setup_namespace();
	if (why_not != NULL) {
		/* meson's "skipped", so the run's summary counts it so. */
		printf("test_huge: skipped: %s\n", why_not);
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
