/*
 * sys.h - the few things kv asks of the system beyond C and libkv, with a
 * file per platform (sys_posix.c, sys_win32.c), so the commands carry no
 * platform conditionals.
 */
#ifndef KV_CLI_SYS_H
#define KV_CLI_SYS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

/* At start: a reader that goes away gives EPIPE (reported, exit 2), not a
 * silent death; stdin and stdout carry bytes unchanged (no text mode). */
void cli_sys_init(void);

uint64_t cli_sys_wall_ms(void);
uint64_t cli_sys_mono_ms(void);
void cli_sys_sleep_ms(unsigned ms);

/* open(2) for reading, or for writing an existing file from its start;
 * not inherited by children, binary. */
int cli_sys_open_read(const char *path);
int cli_sys_open_trunc(const char *path);

/* lstat where there are symbolic links, stat elsewhere. */
int cli_sys_lstat(const char *path, struct stat *st);

/* Make a new file from a mkstemp template ("...XXXXXX"), mode 0600. */
int cli_sys_mkstemp(char *tmpl);

/* Flush a file to its device. */
int cli_sys_fsync(int fd);

/* Put from over to, replacing to if it exists. */
int cli_sys_replace(const char *from, const char *to);

/* gmtime_r. */
bool cli_sys_gmtime(time_t t, struct tm *out);

#endif /* KV_CLI_SYS_H */
