/*
 * N-API glue: argument unpacking and errors only. Errors carry errno, code,
 * syscall and path as properties; the message is built on the TypeScript
 * side, never from strerror().
 */
#include <errno.h>
#include <node_api.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "netns.h"
#include "nft.h"
#include "rawip.h"
#include "borrowtcp.h"
#include "mounts.h"

#include <sys/socket.h>
#include <sys/file.h>
#include <fcntl.h>
#include <unistd.h>

#define PATH_BUF 4096

static napi_value throw_sys(napi_env env, int err, const char *syscall, const char *path) {
  napi_value msg, error, value;
  const char *code = strerrorname_np(err);
  if (code == NULL) code = "EUNKNOWN";
  char text[PATH_BUF + 128];
  snprintf(text, sizeof text, "%s %s: %s", syscall, path, code);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &error);
  napi_create_int32(env, err, &value);
  napi_set_named_property(env, error, "errno", value);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, error, "code", value);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, error, "syscall", value);
  napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, error, "path", value);
  napi_throw(env, error);
  return NULL;
}

static int string_arg(napi_env env, napi_callback_info info, size_t index, char *out, napi_value *argv_out) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc <= index) {
    napi_throw_type_error(env, NULL, "missing argument");
    return 0;
  }
  size_t len = 0;
  if (napi_get_value_string_utf8(env, argv[index], out, PATH_BUF, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected a string");
    return 0;
  }
  if (argv_out) *argv_out = argv[index];
  return 1;
}

/* Calls a `int op(path, &syscall)` from the C core with the first argument. */
static napi_value path_call(napi_env env, napi_callback_info info, int (*op)(const char *, const char **)) {
  char path[PATH_BUF];
  if (!string_arg(env, info, 0, path, NULL)) return NULL;
  const char *syscall = "";
  int err = op(path, &syscall);
  if (err) return throw_sys(env, err, syscall, path);
  return NULL;
}

static napi_value create_netns(napi_env env, napi_callback_info info) {
  return path_call(env, info, roam_netns_create);
}

static napi_value remove_netns(napi_env env, napi_callback_info info) {
  return path_call(env, info, roam_netns_remove);
}

static napi_value enter_netns(napi_env env, napi_callback_info info) {
  char path[PATH_BUF];
  if (!string_arg(env, info, 0, path, NULL)) return NULL;
  const char *syscall = "";
  int saved = -1;
  int err = roam_netns_enter(path, &saved, &syscall);
  if (err) return throw_sys(env, err, syscall, path);
  napi_value result;
  napi_create_int32(env, saved, &result);
  return result;
}

static napi_value restore_netns(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected a file descriptor");
    return NULL;
  }
  const char *syscall = "";
  int err = roam_netns_restore(fd, &syscall);
  if (err) return throw_sys(env, err, syscall, "saved netns");
  return NULL;
}

/* A SOCK_SEQPACKET pair for `criu swrk`: CRIU's RPC is one message per packet. */
static napi_value seqpacket_pair(napi_env env, napi_callback_info info) {
  (void)info;
  int fds[2];
  /* CLOEXEC: a child gets its end by dup2 onto its fd 3 (which clears the flag); the originals must not
     leak into it. A CRIU that inherits the agent's end never sees the agent die, and waits for it forever. */
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) return throw_sys(env, errno, "socketpair", "seqpacket");
  napi_value result, value;
  napi_create_array_with_length(env, 2, &result);
  for (uint32_t i = 0; i < 2; i++) {
    napi_create_int32(env, fds[i], &value);
    napi_set_element(env, result, i, value);
  }
  return result;
}

/* nftRun(netnsPath, commands) -> nft's output; throws with `nftMessage` when nft refuses. */
static napi_value nft_run(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[PATH_BUF];
  size_t len = 0;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], path, PATH_BUF, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "nftRun(netns, commands)");
    return NULL;
  }
  size_t cmd_len = 0;
  napi_get_value_string_utf8(env, argv[1], NULL, 0, &cmd_len);
  char *commands = malloc(cmd_len + 1);
  napi_get_value_string_utf8(env, argv[1], commands, cmd_len + 1, &cmd_len);
  static char message[65536];
  const char *syscall = "";
  int err = roam_nft_run(path, commands, message, sizeof message, &syscall);
  free(commands);
  if (err > 0) return throw_sys(env, err, syscall, path);
  if (err < 0) {
    napi_value msg, error, value;
    napi_create_string_utf8(env, "nft refused the commands", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &error);
    napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &value);
    napi_set_named_property(env, error, "nftMessage", value);
    napi_throw(env, error);
    return NULL;
  }
  napi_value out;
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &out);
  return out;
}

