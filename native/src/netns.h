/*
 * Network namespaces as files: the plain C core behind the addon.
 * Every function returns 0 or a positive errno; `*syscall` names the call
 * that failed so the caller can build an error that says what and where.
 */
#ifndef ROAM_NETNS_H
#define ROAM_NETNS_H

int roam_netns_create(const char *path, const char **syscall);
int roam_netns_remove(const char *path, const char **syscall);
int roam_netns_enter(const char *path, int *saved_fd, const char **syscall);
int roam_netns_restore(int saved_fd, const char **syscall);

#endif
