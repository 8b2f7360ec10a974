# mpt_cuda.m4 -- the optional CUDA backend: nvcc for the kernels, cuBLAS for the GEMMs.
# --with-cuda defaults to "auto": a GPU build machine gets the backend without being asked,
# and a machine without the toolkit still builds the CPU-only library. The toolkit is looked
# for in PATH, $CUDA_HOME, $CUDA_PATH and /usr/local/cuda, because batch and CI environments
# often have it installed without its bin/ on PATH.

# MPT_CHECK_CUDA(NVCC-OPTIMISATION-FLAGS)
# ---------------------------------------
# Sets and substitutes NVCC, NVCCFLAGS, CUDA_CPPFLAGS, CUDA_LDFLAGS, CUDA_LIBS and
# CUDA_ARCH_FLAGS; sets mpt_cuda (yes/no) and mpt_cuda_why (the reason when no); defines
# MPTRAIN_HAVE_CUDA and the automake conditional MPTRAIN_CUDA.
AC_DEFUN([MPT_CHECK_CUDA], [
  AC_ARG_WITH([cuda],
    [AS_HELP_STRING([--with-cuda@<:@=DIR@:>@],
      [build the CUDA backend (nvcc + cuBLAS), from the toolkit in DIR if given;
       yes: fail without it; no: CPU only; default: auto (build it when nvcc and cuBLAS
       are found in PATH, $CUDA_HOME, $CUDA_PATH or /usr/local/cuda)])],
    [], [with_cuda=auto])
  # The default covers the data-centre and workstation GPUs of the last generations: 7.5
  # (Turing, T4), 8.0 (Ampere, A100; its code also runs on 8.6/8.9: A10, L4, L40), 9.0
  # (Hopper, H100/H200), plus PTX for 9.0, which the driver compiles for anything newer
  # (Blackwell). Entries this nvcc cannot target are dropped from the default (CUDA 13 has no
  # sm_70); an explicit list is taken as given.
  AC_ARG_WITH([cuda-arch],
    [AS_HELP_STRING([--with-cuda-arch=LIST],
      [GPU compute capabilities to generate code for, comma-separated (e.g. 80,90);
       PTX for the last one is embedded too, for newer GPUs (default: 75,80,90, less any
       this nvcc does not support)])],
    [mpt_cuda_arch_given=yes], [with_cuda_arch="75,80,90" mpt_cuda_arch_given=no])
  AC_ARG_VAR([NVCC], [the CUDA compiler (default: found with --with-cuda)])
  AC_ARG_VAR([NVCCFLAGS], [extra flags for NVCC, appended to the ones configure chooses])

  mpt_cuda=no
  mpt_cuda_why=
  mpt_cuda_dir=
  CUDA_CPPFLAGS= CUDA_LDFLAGS= CUDA_LIBS= CUDA_ARCH_FLAGS=
  mpt_user_NVCCFLAGS=$NVCCFLAGS

  # --with-cuda-arch: 90 or sm_90 or compute_90 each mean compute capability 9.0; cubins for
  # every listed one, PTX for the last so a later GPU can JIT-compile it.
  mpt_cuda_arch_list=
  for mpt_arch in `echo "$with_cuda_arch" | tr ',;' '  '`; do
    mpt_arch=`echo "$mpt_arch" | sed -e 's/^sm_//' -e 's/^compute_//'`
    # Two or three digits, optionally one letter: 80, 90, 90a, 100, 120a.
    AS_CASE([$mpt_arch],
      [@<:@1-9@:>@@<:@0-9@:>@|@<:@1-9@:>@@<:@0-9@:>@@<:@a-z@:>@|@<:@1-9@:>@@<:@0-9@:>@@<:@0-9@:>@|@<:@1-9@:>@@<:@0-9@:>@@<:@0-9@:>@@<:@a-z@:>@], [],
      [AC_MSG_ERROR([--with-cuda-arch: '$mpt_arch' is not a compute capability like 80 or 90])])
    mpt_cuda_arch_list="${mpt_cuda_arch_list:+$mpt_cuda_arch_list }$mpt_arch"
  done
  AS_IF([test -z "$mpt_cuda_arch_list"],
    [AC_MSG_ERROR([--with-cuda-arch needs at least one compute capability, e.g. 90])])

  AS_CASE([$with_cuda],
    [no], [mpt_cuda_why="disabled by --with-cuda=no"],
    [yes|auto], [mpt_cuda_search="$PATH"
                 for mpt_dir in "$CUDA_HOME" "$CUDA_PATH" /usr/local/cuda; do
                   AS_IF([test -n "$mpt_dir"],
                     [mpt_cuda_search="$mpt_cuda_search$PATH_SEPARATOR$mpt_dir/bin"])
                 done],
    [mpt_cuda_search="$with_cuda/bin"
     mpt_cuda_dir=$with_cuda])

  AS_IF([test -z "$mpt_cuda_why"], [
    AC_PATH_PROG([NVCC], [nvcc], [], [$mpt_cuda_search])
    AS_IF([test -z "$NVCC"], [mpt_cuda_why="nvcc not found (searched $mpt_cuda_search)"])
  ])

  AS_IF([test -z "$mpt_cuda_why"], [
    # The toolkit root: DIR of --with-cuda=DIR, else where nvcc itself says it lives (its TOP),
    # because the nvcc found first may be a wrapper script or a symlink outside the toolkit.
    # Headers and libraries outside it (a distribution toolkit under /usr) need no -I/-L.
    AS_IF([test -z "$mpt_cuda_dir"], [
      mpt_cuda_dir=`$NVCC --dryrun -c -x cu /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | sed 1q`
      AS_IF([test -n "$mpt_cuda_dir" && test -d "$mpt_cuda_dir"],
        [mpt_cuda_dir=`cd "$mpt_cuda_dir" && pwd`],
        [mpt_cuda_dir=`AS_DIRNAME(["$NVCC"])`
         mpt_cuda_dir=`AS_DIRNAME(["$mpt_cuda_dir"])`])])
    AC_MSG_CHECKING([for the CUDA toolkit directory])
    AC_MSG_RESULT([$mpt_cuda_dir])
    AS_IF([test -f "$mpt_cuda_dir/include/cuda_runtime.h"],
      [CUDA_CPPFLAGS="-I$mpt_cuda_dir/include"])
    mpt_cuda_test_ldflags=
    for mpt_cuda_libdir in "$mpt_cuda_dir/lib64" "$mpt_cuda_dir/lib"; do
      AS_IF([test -f "$mpt_cuda_libdir/libcudart.so"], [
        # -R is libtool's run-time path flag: it is recorded in libmptrain.so, so every
        # program linked with the library finds libcublas without LD_LIBRARY_PATH.
        CUDA_LDFLAGS="-L$mpt_cuda_libdir -R$mpt_cuda_libdir"
        mpt_cuda_test_ldflags="-L$mpt_cuda_libdir -Wl,-rpath,$mpt_cuda_libdir"
        break])
    done
    CUDA_LIBS="-lcublas -lcudart"

    mpt_save_CPPFLAGS=$CPPFLAGS
    mpt_save_LDFLAGS=$LDFLAGS
    mpt_save_LIBS=$LIBS
    CPPFLAGS="$CPPFLAGS $CUDA_CPPFLAGS"
    LDFLAGS="$LDFLAGS $mpt_cuda_test_ldflags"
    LIBS="$CUDA_LIBS $LIBS"
    AC_CACHE_CHECK([for cuBLAS and the CUDA runtime], [mpt_cv_cuda_cublas], [
      AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <cuda_runtime.h>
#include <cublas_v2.h>]],
          [[cublasHandle_t handle;
            if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) return 1;
            cublasDestroy(handle);
            int n = 0;
            return cudaGetDeviceCount(&n) != cudaSuccess;]])],
        [mpt_cv_cuda_cublas=yes], [mpt_cv_cuda_cublas=no])])
    CPPFLAGS=$mpt_save_CPPFLAGS
    LDFLAGS=$mpt_save_LDFLAGS
    LIBS=$mpt_save_LIBS
    AS_IF([test "x$mpt_cv_cuda_cublas" != xyes],
      [mpt_cuda_why="cannot link cuBLAS and the CUDA runtime from $mpt_cuda_dir"])
  ])

  AS_IF([test -z "$mpt_cuda_why"], [
    # The default list, less what this nvcc cannot target (nvcc --list-gpu-arch, CUDA 11.0+;
    # an older nvcc keeps the whole list, and the compile test below decides).
    AS_IF([test "x$mpt_cuda_arch_given" = xno], [
      mpt_cuda_supported=`$NVCC --list-gpu-arch 2>/dev/null | sed -n 's/^compute_//p'`
      AS_IF([test -n "$mpt_cuda_supported"], [
        mpt_cuda_kept=
        for mpt_arch in $mpt_cuda_arch_list; do
          AS_IF([echo "$mpt_cuda_supported" | grep -qx "$mpt_arch"],
            [mpt_cuda_kept="${mpt_cuda_kept:+$mpt_cuda_kept }$mpt_arch"],
            [AC_MSG_NOTICE([$NVCC cannot generate code for compute capability $mpt_arch; left out])])
        done
        mpt_cuda_arch_list=$mpt_cuda_kept])
      AS_IF([test -z "$mpt_cuda_arch_list"],
        [mpt_cuda_why="$NVCC supports none of the default compute capabilities 75, 80, 90 (use --with-cuda-arch)"])
    ])
  ])

  AS_IF([test -z "$mpt_cuda_why"], [
    CUDA_ARCH_FLAGS=
    mpt_cuda_last_arch=
    for mpt_arch in $mpt_cuda_arch_list; do
      CUDA_ARCH_FLAGS="$CUDA_ARCH_FLAGS -gencode arch=compute_$mpt_arch,code=sm_$mpt_arch"
      mpt_cuda_last_arch=$mpt_arch
    done
    CUDA_ARCH_FLAGS="${CUDA_ARCH_FLAGS# } -gencode arch=compute_$mpt_cuda_last_arch,code=compute_$mpt_cuda_last_arch"
    mpt_cuda_arch_list=`echo "$mpt_cuda_arch_list" | tr ' ' ','`
    NVCCFLAGS="-std=c++20 $1 $CUDA_ARCH_FLAGS${mpt_user_NVCCFLAGS:+ $mpt_user_NVCCFLAGS}"
    AC_CACHE_CHECK([whether $NVCC compiles C++20 kernels for sm_$mpt_cuda_arch_list],
      [mpt_cv_cuda_nvcc_works], [
      cat > conftest.cu <<_MPT_EOF
// configure test: a C++20 kernel
#include <concepts>
#include <cuda_runtime.h>
template <std::floating_point T>
__global__ void conftest_scale(T* x, T a, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x@<:@i@:>@ *= a;
}
void conftest_launch(float* x, int n) { conftest_scale<<<(n + 255) / 256, 256>>>(x, 2.0f, n); }
_MPT_EOF
      mpt_cuda_cmd="$NVCC $NVCCFLAGS $CUDA_CPPFLAGS -Xcompiler -fPIC -c conftest.cu -o conftest.$ac_objext"
      AS_ECHO(["$as_me:$LINENO: $mpt_cuda_cmd"]) >&AS_MESSAGE_LOG_FD
      AS_IF([$mpt_cuda_cmd >&AS_MESSAGE_LOG_FD 2>&1],
        [mpt_cv_cuda_nvcc_works=yes], [mpt_cv_cuda_nvcc_works=no])
      rm -f conftest.cu conftest.$ac_objext])
    AS_IF([test "x$mpt_cv_cuda_nvcc_works" != xyes],
      [mpt_cuda_why="$NVCC cannot compile a C++20 kernel with: $NVCCFLAGS (see config.log)"])
  ])

  AS_IF([test -z "$mpt_cuda_why"], [
    mpt_cuda=yes
    AC_DEFINE([MPTRAIN_HAVE_CUDA], [1], [Define to 1 when the CUDA backend is built.])
  ], [
    AS_CASE([$with_cuda],
      [no], [],
      [auto], [AC_MSG_NOTICE([CUDA backend not built: $mpt_cuda_why])],
      [AC_MSG_ERROR([
  --with-cuda=$with_cuda was given but the CUDA backend cannot be built:
  $mpt_cuda_why.
  Install the CUDA toolkit (nvcc, cuBLAS), e.g. under /usr/local/cuda, and use
  --with-cuda=DIR if it is elsewhere; or configure --with-cuda=no for a CPU-only build.])])
    CUDA_CPPFLAGS= CUDA_LDFLAGS= CUDA_LIBS=
    NVCCFLAGS=$mpt_user_NVCCFLAGS
  ])
  AM_CONDITIONAL([MPTRAIN_CUDA], [test "x$mpt_cuda" = xyes])
  AC_SUBST([NVCC])
  AC_SUBST([NVCCFLAGS])
  AC_SUBST([CUDA_CPPFLAGS])
  AC_SUBST([CUDA_LDFLAGS])
  AC_SUBST([CUDA_LIBS])
  AC_SUBST([CUDA_ARCH_FLAGS])
])
