#include "rawip.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "netns.h"

#define BATCH 256

int roam_raw_send(const char *netns, const uint8_t *const *packets, const size_t *lengths, size_t count, uint32_t mark,
                  struct roam_raw_result *result, const char **syscall) {
  memset(result, 0, sizeof *result);
  int saved = -1;
  int err = roam_netns_enter(netns, &saved, syscall);
  if (err) return err;
  int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
  int socket_errno = errno;
  err = roam_netns_restore(saved, syscall);
  if (fd < 0) {
    *syscall = "socket";
    return socket_errno;
  }
  if (err) {
    close(fd);
    return err;
  }
  if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) < 0) {
    err = errno;
    close(fd);
    *syscall = "setsockopt(SO_MARK)";
    return err;
  }
  struct mmsghdr msgs[BATCH];
  struct iovec iovs[BATCH];
  struct sockaddr_in addrs[BATCH];
  size_t next = 0;
  while (next < count) {
    size_t n = count - next < BATCH ? count - next : BATCH;
    for (size_t i = 0; i < n; i++) {
      const uint8_t *p = packets[next + i];
      memset(&addrs[i], 0, sizeof addrs[i]);
      addrs[i].sin_family = AF_INET;
      if (lengths[next + i] >= 20) memcpy(&addrs[i].sin_addr, p + 16, 4);
      iovs[i] = (struct iovec){ (void *)p, lengths[next + i] };
      memset(&msgs[i], 0, sizeof msgs[i]);
      msgs[i].msg_hdr.msg_name = &addrs[i];
      msgs[i].msg_hdr.msg_namelen = sizeof addrs[i];
      msgs[i].msg_hdr.msg_iov = &iovs[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int r = sendmmsg(fd, msgs, (unsigned)n, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      /* The first packet of the batch was refused: count it and go on with the rest. */
      if (!result->first_errno) result->first_errno = errno;
      result->failed++;
      next++;
      continue;
    }
    result->sent += (size_t)r;
    next += (size_t)r;
  }
  close(fd);
  return 0;
}
