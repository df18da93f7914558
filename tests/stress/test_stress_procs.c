/*
 * test_stress_procs.c - reader and writer processes hammer one store.
 *
 * W writer processes and R reader processes (plus one reader on a
 * KV_RDONLY handle), each forked and attached with its own kv_open, run
 * the shared workload (workload.c) for KV_STRESS_SECONDS (default 3) over
 * ~2000 shared keys and a private key range per writer. Every value read
 * is verified (checksum, key id, length, owner, no going back in time);
 * every status a writer gets on its own keys is checked against what it
 * last had acknowledged. At the end each writer writes its record of its
 * private keys to a file, and the parent, once every child has exited 0,
 * checks that each private key reads back exactly as last acknowledged,
 * and that kv_check (on a read-write handle, so under the lock) passes.
 *
 * Meanwhile the parent runs kv_check (under the lock) every 250 ms, and
 * kvd serves the store (its tick sweeps expired keys under the lock) and
 * must stop cleanly at the end.
 *
 * Environment: KV_STRESS_SECONDS (3), KV_STRESS_READERS (3),
 * KV_STRESS_WRITERS (2), KV_STRESS_SEED, KV_STRESS_KVD (1; 0: no kvd),
 * KV_STRESS_STORE_MB (64), KV_STRESS_MAX_ITEMS, KV_STRESS_EVICT.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "workload.h"

#define MAXR 16
#define MAXW 16
#define NSHARED 2000
#define NPRIV 128
#define REC_MAGIC 0x52454353u
#define CHECK_MS 250 /* kv_check while the workload runs */

struct ctl {
	_Atomic int stop;
	struct sw_rstats r[MAXR + 1];
	struct sw_wstats w[MAXW];
};

struct rec_hdr {
	uint32_t magic, writer, npriv, pad;
	uint64_t seq;
};

/* What a child needs; a copy lives in each child after fork. */
static struct {
	const char *store;
	const char *dir;
	struct sw_params p;
	struct ctl *ctl;
	uint64_t seed;
	uint64_t deadline_ns;
	uint32_t id;
	bool rdonly;
} job;

static int writer_child(void *arg)
{
	(void)arg;
	kv_t *kv = NULL;
	struct sw_writer w = {0};
	char path[512];
	int rc = kv_open(job.store, KV_RDWR, &kv);

	if (rc != KV_OK) {
		fprintf(stderr, "stress-procs: writer %u: kv_open: %s\n", job.id,
		        kv_strerror(rc));
		return 2;
	}
	w.kv = kv;
	w.p = &job.p;
	w.id = job.id;
	w.rng = job.seed ^ (0x1000u + job.id);
	w.stop = &job.ctl->stop;
	w.deadline_ns = job.deadline_ns;
	w.priv = calloc(job.p.npriv, sizeof(*w.priv));
	if (w.priv == NULL)
		return 2;
	rc = sw_writer_run(&w);
	job.ctl->w[job.id] = w.st;
	if (rc != 0) {
		atomic_store(&job.ctl->stop, 1);
		fprintf(stderr, "stress-procs: %s\n", w.err);
		return 3;
	}
	/* Hand the parent what was acknowledged, from this process's memory. */
	snprintf(path, sizeof(path), "%s/w%u.acked", job.dir, job.id);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	struct rec_hdr h = {REC_MAGIC, job.id, job.p.npriv, 0, w.seq};
	size_t n = job.p.npriv * sizeof(*w.priv);
	if (fd < 0 || write(fd, &h, sizeof(h)) != (ssize_t)sizeof(h) ||
	    write(fd, w.priv, n) != (ssize_t)n || close(fd) != 0) {
		fprintf(stderr, "stress-procs: writer %u: %s: %s\n", job.id,
		        path, strerror(errno));
		return 4;
	}
	free(w.priv);
	kv_close(kv);
	return 0;
}

