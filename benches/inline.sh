#!/usr/bin/env bash
# Inline benchmark (issue 3, section 6): packets/s through the NFQUEUE, all in one run, so the
# ratios hold on a noisy machine. As root; bounded in count and time; namespaces removed.
#
#   sudo benches/inline.sh [PACKETS]
#
# A sender namespace writes pre-built SIP datagrams (sipwall-load, spoofed over 130k sources)
# to a receiver namespace whose INPUT queues UDP 5060. Measured, each with the same packets:
#   (a) a do-nothing consumer on sipwall's netlink layer (same queue settings as sipwall)
#   (b) sipwall on a realistic mix (6 REGISTER : 2 INVITE : 1 scanner : 1 by-IP)
#   (c) the seed's kernel-only rules: -m string --string <domain> ACCEPT, else DROP
#   (d) a do-nothing consumer on the nfq crate, one verdict per packet
#   (e) sipwall on the nfq crate backend (for reference)
# and the latency sipwall adds per packet at a moderate rate (p50, p99), against no queue.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --bins
bin=$PWD/target/release
n=${1:-300000}
ns="swb$$"
run=$(mktemp -d)
cleanup() {
  ip netns pids "$ns-rcv" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del "$ns-snd" 2>/dev/null || true
  ip netns del "$ns-rcv" 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT
ip netns add "$ns-snd"; ip netns add "$ns-rcv"
ip link add "s$$" type veth peer name "r$$"
ip link set "s$$" netns "$ns-snd"; ip link set "r$$" netns "$ns-rcv"
ip -n "$ns-snd" addr add 198.18.0.66/24 dev "s$$"; ip -n "$ns-rcv" addr add 198.18.0.2/24 dev "r$$"
ip -n "$ns-snd" link set "s$$" up; ip -n "$ns-rcv" link set "r$$" up; ip -n "$ns-rcv" link set lo up
ip -n "$ns-rcv" route add 198.18.0.0/15 dev "r$$"
ip netns exec "$ns-rcv" sysctl -qw net.ipv4.conf.all.rp_filter=0 "net.ipv4.conf.r$$.rp_filter=0"
rx() { ip netns exec "$ns-rcv" "$@"; }
send() { ip netns exec "$ns-snd" "$bin/sipwall-load" send --dst 198.18.0.2:5060 --seconds 60 "$@"; }
json() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
queue_rule() { rx iptables -A INPUT -p udp --dport 5060 -j NFQUEUE --queue-num 0; }
flush() { rx iptables -F INPUT; }

consumer() { # backend -> pps
  queue_rule
  rx "$bin/sipwall-load" consume --backend "$1" --seconds 90 --idle 1.5 >"$run/c.json" 2>"$run/c.err" &
  local c=$!
  until grep -q consuming "$run/c.err" 2>/dev/null; do sleep 0.1; done
  send --mix mix --count "$n" >"$run/s.json"
  wait $c
  flush
  echo "$(json "$(cat "$run/c.json")" pps) $(json "$(cat "$run/c.json")" packets) $(json "$(cat "$run/s.json")" pps)"
}
sipwall() { # backend -> pps
  rx "$bin/sipwall" run --domain sip.example.com --apply-rules --no-offload --no-state \
    --socket "$run/ctl.sock" --backend "$1" >"$run/w.out" 2>"$run/w.err" &
  local w=$!
  sleep 1.5
  send --mix mix --count "$n" >"$run/s.json"
  sleep 1.5
  kill -TERM $w; wait $w || true
  sed -n 's/^packets: \([0-9]*\)  packets\/s while busy: \([0-9]*\)$/\2 \1/p' "$run/w.out" | tr '\n' ' '
  json "$(cat "$run/s.json")" pps
}

read -r a a_n a_s <<<"$(consumer netlink)"
read -r b b_n b_s <<<"$(sipwall netlink)"
read -r d d_n d_s <<<"$(consumer nfq)"
read -r e e_n e_s <<<"$(sipwall nfq)"
# (c) the kernel's string match, no queue: every packet passes two rules.
rx iptables -A INPUT -p udp --dport 5060 -m string --string sip.example.com --algo bm -j ACCEPT
rx iptables -A INPUT -p udp --dport 5060 -j DROP
c_s=$(json "$(send --mix mix --count "$n")" pps)
c_n=$(rx iptables -nvxL INPUT | awk '/dpt:5060/ {s += $1} END {print s}')
flush

# Latency at a moderate rate (5k/s, all accepted): no queue, then through sipwall.
lat() {
  rx "$bin/sipwall-load" recv --bind 198.18.0.2:5060 --seconds 30 --idle 1 >"$run/r.json" &
  local r=$!
  sleep 0.3
  send --mix legit --count 15000 --rate 5000 >/dev/null
  wait $r
  echo "$(json "$(cat "$run/r.json")" p50_us) $(json "$(cat "$run/r.json")" p99_us) $(json "$(cat "$run/r.json")" received)"
}
read -r l0_50 l0_99 l0_n <<<"$(lat)"
rx "$bin/sipwall" run --domain sip.example.com --apply-rules --no-offload --no-state --socket "$run/ctl.sock" \
  >"$run/w.out" 2>"$run/w.err" &
w=$!; sleep 1.5
read -r l1_50 l1_99 l1_n <<<"$(lat)"
kill -TERM $w; wait $w || true

ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
cat <<OUT
packets per run: $n (realistic mix, 130k spoofed sources), sender packets/s shown in brackets
(a) do-nothing consumer, sipwall's netlink layer : $a pkt/s   ($a_n judged) [$a_s]
(b) sipwall, netlink layer                      : $b pkt/s   ($b_n judged) [$b_s]
(c) kernel -m string rules, no queue            : >= $c_s pkt/s  (the sender's rate; $c_n packets matched)
(d) do-nothing consumer, nfq crate              : $d pkt/s   ($d_n judged) [$d_s]
(e) sipwall, nfq crate backend                  : $e pkt/s   ($e_n judged) [$e_s]
(b)/(a) = $(ratio "$b" "$a")   goal >= 0.80
(b)/(d) = $(ratio "$b" "$d")   goal >= 1.30
(b)/(c) = $(ratio "$b" "$c_s")
latency at 5k pkt/s, one way: no queue p50 ${l0_50} us p99 ${l0_99} us ($l0_n received);
  through sipwall p50 ${l1_50} us p99 ${l1_99} us ($l1_n received);
  added p50 $(python3 -c "print(f'{$l1_50 - $l0_50:.1f}')") us, p99 $(python3 -c "print(f'{$l1_99 - $l0_99:.1f}')") us
OUT
