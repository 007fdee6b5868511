/* nftables commands run inside a network namespace, through libnftables. */
#ifndef ROAM_NFT_H
#define ROAM_NFT_H
#include <stddef.h>

/* Returns 0, or a positive errno (setns/open failures) or -1 when nft refused
 * the commands; then `message` holds nft's own diagnostic. */
int roam_nft_run(const char *netns, const char *commands, char *message, size_t message_len, const char **syscall);

#endif
