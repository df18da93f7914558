/*
 * kvd.c - the kv daemon: creates (or adopts) a store and serves it.
 *
 * What serving means
 *   The store's data needs no server: clients map it and read and write it
 *   themselves. kvd exists so that a store has an owner with a lifetime an
 *   operator can manage:
 *     - it creates the store with the size and permissions asked for, or
 *       adopts an existing compatible one with its data, so restarting kvd
 *       never loses anything (the store outlives the daemon; on Windows,
 *       while a client has it open: a section goes with its last handle);
 *     - it claims the store (an flock, on Windows a named mutex, that the
 *       system drops if kvd dies), so two daemons never serve one store,
 *       and the second names the first;
 *     - every tick (~10 ms) it calls kv__maintain(), which recovers the
 *       writer lock from a writer that died holding it. Writers recover on
 *       their own when they next lock, but read-only clients cannot take the
 *       lock, so without the tick a store with only readers would stay
 *       mid-repair until the next write;
 *     - every tick it also runs one step of the expiry sweep, kv__sweep():
 *       under the writer lock, the expired items of the next N index
 *       buckets are removed (--sweep-buckets, default 1024). Expired items
 *       are invisible to gets anyway; the sweep gives their memory back
 *       without waiting for a put to need it or a lookup to meet them. A
 *       step is short (N buckets, only the slots flagged as having a TTL
 *       are read), so writers wait at most that long; with the defaults a
 *       store of a million keys (~160k buckets) is swept every 1.6 s.
 *   And, on POSIX, when asked to (--listen, or sockets from systemd), it
 *   serves the same store over the memcached text protocol, for clients
 *   that cannot map it: on other machines, or in other languages
 *   (mc_net.c's threads, mc_proto.c's sessions; the tick runs what the
 *   protocol has scheduled, a delayed flush_all).
 *
 * Lifetime
 *   parse the command line -> [-d: detach] -> hold the stop requests ->
 *   create or adopt -> claim -> pid file -> [network server] -> [-d:
 *   report ready] -> serve -> stop the network server -> remove pid file
 *   -> release the claim -> close. Every step after the claim is undone
 *   in reverse at "out", whatever the reason for stopping; a network
 *   server that cannot start (a port in use) is a failed start, so a
 *   store made for it is removed again.
 *
 * Stop requests
 *   Held from before the store exists, and taken synchronously by
 *   kvd_sys_wait(), whose timeout is the tick (sys.h): on POSIX SIGTERM,
 *   SIGINT and SIGHUP, blocked and taken with sigtimedwait(); on Windows
 *   Ctrl-C, Ctrl-Break, the console closing and shutdown, which a console
 *   control handler turns into an event the tick waits on. So nothing runs
 *   in the middle of a library call, and a stop request that arrives
 *   during a long create (reserving gigabytes of memory) is not lost: it
 *   is taken as soon as the loop starts.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "kvd.h"
#include "sys.h"

#define TICK_MS 10                  /* kv__maintain() every 10 ms */
#define SLOW_TICK_MS 1000           /* log new lock recoveries every second */


/* What the serve loop keeps between ticks. */
struct served {
	kv_t *kv;
	const char *store;
	uint64_t recoveries; /* last seen, to log each new recovery */
	uint64_t resizes;    /* last seen, to log each resize */
	int maintain_rc;     /* last kv__maintain() result, to log changes */
	bool removed;        /* the store was removed under us */
	uint64_t sweep_buckets; /* per tick; 0: no sweep */
	int sweep_rc;        /* last kv__sweep() result, to log changes */
	uint64_t swept;      /* items the sweep removed since the last log */
	struct kvd_net *net; /* the memcached protocol server, or NULL */
};

/* Why a create failed, with the system's reason when the library only
 * knows "system error". */
