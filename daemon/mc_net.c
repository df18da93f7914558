/*
 * mc_net.c - the network half of kvd's memcached protocol server: the
 * listening sockets, the threads, and the connections that feed request
 * bytes to mc_proto.c's sessions and write their replies (see mc.h).
 * POSIX only; kvd.h declares the three calls kvd.c makes.
 *
 * Threads
 *   kvd's main thread keeps its tick loop (kvd.c: signals, upkeep, the
 *   expiry sweep, and now mc_server_tick). The server adds
 *     - one acceptor thread, which poll()s the listening sockets. It
 *       accepts, refuses what is over --max-conns (memcached's "ERROR Too
 *       many open connections", then close), and hands every other
 *       connection to the next worker in turn: onto the worker's inbox (a
 *       list under the worker's mutex), then one byte down the worker's
 *       wake pipe;
 *     - --threads worker threads, each with its own libevent loop, as
 *       memcached has. A connection belongs to one worker from hand-off to
 *       close and is touched by no other thread, so connections need no
 *       locks. Shared between threads are only the inboxes (their mutex),
 *       the stop flags (atomics) and mc_server's counters (atomics).
 *   Every thread starts with every signal blocked, so SIGTERM, SIGINT and
 *   SIGHUP stay for the main thread's sigtimedwait() (sys_posix.c).
 *
 * A connection's turn (conn_service), run when its socket is readable or
 * writable:
 *     1. offer the buffered request bytes to the session, which runs every
 *        complete command and appends the reply;
 *     2. read more into the buffer (IN_CAP: 16 KiB plus the at most one
 *        incomplete command line, < MC_MAX_LINE, that the session leaves
 *        over), and go back to 1, so many pipelined requests are run per
 *        read, and several reads per turn;
 *     3. once the socket has no more to read (or after READS_PER_TURN
 *        reads, so that one busy client cannot starve the others of its
 *        worker), write the gathered replies in one send().
 *   The turn goes on while any step makes progress, then arms the events
 *   it needs: readable while the session wants input, writable while a
 *   reply is pending.
 *
 * Backpressure
 *   A session stops wanting input once its pending reply passes
 *   MC_OUT_HIGH (mc.h). Then the connection stops reading its socket until
 *   the reply has drained, so a client that sends requests but never reads
 *   the replies costs at most the buffer, the session and the kernel's
 *   socket buffers, not a growing heap. Every socket is non-blocking: a
 *   client that stalls, or sends a byte at a time, only ever waits for
 *   itself.
 *
 * Ends of a connection
 *   It is closed when the session says so (quit, or a fatal protocol
 *   error) once its reply is written; at end of input (the client shut its
 *   side) once the replies to what it sent are written; on any socket
 *   error; and after --idle-timeout seconds without a byte read or written
 *   (each worker keeps its connections in order of last activity and
 *   closes from the idle end).
 *
 * Stopping (kvd_net_stop, from the main thread): the acceptor is stopped
 *   and joined first, so nothing more is handed over; then each worker,
 *   which sends what it can of every pending reply without waiting,
 *   closes all its connections and returns; then the listeners are closed
 *   and the UNIX socket files that are still ours removed.
 *
 * Listeners
 *   HOST:PORT goes through getaddrinfo, and every address it gives is
 *   bound (localhost may be both 127.0.0.1 and ::1); an IPv6 socket is
 *   IPv6 only, so [::] and 0.0.0.0 can both be listened on. unix:PATH is
 *   made with the store's mode and group, so that the store's permissions
 *   stay the one security boundary: who may write the store may connect
 *   (connecting needs write permission on the socket). It is bound with a
 *   umask that lets only the owner in, given the group, then the mode,
 *   and only then listened on. A socket file left by a kvd that died is
 *   replaced, but only when nothing answers on it. Sockets passed by
 *   systemd (LISTEN_FDS) are served as they are.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon.h"
#include "kvd.h"
#include "mc.h"

static_assert(sizeof(((struct sockaddr_un *)0)->sun_path) >=
                  KVD_UNIX_PATH_MAX,
              "a --listen unix:PATH that options.c takes must fit");

#define IN_CAP (16u * 1024u + MC_MAX_LINE) /* a connection's input buffer */
#define READS_PER_TURN 4       /* reads before a connection lets others go */
#define BACKLOG 1024           /* listen(2) queue, as memcached's default */
#define ACCEPTS_PER_WAKE 64    /* accepts per listener per poll() */
#define PAUSE_MS 100           /* no accepting after running out of fds */
#define IDLE_SCAN_MS 250       /* how often workers look for idle clients */
#define MAX_INHERITED 256      /* LISTEN_FDS above this is nonsense */

static const char too_many[] = "ERROR Too many open connections\r\n";

struct worker;

/* One client connection. Owned by its worker's thread once handed over. */
struct conn {
	struct worker *w;
	struct conn *prev, *next; /* in w's list (most recently active
	                           * first), or next in an inbox */
	int fd;
	bool reading, writing;    /* rev, wev added */
	bool eof;                 /* the client shut its side */
	struct event *rev, *wev;
	struct mc_session *s;
	uint64_t last_ms;         /* last byte read or written (monotonic) */
	size_t in_len;            /* request bytes in in[] not yet consumed */
	char in[IN_CAP];
};

