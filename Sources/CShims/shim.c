#define _GNU_SOURCE
#include "CShims.h"
#include <sched.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/socket.h>
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
