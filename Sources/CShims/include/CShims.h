#ifndef NODENET_CSHIMS_H
#define NODENET_CSHIMS_H
// Small C wrappers for what Swift cannot import directly: function-like macros and
// calls that need _GNU_SOURCE. Keep this file tiny; everything else lives in Swift.
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// setns(2) for a network namespace fd; returns 0 or -1 with errno set.
int nodenet_setns(int fd, int nstype);
/// memfd_create(2) (not exported by Swift's Glibc module); returns an fd or -1 with errno set.
int nodenet_memfd_create(const char *name);
/// unshare(2); returns 0 or -1 with errno set.
int nodenet_unshare(int flags);
/// CLONE_NEWNET and CLONE_NEWNS as plain ints (the macros need _GNU_SOURCE).
int nodenet_clone_newnet(void);
int nodenet_clone_newns(void);
/// The netlink alignment macros as functions.
size_t nodenet_nlmsg_align(size_t len);
size_t nodenet_mnl_align(size_t len);
/// The calling thread's kernel thread id (gettid).
pid_t nodenet_gettid(void);
/// SO_PEERCRED of a connected unix socket: fills uid/pid, returns 0 or -1.
int nodenet_peer_credentials(int fd, uid_t *uid, pid_t *pid);
/// send(2) of `len` bytes with `fd` attached as SCM_RIGHTS (MSG_NOSIGNAL); bytes sent or -1.
/// The CMSG_* macros cannot be called from Swift.
ssize_t nodenet_send_with_fd(int sock, const void *buf, size_t len, int fd);
/// recv(2) into `buf` that also takes SCM_RIGHTS descriptors (close-on-exec): up to `max` go
/// to `fds` (their number in `*count`), any beyond are closed. Bytes received or -1.
ssize_t nodenet_recv_with_fds(int sock, void *buf, size_t len, int *fds, int max, int *count);

#endif
