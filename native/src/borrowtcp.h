/*
 * Takes a process's TCP sockets out of repair mode from outside it: each
 * socket is borrowed with pidfd_getfd(2) and TCP_REPAIR is switched off on
 * the borrowed descriptor (same socket). A lazy (post-copy) dump leaves the
 * stopped tree's connections in repair mode; this is how they come back if
 * the tree has to resume where it is.
 */
#ifndef ROAM_TCPREPAIR_H
#define ROAM_TCPREPAIR_H

#include <sys/types.h>

/* Returns 0 or a positive errno (with *syscall naming the call); *switched counts sockets taken out of repair. */
int roam_tcp_repair_off(pid_t pid, unsigned *switched, const char **syscall);

#endif
