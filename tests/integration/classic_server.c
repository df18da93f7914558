/*
 * classic_server.c - the first half of the classic two-program example:
 * create a named mapping (a kv store) and write a message into it, then stay
 * up so the mapping has an owner while another process reads it.
 *
 *   classic_server STORE KEY MESSAGE
 *
 * Creates STORE (or adopts it) with kv_create, puts MESSAGE under KEY,
 * prints "ready" on stdout, and waits until stdin reaches EOF or SIGTERM or
 * SIGINT arrives; then detaches and exits 0. The store stays: removing it is
 * its creator's explicit choice (the test does it). Exit 2 on any error,
 * with one line on stderr.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "kv.h"

int main(int argc, char **argv)
{
	struct kv_options opts;
	struct pollfd pfd[2];
	sigset_t stop;
	kv_t *kv = NULL;
	int sfd, rc;

	if (argc != 4) {
		fprintf(stderr, "usage: classic_server STORE KEY MESSAGE\n");
		return 2;
	}
	/* Take the stop signals synchronously: no handler can interrupt a
	 * library call, and a signal that comes early is not lost. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigprocmask(SIG_BLOCK, &stop, NULL);
	sfd = signalfd(-1, &stop, SFD_CLOEXEC);
	if (sfd < 0) {
		fprintf(stderr, "classic_server: signalfd: %s\n",
		        strerror(errno));
		return 2;
	}

	memset(&opts, 0, sizeof(opts));
	opts.size = 4u * 1024 * 1024;
	rc = kv_create(argv[1], &opts, &kv);
	if (rc != KV_OK) {
		fprintf(stderr, "classic_server: create %s: %s\n", argv[1],
		        kv_strerror(rc));
		return 2;
	}
	rc = kv_put(kv, argv[2], strlen(argv[2]), argv[3], strlen(argv[3]),
	            NULL);
	if (rc != KV_OK) {
		fprintf(stderr, "classic_server: put: %s\n", kv_strerror(rc));
		kv_close(kv);
		return 2;
	}
	printf("ready\n");
	fflush(stdout);

	pfd[0].fd = STDIN_FILENO;
	pfd[0].events = POLLIN;
	pfd[1].fd = sfd;
	pfd[1].events = POLLIN;
	for (;;) {
		char buf[256];

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents != 0)
			break; /* SIGTERM or SIGINT */
		if (pfd[0].revents != 0) {
			ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));

			if (n == 0 || (n < 0 && errno != EINTR))
				break; /* EOF: our parent is done with us */
		}
	}
	kv_close(kv);
	close(sfd);
	return 0;
}