static int reader_child(void *arg)
{
	(void)arg;
	kv_t *kv = NULL;
	struct sw_reader r = {0};
	int rc = kv_open(job.store, job.rdonly ? KV_RDONLY : KV_RDWR, &kv);

	if (rc != KV_OK) {
		fprintf(stderr, "stress-procs: reader %u: kv_open: %s\n", job.id,
		        kv_strerror(rc));
		return 2;
	}
	r.kv = kv;
	r.p = &job.p;
	r.id = job.id;
	r.rdonly = job.rdonly;
	r.rng = job.seed ^ (0x2000u + job.id);
	r.stop = &job.ctl->stop;
	r.deadline_ns = job.deadline_ns;
	if (sw_reader_init(&r) != 0)
		return 2;
	rc = sw_reader_run(&r);
	job.ctl->r[job.id] = r.st;
	if (rc != 0) {
		atomic_store(&job.ctl->stop, 1);
		fprintf(stderr, "stress-procs: %s\n", r.err);
		return 3;
	}
	sw_reader_fini(&r);
	kv_close(kv);
	return 0;
}

static void read_record(const char *dir, uint32_t w, struct sw_priv *priv,
                        uint32_t npriv, uint64_t *seq)
{
	char path[512];
	struct rec_hdr h;
	size_t n = npriv * sizeof(*priv);

	snprintf(path, sizeof(path), "%s/w%u.acked", dir, w);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		fail_msg("%s: %s", path, strerror(errno));
	bool ok = read(fd, &h, sizeof(h)) == (ssize_t)sizeof(h) &&
	          h.magic == REC_MAGIC && h.writer == w && h.npriv == npriv &&
	          read(fd, priv, n) == (ssize_t)n;
	close(fd);
	if (!ok)
		fail_msg("%s: short or bad record", path);
	*seq = h.seq;
}

static void report(void *ctx, const char *problem)
{
	(void)ctx;
	print_error("kv_check: %s\n", problem);
}

