/*
 * os_win32.c - os.h on Windows: clocks, randomness, processes, and the
 * store object.
 *
 * Store NAME is the pagefile-backed section Local\kv.NAME, made with
 * CreateFileMappingW(INVALID_HANDLE_VALUE, ..., SEC_COMMIT): the whole size
 * is committed at creation, so a full pagefile is KV_ENOSPC there and never
 * a fault in a client later. A name with a path separator is a file-backed
 * store: CreateFileW + CreateFileMappingW, which survives a reboot.
 *
 * Lifetime differs from Linux: a section lives while any process holds a
 * handle to it, so the store lives while kvd (or any client) runs, and a
 * destroyed store cannot be unlinked: kv_destroy marks it dead, and it goes
 * when the last process that maps it detaches (kvd stops when it sees the
 * mark).
 *
 * Access: objects are created with a security descriptor that gives the
 * creating user all access and nobody else any (the equivalent of 0600);
 * a mode with group or other read bits also lets every authenticated user
 * read it, never write.
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <bcrypt.h>
#include <sddl.h>
#include <stdio.h>
#include <string.h>

#include "kv_internal.h"

#define KV_WPATH 4096

uint64_t kv__os_wall_ms(void)
{
	FILETIME ft;
	GetSystemTimePreciseAsFileTime(&ft);
	uint64_t t = (uint64_t)ft.dwHighDateTime << 32 | ft.dwLowDateTime;
	return (t - UINT64_C(116444736000000000)) / 10000u;
}

uint64_t kv__os_mono_ns(void)
{
	static LARGE_INTEGER freq;
	LARGE_INTEGER c;
	if (freq.QuadPart == 0)
		QueryPerformanceFrequency(&freq);
	QueryPerformanceCounter(&c);
	uint64_t s = (uint64_t)(c.QuadPart / freq.QuadPart);
	uint64_t r = (uint64_t)(c.QuadPart % freq.QuadPart);
	return s * 1000000000u + r * 1000000000u / (uint64_t)freq.QuadPart;
}

void kv__os_sleep_us(unsigned us)
{
	Sleep(us < 1000 ? 1 : us / 1000);
}

void kv__os_yield(void)
{
	SwitchToThread();
}

int kv__os_random(void *buf, size_t n)
{
	NTSTATUS s = BCryptGenRandom(NULL, buf, (ULONG)n,
	                             BCRYPT_USE_SYSTEM_PREFERRED_RNG);
	return s >= 0 ? KV_OK : KV_ESYS;
}

uint32_t kv__os_pid(void)
{
	return (uint32_t)GetCurrentProcessId();
}

_Noreturn void kv__os_die(void)
{
	TerminateProcess(GetCurrentProcess(), 137);
	for (;;)
		Sleep(1000);
}

bool kv__os_pid_gone(uint32_t pid)
{
	if (pid == 0)
		return false;
	HANDLE p = OpenProcess(SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION,
	                       FALSE, pid);
	if (p == NULL)
		return GetLastError() == ERROR_INVALID_PARAMETER;
	bool gone = WaitForSingleObject(p, 0) == WAIT_OBJECT_0;
	CloseHandle(p);
	return gone;
}

static bool is_file_store(const char *name)
{
	return strchr(name, '/') != NULL || strchr(name, '\\') != NULL;
}

void kv__os_store_path(const char *name, char *out, size_t cap)
{
	if (is_file_store(name))
		snprintf(out, cap, "%s", name);
	else
		snprintf(out, cap, "Local\\kv.%s", name);
}

static int status_of_error(DWORD e)
{
	switch (e) {
	case ERROR_FILE_NOT_FOUND:
	case ERROR_PATH_NOT_FOUND:
		return KV_ENOSTORE;
	case ERROR_ACCESS_DENIED:
	case ERROR_SHARING_VIOLATION:
	case ERROR_WRITE_PROTECT:
		return KV_EPERM;
	case ERROR_DISK_FULL:
	case ERROR_HANDLE_DISK_FULL:
	case ERROR_COMMITMENT_LIMIT:
		return KV_ENOSPC;
	case ERROR_NOT_ENOUGH_MEMORY:
	case ERROR_OUTOFMEMORY:
		return KV_ENOMEM;
	case ERROR_TOO_MANY_OPEN_FILES:
		return KV_ENOFD;
	case ERROR_INVALID_NAME:
	case ERROR_FILENAME_EXCED_RANGE:
		return KV_ENAME;
	case ERROR_FILE_EXISTS:
	case ERROR_ALREADY_EXISTS:
		return KV_ESTOREEXISTS;
	default:
		return KV_ESYS;
	}
}

/* The wide name of an object: L"Local\kv.NAME" + suffix, or for a file
 * store its full path (suffix then goes into a name of its own, see
 * kv__os_object_name). */
