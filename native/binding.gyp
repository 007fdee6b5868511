{
  "targets": [
    {
      "target_name": "roam_native",
      "sources": ["src/netns.c", "src/nft.c", "src/rawip.c", "src/borrowtcp.c", "src/mounts.c", "src/addon.c"],
      "cflags": ["-Wall", "-Wextra", "-O2", "-D_GNU_SOURCE"],
      "libraries": ["-lpthread", "-lnftables"]
    },
    {
      "target_name": "roam-shim",
      "type": "executable",
      "sources": ["src/shim.c"],
      "cflags": ["-Wall", "-Wextra", "-O2", "-D_GNU_SOURCE"]
    },
    {
      "target_name": "roam-hold",
      "type": "executable",
      "sources": ["src/hold.c"],
      "cflags": ["-Wall", "-Wextra", "-O2", "-D_GNU_SOURCE"],
      "libraries": ["-lnetfilter_log"]
    },
    {
      "target_name": "roam-criu-hook",
      "type": "executable",
      "sources": ["src/criu-hook.c"],
      "cflags": ["-Wall", "-Wextra", "-O2", "-D_GNU_SOURCE"]
    },
    {
      "target_name": "roam-nsexec",
      "type": "executable",
      "sources": ["src/nsexec.c"],
      "cflags": ["-Wall", "-Wextra", "-O2", "-D_GNU_SOURCE"]
    }
  ]
}
