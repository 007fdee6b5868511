#include "nft.h"

#include <nftables/libnftables.h>
#include <stdio.h>
#include <string.h>

#include "netns.h"

int roam_nft_run(const char *netns, const char *commands, char *message, size_t message_len, const char **syscall) {
  int saved = -1;
  int err = roam_netns_enter(netns, &saved, syscall);
  if (err) return err;
  /* The context's netlink socket is bound to the namespace it is created in. */
  struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  int rc = 0;
  if (!ctx) {
    snprintf(message, message_len, "nft_ctx_new failed");
    rc = -1;
  } else {
    nft_ctx_buffer_output(ctx);
    nft_ctx_buffer_error(ctx);
    if (nft_run_cmd_from_buffer(ctx, commands) != 0) {
      const char *e = nft_ctx_get_error_buffer(ctx);
      snprintf(message, message_len, "%s", e ? e : "");
      rc = -1;
    } else {
      const char *out = nft_ctx_get_output_buffer(ctx);
      snprintf(message, message_len, "%s", out ? out : "");
    }
    nft_ctx_free(ctx);
  }
  const char *restore_call = "";
  int restore_err = roam_netns_restore(saved, &restore_call);
  if (restore_err && rc == 0) {
    *syscall = restore_call;
    return restore_err;
  }
  *syscall = "nft";
  return rc;
}
