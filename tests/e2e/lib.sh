# Shared by the end-to-end scripts: a LAN of network namespaces in 198.18.0.0/24 (pbx .2,
# phone .10, callee .11, trunk .20, attacker .66, guesser .77), kamailio as the PBX, SIPp clients. Everything is
# bounded in time and removed on exit. Source it; it sets $run (scratch dir) and $ns.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
run=$(mktemp -d)
ns="sw$$"
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for h in pbx phone callee trunk atk guess br; do ip netns del "$ns-$h" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT

lan_up() {
  ip netns add "$ns-br"
  ip -n "$ns-br" link add br0 type bridge
  ip -n "$ns-br" link set br0 up
  local -A addr=([pbx]=198.18.0.2 [phone]=198.18.0.10 [callee]=198.18.0.11 [trunk]=198.18.0.20 [atk]=198.18.0.66 [guess]=198.18.0.77)
  for h in pbx phone callee trunk atk guess; do
    ip netns add "$ns-$h"
    ip link add "v$h$$" type veth peer name eth0 netns "$ns-$h"
    ip link set "v$h$$" netns "$ns-br"
    ip -n "$ns-br" link set "v$h$$" master br0 up
    ip -n "$ns-$h" addr add "${addr[$h]}/24" dev eth0
    # IPv6 from the documentation prefix, host part as in IPv4 (pbx 2001:db8::2, phone ::10, ...)
    ip -n "$ns-$h" addr add "2001:db8::${addr[$h]##*.}/64" dev eth0 nodad
    ip -n "$ns-$h" link set eth0 up
    ip -n "$ns-$h" link set lo up
  done
}

kamailio_up() {
  ip netns exec "$ns-pbx" kamailio -f "$here/kamailio.cfg" -DD -E -P "$run/kamailio.pid" -Y "$run" >"$run/kamailio.out" 2>"$run/kamailio.log" &
  pids+=($!)
  sleep 2
  sed 's/\[final\]/200/' "$here/register.xml" > "$run/phone.xml"
  sed 's/\[final\]/403/' "$here/register.xml" > "$run/guess.xml"
  export HOME="$run/home"
  mkdir -p "$HOME"
  printf 'password\n123456\nsecret\n' > "$run/words"
}

# sipp_run HOST SCENARIO USER PASSWORD TRANSPORT COUNT: exit 0 when every call succeeded.
# PBX=[2001:db8::2] (and LOCAL=2001:db8::N) for IPv6; SIPP_TIMEOUT=S for runs expected to fail.
sipp_run() {
  local t=${SIPP_TIMEOUT:-15}
  ip netns exec "$ns-$1" timeout $((t + 5)) sipp "${PBX:-198.18.0.2}:5060" ${LOCAL:+-i "$LOCAL"} -sf "$2" -key domain "${DOMAIN:-sip.example.com}" -key user "$3" \
    -au "$3" -ap "$4" -t "$5" -m "$6" -r 5 -timeout "$t" -nostdin -trace_err -error_file "$run/sipp-$1.err" \
    >"$run/sipp-$1.out" 2>&1
}

# call_run TRANSPORT: user 101 registers from the callee host and answers one call that user
# 100 places from the phone host through the PBX. Exit 0 when both sides completed.
call_run() {
  local t=$1 port=5062
  ip netns exec "$ns-callee" timeout 20 sipp 198.18.0.2:5060 -sf "$run/phone.xml" -key domain "${DOMAIN:-sip.example.com}" \
    -key user 101 -au 101 -ap secret101 -t "$t" -p $port -m 1 -timeout 15 -nostdin >"$run/reg-callee.out" 2>&1 || return 1
  ip netns exec "$ns-callee" timeout 30 sipp -sf "$here/callee.xml" -i 198.18.0.11 -t "$t" -p $port -m 1 -timeout 25 -nostdin \
    >"$run/callee.out" 2>&1 &
  local callee=$!
  sleep 1
  ip netns exec "$ns-phone" timeout 20 sipp 198.18.0.2:5060 -sf "$here/caller.xml" -key domain "${DOMAIN:-sip.example.com}" \
    -key user 100 -key callee 101 -au 100 -ap secret100 -t "$t" -m 1 -d "${CALL_HOLD_MS:-500}" -timeout 15 -nostdin \
    >"$run/caller.out" 2>&1
  local caller=$?
  wait $callee
  local answered=$?
  [ $caller -eq 0 ] && [ $answered -eq 0 ]
}

