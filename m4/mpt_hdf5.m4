# mpt_hdf5.m4 -- find parallel HDF5. Checkpoints are written collectively through MPI-IO
# (H5Pset_fapl_mpio), which only an HDF5 built with --enable-parallel provides; a serial HDF5
# would compile the headers but fail at link or run time, so it is refused here by name.

# MPT_CHECK_HDF5
# --------------
# Sets and substitutes HDF5_CPPFLAGS, HDF5_LDFLAGS and HDF5_LIBS (the C library; the parallel
# HDF5 has no C++ API). Source, in order: --with-hdf5=DIR (DIR/include, DIR/lib), pkg-config
# hdf5-openmpi (Debian's parallel build), hdf5-mpi, hdf5.
AC_DEFUN([MPT_CHECK_HDF5], [
  AC_REQUIRE([PKG_PROG_PKG_CONFIG])
  AC_ARG_WITH([hdf5],
    [AS_HELP_STRING([--with-hdf5=DIR],
      [parallel HDF5 installed under DIR (default: pkg-config hdf5-openmpi, hdf5-mpi, hdf5)])],
    [], [with_hdf5=check])

  HDF5_CPPFLAGS= HDF5_LDFLAGS= HDF5_LIBS=
  mpt_hdf5_source=
  mpt_hdf5_test_ldflags=
  AS_CASE([$with_hdf5],
    [no], [AC_MSG_ERROR([parallel HDF5 is required; --without-hdf5 is not supported])],
    [yes|check], [
      AC_MSG_CHECKING([for parallel HDF5 with pkg-config])
      for mpt_pc in hdf5-openmpi hdf5-mpi hdf5; do
        AS_IF([test -n "$PKG_CONFIG" && $PKG_CONFIG --exists $mpt_pc], [
          HDF5_CPPFLAGS=`$PKG_CONFIG --cflags-only-I $mpt_pc`
          HDF5_LDFLAGS=`$PKG_CONFIG --libs-only-L $mpt_pc`
          HDF5_LIBS=`$PKG_CONFIG --libs-only-l $mpt_pc`
          mpt_hdf5_source="pkg-config $mpt_pc `$PKG_CONFIG --modversion $mpt_pc`"
          break])
      done
      mpt_hdf5_test_ldflags=$HDF5_LDFLAGS
      AS_IF([test -n "$mpt_hdf5_source"], [AC_MSG_RESULT([$mpt_pc])], [
        AC_MSG_RESULT([no])
        HDF5_LIBS=-lhdf5
        mpt_hdf5_source="-lhdf5"])],
    [HDF5_CPPFLAGS="-I$with_hdf5/include"
     # -R: libtool's run-time path, recorded in libmptrain.la for the programs too.
     HDF5_LDFLAGS="-L$with_hdf5/lib -R$with_hdf5/lib"
     mpt_hdf5_test_ldflags="-L$with_hdf5/lib -Wl,-rpath,$with_hdf5/lib"
     HDF5_LIBS=-lhdf5
     mpt_hdf5_source="--with-hdf5=$with_hdf5"])

  mpt_save_CPPFLAGS=$CPPFLAGS
  mpt_save_LDFLAGS=$LDFLAGS
  mpt_save_LIBS=$LIBS
  CPPFLAGS="$CPPFLAGS $HDF5_CPPFLAGS"
  LDFLAGS="$LDFLAGS $mpt_hdf5_test_ldflags"
  LIBS="$HDF5_LIBS $LIBS"

  AC_CHECK_HEADER([hdf5.h], [], [AC_MSG_ERROR([
  hdf5.h not found. mptrain needs parallel HDF5 (>= 1.10).
  On Debian/Ubuntu: apt-get install libhdf5-openmpi-dev
  Or say where it is: --with-hdf5=DIR])])

  AC_CACHE_CHECK([whether HDF5 is >= 1.10 and built for parallel I/O (H5_HAVE_PARALLEL)],
    [mpt_cv_hdf5_parallel], [
    AC_COMPILE_IFELSE([AC_LANG_PROGRAM([[#include <hdf5.h>
#if !H5_VERSION_GE(1, 10, 0)
#error HDF5 too old
#endif]], [])],
      [AC_COMPILE_IFELSE([AC_LANG_PROGRAM([[#include <hdf5.h>
#if !defined(H5_HAVE_PARALLEL) || !H5_HAVE_PARALLEL
#error serial HDF5
#endif]], [])],
        [mpt_cv_hdf5_parallel=yes], [mpt_cv_hdf5_parallel="no (serial build)"])],
      [mpt_cv_hdf5_parallel="no (older than 1.10)"])])
  AS_CASE([$mpt_cv_hdf5_parallel],
    [yes], [],
    [*serial*], [AC_MSG_ERROR([
  the HDF5 found ($mpt_hdf5_source) is a serial build: H5_HAVE_PARALLEL is not set.
  mptrain writes checkpoints collectively through MPI-IO and needs parallel HDF5.
  On Debian/Ubuntu: apt-get install libhdf5-openmpi-dev
  (it installs beside the serial libhdf5-dev; configure prefers pkg-config hdf5-openmpi)
  Elsewhere: --with-hdf5=DIR of an HDF5 configured with --enable-parallel.])],
    [AC_MSG_ERROR([
  the HDF5 found ($mpt_hdf5_source) is older than 1.10; mptrain needs parallel HDF5 >= 1.10.
  On Debian/Ubuntu: apt-get install libhdf5-openmpi-dev])])

  AC_CACHE_CHECK([for H5Pset_fapl_mpio in the HDF5 library], [mpt_cv_hdf5_link], [
    AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <mpi.h>
#include <hdf5.h>]],
        [[hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
          herr_t status = H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, MPI_INFO_NULL);
          H5Pclose(fapl);
          return status < 0;]])],
      [mpt_cv_hdf5_link=yes], [mpt_cv_hdf5_link=no])])
  AS_IF([test "x$mpt_cv_hdf5_link" != xyes], [AC_MSG_ERROR([
  cannot link a parallel HDF5 program with: $HDF5_LDFLAGS $HDF5_LIBS
  (is the HDF5 library built against a different MPI than $CXX?).
  On Debian/Ubuntu: apt-get install libhdf5-openmpi-dev])])

  AC_CACHE_CHECK([for the HDF5 version], [mpt_cv_hdf5_version], [
    AC_COMPUTE_INT([mpt_hdf5_major], [H5_VERS_MAJOR], [[#include <hdf5.h>]], [mpt_hdf5_major=?])
    AC_COMPUTE_INT([mpt_hdf5_minor], [H5_VERS_MINOR], [[#include <hdf5.h>]], [mpt_hdf5_minor=?])
    AC_COMPUTE_INT([mpt_hdf5_release], [H5_VERS_RELEASE], [[#include <hdf5.h>]],
      [mpt_hdf5_release=?])
    mpt_cv_hdf5_version=$mpt_hdf5_major.$mpt_hdf5_minor.$mpt_hdf5_release])

  CPPFLAGS=$mpt_save_CPPFLAGS
  LDFLAGS=$mpt_save_LDFLAGS
  LIBS=$mpt_save_LIBS
  AC_SUBST([HDF5_CPPFLAGS])
  AC_SUBST([HDF5_LDFLAGS])
  AC_SUBST([HDF5_LIBS])
])