static void test_stress_procs(void **state)
{
	(void)state;
	uint32_t nr = (uint32_t)sw_env_u64("KV_STRESS_READERS", 3);
	uint32_t nw = (uint32_t)sw_env_u64("KV_STRESS_WRITERS", 2);
	uint64_t secs = sw_env_u64("KV_STRESS_SECONDS", 3);
	pid_t pids[MAXR + 1 + MAXW];
	const char *role[MAXR + 1 + MAXW];
	int npids = 0;

	if (nr > MAXR)
		nr = MAXR;
	if (nw < 1)
		nw = 1;
	if (nw > MAXW)
		nw = MAXW;
	job.store = h_store_name("sprocs");
	job.dir = h_tmpdir("sprocs");
	job.p = (struct sw_params){NSHARED, NPRIV, nw, (secs + 30) * 1000, false};
	job.ctl = sw_shared(sizeof(struct ctl));
	job.seed = sw_seed();
	print_message("stress-procs: %u writers, %u + 1 read-only readers, %" PRIu64
	              " s, seed %#" PRIx64 "%s\n",
	              nw, nr, secs, job.seed,
	              sw_env_u64("KV_STRESS_KVD", 1) ? ", kvd serving" : "");

	struct kv_options o = {.size = sw_store_size(), .max_value = SW_VMAX,
	                       .max_items = sw_max_items(&job.p),
	                       .flags = sw_create_flags(&job.p.evict)};
	kv_t *kv = NULL;
	int rc = kv_create(job.store, &o, &kv);
	if (rc != KV_OK)
		fail_msg("kv_create: %s", kv_strerror(rc));
	kv_close(kv);
	struct h_proc *kvd = sw_kvd(job.store);

	uint64_t t0 = sw_now_ns();
	job.deadline_ns = t0 + secs * 1000000000u;
	for (uint32_t i = 0; i < nw; i++) {
		job.id = i;
		role[npids] = "writer";
		pids[npids++] = sw_fork(writer_child, NULL);
	}
	for (uint32_t i = 0; i <= nr; i++) {
		job.id = i;
		job.rdonly = i == nr;
		role[npids] = job.rdonly ? "read-only reader" : "reader";
		pids[npids++] = sw_fork(reader_child, NULL);
	}

	/* Reap as they finish; one failure stops the others early. Meanwhile
	 * check the whole store every CHECK_MS, under the lock. */
	int status[MAXR + 1 + MAXW];
	bool done[MAXR + 1 + MAXW] = {0};
	int left = npids, bad = 0;
	uint64_t end = job.deadline_ns + 60 * 1000000000ull;
	uint64_t next_check = sw_now_ns(), checks = 0;
	char cerr[SW_ERRLEN] = "";
	int crc = KV_OK;
	kv_t *chk = NULL;
	rc = kv_open(job.store, KV_RDWR, &chk);
	if (rc != KV_OK)
		fail_msg("kv_open: %s", kv_strerror(rc));
	while (left > 0) {
		if (crc == KV_OK && sw_now_ns() >= next_check &&
		    sw_now_ns() < job.deadline_ns) {
			crc = sw_check(chk, cerr, sizeof(cerr));
			checks++;
			if (crc != KV_OK)
				atomic_store(&job.ctl->stop, 1);
			next_check = sw_now_ns() + CHECK_MS * 1000000ull;
		}
		for (int i = 0; i < npids; i++) {
			if (done[i] || !sw_poll(pids[i], &status[i]))
				continue;
			done[i] = true;
			left--;
			if (!WIFEXITED(status[i]) || WEXITSTATUS(status[i]) != 0) {
				atomic_store(&job.ctl->stop, 1);
				bad++;
			}
		}
		if (left > 0 && sw_now_ns() > end) {
			atomic_store(&job.ctl->stop, 1);
			for (int i = 0; i < npids; i++)
				if (!done[i] && !sw_wait(pids[i], 5000, &status[i]))
					print_error("%s %d did not stop: killed\n",
					            role[i], i);
			fail_msg("children still running 60 s after the deadline");
		}
		usleep(2000);
	}
	double secs_run = (double)(sw_now_ns() - t0) / 1e9;
	for (int i = 0; i < npids; i++) {
		char b[64];
		if (!WIFEXITED(status[i]) || WEXITSTATUS(status[i]) != 0)
			print_error("%s (pid %d): %s\n", role[i], (int)pids[i],
			            sw_status_str(status[i], b, sizeof(b)));
	}
	kv_close(chk);
	char kerr[SW_ERRLEN];
	if (sw_kvd_stop(kvd, kerr, sizeof(kerr)) != 0)
		fail_msg("%s", kerr);
	if (bad)
		fail_msg("%d of %d children failed (messages above)", bad, npids);
	if (crc != KV_OK)
		fail_msg("kv_check while the workload ran (check %" PRIu64
		         "): %s%s",
		         checks, kv_errname(crc), cerr);

	/* Figures. */
	struct sw_rstats rt = {0};
	struct sw_wstats wt = {0};
	for (uint32_t i = 0; i <= nr; i++) {
		struct sw_rstats *s = &job.ctl->r[i];
		print_message("  reader %u%s: %" PRIu64 " gets (%" PRIu64
		              " hits, %" PRIu64 " misses, %" PRIu64
		              " KV_ERANGE), longest %.3f ms; over 1 / 10 / 100 "
		              "ms: %" PRIu64 " / %" PRIu64 " / %" PRIu64 "\n",
		              i, i == nr ? " (read-only)" : "", s->ops, s->hits,
		              s->misses, s->erange, (double)s->max_get_ns / 1e6,
		              s->slow[0], s->slow[1], s->slow[2]);
		rt.ops += s->ops;
		rt.hits += s->hits;
		rt.misses += s->misses;
		rt.erange += s->erange;
		rt.erange_touched += s->erange_touched;
		rt.busy += s->busy;
		rt.bytes += s->bytes;
		if (s->max_get_ns > rt.max_get_ns)
			rt.max_get_ns = s->max_get_ns;
	}
	for (uint32_t i = 0; i < nw; i++) {
		struct sw_wstats *s = &job.ctl->w[i];
		wt.ops += s->ops;
		wt.puts += s->puts;
		wt.dels += s->dels;
		wt.nx += s->nx;
		wt.xx += s->xx;
		wt.ttl += s->ttl;
		wt.ttl1 += s->ttl1;
		wt.eexist += s->eexist;
		wt.enotfound += s->enotfound;
		wt.efull += s->efull;
		wt.readback += s->readback;
	}
	print_message("stress-procs: %" PRIu64 " kv_check passes while it ran\n",
	              checks);
	print_message("stress-procs: %.2f s; writers %" PRIu64 " ops (%" PRIu64
	              " puts: %" PRIu64 " NX, %" PRIu64 " XX, %" PRIu64
	              " TTL, %" PRIu64 " 1 ms TTL; %" PRIu64 " deletes; %" PRIu64
	              " read back; %" PRIu64 " EEXIST, %" PRIu64
	              " ENOTFOUND, %" PRIu64 " EFULL)\n",
	              secs_run, wt.ops, wt.puts, wt.nx, wt.xx, wt.ttl, wt.ttl1,
	              wt.dels, wt.readback, wt.eexist, wt.enotfound, wt.efull);
	print_message("stress-procs: readers %" PRIu64 " gets, %" PRIu64
	              " values verified (%.1f MiB), %" PRIu64 " misses, %" PRIu64
	              " KV_ERANGE (%" PRIu64 " with the buffer written), %" PRIu64
	              " KV_EBUSY (read-only), longest get %.3f ms\n",
	              rt.ops, rt.hits, (double)rt.bytes / 1048576.0, rt.misses,
	              rt.erange, rt.erange_touched, rt.busy,
	              (double)rt.max_get_ns / 1e6);

	/* Nothing acknowledged is lost. */
	rc = kv_open(job.store, KV_RDWR, &kv);
	if (rc != KV_OK)
		fail_msg("kv_open: %s", kv_strerror(rc));
	struct sw_vcount c = {0};
	struct sw_priv *priv = calloc(NPRIV, sizeof(*priv));
	assert_non_null(priv);
	for (uint32_t w = 0; w < nw; w++) {
		char err[SW_ERRLEN];
		uint64_t seq;
		read_record(job.dir, w, priv, NPRIV, &seq);
		if (sw_check_private(kv, &job.p, w, priv, &c, err,
		                     sizeof(err)) != 0) {
			free(priv);
			kv_close(kv);
			fail_msg("acknowledged state lost: %s", err);
		}
	}
	free(priv);
	print_message("stress-procs: private keys as last acknowledged: %" PRIu64
	              " present, %" PRIu64 " absent, %" PRIu64
	              " expired (1 ms TTL), %" PRIu64 " 1 ms TTL still there, %" PRIu64 " evicted\n",
	              c.present, c.absent, c.short_gone, c.short_kept, c.evicted);
	rc = kv_check(kv, report, NULL);
	struct kv_stats st;
	assert_int_equal(kv_stats(kv, &st), KV_OK);
	kv_close(kv);
	if (rc != KV_OK)
		fail_msg("kv_check: %s", kv_strerror(rc));
	print_message("stress-procs: kv_check OK; %" PRIu64 " items, %" PRIu64
	              " puts, %" PRIu64 " deletes, %" PRIu64
	              " expired reclaimed, %" PRIu64 " recoveries, %" PRIu64
	              " evictions (%s), %" PRIu64 " page moves, max probe %"
	              PRIu64 " of %" PRIu64 " buckets\n",
	              st.items, st.puts, st.deletes, st.expired, st.recoveries,
	              st.evictions, st.evict ? "evicts" : "does not evict",
	              st.page_moves, st.max_probe, st.buckets);
	munmap(job.ctl, sizeof(struct ctl));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_stress_procs, sw_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
