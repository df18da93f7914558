/*
 * test_corrupt.c - stores a client must refuse, each with its own error and
 * without changing a byte: a bad magic, another format version, a file cut
 * short; and stores a user may not touch: permission denied for a user
 * without access, read-only access for a user with read permission only.
 *
 * Each store is made by a real kvd, which is stopped before the bytes are
 * changed, so the only thing that looks at the bad store is the client
 * under test (and, where said, a new kvd, which must refuse it too).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "storeutil.h"


/* A store with one key, made by kvd, then kvd stopped. */
static const char *make_store(const char *tag, const char *mode)
{
	const char *s = h_store_name(tag);
	struct h_proc *p;
	struct h_result r;

	p = h_kvd(s, "--size", "4M", "--mode", mode, NULL);
	KV(&r, s, "put", "k", "value");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	assert_true(h_stop(p, SIGTERM, H_TIMEOUT_MS, &r));
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	return s;
}

static char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	char *buf;
	size_t got = 0;

	if (fd < 0 || fstat(fd, &st) != 0)
		fail_msg("%s: %s", path, strerror(errno));
	buf = h_alloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	while (got < (size_t)st.st_size) {
		ssize_t n = pread(fd, buf + got, (size_t)st.st_size - got,
		                  (off_t)got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	*len = got;
	return buf;
}

static void patch(const char *path, off_t off, const void *bytes, size_t n)
{
	int fd = open(path, O_WRONLY);

	if (fd < 0)
		fail_msg("%s: %s", path, strerror(errno));
	assert_int_equal(pwrite(fd, bytes, n, off), (ssize_t)n);
	close(fd);
}

/* The file is byte for byte what it was. */
static void assert_unchanged(const char *path, const char *before,
                             size_t before_len, const char *who)
{
	size_t len;
	char *now = slurp(path, &len);

	if (len != before_len || memcmp(now, before, len) != 0)
		fail_msg("%s changed the store file %s (%zu bytes before, %zu "
		         "after)", who, path, before_len, len);
	h_free(now);
}

/* Every client command that opens the store fails with exit 2, one "kv: "
 * line, and the message; kvd refuses it too; nothing is changed. */
static void expect_refused(const char *s, const char *why)
{
	static const char *const cmds[][4] = {
		{"get", "k", NULL},
		{"put", "k", "new", NULL},
		{"del", "k", NULL},
		{"ttl", "k", NULL},
		{"stats", NULL},
		{"check", NULL},
	};
	const char *path = h_shm_path(s);
	char saved_path[256];
	size_t len;
	char *before;
	struct h_result r;

	snprintf(saved_path, sizeof(saved_path), "%s", path);
	before = slurp(saved_path, &len);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		const char *argv[8] = {h_kv_bin(), "-s", s};
		int n = 3;

		for (int j = 0; cmds[i][j] != NULL; j++)
			argv[n++] = cmds[i][j];
		argv[n] = NULL;
		h_run(&r, argv, NULL);
		H_ASSERT_FAILS(&r, 2, "kv: ", why);
		h_result_free(&r);
		assert_unchanged(saved_path, before, len, cmds[i][0]);
	}

	/* A new kvd must not adopt it, nor "repair" it by starting over. */
	h_kvd_run(&r, s, "--size", "4M", NULL);
	H_ASSERT_EXIT(&r, 2);
	H_ASSERT_ERR_HAS(&r, "kvd: ");
	H_ASSERT_ERR_HAS(&r, why);
	h_result_free(&r);
	assert_unchanged(saved_path, before, len, "kvd");
	h_free(before);
}

static void want_value(const char *s, const char *val)
{
	struct h_result r;

	KV(&r, s, "get", "k");
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, val);
	h_result_free(&r);
}

static void peek(const char *path, off_t off, void *bytes, size_t n)
{
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		fail_msg("%s: %s", path, strerror(errno));
	assert_int_equal(pread(fd, bytes, n, off), (ssize_t)n);
	close(fd);
}

static void test_bad_magic(void **state)
{
	const char *s = make_store("magic", "0600");
	char path[256], magic[8];

	(void)state;
	snprintf(path, sizeof(path), "%s", h_shm_path(s));
	peek(path, 0, magic, sizeof(magic));
	assert_memory_equal(magic, "KVSTORE", 8);
	patch(path, 0, "NOTKVST", 8);
	expect_refused(s, "not a kv store");

	/* Put the magic back: nothing else was touched, the data is there. */
	patch(path, 0, magic, sizeof(magic));
	want_value(s, "value");
}

static void test_bad_format_word(void **state)
{
	const char *s = make_store("format", "0600");
	char path[256];
	uint32_t word, other;

	(void)state;
	snprintf(path, sizeof(path), "%s", h_shm_path(s));
	peek(path, 8, &word, sizeof(word));
	/* The next layout version (the top byte of the format word). */
	other = word + (UINT32_C(1) << 24);
	patch(path, 8, &other, sizeof(other));
	expect_refused(s, "incompatible store format version");
	/* And the way out is named, by kv and by kvd. */
	expect_refused(s, "'kv dump FILE'");
	{
		struct h_result r;
		h_kvd_run(&r, s, NULL);
		H_ASSERT_EXIT(&r, 2);
		H_ASSERT_ERR_HAS(&r, "incompatible store format version");
		H_ASSERT_ERR_HAS(&r, "'kv dump FILE'");
		h_result_free(&r);
	}

	/* Another build's mutex size or cache line: the same error. */
	other = word ^ (UINT32_C(8) << 8);
	patch(path, 8, &other, sizeof(other));
	expect_refused(s, "incompatible store format version");

	patch(path, 8, &word, sizeof(word));
	want_value(s, "value");
}

