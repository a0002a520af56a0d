#!/usr/bin/env bash
# Regenerate the SMTP/TLS fixture captures in pcaps/ (see pcaps/README.md).
#
#   bash pcaps/make.sh                 # all cases, using the committed certs in pcaps/certs/
#   bash pcaps/make.sh --regen-certs   # also make a fresh test PKI first (changes every hash)
#   bash pcaps/make.sh CASE [CASE...]  # only these cases
#   bash pcaps/make.sh --list          # list the cases
#
# Needs root on Debian 12. Runs Postfix, Exim and swaks/openssl between two network
# namespaces (198.18.0.1 server, 198.18.0.2 client), captures with tcpdump in the server
# namespace and writes <case>.pcap + <case>.expected.json (via expected.py).
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CERTS=$HERE/certs
S_NS=mxcfx-srv C_NS=mxcfx-cli
S_IF=mxfs0 C_IF=mxfc0
SIP=198.18.0.1 CIP=198.18.0.2
INBOUND=(--arg=--local-net --arg "$SIP/32")
OUTBOUND=(--arg=--local-net --arg "$CIP/32")
UNKNOWN=()

REGEN_CERTS=0 LIST=0 ONLY=()
for a in "$@"; do
    case $a in
        --regen-certs) REGEN_CERTS=1 ;;
        --list) LIST=1 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        -*) echo "unknown option $a" >&2; exit 2 ;;
        *) ONLY+=("$a") ;;
    esac
done

log() { printf '[make.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

# ------------------------------------------------------------------ dependencies
APT_UPDATED=0
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if [[ $APT_UPDATED == 0 ]]; then
        apt-get -o DPkg::Lock::Timeout=300 update -q >&2
        APT_UPDATED=1
    fi
    apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "$@" >&2
}

