/*
 * mc.h - kvd's memcached protocol server. Private to daemon/ (and its
 * tests and fuzz target). POSIX only: on Windows kvd serves the
 * shared-memory store alone.
 *
 * Two halves, one interface:
 *   mc_proto.c  the protocol: a session per connection turns request bytes
 *               into reply bytes against the store (libkv's public calls),
 *               with no I/O of its own, so tests and the fuzzer drive it
 *               in process;
 *   mc_net.c    listeners, worker threads with their event loops, and the
 *               connections that feed sessions and write their replies.
 *
 * Memory per connection is bounded: a session buffers at most one command
 * line (MC_MAX_LINE), one data block (the store's max value + 2) and its
 * reply up to MC_OUT_HIGH plus one value; past MC_OUT_HIGH it stops
 * consuming input until the network half has written the reply out, so a
 * client that stops reading stops being read.
 */
#ifndef KVD_MC_H
#define KVD_MC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv.h"

#define MC_MAX_LINE 2048u         /* longest command line, "\r\n" included */
#define MC_MAX_KEY 250u           /* memcached's key limit */
#define MC_OUT_HIGH (64u * 1024u) /* reply bytes pending before input stops */

/* Server-wide counters for `stats`, shared by every worker thread. */
struct mc_counters {
	_Atomic uint64_t curr_connections;
	_Atomic uint64_t total_connections;
	_Atomic uint64_t rejected_connections;
	_Atomic uint64_t bytes_read;
	_Atomic uint64_t bytes_written;
	_Atomic uint64_t cmd_get;      /* keys asked for by retrieval commands */
	_Atomic uint64_t get_hits;
	_Atomic uint64_t get_misses;
	_Atomic uint64_t get_expired;
	_Atomic uint64_t cmd_set;      /* storage commands */
	_Atomic uint64_t cmd_touch;
	_Atomic uint64_t touch_hits;
	_Atomic uint64_t touch_misses;
	_Atomic uint64_t cmd_flush;
	_Atomic uint64_t delete_hits;
	_Atomic uint64_t delete_misses;
	_Atomic uint64_t incr_hits;
	_Atomic uint64_t incr_misses;
	_Atomic uint64_t decr_hits;
	_Atomic uint64_t decr_misses;
	_Atomic uint64_t cas_hits;
	_Atomic uint64_t cas_misses;
	_Atomic uint64_t cas_badval;
	_Atomic uint64_t auth_cmds;
	_Atomic uint64_t auth_errors;
	_Atomic uint64_t cmd_meta;     /* meta commands (mg, ms, md, ma, mn, me) */
	_Atomic uint64_t store_too_large; /* values refused: over max value */
	_Atomic uint64_t store_no_memory; /* values refused: store full */
};

/* One user:password line of --auth-file. */
struct mc_user {
	char *user;
	char *pass;
};

/* What every session of one kvd shares. Set up by kvd before the first
 * session and not changed after, except the atomics. */
struct mc_server {
	kv_t *kv;                   /* the served store, read-write */
	uint32_t max_value;         /* the store's max value (kv_stats) */
	unsigned threads;           /* worker threads, for `stats` */
	unsigned max_conns;         /* --max-conns, for `stats` */
	uint64_t started_ms;        /* CLOCK_REALTIME ms at start, for uptime */
	const struct mc_user *users; /* --auth-file, or NULL: no auth */
	size_t nusers;
	_Atomic int verbosity;      /* `verbosity N` */
	/* flush_all with a delay: the CLOCK_REALTIME ms at which the store
	 * is to be flushed, 0 when none is due. kvd's tick runs it
	 * (mc_server_tick). */
	_Atomic uint64_t flush_at_ms;
	struct mc_counters c;
};

/* Run what is due: a delayed flush_all. Called by kvd's 10 ms tick. */
void mc_server_tick(struct mc_server *srv);

/* Load --auth-file: lines "user:password" ('#' comments and blank lines
 * skipped). Returns 0, or -1 with a message in why[0..cap). */
int mc_auth_load(const char *path, struct mc_user **users, size_t *n,
                 char *why, size_t cap);
void mc_auth_free(struct mc_user *users, size_t n);

struct mc_session;

/* A new session (one per connection), or NULL when out of memory. */
struct mc_session *mc_session_new(struct mc_server *srv);
void mc_session_free(struct mc_session *s);

/* Consume request bytes in[0..n): run every complete command and append
 * its reply. Returns the bytes consumed; the caller keeps the rest and
 * offers it again with more. Bytes are left over only when they are an
 * incomplete command line (always < MC_MAX_LINE: a longer one is refused
 * and skipped by the session itself; a get line of any length is run key
 * by key as it comes, leaving at most a key unconsumed) or when the
 * pending reply passed MC_OUT_HIGH (offer them again once mc_session_sent
 * made room). A get stopped by MC_OUT_HIGH leaves the rest of its line in
 * those bytes, so nothing is held back in the session: n == 0 is allowed
 * and consumes nothing. */
size_t mc_session_input(struct mc_session *s, const char *in, size_t n);

/* The pending reply: *len bytes at the returned pointer (NULL, 0 when
 * none). After writing k of them, call mc_session_sent(s, k). */
const char *mc_session_output(struct mc_session *s, size_t *len);
void mc_session_sent(struct mc_session *s, size_t k);

/* True when the session is done: `quit`, or an error after which memcached
 * closes the connection. The caller writes what is pending, then closes. */
bool mc_session_closing(const struct mc_session *s);

/* True when the session would consume more input now (its reply is below
 * MC_OUT_HIGH and it is not closing). */
bool mc_session_wants_input(const struct mc_session *s);

#endif /* KVD_MC_H */
