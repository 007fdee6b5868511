#include "borrowtcp.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef TCP_REPAIR
#define TCP_REPAIR 19
#endif
#ifndef TCP_REPAIR_OFF
#define TCP_REPAIR_OFF 0
#endif

static int is_tcp(int fd) {
  int domain = 0, protocol = 0;
  socklen_t len = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) return 0;
  len = sizeof protocol;
  if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) != 0) return 0;
  return (domain == AF_INET || domain == AF_INET6) && protocol == IPPROTO_TCP;
}

static int is_socket_link(const char *fd_dir, const char *name) {
  char path[320], target[64];
  snprintf(path, sizeof path, "%s/%s", fd_dir, name);
  ssize_t n = readlink(path, target, sizeof target - 1);
  if (n <= 0) return 0;
  target[n] = '\0';
  return strncmp(target, "socket:[", 8) == 0;
}

typedef int (*socket_change)(int fd, const void *arg);

/* Calls change() on each TCP socket of pid; counts those it reports changed (returns 1). */
static int for_each_tcp_socket(pid_t pid, socket_change change, const void *arg, unsigned *changed, const char **syscall_name) {
  *changed = 0;
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) {
    *syscall_name = "pidfd_open";
    return errno;
  }
  char fd_dir[64];
  snprintf(fd_dir, sizeof fd_dir, "/proc/%d/fd", (int)pid);
  DIR *d = opendir(fd_dir);
  if (!d) {
    int err = errno;
    close(pidfd);
    *syscall_name = "opendir";
    return err;
  }
  int result = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' || !is_socket_link(fd_dir, e->d_name)) continue;
    int borrowed = (int)syscall(SYS_pidfd_getfd, pidfd, atoi(e->d_name), 0);
    if (borrowed < 0) {
      if (errno == EBADF) continue; /* closed meanwhile */
      result = errno;
      *syscall_name = "pidfd_getfd";
      break;
    }
    if (is_tcp(borrowed) && change(borrowed, arg) == 1) (*changed)++;
    close(borrowed);
  }
  closedir(d);
  close(pidfd);
  return result;
}

static int repair_off(int fd, const void *arg) {
  (void)arg;
  int off = TCP_REPAIR_OFF;
  /* Listening and unconnected sockets are never in repair mode and refuse the option (EPERM): nothing to do. */
  return setsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &off, sizeof off) == 0;
}

int roam_tcp_repair_off(pid_t pid, unsigned *changed, const char **syscall_name) {
  return for_each_tcp_socket(pid, repair_off, NULL, changed, syscall_name);
}

struct pace_arg {
  uint16_t local_port;
  uint64_t bytes_per_second;
};

static int local_port_of(int fd) {
  struct sockaddr_storage a;
  socklen_t len = sizeof a;
  if (getsockname(fd, (struct sockaddr *)&a, &len) != 0) return -1;
  if (a.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&a)->sin_port);
  if (a.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&a)->sin6_port);
  return -1;
}

static int pace(int fd, const void *arg) {
  const struct pace_arg *p = arg;
  if (p->local_port && local_port_of(fd) != p->local_port) return 0;
  /* TCP paces itself once a maximum rate is set (no fq qdisc needed since Linux 4.13). */
  uint64_t rate = p->bytes_per_second;
  return setsockopt(fd, SOL_SOCKET, SO_MAX_PACING_RATE, &rate, sizeof rate) == 0;
}

int roam_tcp_pace(pid_t pid, uint16_t local_port, uint64_t bytes_per_second, unsigned *changed, const char **syscall_name) {
  struct pace_arg arg = {local_port, bytes_per_second};
  return for_each_tcp_socket(pid, pace, &arg, changed, syscall_name);
}
