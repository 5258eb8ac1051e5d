/* Making a file replacement durable: after rename(tmp, path), the directory
 * holding path must be fsynced too, or a crash can bring the old name back. */
#ifndef CHAT_DURABLE_H
#define CHAT_DURABLE_H

/* fsync the directory that holds path ("." for a bare name).  0, or -1 with
 * errno.  Filesystems that cannot sync a directory (EINVAL) count as done. */
int chat_fsync_dir_of(const char *path);

#endif