struct worker {
	struct kvd_net *net;
	pthread_t thread;
	bool started;
	struct event_base *base;
	struct event *wake_ev, *idle_ev;
	int wake[2];              /* the pipe: [0] the worker reads */
	pthread_mutex_t lock;     /* guards inbox */
	bool lock_made;
	struct conn *inbox;       /* handed over, not yet taken; under lock */
	_Atomic bool stop;
	/* Only the worker's thread touches these. */
	struct conn *head, *tail; /* head: most recently active */
};

struct listener {
	int fd;
	bool tcp;                 /* TCP_NODELAY on its connections */
	bool loopback;            /* reachable from this machine only */
	char name[KVD_UNIX_PATH_MAX + 64]; /* "127.0.0.1:11211", "unix:/p" */
	char from[96];            /* "" or " (fd 3 from systemd...)" */
	/* A UNIX socket file we made: removed at exit if still this one. */
	bool own_file;
	char path[KVD_UNIX_PATH_MAX];
	dev_t dev;
	ino_t ino;
};

struct kvd_net {
	struct mc_server srv;
	struct mc_user *users;    /* --auth-file, owned */
	size_t nusers;
	struct listener *ls;
	size_t nls, capls;
	struct worker *workers;
	unsigned nworkers;
	unsigned next_worker;     /* round robin; acceptor thread only */
	uint64_t idle_ms;         /* --idle-timeout in ms; 0: none */
	unsigned max_conns;
	pthread_t acceptor;
	bool acceptor_started;
	int wake[2];              /* the acceptor's stop pipe */
	_Atomic bool stopping;
	struct pollfd *pfd;       /* the acceptor's: wake pipe, listeners */
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void counter_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static void counter_sub(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_sub_explicit(c, n, memory_order_relaxed);
}

/* Wake a thread through its pipe. A full pipe is fine: it is awake
 * already, or will be. */
static void poke(int fd)
{
	const char b = 1;
	ssize_t n;

	do
		n = write(fd, &b, 1);
	while (n < 0 && errno == EINTR);
}

static void drain(int fd)
{
	char buf[64];

	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n <= 0 && !(n < 0 && errno == EINTR))
			return;
	}
}

/* ------------------------------------------------------------------------
 * Connections: in their worker's thread
 */

static void list_unlink(struct worker *w, struct conn *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		w->head = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	else
		w->tail = c->prev;
	c->prev = c->next = NULL;
}

static void list_push_head(struct worker *w, struct conn *c)
{
	c->prev = NULL;
	c->next = w->head;
	if (w->head != NULL)
		w->head->prev = c;
	else
		w->tail = c;
	w->head = c;
}

/* Free a connection that is in no list. */
static void conn_free(struct kvd_net *net, struct conn *c)
{
	if (c->rev != NULL)
		event_free(c->rev);
	if (c->wev != NULL)
		event_free(c->wev);
	if (c->s != NULL)
		mc_session_free(c->s);
	close(c->fd);
	counter_sub(&net->srv.c.curr_connections, 1);
	free(c);
}

static void conn_close(struct conn *c)
{
	struct worker *w = c->w;

	list_unlink(w, c);
	conn_free(w->net, c);
}

static void conn_arm(struct conn *c, bool rd, bool wr)
{
	if (rd != c->reading) {
		if (rd)
			event_add(c->rev, NULL);
		else
			event_del(c->rev);
		c->reading = rd;
	}
	if (wr != c->writing) {
		if (wr)
			event_add(c->wev, NULL);
		else
			event_del(c->wev);
		c->writing = wr;
	}
}

