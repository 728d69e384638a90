#include "CKindlingShims.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

size_t ckindling_cdc_next_cut(const uint8_t *data, size_t count, const uint64_t *gear, size_t min_size,
                              size_t normal_size, size_t max_size, uint64_t mask_small, uint64_t mask_large) {
    if (count <= min_size) {
        return count;
    }
    size_t end = count < max_size ? count : max_size;
    size_t normal = normal_size < end ? normal_size : end;
    uint64_t hash = 0;
    size_t i = min_size;
    // Normalised chunking: a stricter mask before the normal size, a looser one after it.
    for (; i < normal; i++) {
        hash = (hash << 1) + gear[data[i]];
        if ((hash & mask_small) == 0) {
            return i + 1;
        }
    }
    for (; i < end; i++) {
        hash = (hash << 1) + gear[data[i]];
        if ((hash & mask_large) == 0) {
            return i + 1;
        }
    }
    return end;
}

int ckindling_exchange_paths(const char *first, const char *second) {
    return renameat2(AT_FDCWD, first, AT_FDCWD, second, RENAME_EXCHANGE);
}

int ckindling_rename_noreplace(const char *from, const char *to) {
    return renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE);
}

int ckindling_syncfs(int fd) {
    return syncfs(fd);
}

int ckindling_start_writeback(int fd) {
    return sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

int ckindling_wait_writeback(int fd) {
    return sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
}

int ckindling_exchangeat(int from_dir, const char *from, int to_dir, const char *to) {
    return renameat2(from_dir, from, to_dir, to, RENAME_EXCHANGE);
}

int ckindling_renameat_noreplace(int from_dir, const char *from, int to_dir, const char *to) {
    return renameat2(from_dir, from, to_dir, to, RENAME_NOREPLACE);
}

int ckindling_open_beneath(int dir, const char *path, int flags, unsigned int mode) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(unsigned int)flags;
    // The kernel refuses a mode without O_CREAT or O_TMPFILE (whose bits include O_DIRECTORY's: test all of them).
    how.mode = ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, dir, path, &how, sizeof how);
}
