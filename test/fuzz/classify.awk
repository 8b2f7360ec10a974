# test/fuzz/classify.awk -- reads the log of one harness run on one input (a libFuzzer replay
# with AddressSanitizer and UndefinedBehaviorSanitizer) and prints one line:
#
#   none                     the input ran cleanly
#   ours   SIGNATURE         a failure that is mptrain's (or that nobody has shown is not)
#   hdf5   SIGNATURE         a failure entirely inside HDF5 on a damaged file
#
# SIGNATURE names the failure: its kind and access, the innermost named HDF5 function doing
# it, and for heap errors the innermost named HDF5 function that allocated the memory, e.g.
#   heap-buffer-overflow READ in H5O__msg_iterate_real; allocated in H5C_protect (via H5Aexists)
# (the "via" part, the HDF5 API function mptrain called, is informative and not compared).
#
# "hdf5" is given only when all of this holds; anything else is "ours":
#   * the report is AddressSanitizer's (SEGV, heap-buffer-overflow, use-after-free, ...) or
#     libFuzzer's out-of-memory for one malloc -- not a UBSan report (UBSan instruments only
#     our code), an exception, an abort by the harness (a broken contract), a timeout or a
#     growing resident size;
#   * the faulting access (for an out-of-memory: the allocation) happens in libhdf5: the first
#     frame that is not the sanitizer, libFuzzer, libc or the C++ runtime is a libhdf5 frame;
#   * walking up from there, the first frame outside libhdf5 is mptrain's code, and the HDF5
#     API function it called is one that takes no buffer and no size from the caller (opening,
#     closing, querying and existence checks; not H5Dread, H5Aread, H5Dwrite, ...), so nothing
#     mptrain chose decided the access;
#   * for a report that names the allocation (heap-buffer-overflow, use-after-free, ...), the
#     allocation was made by libhdf5 too (its first frame past the allocator is libhdf5):
#     memory mptrain allocated is never excused.
# A SEGV report names no allocation: it qualifies on the first three conditions alone.
# fuzz_run.sh then also requires the signature to be one documented under test/fuzz/upstream/.

