#!/usr/bin/env bash
# Records real traffic for sipwall's replay tests: kamailio as the PBX, SIPp as phones (UDP
# and TCP) and as a password guesser that knows the domain, sipvicious (svmap, svwar,
# svcrack) as the attacker by IP. Everything runs in network namespaces this script makes in
# 198.18.0.0/24 and removes on exit; every client is bounded in count and time.
#
#   sudo tests/e2e/capture.sh OUT.pcap
#
# Needs: kamailio sip-tester sipvicious tcpdump iproute2 (Debian package names).
set -euo pipefail
out=$(realpath -m "${1:?usage: capture.sh OUT.pcap}")
here=$(cd "$(dirname "$0")" && pwd)
run=$(mktemp -d)
ns="sw$$"
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for h in pbx phone atk guess br; do ip netns del "$ns-$h" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT

ip netns add "$ns-br"
ip -n "$ns-br" link add br0 type bridge
ip -n "$ns-br" link set br0 up
declare -A addr=([pbx]=198.18.0.2 [phone]=198.18.0.10 [atk]=198.18.0.66 [guess]=198.18.0.77)
for h in pbx phone atk guess; do
  ip netns add "$ns-$h"
  ip link add "v$h$$" type veth peer name eth0 netns "$ns-$h"
  ip link set "v$h$$" netns "$ns-br"
  ip -n "$ns-br" link set "v$h$$" master br0 up
  ip -n "$ns-$h" addr add "${addr[$h]}/24" dev eth0
  ip -n "$ns-$h" link set eth0 up
  ip -n "$ns-$h" link set lo up
done

ip netns exec "$ns-pbx" tcpdump -i eth0 -U -s 0 -w "$out" 'port 5060' 2>"$run/tcpdump.log" &
pids+=($!)
ip netns exec "$ns-pbx" kamailio -f "$here/kamailio.cfg" -DD -E -P "$run/kamailio.pid" -Y "$run" 2>"$run/kamailio.log" &
pids+=($!)
sleep 2

sed 's/\[final\]/200/' "$here/register.xml" > "$run/phone.xml"
sed 's/\[final\]/403/' "$here/register.xml" > "$run/guess.xml"
sipp_run() { # namespace scenario user password transport count
  ip netns exec "$ns-$1" timeout 20 sipp 198.18.0.2:5060 -sf "$2" -key domain sip.example.com -key user "$3" \
    -au "$3" -ap "$4" -t "$5" -m "$6" -r 5 -timeout 15 -nostdin -trace_err -error_file "$run/sipp-$1.err" \
    >"$run/sipp-$1.out" 2>&1 || { echo "sipp ($1, $3) failed:" >&2; tail -5 "$run/sipp-$1.out" "$run/sipp-$1.err" >&2 2>/dev/null; return 1; }
}
# Phones: both register with the right password, over UDP and TCP.
sipp_run phone "$run/phone.xml" 100 secret100 u1 2
sipp_run phone "$run/phone.xml" 101 secret101 t1 1
# The attacker, by IP, as sipvicious does it.
export HOME="$run/home"; mkdir -p "$HOME"
ip netns exec "$ns-atk" timeout 15 svmap -p5060 198.18.0.2 >/dev/null 2>&1 || true
ip netns exec "$ns-atk" timeout 15 svwar -e100-103 -p5060 --force 198.18.0.2 >/dev/null 2>&1 || true
printf 'password\n123456\nsecret\n' > "$run/words"
ip netns exec "$ns-atk" timeout 10 svcrack -u 100 -d "$run/words" -p5060 198.18.0.2 >/dev/null 2>&1 || true
# A guesser that knows the domain and looks like a phone: wrong passwords.
sipp_run guess "$run/guess.xml" 100 wrong u1 4 || true
sleep 1
echo "kamailio auth failures: $(grep -c "AUTH FAIL" "$run/kamailio.log" || true)" >&2
echo "kamailio registrations: $(grep -c "REGISTERED" "$run/kamailio.log" || true)" >&2
