# mpt_text.m4 -- the two libraries the text side of mptrain uses: PCRE2 (8-bit, with Unicode
# properties and JIT) for GPT-2's pre-tokenizer pattern, and nlohmann-json (header only) for
# encoder.json, Hugging Face config.json and safetensors headers.

# MPT_CHECK_PCRE2
# ---------------
# Sets and substitutes PCRE2_CFLAGS and PCRE2_LIBS (pkg-config libpcre2-8).
AC_DEFUN([MPT_CHECK_PCRE2], [
  PKG_CHECK_MODULES([PCRE2], [libpcre2-8 >= 10.30], [], [AC_MSG_ERROR([
  PCRE2 (libpcre2-8 >= 10.30) not found; the GPT-2 tokenizer needs it.
  On Debian/Ubuntu: apt-get install libpcre2-dev])])
])

# MPT_CHECK_JSON
# --------------
# nlohmann-json >= 3.9 is header only: checks that <nlohmann/json.hpp> compiles.
AC_DEFUN([MPT_CHECK_JSON], [
  AC_CACHE_CHECK([for nlohmann-json >= 3.9], [mpt_cv_nlohmann_json], [
    AC_COMPILE_IFELSE([AC_LANG_PROGRAM([[#include <nlohmann/json.hpp>
#if NLOHMANN_JSON_VERSION_MAJOR < 3 || (NLOHMANN_JSON_VERSION_MAJOR == 3 && NLOHMANN_JSON_VERSION_MINOR < 9)
#error too old
#endif
]], [[nlohmann::json j = nlohmann::json::parse("{\"a\": 1}"); return j.at("a").get<int>() - 1;]])],
      [mpt_cv_nlohmann_json=yes], [mpt_cv_nlohmann_json=no])])
  AS_IF([test "x$mpt_cv_nlohmann_json" = xno], [AC_MSG_ERROR([
  nlohmann-json (>= 3.9) not found; mptrain reads JSON (encoder.json, config.json,
  safetensors headers) with it.
  On Debian/Ubuntu: apt-get install nlohmann-json3-dev])])
])