/* rawSendIpv4(netnsPath, packets: Buffer[], mark) -> { sent, failed, errno } */
static napi_value raw_send_ipv4(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[PATH_BUF];
  size_t len = 0;
  uint32_t count = 0, mark = 0;
  bool is_array = false;
  if (argc < 3 || napi_get_value_string_utf8(env, argv[0], path, PATH_BUF, &len) != napi_ok || napi_is_array(env, argv[1], &is_array) != napi_ok ||
      !is_array || napi_get_value_uint32(env, argv[2], &mark) != napi_ok) {
    napi_throw_type_error(env, NULL, "rawSendIpv4(netns, packets, mark)");
    return NULL;
  }
  napi_get_array_length(env, argv[1], &count);
  const uint8_t **packets = calloc(count ? count : 1, sizeof *packets);
  size_t *lengths = calloc(count ? count : 1, sizeof *lengths);
  for (uint32_t i = 0; i < count; i++) {
    napi_value item;
    void *data = NULL;
    size_t size = 0;
    bool is_buffer = false;
    napi_get_element(env, argv[1], i, &item);
    if (napi_is_buffer(env, item, &is_buffer) != napi_ok || !is_buffer) {
      free(packets);
      free(lengths);
      napi_throw_type_error(env, NULL, "rawSendIpv4: every packet must be a Buffer");
      return NULL;
    }
    napi_get_buffer_info(env, item, &data, &size);
    packets[i] = data;
    lengths[i] = size;
  }
  struct roam_raw_result r;
  const char *syscall = "";
  int err = roam_raw_send(path, packets, lengths, count, mark, &r, &syscall);
  free(packets);
  free(lengths);
  if (err) return throw_sys(env, err, syscall, path);
  napi_value out, value;
  napi_create_object(env, &out);
  napi_create_uint32(env, (uint32_t)r.sent, &value);
  napi_set_named_property(env, out, "sent", value);
  napi_create_uint32(env, (uint32_t)r.failed, &value);
  napi_set_named_property(env, out, "failed", value);
  napi_create_int32(env, r.first_errno, &value);
  napi_set_named_property(env, out, "errno", value);
  return out;
}

/* tcpRepairOff(pid) -> number of TCP sockets of that process taken out of repair mode */
static napi_value tcp_repair_off(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t pid = 0;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &pid) != napi_ok || pid <= 0) {
    napi_throw_type_error(env, NULL, "tcpRepairOff(pid)");
    return NULL;
  }
  unsigned switched = 0;
  const char *syscall = "";
  int err = roam_tcp_repair_off(pid, &switched, &syscall);
  char target[32];
  snprintf(target, sizeof target, "pid %d", pid);
  if (err) return throw_sys(env, err, syscall, target);
  napi_value out;
  napi_create_uint32(env, switched, &out);
  return out;
}

/* tcpPace(pid, localPort, bytesPerSecond) -> number of that process's TCP sockets on localPort (0: all) now paced */
static napi_value tcp_pace(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t pid = 0, port = -1;
  int64_t rate = 0;
  if (argc < 3 || napi_get_value_int32(env, argv[0], &pid) != napi_ok || pid <= 0 || napi_get_value_int32(env, argv[1], &port) != napi_ok ||
      port < 0 || port > 65535 || napi_get_value_int64(env, argv[2], &rate) != napi_ok || rate <= 0) {
    napi_throw_type_error(env, NULL, "tcpPace(pid, localPort, bytesPerSecond)");
    return NULL;
  }
  unsigned paced = 0;
  const char *syscall = "";
  int err = roam_tcp_pace(pid, (uint16_t)port, (uint64_t)rate, &paced, &syscall);
  char target[48];
  snprintf(target, sizeof target, "pid %d port %d", pid, port);
  if (err) return throw_sys(env, err, syscall, target);
  napi_value out;
  napi_create_uint32(env, paced, &out);
  return out;
}

/* tryLockFile(path) -> an fd holding an exclusive flock on path (created if missing), or -1 if another holds it.
   Closing the fd (or the process ending) releases it. */
static napi_value try_lock_file(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[4096];
  size_t len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len == 0 || len >= sizeof path - 1) {
    napi_throw_type_error(env, NULL, "tryLockFile(path)");
    return NULL;
  }
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return throw_sys(env, errno, "open", path);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    close(fd);
    if (err != EWOULDBLOCK) return throw_sys(env, err, "flock", path);
    fd = -1;
  }
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

/* mountOverlay(target, options): options as overlayfs takes them (lowerdir=,upperdir=,workdir=). */
static napi_value mount_overlay(napi_env env, napi_callback_info info) {
  char target[PATH_BUF], options[PATH_BUF];
  if (!string_arg(env, info, 0, target, NULL) || !string_arg(env, info, 1, options, NULL)) return NULL;
  const char *syscall = "";
  int err = roam_overlay_mount(target, options, &syscall);
  if (err) return throw_sys(env, err, syscall, target);
  return NULL;
}

/* unmount(target): lazily; a target that is not mounted counts as done. */
static napi_value unmount(napi_env env, napi_callback_info info) {
  return path_call(env, info, roam_unmount);
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"createNetns", NULL, create_netns, NULL, NULL, NULL, napi_default, NULL},
      {"removeNetns", NULL, remove_netns, NULL, NULL, NULL, napi_default, NULL},
      {"enterNetns", NULL, enter_netns, NULL, NULL, NULL, napi_default, NULL},
      {"restoreNetns", NULL, restore_netns, NULL, NULL, NULL, napi_default, NULL},
      {"seqpacketPair", NULL, seqpacket_pair, NULL, NULL, NULL, napi_default, NULL},
      {"nftRun", NULL, nft_run, NULL, NULL, NULL, napi_default, NULL},
      {"rawSendIpv4", NULL, raw_send_ipv4, NULL, NULL, NULL, napi_default, NULL},
      {"tcpRepairOff", NULL, tcp_repair_off, NULL, NULL, NULL, napi_default, NULL},
      {"tcpPace", NULL, tcp_pace, NULL, NULL, NULL, napi_default, NULL},
      {"tryLockFile", NULL, try_lock_file, NULL, NULL, NULL, napi_default, NULL},
      {"mountOverlay", NULL, mount_overlay, NULL, NULL, NULL, napi_default, NULL},
      {"unmount", NULL, unmount, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
