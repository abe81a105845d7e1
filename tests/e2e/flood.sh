#!/usr/bin/env bash
# Flood survival (issue 4): while phones register and call, (a) a REGISTER flood from >= 100k
# spoofed sources without the domain and (b) a brute force from three sources that know the
# domain. Prints key=value facts; tests/real.rs asserts them, benches/flood.sh runs it bigger.
#
#   sudo tests/e2e/flood.sh path/to/sipwall [FLOOD_PACKETS] [FLOOD_RATE]
#
# Needs: kamailio sip-tester iptables nftables conntrack iproute2, and sipwall-load beside sipwall.
sipwall=$(realpath "${1:?usage: flood.sh path/to/sipwall [packets] [rate]}")
load="$(dirname "$sipwall")/sipwall-load"
packets=${2:-150000}
rate=${3:-20000}
source "$(dirname "$0")/lib.sh"
lan_up
kamailio_up

# Spoofed sources arrive from addresses the PBX has no route to: loose reverse-path checks,
# and a route back, as on a host facing the Internet.
ip netns exec "$ns-pbx" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0
ip -n "$ns-pbx" route add 198.18.0.0/15 dev eth0
# The brute force comes from three addresses of the guesser's host.
ip -n "$ns-guess" addr add 198.18.0.78/24 dev eth0
ip -n "$ns-guess" addr add 198.18.0.79/24 dev eth0

ip netns exec "$ns-pbx" "$sipwall" run --domain sip.example.com --apply-rules --state-dir "$run/state" \
  --socket "$run/ctl.sock" >"$run/sipwall.out" 2>"$run/sipwall.err" &
sw=$!; pids+=($sw)
sleep 1.5
ctl() { ip netns exec "$ns-pbx" "$sipwall" ctl --socket "$run/ctl.sock" "$@"; }
stat() { ctl --json stats | python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

# Phones register and call throughout; each run's success is counted.
phones() {
  local ok=0 runs=0
  for i in 1 2 3; do
    runs=$((runs + 2))
    sipp_run phone "$run/phone.xml" 100 secret100 u1 10 && ok=$((ok + 1))
    call_run u1 && ok=$((ok + 1))
  done
  echo "$ok/$runs" > "$run/phones.result"
}
phones &
phones_pid=$!

# (a) the spoofed flood.
ip netns exec "$ns-atk" "$load" send --dst 198.18.0.2:5060 --mix flood --count "$packets" --rate "$rate" \
  --seconds 60 > "$run/flood.json" &
flood_pid=$!
pids+=($flood_pid)

# (b) the brute force, from three sources, twice: the second round meets the kernel's ban set.
brute() {
  for a in 198.18.0.77 198.18.0.78 198.18.0.79; do
    LOCAL=$a SIPP_TIMEOUT=4 sipp_run guess "$run/guess.xml" 100 wrong u1 6 || true
  done
}
brute
sleep 1
queue_seen_before=$(stat "sum(d['totals']['reasons'].get(r, 0) for r in ('banned',))")
kernel_before=$(stat "d['kernel_sets'].get('ban4', 0)")
at_pbx_before=$(grep -c 'AUTH FAIL' "$run/kamailio.log" || true)
brute
sleep 1
echo "brute_sources_banned=$(ctl bans | grep -cE '^198\.18\.0\.(77|78|79) ' || true)"
echo "brute_failures_at_pbx=$at_pbx_before"
echo "brute_failures_at_pbx_second_round=$(( $(grep -c 'AUTH FAIL' "$run/kamailio.log" || true) - at_pbx_before ))"
echo "brute_seen_by_sipwall_second_round=$(( $(stat "sum(d['totals']['reasons'].get(r, 0) for r in ('banned',))") - queue_seen_before ))"
echo "kernel_ban4_rise=$(( $(stat "d['kernel_sets'].get('ban4', 0)") - kernel_before ))"

wait "$flood_pid" || true
wait "$phones_pid" || true
echo "phones=$(cat "$run/phones.result")"
echo "flood=$(cat "$run/flood.json")"
echo "no_secret_domain_drops=$(stat "d['totals']['reasons'].get('no-secret-domain', 0)")"
# Flood sources are everything in 198.18.0.0/15 but the LAN's 198.18.0.0/24.
echo "flood_at_pbx=$(grep -cE 'REQ REGISTER .* src=198\.(18\.[1-9][0-9]*|19\.[0-9]+)\.' "$run/kamailio.log" || true)"
echo "reasons=$(stat "d['totals']['reasons']")"
echo "peak_rss_kib=$(awk '/VmHWM/ {print $2}' /proc/$sw/status)"
echo "tracked=$(stat "d['tracked']")"
echo "queue=$(stat "[(q['queue'], q['accepted'], q['dropped'], q['kernel_dropped'], q['user_dropped']) for q in d['queues']]")"
kill -0 "$sw" && echo "alive=yes" || echo "alive=no"
kill -TERM "$sw"; wait "$sw" && echo "clean_exit=yes" || echo "clean_exit=no"
echo "panics=$(grep -c panicked "$run/sipwall.err" || true)"
