/*
 * test_header.c - creating and attaching: name rules, sizes, modes, the
 * exclusive create, adoption, and a store whose header is wrong in each way
 * that has its own error: bad magic, another format version, truncation,
 * inconsistent geometry, a creator that never finished.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

static void test_names(void **state)
{
	(void)state;
	/* 64 characters is the longest name; 65 is too long. */
	static const char n64[] = "0123456789012345678901234567890123456789"
	                          "012345678901234567890123";
	static const char n65[] = "0123456789012345678901234567890123456789"
	                          "0123456789012345678901234";
	const char *good[] = {"a", "default", "A-b_c.9", "..", n64,
	                      "/tmp/some/file", "./rel/file"};
	const char *bad[] = {"", "a b", "a*b", "tab\t", "caf\xc3\xa9", n65};
	for (size_t i = 0; i < sizeof good / sizeof *good; i++)
		assert_kv(KV_OK, kv_name_check(good[i]));
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_kv(KV_ENAME, kv_name_check(bad[i]));
	assert_kv(KV_ENAME, kv_name_check(NULL));
	kv_t *kv = NULL;
	assert_kv(KV_ENAME, kv_open("a b", KV_RDONLY, &kv));
	assert_kv(KV_ENAME, kv_create("a*b", NULL, &kv));
	assert_null(kv);
}

