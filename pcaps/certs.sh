#!/usr/bin/env bash
# Generate the private test PKI used by pcaps/make.sh into directory $1.
# Deterministic in names, serials, dates and extensions; keys are fresh on each run.
set -euo pipefail
OUT=${1:?usage: certs.sh OUTDIR}
mkdir -p "$OUT"
cd "$OUT"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

cat > "$W/ca.cnf" <<'CNF'
[ ca ]
default_ca = CA_default
[ CA_default ]
dir            = $ENV::CAWORK
database       = $dir/index.txt
new_certs_dir  = $dir/new
serial         = $dir/serial
default_md     = sha256
policy         = policy_any
unique_subject = no
copy_extensions = none
email_in_dn    = no
[ policy_any ]
commonName             = supplied
organizationName       = optional
organizationalUnitName = optional
countryName            = optional
[ req ]
distinguished_name = req_dn
prompt = no
[ req_dn ]
CN = unused

[ v3_root ]
basicConstraints       = critical,CA:TRUE
keyUsage               = critical,keyCertSign,cRLSign
subjectKeyIdentifier   = hash
[ v3_int ]
basicConstraints       = critical,CA:TRUE,pathlen:0
keyUsage               = critical,digitalSignature,keyCertSign,cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

# --- server leaves ---
[ srv_both ]
basicConstraints       = critical,CA:FALSE
keyUsage               = critical,digitalSignature,keyEncipherment
extendedKeyUsage       = serverAuth,clientAuth
subjectAltName         = DNS:mx.test.example,DNS:mail.test.example,DNS:smtp.test.example,IP:198.18.0.1
authorityKeyIdentifier = keyid
[ srv_serveronly ]
basicConstraints       = critical,CA:FALSE
keyUsage               = critical,digitalSignature,keyEncipherment
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:mx.test.example
[ srv_noeku ]
basicConstraints       = critical,CA:FALSE
keyUsage               = critical,digitalSignature,keyAgreement
subjectAltName         = DNS:mx.test.example
[ srv_clientonly ]
basicConstraints       = critical,CA:FALSE
keyUsage               = critical,digitalSignature,keyEncipherment
extendedKeyUsage       = clientAuth
subjectAltName         = DNS:mx.test.example
[ srv_expired ]
basicConstraints       = critical,CA:FALSE
keyUsage               = critical,digitalSignature,keyEncipherment
extendedKeyUsage       = serverAuth,clientAuth
subjectAltName         = DNS:mx.test.example
[ srv_selfsigned ]
basicConstraints       = CA:FALSE
subjectAltName         = DNS:mx.test.example
[ srv_wildcard ]
basicConstraints       = critical,CA:FALSE
keyUsage               = critical,digitalSignature,keyEncipherment
extendedKeyUsage       = serverAuth,clientAuth
subjectAltName         = DNS:*.b.example,DNS:b.example
[ srv_other ]
basicConstraints       = critical,CA:FALSE
keyUsage               = critical,digitalSignature,keyAgreement
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:other.example,DNS:www.other.example
[ srv_weak ]
basicConstraints       = critical,CA:FALSE
keyUsage               = critical,digitalSignature,keyEncipherment
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:mx.test.example
[ srv_ed25519 ]
basicConstraints       = critical,CA:FALSE
keyUsage               = critical,digitalSignature
extendedKeyUsage       = serverAuth,clientAuth
subjectAltName         = DNS:mx.test.example
[ srv_exim ]
basicConstraints       = critical,CA:FALSE
keyUsage               = critical,digitalSignature,keyEncipherment
extendedKeyUsage       = serverAuth,clientAuth,emailProtection
subjectAltName         = DNS:exim.test.example,IP:198.18.0.1

# --- client leaves ---
[ cli_clientauth ]
basicConstraints       = critical,CA:FALSE
keyUsage               = critical,digitalSignature
extendedKeyUsage       = clientAuth
subjectAltName         = DNS:client.test.example
[ cli_noeku ]
keyUsage               = critical,digitalSignature,keyAgreement
subjectAltName         = DNS:client.test.example
[ cli_serveronly ]
basicConstraints       = critical,CA:FALSE
keyUsage               = critical,digitalSignature,keyEncipherment
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:client.test.example
[ cli_mta ]
basicConstraints       = critical,CA:FALSE
keyUsage               = critical,digitalSignature,keyAgreement
extendedKeyUsage       = clientAuth,serverAuth,1.3.6.1.5.5.7.3.5
subjectAltName         = DNS:mx.client.example,DNS:client.example,IP:198.18.0.2
CNF

export CAWORK="$W"
mkdir -p "$W/new"
: > "$W/index.txt"