static void fail_create(const struct kvd_config *cfg, int rc, int err)
{
	char size[32];

	switch (rc) {
	case KV_ETOOSMALL:
	case KV_ETOOBIG:
		/* Zero asked for the default, 64 MiB (kv.h). */
		kvd_fmt_bytes(cfg->opts.size != 0 ? cfg->opts.size :
		              64u * 1024 * 1024, size, sizeof(size));
		if (cfg->max_items_given)
			kvd_fail("store '%s' (size %s, max items %" PRIu64
			         "): %s",
			         cfg->store, size, cfg->opts.max_items,
			         kv_strerror(rc));
		else
			kvd_fail("store '%s' (size %s): %s", cfg->store, size,
			         kv_strerror(rc));
		break;
	case KV_ENOSTORE: /* a file-backed store's directory is missing */
	case KV_ESYS:
		if (err != 0) {
			kvd_fail("store '%s': %s (%s)", cfg->store,
			         kv_strerror(rc), strerror(err));
			break;
		}
		/* fall through */
	default:
		kvd_fail("store '%s': %s", cfg->store, kv_strerror(rc));
		break;
	case KV_ENOHUGE: {
		char why[256];
		if (strchr(cfg->store, '/') != NULL)
			snprintf(why, sizeof why, "huge pages are for "
			         "shared-memory stores, and this one is a file");
		else
			kvd_sys_huge_hint(why, sizeof why);
		kvd_fail("store '%s': %s: %s", cfg->store, kv_strerror(rc),
		         why);
		break;
	}
	case KV_EVERSION:
		kvd_fail("store '%s': %s (another version of kv made it: dump "
		         "it with that version's 'kv dump FILE', remove it with "
		         "'kv destroy --yes', start this kvd and 'kv load FILE')",
		         cfg->store, kv_strerror(rc));
		break;
	case KV_EDESTROYED:
		/* Its destroyer died before removing the name. */
		kvd_fail("store '%s': %s; its name is left over: remove it "
		         "with 'kv -s %s destroy --yes'", cfg->store,
		         kv_strerror(rc), cfg->store);
		break;
	}
}

/* Create the store, or adopt the existing one. Trying an exclusive create
 * first is what tells the two apart: only one creator can win it. */
static int open_store(const struct kvd_config *cfg, kv_t **kv, bool *created)
{
	struct kv_options excl = cfg->opts;
	int rc;

	excl.flags |= KV_CREATE_EXCL;
	errno = 0;
	rc = kv_create(cfg->store, &excl, kv);
	*created = rc == KV_OK;
	if (rc == KV_ESTOREEXISTS) {
		errno = 0;
		rc = kv_create(cfg->store, &cfg->opts, kv);
	}
	if (rc != KV_OK)
		fail_create(cfg, rc, errno);
	return rc;
}

/* Claim the store. A kvd that won the flock an instant ago may not have
 * recorded its pid yet; ask again for a moment so that the refusal can
 * name it, as operators need it to find the other daemon. */
static int claim(kv_t *kv, pid_t *other)
{
	int rc;

	for (int tries = 0;; tries++) {
		rc = kv__daemon_claim(kv, other);
		if (rc != KV_ESERVED || *other > 0 || tries == 20)
			return rc;
		kvd_sys_sleep_ms(10);
	}
}

/* An adopted store keeps the geometry and permissions it was made with:
 * they cannot change under clients that have it mapped. Say so when the
 * command line asked for something else, rather than silently ignore it.
 * mode is NULL where stores have no mode bits (Windows). */
static void warn_kept(const struct kvd_config *cfg,
                      const struct kv_stats *st, const unsigned *mode)
{
	char have[32], want[32];

	/* The library rounds a size down to whole KV_SIZE_ALIGN pages, so
	 * restarting with the same --size must not warn. */
	if (cfg->size_given) {
		uint64_t want_size =
		    cfg->opts.size / KV_SIZE_ALIGN * KV_SIZE_ALIGN;
		const uint64_t huge = 2u * 1024 * 1024;

		/* With huge pages, whole ones (kv.h, KV_CREATE_HUGE). */
		if ((cfg->opts.flags & KV_CREATE_HUGE) &&
		    cfg->opts.size <= UINT64_MAX - huge)
			want_size = (cfg->opts.size + huge - 1) / huge * huge;

		if (st->map_size != want_size) {
			kvd_fmt_bytes(st->map_size, have, sizeof(have));
			kvd_fmt_bytes(cfg->opts.size, want, sizeof(want));
			kvd_log(KVD_WARN,
			        "store '%s' exists with size %s: keeping it "
			        "(--size %s ignored; remove the store to resize "
			        "it)",
			        cfg->store, have, want);
		}
	}
	if ((cfg->opts.flags & KV_CREATE_HUGE) &&
	    st->mem_page_size < 2u * 1024 * 1024)
		kvd_log(KVD_WARN,
		        "store '%s' exists and is not backed by huge pages: "
		        "keeping it (--huge-pages ignored; remove the store to "
		        "have them)",
		        cfg->store);
	if (cfg->max_value_given && st->max_value != cfg->opts.max_value) {
		kvd_fmt_bytes(st->max_value, have, sizeof(have));
		kvd_fmt_bytes(cfg->opts.max_value, want, sizeof(want));
		kvd_log(KVD_WARN,
		        "store '%s' exists with max value %s: keeping it "
		        "(--max-value %s ignored)",
		        cfg->store, have, want);
	}
	/* The index is sized for max_items at a 4/5 load (libkv/geometry.c)
	 * and rounded up, so only an index too small for what was asked is
	 * worth a warning. */
	if (cfg->max_items_given && st->slots / 5 * 4 < cfg->opts.max_items)
		kvd_log(KVD_WARN,
		        "store '%s' exists with an index for about %" PRIu64
		        " keys: keeping it (--max-items %" PRIu64 " ignored; "
		        "remove the store to resize it)",
		        cfg->store, st->slots / 5 * 4, cfg->opts.max_items);
	if (cfg->mode_given && mode != NULL && *mode != cfg->opts.mode)
		kvd_log(KVD_WARN,
		        "store '%s' exists with mode %04o: keeping it (--mode "
		        "%04o ignored; use chmod to change it)",
		        cfg->store, *mode, cfg->opts.mode);
}

