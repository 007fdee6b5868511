/*
 * Another process's TCP sockets, worked on from outside it: each socket is
 * borrowed with pidfd_getfd(2) (same socket, new descriptor here), changed,
 * and the borrowed descriptor closed.
 *
 * - Repair off: a lazy (post-copy) dump leaves the stopped tree's
 *   connections in repair mode; this is how they come back if the tree has
 *   to resume where it is.
 * - Pacing: CRIU's page server sends a post-copy pull as fast as TCP
 *   allows; a maximum pacing rate on its connection leaves the rest of the
 *   link to the service's own clients.
 */
#ifndef ROAM_BORROWTCP_H
#define ROAM_BORROWTCP_H

#include <stdint.h>
#include <sys/types.h>

/* Each returns 0 or a positive errno (with *syscall naming the call); *changed counts the sockets changed. */
int roam_tcp_repair_off(pid_t pid, unsigned *changed, const char **syscall);
/* Sockets bound to local_port (0: all) get SO_MAX_PACING_RATE bytes_per_second. */
int roam_tcp_pace(pid_t pid, uint16_t local_port, uint64_t bytes_per_second, unsigned *changed, const char **syscall);

#endif
