/*
 * roam-hold: keeps what a network lock drops, so it can be delivered later.
 *
 * The lock's nftables rule logs every TCP packet it drops to an nflog group
 * (`log group N`); this program, started inside the same network namespace,
 * binds that group and keeps a copy of each packet, whole and in arrival
 * order, up to a byte budget. Nothing is sent anywhere from here: the agent
 * decides what to do with the packets.
 *
 *   roam-hold --netns PATH --group N [--max-bytes B]
 *
 * stdout: one byte 'R' once the group is bound. On 'D' from stdin, every
 * packet still in the socket is read, then everything kept since the last
 * 'D' is written as frames [u32 len][bytes] (little endian), a zero length,
 * and five u32 counters for that batch: packets kept, bytes kept, packets
 * over budget, packets the kernel could not queue to us (gaps in nflog's
 * sequence numbers), receive overruns; and it goes on keeping. EOF on stdin
 * (the agent is done, or gone) exits 0 with nothing more written: what was
 * not drained is dropped, as the lock alone would have done.
 */
#include <errno.h>
#include <fcntl.h>
#include <libnetfilter_log/libnetfilter_log.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RECV_BUFFER (64 * 1024 * 1024)
#define COPY_RANGE 0xffff

struct held {
  uint8_t *data;
  uint32_t len;
};

static struct {
  struct held *items;
  size_t count, capacity;
  uint64_t bytes, max_bytes;
  uint32_t over_budget, lost, overruns;
  uint32_t next_seq;
  int seen_seq;
} hold;

static void die(const char *what) {
  fprintf(stderr, "roam-hold: %s: %s (errno %d)\n", what, strerror(errno), errno);
  exit(1);
}

static int keep(struct nflog_g_handle *gh, struct nfgenmsg *msg, struct nflog_data *nfa, void *unused) {
  (void)gh; (void)msg; (void)unused;
  uint32_t seq;
  if (nflog_get_seq(nfa, &seq) == 0) {
    if (hold.seen_seq && seq != hold.next_seq) hold.lost += seq - hold.next_seq;
    hold.next_seq = seq + 1;
    hold.seen_seq = 1;
  }
  char *payload;
  int len = nflog_get_payload(nfa, &payload);
  if (len <= 0) return 0;
  if (hold.bytes + (uint64_t)len > hold.max_bytes) {
    hold.over_budget++;
    return 0;
  }
  if (hold.count == hold.capacity) {
    size_t cap = hold.capacity ? hold.capacity * 2 : 1024;
    struct held *items = realloc(hold.items, cap * sizeof *items);
    if (!items) die("realloc");
    hold.items = items;
    hold.capacity = cap;
  }
  uint8_t *copy = malloc((size_t)len);
  if (!copy) die("malloc");
  memcpy(copy, payload, (size_t)len);
  hold.items[hold.count++] = (struct held){ copy, (uint32_t)len };
  hold.bytes += (uint64_t)len;
  return 0;
}

/* Reads what is queued on the socket; with `block` false, stops when it is empty. */
static void receive(struct nflog_handle *h, int fd, int block) {
  static char buf[COPY_RANGE + 4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, block ? 0 : MSG_DONTWAIT);
    if (n > 0) {
      nflog_handle_packet(h, buf, (int)n);
      if (block) return;
      continue;
    }
    if (n < 0 && errno == ENOBUFS) {
      hold.overruns++;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    die("recv");
  }
}

static void write_all(const void *p, size_t len) {
  const uint8_t *b = p;
  while (len > 0) {
    ssize_t n = write(1, b, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("write");
    b += n;
    len -= (size_t)n;
  }
}

static void put_u32(uint32_t v) {
  uint8_t b[4] = { v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >> 24) & 0xff };
  write_all(b, 4);
}

int main(int argc, char **argv) {
  const char *netns = NULL;
  long group = -1;
  uint64_t max_bytes = 64ull * 1024 * 1024;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--netns")) netns = argv[i + 1];
    else if (!strcmp(argv[i], "--group")) group = strtol(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "--max-bytes")) max_bytes = strtoull(argv[i + 1], NULL, 10);
  }
  if (!netns || group < 0 || group > 65535) {
    fprintf(stderr, "usage: roam-hold --netns PATH --group N [--max-bytes B]\n");
    return 2;
  }
  hold.max_bytes = max_bytes;

  int nsfd = open(netns, O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) die("open netns");
  if (setns(nsfd, CLONE_NEWNET) < 0) die("setns");
  close(nsfd);

  struct nflog_handle *h = nflog_open();
  if (!h) die("nflog_open");
  struct nflog_g_handle *gh = nflog_bind_group(h, (uint16_t)group);
  if (!gh) die("nflog_bind_group");
  if (nflog_set_mode(gh, NFULNL_COPY_PACKET, COPY_RANGE) < 0) die("nflog_set_mode");
  /* One packet per message, sent at once: nothing waits in the kernel for a batch to fill. */
  if (nflog_set_qthresh(gh, 1) < 0) die("nflog_set_qthresh");
  if (nflog_set_flags(gh, NFULNL_CFG_F_SEQ) < 0) die("nflog_set_flags");
  nflog_callback_register(gh, keep, NULL);
  int fd = nflog_fd(h);
  int size = RECV_BUFFER;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0) die("SO_RCVBUFFORCE");

  write_all("R", 1);
  struct pollfd fds[2] = { { .fd = 0, .events = POLLIN }, { .fd = fd, .events = POLLIN } };
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (fds[1].revents & POLLIN) receive(h, fd, 0);
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      char cmd = 0;
      ssize_t n = read(0, &cmd, 1);
      if (n <= 0) return 0;
      if (cmd != 'D') continue;
      receive(h, fd, 0);
      for (size_t i = 0; i < hold.count; i++) {
        put_u32(hold.items[i].len);
        write_all(hold.items[i].data, hold.items[i].len);
        free(hold.items[i].data);
      }
      put_u32(0);
      put_u32((uint32_t)hold.count);
      put_u32((uint32_t)(hold.bytes > UINT32_MAX ? UINT32_MAX : hold.bytes));
      put_u32(hold.over_budget);
      put_u32(hold.lost);
      put_u32(hold.overruns);
      /* The budget is for what is kept at once; a drained batch no longer counts. */
      hold.count = 0;
      hold.bytes = 0;
      hold.over_budget = hold.lost = hold.overruns = 0;
    }
  }
}