/* One turn of a connection (see the top of the file). */
static void conn_service(struct conn *c)
{
	struct mc_counters *ctr = &c->w->net->srv.c;
	unsigned reads = 0;
	bool active = false, dry = false, full = false;
	bool closing, want_read;
	size_t pending;

	for (;;) {
		bool progress = false;
		const char *out;
		size_t len;

		/* 1. Run what is buffered. */
		if (c->in_len > 0 && mc_session_wants_input(c->s)) {
			size_t used = mc_session_input(c->s, c->in, c->in_len);

			if (used > 0) {
				c->in_len -= used;
				memmove(c->in, c->in + used, c->in_len);
				progress = true;
			}
		}

		/* 2. Read more while the session takes it. A short read
		 * means the socket is empty for now. */
		if (!c->eof && !dry && reads < READS_PER_TURN &&
		    c->in_len < IN_CAP && mc_session_wants_input(c->s)) {
			size_t room = IN_CAP - c->in_len;
			ssize_t n = recv(c->fd, c->in + c->in_len, room, 0);

			if (n > 0) {
				c->in_len += (size_t)n;
				counter_add(&ctr->bytes_read, (uint64_t)n);
				reads++;
				active = true;
				dry = (size_t)n < room;
				continue;
			}
			if (n == 0) {
				c->eof = true;
			} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
				dry = true;
			} else if (errno == EINTR) {
				continue;
			} else {
				conn_close(c);
				return;
			}
		}

		/* 3. Write what the turn has gathered, in one send. */
		out = mc_session_output(c->s, &len);
		if (len > 0 && !full) {
			ssize_t n = send(c->fd, out, len, MSG_NOSIGNAL);

			if (n > 0) {
				mc_session_sent(c->s, (size_t)n);
				counter_add(&ctr->bytes_written, (uint64_t)n);
				active = true;
				progress = true;
				full = (size_t)n < len;
			} else if (n < 0 && (errno == EAGAIN ||
			                     errno == EWOULDBLOCK)) {
				full = true;
			} else if (n < 0 && errno == EINTR) {
				progress = true;
			} else {
				conn_close(c);
				return;
			}
		}
		if (!progress)
			break;
	}

	if (active && c->w->net->idle_ms > 0) {
		c->last_ms = mono_ms();
		if (c->w->head != c) {
			list_unlink(c->w, c);
			list_push_head(c->w, c);
		}
	}

	(void)mc_session_output(c->s, &pending);
	closing = mc_session_closing(c->s);
	if ((closing || c->eof) && pending == 0) {
		conn_close(c);
		return;
	}
	want_read = !c->eof && !closing && c->in_len < IN_CAP &&
	            mc_session_wants_input(c->s);
	/* A session that wants nothing, says nothing and is not closing
	 * (or leaves a full buffer unconsumed) would hold the connection
	 * open for ever: mc.h rules it out, and this makes sure. */
	if (!want_read && pending == 0 && !closing && !c->eof) {
		kvd_log(KVD_ERROR, "memcached connection stalled (%zu bytes "
		        "unconsumed): closing it", c->in_len);
		conn_close(c);
		return;
	}
	conn_arm(c, want_read, pending > 0);
}

static void on_conn_event(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_service(arg);
}

/* Take over a connection the acceptor handed us. */
static void conn_start(struct worker *w, struct conn *c)
{
	c->w = w;
	c->s = mc_session_new(&w->net->srv);
	c->rev = event_new(w->base, c->fd, EV_READ | EV_PERSIST, on_conn_event,
	                   c);
	c->wev = event_new(w->base, c->fd, EV_WRITE | EV_PERSIST,
	                   on_conn_event, c);
	if (c->s == NULL || c->rev == NULL || c->wev == NULL) {
		kvd_log(KVD_ERROR, "memcached connection: out of memory: "
		        "closing it");
		conn_free(w->net, c);
		return;
	}
	c->last_ms = mono_ms();
	list_push_head(w, c);
	conn_arm(c, true, false);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct conn *c, *rev = NULL;

	(void)what;
	drain(fd);
	if (atomic_load(&w->stop)) {
		event_base_loopbreak(w->base);
		return;
	}
	pthread_mutex_lock(&w->lock);
	c = w->inbox;
	w->inbox = NULL;
	pthread_mutex_unlock(&w->lock);
	/* The inbox is newest first: start them in the order they came. */
	while (c != NULL) {
		struct conn *next = c->next;

		c->next = rev;
		rev = c;
		c = next;
	}
	while (rev != NULL) {
		struct conn *next = rev->next;

		rev->next = NULL;
		conn_start(w, rev);
		rev = next;
	}
}

/* Close the connections idle for --idle-timeout: they sit at the tail. */
static void on_idle_scan(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	uint64_t now = mono_ms();

	(void)fd;
	(void)what;
	while (w->tail != NULL && now - w->tail->last_ms >= w->net->idle_ms)
		conn_close(w->tail);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct conn *c;

	event_base_dispatch(w->base);

	/* Stopping: send what can be sent at once, then close. */
	while ((c = w->head) != NULL) {
		size_t len;
		const char *out = mc_session_output(c->s, &len);

		if (len > 0)
			(void)send(c->fd, out, len,
			           MSG_NOSIGNAL | MSG_DONTWAIT);
		conn_close(c);
	}
	pthread_mutex_lock(&w->lock);
	c = w->inbox;
	w->inbox = NULL;
	pthread_mutex_unlock(&w->lock);
	while (c != NULL) {
		struct conn *next = c->next;

		conn_free(w->net, c);
		c = next;
	}
	return NULL;
}

/* ------------------------------------------------------------------------
 * The acceptor thread
 */

static void hand_off(struct kvd_net *net, int fd)
{
	struct worker *w = &net->workers[net->next_worker];
	struct conn *c = malloc(sizeof(*c));

	net->next_worker = (net->next_worker + 1) % net->nworkers;
	if (c == NULL) {
		kvd_log(KVD_ERROR, "memcached connection: out of memory: "
		        "closing it");
		close(fd);
		counter_sub(&net->srv.c.curr_connections, 1);
		return;
	}
	memset(c, 0, offsetof(struct conn, in));
	c->fd = fd;
	pthread_mutex_lock(&w->lock);
	c->next = w->inbox;
	w->inbox = c;
	pthread_mutex_unlock(&w->lock);
	poke(w->wake[1]);
}

