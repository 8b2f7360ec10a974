# mpt_cxx.m4 -- compiler checks for mptrain: the MPI C++ compiler, C++20, and the warning
# flags. mptrain is an MPI program compiled with the MPI wrapper compiler (mpicxx), so the MPI
# include and link flags never have to be discovered separately.

# MPT_CXX_CHECK_MPI
# -----------------
# Fail unless $CXX can compile and link an MPI program. Run after AC_PROG_CXX with C++ as the
# current language. A plain g++ gets here when the user sets CXX or when no wrapper was found.
AC_DEFUN([MPT_CXX_CHECK_MPI], [
  AC_CACHE_CHECK([whether $CXX compiles and links MPI programs], [mpt_cv_cxx_mpi], [
    AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <mpi.h>]],
        [[int argc = 0; char** argv = nullptr;
          MPI_Init(&argc, &argv);
          int rank = -1;
          MPI_Comm_rank(MPI_COMM_WORLD, &rank);
          MPI_Finalize();
          return rank < 0;]])],
      [mpt_cv_cxx_mpi=yes], [mpt_cv_cxx_mpi=no])])
  AS_IF([test "x$mpt_cv_cxx_mpi" != xyes], [AC_MSG_ERROR([
  $CXX cannot build MPI programs. mptrain must be compiled with an MPI C++ compiler
  wrapper (mpicxx). On Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev
  Or point configure at one: ./configure CXX=/path/to/mpicxx])])
  AC_CACHE_CHECK([for the MPI implementation], [mpt_cv_mpi_flavour], [
    AC_COMPILE_IFELSE([AC_LANG_PROGRAM([[#include <mpi.h>
#ifndef OPEN_MPI
#error not Open MPI
#endif]], [])],
      [mpt_cv_mpi_flavour="Open MPI"], [mpt_cv_mpi_flavour="other (not Open MPI)"])])
])

# MPT_CXX_STD20
# -------------
# Make $CXX compile C++20 (std::span, concepts), appending -std=c++20 (or the older spelling
# -std=c++2a) to CXX the way autoconf itself adds language-level flags, so libtool, the
# programs and the configure tests all use one dialect.
AC_DEFUN([MPT_CXX_STD20], [
  AC_CACHE_CHECK([for the $CXX option to accept C++20], [mpt_cv_cxx_std20], [
    mpt_cv_cxx_std20=unsupported
    mpt_save_CXX=$CXX
    for mpt_flag in none -std=c++20 -std=c++2a; do
      AS_IF([test "x$mpt_flag" = xnone], [CXX=$mpt_save_CXX], [CXX="$mpt_save_CXX $mpt_flag"])
      AC_COMPILE_IFELSE([AC_LANG_PROGRAM([[
#if __cplusplus < 202002L
#error not C++20
#endif
#include <span>
#include <concepts>
template <std::integral T> constexpr T twice(T x) { return 2 * x; }
]], [[int a[3] = {1, 2, 3};
      std::span<const int> s(a);
      static_assert(twice(2) == 4);
      return static_cast<int>(s.size()) - 3;]])],
        [mpt_cv_cxx_std20=$mpt_flag; break])
    done
    CXX=$mpt_save_CXX])
  AS_CASE([$mpt_cv_cxx_std20],
    [unsupported], [AC_MSG_ERROR([
  $CXX does not support C++20 (std::span, concepts). mptrain needs GCC >= 10 or
  Clang >= 12 behind the MPI wrapper. On Debian 12: apt-get install g++])],
    [none], [],
    [CXX="$CXX $mpt_cv_cxx_std20"])
])

# MPT_CXX_FLAGS_CHECKED(VARIABLE, FLAGS)
# --------------------------------------
# Append to VARIABLE each of FLAGS that $CXX accepts without complaint, so an unusual compiler
# loses a warning rather than the build.
AC_DEFUN([MPT_CXX_FLAGS_CHECKED], [
  for mpt_flag in $2; do
    AS_VAR_PUSHDEF([mpt_cache], [mpt_cv_cxxflag_$mpt_flag])
    AC_CACHE_CHECK([whether $CXX accepts $mpt_flag], [mpt_cache], [
      mpt_save_CXXFLAGS=$CXXFLAGS
      CXXFLAGS="$CXXFLAGS $mpt_flag -Werror"
      AC_COMPILE_IFELSE([AC_LANG_PROGRAM([], [])],
        [AS_VAR_SET([mpt_cache], [yes])], [AS_VAR_SET([mpt_cache], [no])])
      CXXFLAGS=$mpt_save_CXXFLAGS])
    AS_VAR_IF([mpt_cache], [yes], [$1="${$1:+$$1 }$mpt_flag"])
    AS_VAR_POPDEF([mpt_cache])
  done
])
