// Small C helpers for things Swift cannot reach directly (GNU-only syscalls) or that must run fast even in debug
// builds (the content-defined chunking inner loop). Every function is prefixed `ckindling_`.
#ifndef CKINDLING_SHIMS_H
#define CKINDLING_SHIMS_H

#include <stddef.h>
#include <stdint.h>

/// Finds the next FastCDC cut point in `data[0..<count]` (see Specs/chunking.md).
/// The caller passes `count >= max_size` unless `count` holds all that is left of the input.
/// Returns the length of the next chunk: in `1...min(count, max_size)`, or 0 when `count` is 0.
size_t ckindling_cdc_next_cut(const uint8_t *data, size_t count, const uint64_t *gear, size_t min_size,
                              size_t normal_size, size_t max_size, uint64_t mask_small, uint64_t mask_large);

/// Atomically swaps two paths (renameat2 with RENAME_EXCHANGE). Returns 0 or -1 with errno set.
int ckindling_exchange_paths(const char *first, const char *second);

/// Renames without replacing an existing destination (RENAME_NOREPLACE). Returns 0 or -1 with errno set.
int ckindling_rename_noreplace(const char *from, const char *to);

/// renameat2 with RENAME_EXCHANGE, relative to directory descriptors. Returns 0 or -1 with errno set.
int ckindling_exchangeat(int from_dir, const char *from, int to_dir, const char *to);

/// renameat2 with RENAME_NOREPLACE, relative to directory descriptors. Returns 0 or -1 with errno set.
int ckindling_renameat_noreplace(int from_dir, const char *from, int to_dir, const char *to);

/// openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS: opens `path` below `dir` without following any symlink or
/// leaving `dir`. Returns a descriptor, or -1 with errno set: ENOSYS (kernel before 5.6) or EPERM (a seccomp filter)
/// mean "not available here, walk component by component"; ELOOP means a symlink was in the way; EXDEV an escape.
int ckindling_open_beneath(int dir, const char *path, int flags, unsigned int mode);

/// Flushes the whole filesystem holding `fd` (syncfs). Returns 0 or -1 with errno set.
int ckindling_syncfs(int fd);

/// Starts writing `fd`'s dirty pages to disk without waiting (sync_file_range WRITE), so that the final flush has
/// less left to wait for. Advisory: returns 0 or -1 with errno set.
int ckindling_start_writeback(int fd);

/// Writes `fd`'s dirty pages and waits until they are on disk (sync_file_range), without a journal commit or a
/// device cache flush: a batch of these followed by one fsync makes a whole batch durable (git's "batch" fsync
/// method), where one fsync per file would commit the journal once per file. Returns 0 or -1 with errno set.
int ckindling_wait_writeback(int fd);

#endif
