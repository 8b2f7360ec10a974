#!/bin/bash
# test/layering.sh -- the parts of the library point down (doc/DESIGN.md §3.2):
#   core <- backend <- parallel <- model <- io <- train <- programs
# Every #include of one of our headers, in src/PART/ and include/mptrain/PART/, must name a
# part at or below PART. An include of a higher part fails the test, naming file and line.
set -u
top=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
parts=(core backend parallel model io train programs)
rank_of() { local i; for i in "${!parts[@]}"; do [ "${parts[$i]}" = "$1" ] && { echo "$i"; return; }; done; echo -1; }
status=0 checked=0
for part in "${parts[@]}"; do
  mine=$(rank_of "$part")
  for f in $(find "$top/src/$part" "$top/include/mptrain/$part" -type f \
               \( -name '*.cpp' -o -name '*.hpp' -o -name '*.cu' -o -name '*.cuh' \) 2>/dev/null); do
    while IFS=: read -r line text; do
      inc=$(printf '%s\n' "$text" | sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\(mptrain\/\)\{0,1\}\([a-z]*\)\/.*"/\2/p')
      [ -n "$inc" ] || continue
      theirs=$(rank_of "$inc")
      [ "$theirs" -ge 0 ] || continue
      checked=$((checked + 1))
      if [ "$theirs" -gt "$mine" ]; then
        echo "FAIL: ${f#"$top"/}:$line: $part includes $inc (a higher part): $text"
        status=1
      fi
    done < <(grep -n '#[[:space:]]*include[[:space:]]*"' "$f")
  done
done
if [ "$checked" -lt 100 ]; then
  echo "FAIL: only $checked includes of our own headers seen: is top_srcdir ($top) right?"
  exit 1
fi
[ "$status" = 0 ] && echo "PASS: $checked includes, every one at or below its part"
exit "$status"