# sign NAME SUBJ SERIAL EXT START END ISSUER(root|inta|intb|self) [md]
sign() {
    local name=$1 subj=$2 serial=$3 ext=$4 start=$5 end=$6 issuer=$7 md=${8:-sha256}
    echo "$serial" > "$W/serial"
    openssl req -new -config "$W/ca.cnf" -key "$name.key" -subj "$subj" -out "$W/$name.csr" 2>/dev/null
    local mdopt=(-md "$md")
    if [[ $(openssl pkey -in "$name.key" -noout -text 2>/dev/null | head -1) == ED25519* ]]; then mdopt=(); fi
    if [[ $issuer == self ]]; then
        openssl ca -batch -config "$W/ca.cnf" -selfsign -keyfile "$name.key" -in "$W/$name.csr" \
            -out "$name.crt" -startdate "$start" -enddate "$end" -extfile "$W/ca.cnf" -extensions "$ext" \
            "${mdopt[@]}" -notext -preserveDN 2>"$W/err" || { cat "$W/err"; exit 1; }
    else
        if [[ $issuer == root ]]; then local icert=root-ca.crt ikey=root-ca.key; else local icert=$issuer-ca.crt ikey=$issuer-ca.key; fi
        openssl ca -batch -config "$W/ca.cnf" -cert "$icert" -keyfile "$ikey" -in "$W/$name.csr" \
            -out "$name.crt" -startdate "$start" -enddate "$end" -extfile "$W/ca.cnf" -extensions "$ext" \
            "${mdopt[@]}" -notext -preserveDN 2>"$W/err" || { cat "$W/err"; exit 1; }
    fi
    # strip anything but the PEM block
    openssl x509 -in "$name.crt" -out "$name.crt"
}
rsa() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:"$2" -out "$1.key" 2>/dev/null; }
ec()  { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:"$2" -out "$1.key" 2>/dev/null; }
ed()  { openssl genpkey -algorithm ED25519 -out "$1.key"; }

CA_S=20260101000000Z CA_E=20360101000000Z
LF_S=20260101000000Z LF_E=20310101000000Z

rsa root-ca 3072
sign root-ca "/O=mxcert test/CN=mxcert Test Root CA" 01 v3_root $CA_S $CA_E self sha384
rsa inta-ca 2048
sign inta-ca "/O=mxcert test/OU=Issuing/CN=mxcert Test RSA Issuing CA" 1000 v3_int $CA_S $CA_E root sha256
ec intb-ca secp384r1
sign intb-ca "/O=mxcert test/OU=Issuing/CN=mxcert Test ECC Issuing CA" 1001 v3_int $CA_S $CA_E root sha256
# an unrelated CA, only used as a client trust anchor (alert_unknown_ca); never on the wire
rsa other-ca 2048
sign other-ca "/O=other test/CN=Other Test Root CA" 02 v3_root $CA_S $CA_E self sha256

rsa srv_both 2048;       sign srv_both       "/O=mxcert test/CN=mx.test.example"       8A5C0E1F2D3B4A59 srv_both       $LF_S $LF_E inta
rsa srv_serveronly 2048; sign srv_serveronly "/O=mxcert test/CN=mx.test.example"       2002 srv_serveronly $LF_S $LF_E inta
ec  srv_noeku prime256v1; sign srv_noeku     "/O=mxcert test/CN=mx.test.example"       2003 srv_noeku      $LF_S $LF_E intb sha384
rsa srv_clientonly 2048; sign srv_clientonly "/O=mxcert test/CN=mx.test.example"       2004 srv_clientonly $LF_S $LF_E inta
rsa srv_expired 2048;    sign srv_expired    "/O=mxcert test/CN=mx.test.example"       2005 srv_expired    20240101000000Z 20250101000000Z inta
rsa srv_selfsigned 2048; sign srv_selfsigned "/O=Self Signed Mail/CN=mx.test.example"  7f3a9b srv_selfsigned $LF_S $LF_E self sha256
rsa srv_wildcard 2048;   sign srv_wildcard   "/O=mxcert test/CN=*.b.example"           2007 srv_wildcard   $LF_S $LF_E inta
ec  srv_other prime256v1; sign srv_other     "/O=Other Org/CN=other.example"           2008 srv_other      $LF_S $LF_E intb sha256
rsa srv_weak 1024;       sign srv_weak       "/O=mxcert test/OU=Legacy/CN=mx.test.example" 2009 srv_weak   $LF_S $LF_E inta sha1
ed  srv_ed25519;         sign srv_ed25519    "/O=mxcert test/CN=mx.test.example"       200A srv_ed25519    $LF_S $LF_E inta
rsa srv_exim 2048;       sign srv_exim       "/O=mxcert test/CN=exim.test.example"     200B srv_exim       $LF_S $LF_E inta

rsa cli_clientauth 2048; sign cli_clientauth "/O=mxcert client/CN=client.test.example" 3001 cli_clientauth $LF_S $LF_E inta
ec  cli_noeku prime256v1; sign cli_noeku     "/O=mxcert client/CN=client.test.example" 3002 cli_noeku      $LF_S $LF_E intb sha384
rsa cli_serveronly 2048; sign cli_serveronly "/O=mxcert client/CN=client.test.example" 3003 cli_serveronly $LF_S $LF_E inta
ec  cli_mta prime256v1;  sign cli_mta        "/O=Client MTA/CN=mx.client.example"      C0FFEE3004 cli_mta  $LF_S $LF_E intb sha384

# chain files: leaf then issuing CA
for c in *.crt; do
    n=${c%.crt}
    case $n in root-ca|inta-ca|intb-ca|other-ca|srv_selfsigned) continue;; esac
    iss=$(openssl x509 -in "$c" -noout -issuer -nameopt RFC2253)
    if [[ $iss == *"RSA Issuing"* ]]; then cat "$c" inta-ca.crt > "$n.chain.pem"; else cat "$c" intb-ca.crt > "$n.chain.pem"; fi
done
cp srv_selfsigned.crt srv_selfsigned.chain.pem
chmod 600 *.key
echo "certs written to $OUT"
