/*
 * peer_bench.c - peer-bench: the workloads of kv-bench against the stores
 * a user would pick instead of kv (Redis and memcached on a UNIX socket,
 * LMDB in a directory on /dev/shm), with the same keys, the same values,
 * the same timed loop and the same report, so that its CSV rows line up
 * with kv-bench's.
 *
 * How a run goes
 * --------------
 * The parent connects, empties the store, loads keys 0..N-1 once each
 * (the `load` row; each driver loads as fast as its store allows, so the
 * load rows do not compare), notes the memory the store holds, and
 * disconnects. Then, for each phase and each client count C of --clients,
 * it forks C client processes (team.c), pinned to CPU i % ncpus; each
 * connects on its own, builds its own ring of uniform random present keys,
 * warms up, waits at the start barrier and runs the phase for --seconds.
 * The servers themselves are not pinned: on a 2-core machine a client and
 * its server share the cores with everything else, which is the point.
 *
 *   get-hit      one key per request and one request per round trip
 *                (LMDB: a read transaction renewed for every get)
 *   mget-B       B keys per round trip (Redis: B pipelined GETs, or one
 *                MGET with --style mget; memcached: one multi-key get;
 *                LMDB: B gets in one renewed read transaction)
 *   put-replace  overwrite random present keys, same size, acknowledged
 *                (LMDB: one write transaction per put); one client
 *   mixed        9 get-hit then 1 put-replace, repeated; one client
 *
 * The servers are started and stopped by the caller (bench/compare.sh);
 * peer-bench only connects to them.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "peer.h"

#ifndef KV_BENCH_BUILDTYPE
#define KV_BENCH_BUILDTYPE "unknown"
#endif

#define MAX_COUNTS 16
#define MAX_CLIENTS 64
#define MAX_BATCH 256
#define CALLS_PER_CLOCK 64u /* calls between clock reads */
#define MIX_EVERY 10u

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	stop = sig;
}

static const struct peer_driver *const drivers[] = {
#ifdef PEER_REDIS
	&peer_redis,
#endif
#ifdef PEER_MEMCACHED
	&peer_memcached,
#endif
#ifdef PEER_LMDB
	&peer_lmdb,
#endif
	NULL,
};

enum phase { PH_GET, PH_MGET, PH_PUT, PH_MIXED, PH_N };
static const char *const phase_names[PH_N] = {"get-hit", "mget",
                                              "put-replace", "mixed"};

struct options {
	const struct peer_driver *drv;
	struct peer_conf conf;
	double seconds;
	unsigned clients[MAX_COUNTS], nclients;
	unsigned batch[MAX_COUNTS], nbatch;
	bool phase[PH_N];
	bool load;
	const char *csv;
	uint64_t seed;
	double min_cpu;
	bool quiet;
};

static void usage(FILE *f)
{
	fprintf(f,
	    "usage: peer-bench --system NAME --target PATH [OPTION]...\n"
	    "Run kv-bench's workloads against a peer store: load it, then\n"
	    "get-hit, batched get, put and mixed from client processes.\n"
	    "\n"
	    "  --system NAME     redis, memcached or lmdb (--list: built in)\n"
	    "  --target PATH     UNIX socket of the server (redis, memcached)\n"
	    "                    or LMDB environment directory (on /dev/shm)\n"
	    "  --keys N          keys to load (default 1000000)\n"
	    "  --key-size B      key bytes (default 12, as kv-bench)\n"
	    "  --value-size B    value bytes (default 100)\n"
	    "  --seconds S       length of each timed run (default 2)\n"
	    "  --clients LIST    client processes for get-hit and mget, e.g.\n"
	    "                    1,2 or 1-4 (default 1); put and mixed: 1\n"
	    "  --batch LIST      keys per round trip for mget (default 16)\n"
	    "  --style S         batching style (redis: pipeline or mget)\n"
	    "  --phases LIST     get-hit,mget,put-replace,mixed (default all)\n"
	    "  --no-load         use the keys already loaded\n"
	    "  --csv FILE        also write the results as CSV to FILE\n"
	    "  --seed N          RNG seed (default 1)\n"
	    "  --min-cpu PCT     in-process stores (lmdb): run again (up to 3\n"
	    "                    tries) when the clients got less than PCT %%\n"
	    "                    of their CPUs (default 0: never)\n"
	    "  --quiet           no progress on stderr\n"
	    "  --list            print the systems built in and exit\n"
	    "  --help            this text\n");
}

