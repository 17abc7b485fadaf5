#define _GNU_SOURCE
#include "CBatchUDP.h"
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

struct nn_udp_batch {
    unsigned slots, recv_size, send_size;
    unsigned received, queued;
    uint8_t *recv_buf, *send_buf;
    struct sockaddr_storage *peers;
    struct iovec *recv_iov, *send_iov;
    struct mmsghdr *recv_msgs, *send_msgs;
};

nn_udp_batch *nn_udp_batch_create(unsigned slots, unsigned recv_size, unsigned send_size) {
    nn_udp_batch *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->slots = slots; b->recv_size = recv_size; b->send_size = send_size;
    b->recv_buf = malloc((size_t)slots * recv_size);
    b->send_buf = malloc((size_t)slots * send_size);
    b->peers = calloc(slots, sizeof *b->peers);
    b->recv_iov = calloc(slots, sizeof *b->recv_iov);
    b->send_iov = calloc(slots, sizeof *b->send_iov);
    b->recv_msgs = calloc(slots, sizeof *b->recv_msgs);
    b->send_msgs = calloc(slots, sizeof *b->send_msgs);
    if (!b->recv_buf || !b->send_buf || !b->peers || !b->recv_iov || !b->send_iov || !b->recv_msgs || !b->send_msgs) {
        nn_udp_batch_destroy(b);
        return NULL;
    }
    return b;
}

void nn_udp_batch_destroy(nn_udp_batch *b) {
    if (!b) return;
    free(b->recv_buf); free(b->send_buf); free(b->peers); free(b->recv_iov); free(b->send_iov);
    free(b->recv_msgs); free(b->send_msgs); free(b);
}

int nn_udp_batch_recv(nn_udp_batch *b, int fd, int blocking) {
    b->received = 0; b->queued = 0;
    for (unsigned i = 0; i < b->slots; i++) {
        b->recv_iov[i].iov_base = b->recv_buf + (size_t)i * b->recv_size;
        b->recv_iov[i].iov_len = b->recv_size;
        struct msghdr *h = &b->recv_msgs[i].msg_hdr;
        memset(h, 0, sizeof *h);
        h->msg_name = &b->peers[i];
        h->msg_namelen = sizeof b->peers[i];
        h->msg_iov = &b->recv_iov[i];
        h->msg_iovlen = 1;
    }
    for (;;) {
        // Blocking: sleep until one datagram, then take what is queued (MSG_WAITFORONE): one
        // syscall per wakeup. shutdown(SHUT_RD) wakes it (nn_udp_wake).
        int n = recvmmsg(fd, b->recv_msgs, b->slots, blocking ? MSG_WAITFORONE : MSG_DONTWAIT, NULL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        if (n < 0) return -1;
        b->received = (unsigned)n;
        return n;
    }
}

const uint8_t *nn_udp_batch_data(const nn_udp_batch *b, unsigned i, unsigned *len) {
    *len = b->recv_msgs[i].msg_len;
    return b->recv_buf + (size_t)i * b->recv_size;
}

const struct sockaddr *nn_udp_batch_peer(const nn_udp_batch *b, unsigned i, unsigned *addrlen) {
    *addrlen = b->recv_msgs[i].msg_hdr.msg_namelen;
    return (const struct sockaddr *)&b->peers[i];
}

int nn_udp_batch_reply(nn_udp_batch *b, unsigned i, const uint8_t *data, unsigned len) {
    if (i >= b->received || b->queued >= b->slots || len > b->send_size) return -1;
    unsigned k = b->queued++;
    uint8_t *dst = b->send_buf + (size_t)k * b->send_size;
    memcpy(dst, data, len);
    b->send_iov[k].iov_base = dst;
    b->send_iov[k].iov_len = len;
    struct msghdr *h = &b->send_msgs[k].msg_hdr;
    memset(h, 0, sizeof *h);
    h->msg_name = &b->peers[i];
    h->msg_namelen = b->recv_msgs[i].msg_hdr.msg_namelen;
    h->msg_iov = &b->send_iov[k];
    h->msg_iovlen = 1;
    return 0;
}

int nn_udp_batch_send(nn_udp_batch *b, int fd) {
    unsigned done = 0, sent = 0;
    while (done < b->queued) {
        int n = sendmmsg(fd, b->send_msgs + done, b->queued - done, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            // Send buffer full: wait for room (bounded by the kernel draining it) rather than drop.
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            if (poll(&p, 1, 100) <= 0) break;
            continue;
        }
        if (n < 0) { done++; continue; }  // this datagram failed (e.g. ECONNREFUSED): skip it
        done += (unsigned)n; sent += (unsigned)n;
    }
    b->queued = 0;
    return (int)sent;
}

int nn_udp_bind(int family, const uint8_t *addr, uint16_t port) {
    int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
        int e = errno; close(fd); return -e;
    }
    int r;
    if (family == AF_INET) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
        memcpy(&sa.sin_addr, addr, 4);
        r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    } else {
        struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
        memcpy(&sa.sin6_addr, addr, 16);
        r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    }
    if (r < 0) { int e = errno; close(fd); return -e; }
    return fd;
}

int nn_udp_local_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -errno;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

void nn_udp_wake(int fd) {
    // On an unconnected UDP socket this returns ENOTCONN but still marks the receive side shut
    // and wakes every waiter (inet_shutdown), so a blocked recvmmsg returns.
    shutdown(fd, SHUT_RD);
}

void nn_set_thread_name(const char *name) { pthread_setname_np(pthread_self(), name); }