static void test_truncated(void **state)
{
	const char *s = make_store("trunc", "0600");
	char path[256];
	struct stat st;
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s", h_shm_path(s));
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(ftruncate(fd, st.st_size / 2), 0);
	close(fd);
	expect_refused(s, "store is truncated");
	assert_int_equal(stat(path, &st), 0);
}

/* A 0600 store of root's: nobody may neither read nor write it. */
static void test_permission_denied(void **state)
{
	static const char *const cmds[][4] = {
		{"get", "k", NULL},
		{"put", "k", "new", NULL},
		{"del", "k", NULL},
		{"stats", NULL},
	};
	struct h_spawn_opts o = {.as_nobody = true};
	const char *s;
	struct h_result r;

	(void)state;
	h_require_root();
	s = make_store("perm", "0600");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		const char *argv[8] = {h_kv_bin(), "-s", s};
		int n = 3;

		for (int j = 0; cmds[i][j] != NULL; j++)
			argv[n++] = cmds[i][j];
		argv[n] = NULL;
		h_run(&r, argv, &o);
		H_ASSERT_FAILS(&r, 2, "kv: ", "permission denied");
		h_result_free(&r);
	}
	want_value(s, "value");
}

/* Read permission only: gets work, every change is permission denied, and
 * the store is unchanged. */
static void check_read_only_access(const char *s)
{
	struct h_spawn_opts o = {.as_nobody = true};
	struct h_result r;

	h_kv_opts(&r, &o, s, "get", "k", NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, "value");
	h_result_free(&r);

	/* Everything that only reads works with read permission. */
	h_kv_opts(&r, &o, s, "ttl", "k", NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, "-1\n");
	h_result_free(&r);
	h_kv_opts(&r, &o, s, "stats", "--json", NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "\"items\":1,");
	h_result_free(&r);
	h_kv_opts(&r, &o, s, "check", NULL);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);

	h_kv_opts(&r, &o, s, "put", "k", "changed", NULL);
	H_ASSERT_FAILS(&r, 2, "kv: ", "permission denied");
	h_result_free(&r);
	h_kv_opts(&r, &o, s, "put", "other", "new", NULL);
	H_ASSERT_FAILS(&r, 2, "kv: ", "permission denied");
	h_result_free(&r);
	h_kv_opts(&r, &o, s, "del", "k", NULL);
	H_ASSERT_FAILS(&r, 2, "kv: ", "permission denied");
	h_result_free(&r);
	h_kv_opts(&r, &o, s, "destroy", "--yes", NULL);
	H_ASSERT_FAILS(&r, 2, "kv: ", "permission denied");
	h_result_free(&r);

	want_value(s, "value");
}

static void test_world_readable(void **state)
{
	const char *s;

	(void)state;
	h_require_root();
	s = make_store("perm644", "0644");
	check_read_only_access(s);
}

/* A read-only group is real access control: 0640, group nogroup. */
static void test_group_readable(void **state)
{
	const char *s;

	(void)state;
	h_require_root();
	s = make_store("perm640", "0640");
	assert_int_equal(chown(h_shm_path(s), 0, 65534), 0);
	check_read_only_access(s);
}

/* kvd --group gives a new store its group: with 0640 the group's members
 * (here nobody, whose group is nogroup) read it and cannot change it. */
static void test_kvd_group(void **state)
{
	const char *s = h_store_name("kvdgroup");
	struct h_proc *p;
	struct h_result r;
	struct stat st;

	(void)state;
	h_require_root();
	p = h_kvd(s, "--size", "4M", "--mode", "0640", "--group", "nogroup",
	          NULL);
	assert_int_equal(stat(h_shm_path(s), &st), 0);
	assert_int_equal(st.st_gid, 65534);
	assert_int_equal(st.st_uid, 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	KV(&r, s, "put", "k", "value");
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
	assert_true(h_stop(p, SIGTERM, H_TIMEOUT_MS, &r));
	h_result_free(&r);
	check_read_only_access(s);

	/* A group that does not exist is refused before anything is made. */
	const char *t = h_store_name("nogroup");
	h_kvd_run(&r, t, "--size", "4M", "--group", "no-such-group-kv", NULL);
	H_ASSERT_FAILS(&r, 2, "kvd: ", "no such group");
	h_result_free(&r);
	assert_int_equal(stat(h_shm_path(t), &st), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_bad_magic, h_teardown),
		cmocka_unit_test_teardown(test_bad_format_word, h_teardown),
		cmocka_unit_test_teardown(test_truncated, h_teardown),
		cmocka_unit_test_teardown(test_permission_denied, h_teardown),
		cmocka_unit_test_teardown(test_world_readable, h_teardown),
		cmocka_unit_test_teardown(test_group_readable, h_teardown),
		cmocka_unit_test_teardown(test_kvd_group, h_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
