# mpt_boost.m4 -- find the two Boost libraries mptrain uses: Program_options (the input deck
# and its command-line overrides) and the Unit Test Framework (the tests), both as shared
# libraries. Boost.Test is used in its dynamic-library form, which needs BOOST_TEST_DYN_LINK
# defined wherever its header is included; that definition travels in BOOST_CPPFLAGS.

# MPT_CHECK_BOOST
# ---------------
# Sets and substitutes BOOST_CPPFLAGS, BOOST_LDFLAGS, BOOST_PROGRAM_OPTIONS_LIBS and
# BOOST_UNIT_TEST_FRAMEWORK_LIBS. --with-boost=DIR looks in DIR/include and DIR/lib; by default
# the compiler's own search path is used (Debian installs Boost there).
AC_DEFUN([MPT_CHECK_BOOST], [
  AC_ARG_WITH([boost],
    [AS_HELP_STRING([--with-boost=DIR],
      [Boost (>= 1.66) installed under DIR (default: the compiler's search path)])],
    [], [with_boost=check])
  # Defined empty, so a test that also says "#define BOOST_TEST_DYN_LINK" redefines it
  # identically (no warning).
  BOOST_CPPFLAGS="-DBOOST_TEST_DYN_LINK="
  BOOST_LDFLAGS=
  mpt_boost_test_ldflags=
  AS_CASE([$with_boost],
    [no], [AC_MSG_ERROR([Boost is required; --without-boost is not supported])],
    [yes|check], [],
    [BOOST_CPPFLAGS="-I$with_boost/include $BOOST_CPPFLAGS"
     # -R: libtool's run-time path, recorded in libmptrain.la for the programs too.
     BOOST_LDFLAGS="-L$with_boost/lib -R$with_boost/lib"
     mpt_boost_test_ldflags="-L$with_boost/lib -Wl,-rpath,$with_boost/lib"])

  mpt_save_CPPFLAGS=$CPPFLAGS
  mpt_save_LDFLAGS=$LDFLAGS
  mpt_save_LIBS=$LIBS
  CPPFLAGS="$CPPFLAGS $BOOST_CPPFLAGS"
  LDFLAGS="$LDFLAGS $mpt_boost_test_ldflags"

  AC_CACHE_CHECK([for Boost >= 1.66], [mpt_cv_boost_version], [
    AC_COMPUTE_INT([mpt_boost_version], [BOOST_VERSION], [[#include <boost/version.hpp>]],
      [mpt_boost_version=0])
    AS_IF([test "$mpt_boost_version" -ge 106600],
      [mpt_cv_boost_version=`expr $mpt_boost_version / 100000`.`expr $mpt_boost_version / 100 % 1000`.`expr $mpt_boost_version % 100`],
      [mpt_cv_boost_version=no])])
  AS_IF([test "x$mpt_cv_boost_version" = xno], [AC_MSG_ERROR([
  Boost headers (>= 1.66) not found.
  On Debian/Ubuntu: apt-get install libboost-program-options-dev libboost-test-dev
  Or say where Boost is: --with-boost=DIR])])

  # Program_options: the plain name first, then the -mt name some installations use.
  AC_CACHE_CHECK([for the Boost.Program_options library], [mpt_cv_boost_program_options], [
    mpt_cv_boost_program_options=no
    for mpt_lib in boost_program_options boost_program_options-mt; do
      LIBS="-l$mpt_lib $mpt_save_LIBS"
      AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <boost/program_options.hpp>]],
          [[namespace po = boost::program_options;
            po::options_description desc("conftest");
            desc.add_options()("n", po::value<int>()->default_value(1), "a number");
            po::variables_map vm;
            const char* argv[] = {"conftest", "--n=2"};
            po::store(po::parse_command_line(2, argv, desc), vm);
            return vm["n"].as<int>() != 2;]])],
        [mpt_cv_boost_program_options=-l$mpt_lib; break])
    done])
  AS_IF([test "x$mpt_cv_boost_program_options" = xno], [AC_MSG_ERROR([
  cannot link Boost.Program_options.
  On Debian/Ubuntu: apt-get install libboost-program-options-dev])])
  BOOST_PROGRAM_OPTIONS_LIBS=$mpt_cv_boost_program_options

  # The Unit Test Framework as a shared library: with BOOST_TEST_DYN_LINK and
  # BOOST_TEST_MODULE the header itself supplies main().
  AC_CACHE_CHECK([for the Boost.Test shared library (unit_test_framework)],
    [mpt_cv_boost_unit_test_framework], [
    mpt_cv_boost_unit_test_framework=no
    for mpt_lib in boost_unit_test_framework boost_unit_test_framework-mt; do
      LIBS="-l$mpt_lib $mpt_save_LIBS"
      AC_LINK_IFELSE([AC_LANG_SOURCE([[#define BOOST_TEST_MODULE conftest
#include <boost/test/unit_test.hpp>
BOOST_AUTO_TEST_CASE(conftest_case) { BOOST_TEST(1 + 1 == 2); }]])],
        [mpt_cv_boost_unit_test_framework=-l$mpt_lib; break])
    done])
  AS_IF([test "x$mpt_cv_boost_unit_test_framework" = xno], [AC_MSG_ERROR([
  cannot link the Boost.Test shared library (unit_test_framework).
  On Debian/Ubuntu: apt-get install libboost-test-dev])])
  BOOST_UNIT_TEST_FRAMEWORK_LIBS=$mpt_cv_boost_unit_test_framework

  CPPFLAGS=$mpt_save_CPPFLAGS
  LDFLAGS=$mpt_save_LDFLAGS
  LIBS=$mpt_save_LIBS
  AC_SUBST([BOOST_CPPFLAGS])
  AC_SUBST([BOOST_LDFLAGS])
  AC_SUBST([BOOST_PROGRAM_OPTIONS_LIBS])
  AC_SUBST([BOOST_UNIT_TEST_FRAMEWORK_LIBS])
])