static const struct peer_driver *find_driver(const char *name)
{
	for (size_t i = 0; drivers[i]; i++)
		if (strcmp(drivers[i]->name, name) == 0)
			return drivers[i];
	return NULL;
}

static int parse_phases(const char *s, bool *on)
{
	for (int p = 0; p < PH_N; p++)
		on[p] = false;
	for (const char *p = s; *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		int found = -1;
		for (int k = 0; k < PH_N; k++)
			if (strlen(phase_names[k]) == len &&
			    memcmp(phase_names[k], p, len) == 0)
				found = k;
		if (found < 0) {
			fprintf(stderr, "peer-bench: unknown phase '%.*s'\n",
			        (int)len, p);
			return -1;
		}
		on[found] = true;
		p += len + (e != NULL);
	}
	return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{"system", required_argument, NULL, 'y'},
		{"target", required_argument, NULL, 'T'},
		{"keys", required_argument, NULL, 'k'},
		{"key-size", required_argument, NULL, 'K'},
		{"value-size", required_argument, NULL, 'v'},
		{"seconds", required_argument, NULL, 't'},
		{"clients", required_argument, NULL, 'n'},
		{"batch", required_argument, NULL, 'b'},
		{"style", required_argument, NULL, 'Y'},
		{"phases", required_argument, NULL, 'p'},
		{"no-load", no_argument, NULL, 'L'},
		{"csv", required_argument, NULL, 'c'},
		{"seed", required_argument, NULL, 'S'},
		{"min-cpu", required_argument, NULL, 'm'},
		{"quiet", no_argument, NULL, 'q'},
		{"list", no_argument, NULL, 'l'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *system = NULL;
	int c, n;
	uint64_t v;

	*o = (struct options){.seconds = 2, .clients = {1}, .nclients = 1,
	                      .batch = {16}, .nbatch = 1, .load = true,
	                      .seed = 1,
	                      .conf = {.keys = 1000000, .vlen = 100}};
	for (int p = 0; p < PH_N; p++)
		o->phase[p] = true;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'y':
			system = optarg;
			break;
		case 'T':
			o->conf.target = optarg;
			break;
		case 'k':
			if (bench_parse_u64(optarg, &v) || v == 0 ||
			    v > UINT32_MAX)
				goto bad;
			o->conf.keys = v;
			break;
		case 'K':
			if (bench_parse_u64(optarg, &v) || v == 0 || v > 250)
				goto bad;
			o->conf.klen = (unsigned)v;
			break;
		case 'v':
			if (bench_parse_u64(optarg, &v) || v > (64u << 20))
				goto bad;
			o->conf.vlen = (unsigned)v;
			break;
		case 't': {
			char *end;
			o->seconds = strtod(optarg, &end);
			if (end == optarg || *end != '\0' ||
			    !(o->seconds > 0 && o->seconds <= 3600))
				goto bad;
			break;
		}
		case 'n':
			n = bench_parse_counts(optarg, 1, MAX_CLIENTS,
			                       o->clients, MAX_COUNTS);
			if (n < 0)
				goto bad;
			o->nclients = (unsigned)n;
			break;
		case 'b':
			n = bench_parse_counts(optarg, 1, MAX_BATCH, o->batch,
			                       MAX_COUNTS);
			if (n < 0)
				goto bad;
			o->nbatch = (unsigned)n;
			break;
		case 'Y':
			o->conf.style = optarg;
			break;
		case 'p':
			if (parse_phases(optarg, o->phase) != 0)
				return -1;
			break;
		case 'L':
			o->load = false;
			break;
		case 'c':
			o->csv = optarg;
			break;
		case 'S':
			if (bench_parse_u64(optarg, &v))
				goto bad;
			o->seed = v;
			break;
		case 'm':
			if (bench_parse_u64(optarg, &v) || v > 100)
				goto bad;
			o->min_cpu = (double)v / 100.0;
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'l':
			for (size_t i = 0; drivers[i]; i++)
				printf("%s\n", drivers[i]->name);
			exit(0);
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "peer-bench: unexpected argument '%s'\n",
		        argv[optind]);
		return -1;
	}
	if (system == NULL || o->conf.target == NULL) {
		fprintf(stderr, "peer-bench: --system and --target are "
		                "required\n");
		usage(stderr);
		return -1;
	}
	o->drv = find_driver(system);
	if (o->drv == NULL) {
		fprintf(stderr, "peer-bench: --system %s: not built in (this "
		                "build has:", system);
		for (size_t i = 0; drivers[i]; i++)
			fprintf(stderr, " %s", drivers[i]->name);
		fprintf(stderr, "%s)\n", drivers[0] ? "" : " none");
		return -1;
	}
	unsigned kmin = bench_key_min(o->conf.keys);
	if (o->conf.klen == 0)
		o->conf.klen = kmin > 12 ? kmin : 12;
	if (o->conf.klen < kmin) {
		fprintf(stderr, "peer-bench: --key-size %u is too short for "
		        "%" PRIu64 " keys\n", o->conf.klen, o->conf.keys);
		return -1;
	}
	return 0;
