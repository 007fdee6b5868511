/*
 * roam-criu-hook: CRIU's action script for containers checkpointed and
 * restored by runc. runc drives CRIU itself and answers CRIU's notifications
 * on its own, so the agent would never hear "network-lock" (the moment the
 * tree is frozen, when roam locks the endpoint's namespace). CRIU also runs
 * the action scripts its options file names, in RPC mode too: this one
 * passes the action (CRTOOLS_SCRIPT_ACTION) to the agent over the unix
 * socket named by ROAM_CRIU_HOOK_SOCKET, waits for its answer and exits 0
 * only on "ok". CRIU aborts the dump or restore on any other exit.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(void) {
  const char *action = getenv("CRTOOLS_SCRIPT_ACTION");
  const char *path = getenv("ROAM_CRIU_HOOK_SOCKET");
  if (!action) {
    fprintf(stderr, "roam-criu-hook: not run by CRIU (no CRTOOLS_SCRIPT_ACTION)\n");
    return 2;
  }
  if (!path || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    fprintf(stderr, "roam-criu-hook: %s: ROAM_CRIU_HOOK_SOCKET is not set: only roam's agent may checkpoint this container\n", action);
    return 1;
  }
  int sk = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  strcpy(addr.sun_path, path);
  if (sk < 0 || connect(sk, (struct sockaddr *)&addr, sizeof addr) != 0) {
    fprintf(stderr, "roam-criu-hook: %s: connect %s: %s\n", action, path, strerrorname_np(errno));
    return 1;
  }
  char line[256];
  int n = snprintf(line, sizeof line, "%s\n", action);
  if (write(sk, line, (size_t)n) != n) {
    fprintf(stderr, "roam-criu-hook: %s: write: %s\n", action, strerrorname_np(errno));
    return 1;
  }
  char answer[512];
  size_t got = 0;
  while (got < sizeof answer - 1) {
    ssize_t r = read(sk, answer + got, sizeof answer - 1 - got);
    if (r <= 0) break;
    got += (size_t)r;
    if (memchr(answer, '\n', got)) break;
  }
  answer[got] = 0;
  if (strncmp(answer, "ok\n", 3) == 0) return 0;
  fprintf(stderr, "roam-criu-hook: %s: the agent said: %s\n", action, got ? answer : "(nothing)");
  return 1;
}
