/*
 * roam-shim --netns PATH --dir DIR -- CMD [ARGS...]
 *
 * The per-endpoint supervisor (the role conmon plays for containers). It runs
 * CMD as PID 1 of a fresh PID namespace inside the endpoint's network
 * namespace, holds the read ends of its stdout/stderr pipes and appends what
 * arrives to DIR/log. Because the shim, not the agent, holds the pipes, an
 * endpoint keeps running while its agent restarts. The workload never holds a
 * file open that would have to match at restore: only pipes and /dev/null.
 *
 * To the agent it reports, on its own stdout, exactly one line:
 *   "ok PID"                 the command is running (PID in the host's view)
 *   "error SYSCALL ERRNAME"  nothing is running
 * and afterwards keeps DIR/pid, DIR/shim.pid and, when the command ends,
 * DIR/exit ("exited N" or "signaled N").
 *
 * roam-shim --restore --dir DIR -- criu swrk 3
 *
 * Restore mode, for an endpoint arriving by migration: the shim makes fresh
 * stdout/stderr pipes and runs CMD (CRIU's RPC worker) with their write ends
 * at fds 5 and 6, for CRIU to hand to the restored process in place of the
 * pipes it had on the source (inherit_fd). Fds 3 and 4 pass through from the
 * agent untouched (the RPC socket and the target network namespace). CRIU
 * restores with rst_sibling, so the restored process becomes the shim's own
 * child. The report names CRIU's pid; the agent writes DIR/pid once CRIU has
 * said which process it restored. CRIU's own output goes to DIR/criu.out.
 *
 * roam-shim --runtime --dir DIR -- runc [GLOBAL...] run|restore --detach ...
 *
 * Runtime mode, for a container: the OCI runtime makes the namespaces, so
 * the shim only holds the pipes. It becomes a child subreaper and runs CMD
 * with the pipes as its stdout/stderr; a detached runc hands them to the
 * container (its init, or the tree CRIU restores) and exits, and the
 * container's init is then reparented to the shim, which supervises it like
 * any endpoint. The report waits for the runtime: "ok PID" names the
 * container's init, "error runtime exited N" says it failed (runc's own
 * log says why).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define LOG_MAX_BYTES (8 * 1024 * 1024)

static const char *dir;

static void write_file(const char *name, const char *text) {
  char path[4096], tmp[4200];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  ssize_t ignored = write(fd, text, strlen(text));
  (void)ignored;
  fsync(fd);
  close(fd);
  rename(tmp, path);
}

static int open_log(void) {
  char path[4096];
  snprintf(path, sizeof path, "%s/log", dir);
  return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

static int rotate_log_if_full(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size < LOG_MAX_BYTES) return fd;
  char path[4096], old[4200];
  snprintf(path, sizeof path, "%s/log", dir);
  snprintf(old, sizeof old, "%s.1", path);
  rename(path, old);
  close(fd);
  return open_log();
}

/*
 * After its one line the shim lets go of both pipes to the agent: an agent
 * that still held the read end of one would wait on it for as long as the
 * endpoint runs, and could not exit.
 */
static void report(const char *line) {
  ssize_t ignored = write(STDOUT_FILENO, line, strlen(line));
  (void)ignored;
  int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (devnull >= 0) {
    dup3(devnull, STDOUT_FILENO, 0);
    dup3(devnull, STDERR_FILENO, 0);
    close(devnull);
  }
}

static void fail(const char *syscall, int err) {
  char line[256];
  snprintf(line, sizeof line, "error %s %s\n", syscall, strerrorname_np(err));
  report(line);
  exit(1);
}

/* The one child a subreaper shim has once the runtime is gone: the container's init. */
static pid_t only_child(void) {
  char path[64], buf[64] = {0};
  snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  return n > 0 ? (pid_t)atoi(buf) : 0;
}