bad:
	for (const struct option *l = longopts; l->name; l++)
		if (l->val == c)
			fprintf(stderr, "peer-bench: bad value for --%s: '%s'\n",
			        l->name, optarg);
	return -1;
}

/* ------------------------------------------------------------------------
 * A client process.
 */
struct client_args {
	const struct options *o;
	enum phase phase;
	unsigned batch;
	uint64_t seed;
};

struct client {
	const struct peer_driver *drv;
	void *conn;
	const struct bench_keyset *ks;
	size_t ki;
	uint8_t *buf, *val;
	size_t cap, vlen;
	unsigned batch, mix;
	const char *keys[MAX_BATCH];
};

static const char *next_key(struct client *c)
{
	const char *k = bench_key(c->ks, c->ki);
	if (++c->ki == c->ks->count)
		c->ki = 0;
	return k;
}

/* One call of the phase: returns the keys it did, or 0 on an error (with
 * the reason in err). */
static uint64_t call(struct client *c, enum phase ph, char *err,
                     size_t errlen)
{
	size_t klen = c->ks->klen, got = 0, hits = 0;
	int rc;

	switch (ph) {
	case PH_MIXED:
		if (++c->mix == MIX_EVERY) {
			c->mix = 0;
			goto put;
		}
		/* fall through */
	case PH_GET:
		rc = c->drv->get(c->conn, next_key(c), klen, c->buf, c->cap,
		                 &got);
		if (rc == 0 && got == c->vlen)
			return 1;
		snprintf(err, errlen, "get: %s",
		         rc == 1 ? "a present key was not found"
		         : rc == 0 ? "value of the wrong size"
		                   : c->drv->errmsg(c->conn));
		return 0;
	case PH_MGET:
		for (unsigned i = 0; i < c->batch; i++)
			c->keys[i] = next_key(c);
		rc = c->drv->mget(c->conn, c->keys, klen, c->batch, c->buf,
		                  c->cap, c->vlen, &hits);
		if (rc == 0 && hits == c->batch)
			return c->batch;
		snprintf(err, errlen, "mget: %s",
		         rc == 0 ? "some present keys were not found"
		                 : c->drv->errmsg(c->conn));
		return 0;
	case PH_PUT:
	put:
		rc = c->drv->put(c->conn, next_key(c), klen, c->val, c->vlen);
		if (rc == 0)
			return 1;
		snprintf(err, errlen, "put: %s", c->drv->errmsg(c->conn));
		return 0;
	case PH_N:
		break;
	}
	snprintf(err, errlen, "bad phase");
	return 0;
}