static wchar_t *widen(const char *s)
{
	int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL,
	                            0);
	if (n <= 0)
		return NULL;
	wchar_t *w = malloc((size_t)n * sizeof *w);
	if (w != NULL &&
	    MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, n) <= 0) {
		free(w);
		w = NULL;
	}
	return w;
}

/* A kernel object name for the store: Local\kv.NAME, or for a file store
 * Local\kv.file.HASH of its full path (object names may not hold '\'). */
static wchar_t *object_name(const char *name)
{
	wchar_t *w = NULL;
	if (!is_file_store(name)) {
		char buf[KV_MAX_NAME + 16];
		snprintf(buf, sizeof buf, "Local\\kv.%s", name);
		return widen(buf);
	}
	wchar_t *rel = widen(name);
	if (rel == NULL)
		return NULL;
	wchar_t full[KV_WPATH];
	DWORD n = GetFullPathNameW(rel, KV_WPATH, full, NULL);
	free(rel);
	if (n == 0 || n >= KV_WPATH)
		return NULL;
	uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a */
	for (DWORD i = 0; i < n; i++) {
		wchar_t c = full[i];
		if (c >= L'A' && c <= L'Z')
			c = (wchar_t)(c - L'A' + L'a'); /* paths ignore case */
		h = (h ^ (uint64_t)c) * UINT64_C(1099511628211);
	}
	char buf[64];
	/* ':' is not in a store name's alphabet, so this never equals a
	 * named store's object, nor its lock's or claim's. */
	snprintf(buf, sizeof buf, "Local\\kv:file:%016llx",
	         (unsigned long long)h);
	w = widen(buf);
	return w;
}

/* A security descriptor: the current user all access; with share_read,
 * authenticated users read access. Free with LocalFree. */
static PSECURITY_DESCRIPTOR make_sd(bool share_read)
{
	HANDLE tok;
	if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok))
		return NULL;
	unsigned char buf[256];
	DWORD len = 0;
	PSECURITY_DESCRIPTOR sd = NULL;
	LPWSTR sid = NULL;
	if (GetTokenInformation(tok, TokenUser, buf, sizeof buf, &len) &&
	    ConvertSidToStringSidW(((TOKEN_USER *)(void *)buf)->User.Sid,
	                           &sid)) {
		wchar_t sddl[256];
		_snwprintf(sddl, 256, L"D:P(A;;GA;;;%ls)%ls", sid,
		           share_read ? L"(A;;GR;;;AU)" : L"");
		sddl[255] = L'\0';
		if (!ConvertStringSecurityDescriptorToSecurityDescriptorW(
		        sddl, SDDL_REVISION_1, &sd, NULL))
			sd = NULL;
		LocalFree(sid);
	}
	CloseHandle(tok);
	return sd;
}

static void init_os(struct kv_os *o)
{
	memset(o, 0, sizeof *o);
}

static void identify_file(struct kv_os *o)
{
	BY_HANDLE_FILE_INFORMATION fi;
	if (GetFileInformationByHandle(o->file, &fi)) {
		o->dev = fi.dwVolumeSerialNumber;
		o->ino = (uint64_t)fi.nFileIndexHigh << 32 | fi.nFileIndexLow;
	}
}