/* Accept what is waiting on l. Returns false when accepting should pause
 * (out of descriptors or memory: the connections wait in the backlog). */
static bool accept_some(struct kvd_net *net, struct listener *l)
{
	static uint64_t last_warned;
	struct mc_counters *ctr = &net->srv.c;
	const int one = 1;

	for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
		int fd = accept4(l->fd, NULL, NULL,
		                 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			switch (errno) {
			case EAGAIN:
#if EWOULDBLOCK != EAGAIN
			case EWOULDBLOCK:
#endif
				return true;
			/* The connection's own trouble (accept(2), Linux
			 * notes): the next one may be fine. */
			case EINTR: case ECONNABORTED: case EPROTO:
			case EPERM: case ENETDOWN: case ENOPROTOOPT:
			case EHOSTDOWN: case ENONET: case EHOSTUNREACH:
			case EOPNOTSUPP: case ENETUNREACH:
				continue;
			default:
				break;
			}
			/* EMFILE, ENFILE, ENOBUFS, ENOMEM: log at most every
			 * 10 s, and let the backlog hold the clients. */
			if (mono_ms() - last_warned >= 10000 ||
			    last_warned == 0) {
				last_warned = mono_ms();
				kvd_log(KVD_WARN, "accept on %s: %s: not "
				        "accepting for %d ms (see --max-conns "
				        "and the open-file limit)",
				        l->name, strerror(errno), PAUSE_MS);
			}
			return false;
		}
		/* Only this thread adds, so the check cannot be raced past;
		 * workers only lower the count. */
		if (atomic_load(&ctr->curr_connections) >= net->max_conns) {
			(void)send(fd, too_many, sizeof(too_many) - 1,
			           MSG_NOSIGNAL | MSG_DONTWAIT);
			close(fd);
			counter_add(&ctr->rejected_connections, 1);
			continue;
		}
		counter_add(&ctr->curr_connections, 1);
		counter_add(&ctr->total_connections, 1);
		if (l->tcp) {
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
			           sizeof(one));
			setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one,
			           sizeof(one));
		}
		hand_off(net, fd);
	}
	return true;
}

static void *acceptor_main(void *arg)
{
	struct kvd_net *net = arg;
	uint64_t paused_until = 0;

	for (;;) {
		uint64_t now = mono_ms();
		bool paused = now < paused_until;
		int n;

		for (size_t i = 0; i < net->nls; i++)
			net->pfd[i + 1].events = paused ? 0 : POLLIN;
		n = poll(net->pfd, net->nls + 1,
		         paused ? (int)(paused_until - now) : -1);
		if (atomic_load(&net->stopping))
			break;
		if (n <= 0)
			continue;
		for (size_t i = 0; i < net->nls; i++) {
			if (!(net->pfd[i + 1].revents & (POLLIN | POLLERR)))
				continue;
			if (!accept_some(net, &net->ls[i]))
				paused_until = mono_ms() + PAUSE_MS;
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------------
 * Listeners: in the main thread, before the other threads start
 */

/* The error of a socket call as kvd's fatal line says it. */
static const char *sock_error(int err)
{
	switch (err) {
	case EADDRINUSE:
		return "address already in use";
	case EADDRNOTAVAIL:
		return "not an address of this machine";
	case EACCES:
		return "permission denied";
	default:
		return strerror(err);
	}
}

/* "127.0.0.1:11211", "[::1]:11211", "unix:/run/kvd.sock". */
static void addr_name(const struct sockaddr_storage *ss, socklen_t len,
                      char *buf, size_t cap)
{
	char host[NI_MAXHOST], serv[NI_MAXSERV];

	if (ss->ss_family == AF_UNIX) {
		const struct sockaddr_un *un = (const void *)ss;
		size_t off = offsetof(struct sockaddr_un, sun_path);
		size_t plen = len > off ? (size_t)len - off : 0;

		plen = strnlen(un->sun_path, plen);
		if (plen == 0)
			snprintf(buf, cap, "unix:(unnamed or abstract)");
		else
			snprintf(buf, cap, "unix:%.*s", (int)plen,
			         un->sun_path);
		return;
	}
	if (getnameinfo((const struct sockaddr *)ss, len, host, sizeof(host),
	                serv, sizeof(serv),
	                NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(buf, cap, "(unknown address)");
		return;
	}
	snprintf(buf, cap, ss->ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
	         host, serv);
}

static bool addr_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)ss;

		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)ss;

		return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
		       (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) &&
		        in6->sin6_addr.s6_addr[12] == 127);
	}
	return ss->ss_family == AF_UNIX;
}

/* A new entry in net->ls for fd, named from its bound address. Returns
 * it, or NULL (fatal line written) when out of memory. */
