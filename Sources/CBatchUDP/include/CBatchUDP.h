#ifndef NODENET_CBATCHUDP_H
#define NODENET_CBATCHUDP_H
// Batched UDP I/O for the DNS server's fast path: recvmmsg/sendmmsg and struct mmsghdr need
// _GNU_SOURCE, which Swift's Glibc module does not define, so the batch lives here. The
// buffers are owned by the batch (one per serving thread); Swift sees only opaque handles.
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct nn_udp_batch nn_udp_batch;

/// A batch of `slots` receive buffers of `recv_size` bytes and as many send buffers of
/// `send_size` bytes. NULL when out of memory.
nn_udp_batch *nn_udp_batch_create(unsigned slots, unsigned recv_size, unsigned send_size);
void nn_udp_batch_destroy(nn_udp_batch *b);

/// One recvmmsg into the batch; clears the queued replies. `blocking`: waits for the first
/// datagram (MSG_WAITFORONE), else none is waited for. Datagrams received, 0 when none is
/// waiting, -1 with errno on error.
int nn_udp_batch_recv(nn_udp_batch *b, int fd, int blocking);
/// Datagram `i` of the last receive: its bytes and length, and the sender.
const uint8_t *nn_udp_batch_data(const nn_udp_batch *b, unsigned i, unsigned *len);
const struct sockaddr *nn_udp_batch_peer(const nn_udp_batch *b, unsigned i, unsigned *addrlen);
/// Queues a reply to the sender of datagram `i` (copied; cut at the send buffer size, never
/// bigger than the server's UDP cap anyway). Returns 0, or -1 when it does not fit.
int nn_udp_batch_reply(nn_udp_batch *b, unsigned i, const uint8_t *data, unsigned len);
/// Sends every queued reply with sendmmsg (repeated for partial sends; a datagram the kernel
/// refuses, e.g. ICMP-unreachable peer, is skipped like a lost one). Returns replies sent.
int nn_udp_batch_send(nn_udp_batch *b, int fd);

/// Wakes a thread blocked in nn_udp_batch_recv on `fd` for good (shuts the receive side).
void nn_udp_wake(int fd);
/// A UDP socket (blocking, close-on-exec, SO_REUSEADDR + SO_REUSEPORT) bound to `addr`
/// (4 or 16 bytes, network order) and `port`. The fd, or -errno.
int nn_udp_bind(int family, const uint8_t *addr, uint16_t port);
/// The locally bound port, or -errno.
int nn_udp_local_port(int fd);
/// Names the calling thread (shown by top -H and perf).
void nn_set_thread_name(const char *name);
#endif