/* Calls until secs pass; every 64th call timed on its own. */
static int timed(struct client *c, enum phase ph, double secs,
                 struct bench_samples *smp, struct bench_member *m)
{
	const uint64_t limit = (uint64_t)(secs * 1e9);
	uint64_t ops = 0, ncalls = 0, t0 = bench_now_ns(), now = t0;

	while (!stop) {
		for (unsigned k = 0; k < CALLS_PER_CLOCK; k++) {
			uint64_t did;
			if ((++ncalls & (BENCH_SAMPLE_EVERY - 1)) == 0 && smp) {
				uint64_t a = bench_ticks_begin();
				did = call(c, ph, m->err, sizeof m->err);
				uint64_t b = bench_ticks_end();
				bench_sample(smp, b - a);
			} else {
				did = call(c, ph, m->err, sizeof m->err);
			}
			if (did == 0) {
				m->errors++;
				return -1;
			}
			ops += did;
		}
		now = bench_now_ns();
		if (now - t0 >= limit)
			break;
	}
	m->ops = ops;
	m->secs = (double)(now - t0) / 1e9;
	return stop ? -1 : 0;
}

static int client_worker(void *arg, unsigned idx, struct bench_team *t,
                         struct bench_member *m, struct bench_samples *smp)
{
	const struct client_args *a = arg;
	const struct options *o = a->o;
	struct bench_keyset ks = {0};
	struct client c = {.drv = o->drv, .batch = a->batch,
	                   .vlen = o->conf.vlen, .cap = o->conf.vlen + 64u};
	int ret = -1;

