# mpt_openblas.m4 -- find OpenBLAS through its CBLAS interface and insist on its OpenMP build.
# mptrain parallelises with OpenMP inside each rank; the pthread build of OpenBLAS would run its
# own thread pool beside OpenMP's and oversubscribe the cores (and ignore OMP_NUM_THREADS), so
# configure refuses it rather than let training run several times slower.

# MPT_CHECK_OPENBLAS
# ------------------
# Sets and substitutes BLAS_CPPFLAGS and BLAS_LIBS. Source, in order: --with-openblas=DIR
# (DIR/include, DIR/lib), BLAS_CPPFLAGS/BLAS_LIBS from the environment, pkg-config openblas.
AC_DEFUN([MPT_CHECK_OPENBLAS], [
  AC_REQUIRE([PKG_PROG_PKG_CONFIG])
  AC_ARG_VAR([BLAS_CPPFLAGS], [preprocessor flags for OpenBLAS's cblas.h (overrides pkg-config)])
  AC_ARG_VAR([BLAS_LIBS], [linker flags for OpenBLAS (overrides pkg-config)])
  AC_ARG_WITH([openblas],
    [AS_HELP_STRING([--with-openblas=DIR],
      [OpenBLAS (OpenMP build) installed under DIR (default: pkg-config openblas)])],
    [], [with_openblas=check])

  mpt_blas_source=
  AS_CASE([$with_openblas],
    [no], [AC_MSG_ERROR([OpenBLAS is required; --without-openblas is not supported])],
    [yes|check], [],
    [BLAS_CPPFLAGS="-I$with_openblas/include"
     # -R: libtool's run-time path, recorded in libmptrain.la for the programs too.
     BLAS_LIBS="-L$with_openblas/lib -R$with_openblas/lib -lopenblas"
     mpt_blas_source="--with-openblas=$with_openblas"])
  AS_IF([test -z "$mpt_blas_source" && test -n "$BLAS_LIBS$BLAS_CPPFLAGS"], [
    test -n "$BLAS_LIBS" || BLAS_LIBS=-lopenblas
    mpt_blas_source="BLAS_CPPFLAGS/BLAS_LIBS from the environment"])
  AS_IF([test -z "$mpt_blas_source"], [
    AC_MSG_CHECKING([for OpenBLAS with pkg-config])
    AS_IF([test -n "$PKG_CONFIG" && $PKG_CONFIG --exists openblas], [
      BLAS_CPPFLAGS=`$PKG_CONFIG --cflags-only-I openblas`
      BLAS_LIBS=`$PKG_CONFIG --libs openblas`
      mpt_blas_source="pkg-config openblas `$PKG_CONFIG --modversion openblas`"
      AC_MSG_RESULT([yes])
    ], [
      AC_MSG_RESULT([no])
      BLAS_LIBS=-lopenblas
      mpt_blas_source="-lopenblas"
    ])
  ])

  mpt_save_CPPFLAGS=$CPPFLAGS
  mpt_save_LIBS=$LIBS
  CPPFLAGS="$CPPFLAGS $BLAS_CPPFLAGS"
  LIBS="`echo "$BLAS_LIBS" | sed 's/^-R/-Wl,-rpath,/; s/ -R/ -Wl,-rpath,/g'` $LIBS"

  AC_CHECK_HEADER([cblas.h], [], [AC_MSG_ERROR([
  cblas.h (OpenBLAS) not found. On Debian/Ubuntu: apt-get install libopenblas-openmp-dev
  Or say where it is: --with-openblas=DIR, or BLAS_CPPFLAGS=-I... BLAS_LIBS=...])])

  AC_CACHE_CHECK([for cblas_sgemm and openblas_get_parallel], [mpt_cv_openblas_link], [
    AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <cblas.h>]],
        [[float a = 1, b = 2, c = 0;
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1.0f, &a, 1, &b, 1,
                      0.0f, &c, 1);
          return openblas_get_parallel();]])],
      [mpt_cv_openblas_link=yes], [mpt_cv_openblas_link=no])])
  AS_IF([test "x$mpt_cv_openblas_link" != xyes], [AC_MSG_ERROR([
  cannot link a CBLAS program against OpenBLAS with: $BLAS_LIBS
  (a different BLAS behind cblas.h?). mptrain needs OpenBLAS, OpenMP build.
  On Debian/Ubuntu: apt-get install libopenblas-openmp-dev])])

  # Ask the library that will actually be loaded at run time: on Debian the shared object is
  # chosen by update-alternatives, which may point at the pthread build even when the OpenMP
  # headers are the ones found. Cross-compiling, fall back to the build options pkg-config
  # records (openblas_config contains USE_OPENMP=1 for the OpenMP build).
  AC_CACHE_CHECK([whether OpenBLAS is the OpenMP build], [mpt_cv_openblas_openmp], [
    AC_RUN_IFELSE([AC_LANG_PROGRAM([[#include <cblas.h>
#include <cstdio>]],
        [[int p = openblas_get_parallel();
          std::FILE* f = std::fopen("conftest.par", "w");
          if (f) { std::fprintf(f, "%d\n", p); std::fclose(f); }
          return p == 2 ? 0 : 1;]])],
      [mpt_cv_openblas_openmp=yes],
      [AS_CASE([`cat conftest.par 2>/dev/null`],
        [0], [mpt_cv_openblas_openmp="no (sequential build)"],
        [1], [mpt_cv_openblas_openmp="no (pthread build)"],
        [mpt_cv_openblas_openmp="no (test program failed to run)"])],
      [AS_CASE([`$PKG_CONFIG --variable=openblas_config openblas 2>/dev/null`],
        [*USE_OPENMP=1*], [mpt_cv_openblas_openmp="yes (from pkg-config, cross-compiling)"],
        [mpt_cv_openblas_openmp="unknown (cross-compiling)"])])
    rm -f conftest.par])
  AS_CASE([$mpt_cv_openblas_openmp],
    [yes*], [],
    [unknown*], [AC_MSG_WARN([cannot tell whether OpenBLAS is the OpenMP build; it must be])],
    [AC_MSG_ERROR([
  the OpenBLAS found ($mpt_blas_source) is not the OpenMP build [[$mpt_cv_openblas_openmp]].
  mptrain threads with OpenMP, and OpenBLAS's own pthread pool would fight it.
  On Debian/Ubuntu: apt-get install libopenblas-openmp-dev
  (and remove libopenblas0-pthread, or select the OpenMP library with
   update-alternatives --config libopenblas.so.0-x86_64-linux-gnu).
  Elsewhere: build OpenBLAS with USE_OPENMP=1 and use --with-openblas=DIR.])])

  CPPFLAGS=$mpt_save_CPPFLAGS
  LIBS=$mpt_save_LIBS
  AC_SUBST([BLAS_CPPFLAGS])
  AC_SUBST([BLAS_LIBS])
])
