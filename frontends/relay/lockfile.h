/* One relay per database: a lock file next to it (DATABASE.lock) that the
 * kernel locks for the process holding it (fcntl F_SETLK, a write lock on
 * the whole file), with that process's pid written in it for people to
 * read.  Only the kernel's lock counts, never the file's existence: a file
 * left behind by a relay that was killed holds no lock, and the next relay
 * takes it.  (POSIX locks are the process's: not inherited by a child,
 * dropped when the process closes any descriptor of the file, so the file is
 * opened here only.) */
#ifndef CHAT_LOCKFILE_H
#define CHAT_LOCKFILE_H

#include <stddef.h>
#include <sys/types.h>

/* Take the lock of path (the file created 0600 if missing).  CHAT_OK with
 * *fd the descriptor to keep open for as long as the lock is wanted (the
 * file then holds our pid); CHAT_ERR_AGAIN when another process holds it,
 * *holder its pid (from the kernel, else from the file; 0 if neither says);
 * CHAT_ERR_IO with err naming the file. */
int chat_lockfile_take(const char *path, int *fd, pid_t *holder, size_t errlen, char *err);
/* Who holds the lock of path, without taking it or creating the file: 0
 * for nobody (or no file), the holder's pid, or -1 with err. */
pid_t chat_lockfile_holder(const char *path, size_t errlen, char *err);
/* Let the lock go (fd from chat_lockfile_take; -1 is ignored). */
void chat_lockfile_release(int fd);

#endif