static void test_create_options(void **state)
{
	(void)state;
	struct kv_options o = {0};
	kv_t *kv = NULL;

	const char *small = h_store_name("small");
	o.size = 64 * 1024;
	assert_kv(KV_ETOOSMALL, kv_create(small, &o, &kv));
	o.size = UINT64_C(2) << 40;
	assert_kv(KV_ETOOBIG, kv_create(h_store_name("big"), &o, &kv));
	o.size = 8 << 20;
	o.max_value = KV_MAX_VALUE_LIMIT + 1;
	assert_kv(KV_EINVAL, kv_create(h_store_name("maxv"), &o, &kv));
	o.max_value = 0;
	o.mode = 0666;
	assert_kv(KV_EINVAL, kv_create(h_store_name("world"), &o, &kv));
	o.mode = 01600;
	assert_kv(KV_EINVAL, kv_create(h_store_name("sticky"), &o, &kv));
	/* None of those left anything behind. */
	struct stat st;
	assert_int_equal(stat(h_shm_path(small), &st), -1);

	const char *name = h_store_name("mode");
	o.mode = 0640;
	assert_kv(KV_OK, kv_create(name, &o, &kv));
	assert_int_equal(stat(h_shm_path(name), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	kv_close(kv);

	name = h_store_name("defmode");
	assert_kv(KV_OK, kv_create(name, NULL, &kv));
	assert_int_equal(stat(h_shm_path(name), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	struct kv_stats s;
	assert_kv(KV_OK, kv_stats(kv, &s));
	assert_int_equal(s.map_size, 64 << 20);
	/* A sixteenth of the store, at least KV_DEFAULT_MAX_VALUE. */
	assert_int_equal(s.max_value, (64 << 20) / 16);
	kv_close(kv);
}

/* Only one creator wins; a plain create adopts the store with its data. */
static void test_exclusive_and_adopt(void **state)
{
	(void)state;
	const char *name = h_store_name("adopt");
	struct kv_options o = {.size = 8 << 20, .flags = KV_CREATE_EXCL};
	kv_t *a = NULL, *b = NULL;

	assert_kv(KV_OK, kv_create(name, &o, &a));
	assert_kv(KV_OK, u_puts(a, "kept", "yes"));
	assert_kv(KV_ESTOREEXISTS, kv_create(name, &o, &b));
	o.flags = 0;
	o.size = 32 << 20; /* the existing size wins */
	assert_kv(KV_OK, kv_create(name, &o, &b));
	u_expect_str(b, "kept", "yes");
	struct kv_stats s;
	assert_kv(KV_OK, kv_stats(b, &s));
	assert_int_equal(s.map_size, 8 << 20);
	kv_close(a);
	kv_close(b);
}

/* Make a store with one key and close it. name and path receive its name
 * and the path of its file (KV_PATH_MAX bytes each). */
static void made_store(const char *tag, char *name, char *path)
{
	kv_t *kv = u_create(tag, 8 << 20, 4096, 0);
	assert_kv(KV_OK, u_puts(kv, "k", "v"));
	snprintf(path, KV_PATH_MAX, "%s", kv__path(kv));
	snprintf(name, KV_PATH_MAX, "%s", path + strlen("/dev/shm/kv."));
	kv_close(kv);
}

static void poke(const char *path, off_t off, const void *bytes, size_t n)
{
	int fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, bytes, n, off), (ssize_t)n);
	close(fd);
}

static void test_bad_magic(void **state)
{
	(void)state;
	char name[KV_PATH_MAX], path[KV_PATH_MAX];
	made_store("magic", name, path);
	kv_t *kv = NULL;
	poke(path, 0, "NOTKVST", 8);
	assert_kv(KV_ENOTSTORE, kv_open(name, KV_RDONLY, &kv));
	assert_kv(KV_ENOTSTORE, kv_open(name, KV_RDWR, &kv));
	assert_kv(KV_ENOTSTORE, kv_create(name, NULL, &kv));
	assert_null(kv);
}

static void test_wrong_version(void **state)
{
	(void)state;
	char name[KV_PATH_MAX], path[KV_PATH_MAX];
	made_store("version", name, path);
	kv_t *kv = NULL;
	uint32_t word = KV_FORMAT_WORD + (1u << 24);
	poke(path, offsetof(struct kv_hdr, format), &word, sizeof word);
	assert_kv(KV_EVERSION, kv_open(name, KV_RDONLY, &kv));
	/* A build whose mutex has another size is refused the same way. */
	word = KV_FORMAT_WORD + (8u << 8);
	poke(path, offsetof(struct kv_hdr, format), &word, sizeof word);
	assert_kv(KV_EVERSION, kv_open(name, KV_RDWR, &kv));
	assert_null(kv);
}

static void test_truncated(void **state)
{
	(void)state;
	char name[KV_PATH_MAX], path[KV_PATH_MAX];
	made_store("trunc", name, path);
	kv_t *kv = NULL;
	assert_int_equal(truncate(path, 4 << 20), 0);
	assert_kv(KV_ETRUNCATED, kv_open(name, KV_RDONLY, &kv));
	assert_int_equal(truncate(path, 100), 0);
	assert_kv(KV_ETRUNCATED, kv_open(name, KV_RDONLY, &kv));
	assert_null(kv);
}

static void test_bad_geometry(void **state)
{
	(void)state;
	char name[KV_PATH_MAX], path[KV_PATH_MAX];
	made_store("geom", name, path);
	kv_t *kv = NULL;
	uint64_t nb = 100; /* not what the page table offset says */
	poke(path, offsetof(struct kv_hdr, nbuckets), &nb, sizeof nb);
	assert_kv(KV_ECORRUPT, kv_open(name, KV_RDONLY, &kv));
	nb = UINT64_C(1) << 40; /* larger than the map */
	poke(path, offsetof(struct kv_hdr, nbuckets), &nb, sizeof nb);
	assert_kv(KV_ECORRUPT, kv_open(name, KV_RDONLY, &kv));
	uint32_t cs = 33;
	made_store("geom2", name, path);
	poke(path, offsetof(struct kv_hdr, class_size), &cs, sizeof cs);
	assert_kv(KV_ECORRUPT, kv_open(name, KV_RDONLY, &kv));
	assert_null(kv);
}

/* An object that exists but was never initialised (its creator died
 * before publishing the magic) is "not initialised", after a bounded
 * wait, and never mapped as a store. */
static void test_not_ready(void **state)
{
	(void)state;
	const char *name = h_store_name("notready");
	char shm[128];
	snprintf(shm, sizeof shm, "/kv.%s", name);
	int fd = shm_open(shm, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	kv_t *kv = NULL;
	assert_kv(KV_ENOTREADY, kv_open(name, KV_RDONLY, &kv));
	assert_null(kv);
}

static void test_missing(void **state)
{
	(void)state;
	kv_t *kv = NULL;
	assert_kv(KV_ENOSTORE, kv_open(h_store_name("missing"), KV_RDONLY,
	                               &kv));
	assert_kv(KV_ENOSTORE, kv_destroy(h_store_name("missing")));
	assert_null(kv);
}

/* A read-only attach maps the store read-only: even a stray store through
 * a pointer faults instead of changing the store. */
static void test_rdonly_mapping(void **state)
{
	(void)state;
	kv_t *rw = u_create("rdonly", 8 << 20, 4096, 0);
	assert_kv(KV_OK, u_puts(rw, "k", "v"));
	kv_t *ro = NULL;
	const char *path = kv__path(rw);
	assert_kv(KV_OK, kv_open(path + strlen("/dev/shm/kv."), KV_RDONLY,
	                         &ro));
	u_expect_str(ro, "k", "v");
	assert_kv(KV_ERDONLY, u_puts(ro, "k", "w"));
	assert_kv(KV_ERDONLY, kv_del(ro, "k", 1));
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL);
		((volatile uint8_t *)ro->base)[ro->index_off] = 1;
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGSEGV);
	u_expect_str(ro, "k", "v");
	kv_close(ro);
	kv_close(rw);
}

/* A symbolic link planted where a file-backed store will be is never
 * followed: not to create, not to adopt, not to open. */
static void test_planted_symlink(void **state)
{
	(void)state;
	const char *dir = h_tmpdir("symlink");
	char target[KV_PATH_MAX], link[KV_PATH_MAX];
	snprintf(target, sizeof target, "%s/victim", dir);
	snprintf(link, sizeof link, "%s/store", dir);
	int fd = open(target, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "precious", 8), 8);
	close(fd);
	assert_int_equal(symlink(target, link), 0);

	kv_t *kv = NULL;
	struct kv_options o = {.size = 4 << 20, .max_value = 4096};
	assert_kv(KV_ESYMLINK, kv_create(link, &o, &kv));
	assert_kv(KV_ESYMLINK, kv_open(link, KV_RDWR, &kv));
	assert_kv(KV_ESYMLINK, kv_open(link, KV_RDONLY, &kv));
	assert_null(kv);
	/* The link's target is untouched. */
	char buf[16] = {0};
	fd = open(target, O_RDONLY);
	assert_int_equal(read(fd, buf, sizeof buf), 8);
	close(fd);
	assert_string_equal(buf, "precious");
	/* A dangling link is not followed into creating a file either. */
	assert_int_equal(unlink(target), 0);
	assert_kv(KV_ESYMLINK, kv_create(link, &o, &kv));
	struct stat st;
	assert_int_equal(stat(target, &st), -1);
}