install_deps() {
    local need=()
    command -v postfix >/dev/null || {
        echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
        need+=(postfix)
    }
    command -v swaks   >/dev/null || need+=(swaks)
    perl -MNet::SSLeay -e 1 2>/dev/null || need+=(libnet-ssleay-perl)   # swaks TLS (only Recommended)
    command -v tcpdump >/dev/null || need+=(tcpdump)
    command -v tshark  >/dev/null || {
        echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
        need+=(tshark)
    }
    command -v openssl >/dev/null || need+=(openssl)
    command -v ethtool >/dev/null || need+=(ethtool)
    command -v ip      >/dev/null || need+=(iproute2)
    command -v script  >/dev/null || need+=(bsdutils)
    dpkg -s libgnutls-dane0 >/dev/null 2>&1 || need+=(libgnutls-dane0)
    dpkg -s libidn12 >/dev/null 2>&1 || need+=(libidn12)
    command -v python3 >/dev/null || need+=(python3)
    if ((${#need[@]})); then log "installing ${need[*]}"; apt_install "${need[@]}"; fi
    if ! python3 -c 'import cryptography' 2>/dev/null; then
        log "installing python cryptography"
        pip install -q cryptography 2>/dev/null || pip install -q --break-system-packages cryptography 2>/dev/null \
            || apt_install python3-cryptography
    fi
    # Exim conflicts with Postfix as a package: unpacked privately (shared with the live tests)
    EXIM_ROOT=$(bash "$HERE/mta/exim-install.sh") || die "cannot install a private Exim"
}

# ------------------------------------------------------------------ cleanup
WORK=""
PIDS_TCPDUMP=()
PF_DIRS=()
EXIM_PIDFILE=""
cleanup() {
    local rc=$?
    set +e
    for p in "${PIDS_TCPDUMP[@]}"; do [[ -n $p ]] && kill -INT "$p" 2>/dev/null; done
    for d in "${PF_DIRS[@]}"; do
        if [[ -f $d/spool/pid/master.pid ]]; then
            local pid; pid=$(tr -dc 0-9 < "$d/spool/pid/master.pid")
            [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null
        fi
    done
    if [[ -n $EXIM_PIDFILE && -f $EXIM_PIDFILE ]]; then kill -TERM "$(cat "$EXIM_PIDFILE")" 2>/dev/null; fi
    sleep 0.3
    ip netns del "$S_NS" 2>/dev/null
    ip netns del "$C_NS" 2>/dev/null
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ $rc != 0 ]]; then log "work dir kept for inspection: $WORK"; else rm -rf "$WORK"; fi
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ network
ns_setup() {
    ip netns del "$S_NS" 2>/dev/null || true
    ip netns del "$C_NS" 2>/dev/null || true
    ip netns add "$S_NS"
    ip netns add "$C_NS"
    ip link add "$S_IF" type veth peer name "$C_IF"
    ip link set "$S_IF" netns "$S_NS"
    ip link set "$C_IF" netns "$C_NS"
    # no IPv6 (no link-local addresses, no NDP noise): only 198.18.0.0/15 exists on the link
    local ns
    for ns in "$S_NS" "$C_NS"; do
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    done
    ip netns exec "$S_NS" sysctl -qw "net.ipv6.conf.$S_IF.disable_ipv6=1"
    ip netns exec "$C_NS" sysctl -qw "net.ipv6.conf.$C_IF.disable_ipv6=1"
    ip -n "$S_NS" addr add "$SIP/24" dev "$S_IF"
    ip -n "$C_NS" addr add "$CIP/24" dev "$C_IF"
    ip -n "$S_NS" link set "$S_IF" up
    ip -n "$C_NS" link set "$C_IF" up
    offload off
}

offload() {  # on|off
    ip netns exec "$S_NS" ethtool -K "$S_IF" tso "$1" gso "$1" gro "$1" tx "$1" >/dev/null 2>&1 || true
    ip netns exec "$C_NS" ethtool -K "$C_IF" tso "$1" gso "$1" gro "$1" tx "$1" >/dev/null 2>&1 || true
}

wait_listen() {  # NS IP PORT
    local i
    for i in $(seq 100); do
        ip netns exec "$1" ss -Hltn "src $2:$3" 2>/dev/null | grep -q LISTEN && return 0
        sleep 0.05
    done
    die "nothing listens on $2:$3 in $1"
}

wait_quiet() {  # wait until no TCP connection to/from the server is open (bounded)
    local i
    for i in $(seq 60); do
        if ! ip netns exec "$S_NS" ss -Htn state established state syn-sent state syn-recv \
                state fin-wait-1 state fin-wait-2 state close-wait state last-ack state closing \
                2>/dev/null | grep -q .; then
            return 0
        fi
        sleep 0.1
    done
    log "warning: connections still open after 6 s"
}

# ------------------------------------------------------------------ capture
CAP_PID="" CAP_FILE=""
cap_start() {  # CASE
    CAP_FILE=$WORK/$1.pcap
    rm -f "$CAP_FILE"
    ip netns exec "$S_NS" tcpdump -i "$S_IF" -s 0 -U --immediate-mode -Z root -w "$CAP_FILE" \
        2>"$WORK/$1.tcpdump.log" &
    CAP_PID=$!
    PIDS_TCPDUMP+=("$CAP_PID")
    local i
    for i in $(seq 100); do
        grep -q "listening on" "$WORK/$1.tcpdump.log" 2>/dev/null && return 0
        sleep 0.05
    done
    die "tcpdump did not start: $(cat "$WORK/$1.tcpdump.log")"
}

cap_stop() {
    wait_quiet
    sleep 0.2
    kill -INT "$CAP_PID" 2>/dev/null || true
    local i
    for i in $(seq 50); do kill -0 "$CAP_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$CAP_PID" 2>/dev/null || true
    wait "$CAP_PID" 2>/dev/null || true
    PIDS_TCPDUMP=("${PIDS_TCPDUMP[@]/$CAP_PID}")
    CAP_PID=""
}

# ------------------------------------------------------------------ postfix
# shared with the live-capture system tests (tests/src/mta.rs)
PF_MASTER_CF=$(cat "$HERE/mta/master.cf")

# pf_write DIR NS IP HOSTNAME [main.cf lines...]
pf_write() {
    local d=$1 ns=$2 ip=$3 host=$4; shift 4
    rm -rf "$d"
    mkdir -p "$d/etc" "$d/spool" "$d/data"
    chmod 755 "$d" "$d/spool"
    chown postfix "$d/data"
    cat > "$d/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $d/spool
data_directory = $d/data
mail_owner = postfix
myhostname = $host
mydomain = test.example
myorigin = \$myhostname
mydestination = test.example, \$myhostname
inet_interfaces = $ip
inet_protocols = ipv4
mynetworks = 198.18.0.0/24
local_transport = discard:
local_recipient_maps =
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_host_lookup = native
maillog_file_prefixes = $d
maillog_file = $d/maillog
smtpd_banner = \$myhostname ESMTP Postfix
smtpd_tls_loglevel = 1
smtp_tls_loglevel = 1
smtpd_tls_session_cache_database =
smtp_tls_session_cache_database =
EOF
    local l k
    for l in "$@"; do
        k=${l%%=*}; k=${k// /}
        sed -i "/^$k *=/d" "$d/etc/main.cf"    # later settings replace the defaults above
        printf '%s\n' "$l" >> "$d/etc/main.cf"
    done
    printf '%s\n' "$PF_MASTER_CF" > "$d/etc/master.cf"
}

pf_start() {  # DIR NS
    PF_DIRS+=("$1")
    if ! ip netns exec "$2" postfix -c "$1/etc" start >/dev/null 2>&1; then
        # postfix reports fatal errors only to syslog/maillog: show them through a pty
        script -qc "ip netns exec $2 postfix -c $1/etc check" /dev/null >&2 || true
        cat "$1/maillog" >&2 2>/dev/null || true
        die "postfix did not start ($1)"
    fi
}

pf_stop() {  # DIR NS
    local d=$1 ns=$2 pid="" i
    [[ -f $d/spool/pid/master.pid ]] && pid=$(tr -dc 0-9 < "$d/spool/pid/master.pid")
    ip netns exec "$ns" postfix -c "$d/etc" stop >/dev/null 2>&1 || true
    if [[ -n $pid ]]; then
        for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    # stray smtpd children of this instance (they exit on their own; be sure)
    for i in $(seq 40); do
        pgrep -f "$d/etc" >/dev/null 2>&1 || break
        sleep 0.05
    done
}

# start a Postfix server in the server namespace.
# srv_postfix CERTNAME [main.cf lines...]   (CERTNAME "" = no certificate)
SRV=""
srv_postfix() {
    local cert=$1; shift
    SRV=$WORK/pf-srv
    local tlsl=()
    if [[ -n $cert ]]; then
        tlsl=("smtpd_tls_security_level = may"
              "smtpd_tls_chain_files = $CERTS/$cert.key, $CERTS/$cert.chain.pem")
    fi
    pf_write "$SRV" "$S_NS" "$SIP" mx.test.example "${tlsl[@]}" "$@"
    pf_start "$SRV" "$S_NS"
    wait_listen "$S_NS" "$SIP" 25
    wait_listen "$S_NS" "$SIP" 465
    wait_listen "$S_NS" "$SIP" 587
}
srv_stop() { [[ -n $SRV ]] && pf_stop "$SRV" "$S_NS"; SRV=""; }

# ------------------------------------------------------------------ clients
SWAKS_N=0
# swaks in the client namespace; never fails the script (failures are checked in expected.py)
swaks_c() {
    SWAKS_N=$((SWAKS_N + 1))
    ip netns exec "$C_NS" timeout 30 swaks --server "$SIP" --timeout 10 \
        --from sender@client.example --to user@test.example \
        --header "Subject: mxcert fixture" --body "fixture" "$@" \
        >"$WORK/swaks.$SWAKS_N.log" 2>&1 || log "  (swaks exited $?: $(tail -n1 "$WORK/swaks.$SWAKS_N.log"))"
}

s_client_c() {
    ip netns exec "$C_NS" timeout 30 openssl s_client -connect "$SIP:25" "$@" </dev/null \
        >"$WORK/s_client.log" 2>&1 || log "  (s_client exited $?)"
}

# ------------------------------------------------------------------ expected
DONE_CASES=()
# finish CASE "description" ARGSARRAYNAME SPEC...
finish() {
    local case=$1 desc=$2 argsname=$3; shift 3
    local -n argsref=$argsname
    local sargs=() s
    for s in "$@"; do sargs+=(--session "$s"); done
    python3 "$HERE/expected.py" --pcap "$CAP_FILE" --out "$WORK/$case.expected.json" --certs "$CERTS" \
        --desc "$desc" "${argsref[@]}" "${sargs[@]}" || die "expected.py failed for $case"
    mv -f "$CAP_FILE" "$HERE/$case.pcap"
    sed -i "s/\"capture\": \".*\"/\"capture\": \"$case.pcap\"/" "$WORK/$case.expected.json"
    mv -f "$WORK/$case.expected.json" "$HERE/$case.expected.json"
    chmod 644 "$HERE/$case.pcap" "$HERE/$case.expected.json"
    DONE_CASES+=("$case")
    log "  ok: $case.pcap ($(stat -c %s "$HERE/$case.pcap") bytes, $# session(s))"
}

# one standard swaks-vs-Postfix case
# simple CASE DESC ARGSNAME CERT "postfix lines (| separated)" "swaks args" SPEC
simple() {
    local case=$1 desc=$2 argsname=$3 cert=$4 pfl=$5 sw=$6 spec=$7
    local lines=()
    [[ -n $pfl ]] && IFS='|' read -r -a lines <<<"$pfl"
    srv_postfix "$cert" "${lines[@]}"
    cap_start "$case"
    # shellcheck disable=SC2086
    swaks_c $sw
    cap_stop
    srv_stop
    finish "$case" "$desc" "$argsname" "$spec"
}

C_SRV=srv_both.chain.pem
EH=client.test.example
SPEC25="port=25;ehlo=$EH;banner=mx.test.example;implicit=0;offered=1;starttls_code=220"

# ------------------------------------------------------------------ cases
case_starttls_25_tls12() {
    simple starttls_25_tls12 "Postfix STARTTLS on 25, TLS 1.2, RSA chain leaf+intermediate (EKU serverAuth+clientAuth), no CertificateRequest" \
        INBOUND srv_both "" "--port 25 --ehlo $EH --tls --tls-protocol tlsv1_2 --tls-sni mx.test.example" \
        "$SPEC25;srv=$C_SRV;cli=;version=TLS1.2;sni=mx.test.example;certreq=0;alert=none;outcome=established"
}
case_starttls_25_tls12_offload() {
    offload on
    simple starttls_25_tls12_offload "as starttls_25_tls12 but NIC offloads left on: TSO super-segments and bad TX checksums in the capture" \
        INBOUND srv_both "" "--port 25 --ehlo $EH --tls --tls-protocol tlsv1_2 --tls-sni mx.test.example" \
        "$SPEC25;srv=$C_SRV;cli=;version=TLS1.2;sni=mx.test.example;certreq=0;alert=none;outcome=established"
    offload off
}
case_starttls_587_tls12() {
    simple starttls_587_tls12 "Postfix submission port 587, STARTTLS, TLS 1.2, no SNI" \
        INBOUND srv_both "" "--port 587 --ehlo $EH --tls --tls-protocol tlsv1_2" \
        "port=587;ehlo=$EH;banner=mx.test.example;implicit=0;offered=1;starttls_code=220;srv=$C_SRV;cli=;version=TLS1.2;sni=none;certreq=0;outcome=established"
}
case_implicit_465_tls12() {
    simple implicit_465_tls12 "Postfix smtps on 465 (implicit TLS, wrappermode), TLS 1.2" \
        INBOUND srv_both "" "--port 465 --ehlo $EH --tls-on-connect --tls-protocol tlsv1_2 --tls-sni mx.test.example" \
        "port=465;ehlo=none;banner=none;implicit=1;offered=none;starttls_code=none;srv=$C_SRV;cli=;version=TLS1.2;sni=mx.test.example;certreq=0;outcome=established"
}
case_starttls_25_tls13() {
    simple starttls_25_tls13 "Postfix STARTTLS on 25, TLS 1.3: certificates are encrypted on the wire" \
        INBOUND srv_both "" "--port 25 --ehlo $EH --tls --tls-protocol tlsv1_3 --tls-sni mx.test.example" \
        "$SPEC25;srv=$C_SRV;version=TLS1.3;sni=mx.test.example;certreq=none;clientcert=none;alert=none;outcome=established"
}
case_implicit_465_tls13() {
    simple implicit_465_tls13 "Postfix smtps on 465 (implicit TLS), TLS 1.3, no SNI" \
        INBOUND srv_both "" "--port 465 --ehlo $EH --tls-on-connect --tls-protocol tlsv1_3" \
        "port=465;banner=none;ehlo=none;implicit=1;offered=none;srv=$C_SRV;version=TLS1.3;sni=none;certreq=none;outcome=established"
}
ASK="smtpd_tls_ask_ccert = yes|smtpd_tls_CAfile = $CERTS/root-ca.crt"
case_certreq_client_presents() {
    simple certreq_client_presents "Postfix asks for a client cert (CertificateRequest); swaks presents an EKU clientAuth leaf (leaf only)" \
        INBOUND srv_both "$ASK" "--port 25 --ehlo $EH --tls --tls-protocol tlsv1_2 --tls-sni mx.test.example --tls-cert $CERTS/cli_clientauth.crt --tls-key $CERTS/cli_clientauth.key" \
        "$SPEC25;srv=$C_SRV;cli=cli_clientauth.crt;version=TLS1.2;certreq=1;clientcert=1;outcome=established"
}
case_certreq_client_declines() {
    simple certreq_client_declines "Postfix asks for a client cert; the client has none and sends an EMPTY Certificate message" \
        INBOUND srv_both "$ASK" "--port 25 --ehlo $EH --tls --tls-protocol tlsv1_2 --tls-sni mx.test.example" \
        "$SPEC25;srv=$C_SRV;cli=;emptycert=1;version=TLS1.2;certreq=1;clientcert=0;outcome=established"
}
case_certreq_client_noeku() {
    simple certreq_client_noeku "Postfix asks for a client cert; swaks presents an ECDSA P-256 leaf without EKU (and without basicConstraints)" \
        INBOUND srv_both "$ASK" "--port 25 --ehlo $EH --tls --tls-protocol tlsv1_2 --tls-sni mx.test.example --tls-cert $CERTS/cli_noeku.crt --tls-key $CERTS/cli_noeku.key" \
        "$SPEC25;srv=$C_SRV;cli=cli_noeku.crt;version=TLS1.2;certreq=1;clientcert=1;outcome=established"
}
case_certreq_client_serveronly() {
    simple certreq_client_serveronly "Postfix asks for a client cert; swaks presents a leaf whose EKU is serverAuth only" \
        INBOUND srv_both "$ASK" "--port 25 --ehlo $EH --tls --tls-protocol tlsv1_2 --tls-sni mx.test.example --tls-cert $CERTS/cli_serveronly.crt --tls-key $CERTS/cli_serveronly.key" \
        "$SPEC25;srv=$C_SRV;cli=cli_serveronly.crt;version=TLS1.2;certreq=1;clientcert=1;outcome=established"
}
case_server_eku_serveronly() {
    simple server_eku_serveronly "server leaf with EKU serverAuth only, TLS 1.2" \
        INBOUND srv_serveronly "" "--port 25 --ehlo $EH --tls --tls-protocol tlsv1_2 --tls-sni mx.test.example" \
        "$SPEC25;srv=srv_serveronly.chain.pem;cli=;version=TLS1.2;certreq=0;outcome=established"
}
case_server_no_eku() {
    simple server_no_eku "server leaf (ECDSA P-256, ECC intermediate) without EKU extension, TLS 1.2" \
        INBOUND srv_noeku "" "--port 25 --ehlo $EH --tls --tls-protocol tlsv1_2 --tls-sni mx.test.example" \
        "$SPEC25;srv=srv_noeku.chain.pem;cli=;version=TLS1.2;certreq=0;outcome=established"
}
case_server_eku_clientonly() {
    simple server_eku_clientonly "server leaf with EKU clientAuth only (no serverAuth), TLS 1.2" \
        INBOUND srv_clientonly "" "--port 25 --ehlo $EH --tls --tls-protocol tlsv1_2 --tls-sni mx.test.example" \
        "$SPEC25;srv=srv_clientonly.chain.pem;cli=;version=TLS1.2;certreq=0;outcome=established"
}
case_server_expired() {
    simple server_expired "server leaf expired (2024-01-01..2025-01-01), TLS 1.2; swaks does not verify" \
        INBOUND srv_expired "" "--port 25 --ehlo $EH --tls --tls-protocol tlsv1_2 --tls-sni mx.test.example" \
        "$SPEC25;srv=srv_expired.chain.pem;cli=;version=TLS1.2;outcome=established"
}
case_server_selfsigned() {
    simple server_selfsigned "self-signed server leaf, no chain, TLS 1.2; no --local-net (direction unknown)" \
        UNKNOWN srv_selfsigned "" "--port 25 --ehlo $EH --tls --tls-protocol tlsv1_2 --tls-sni mx.test.example" \
        "$SPEC25;srv=srv_selfsigned.crt;cli=;version=TLS1.2;outcome=established;direction=unknown"
}
case_server_wildcard() {
    simple server_wildcard "wildcard server cert *.b.example; client sends SNI mx.a.b.example (wildcard does not cover it), TLS 1.2" \
        INBOUND srv_wildcard "myhostname = mx.a.b.example" "--port 25 --ehlo $EH --tls --tls-protocol tlsv1_2 --tls-sni mx.a.b.example" \
        "port=25;banner=mx.a.b.example;offered=1;starttls_code=220;srv=srv_wildcard.chain.pem;cli=;version=TLS1.2;sni=mx.a.b.example;outcome=established"
}
case_server_name_mismatch() {
    simple server_name_mismatch "server cert for other.example (ECDSA, ECC intermediate) while the client asks for mx.test.example via SNI, TLS 1.2" \
        INBOUND srv_other "" "--port 25 --ehlo $EH --tls --tls-protocol tlsv1_2 --tls-sni mx.test.example" \
        "$SPEC25;srv=srv_other.chain.pem;cli=;version=TLS1.2;sni=mx.test.example;outcome=established"
}
case_server_ed25519() {
    simple server_ed25519 "Ed25519 server leaf (RSA intermediate), TLS 1.2" \
        INBOUND srv_ed25519 "" "--port 25 --ehlo $EH --tls --tls-protocol tlsv1_2 --tls-sni mx.test.example" \
        "$SPEC25;srv=srv_ed25519.chain.pem;cli=;version=TLS1.2;outcome=established"
}
case_server_chain_with_root() {
    simple server_chain_with_root "server sends leaf + intermediate + self-signed root (RSA-3072, sha384WithRSAEncryption), TLS 1.2" \
        INBOUND "" "smtpd_tls_security_level = may|smtpd_tls_chain_files = $CERTS/srv_both.key, $CERTS/srv_both.chain.pem, $CERTS/root-ca.crt" \
        "--port 25 --ehlo $EH --tls --tls-protocol tlsv1_2 --tls-sni mx.test.example" \
        "$SPEC25;srv=srv_both.chain.pem,root-ca.crt;cli=;version=TLS1.2;certreq=0;outcome=established"
}
case_no_starttls() {
    simple no_starttls "Postfix without TLS (smtpd_tls_security_level = none): STARTTLS not offered, mail sent in plaintext; no --local-net" \
        UNKNOWN "" "smtpd_tls_security_level = none" "--port 25 --ehlo $EH" \
        "port=25;ehlo=$EH;banner=mx.test.example;implicit=0;offered=0;starttls_code=none;version=none;sni=none;certreq=none;clientcert=none;alert=none;outcome=no_tls;direction=unknown"
}
case_starttls_refused() {
    # key file smtpd cannot load: STARTTLS advertised, then 454
    srv_postfix "" "smtpd_tls_security_level = may" \
        "smtpd_tls_chain_files = $WORK/unreadable.key, $CERTS/srv_both.chain.pem"
    cap_start starttls_refused
    swaks_c --port 25 --ehlo "$EH" --tls --tls-protocol tlsv1_2
    cap_stop
    srv_stop
    finish starttls_refused "STARTTLS advertised but refused: 454 4.7.0 TLS not available due to local problem (key file that cannot be loaded)" INBOUND \
        "port=25;ehlo=$EH;banner=mx.test.example;offered=1;starttls_code=454;version=none;alert=none;outcome=no_tls"
}
OSSL_LEGACY="import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME OPENSSL_CONF=__CONF__"
case_tls10_legacy() {
    local l=${OSSL_LEGACY/__CONF__/$WORK/openssl-legacy.cnf}
    srv_postfix srv_both "$l"
    cap_start tls10_legacy
    OPENSSL_CONF=$WORK/openssl-legacy.cnf swaks_c --port 25 --ehlo "$EH" --tls --tls-protocol tlsv1 --tls-sni mx.test.example
    cap_stop
    srv_stop
    finish tls10_legacy "TLS 1.0 (SECLEVEL=0 on both sides), RSA chain" INBOUND \
        "$SPEC25;srv=$C_SRV;cli=;version=TLS1.0;sni=mx.test.example;certreq=0;outcome=established"
}
case_weak_key_sha1() {
    local l=${OSSL_LEGACY/__CONF__/$WORK/openssl-legacy.cnf}
    srv_postfix srv_weak "$l"
    cap_start weak_key_sha1
    OPENSSL_CONF=$WORK/openssl-legacy.cnf swaks_c --port 25 --ehlo "$EH" --tls --tls-protocol tlsv1_2 --tls-sni mx.test.example
    cap_stop
    srv_stop
    finish weak_key_sha1 "RSA-1024 server leaf signed with sha1WithRSAEncryption (SECLEVEL=0), TLS 1.2" INBOUND \
        "$SPEC25;srv=srv_weak.chain.pem;cli=;version=TLS1.2;outcome=established"
}
case_alert_unknown_ca() {
    srv_postfix srv_both
    cap_start alert_unknown_ca
    s_client_c -starttls smtp -name "$EH" -tls1_2 -servername mx.test.example \
        -verify_return_error -CAfile "$CERTS/other-ca.crt"
    cap_stop
    srv_stop
    finish alert_unknown_ca "openssl s_client trusts another CA, rejects the server chain and sends a fatal cleartext alert unknown_ca (TLS 1.2)" INBOUND \
        "$SPEC25;srv=$C_SRV;cli=;version=TLS1.2;sni=mx.test.example;alert=unknown_ca;outcome=alert"
}
# Postfix as client in the client namespace; injects one message and waits for delivery
pf_client_send() {  # DIR
    local d=$1 i
    printf 'From: sender@client.example\nTo: user@test.example\nSubject: mxcert fixture\n\nfixture\n' \
        | ip netns exec "$C_NS" sendmail -C "$d/etc" -f sender@client.example user@test.example
    for i in $(seq 100); do
        sleep 0.1
        grep -q 'status=sent' "$SRV/maillog" 2>/dev/null || continue
        grep -qE 'status=(sent|deferred|bounced)' "$d/maillog" 2>/dev/null && break
    done
    grep -q "relay=.*$SIP.*status=sent" "$d/maillog" || { cat "$d/maillog" >&2; die "Postfix client did not deliver to $SIP"; }
}
CLI_PF_COMMON=("mydestination =" "relayhost = [$SIP]:25" "smtp_tls_security_level = encrypt")
case_postfix_to_postfix_clientcert() {
    srv_postfix srv_both "smtpd_tls_ask_ccert = yes" "smtpd_tls_CAfile = $CERTS/root-ca.crt" \
        "smtpd_tls_exclude_ciphers = aNULL" "smtpd_tls_protocols = >=TLSv1.2, <=TLSv1.2"
    local c=$WORK/pf-cli
    pf_write "$c" "$C_NS" "$CIP" mx.client.example "${CLI_PF_COMMON[@]}" \
        "smtp_tls_mandatory_exclude_ciphers = aNULL" \
        "smtp_tls_chain_files = $CERTS/cli_mta.key, $CERTS/cli_mta.chain.pem"
    sed -i '/^smtp \+inet/d;/^submission/d;/^smtps/d' "$c/etc/master.cf"
    pf_start "$c" "$C_NS"
    cap_start postfix_to_postfix_clientcert
    pf_client_send "$c"
    cap_stop
    pf_stop "$c" "$C_NS"
    srv_stop
    finish postfix_to_postfix_clientcert "Postfix client (ECDSA cert, sends leaf+ECC intermediate) to Postfix server asking for a client cert, TLS 1.2; --local-net is the client (outbound)" OUTBOUND \
        "port=25;ehlo=mx.client.example;banner=mx.test.example;offered=1;starttls_code=220;srv=$C_SRV;cli=cli_mta.chain.pem;version=TLS1.2;sni=none;certreq=1;clientcert=1;outcome=established;direction=outbound"
}
case_anon_cipher_tls12() {
    srv_postfix srv_both "smtpd_tls_protocols = >=TLSv1.2, <=TLSv1.2"
    local c=$WORK/pf-cli
    pf_write "$c" "$C_NS" "$CIP" mx.client.example "mydestination =" "relayhost = [$SIP]:25" "smtp_tls_security_level = may"
    sed -i '/^smtp \+inet/d;/^submission/d;/^smtps/d' "$c/etc/master.cf"
    pf_start "$c" "$C_NS"
    cap_start anon_cipher_tls12
    pf_client_send "$c"
    cap_stop
    pf_stop "$c" "$C_NS"
    srv_stop
    finish anon_cipher_tls12 "Postfix to Postfix with default opportunistic TLS: anonymous DH cipher, TLS 1.2 session with no certificate from either side" INBOUND \
        "port=25;ehlo=mx.client.example;offered=1;starttls_code=220;srv=;cli=;version=TLS1.2;cipher=TLS_DH_anon_WITH_AES_256_GCM_SHA384;certreq=0;clientcert=0;outcome=established"
}
case_exim_server_tls12() {
    local e=$WORK/exim
    rm -rf "$e"; mkdir -p "$e/spool" "$e/log"
    # exim reads the key after dropping to its own user
    cp "$CERTS/srv_exim.chain.pem" "$CERTS/srv_exim.key" "$CERTS/root-ca.crt" "$e/"
    chown -R Debian-exim "$e"
    chmod 755 "$e"
    sed "s|@DIR@|$e|g; s|@IP@|$SIP|g; s|@EXIM_ROOT@|$EXIM_ROOT|g" "$HERE/mta/exim.conf" > "$e/exim.conf"
    EXIM_PIDFILE=$e/exim.pid
    ip netns exec "$S_NS" "$EXIM_ROOT/usr/sbin/exim4" -C "$e/exim.conf" -bd \
        >"$e/stdout.log" 2>&1 || { cat "$e/stdout.log" "$e"/log/* >&2 2>/dev/null; die "exim did not start"; }
    wait_listen "$S_NS" "$SIP" 25
    cap_start exim_server_tls12
    swaks_c --port 25 --ehlo "$EH" --tls --tls-protocol tlsv1_2 --tls-sni exim.test.example \
        --tls-cert "$CERTS/cli_clientauth.crt" --tls-key "$CERTS/cli_clientauth.key"
    cap_stop
    local pid i; pid=$(cat "$e/exim.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    EXIM_PIDFILE=""
    finish exim_server_tls12 "Exim 4.96 (GnuTLS) server, TLS 1.2, asks for a client cert (tls_try_verify_hosts); swaks presents an EKU clientAuth leaf" INBOUND \
        "port=25;ehlo=$EH;banner=exim.test.example;offered=1;starttls_code=220;srv=srv_exim.chain.pem;cli=cli_clientauth.crt;version=TLS1.2;sni=exim.test.example;certreq=1;clientcert=1;outcome=established"
}
case_multi_session() {
    srv_postfix srv_both "smtpd_tls_ask_ccert = yes" "smtpd_tls_CAfile = $CERTS/root-ca.crt"
    cap_start multi_session
    swaks_c --port 25 --ehlo one.client.example --tls --tls-protocol tlsv1_2 --tls-sni mx.test.example \
        --tls-cert "$CERTS/cli_clientauth.crt" --tls-key "$CERTS/cli_clientauth.key"
    wait_quiet
    swaks_c --port 25 --ehlo two.client.example
    wait_quiet
    swaks_c --port 25 --ehlo three.client.example --tls --tls-protocol tlsv1_3
    cap_stop
    srv_stop
    finish multi_session "three sessions in a row on one capture: TLS 1.2 with client cert, plaintext (STARTTLS offered but not used), TLS 1.3" INBOUND \
        "port=25;ehlo=one.client.example;offered=1;starttls_code=220;srv=$C_SRV;cli=cli_clientauth.crt;version=TLS1.2;certreq=1;clientcert=1;outcome=established" \
        "port=25;ehlo=two.client.example;offered=1;starttls_code=none;version=none;certreq=none;outcome=no_tls" \
        "port=25;ehlo=three.client.example;offered=1;starttls_code=220;version=TLS1.3;sni=none;certreq=none;outcome=established"
}

# A tiny STARTTLS client on Python's ssl module (OpenSSL) that abandons the TLS handshake
# after the server's first flight: with FIN (mode close) or with RST (mode reset); shared with
# the live-capture tests (pcaps/mta/abandon.py).
write_pyclient() {
    cp "$HERE/mta/abandon.py" "$WORK/abandon.py"
}
case_reset_midhandshake() {
    write_pyclient
    srv_postfix srv_both
    cap_start reset_midhandshake
    ip netns exec "$C_NS" timeout 30 python3 "$WORK/abandon.py" "$SIP" 25 reset || log "  (client exited $?)"
    cap_stop
    srv_stop
    finish reset_midhandshake "Python ssl client sends STARTTLS + ClientHello (TLS 1.2), reads the server flight, then aborts with RST" INBOUND \
        "port=25;ehlo=abandon.client.example;offered=1;starttls_code=220;srv=$C_SRV;cli=;version=TLS1.2;sni=mx.test.example;certreq=0;clientcert=0;alert=none;outcome=reset"
}
case_closed_midhandshake() {
    write_pyclient
    srv_postfix srv_both
    cap_start closed_midhandshake
    ip netns exec "$C_NS" timeout 30 python3 "$WORK/abandon.py" "$SIP" 25 close || log "  (client exited $?)"
    cap_stop
    srv_stop
    finish closed_midhandshake "Python ssl client sends STARTTLS + ClientHello (TLS 1.2), reads the server flight, then closes with FIN" INBOUND \
        "port=25;ehlo=abandon.client.example;offered=1;starttls_code=220;srv=$C_SRV;cli=;version=TLS1.2;sni=mx.test.example;certreq=0;alert=none;outcome=closed"
}
case_alert_protocol_version() {
    srv_postfix srv_both "smtpd_tls_protocols = >=TLSv1, <=TLSv1.2"
    cap_start alert_protocol_version
    swaks_c --port 25 --ehlo "$EH" --tls --tls-protocol tlsv1_3 --tls-sni mx.test.example
    cap_stop
    srv_stop
    finish alert_protocol_version "client offers only TLS 1.3, Postfix allows at most TLS 1.2: server sends a fatal cleartext protocol_version alert, no ServerHello" INBOUND \
        "$SPEC25;sni=mx.test.example;version=none;certreq=none;clientcert=none;alert=protocol_version;outcome=alert"
}
case_helo_plain() {
    simple helo_plain "client uses HELO (swaks --protocol SMTP), no TLS: no EHLO reply, so starttls_offered is null" \
        INBOUND srv_both "" "--port 25 --ehlo helo.client.example --protocol SMTP" \
        "port=25;ehlo=helo.client.example;banner=mx.test.example;offered=none;starttls_code=none;version=none;outcome=no_tls"
}
case_truncated_handshake() {
    # a normal TLS 1.2 session, capture cut (editcap) right after the server's first flight
    srv_postfix srv_both
    cap_start truncated_handshake
    swaks_c --port 25 --ehlo "$EH" --tls --tls-protocol tlsv1_2 --tls-sni mx.test.example
    cap_stop
    srv_stop
    local last
    last=$(tshark -r "$CAP_FILE" -o tls.desegment_ssl_records:TRUE -o tcp.desegment_tcp_streams:TRUE \
        -Y "tls.handshake.type == 14" -T fields -e frame.number 2>/dev/null | head -n1)
    [[ -n $last ]] || die "truncated_handshake: no ServerHelloDone found"
    editcap -r "$CAP_FILE" "$CAP_FILE.cut" "1-$last" >/dev/null
    mv -f "$CAP_FILE.cut" "$CAP_FILE"
    finish truncated_handshake "TLS 1.2 STARTTLS session whose capture ends after the server's first flight (ServerHelloDone): handshake incomplete" INBOUND \
        "$SPEC25;srv=$C_SRV;cli=;version=TLS1.2;sni=mx.test.example;certreq=0;clientcert=0;alert=none;outcome=incomplete"
}

# openssl s_client with a session file: a full handshake saving its session (-sess_out), then
# a second connection offering it (-sess_in). The QUIT after a second lets s_client read the
# TLS 1.3 NewSessionTicket, which the server sends after the handshake (RFC 8446 4.6.1).
resume_pair() {  # CASE VERSIONFLAG
    local sess=$WORK/$1.sess mode
    rm -f "$sess"
    for mode in -sess_out -sess_in; do
        { sleep 1; printf 'QUIT\r\n'; } | ip netns exec "$C_NS" timeout 30 openssl s_client \
            -connect "$SIP:25" -starttls smtp -name "$EH" -servername mx.test.example "$2" \
            "$mode" "$sess" >>"$WORK/s_client.log" 2>&1 || log "  (s_client exited $?)"
        wait_quiet
    done
    grep -q "^Reused, " "$WORK/s_client.log" || die "$1: s_client did not resume the session"
}
case_resumed_tls12() {
    srv_postfix srv_both
    cap_start resumed_tls12
    resume_pair resumed_tls12 -tls1_2
    cap_stop
    srv_stop
    finish resumed_tls12 "openssl s_client: full TLS 1.2 handshake (session saved), then a second connection resuming it: abbreviated handshake, no Certificate on the wire; the resumed session carries the first one's chain" INBOUND \
        "$SPEC25;srv=$C_SRV;cli=;version=TLS1.2;sni=mx.test.example;resumed=0;outcome=established" \
        "$SPEC25;srv=;cli=;version=TLS1.2;sni=mx.test.example;certreq=0;resumed=1;outcome=established"
}
case_resumed_tls13() {
    srv_postfix srv_both
    cap_start resumed_tls13
    resume_pair resumed_tls13 -tls1_3
    cap_stop
    srv_stop
    finish resumed_tls13 "openssl s_client: full TLS 1.3 handshake (ticket saved), then a second connection resuming it with a PSK (ServerHello pre_shared_key); no chain visible on the wire for either" INBOUND \
        "$SPEC25;version=TLS1.3;sni=mx.test.example;certreq=none;resumed=0;outcome=established" \
        "$SPEC25;version=TLS1.3;sni=mx.test.example;certreq=none;resumed=1;outcome=established"
}
ALL_CASES=(
    starttls_25_tls12 starttls_587_tls12 implicit_465_tls12 starttls_25_tls13 implicit_465_tls13
    certreq_client_presents certreq_client_declines certreq_client_noeku certreq_client_serveronly
    server_eku_serveronly server_no_eku server_eku_clientonly server_expired server_selfsigned
    server_wildcard server_name_mismatch server_ed25519 server_chain_with_root
    no_starttls starttls_refused tls10_legacy weak_key_sha1 alert_unknown_ca
    postfix_to_postfix_clientcert anon_cipher_tls12 exim_server_tls12
    starttls_25_tls12_offload multi_session
    alert_protocol_version reset_midhandshake closed_midhandshake truncated_handshake helo_plain
    resumed_tls12 resumed_tls13
)

# ------------------------------------------------------------------ main
if [[ $LIST == 1 ]]; then printf '%s\n' "${ALL_CASES[@]}"; exit 0; fi
[[ $(id -u) == 0 ]] || die "must run as root"
START=$(date +%s)
CASES=("${ALL_CASES[@]}")
if ((${#ONLY[@]})); then
    for c in "${ONLY[@]}"; do declare -F "case_$c" >/dev/null || die "unknown case $c"; done
    CASES=("${ONLY[@]}")
fi

install_deps
WORK=$(mktemp -d /tmp/mxcert-pcaps.XXXXXX)
chmod 755 "$WORK"

if [[ $REGEN_CERTS == 1 || ! -f $CERTS/root-ca.crt ]]; then
    log "generating test PKI into $CERTS"
    rm -rf "$CERTS.new"
    bash "$HERE/certs.sh" "$CERTS.new" >&2
    rm -rf "$CERTS"
    mv "$CERTS.new" "$CERTS"
fi
# Postfix runs as root for the master and reads keys as root; keep keys private anyway
chmod 600 "$CERTS"/*.key
chmod 644 "$CERTS"/*.crt "$CERTS"/*.pem

# starttls_refused: a key file smtpd cannot load (root would read a mode-000 file, so it
# is also not a key). smtpd still advertises STARTTLS and answers it with 454.
printf 'this is not a key\n' > "$WORK/unreadable.key"
chmod 000 "$WORK/unreadable.key"

cat > "$WORK/openssl-legacy.cnf" <<'EOF'
openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
CipherString = DEFAULT@SECLEVEL=0
MinProtocol = TLSv1
EOF
chmod 644 "$WORK/openssl-legacy.cnf"

ns_setup
for c in "${CASES[@]}"; do
    log "case $c"
    "case_$c"
done

TOTAL=0
for c in "${DONE_CASES[@]}"; do TOTAL=$((TOTAL + $(stat -c %s "$HERE/$c.pcap"))); done
log "done: ${#DONE_CASES[@]} cases, $TOTAL bytes of pcap, $(( $(date +%s) - START )) s"