int kv__os_create(const char *name, const struct kv_os_create *c,
                  struct kv_os *o)
{
	init_os(o);
	/* Large pages of a section need SeLockMemoryPrivilege and
	 * SEC_LARGE_PAGES; not done. */
	if (c->huge)
		return KV_ENOHUGE;
	PSECURITY_DESCRIPTOR sd = make_sd((c->mode & 0044) != 0);
	SECURITY_ATTRIBUTES sa = {sizeof sa, sd, FALSE};
	int rc = KV_OK;
	DWORD hi = (DWORD)(c->size >> 32), lo = (DWORD)c->size;

	o->wname = object_name(name);
	if (o->wname == NULL) {
		rc = KV_ENAME;
		goto out;
	}
	if (is_file_store(name)) {
		wchar_t *path = widen(name);
		if (path == NULL) {
			rc = KV_ENAME;
			goto out;
		}
		o->file = CreateFileW(path, GENERIC_READ | GENERIC_WRITE,
		                      FILE_SHARE_READ | FILE_SHARE_WRITE |
		                          FILE_SHARE_DELETE,
		                      &sa, CREATE_NEW, FILE_ATTRIBUTE_NORMAL,
		                      NULL);
		free(path);
		if (o->file == INVALID_HANDLE_VALUE) {
			o->file = NULL;
			rc = status_of_error(GetLastError());
			goto out;
		}
		LARGE_INTEGER sz;
		sz.QuadPart = (LONGLONG)c->size;
		if (!SetFilePointerEx(o->file, sz, NULL, FILE_BEGIN) ||
		    !SetEndOfFile(o->file)) {
			rc = status_of_error(GetLastError());
			goto fail;
		}
		identify_file(o);
		o->section = CreateFileMappingW(o->file, NULL, PAGE_READWRITE,
		                                0, 0, NULL);
	} else {
		SetLastError(0);
		o->section = CreateFileMappingW(INVALID_HANDLE_VALUE, &sa,
		                                PAGE_READWRITE | SEC_COMMIT,
		                                hi, lo, o->wname);
		if (o->section != NULL &&
		    GetLastError() == ERROR_ALREADY_EXISTS) {
			CloseHandle(o->section);
			o->section = NULL;
			rc = KV_ESTOREEXISTS;
			goto out;
		}
		o->dev = 0;
		o->ino = (uint64_t)(uintptr_t)o->section;
	}
	if (o->section == NULL) {
		rc = status_of_error(GetLastError());
		goto fail;
	}
	o->size = c->size;
	goto out;
fail:
	if (o->file != NULL) {
		CloseHandle(o->file);
		o->file = NULL;
		kv__os_remove(name);
	}
out:
	if (rc != KV_OK) {
		free(o->wname);
		o->wname = NULL;
	}
	LocalFree(sd);
	return rc;
}

/* The size of a section: map it whole and ask. */
static int section_size(HANDLE section, bool rdonly, uint64_t *size)
{
	void *v = MapViewOfFile(section, rdonly ? FILE_MAP_READ
	                                        : FILE_MAP_READ | FILE_MAP_WRITE,
	                        0, 0, 0);
	if (v == NULL)
		return status_of_error(GetLastError());
	MEMORY_BASIC_INFORMATION mi;
	SIZE_T n = VirtualQuery(v, &mi, sizeof mi);
	UnmapViewOfFile(v);
	if (n == 0)
		return KV_ESYS;
	*size = mi.RegionSize;
	return KV_OK;
}