static struct listener *add_listener(struct kvd_net *net, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct listener *l;

	if (net->nls == net->capls) {
		size_t cap = net->capls == 0 ? 4 : net->capls * 2;
		struct listener *ls = realloc(net->ls, cap * sizeof(*ls));

		if (ls == NULL) {
			kvd_fail("listen: out of memory");
			return NULL;
		}
		net->ls = ls;
		net->capls = cap;
	}
	l = &net->ls[net->nls++];
	memset(l, 0, sizeof(*l));
	l->fd = fd;
	memset(&ss, 0, sizeof(ss));
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
		len = 0;
		ss.ss_family = AF_UNSPEC;
	}
	l->tcp = ss.ss_family == AF_INET || ss.ss_family == AF_INET6;
	l->loopback = addr_loopback(&ss);
	addr_name(&ss, len, l->name, sizeof(l->name));
	return l;
}

/* Listen on every address HOST resolves to. Returns 0, or -1 with the
 * fatal line written. */
static int listen_tcp(struct kvd_net *net, const struct kvd_listen *spec)
{
	const struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	};
	struct addrinfo *res = NULL;
	char what[sizeof(spec->host) + 128];
	size_t before = net->nls;
	int err = 0, rc;
	const int one = 1;

	rc = getaddrinfo(spec->host, spec->port, &hints, &res);
	if (rc != 0) {
		kvd_fail("listen %s: %s", spec->arg,
		         rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		struct sockaddr_storage ss;
		struct listener *l;
		bool dup = false;
		int fd;

		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		/* Some resolvers give one address twice. */
		for (const struct addrinfo *p = res; p != ai; p = p->ai_next)
			if (p->ai_addrlen == ai->ai_addrlen &&
			    memcmp(p->ai_addr, ai->ai_addr,
			           ai->ai_addrlen) == 0)
				dup = true;
		if (dup)
			continue;

		memset(&ss, 0, sizeof(ss));
		memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
		addr_name(&ss, ai->ai_addrlen, what, sizeof(what));
		fd = socket(ai->ai_family,
		            SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		            ai->ai_protocol);
		if (fd < 0) {
			/* No IPv6 in this kernel: skipped if another
			 * address of the name works. */
			if (errno == EAFNOSUPPORT) {
				if (err == 0)
					err = errno;
				continue;
			}
			err = errno;
			goto fail;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
			           sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
			int e = errno;

			close(fd);
			/* An address family with no address here (a name
			 * that is also ::1 on a machine without IPv6). */
			if (e == EADDRNOTAVAIL && res->ai_next != NULL) {
				if (err == 0)
					err = e;
				continue;
			}
			err = e;
			goto fail;
		}
		if (listen(fd, BACKLOG) != 0) {
			err = errno;
			close(fd);
			goto fail;
		}
		l = add_listener(net, fd);
		if (l == NULL) {
			close(fd);
			freeaddrinfo(res);
			return -1;
		}
	}
	freeaddrinfo(res);
	if (net->nls > before)
		return 0;
	if (err == 0)
		err = EADDRNOTAVAIL;
	kvd_fail("listen %s: %s", spec->arg, sock_error(err));
	return -1;

fail:
	freeaddrinfo(res);
	{
		/* Say which address, when the name was not one. */
		char shown[sizeof(what) + 8];
		char given[sizeof(spec->host) + 16];

		snprintf(given, sizeof(given), strchr(spec->host, ':') ?
		         "[%s]:%s" : "%s:%s", spec->host, spec->port);
		if (strcmp(given, what) != 0)
			snprintf(shown, sizeof(shown), " (%s)", what);
		else
			shown[0] = '\0';
		if (err == EACCES && atoi(spec->port) < 1024 &&
		    atoi(spec->port) > 0)
			kvd_fail("listen %s%s: permission denied (ports below "
			         "1024 need root or CAP_NET_BIND_SERVICE)",
			         spec->arg, shown);
		else
			kvd_fail("listen %s%s: %s", spec->arg, shown,
			         sock_error(err));
	}
	return -1;
}

/* Is the UNIX socket file at path left over, with nothing listening?
 * 1: yes; 0: something answers; -1: it is not a socket (errno set). */