	c.buf = malloc(c.cap);
	c.val = malloc(c.vlen + 1);
	if (c.buf == NULL || c.val == NULL ||
	    bench_keys_random(&ks, o->conf.klen, 0, o->conf.keys,
	                      bench_ring_size(o->conf.keys, o->conf.klen),
	                      a->seed * 1000003u + 7919u * (idx + 1)) != 0) {
		snprintf(m->err, sizeof m->err, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < c.vlen; i++)
		c.val[i] = (uint8_t)('A' + i % 26);
	c.ks = &ks;
	if (o->drv->open(&o->conf, &c.conn, m->err, sizeof m->err) != 0)
		goto out;
	/* Warm up the connection, the server's caches and ours. */
	if (timed(&c, a->phase, o->seconds / 8 < 0.25 ? o->seconds / 8 : 0.25,
	          NULL, m) != 0)
		goto out;
	m->ops = 0;
	if (bench_team_start(t) != 0) {
		snprintf(m->err, sizeof m->err, "run called off");
		goto out;
	}
	ret = timed(&c, a->phase, o->seconds, smp, m);
out:
	if (c.conn)
		o->drv->close(c.conn);
	bench_keys_free(&ks);
	free(c.buf);
	free(c.val);
	return ret;
}

/* ------------------------------------------------------------------------
 * The parent: load, then the phases.
 */
static int load(const struct options *o, struct bench_report *rep)
{
	struct bench_keyset ks = {0};
	struct bench_result r = {0};
	void *conn = NULL;
	uint8_t *val = malloc(o->conf.vlen + 1);
	uint64_t before = 0, after = 0;
	char err[200] = "";
	int ret = -1;

	if (val == NULL ||
	    bench_keys_seq(&ks, o->conf.klen, 0, (size_t)o->conf.keys) != 0) {
		fprintf(stderr, "peer-bench: out of memory\n");
		goto out;
	}
	for (size_t i = 0; i < o->conf.vlen; i++)
		val[i] = (uint8_t)('a' + i % 26);
	if (o->drv->open(&o->conf, &conn, err, sizeof err) != 0 ||
	    o->drv->flush(conn, err, sizeof err) != 0)
		goto fail;
	int have_mem = o->drv->memory(conn, &before) == 0;
	bench_progress_phase(rep, "load", "put every key once into an "
	                                  "empty store");
	uint64_t t0 = bench_now_ns();
	if (o->drv->load(conn, &ks, val, o->conf.vlen, err, sizeof err) != 0)
		goto fail;
	uint64_t t1 = bench_now_ns();
	/* The load is acknowledged: the last key reads back. */
	size_t got = 0;
	int rc = o->drv->get(conn, bench_key(&ks, ks.count - 1), ks.klen, val,
	                     o->conf.vlen + 1, &got);
	if (rc != 0 || got != o->conf.vlen) {
		snprintf(err, sizeof err, "the last key loaded does not read "
		         "back (%s)", rc < 0 ? o->drv->errmsg(conn) : "absent");
		goto fail;
	}
	snprintf(r.phase, sizeof r.phase, "load");
	snprintf(r.mode, sizeof r.mode, "%s", o->drv->name);
	snprintf(r.unit, sizeof r.unit, "op");
	r.keys = o->conf.keys;
	r.procs = 1;
	r.ops = o->conf.keys;
	r.secs = (double)(t1 - t0) / 1e9;
	r.p50_ns = r.p99_ns = r.p999_ns = NAN;
	if (have_mem && o->drv->memory(conn, &after) == 0) {
		double n = (double)o->conf.keys;
		double per = (double)(after - before) / n;
		printf("# memory after load: %s holds %.1f MiB more (%s)\n",
		       o->drv->name, (double)(after - before) / 1048576.0,
		       o->drv->memory_how);
		printf("# mem: system=%s keys=%" PRIu64 " key_size=%u "
		       "value_size=%u bytes_per_item=%.1f "
		       "overhead_per_item=%.1f\n",
		       o->drv->name, o->conf.keys, o->conf.klen, o->conf.vlen,
		       per, per - o->conf.klen - o->conf.vlen);
	}
	printf("\n");
	bench_report_header(rep);
	bench_report_row(rep, &r);
	ret = 0;
	goto out;
fail:
	fprintf(stderr, "peer-bench: %s: load: %s\n", o->drv->name,
	        err[0] ? err : "failed");
out:
	if (conn)
		o->drv->close(conn);
	bench_keys_free(&ks);
	free(val);
	return ret;
}

static int run(const struct options *o, struct bench_team *t,
               struct bench_report *rep, enum phase ph, unsigned nclients,
               unsigned batch)
{
	struct client_args a = {.o = o, .phase = ph, .batch = batch,
	                        .seed = o->seed + nclients * 31u + batch};
	struct bench_result r = {0};
	char what[128], err[240];

	snprintf(what, sizeof what, "%u client%s%s", nclients,
	         nclients == 1 ? "" : "s",
	         ph == PH_MGET ? ", batched" : "");
	if (ph == PH_MGET)
		snprintf(r.phase, sizeof r.phase, "mget-%u", batch);
	else
		snprintf(r.phase, sizeof r.phase, "%s", phase_names[ph]);
	char where[64];
	snprintf(where, sizeof where, "%s %s", o->drv->name, r.phase);
	bench_progress_phase(rep, where, what);
	double min_cpu = o->drv->in_process ? o->min_cpu : 0;
	int tries = 0;
	do {
		if (tries > 0)
			bench_wait_quiet(15, 60, &stop);
		if (bench_team_run(t, nclients, client_worker, &a, 0, NULL,
		                   NULL, &stop, err, sizeof err) != 0) {
			if (!stop)
				fprintf(stderr, "peer-bench: %s: %s: %s\n",
				        o->drv->name, r.phase, err);
			return -1;
		}
		r.procs = nclients;
		bench_team_sum(t, 0, nclients, &r);
		tries++;
	} while (bench_contended(&r, min_cpu) && tries < BENCH_TRIES && !stop);
	snprintf(r.mode, sizeof r.mode, "%s", o->drv->name);
	snprintf(r.unit, sizeof r.unit, "op");
	r.keys = o->conf.keys;
	bench_report_row(rep, &r);
	if (tries > 1)
		printf("#   measured %d times: other processes took the CPUs "
		       "(this row is the last, cpu %.0f%%)\n", tries,
		       100 * bench_cpu_share(&r));
	if (nclients > 1)
		for (unsigned i = 0; i < nclients; i++) {
			struct bench_result one = {0};
			const struct bench_member *mb = bench_team_member(t, i);
			bench_team_one(t, i, &one);
			printf("#   client %u (cpu %d): %.3f M ops/s, p50 %.0f, "
			       "p99 %.0f, p99.9 %.0f ns, %.0f%% of a CPU\n",
			       i, mb->cpu, bench_ops_per_s(&one) / 1e6,
			       one.p50_ns, one.p99_ns, one.p999_ns,
			       one.secs > 0 ? 100.0 * one.cpu_secs / one.secs
			                    : 0.0);
		}
	return 0;
}

int main(int argc, char **argv)
{
	struct options o;
	struct bench_report rep = {0};
	struct bench_team *t = NULL;
	int ret = 2;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (parse_options(argc, argv, &o) != 0)
		return 2;

	struct sigaction sa = {0};
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN); /* a dead server is an error, not a death */

