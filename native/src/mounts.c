/* See mounts.h. */
#include <errno.h>
#include <sys/mount.h>

#include "mounts.h"

int roam_overlay_mount(const char *target, const char *options, const char **syscall) {
  *syscall = "mount";
  return mount("overlay", target, "overlay", 0, options) == 0 ? 0 : errno;
}

/* Detached: a process still inside (CRIU's scratch /proc, a late reader) must not keep the endpoint from going. */
int roam_unmount(const char *target, const char **syscall) {
  *syscall = "umount2";
  if (umount2(target, MNT_DETACH) == 0) return 0;
  return errno == EINVAL || errno == ENOENT ? 0 : errno;
}