static int unix_stale(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat sb;
	int fd, rc, e;

	if (lstat(path, &sb) != 0)
		return 1; /* gone meanwhile: bind again */
	if (!S_ISSOCK(sb.st_mode)) {
		errno = EEXIST;
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	rc = connect(fd, (const struct sockaddr *)&sa, sizeof(sa));
	e = errno;
	close(fd);
	/* A full backlog (EAGAIN) is someone listening too. */
	return rc != 0 && e == ECONNREFUSED ? 1 : 0;
}

/* Listen on the UNIX socket spec->path, with the store's mode and group
 * (*store). Returns 0, or -1 with the fatal line written. */
static int listen_unix(struct kvd_net *net, const struct kvd_listen *spec,
                       const struct stat *store)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	const char *path = spec->path;
	struct listener *l;
	struct stat sb;
	int fd, rc, err = 0;
	const char *step = "";

	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		kvd_fail("listen unix:%s: %s", path, strerror(errno));
		return -1;
	}
	for (int tries = 0;; tries++) {
		/* Owner only until it has the store's group and mode; the
		 * main thread is still the only thread, so the umask is
		 * ours to borrow. */
		mode_t old = umask(0177);

		rc = bind(fd, (const struct sockaddr *)&sa, sizeof(sa));
		err = errno;
		umask(old);
		if (rc == 0)
			break;
		if (err != EADDRINUSE || tries > 0)
			goto fail;
		rc = unix_stale(path);
		if (rc < 0) {
			close(fd);
			kvd_fail("listen unix:%s: the file exists and is not a "
			         "socket", path);
			return -1;
		}
		if (rc == 0) {
			close(fd);
			kvd_fail("listen unix:%s: address already in use "
			         "(another server listens on it)", path);
			return -1;
		}
		if (unlink(path) != 0 && errno != ENOENT) {
			err = errno;
			step = "removing the stale socket: ";
			goto fail;
		}
		kvd_log(KVD_INFO, "removed stale socket %s (nothing listened "
		        "on it)", path);
	}
	if (store->st_gid != getegid() &&
	    chown(path, (uid_t)-1, store->st_gid) != 0) {
		err = errno;
		step = "giving it the store's group: ";
		goto fail_unlink;
	}
	if (chmod(path, store->st_mode & 0777) != 0) {
		err = errno;
		step = "giving it the store's mode: ";
		goto fail_unlink;
	}
	if (stat(path, &sb) != 0) {
		err = errno;
		goto fail_unlink;
	}
	if (listen(fd, BACKLOG) != 0) {
		err = errno;
		goto fail_unlink;
	}
	l = add_listener(net, fd);
	if (l == NULL) {
		unlink(path);
		close(fd);
		return -1;
	}
	l->own_file = true;
	memcpy(l->path, path, strlen(path) + 1);
	l->dev = sb.st_dev;
	l->ino = sb.st_ino;
	return 0;

fail_unlink:
	unlink(path);
fail:
	close(fd);
	kvd_fail("listen unix:%s: %s%s", path, step, sock_error(err));
	return -1;
}

/* A whole decimal number below limit, or -1. */
static long env_number(const char *s, long limit)
{
	long v = 0;

	if (s == NULL || *s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
		if (v >= limit)
			return -1;
	}
	return v;
}

/* Take the listening sockets systemd passed: LISTEN_FDS of them from fd 3
 * on, when LISTEN_PID is ours (sd_listen_fds(3)); LISTEN_FDNAMES, if set,
 * names them for the log. The variables are unset either way, so that
 * nothing kvd might start takes them for its own. Returns 0, or -1 with
 * the fatal line written. */
static int inherit_fds(struct kvd_net *net)
{
	const char *fds_s = getenv("LISTEN_FDS");
	const char *pid_s = getenv("LISTEN_PID");
	const char *names_s = getenv("LISTEN_FDNAMES");
	char *names = NULL, *name, *save = NULL;
	long n, pid;
	int rc = -1;

	if (fds_s == NULL)
		return 0;
	n = env_number(fds_s, MAX_INHERITED + 1);
	pid = env_number(pid_s, 1L << 30);
	if (names_s != NULL)
		names = strdup(names_s);
	if (n < 0 || pid != (long)getpid()) {
		kvd_log(KVD_WARN, "LISTEN_FDS=%.20s ignored: %s", fds_s,
		        n < 0 ? "not a number of sockets" :
		        "LISTEN_PID is not this kvd's pid");
		rc = 0;
		goto out;
	}
	name = names != NULL ? strtok_r(names, ":", &save) : NULL;
	for (int fd = 3; fd < 3 + n; fd++) {
		int type = 0, acc = 0, fl;
		socklen_t len = sizeof(int);
		struct listener *l;

		if (fcntl(fd, F_GETFD) < 0) {
			kvd_fail("LISTEN_FDS=%ld: fd %d is not open", n, fd);
			goto out;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
		    type != SOCK_STREAM ||
		    (len = sizeof(int),
		     getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len)) !=
		        0 ||
		    !acc) {
			kvd_fail("LISTEN_FDS: fd %d is not a listening stream "
			         "socket (the memcached protocol needs "
			         "ListenStream=)", fd);
			goto out;
		}
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		fl = fcntl(fd, F_GETFL);
		if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
			kvd_fail("LISTEN_FDS: fd %d: %s", fd, strerror(errno));
			goto out;
		}
		l = add_listener(net, fd);
		if (l == NULL)
			goto out;
		if (name != NULL) {
			snprintf(l->from, sizeof(l->from),
			         " (fd %d from systemd, %.40s)", fd, name);
			for (char *p = l->from; *p != '\0'; p++)
				if ((unsigned char)*p < ' ' || *p == 0x7f)
					*p = '?';
			name = strtok_r(NULL, ":", &save);
		} else {
			snprintf(l->from, sizeof(l->from),
			         " (fd %d from systemd)", fd);
		}
	}
	rc = 0;
out:
	free(names);
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return rc;
}

/* Close the listeners, and remove the socket files we made that are still
 * ours (not replaced by someone since). */
static void listeners_close(struct kvd_net *net)
{
	for (size_t i = 0; i < net->nls; i++) {
		struct listener *l = &net->ls[i];
		struct stat sb;

		if (l->own_file && stat(l->path, &sb) == 0 &&
		    sb.st_dev == l->dev && sb.st_ino == l->ino)
			unlink(l->path);
		close(l->fd);
	}
	free(net->ls);
	net->ls = NULL;
	net->nls = 0;
}

