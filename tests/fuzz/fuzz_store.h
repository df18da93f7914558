/*
 * fuzz_store.h - the store-image fuzzer's harness, shared by the libFuzzer
 * target (fuzz-store) and the corpus replay driver (fuzz-store-replay).
 * See fuzz_store.c for the input format and docs/fuzzing.md for how to run
 * it.
 */
#ifndef KV_FUZZ_STORE_H
#define KV_FUZZ_STORE_H

#include <stddef.h>
#include <stdint.h>

/* The libFuzzer entry points. Initialize builds the template store once
 * (argc/argv are not used and may be NULL); TestOneInput runs one input and
 * returns 0, or aborts on a finding. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Calls made and their statuses so far, for the replay driver's summary. */
struct fuzz_totals {
	uint64_t inputs;
	uint64_t calls;
	uint64_t opened;        /* inputs whose store attached read-write */
	uint64_t sound_before;  /* of those, kv_check said sound first */
	uint64_t undocumented;  /* statuses outside the call's documented set */
};
void fuzz_totals(struct fuzz_totals *out);

/* Print the current stack when a sanitizer runtime is linked in. */
void fuzz_stack(void);

/* wrap.c: sleep in real time (nanosleep itself is virtual, see there). */
void fuzz_sleep_real(long ns);

#endif /* KV_FUZZ_STORE_H */
