#!/usr/bin/env bash
# Records real traffic for sipwall's replay tests: kamailio as the PBX, SIPp as phones (UDP
# and TCP) and as a password guesser that knows the domain, sipvicious (svmap, svwar,
# svcrack) as the attacker by IP. No filter runs: the capture shows what a PBX gets.
#
#   sudo tests/e2e/capture.sh OUT.pcap
#
# Needs: kamailio sip-tester sipvicious tcpdump iproute2 (Debian package names).
out=$(realpath -m "${1:?usage: capture.sh OUT.pcap}")
source "$(dirname "$0")/lib.sh"
lan_up
ip netns exec "$ns-pbx" tcpdump -i eth0 -U -s 0 -w "$out" 'port 5060' 2>"$run/tcpdump.log" &
pids+=($!)
kamailio_up
sipp_run phone "$run/phone.xml" 100 secret100 u1 2
sipp_run phone "$run/phone.xml" 101 secret101 t1 1
sipvicious_run
sipp_run guess "$run/guess.xml" 100 wrong u1 4 || true
sleep 1
echo "kamailio auth failures: $(pbx_count 'AUTH FAIL')" >&2
echo "kamailio registrations: $(pbx_count REGISTERED)" >&2