int kv__os_open(const char *name, bool rdonly, bool must_own,
                struct kv_os *o)
{
	(void)must_own; /* the security descriptor keeps others out */
	init_os(o);
	int rc = KV_OK;
	o->wname = object_name(name);
	if (o->wname == NULL)
		return KV_ENAME;
	if (is_file_store(name)) {
		wchar_t *path = widen(name);
		if (path == NULL) {
			rc = KV_ENAME;
			goto fail;
		}
		o->file = CreateFileW(path,
		                      rdonly ? GENERIC_READ
		                             : GENERIC_READ | GENERIC_WRITE,
		                      FILE_SHARE_READ | FILE_SHARE_WRITE |
		                          FILE_SHARE_DELETE,
		                      NULL, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL,
		                      NULL);
		free(path);
		if (o->file == INVALID_HANDLE_VALUE) {
			o->file = NULL;
			rc = status_of_error(GetLastError());
			goto fail;
		}
		identify_file(o);
		LARGE_INTEGER sz;
		if (!GetFileSizeEx(o->file, &sz)) {
			rc = status_of_error(GetLastError());
			goto fail;
		}
		o->size = (uint64_t)sz.QuadPart;
		if (o->size == 0)
			return KV_OK; /* being made: kv__os_size waits */
		o->section = CreateFileMappingW(
		    o->file, NULL, rdonly ? PAGE_READONLY : PAGE_READWRITE, 0,
		    0, NULL);
		if (o->section == NULL) {
			rc = status_of_error(GetLastError());
			goto fail;
		}
		return KV_OK;
	}
	o->section = OpenFileMappingW(rdonly ? FILE_MAP_READ
	                                     : FILE_MAP_READ | FILE_MAP_WRITE,
	                              FALSE, o->wname);
	if (o->section == NULL) {
		rc = status_of_error(GetLastError());
		goto fail;
	}
	o->ino = (uint64_t)(uintptr_t)o->section;
	rc = section_size(o->section, rdonly, &o->size);
	if (rc != KV_OK)
		goto fail;
	return KV_OK;
fail:
	kv__os_close(o);
	return rc;
}

int kv__os_size(struct kv_os *o, uint64_t *size)
{
	if (o->file != NULL && o->section == NULL) {
		LARGE_INTEGER sz;
		if (!GetFileSizeEx(o->file, &sz))
			return status_of_error(GetLastError());
		o->size = (uint64_t)sz.QuadPart;
		if (o->size != 0) {
			o->section = CreateFileMappingW(o->file, NULL,
			                                PAGE_READWRITE, 0, 0,
			                                NULL);
			if (o->section == NULL)
				o->section = CreateFileMappingW(
				    o->file, NULL, PAGE_READONLY, 0, 0, NULL);
			if (o->section == NULL)
				return status_of_error(GetLastError());
		}
	}
	*size = o->size;
	return KV_OK;
}

int kv__os_map(struct kv_os *o, uint64_t size, bool rdonly, void **base)
{
	if (o->section == NULL)
		return KV_ENOTREADY;
	void *v = MapViewOfFile(o->section,
	                        rdonly ? FILE_MAP_READ
	                               : FILE_MAP_READ | FILE_MAP_WRITE,
	                        0, 0, (SIZE_T)size);
	if (v == NULL)
		return status_of_error(GetLastError());
	*base = v;
	return KV_OK;
}

/* A section's size is fixed when it is made, so stores do not grow on
 * Windows: the mapping is the store, nothing more is reserved. */
int kv__os_map_reserved(struct kv_os *o, uint64_t size, uint64_t reserve,
                        bool rdonly, void **base, uint64_t *reserved)
{
	(void)reserve;
	*reserved = size;
	return kv__os_map(o, size, rdonly, base);
}

int kv__os_map_more(struct kv_os *o, void *base, uint64_t from, uint64_t to,
                    bool rdonly)
{
	(void)o;
	(void)base;
	(void)from;
	(void)to;
	(void)rdonly;
	return KV_ENOTSUP;
}

bool kv__os_can_grow(void)
{
	return false;
}

int kv__os_resize_lock(struct kv_os *o)
{
	(void)o;
	return KV_ENOTSUP;
}

void kv__os_resize_unlock(struct kv_os *o)
{
	(void)o;
}

int kv__os_grow(struct kv_os *o, uint64_t from, uint64_t size)
{
	(void)o;
	(void)from;
	(void)size;
	return KV_ENOTSUP;
}

void kv__os_release(struct kv_os *o, uint64_t from, uint64_t to)
{
	(void)o;
	(void)from;
	(void)to;
}