/* Look at what we are about to serve: log it, warn about options that did
 * not apply, refuse a world-writable store. Fills the identity the loop
 * uses to log recoveries. */
static int inspect_store(const struct kvd_config *cfg, struct served *s,
                         bool created)
{
	const char *path = kv__path(s->kv);
	struct kv_stats st;
	char size[32], maxval[32], shown_mode[32] = "";
	unsigned mode = 0;
	bool has_mode;
	int rc;

	rc = kv_stats(s->kv, &st);
	if (rc != KV_OK) {
		kvd_fail("store '%s': stats: %s", cfg->store, kv_strerror(rc));
		return -1;
	}
	rc = kvd_sys_store_mode(path, &mode);
	if (rc < 0) {
		kvd_fail("store '%s': %s: %s", cfg->store, path,
		         strerror(errno));
		return -1;
	}
	has_mode = rc == 0;
	s->recoveries = st.recoveries;
	s->resizes = st.resizes;

	/* The library never makes one, but anyone can chmod: a store every
	 * local user can write (o+w) is not one we will vouch for. */
	if (has_mode && (mode & 0002)) {
		kvd_fail("store '%s': %s is world-writable (mode %04o), so any "
		         "local user could corrupt it; refusing to serve it "
		         "(fix with chmod o-w)",
		         cfg->store, path, mode);
		return -1;
	}
	if (has_mode)
		snprintf(shown_mode, sizeof(shown_mode), ", mode %04o", mode);

	kvd_fmt_bytes(st.map_size, size, sizeof(size));
	kvd_fmt_bytes(st.max_value, maxval, sizeof(maxval));
	kvd_log(KVD_INFO,
	        "%s store '%s' at %s: size %s, max value %s, %" PRIu64
	        " buckets / %" PRIu64 " slots%s, %" PRIu64 " item%s%s",
	        created ? "created" : "adopted", cfg->store, path, size, maxval,
	        st.buckets, st.slots, shown_mode, st.items,
	        st.items == 1 ? "" : "s",
	        st.mem_page_size >= 2u * 1024 * 1024 ? ", 2 MiB huge pages"
	                                             : "");
	if (!created)
		warn_kept(cfg, &st, has_mode ? &mode : NULL);
	return 0;
}

/* SIGHUP (POSIX): the figures an operator asks for first. */
static void log_stats(const struct served *s)
{
	struct kv_stats st;
	char used[32], arena[32], keys[32], values[32];
	int rc;

	rc = kv_stats(s->kv, &st);
	if (rc != KV_OK) {
		kvd_log(KVD_ERROR, "store '%s': stats: %s", s->store,
		        kv_strerror(rc));
		return;
	}
	kvd_fmt_bytes(st.data_used, used, sizeof(used));
	kvd_fmt_bytes(st.data_bytes, arena, sizeof(arena));
	kvd_fmt_bytes(st.key_bytes, keys, sizeof(keys));
	kvd_fmt_bytes(st.value_bytes, values, sizeof(values));
	kvd_log(KVD_INFO,
	        "store '%s': %" PRIu64 " items (keys %s, values %s), used %s "
	        "of %s (%.1f%%), pages %" PRIu64 "/%" PRIu64 ", puts %" PRIu64
	        ", deletes %" PRIu64 ", expired %" PRIu64 ", evictions %" PRIu64
	        ", hits %" PRIu64 ", misses %" PRIu64 ", sweeps %" PRIu64
	        " (%.1f ms), recoveries %" PRIu64 ", max probe %" PRIu64,
	        s->store, st.items, keys, values, used, arena,
	        st.data_bytes != 0 ?
	            100.0 * (double)st.data_used / (double)st.data_bytes : 0.0,
	        st.pages_used, st.pages_total, st.puts, st.deletes, st.expired,
	        st.evictions, st.hits, st.misses, st.sweeps,
	        (double)st.sweep_ns / 1e6, st.recoveries, st.max_probe);
}