int main(int argc, char **argv) {
  const char *netns = NULL;
  int restore = 0, runtime = 0;
  int i = 1;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--restore") == 0) restore = 1;
    else if (strcmp(argv[i], "--runtime") == 0) runtime = 1;
    else if (strcmp(argv[i], "--netns") == 0 && i + 1 < argc) netns = argv[++i];
    else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) dir = argv[++i];
    else if (strcmp(argv[i], "--") == 0) { i++; break; }
    else break;
  }
  if ((!netns && !restore && !runtime) || !dir || i >= argc) {
    fprintf(stderr, "usage: roam-shim --netns PATH --dir DIR -- CMD [ARGS...]\n       roam-shim --restore --dir DIR -- CMD [ARGS...]\n       roam-shim --runtime --dir DIR -- CMD [ARGS...]\n");
    return 2;
  }
  char **command = &argv[i];

  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);

  int netns_fd = -1;
  if (runtime && prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) fail("prctl", errno);
  if (!restore && !runtime) {
    netns_fd = open(netns, O_RDONLY | O_CLOEXEC);
    if (netns_fd < 0) fail("open", errno);
  }
  int out[2], err[2], status_pipe[2];
  if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) || pipe2(status_pipe, O_CLOEXEC)) fail("pipe2", errno);
  if (!restore && !runtime && unshare(CLONE_NEWPID) != 0) fail("unshare", errno);

  pid_t child = fork();
  if (child < 0) fail("fork", errno);
  if (child == 0 && restore) {
    char path[4096];
    snprintf(path, sizeof path, "%s/criu.out", dir);
    int devnull = open("/dev/null", O_RDONLY);
    int log = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    /* dup2 clears close-on-exec: CRIU inherits 5 and 6 (and 3, 4 from the agent). */
    if (devnull < 0 || log < 0 || dup2(devnull, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0 || dup2(out[1], 5) < 0 || dup2(err[1], 6) < 0) {
      ssize_t ignored = write(status_pipe[1], "dup2 failed", 11);
      (void)ignored;
      _exit(127);
    }
    /* CRIU gets 0-6 and the status pipe (close-on-exec) only. */
    if (status_pipe[1] > 7) close_range(7, status_pipe[1] - 1, 0);
    close_range(status_pipe[1] + 1 > 7 ? status_pipe[1] + 1 : 7, ~0U, 0);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    execvp(command[0], command);
    char line[128];
    snprintf(line, sizeof line, "execvp %s", strerrorname_np(errno));
    ssize_t ignored = write(status_pipe[1], line, strlen(line));
    (void)ignored;
    _exit(127);
  }
  if (child == 0) {
    /* PID 1 of the new PID namespace. */
    int code = 0;
    const char *what = "";
    signal(SIGPIPE, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int devnull = open("/dev/null", O_RDONLY);
    /* Its own session: the checkpoint must not reach outside the endpoint. */
    setsid();
    if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) != 0) { code = errno; what = "setns"; }
    else if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0) { code = errno; what = "dup2"; }
    else {
      if (devnull > 2) close(devnull);
      /* Nothing of whoever started the agent may leak into the endpoint: a
       * stray socket would also make the tree impossible to checkpoint. The
       * status pipe is close-on-exec and goes by itself. */
      if (status_pipe[1] > 3) close_range(3, status_pipe[1] - 1, 0);
      close_range(status_pipe[1] + 1, ~0U, 0);
      execvp(command[0], command);
      code = errno;
      what = "execvp";
    }
    char line[128];
    snprintf(line, sizeof line, "%s %s", what, strerrorname_np(code));
    ssize_t ignored = write(status_pipe[1], line, strlen(line));
    (void)ignored;
    _exit(127);
  }

  close(out[1]);
  close(err[1]);
  close(status_pipe[1]);
  if (netns_fd >= 0) close(netns_fd);
  if (restore) {
    /* The RPC socket and the netns are CRIU's, not ours. */
    close(3);
    close(4);
  }

  /* The status pipe closes on a successful exec and carries the reason otherwise. */
  char why[128] = {0};
  ssize_t n = read(status_pipe[0], why, sizeof why - 1);
  close(status_pipe[0]);
  if (n > 0) {
    waitpid(child, NULL, 0);
    char line[256];
    snprintf(line, sizeof line, "error %s\n", why);
    report(line);
    return 1;
  }

  char text[64];
  if (runtime) {
    /* The runtime exits once the container runs; its init is then ours. */
    int st = 0;
    while (waitpid(child, &st, 0) < 0 && errno == EINTR) {}
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    pid_t init = code == 0 ? only_child() : 0;
    if (init <= 0) {
      char line[128];
      if (code == 0) snprintf(line, sizeof line, "error runtime left no container process\n");
      else snprintf(line, sizeof line, "error runtime exited %d\n", code);
      report(line);
      return 1;
    }
    child = init;
  }
  snprintf(text, sizeof text, "%d\n", (int)getpid());
  write_file("shim.pid", text);
  if (!restore) {
    snprintf(text, sizeof text, "%d\n", (int)child);
    write_file("pid", text);
  }
  snprintf(text, sizeof text, "ok %d\n", (int)child);
  report(text);

  int log_fd = open_log();
  struct pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_streams = 2;
  int child_status = 0;
  int have_status = 0;
  int helper_status = 0;
  int children = 1;
  char buf[65536];
  while (open_streams > 0 || children) {
    /* Reap whatever ended: the command, or in restore mode CRIU and then the
     * process it restored (our child through rst_sibling). */
    for (;;) {
      int st = 0;
      pid_t r = waitpid(-1, &st, WNOHANG);
      if (r > 0) {
        if (restore && r == child) helper_status = st;
        else { child_status = st; have_status = 1; }
        continue;
      }
      if (r < 0 && errno == ECHILD) children = 0;
      break;
    }
    if (open_streams == 0) {
      if (children) {
        int st = 0;
        pid_t r = waitpid(-1, &st, 0);
        if (r > 0) {
          if (restore && r == child) helper_status = st;
          else { child_status = st; have_status = 1; }
        } else if (errno == ECHILD) children = 0;
      }
      continue;
    }
    int ready = poll(fds, 2, 200);
    if (ready < 0 && errno != EINTR) break;
    for (int s = 0; s < 2; s++) {
      if (fds[s].fd < 0 || !(fds[s].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t got = read(fds[s].fd, buf, sizeof buf);
      if (got > 0) {
        if (log_fd >= 0) {
          log_fd = rotate_log_if_full(log_fd);
          ssize_t ignored = write(log_fd, buf, (size_t)got);
          (void)ignored;
        }
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        close(fds[s].fd);
        fds[s].fd = -1;
        open_streams--;
      }
    }
  }

  if (restore && !have_status) {
    snprintf(text, sizeof text, "restore-failed %d\n", WIFEXITED(helper_status) ? WEXITSTATUS(helper_status) : 128 + WTERMSIG(helper_status));
    write_file("exit", text);
    if (log_fd >= 0) close(log_fd);
    return 0;
  }
  if (WIFSIGNALED(child_status)) snprintf(text, sizeof text, "signaled %d\n", WTERMSIG(child_status));
  else snprintf(text, sizeof text, "exited %d\n", WEXITSTATUS(child_status));
  write_file("exit", text);
  if (log_fd >= 0) close(log_fd);
  return 0;
}
