/*
 * roam-nsexec --net PATH -- CMD [ARGS...]
 * Enters only the network namespace at PATH and execs CMD. Unlike
 * `ip netns exec` it creates no mount namespace, which CRIU and the agents
 * rely on: everything shares the host's mounts.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 5 || strcmp(argv[1], "--net") != 0 || strcmp(argv[3], "--") != 0) {
    fprintf(stderr, "usage: roam-nsexec --net PATH -- CMD [ARGS...]\n");
    return 2;
  }
  int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "roam-nsexec: open %s: %s\n", argv[2], strerrorname_np(errno));
    return 126;
  }
  if (setns(fd, CLONE_NEWNET) != 0) {
    fprintf(stderr, "roam-nsexec: setns %s: %s\n", argv[2], strerrorname_np(errno));
    return 126;
  }
  close(fd);
  execvp(argv[4], &argv[4]);
  fprintf(stderr, "roam-nsexec: exec %s: %s\n", argv[4], strerrorname_np(errno));
  return 127;
}