/* Every tick: recover a dead writer's lock. A failure (a corrupt store) is
 * not a reason to stop: clients get the error themselves, and the daemon
 * should still be there when the store is repaired. Log only changes, not
 * a hundred lines a second.
 *
 * The one failure that does stop kvd is the store being removed (or removed
 * and made anew under the same name): it lives on only while something maps
 * it, and kvd must not be what keeps its memory, maybe gigabytes of tmpfs,
 * allocated. Returns true to stop. */
static bool upkeep(struct served *s)
{
	int rc = kv__maintain(s->kv);
	const char *note = kv__repair_note(s->kv);

	if (rc == KV_ENOSTORE || rc == KV_EDESTROYED) {
		kvd_log(KVD_WARN, "store '%s': %s was %s; stopping",
		        s->store, kv__path(s->kv),
		        rc == KV_EDESTROYED ? "destroyed" : "removed");
		s->removed = true;
		return true;
	}
	if (note[0] != '\0') {
		kvd_log(KVD_WARN, "store '%s': %s", s->store, note);
		kv__clear_repair_note(s->kv);
	}
	if (rc == s->maintain_rc)
		return false;
	if (rc != KV_OK)
		kvd_log(KVD_ERROR, "store '%s': upkeep: %s", s->store,
		        kv_strerror(rc));
	else
		kvd_log(KVD_INFO, "store '%s': upkeep succeeds again", s->store);
	s->maintain_rc = rc;
	return false;
}

/* Every tick: one step of the expiry sweep. Like upkeep, a failure is
 * logged when it starts and when it stops, not on every tick. */
static void sweep(struct served *s)
{
	uint64_t n = 0;
	int rc = kv__sweep(s->kv, s->sweep_buckets, &n);

	if (rc == KV_OK)
		s->swept += n;
	if (rc == s->sweep_rc)
		return;
	if (rc != KV_OK)
		kvd_log(KVD_ERROR, "store '%s': expiry sweep: %s", s->store,
		        kv_strerror(rc));
	else
		kvd_log(KVD_INFO, "store '%s': expiry sweep succeeds again",
		        s->store);
	s->sweep_rc = rc;
}

/* Once a second, at debug level only (-v): what the sweep removed. A busy
 * cache expires keys all day; that is no news for the default log. */
static void log_swept(struct served *s)
{
	if (s->swept == 0)
		return;
	kvd_log(KVD_DEBUG, "store '%s': expiry sweep removed %" PRIu64
	        " expired item%s", s->store, s->swept,
	        s->swept == 1 ? "" : "s");
	s->swept = 0;
}

/* Once a second: log lock recoveries, whoever made them (the tick, or a
 * client's next write), so an operator learns that a client is dying inside
 * writes. */
static void log_recoveries(struct served *s)
{
	struct kv_stats st;

	if (kv_stats(s->kv, &st) != KV_OK || st.recoveries == s->recoveries)
		return;
	kvd_log(KVD_WARN,
	        "store '%s': a writer died holding the lock; recovered "
	        "(recoveries so far: %" PRIu64 ")",
	        s->store, st.recoveries);
	s->recoveries = st.recoveries;
}

/* Once a second: log a resize (kv resize, from any process); this
 * daemon's own handle has followed it already, at its last tick. */
static void log_resizes(struct served *s)
{
	struct kv_stats st;

	if (kv_stats(s->kv, &st) != KV_OK || st.resizes == s->resizes)
		return;
	kvd_log(KVD_INFO,
	        "store '%s': resized to %" PRIu64 " MiB: %" PRIu64
	        " buckets / %" PRIu64 " slots, %" PRIu64 " pages (resizes so "
	        "far: %" PRIu64 ")",
	        s->store, st.map_size >> 20, st.buckets, st.slots,
	        st.pages_total, st.resizes);
	s->resizes = st.resizes;
}

/* Serve until asked to stop (SIGTERM, SIGINT; Ctrl-C, Ctrl-Break, the
 * console closing), or until the store is removed. */