/* Make room for the descriptors the server may need: raise the soft
 * open-file limit as far as the hard one allows, and say so when that is
 * still short of --max-conns. */
static void raise_nofile(const struct kvd_net *net)
{
	/* Beside the clients: the listeners, two pipe ends and a libevent
	 * descriptor or two per worker, the store, the log, some spare. */
	rlim_t need = (rlim_t)net->max_conns + net->nls +
	              4u * net->nworkers + 64u;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need)
		return;
	if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need)
		rl.rlim_cur = need;
	else
		rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need)
		kvd_log(KVD_WARN, "open-file limit %llu is too low for "
		        "--max-conns %u: beyond about %llu clients, new ones "
		        "wait until others leave (raise it: ulimit -n, or "
		        "LimitNOFILE= in the unit)",
		        (unsigned long long)rl.rlim_cur, net->max_conns,
		        rl.rlim_cur > need - net->max_conns ?
		            (unsigned long long)(rl.rlim_cur -
		                                 (need - net->max_conns)) :
		            0ull);
}

/* Start a thread with every signal blocked (the main thread takes them). */
static int start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

static int make_pipe(int p[2])
{
	return pipe2(p, O_NONBLOCK | O_CLOEXEC);
}

/* A worker's loop, pipe and events. Returns 0, or -1 (fatal line). */
static int worker_init(struct kvd_net *net, struct worker *w)
{
	w->net = net;
	w->wake[0] = w->wake[1] = -1;
	if (pthread_mutex_init(&w->lock, NULL) != 0) {
		kvd_fail("memcached protocol server: mutex: out of memory");
		return -1;
	}
	w->lock_made = true;
	if (make_pipe(w->wake) != 0) {
		kvd_fail("memcached protocol server: pipe: %s",
		         strerror(errno));
		return -1;
	}
	w->base = event_base_new();
	if (w->base == NULL) {
		kvd_fail("memcached protocol server: cannot make an event "
		         "loop");
		return -1;
	}
	w->wake_ev = event_new(w->base, w->wake[0], EV_READ | EV_PERSIST,
	                       on_wake, w);
	if (w->wake_ev == NULL || event_add(w->wake_ev, NULL) != 0) {
		kvd_fail("memcached protocol server: out of memory");
		return -1;
	}
	if (net->idle_ms > 0) {
		struct timeval tv = {0, IDLE_SCAN_MS * 1000};

		w->idle_ev = event_new(w->base, -1, EV_PERSIST, on_idle_scan,
		                       w);
		if (w->idle_ev == NULL || event_add(w->idle_ev, &tv) != 0) {
			kvd_fail("memcached protocol server: out of memory");
			return -1;
		}
	}
	return 0;
}

static void worker_free(struct worker *w)
{
	if (w->net == NULL)
		return; /* never set up */
	if (w->idle_ev != NULL)
		event_free(w->idle_ev);
	if (w->wake_ev != NULL)
		event_free(w->wake_ev);
	if (w->base != NULL)
		event_base_free(w->base);
	if (w->wake[0] >= 0)
		close(w->wake[0]);
	if (w->wake[1] >= 0)
		close(w->wake[1]);
	if (w->lock_made)
		pthread_mutex_destroy(&w->lock);
}

static unsigned default_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1u : n > 256 ? 256u : (unsigned)n;
}

int kvd_net_start(const struct kvd_config *cfg, kv_t *kv,
                  struct kvd_net **out)
{
	struct kvd_net *net;
	struct kv_stats st;
	struct stat store;
	char why[256];
	int rc;

	*out = NULL;
	net = calloc(1, sizeof(*net));
	if (net == NULL) {
		kvd_fail("memcached protocol server: out of memory");
		return -1;
	}
	net->wake[0] = net->wake[1] = -1;

	if (inherit_fds(net) != 0)
		goto fail;
	if (cfg->nlisten == 0 && net->nls == 0) {
		if (cfg->net_given)
			kvd_log(KVD_WARN, "no --listen (and no sockets from "
			        "systemd): the memcached protocol is off, and "
			        "--threads, --max-conns, --idle-timeout and "
			        "--auth-file do nothing");
		free(net);
		return 0;
	}

	rc = kv_stats(kv, &st);
	if (rc != KV_OK) {
		kvd_fail("store '%s': stats: %s", cfg->store, kv_strerror(rc));
		goto fail;
	}
	if (stat(kv__path(kv), &store) != 0) {
		kvd_fail("store '%s': %s: %s", cfg->store, kv__path(kv),
		         strerror(errno));
		goto fail;
	}
	if (cfg->auth_file != NULL &&
	    mc_auth_load(cfg->auth_file, &net->users, &net->nusers, why,
	                 sizeof(why)) != 0) {
		kvd_fail("auth file '%s': %s", cfg->auth_file, why);
		goto fail;
	}
	for (unsigned i = 0; i < cfg->nlisten; i++) {
		const struct kvd_listen *spec = &cfg->listen[i];

		if ((spec->is_unix ? listen_unix(net, spec, &store) :
		                     listen_tcp(net, spec)) != 0)
			goto fail;
	}

