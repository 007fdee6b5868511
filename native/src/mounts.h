/*
 * A container's root filesystem as an overlay: the plain C core behind the
 * addon. Returns 0 or a positive errno; `*syscall` names the failed call.
 */
#ifndef ROAM_MOUNTS_H
#define ROAM_MOUNTS_H

int roam_overlay_mount(const char *target, const char *options, const char **syscall);
int roam_unmount(const char *target, const char **syscall);

#endif