function transparent(line) {
  # Frames of the sanitizers, libFuzzer, libc and the C++ runtime, which only pass a call on.
  return line ~ /__interceptor_|__asan|__sanitizer|__ubsan|__lsan|fuzzer::|libclang_rt|compiler-rt|libc\.so|libc_start|sysdeps\/|__GI_|__libc_|__mem[a-z_]*|__str[a-z_]*|[( ]raise[ (]|[( ]abort[ (]|[( ](malloc|calloc|realloc|free|posix_memalign|aligned_alloc)[ (]|operator new|operator delete|libstdc\+\+|__cxa_|__gnu_cxx::|std::terminate|\/usr\/include\/c\+\+\/|in _start /
}
function in_hdf5(line) { return line ~ /libhdf5/ }
# The project's code: the library sources and the harnesses.
function project(line) { return line ~ /mptrain::|LLVMFuzzerTestOneInput|\/src\/[A-Za-z0-9_\/]*\.(cpp|hpp)|fuzz_[a-z]*\.cpp/ }
function frame_name(line,    m) {
  # "#3 0x7f.. in H5O__msg_iterate_real (/lib/...)" -> H5O__msg_iterate_real; "" when unnamed.
  if (match(line, / in [A-Za-z_][A-Za-z0-9_:]*/)) return substr(line, RSTART + 4, RLENGTH - 4)
  return ""
}
# Functions that only wrap the allocator, not where memory is decided on.
function allocator_wrapper(name) { return name ~ /^H5FL_|^H5MM_/ }
# HDF5 API functions that take nothing from the caller but names and ids.
function metadata_only(name) {
  return name ~ /^(H5Fopen|H5Fclose|H5Fget_filesize|H5Fget_info2?|H5Oopen|H5Oopen_by_addr|H5Oclose|H5Oget_info[0-9]*|H5Oget_info_by_name[0-9]*|H5Lexists|H5Aexists|H5Aexists_by_name|H5Aopen|H5Aopen_by_name|H5Aget_type|H5Aget_space|H5Aget_storage_size|H5Aclose|H5Dopen2|H5Dget_type|H5Dget_space|H5Dget_create_plist|H5Dget_storage_size|H5Dclose|H5Gopen2|H5Gclose|H5Iget_type|H5Iget_file_id|H5Sget_simple_extent_[a-z]*|H5Sclose|H5Tget_[a-z]*|H5Tis_variable_str|H5Tclose)$/
}

BEGIN { section = "" }

# The kind of report, from its first line.
kind == "" && /ERROR: AddressSanitizer: / {
  k = $0; sub(/.*ERROR: AddressSanitizer: /, "", k); sub(/ .*/, "", k)
  kind = k; family = "asan"; section = "access"; next
}
kind == "" && /ERROR: libFuzzer: out-of-memory \(malloc\(/ {
  kind = "out-of-memory"; access = "malloc"; family = "oom"; section = "access"; next
}
kind == "" && /ERROR: libFuzzer: / {
  k = $0; sub(/.*ERROR: libFuzzer: /, "", k); sub(/ *\(.*/, "", k); gsub(/ /, "-", k)
  kind = k; family = "libfuzzer"; section = "access"; next
}
kind == "" && /runtime error:/ { kind = "undefined-behaviour"; family = "ubsan"; section = "access"; next }
kind == "" && /terminate called|uncaught exception/ { kind = "exception"; family = "other"; next }
kind == "" && /^fuzz_[a-z]*: / { kind = "contract"; family = "other"; next }

/(READ|WRITE) of size/ && access == "" { access = ($0 ~ /WRITE/) ? "WRITE" : "READ" }
/The signal is caused by a (READ|WRITE)/ && access == "" { access = ($0 ~ /WRITE/) ? "WRITE" : "READ" }
/^(previously )?allocated by thread/ { section = "alloc"; alloc_seen = 1; next }
/^freed by thread/ { section = "freed"; next }
/^SUMMARY:/ { section = "" }

section == "access" && /^ *#[0-9]+ / {
  if (access_done) next
  if (!access_started) {
    if (transparent($0)) next
    access_started = 1
    access_in_hdf5 = in_hdf5($0)
    if (!access_in_hdf5) { access_done = 1; next }
  }
  if (in_hdf5($0)) {
    name = frame_name($0)
    if (name != "" && access_fn == "" && !allocator_wrapper(name)) access_fn = name
    if (name != "") api = name
    else api = "?"
    next
  }
  if (transparent($0)) next
  caller_is_ours = project($0)  # the first frame past libhdf5 must be mptrain's code
  access_done = 1
  next
}

section == "alloc" && /^ *#[0-9]+ / {
  if (alloc_done) next
  if (!alloc_started) {
    if (transparent($0)) next
    alloc_started = 1
    alloc_in_hdf5 = in_hdf5($0)
    if (!alloc_in_hdf5) { alloc_done = 1; next }
  }
  if (in_hdf5($0)) {
    name = frame_name($0)
    if (name != "" && alloc_fn == "" && !allocator_wrapper(name)) alloc_fn = name
    next
  }
  alloc_done = 1
  next
}

END {
  if (kind == "") { print "none"; exit }
  signature = kind (access != "" ? " " access : "")
  if (access_fn != "") signature = signature " in " access_fn
  if (family == "asan" && alloc_seen) signature = signature "; allocated in " (alloc_fn != "" ? alloc_fn : "?")
  qualifies = (family == "asan" || family == "oom") && access_started && access_in_hdf5 &&
              caller_is_ours && access_fn != "" && metadata_only(api)
  if (qualifies && family == "asan" && alloc_seen && !(alloc_started && alloc_in_hdf5 && alloc_fn != ""))
    qualifies = 0
  if (qualifies && family == "asan" && !alloc_seen && kind != "SEGV") qualifies = 0
  print (qualifies ? "hdf5" : "ours") "   " signature (api != "" ? " (via " api ")" : "")
}