void kv__os_unmap(void *base, uint64_t size)
{
	(void)size;
	if (base != NULL)
		UnmapViewOfFile(base);
}

uint64_t kv__os_mem_page_size(const void *base, uint64_t size)
{
	SYSTEM_INFO si;
	(void)base;
	(void)size;
	GetSystemInfo(&si);
	return si.dwPageSize;
}

/* Warming (warm_posix.c) is not done on Windows: a view's pages are
 * mapped on first touch and kept in the working set, and there is no
 * cheap bulk call that fills the page tables without reading every
 * page. KV_NOWARM is accepted and changes nothing. */
void kv__warm_start(struct kv *kv)
{
	(void)kv;
}

void kv__warm_stop(struct kv *kv)
{
	(void)kv;
}

bool kv__warm_done(const struct kv *kv)
{
	(void)kv;
	return true;
}

void kv__os_close(struct kv_os *o)
{
	if (o->claim != NULL) {
		CloseHandle(o->claim);
		o->claim = NULL;
	}
	if (o->section != NULL)
		CloseHandle(o->section);
	if (o->file != NULL)
		CloseHandle(o->file);
	o->section = NULL;
	o->file = NULL;
	free(o->wname);
	o->wname = NULL;
}

int kv__os_remove(const char *name)
{
	if (!is_file_store(name)) {
		/* A section has no name to remove: it goes with the last
		 * handle. It must exist for "destroy" to mean anything. */
		wchar_t *w = object_name(name);
		if (w == NULL)
			return KV_ENAME;
		HANDLE s = OpenFileMappingW(FILE_MAP_READ, FALSE, w);
		free(w);
		if (s == NULL)
			return status_of_error(GetLastError());
		CloseHandle(s);
		return KV_OK;
	}
	wchar_t *path = widen(name);
	if (path == NULL)
		return KV_ENAME;
	BOOL ok = DeleteFileW(path);
	DWORD e = GetLastError();
	free(path);
	return ok ? KV_OK : status_of_error(e);
}

int kv__os_remove_same(const char *name, const struct kv_os *o)
{
	(void)o; /* a section cannot be replaced while it exists; a file is
	          * removed by name, as DeleteFileW does */
	return kv__os_remove(name);
}

bool kv__os_removed(struct kv_os *o)
{
	if (o->file == NULL)
		return false;
	FILE_STANDARD_INFO si;
	return GetFileInformationByHandleEx(o->file, FileStandardInfo, &si,
	                                    sizeof si) &&
	       si.DeletePending;
}

int kv__os_claim(struct kv_os *o)
{
	if (o->claim != NULL)
		return KV_OK;
	size_t n = wcslen(o->wname);
	wchar_t *w = malloc((n + 5) * sizeof *w);
	if (w == NULL)
		return KV_ENOMEM;
	memcpy(w, o->wname, n * sizeof *w);
	memcpy(w + n, L":kvd", 5 * sizeof *w);
	HANDLE m = CreateMutexW(NULL, FALSE, w);
	free(w);
	if (m == NULL)
		return KV_ESYS;
	DWORD r = WaitForSingleObject(m, 0);
	if (r == WAIT_OBJECT_0 || r == WAIT_ABANDONED) {
		o->claim = m;
		return KV_OK;
	}
	CloseHandle(m);
	return r == WAIT_TIMEOUT ? KV_ESERVED : KV_ESYS;
}

void kv__os_unclaim(struct kv_os *o)
{
	if (o->claim != NULL) {
		ReleaseMutex(o->claim);
		CloseHandle(o->claim);
		o->claim = NULL;
	}
}

/* Read hints need a segment every reader may write and none may shrink
 * (hint_posix.c); not built on Windows, where a read-only handle's hits do
 * not count toward eviction recency. */
void kv__os_hint_open(struct kv *kv, bool create)
{
	(void)kv;
	(void)create;
}

void kv__os_hint_close(struct kv *kv)
{
	(void)kv;
}
