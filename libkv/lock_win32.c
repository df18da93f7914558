/*
 * lock_win32.c - the writer lock on Windows: the named mutex
 * Local\kv.NAME:lock (Local\kv:file:HASH:lock for a file store; ':' is
 * outside a store name's alphabet, so no store's section can take the
 * name of another's lock), held by each read-write handle. The header's lock line is unused.
 *
 * A mutex whose owner thread ends while holding it is "abandoned": the next
 * wait returns WAIT_ABANDONED and gives it the mutex. That is the owner-died
 * case, and lock.c runs the same journal recovery as on Linux. Windows
 * releases a named mutex when its holder ends however it ends, and the
 * object lives only while some process holds a handle, so none of Linux's
 * stale locks (another boot, a lost robust list, damaged bytes) can happen
 * here.
 *
 * A Windows mutex is recursive: the thread that holds it may wait on it
 * again and succeed. libkv never takes the writer lock twice in one
 * thread, so this never matters.
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "kv_internal.h"

static int open_lock(struct kv *kv)
{
	size_t n = wcslen(kv->os.wname);
	wchar_t *w = malloc((n + 6) * sizeof *w);
	if (w == NULL)
		return KV_ENOMEM;
	memcpy(w, kv->os.wname, n * sizeof *w);
	memcpy(w + n, L":lock", 6 * sizeof *w); /* with its NUL */
	HANDLE m = CreateMutexW(NULL, FALSE, w);
	free(w);
	if (m == NULL)
		return GetLastError() == ERROR_ACCESS_DENIED ? KV_EPERM : KV_ESYS;
	kv->os.lock = m;
	return KV_OK;
}

int kv__os_lock_create(struct kv *kv)
{
	return open_lock(kv);
}

int kv__os_lock_attach(struct kv *kv)
{
	return open_lock(kv);
}

void kv__os_lock_detach(struct kv *kv)
{
	if (kv->os.lock != NULL)
		CloseHandle(kv->os.lock);
	kv->os.lock = NULL;
}

static int wait_lock(struct kv *kv, DWORD ms)
{
	switch (WaitForSingleObject(kv->os.lock, ms)) {
	case WAIT_OBJECT_0:
		return KV_OK;
	case WAIT_ABANDONED:
		return KV_LOCK_DIED;
	case WAIT_TIMEOUT:
		return KV_EBUSY;
	default:
		return KV_ESYS;
	}
}

int kv__os_lock_acquire(struct kv *kv, uint64_t deadline)
{
	uint64_t now = kv__os_mono_ms();
	return wait_lock(kv, deadline > now ? (DWORD)(deadline - now) : 0);
}

int kv__os_lock_try(struct kv *kv)
{
	return wait_lock(kv, 0);
}

void kv__os_lock_taken(struct kv *kv)
{
	/* For kv check and logs only: the mutex knows its owner. */
	atomic_store_explicit(&kv__hdr(kv)->owner_tid,
	                      (uint32_t)GetCurrentThreadId(),
	                      memory_order_relaxed);
}

void kv__os_lock_consistent(struct kv *kv)
{
	(void)kv; /* an abandoned mutex is sound once taken */
}

void kv__os_lock_release(struct kv *kv)
{
	ReleaseMutex(kv->os.lock);
}

int kv__lock_state(struct kv *kv, char *why, size_t cap)
{
	if (kv->rdonly || kv->os.lock == NULL) {
		snprintf(why, cap, "writer lock not inspected (read-only)");
		return KV_HOLDER_NONE;
	}
	int rc = wait_lock(kv, 0);
	if (rc == KV_OK || rc == KV_LOCK_DIED) {
		/* Taken to look. An abandoned mutex is no longer abandoned
		 * once taken, so recover now, as the next writer would. */
		if (rc == KV_LOCK_DIED)
			(void)kv__recover_locked(kv);
		ReleaseMutex(kv->os.lock);
		snprintf(why, cap, rc == KV_LOCK_DIED
		                       ? "writer lock was abandoned by a writer "
		                         "that died; recovered"
		                       : "writer lock free");
		return KV_HOLDER_NONE;
	}
	snprintf(why, cap, "writer lock held by a live process");
	return KV_HOLDER_LIVE;
}

int kv__break_unsure(struct kv *kv, unsigned settle_ms)
{
	(void)settle_ms;
	return kv->rdonly ? KV_ERDONLY : KV_EBUSY;
}