	net->nworkers = cfg->threads != 0 ? cfg->threads : default_threads();
	net->max_conns = cfg->max_conns;
	net->idle_ms = (uint64_t)cfg->idle_timeout * 1000u;
	net->srv.kv = kv;
	net->srv.max_value = st.max_value;
	net->srv.threads = net->nworkers;
	net->srv.max_conns = cfg->max_conns;
	net->srv.started_ms = real_ms();
	net->srv.users = net->users;
	net->srv.nusers = net->nusers;
	raise_nofile(net);

	net->pfd = calloc(net->nls + 1, sizeof(*net->pfd));
	net->workers = calloc(net->nworkers, sizeof(*net->workers));
	if (net->pfd == NULL || net->workers == NULL) {
		kvd_fail("memcached protocol server: out of memory");
		goto fail;
	}
	for (unsigned i = 0; i < net->nworkers; i++)
		if (worker_init(net, &net->workers[i]) != 0)
			goto fail;
	if (make_pipe(net->wake) != 0) {
		kvd_fail("memcached protocol server: pipe: %s",
		         strerror(errno));
		goto fail;
	}
	net->pfd[0].fd = net->wake[0];
	net->pfd[0].events = POLLIN;
	for (size_t i = 0; i < net->nls; i++)
		net->pfd[i + 1].fd = net->ls[i].fd;

	for (unsigned i = 0; i < net->nworkers; i++) {
		struct worker *w = &net->workers[i];

		rc = start_thread(&w->thread, worker_main, w);
		if (rc != 0) {
			kvd_fail("memcached protocol server: thread: %s",
			         strerror(rc));
			goto fail;
		}
		w->started = true;
	}
	rc = start_thread(&net->acceptor, acceptor_main, net);
	if (rc != 0) {
		kvd_fail("memcached protocol server: thread: %s", strerror(rc));
		goto fail;
	}
	net->acceptor_started = true;

	for (size_t i = 0; i < net->nls; i++) {
		const struct listener *l = &net->ls[i];

		kvd_log(KVD_INFO, "listening on %s%s", l->name, l->from);
		if (!l->loopback && cfg->auth_file == NULL)
			kvd_log(KVD_WARN, "%s is reachable from other machines "
			        "and no --auth-file is given: whoever can "
			        "connect can read and change every key",
			        l->name);
	}
	if (cfg->idle_timeout == 0)
		snprintf(why, sizeof(why), "none");
	else
		snprintf(why, sizeof(why), "%u s", cfg->idle_timeout);
	kvd_log(KVD_INFO, "memcached protocol: %u worker thread%s, at most "
	        "%u connections, idle timeout %s, %s",
	        net->nworkers, net->nworkers == 1 ? "" : "s", net->max_conns,
	        why, cfg->auth_file != NULL ? "authentication required" :
	                                      "no authentication");
	*out = net;
	return 0;

fail:
	kvd_net_stop(net);
	return -1;
}

void kvd_net_tick(struct kvd_net *net)
{
	if (net != NULL)
		mc_server_tick(&net->srv);
}

void kvd_net_log_stats(struct kvd_net *net)
{
	const struct mc_counters *c;

	if (net == NULL)
		return;
	c = &net->srv.c;
	kvd_log(KVD_INFO, "memcached protocol: %" PRIu64 " connections (%"
	        PRIu64 " since start, %" PRIu64 " refused over --max-conns), "
	        "%" PRIu64 " bytes read, %" PRIu64 " written, %" PRIu64
	        " gets (%" PRIu64 " hits), %" PRIu64 " sets",
	        atomic_load(&c->curr_connections),
	        atomic_load(&c->total_connections),
	        atomic_load(&c->rejected_connections),
	        atomic_load(&c->bytes_read), atomic_load(&c->bytes_written),
	        atomic_load(&c->cmd_get), atomic_load(&c->get_hits),
	        atomic_load(&c->cmd_set));
}

void kvd_net_stop(struct kvd_net *net)
{
	if (net == NULL)
		return;
	if (net->acceptor_started) {
		atomic_store(&net->stopping, true);
		poke(net->wake[1]);
		pthread_join(net->acceptor, NULL);
	}
	for (unsigned i = 0; i < net->nworkers && net->workers != NULL; i++) {
		struct worker *w = &net->workers[i];

		if (!w->started)
			continue;
		atomic_store(&w->stop, true);
		poke(w->wake[1]);
		pthread_join(w->thread, NULL);
	}
	for (unsigned i = 0; i < net->nworkers && net->workers != NULL; i++)
		worker_free(&net->workers[i]);
	free(net->workers);
	listeners_close(net);
	if (net->wake[0] >= 0)
		close(net->wake[0]);
	if (net->wake[1] >= 0)
		close(net->wake[1]);
	free(net->pfd);
	if (net->users != NULL)
		mc_auth_free(net->users, net->nusers);
	free(net);
	libevent_global_shutdown();
}
