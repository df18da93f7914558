/*
 * team.c - worker processes that start together and report back.
 *
 * How a run goes
 * --------------
 * bench_team_create() maps one shared anonymous region: a small header
 * (the start barrier and the stop flag), then one block per member holding
 * its struct bench_member and its latency samples. The mapping is
 * inherited by fork(), at the same address, so children write their
 * results where the parent reads them; pages are touched only when used,
 * so a member that samples little costs little.
 *
 * bench_team_run() forks every member. A child asks for SIGTERM should the
 * parent die (so nothing outlives a killed run by more than its own loop),
 * pins itself when it is in the foreground, runs the worker and leaves by
 * _exit(). The worker builds its state, then calls bench_team_start(),
 * which counts it ready and waits for `go`. Once all are ready the parent
 * sets `go`, waits for the foreground, sets `stop` for the background and
 * waits for it too. A member that dies or fails before it is ready calls
 * the run off: `go` becomes -1 and the others leave at the barrier.
 *
 * The barrier polls every 50 us rather than blocking on a futex: the
 * members start within that of each other, a few parts per 100 000 of a
 * 2-second loop, and nothing here needs more than C11 atomics.
 *
 * The machine may be shared (other sessions' builds and tests on the same
 * two cores). Each member's CPU time over the loop says whether it had
 * its core; bench_wait_quiet() lets a caller wait for idle CPUs before it
 * measures a contended row again.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define HDR_BYTES 4096u
#define READY_TIMEOUT_NS (300ull * 1000000000ull) /* set-up of a member */

struct team_hdr {
	_Atomic unsigned ready; /* members past their set-up */
	_Atomic int go;         /* 0 wait, 1 start, -1 called off */
	_Atomic int stop;       /* background: the foreground is done */
};

struct bench_team {
	struct team_hdr *hdr; /* in the shared mapping */
	uint8_t *base;
	size_t bytes;
	size_t stride;        /* bytes per member block */
	unsigned n;           /* members the mapping has room for */
	unsigned nrun;        /* members of the last run */
};

static size_t member_hdr_bytes(void)
{
	return (sizeof(struct bench_member) + 63u) / 64u * 64u;
}

static struct bench_member *member(const struct bench_team *t, unsigned i)
{
	return (struct bench_member *)(void *)(t->base + HDR_BYTES +
	                                       (size_t)i * t->stride);
}

static uint64_t *samples_of(const struct bench_team *t, unsigned i)
{
	return (uint64_t *)(void *)((uint8_t *)member(t, i) +
	                            member_hdr_bytes());
}

struct bench_team *bench_team_create(unsigned nmembers)
{
	struct bench_team *t = calloc(1, sizeof *t);
	if (t == NULL)
		return NULL;
	t->n = nmembers;
	t->stride = member_hdr_bytes() + BENCH_SAMPLE_MAX * sizeof(uint64_t);
	t->bytes = HDR_BYTES + (size_t)nmembers * t->stride;
	void *p = mmap(NULL, t->bytes, PROT_READ | PROT_WRITE,
	               MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		free(t);
		return NULL;
	}
	t->base = p;
	t->hdr = p;
	return t;
}

void bench_team_destroy(struct bench_team *t)
{
	if (t == NULL)
		return;
	munmap(t->base, t->bytes);
	free(t);
}

/* The member this process is, in a child (for bench_team_start). */
static struct bench_member *self;

static void nap_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
	nanosleep(&ts, NULL);
}

/* Busy and total jiffies of all CPUs so far. */
static int cpu_jiffies(uint64_t *busy, uint64_t *total)
{
	unsigned long long v[8] = {0};
	FILE *f = fopen("/proc/stat", "r");
	if (f == NULL)
		return -1;
	int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
	               &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n < 5)
		return -1;
	*total = 0;
	for (int i = 0; i < 8; i++)
		*total += v[i];
	*busy = *total - v[3] - v[4]; /* less idle and iowait */
	return 0;
}

