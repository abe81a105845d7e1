#!/usr/bin/env bash
# Instructions per message (valgrind's callgrind): sipwall's parse and full packet decision
# against rsip's parse of the same messages. Unlike time, instruction counts repeat to the
# instruction on a shared, noisy machine; the time ratio (benches/replay.sh) also carries each
# side's instructions per cycle, which this does not.
#
#   benches/instructions.sh        (needs valgrind; about a minute)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cargo build --release -q --example callgrind_parse
bin=target/release/examples/callgrind_parse
# Each loop runs twice, N and 3N times: the difference over 2N is the cost of one message,
# without the setup (the engine, the packets) both runs share.
n=${N:-2000}
count() { # mode message iterations -> instructions
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$3" "$1" "$2" 2>&1 >/dev/null |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
per() { echo $(( ($(count "$1" "$2" $((3 * n))) - $(count "$1" "$2" "$n")) / (2 * n) )); }
for msg in register invite_sdp scanner_options; do
  r=$(per rsip "$msg"); p=$(per parse "$msg"); d=$(per decide "$msg")
  python3 -c "import sys; r, p, d = map(int, sys.argv[2:]); print(f'{sys.argv[1]}: instructions per message: rsip parse {r}, sipwall parse {p} ({r/p:.1f}x fewer), full packet decision {d} ({r/d:.1f}x fewer)')" "$msg" "$r" "$p" "$d"
done