/* A store in /dev/shm made by another user is not adopted, and one made
 * world-writable is not attached at all. */
static void test_foreign_and_world_writable(void **state)
{
	(void)state;
	kv_t *kv = u_create("foreign", 8 << 20, 4096, 0);
	char name[KV_PATH_MAX], path[KV_PATH_MAX];
	snprintf(path, sizeof path, "%s", kv__path(kv));
	snprintf(name, sizeof name, "%s", path + strlen("/dev/shm/kv."));
	kv_close(kv);
	kv = NULL;
	assert_int_equal(chmod(path, 0666), 0);
	assert_kv(KV_EWORLD, kv_open(name, KV_RDONLY, &kv));
	assert_kv(KV_EWORLD, kv_create(name, NULL, &kv));
	assert_int_equal(chmod(path, 0600), 0);
	if (geteuid() == 0) {
		assert_int_equal(chown(path, 65534, 65534), 0);
		assert_kv(KV_EOWNER, kv_create(name, NULL, &kv));
		/* Root may still open it to inspect it. */
		assert_kv(KV_OK, kv_open(name, KV_RDONLY, &kv));
		kv_close(kv);
	}
}

/* A store can be created for a group: the group-read mode then gives its
 * members read-only access. */
static void test_group(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	const char *name = h_store_name("group");
	struct kv_options o = {.size = 4 << 20, .max_value = 4096,
	                       .mode = 0640, .flags = KV_CREATE_GID,
	                       .gid = 65534};
	kv_t *kv = NULL;
	assert_kv(KV_OK, kv_create(name, &o, &kv));
	struct stat st;
	assert_int_equal(stat(h_shm_path(name), &st), 0);
	assert_int_equal(st.st_gid, 65534);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_kv(KV_OK, u_puts(kv, "k", "v"));
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* A member of the group, not the owner: read, not write. */
		kv_t *x = NULL;
		char buf[4];
		size_t n;
		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(10);
		if (kv_open(name, KV_RDONLY, &x) != KV_OK ||
		    kv_get(x, "k", 1, buf, sizeof buf, &n) != KV_OK)
			_exit(11);
		kv_close(x);
		if (kv_open(name, KV_RDWR, &x) != KV_EPERM)
			_exit(12);
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	kv_close(kv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_names, h_teardown),
		cmocka_unit_test_teardown(test_create_options, h_teardown),
		cmocka_unit_test_teardown(test_exclusive_and_adopt, h_teardown),
		cmocka_unit_test_teardown(test_bad_magic, h_teardown),
		cmocka_unit_test_teardown(test_wrong_version, h_teardown),
		cmocka_unit_test_teardown(test_truncated, h_teardown),
		cmocka_unit_test_teardown(test_bad_geometry, h_teardown),
		cmocka_unit_test_teardown(test_not_ready, h_teardown),
		cmocka_unit_test_teardown(test_missing, h_teardown),
		cmocka_unit_test_teardown(test_rdonly_mapping, h_teardown),
		cmocka_unit_test_teardown(test_planted_symlink, h_teardown),
		cmocka_unit_test_teardown(test_group, h_teardown),
		cmocka_unit_test_teardown(test_foreign_and_world_writable,
		                          h_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
