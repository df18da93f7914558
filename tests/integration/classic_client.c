/*
 * classic_client.c - the second half of the classic two-program example:
 * open the named mapping another process made and print its message.
 *
 *   classic_client STORE KEY
 *
 * Attaches to STORE read-only (kv_open, KV_RDONLY) and writes the value of
 * KEY to stdout, byte for byte, with nothing added. Exit 0; 1 if the key is
 * absent; 2 on any other error, with one line on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv.h"

int main(int argc, char **argv)
{
	kv_t *kv = NULL;
	char probe, *buf = NULL;
	size_t vlen = 0, off = 0;
	int rc, status = 2;

	if (argc != 3) {
		fprintf(stderr, "usage: classic_client STORE KEY\n");
		return 2;
	}
	rc = kv_open(argv[1], KV_RDONLY, &kv);
	if (rc != KV_OK) {
		fprintf(stderr, "classic_client: open %s: %s\n", argv[1],
		        kv_strerror(rc));
		return 2;
	}
	/* Ask for the size, then fetch; grow if a writer made it longer. */
	rc = kv_get(kv, argv[2], strlen(argv[2]), &probe, 0, &vlen);
	while (rc == KV_ERANGE) {
		char *bigger = realloc(buf, vlen != 0 ? vlen : 1);

		if (bigger == NULL)
			break;
		buf = bigger;
		rc = kv_get(kv, argv[2], strlen(argv[2]), buf, vlen, &vlen);
	}
	if (rc != KV_OK) {
		fprintf(stderr, "classic_client: get: %s\n", kv_strerror(rc));
		status = rc == KV_ENOTFOUND ? 1 : 2;
		goto out;
	}
	while (off < vlen) {
		ssize_t n = write(STDOUT_FILENO, buf + off, vlen - off);

		if (n <= 0)
			goto out;
		off += (size_t)n;
	}
	status = 0;
out:
	free(buf);
	kv_close(kv);
	return status;
}