bool bench_wait_quiet(double max_secs, double budget_secs,
                      const volatile sig_atomic_t *stop)
{
	static double spent;
	uint64_t t0 = bench_now_ns();
	bool quiet = false;

	while (!quiet && !(stop && *stop)) {
		double waited = (double)(bench_now_ns() - t0) / 1e9;
		if (waited >= max_secs || spent + waited >= budget_secs)
			break;
		uint64_t b0, n0, b1, n1;
		if (cpu_jiffies(&b0, &n0) != 0)
			break;
		nap_us(500000);
		if (cpu_jiffies(&b1, &n1) != 0 || n1 == n0)
			break;
		quiet = (double)(b1 - b0) < 0.10 * (double)(n1 - n0);
	}
	spent += (double)(bench_now_ns() - t0) / 1e9;
	return quiet;
}

unsigned bench_ncpus(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned)CPU_COUNT(&set);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

/* The idx-th CPU (wrapping) of those this process may use, or -1. */
static int nth_cpu(unsigned idx)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) != 0 || CPU_COUNT(&set) == 0)
		return -1;
	unsigned want = idx % (unsigned)CPU_COUNT(&set), seen = 0;
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &set) && seen++ == want)
			return c;
	return -1;
}



int bench_team_start(struct bench_team *t)
{
	atomic_fetch_add(&t->hdr->ready, 1);
	for (;;) {
		int go = atomic_load(&t->hdr->go);
		if (go != 0) {
			if (self)
				self->cpu0_ns = bench_cpu_ns();
			return go > 0 ? 0 : -1;
		}
		nap_us(50);
	}
}

bool bench_team_stopping(const struct bench_team *t)
{
	return atomic_load_explicit(&t->hdr->stop, memory_order_relaxed) != 0;
}

const struct bench_member *bench_team_member(const struct bench_team *t,
                                             unsigned i)
{
	return member(t, i);
}

static void child(struct bench_team *t, unsigned i, bool fg, pid_t parent,
                  bench_worker_fn fn, void *arg)
{
	struct bench_member *m = member(t, i);

	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(3);
	m->cpu = -1;
	if (fg) {
		int cpu = nth_cpu(i);
		cpu_set_t set;
		CPU_ZERO(&set);
		if (cpu >= 0) {
			CPU_SET(cpu, &set);
			if (sched_setaffinity(0, sizeof set, &set) == 0)
				m->cpu = cpu;
		}
	}
	struct bench_samples smp = {.t = samples_of(t, i), .n = 0};
	self = m;
	int rc = fn(arg, i, t, m, &smp);
	if (m->cpu0_ns)
		m->cpu_secs = (double)(bench_cpu_ns() - m->cpu0_ns) / 1e9;
	m->nsamples = smp.n;
	m->status = rc;
	if (rc != 0 && m->err[0] == '\0')
		snprintf(m->err, sizeof m->err, "worker %u failed", i);
	_exit(rc != 0);
}

/* Wait for pid; note a failure of member i in err (first one wins). */
static int reap(pid_t pid, const struct bench_team *t, unsigned i,
                const volatile sig_atomic_t *stop, bool *killed, pid_t *pids,
                unsigned npids, char *err, size_t errlen)
{
	int ws;
	for (;;) {
		pid_t r = waitpid(pid, &ws, 0);
		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			return -1;
		if (stop && *stop && !*killed) {
			*killed = true;
			for (unsigned k = 0; k < npids; k++)
				if (pids[k] > 0)
					kill(pids[k], SIGTERM);
		}
	}
	const struct bench_member *m = member(t, i);
	if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0 && m->status == 0)
		return 0;
	if (err[0] == '\0') {
		if (m->err[0])
			snprintf(err, errlen, "member %u: %s", i, m->err);
		else if (WIFSIGNALED(ws))
			snprintf(err, errlen, "member %u killed by signal %d",
			         i, WTERMSIG(ws));
		else
			snprintf(err, errlen, "member %u exited with %d", i,
			         WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
	}
	return -1;
}

