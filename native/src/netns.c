#include "netns.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

struct create_job {
  const char *path;
  int err;
  const char *syscall;
};

/*
 * unshare() moves the calling thread into a fresh namespace. Doing that on a
 * short-lived thread leaves the Node main thread where it was; the bind mount
 * keeps the namespace alive after the thread is gone (as `ip netns add` does).
 */
static void *create_on_thread(void *arg) {
  struct create_job *job = arg;
  if (unshare(CLONE_NEWNET) != 0) {
    job->err = errno;
    job->syscall = "unshare";
    return NULL;
  }
  if (mount("/proc/thread-self/ns/net", job->path, "none", MS_BIND, NULL) != 0) {
    job->err = errno;
    job->syscall = "mount";
  }
  return NULL;
}

static int is_nsfs_mount(const char *path) {
  struct stat st;
  /* An nsfs bind mount reports the namespace inode; a plain file never has
   * the nsfs magic device, so comparing with our own netns's device works. */
  struct stat self;
  if (stat(path, &st) != 0 || stat("/proc/self/ns/net", &self) != 0) return 0;
  return st.st_dev == self.st_dev;
}

int roam_netns_create(const char *path, const char **syscall) {
  int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (fd < 0) {
    int err = errno;
    if (err == EEXIST && is_nsfs_mount(path)) {
      *syscall = "open";
      return EEXIST;
    }
    if (err != EEXIST) {
      *syscall = "open";
      return err;
    }
    /* A stale plain file from an interrupted create: reuse it. */
  } else {
    close(fd);
  }
  struct create_job job = {path, 0, NULL};
  pthread_t thread;
  int rc = pthread_create(&thread, NULL, create_on_thread, &job);
  if (rc != 0) {
    unlink(path);
    *syscall = "pthread_create";
    return rc;
  }
  pthread_join(thread, NULL);
  if (job.err != 0) {
    unlink(path);
    *syscall = job.syscall;
    return job.err;
  }
  return 0;
}

int roam_netns_remove(const char *path, const char **syscall) {
  if (umount2(path, MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    *syscall = "umount2";
    return errno;
  }
  if (unlink(path) != 0 && errno != ENOENT) {
    *syscall = "unlink";
    return errno;
  }
  return 0;
}

int roam_netns_enter(const char *path, int *saved_fd, const char **syscall) {
  int saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (saved < 0) {
    *syscall = "open";
    return errno;
  }
  int target = open(path, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    int err = errno;
    close(saved);
    *syscall = "open";
    return err;
  }
  if (setns(target, CLONE_NEWNET) != 0) {
    int err = errno;
    close(target);
    close(saved);
    *syscall = "setns";
    return err;
  }
  close(target);
  *saved_fd = saved;
  return 0;
}

int roam_netns_restore(int saved_fd, const char **syscall) {
  int rc = setns(saved_fd, CLONE_NEWNET);
  int err = errno;
  close(saved_fd);
  if (rc != 0) {
    *syscall = "setns";
    return err;
  }
  return 0;
}
