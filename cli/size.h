/*
 * size.h - the one parser of sizes ("64M", "4G", "512KiB", "4096") for
 * kv, kvd and the Python module, so every tool reads them alike.
 */
#ifndef KV_SIZE_H
#define KV_SIZE_H

#include <stdint.h>

/* A whole number of bytes, > 0, with an optional binary suffix K, M, G, T
 * (either case, optionally followed by "B", or by "iB" after a suffix:
 * 64M, 4G, 512KiB, 4096, 4096B); anything that overflows 64 bits is
 * refused. Returns 0 with *out set, or -1 with *why a static string
 * saying what is wrong (-2 when the number is too large). */
int kv_size_parse(const char *s, uint64_t *out, const char **why);

#endif /* KV_SIZE_H */