int bench_team_run(struct bench_team *t, unsigned nfg, bench_worker_fn fg,
                   void *fgarg, unsigned nbg, bench_worker_fn bg, void *bgarg,
                   const volatile sig_atomic_t *stop, char *err,
                   size_t errlen)
{
	unsigned total = nfg + nbg;
	pid_t *pids;
	int ret = 0;
	bool killed = false;

	err[0] = '\0';
	if (total == 0 || total > t->n || (nbg && bg == NULL)) {
		snprintf(err, errlen, "bad team of %u+%u members", nfg, nbg);
		return -1;
	}
	pids = calloc(total, sizeof *pids);
	if (pids == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	atomic_store(&t->hdr->ready, 0);
	atomic_store(&t->hdr->go, 0);
	atomic_store(&t->hdr->stop, 0);
	for (unsigned i = 0; i < total; i++)
		memset(member(t, i), 0, sizeof(struct bench_member));
	t->nrun = total;

	fflush(NULL); /* children leave by _exit: nothing buffered twice */
	pid_t parent = getpid();
	unsigned started = 0;
	for (unsigned i = 0; i < total; i++) {
		pid_t p = fork();
		if (p < 0) {
			snprintf(err, errlen, "fork: %s", strerror(errno));
			ret = -1;
			break;
		}
		if (p == 0)
			child(t, i, i < nfg, parent, i < nfg ? fg : bg,
			      i < nfg ? fgarg : bgarg);
		pids[i] = p;
		started++;
	}

	/* The barrier: all ready, or someone died, or we were stopped. */
	uint64_t t0 = bench_now_ns();
	while (ret == 0 && atomic_load(&t->hdr->ready) < total) {
		for (unsigned i = 0; i < started && ret == 0; i++) {
			int ws;
			if (waitpid(pids[i], &ws, WNOHANG) == pids[i]) {
				const struct bench_member *m = member(t, i);
				snprintf(err, errlen, "member %u: %s", i,
				         m->err[0] ? m->err
				                   : "exited before the start");
				pids[i] = -pids[i]; /* reaped */
				ret = -1;
			}
		}
		if (ret == 0 && stop && *stop) {
			snprintf(err, errlen, "interrupted");
			ret = -1;
		}
		if (ret == 0 && bench_now_ns() - t0 > READY_TIMEOUT_NS) {
			snprintf(err, errlen, "members not ready in time");
			ret = -1;
		}
		if (ret == 0)
			nap_us(200);
	}
	if (ret != 0) {
		atomic_store(&t->hdr->go, -1);
		atomic_store(&t->hdr->stop, 1);
		for (unsigned i = 0; i < started; i++) {
			if (pids[i] <= 0)
				continue;
			if (stop && *stop)
				kill(pids[i], SIGTERM);
			int ws;
			while (waitpid(pids[i], &ws, 0) < 0 && errno == EINTR)
				;
		}
		free(pids);
		return -1;
	}

	atomic_store(&t->hdr->go, 1);
	for (unsigned i = 0; i < nfg; i++)
		if (reap(pids[i], t, i, stop, &killed, pids, total, err,
		         errlen) != 0)
			ret = -1;
	atomic_store(&t->hdr->stop, 1);
	for (unsigned i = nfg; i < total; i++)
		if (reap(pids[i], t, i, stop, &killed, pids, total, err,
		         errlen) != 0)
			ret = -1;
	free(pids);
	if (ret == 0 && stop && *stop) {
		snprintf(err, errlen, "interrupted");
		ret = -1;
	}
	return ret;
}

void bench_team_one(const struct bench_team *t, unsigned i,
                    struct bench_result *r)
{
	bench_team_sum(t, i, 1, r);
}

void bench_team_sum(const struct bench_team *t, unsigned first, unsigned n,
                    struct bench_result *r)
{
	size_t total = 0;

	r->ops = r->errors = 0;
	r->secs = r->cpu_secs = 0;
	r->procs = n;
	for (unsigned i = first; i < first + n; i++) {
		const struct bench_member *m = member(t, i);
		r->ops += m->ops;
		r->errors += m->errors;
		r->cpu_secs += m->cpu_secs;
		if (m->secs > r->secs)
			r->secs = m->secs;
		total += m->nsamples < BENCH_SAMPLE_MAX ? m->nsamples
		                                        : BENCH_SAMPLE_MAX;
	}
	uint64_t *all = malloc((total ? total : 1) * sizeof *all);
	if (all == NULL) {
		bench_percentiles_of(NULL, 0, r);
		return;
	}
	size_t k = 0;
	for (unsigned i = first; i < first + n; i++) {
		const struct bench_member *m = member(t, i);
		size_t ns = m->nsamples < BENCH_SAMPLE_MAX ? m->nsamples
		                                           : BENCH_SAMPLE_MAX;
		memcpy(all + k, samples_of(t, i), ns * sizeof *all);
		k += ns;
	}
	bench_percentiles_of(all, k, r);
	free(all);
}