	rep.prog = "peer-bench";
	rep.quiet = o.quiet;
	rep.tty = isatty(STDERR_FILENO);
	rep.key_size = o.conf.klen;
	rep.value_size = o.conf.vlen;
	if (o.csv) {
		rep.csv = fopen(o.csv, "w");
		if (rep.csv == NULL) {
			fprintf(stderr, "peer-bench: --csv %s: %s\n", o.csv,
			        strerror(errno));
			return 2;
		}
	}
	bench_clock_init();

	unsigned maxc = 1;
	for (unsigned i = 0; i < o.nclients; i++)
		if (o.clients[i] > maxc)
			maxc = o.clients[i];
	t = bench_team_create(maxc);
	if (t == NULL) {
		fprintf(stderr, "peer-bench: cannot map results\n");
		goto out;
	}
	printf("# peer-bench %s, build %s, %u cpus\n", o.drv->name,
	       KV_BENCH_BUILDTYPE, bench_ncpus());
	printf("# target %s; keys %" PRIu64 " x %u B, values %u B, %.1f s "
	       "per run, seed %" PRIu64 "\n",
	       o.conf.target, o.conf.keys, o.conf.klen, o.conf.vlen,
	       o.seconds, o.seed);
	printf("# get-hit: %s\n# mget:    %s (style %s)\n# put:     %s\n",
	       o.drv->get_how, o.drv->batch_how,
	       o.conf.style ? o.conf.style : "default", o.drv->put_how);
	printf("# latency: every %uth call timed with %s; for mget a call is "
	       "a whole batch\n",
	       BENCH_SAMPLE_EVERY, bench_clock_name());

	if (o.load) {
		if (load(&o, &rep) != 0)
			goto out;
	} else {
		printf("\n");
		bench_report_header(&rep);
	}
	for (int ph = 0; ph < PH_N && !stop; ph++) {
		if (!o.phase[ph])
			continue;
		bool one = ph == PH_PUT || ph == PH_MIXED;
		for (unsigned ci = 0; ci < (one ? 1 : o.nclients) && !stop;
		     ci++) {
			unsigned nc = one ? 1 : o.clients[ci];
			for (unsigned bi = 0;
			     bi < (ph == PH_MGET ? o.nbatch : 1) && !stop;
			     bi++)
				if (run(&o, t, &rep, (enum phase)ph, nc,
				        o.batch[bi]) != 0)
					goto out;
		}
	}
	ret = stop ? 130 : 0;
	if (stop)
		fprintf(stderr, "peer-bench: interrupted\n");
out:
	bench_team_destroy(t);
	if (rep.csv)
		fclose(rep.csv);
	return ret;
}