static void serve(struct served *s)
{
	uint64_t next_slow = kvd_sys_mono_ms() + SLOW_TICK_MS;

	for (;;) {
		char why[64];
		enum kvd_request req = kvd_sys_wait(TICK_MS, why, sizeof(why));

		if (req == KVD_REQ_STOP) {
			kvd_log(KVD_INFO, "%s: stopping", why);
			return;
		}
		if (req == KVD_REQ_STATS) {
			log_stats(s);
			kvd_net_log_stats(s->net);
		}
		/* Otherwise the tick. */

		if (upkeep(s))
			return;
		if (s->sweep_buckets > 0)
			sweep(s);
		kvd_net_tick(s->net);
		if (kvd_sys_mono_ms() >= next_slow) {
			log_recoveries(s);
			log_resizes(s);
			log_swept(s);
			next_slow = kvd_sys_mono_ms() + SLOW_TICK_MS;
		}
	}
}

int main(int argc, char **argv)
{
	struct kvd_config cfg;
	struct served s = {0};
	pid_t other = 0;
	bool created = false, claimed = false, pidfile = false;
	bool serving = false;
	int ready_fd = -1;
	int status;
	int rc;

	if (kvd_sys_init() != 0)
		return 2; /* nowhere to say why */
	if (!kvd_config_parse(argc, argv, &cfg, &status))
		return status;
	status = 2;
	s.store = cfg.store;
	s.sweep_buckets = cfg.sweep_buckets;
	kvd_log_setup(cfg.quiet, cfg.verbose);

	if (cfg.daemonize && kvd_detach(&ready_fd) != 0)
		goto out;

	if (kvd_sys_requests_init() != 0)
		goto out;

	if (open_store(&cfg, &s.kv, &created) != KV_OK)
		goto out;

	errno = 0;
	rc = claim(s.kv, &other);
	if (rc == KV_ESERVED) {
		/* We created it, but another kvd adopted it and claimed it
		 * first: it is that daemon's store now, not ours to remove. */
		created = false;
		if (other > 0)
			kvd_fail("store '%s': already served by kvd pid %ld",
			         cfg.store, (long)other);
		else
			kvd_fail("store '%s': already served by another kvd "
			         "(pid unknown)",
			         cfg.store);
		goto out;
	}
	if (rc != KV_OK) {
		kvd_fail("store '%s': claim: %s%s%s%s", cfg.store,
		         kv_strerror(rc), errno != 0 ? " (" : "",
		         errno != 0 ? strerror(errno) : "", errno != 0 ? ")" : "");
		goto out;
	}
	claimed = true;

	if (inspect_store(&cfg, &s, created) != 0)
		goto out;
	/* Repair at adoption: a lock left by a writer that is gone, or
	 * damaged, is broken now and logged, before anyone is told kvd is
	 * ready. */
	if (upkeep(&s)) {
		created = false; /* the name may be another store's by now */
		status = 0;
		goto out;
	}

	if (cfg.pidfile[0] != '\0') {
		rc = kvd_pidfile_write(cfg.pidfile);
		if (rc != 0) {
			kvd_fail("pid file '%s': %s", cfg.pidfile, strerror(rc));
			goto out;
		}
		pidfile = true;
	}

	if (kvd_net_start(&cfg, s.kv, &s.net) != 0)
		goto out;

	if (cfg.daemonize)
		kvd_ready(&ready_fd); /* and leaves the working directory */

	if (s.sweep_buckets == 0)
		kvd_log(KVD_INFO, "store '%s': expiry sweep off "
		        "(--sweep-buckets 0)", cfg.store);
	serving = true;
	serve(&s);
	status = 0;

out:
	kvd_net_stop(s.net);
	if (pidfile) {
		rc = kvd_pidfile_remove(cfg.pidfile);
		if (rc != 0)
			kvd_log(KVD_ERROR, "pid file '%s': %s", cfg.pidfile,
			        strerror(rc));
	}
	if (claimed)
		kv__daemon_release(s.kv);
	/* A start that failed after creating the store takes it back: a typo
	 * in a later option must not leave the memory reserved. A store that
	 * was adopted, or that was served, stays. */
	if (created && !serving && kv_destroy(cfg.store) == KV_OK)
		kvd_log(KVD_INFO, "removed store '%s' it had just created",
		        cfg.store);
	if (status == 0 && !s.removed)
		kvd_log(KVD_INFO, "stopped; store '%s' stays at %s", cfg.store,
		        kv__path(s.kv));
	else if (status == 0)
		kvd_log(KVD_INFO, "stopped");
	kv_close(s.kv);
	/* A daemon that never became ready just closes the pipe: the fatal
	 * line, if any, is already in it. */
	if (ready_fd >= 0)
		close(ready_fd);
	return status;
}
