#!/bin/sh
# nvcc-libtool.sh -- lets libtool drive nvcc: "libtool --mode=compile nvcc-libtool.sh NVCC ARGS".
# libtool believes it is calling a GNU C++ compiler (--tag=CXX) and adds the host-compiler
# flags for position-independent code (-fPIC -DPIC) to build the shared-library object. nvcc
# does not accept -fPIC itself, so such host-only flags are handed to the host compiler with
# -Xcompiler; -D, -I, -c and -o mean the same to nvcc and pass through unchanged.
if [ $# -lt 2 ]; then
  echo "usage: $0 NVCC [ARGS...]" >&2
  exit 2
fi
nvcc=$1
shift
# Rebuild the argument list in place, so that arguments with spaces stay intact.
n=$#
while [ "$n" -gt 0 ]; do
  arg=$1
  shift
  n=$((n - 1))
  case $arg in
    -fPIC | -fpic | -fno-common | -pthread | -fopenmp)
      set -- "$@" -Xcompiler "$arg" ;;
    *)
      set -- "$@" "$arg" ;;
  esac
done
exec "$nvcc" "$@"
