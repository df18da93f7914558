/*
 * lock_posix.h - the Linux writer lock's own calls (lock_posix.c, owner.c),
 * for those files and the tests that look inside them. Private.
 */
#ifndef KV_LOCK_POSIX_H
#define KV_LOCK_POSIX_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "kv_internal.h"

/* owner.c: thread identity and liveness, from /proc. */
enum { KV_THREAD_ALIVE = 0, KV_THREAD_GONE = 1, KV_THREAD_UNKNOWN = 2 };
uint64_t kv__boot_tag(void);              /* 0 when unknown */
uint64_t kv__boot_tag_parse(const char *boot_id);
void kv__set_test_boot_tag(uint64_t tag); /* tests: pretend a boot; 0 off */
uint32_t kv__gettid(void);
int kv__thread_start(uint32_t tid, uint64_t *start);
uint32_t kv__pidns(void);
/* Does thread tid's process map the object dev/ino? 1 yes; 0 not that we
 * can see (a device or inode may read differently through overlayfs or a
 * btrfs subvolume); 2 it maps nothing at all (a kernel thread); -1 we may
 * not look. */
int kv__thread_maps(uint32_t tid, uint64_t dev, uint64_t ino);

int kv__init_mutex(pthread_mutex_t *m);
/* Judge the holder named by lock word `word` (see lock_posix.c). */
enum kv_holder kv__judge(struct kv *kv, uint32_t word, char *why,
                         size_t cap);

#endif /* KV_LOCK_POSIX_H */
