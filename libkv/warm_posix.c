/*
 * warm_posix.c - a new handle's page tables, filled in the background.
 *
 * Why
 *   A process that has just mapped a store has no page-table entries for
 *   it: its first touch of each 4 KiB page is a minor fault (the page is
 *   already in memory; the kernel only maps it, with up to 15 of its
 *   neighbours). A get touches a random bucket and a random item, so for
 *   its first seconds a fresh reader over a large store faults on a good
 *   share of its gets, a few microseconds each: its p99 was 6.8 times
 *   its steady p99 (kv-bench --phases fresh, 1M keys, 1 GiB store).
 *   Filling the page tables is cheap in bulk (about 50 ms per GiB with
 *   MADV_POPULATE_READ) and dear one fault at a time.
 *
 *   On a virtual machine whose hypervisor shadows the guest's page
 *   tables, there is a second cost the guest kernel never sees: the
 *   first access through each new entry makes the hypervisor fill its
 *   own. There a fresh reader stayed at a quarter of its steady speed for
 *   its first 400 ms even with the page tables populated. Reading one
 *   byte of each page from the warm-up thread pays that in the
 *   background as well (same address space, so the same shadow tables);
 *   on bare metal it costs a TLB miss per page, a few ms per GiB.
 *
 * What
 *   kv_open starts one thread per handle, unless the store is small
 *   (KV_WARM_MIN: it warms in a few thousand gets anyway) or the caller
 *   passed KV_NOWARM (the kv CLI does: a one-shot command gets nothing
 *   from it). The thread populates the index first, as every get reads
 *   it, then the page table and the arena's pages in use (those below
 *   page_bump: the rest hold nothing a get can reach), in 2 MiB steps.
 *   The caller's gets go on meanwhile and never wait for it. kv_close
 *   stops it between two steps and joins it before unmapping. Nothing is
 *   written: MADV_POPULATE_READ maps pages read-only as a read would
 *   (kernels before 5.14 lack it: then the reads alone do it). A store's pages are all allocated when it is created
 *   (posix_fallocate), so warming allocates no memory but page tables;
 *   for a store in a file, it reads the file into the page cache ahead
 *   of the gets that would.
 *
 *   The thread blocks every signal, so an application's handlers run on
 *   its own threads. After fork() the child has no such thread: its
 *   kv_close sees the handle was warmed by another process and does not
 *   join.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kv_internal.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14 */
#endif

#define WARM_STEP (2u * 1024u * 1024u)

struct kv_warm {
	pthread_t thread;
	uint32_t pid;            /* the process the thread runs in */
	_Atomic bool stop;
	_Atomic bool done;
	uint64_t gen;            /* the geometry the ranges belong to */
	const uint8_t *base;
	uint64_t ranges[2][2];   /* [start, end) byte offsets, in order */
};

/* Read one byte of each page of [p, p + len). A writer may be changing
 * those bytes: the value is thrown away, so ThreadSanitizer is told not
 * to look. */
#ifdef KV_TSAN
__attribute__((no_sanitize("thread"), noinline))
#endif
static void touch(const uint8_t *p, size_t len, size_t pagesz)
{
	for (size_t off = 0; off < len; off += pagesz)
		(void)*(const volatile uint8_t *)(p + off);
}

static void *warm_main(void *arg)
{
	struct kv_warm *w = arg;
	size_t pagesz = (size_t)sysconf(_SC_PAGESIZE);
	bool fallback = false;

	for (int r = 0; r < 2; r++) {
		uint64_t off = w->ranges[r][0], end = w->ranges[r][1];
		while (off < end) {
			/* A resize moves the index, and a shrink gives the
			 * old one's memory back: warming it again would only
			 * take that memory back. */
			if (atomic_load_explicit(&w->stop,
			                         memory_order_relaxed) ||
			    atomic_load_explicit(
			        &((const struct kv_hdr *)(const void *)w->base)
			             ->gen,
			        memory_order_relaxed) != w->gen)
				goto out;
			size_t len = end - off < WARM_STEP ? (size_t)(end - off)
			                                   : WARM_STEP;
			uint8_t *p = (uint8_t *)(uintptr_t)(w->base + off);
			if (!fallback &&
			    madvise(p, len, MADV_POPULATE_READ) != 0) {
				/* EINVAL: a kernel without it. Anything else
				 * (EFAULT past the file's end, a hardware
				 * error) ends the warm-up: it is a hint. */
				if (errno != EINVAL)
					goto out;
				fallback = true;
			}
			/* Then read a byte of each page (see the top). */
			touch(p, len, pagesz);
			off += len;
		}
	}
out:
	atomic_store_explicit(&w->done, true, memory_order_release);
	return NULL;
}

void kv__warm_start(struct kv *kv)
{
	struct kv_warm *w;
	sigset_t all, old;
	uint64_t bump, used_end, page_align;

	if (kv->size < KV_WARM_MIN || getenv("KV_NOWARM") != NULL)
		return;
	w = calloc(1, sizeof *w);
	if (w == NULL)
		return;
	/* page_bump is read racily: a page handed out later is warmed by
	 * the gets that reach it. Bounded by the geometry whatever it says. */
	bump = atomic_load_explicit(&kv__hdr(kv)->page_bump,
	                            memory_order_relaxed);
	if (bump > kv->npages)
		bump = kv->npages;
	used_end = kv->arena_off + bump * (uint64_t)kv->page_size;
	page_align = (uint64_t)sysconf(_SC_PAGESIZE);
	w->base = kv->base;
	w->pid = kv__os_pid();
	w->gen = atomic_load_explicit(&kv->gen, memory_order_relaxed);
	/* The index, then the page table and the arena in use. Offsets are
	 * page-aligned for madvise: index_off and arena_off are. */
	w->ranges[0][0] = kv->index_off & ~(page_align - 1);
	w->ranges[0][1] = kv->ptab_off + kv->npages * sizeof(struct kv_page);
	w->ranges[1][0] = kv->arena_off;
	w->ranges[1][1] = used_end;

	pthread_attr_t attr;
	if (pthread_attr_init(&attr) != 0) {
		free(w);
		return;
	}
	pthread_attr_setstacksize(&attr, 64u * 1024u);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&w->thread, &attr, warm_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		free(w);
		return;
	}
	kv->warm = w;
}

void kv__warm_stop(struct kv *kv)
{
	struct kv_warm *w = kv->warm;

	if (w == NULL)
		return;
	kv->warm = NULL;
	if (w->pid != kv__os_pid())
		return; /* a forked child: the thread is its parent's */
	atomic_store_explicit(&w->stop, true, memory_order_relaxed);
	pthread_join(w->thread, NULL);
	free(w);
}

bool kv__warm_done(const struct kv *kv)
{
	return kv->warm == NULL ||
	       atomic_load_explicit(&kv->warm->done, memory_order_acquire);
}
