#!/usr/bin/env bash
# sipwall inline in front of kamailio, against real phones and real attack tools, in network
# namespaces. Prints key=value facts counted from kamailio's own log; tests/real.rs asserts them.
#
#   sudo tests/e2e/inline.sh path/to/sipwall
#
# Needs: kamailio sip-tester sipvicious iptables iproute2 (Debian package names).
sipwall=$(realpath "${1:?usage: inline.sh path/to/sipwall}")
source "$(dirname "$0")/lib.sh"
lan_up
kamailio_up

# The secret domain, and a trunk (198.18.0.20) on the allow list.
printf '[sip]\ndomains = ["sip.example.com"]\n[sources]\nallow = ["198.18.0.20/32"]\n' > "$run/main.toml"
sipwall_up() { # args after `run` (default: the config above)
  [ $# -gt 0 ] || set -- --config "$run/main.toml"
  ip netns exec "$ns-pbx" "$sipwall" run --log-format fail2ban --apply-rules --state-dir "$run/state" --socket "$run/ctl.sock" \
    "$@" >"$run/sipwall.out" 2>"$run/sipwall.err" &
  sw=$!
  pids+=($sw)
  sleep 1
}
sipwall_stop() { kill -TERM "$sw"; wait "$sw" || true; }
ctl() { ip netns exec "$ns-pbx" "$sipwall" ctl --socket "$run/ctl.sock" "$@"; }

# 0. Without sipwall, any TLS client gets a handshake on 5061.
tls_up
tls_try atk 198.18.0.2 && echo "tls_ip_sni_unfiltered=ok" || echo "tls_ip_sni_unfiltered=failed"
stun_try phone && echo "stun_unfiltered=ok" || echo "stun_unfiltered=failed"

# 1. Filtering: phones register, sipvicious gets nothing through, the guesser is banned.
sipwall_up
tls_try phone sip.example.com && echo "tls_secret_sni=ok" || echo "tls_secret_sni=failed"
tls_try atk 198.18.0.2 && echo "tls_ip_sni=ok" || echo "tls_ip_sni=failed"
tls_try atk "" && echo "tls_no_sni=ok" || echo "tls_no_sni=failed"
stun_try phone && echo "stun_keepalive=ok" || echo "stun_keepalive=failed"
ok=0
sipp_run phone "$run/phone.xml" 100 secret100 u1 2 && ok=$((ok + 1))
sipp_run phone "$run/phone.xml" 102 secret102 t1 1 && ok=$((ok + 1))
PBX="[2001:db8::2]" LOCAL=2001:db8::10 sipp_run phone "$run/phone.xml" 103 secret103 u1 1 && ok=$((ok + 1))
PBX="[2001:db8::2]" LOCAL=2001:db8::10 sipp_run phone "$run/phone.xml" 104 secret104 t1 1 && ok=$((ok + 1))
echo "phone_runs_ok=$ok"
call_run u1 && echo "call_udp=ok" || echo "call_udp=failed"
call_run t1 && echo "call_tcp=ok" || echo "call_tcp=failed"
# baresip, a real softphone: registers, then calls the SIPp callee through the PBX.
baresip_run
echo "baresip_registered=$(pbx_count 'REGISTERED 102 from 198.18.0.10:5070')"
baresip_call && echo "baresip_call=ok" || echo "baresip_call=failed"
echo "baresip_bye_at_pbx=$(grep -c 'REQ BYE .* src=198.18.0.10:5070' "$run/kamailio.log" || true)"
# The trunk addresses the PBX by IP, as trunks do; the allow list lets it in.
ip netns exec "$ns-trunk" timeout 10 sipp 198.18.0.2:5060 -sf "$here/caller.xml" -key domain 198.18.0.2 -key user 100 \
  -key callee 999 -au 100 -ap secret100 -m 1 -timeout 8 -nostdin >/dev/null 2>&1 || true
echo "trunk_invites_at_pbx=$(grep -c 'REQ INVITE .* src=198.18.0.20:' "$run/kamailio.log" || true)"
sipvicious_run
# and over IPv6, addressing the PBX by its address
PBX="[2001:db8::2]" LOCAL=2001:db8::66 DOMAIN="[2001:db8::2]" sipp_run atk "$run/phone.xml" 100 x u1 1 || true
echo "attacker_requests_at_pbx=$(( $(pbx_saw 198.18.0.66) + $(pbx_saw 2001:db8::66) ))"
sipp_run guess "$run/guess.xml" 100 wrong u1 6 || true
echo "guesser_failures_at_pbx=$(pbx_count 'AUTH FAIL: wrong password user=100 from 198.18.0.77')"
echo "registrations_at_pbx=$(pbx_count REGISTERED)"
# What fail2ban's filter would match, and that the secret domain is not in the log.
echo "fail2ban_drop_lines=$(grep -cE '^\S+ sipwall\[[0-9]+\]: \w+ drop .*source=198\.18\.0\.66' "$run/sipwall.err" || true)"
echo "fail2ban_ban_lines=$(grep -cE '^\S+ sipwall\[[0-9]+\]: \w+ banned .*source=198\.18\.0\.77' "$run/sipwall.err" || true)"
echo "secret_domain_in_log=$(grep -c 'sip.example.com' "$run/sipwall.err" || true)"
# sipvicious gives up once nothing answers (a few requests); a bot that blasts by IP whatever
# the answer is banned by its drops (tier scanning), and the kernel's ban set takes the rest.
judged_66() { ctl --json stats | python3 -c "import json,sys; r=json.load(sys.stdin)['totals']['reasons']; print(r.get('no-secret-domain', 0) + r.get('banned', 0))"; }
judged_before=$(judged_66)
ip netns exec "$ns-atk" "$(dirname "$sipwall")/sipwall-load" send --dst 198.18.0.2:5060 --mix flood \
  --sources 198.18.0.66/32 --exclude 198.19.255.0/24 --count 300 --rate 1000 --seconds 10 >/dev/null
sleep 0.5
echo "blaster_judged_by_sipwall=$(( $(judged_66) - judged_before ))"
echo "attacker_banned_for_scanning=$(ctl bans | grep -cE '^198\.18\.0\.66 .* scanning ' || true)"
echo "fail2ban_scanning_ban_lines=$(grep -cE '^\S+ sipwall\[[0-9]+\]: \w+ banned .*source=198\.18\.0\.66 tier=scanning' "$run/sipwall.err" || true)"
echo "attacker_in_kernel_ban_set=$(ip netns exec "$ns-pbx" nft list set inet sipwall ban4 2>/dev/null | grep -c '198\.18\.0\.66' || true)"
echo "attacker_requests_at_pbx_after_blast=$(pbx_saw 198.18.0.66)"
# Released, so that what follows (fail-open after kill -9) sees the attacker's requests.
ctl unban 198.18.0.66 >/dev/null

# 2. kill -9: the rules stay, --queue-bypass lets traffic through.
kill -9 "$sw"; wait "$sw" 2>/dev/null || true
before=$(pbx_saw 198.18.0.66)
ip netns exec "$ns-atk" timeout 10 svmap -p5060 198.18.0.2 >/dev/null 2>&1 || true
echo "attacker_requests_after_kill=$(( $(pbx_saw 198.18.0.66) - before ))"

# 3. Restart: filtering resumes (rules re-applied idempotently); then a clean stop.
sipwall_up
before=$(pbx_saw 198.18.0.66)
ip netns exec "$ns-atk" timeout 10 svmap -p5060 198.18.0.2 >/dev/null 2>&1 || true
echo "attacker_requests_after_restart=$(( $(pbx_saw 198.18.0.66) - before ))"
sipp_run phone "$run/phone.xml" 100 secret100 u1 1 && echo "phone_after_restart=ok" || echo "phone_after_restart=failed"
sipwall_stop
echo "rules_left_after_stop=$(ip netns exec "$ns-pbx" iptables -S | grep -c SIPWALL || true)"

# 4. --dry-run: nothing dropped, would-drops reported.
sipwall_up --domain sip.example.com --dry-run
before=$(pbx_saw 198.18.0.66)
ip netns exec "$ns-atk" timeout 10 svmap -p5060 198.18.0.2 >/dev/null 2>&1 || true
echo "attacker_requests_in_dry_run=$(( $(pbx_saw 198.18.0.66) - before ))"
sipwall_stop
echo "dry_run_would_drop=$(sed -n 's/^would have dropped: //p' "$run/sipwall.out")"

# 5. SIGHUP: a changed domain takes effect; a broken file keeps the config in force.
printf '[sip]\ndomains = ["old.example.com"]\n' > "$run/sw.toml"
sipwall_up --config "$run/sw.toml"
sipp_run phone "$run/phone.xml" 100 secret100 u1 1 && echo "phone_before_reload=ok" || echo "phone_before_reload=failed"
printf '[sip]\ndomains = ["sip.example.com"]\n' > "$run/sw.toml"
kill -HUP "$sw"; sleep 0.5
sipp_run phone "$run/phone.xml" 100 secret100 u1 1 && echo "phone_after_reload=ok" || echo "phone_after_reload=failed"
printf '[sip]\ndomainz = 1\n' > "$run/sw.toml"
kill -HUP "$sw"; sleep 0.5
sipp_run phone "$run/phone.xml" 100 secret100 u1 1 && echo "phone_after_bad_reload=ok" || echo "phone_after_bad_reload=failed"
# A call in progress when SIGHUP changes the domain: its ACK was seen, its BYE is in-dialog.
printf '[sip]\ndomains = ["sip.example.com"]\n' > "$run/sw.toml"
kill -HUP "$sw"; sleep 0.5
CALL_HOLD_MS=4000 call_run u1 >/dev/null 2>&1 &
call=$!
sleep 3
printf '[sip]\ndomains = ["new.example.com"]\n' > "$run/sw.toml"
kill -HUP "$sw"
wait "$call" && echo "call_across_reload=ok" || echo "call_across_reload=failed"
SIPP_TIMEOUT=4 sipp_run phone "$run/phone.xml" 100 secret100 u1 1 && echo "old_domain_after_change=ok" || echo "old_domain_after_change=failed"
# STUN keepalives turned off: dropped as not-sip from then on.
printf '[sip]\ndomains = ["sip.example.com"]\nstun_keepalives = false\n' > "$run/sw.toml"
kill -HUP "$sw"; sleep 0.5
stun_try phone && echo "stun_when_off=ok" || echo "stun_when_off=failed"
# A reload that adds a SIP port moves sipwall's kernel rules with it; 5060 stays queued.
printf '[sip]\ndomains = ["sip.example.com"]\nudp_ports = [5060, 5160]\n' > "$run/sw.toml"
kill -HUP "$sw"; sleep 0.5
echo "rules_for_5160_after_reload=$(ip netns exec "$ns-pbx" iptables -S SIPWALL_IN | grep -c -- '-p udp .*--dport 5160 ' || true)"
echo "rules_for_5060_after_reload=$(ip netns exec "$ns-pbx" ip6tables -S SIPWALL_IN | grep -c -- '-p udp .*--dport 5060 ' || true)"
sipp_run phone "$run/phone.xml" 100 secret100 u1 1 && echo "phone_after_port_reload=ok" || echo "phone_after_port_reload=failed"
# The kernel ban sets' rules follow the ports too.
echo "kernel_table_rules_for_5160=$(ip netns exec "$ns-pbx" nft list table inet sipwall 2>/dev/null | grep -c 'dport {.*5160' || true)"
# ... rebuilt with its sets filled: the guesser banned in part 1 (the ban kept across restarts) is still in.
echo "kernel_ban_after_port_reload=$(ip netns exec "$ns-pbx" nft list set inet sipwall ban4 2>/dev/null | grep -c '198\.18\.0\.77' || true)"
sipwall_stop
echo "bad_reload_reported=$(grep -c 'reload failed' "$run/sipwall.err" || true)"

# 6. Calls in progress outlive a restart (an upgrade) and a kill -9: their dialogs are saved,
# and the sipwall that comes back takes another domain, so that only the saved dialog can let
# the call's BYE in (From and To still carry the old one).
printf '[sip]\ndomains = ["sip.example.com"]\n' > "$run/sw.toml"
sipwall_up --config "$run/sw.toml"
CALL_HOLD_MS=7000 call_run u1 >/dev/null 2>&1 &
call=$!
sleep 3.5
sipwall_stop
printf '[sip]\ndomains = ["new.example.com"]\n' > "$run/sw.toml"
sipwall_up --config "$run/sw.toml"
wait "$call" && echo "call_across_restart=ok" || echo "call_across_restart=failed"
echo "calls_restored_lines=$(grep -c 'calls in progress restored' "$run/sipwall.err" || true)"
printf '[sip]\ndomains = ["sip.example.com"]\n' > "$run/sw.toml"
kill -HUP "$sw"; sleep 0.5
# kill -9 loses only what was not yet saved: a new call is saved within about 3 s.
CALL_HOLD_MS=8000 call_run u1 >/dev/null 2>&1 &
call=$!
sleep 5.5
kill -9 "$sw"; wait "$sw" 2>/dev/null || true
printf '[sip]\ndomains = ["new.example.com"]\n' > "$run/sw.toml"
sipwall_up --config "$run/sw.toml"
wait "$call" && echo "call_across_kill=ok" || echo "call_across_kill=failed"
sipwall_stop
