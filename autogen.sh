#!/bin/sh
# autogen.sh -- generate configure and Makefile.in from a git checkout (they are not committed).
# Needs autoconf, automake, libtool and pkg-config (for pkg.m4); on Debian:
#   apt-get install autoconf automake libtool pkg-config
set -e
cd "$(dirname "$0")"
for tool in autoreconf libtoolize pkg-config; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "autogen.sh: $tool not found; install autoconf automake libtool pkg-config" >&2
    exit 1
  fi
done
autoreconf -fi
echo "autogen.sh: done; now run ./configure"
