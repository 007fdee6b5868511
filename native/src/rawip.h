/*
 * Whole IPv4 packets sent from inside a network namespace (IPPROTO_RAW, so
 * headers are the caller's), in batches with sendmmsg. Returns 0 or a
 * positive errno for the socket itself; per-packet refusals are counted.
 */
#ifndef ROAM_RAWIP_H
#define ROAM_RAWIP_H

#include <stddef.h>
#include <stdint.h>

struct roam_raw_result {
  size_t sent;
  size_t failed;
  int first_errno;
};

int roam_raw_send(const char *netns, const uint8_t *const *packets, const size_t *lengths, size_t count, uint32_t mark,
                  struct roam_raw_result *result, const char **syscall);

#endif
