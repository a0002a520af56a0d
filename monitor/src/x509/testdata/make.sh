#!/usr/bin/env bash
# Regenerates the x509 stage's test certificates (*.der) and expected.json.
#
# Certificates come from openssl; expected.json comes from python-cryptography (expected.py),
# an implementation independent of x509-parser, so the Rust test checks our reading of the DER
# against a second reader rather than against itself. Names, serials, extensions and validity
# lengths are fixed; keys and dates are fresh on each run, which is fine because the DER files
# and expected.json are regenerated (and committed) together.
#
# Usage: monitor/src/x509/testdata/make.sh   (needs openssl >= 3.0 and python3)
set -euo pipefail
cd "$(dirname "$0")"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

python3 -c 'import cryptography, sys; sys.exit(int(cryptography.__version__.split(".")[0]) < 43)' \
  2>/dev/null || pip install --quiet 'cryptography>=43'

rm -f ./*.der expected.json

cat > "$W/ext.cnf" <<'CNF'
[ root ]
basicConstraints       = critical,CA:TRUE
keyUsage               = critical,keyCertSign,cRLSign
subjectKeyIdentifier   = hash

[ leaf_rsa ]
basicConstraints       = critical,CA:FALSE
keyUsage               = critical,digitalSignature,keyEncipherment
extendedKeyUsage       = serverAuth,clientAuth
subjectAltName         = DNS:mx1.example.com,DNS:mail.example.com,DNS:*.example.net,IP:192.0.2.25,IP:2001:db8::25,email:postmaster@example.com
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid

[ server ]
basicConstraints       = CA:FALSE
keyUsage               = critical,digitalSignature
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:mx.example.org
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid

[ no_eku ]
keyUsage               = critical,digitalSignature,keyAgreement
subjectAltName         = DNS:noeku.example.com
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid

[ eku_any ]
keyUsage               = digitalSignature,nonRepudiation,dataEncipherment,keyAgreement,encipherOnly
extendedKeyUsage       = serverAuth,anyExtendedKeyUsage,1.3.6.1.4.1.55555.7.1,emailProtection,codeSigning,timeStamping,OCSPSigning
subjectAltName         = IP:::1,DNS:any.example.com,IP:10.0.0.1
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid

[ self ]
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid

[ plain ]
CNF

key() { # NAME GENPKEY-ARGS...
  local name=$1
  shift
  openssl genpkey "$@" -out "$W/$name.key" 2>/dev/null
}

csr() { # NAME KEY SUBJECT
  openssl req -new -utf8 -multivalue-rdn -key "$W/$2.key" -subj "$3" -out "$W/$1.csr"
}

# sign NAME KEY SUBJECT SECTION SERIAL ISSUER|self [extra openssl x509 args...]
sign() {
  local name=$1 key=$2 subj=$3 section=$4 serial=$5 issuer=$6
  shift 6
  csr "$name" "$key" "$subj"
  local who=(-key "$W/$key.key")
  if [ "$issuer" != self ]; then
    who=(-CA "$W/$issuer.pem" -CAkey "$W/$issuer.issuer-key")
  fi
  openssl x509 -req -in "$W/$name.csr" "${who[@]}" -set_serial "$serial" -days 825 \
    -extfile "$W/ext.cnf" -extensions "$section" "$@" -out "$W/$name.pem" 2>/dev/null
  cp "$W/$key.key" "$W/$name.issuer-key"
  openssl x509 -in "$W/$name.pem" -outform DER -out "$name.der"
}

key rsa2048 -algorithm RSA -pkeyopt rsa_keygen_bits:2048
key rsa2048b -algorithm RSA -pkeyopt rsa_keygen_bits:2048
key rsa1024 -algorithm RSA -pkeyopt rsa_keygen_bits:1024
key p256 -algorithm EC -pkeyopt ec_paramgen_curve:P-256
key p256b -algorithm EC -pkeyopt ec_paramgen_curve:P-256
key p384 -algorithm EC -pkeyopt ec_paramgen_curve:P-384
key p521 -algorithm EC -pkeyopt ec_paramgen_curve:P-521
key k256 -algorithm EC -pkeyopt ec_paramgen_curve:secp256k1
key bp384 -algorithm EC -pkeyopt ec_paramgen_curve:brainpoolP384r1
key ed25519 -algorithm ED25519
key ed448 -algorithm ED448
key ed448b -algorithm ED448
openssl genpkey -genparam -algorithm DSA -pkeyopt pbits:2048 -out "$W/dsa.param" 2>/dev/null
key dsa -paramfile "$W/dsa.param"

# A root CA (RFC 5280 §4.2.1.9, §4.2.1.3: cA and keyCertSign,cRLSign) and leaves it signs.
sign ca_root rsa2048 '/C=DE/O=mxcert test/CN=mxcert Test Root CA' root 0x1000 self
# Serial with the top bit set: DER adds a 0x00 byte that must not show in `serial`.
sign leaf_rsa2048 rsa2048b '/C=DE/ST=Berlin/L=Berlin/O=Example Mail/CN=mx1.example.com' leaf_rsa \
  0x80aabbccdd ca_root
sign no_eku p256 '/O=Example Mail/CN=noeku.example.com' no_eku 0x2002 ca_root
sign eku_any rsa2048b '/CN=any.example.com' eku_any 0x2003 ca_root

# Self-signed, one per key type and signature algorithm.
sign ec_p256 p256 '/CN=p256.example.com' server 0x3001 self
sign ec_p384 p384 '/CN=p384.example.com' server 0x3002 self -sha384
sign ed25519 ed25519 '/CN=ed25519.example.com' server 0x3003 self
sign rsa1024_sha1 rsa1024 '/CN=legacy.example.com' server 0x3004 self -sha1
# The signature verifiers used by mxcert (ring) do not cover these; see self_signed fallback.
sign rsa1024_sha256 rsa1024 '/CN=small.example.com' server 0x3005 self
sign ec_p521 p521 '/CN=p521.example.com' server 0x3006 self -sha512
sign ec_secp256k1 k256 '/CN=k256.example.com' server 0x3007 self
sign ec_brainpool384 bp384 '/CN=bp384.example.com' server 0x3008 self -sha384
sign ed448 ed448 '/CN=ed448.example.com' server 0x3009 self
sign dsa dsa '/CN=dsa.example.com' server 0x300a self -sha256
sign rsa_pss rsa2048 '/CN=pss.example.com' server 0x300b self -sha256 \
  -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32

# A v1 certificate (no extensions) whose notAfter (year ~9966) is past what i64 nanoseconds hold.
sign v1_far_future rsa2048b '/CN=v1.example.com' plain 0x3010 self -days 2900000

# RFC 4514 §2.4 escaping: ',', '+', '"', '\', '<', '>', ';', a leading '#', a leading and a
# trailing space, a multi-valued RDN (RFC 4514 §2.2), UTF-8, emailAddress / DC / UID / STREET
# (printed as a dotted OID). Self-signed so the issuer is just as awkward.
sign escaping p256 '/C=DE/DC=example/DC=com/O=Acme\, Inc.+OU=Mail;Relay/CN=#hash trail /CN= a\+b="q" <x> \\back/L=Zürich/street=Main St 1/UID=jdoe/emailAddress=pm@example.com' \
  server 0x4001 self

# RFC 5280 §4.1.2.2 wants a positive serial; real CAs have issued zero and negative ones.
sign serial_zero ed25519 '/CN=zero.example.com' server 0 self
sign serial_negative ed25519 '/CN=negative.example.com' server -0x1234 self

# Subject == issuer but signed by ANOTHER key: looks self-signed, is not.
sign imposter_ca rsa2048 '/CN=Same Name' root 0x5001 self
sign imposter rsa2048b '/CN=Same Name' self 0x5002 imposter_ca
# The same with Ed448, which mxcert's verifier lacks, so the AKI/SKI fallback decides.
sign imposter_ca_ed448 ed448 '/CN=Same Ed448' root 0x5003 self
sign imposter_ed448 ed448b '/CN=Same Ed448' self 0x5004 imposter_ca_ed448
rm -f imposter_ca.der imposter_ca_ed448.der

# Name encodings openssl's -subj cannot write (BMPString, UniversalString, NUL, a lone space),
# then expected.json for every *.der here.
python3 expected.py