# baresip_run [DIAL] : baresip registers user 102 from the phone host (port 5070) through the
# PBX as outbound proxy; with DIAL it calls that user (a SIPp callee answers, see call_run) and
# hangs up when it quits after 8 s. Its output is in $run/baresip.out.
baresip_run() {
  local d="$run/baresip"
  mkdir -p "$d"
  # 1 s of 8 kHz silence: the call's audio source (no sound card here).
  python3 -c "import wave,sys; w=wave.open(sys.argv[1],'wb'); w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000); w.writeframes(bytes(16000)); w.close()" "$d/in.wav"
  cat > "$d/config" <<CFG
sip_listen 198.18.0.10:5070
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module menu.so
module account.so
audio_source aufile,$d/in.wav
audio_player aufile,$d/out.wav
CFG
  echo "<sip:102@${DOMAIN:-sip.example.com};transport=udp>;auth_pass=secret102;outbound=\"sip:198.18.0.2:5060;transport=udp\";regint=60" > "$d/accounts"
  HOME="$d" ip netns exec "$ns-phone" timeout 20 baresip -f "$d" -4 -t 8 ${1:+-e "/dial $1"} >"$run/baresip.out" 2>&1 </dev/null
}

# baresip_call: user 101 registers from the callee host and answers; baresip dials it.
baresip_call() {
  local port=5062
  ip netns exec "$ns-callee" timeout 20 sipp 198.18.0.2:5060 -sf "$run/phone.xml" -key domain "${DOMAIN:-sip.example.com}" \
    -key user 101 -au 101 -ap secret101 -t u1 -p $port -m 1 -timeout 15 -nostdin >"$run/reg-callee.out" 2>&1 || return 1
  ip netns exec "$ns-callee" timeout 30 sipp -sf "$here/callee.xml" -i 198.18.0.11 -t u1 -p $port -m 1 -timeout 25 -nostdin \
    >"$run/callee.out" 2>&1 &
  local callee=$!
  sleep 1
  baresip_run 101
  wait $callee
}

# A TLS server on the PBX's 5061 (stands in for SIP over TLS: the SNI check happens before
# any SIP is read), and a client: tls_try HOST SNI|"" -> exit 0 when the handshake completed.
tls_up() {
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$run/k.pem" -out "$run/c.pem" -subj /CN=sip.example.com -days 1 \
    >/dev/null 2>&1
  ip netns exec "$ns-pbx" openssl s_server -accept 5061 -cert "$run/c.pem" -key "$run/k.pem" -quiet \
    >/dev/null 2>&1 </dev/null &
  pids+=($!)
  sleep 0.5
}
tls_try() {
  local sni=()
  [ -n "$2" ] && sni=(-servername "$2") || sni=(-noservername)
  echo | ip netns exec "$ns-$1" timeout 5 openssl s_client -connect 198.18.0.2:5061 "${sni[@]}" 2>/dev/null \
    | grep -q "Cipher is"
}

# An RFC 5626 keepalive over UDP, as baresip sends it (a STUN Binding Request with SOFTWARE)
# from namespace $1 to the PBX: succeeds when kamailio's Binding Success Response comes back.
stun_try() {
  ip netns exec "$ns-$1" timeout 5 python3 -c '
import os, socket, struct, sys
soft = b"baresip v3 (sipwall e2e)"
attr = struct.pack(">HH", 0x8022, len(soft)) + soft + bytes(-len(soft) % 4)
txn = os.urandom(12)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(struct.pack(">HHI", 1, len(attr), 0x2112A442) + txn + attr, ("198.18.0.2", 5060))
d = s.recv(2048)
sys.exit(0 if d[:2] == b"\x01\x01" and d[8:20] == txn else 1)' 2>/dev/null
}

# The attacker, by IP, as sipvicious does it (each bounded; they may fail when blocked).
sipvicious_run() {
  ip netns exec "$ns-atk" timeout 15 svmap -p5060 198.18.0.2 >/dev/null 2>&1 || true
  ip netns exec "$ns-atk" timeout 15 svwar -e100-103 -p5060 --force 198.18.0.2 >/dev/null 2>&1 || true
  ip netns exec "$ns-atk" timeout 10 svcrack -u 100 -d "$run/words" -p5060 198.18.0.2 >/dev/null 2>&1 || true
}

# Requests kamailio logged from an address.
pbx_saw() { grep -c "REQ .* src=$1:" "$run/kamailio.log" || true; }
pbx_count() { grep -c "$1" "$run/kamailio.log" || true; }
