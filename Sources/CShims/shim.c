#define _GNU_SOURCE
#include "CShims.h"
#include <sched.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <string.h>
#include <linux/netlink.h>

int nodenet_setns(int fd, int nstype) { return setns(fd, nstype); }
int nodenet_unshare(int flags) { return unshare(flags); }
int nodenet_clone_newnet(void) { return CLONE_NEWNET; }
int nodenet_clone_newns(void) { return CLONE_NEWNS; }
size_t nodenet_nlmsg_align(size_t len) { return NLMSG_ALIGN(len); }
size_t nodenet_mnl_align(size_t len) { return (len + 3) & ~(size_t)3; }
pid_t nodenet_gettid(void) { return (pid_t)syscall(SYS_gettid); }

int nodenet_peer_credentials(int fd, uid_t *uid, pid_t *pid) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
    *uid = cred.uid;
    *pid = cred.pid;
    return 0;
}

int nodenet_memfd_create(const char *name) {
    return memfd_create(name, 0);
}

ssize_t nodenet_send_with_fd(int sock, const void *buf, size_t len, int fd) {
    union { struct cmsghdr align; char space[CMSG_SPACE(sizeof(int))]; } control;
    memset(&control, 0, sizeof(control));
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space,
                          .msg_controllen = sizeof(control.space) };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    return sendmsg(sock, &msg, MSG_NOSIGNAL);
}

ssize_t nodenet_recv_with_fds(int sock, void *buf, size_t len, int *fds, int max, int *count) {
    union { struct cmsghdr align; char space[CMSG_SPACE(sizeof(int) * 8)]; } control;
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space,
                          .msg_controllen = sizeof(control.space) };
    *count = 0;
    ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (*count < max) fds[(*count)++] = fd; else close(fd);
        }
    }
    return n;
}
