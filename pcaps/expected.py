#!/usr/bin/env python3
"""Write <case>.expected.json for one capture made by pcaps/make.sh.

Ground truth is independent of mxcert:
  * the configuration make.sh chose (passed in as --session specs: which chain
    each side was configured to send, versions, SNI, expected outcome, ...),
  * tshark's dissection of the capture (timestamps, ports, SMTP dialogue, TLS
    records, certificates as DER), and
  * python-cryptography on the certificate DER bytes.

Every value written comes from tshark or python-cryptography; the configuration
is only used to cross-check them, and any disagreement is a fatal error.

usage: expected.py --pcap FILE --out FILE --certs DIR --desc TEXT
                   [--arg A]... --session SPEC [--session SPEC]...
SPEC is 'key=value;key=value', keys (all optional, checked when given):
  srv=<pem>[,<pem>]  chain the server was configured to send (files in --certs; '' = none on the wire)
  cli=<pem>[,<pem>]  chain the client sends ('' = none / empty message)
  version=TLS1.2|TLS1.3|...|none   port=N   sni=<name>|none   ehlo=<name>
  implicit=0|1   starttls_code=N|none   offered=0|1|none   certreq=0|1|none
  clientcert=0|1|none   alert=<name>|none   outcome=<outcome>   cipher=<IANA name>
  resumed=0|1
"""
import argparse
import hashlib
import ipaddress
import json
import struct
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from decimal import Decimal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID


def die(msg):
    print(f"expected.py: FATAL: {msg}", file=sys.stderr)
    sys.exit(1)


def aslist(x):
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


# ---------------------------------------------------------------- tables

ALERTS = {  # RFC 8446 section 6 (+ legacy values from RFC 5246)
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
    21: "decryption_failed", 22: "record_overflow", 30: "decompression_failure",
    40: "handshake_failure", 41: "no_certificate", 42: "bad_certificate",
    43: "unsupported_certificate", 44: "certificate_revoked", 45: "certificate_expired",
    46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca",
    49: "access_denied", 50: "decode_error", 51: "decrypt_error",
    60: "export_restriction", 70: "protocol_version", 71: "insufficient_security",
    80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled",
    100: "no_renegotiation", 109: "missing_extension", 110: "unsupported_extension",
    111: "certificate_unobtainable", 112: "unrecognized_name",
    113: "bad_certificate_status_response", 114: "bad_certificate_hash_value",
    115: "unknown_psk_identity", 116: "certificate_required", 120: "no_application_protocol",
}
VERSIONS = {0x0300: "SSL3.0", 0x0301: "TLS1.0", 0x0302: "TLS1.1", 0x0303: "TLS1.2", 0x0304: "TLS1.3"}
EKU_NAMES = {
    "1.3.6.1.5.5.7.3.1": "serverAuth", "1.3.6.1.5.5.7.3.2": "clientAuth",
    "1.3.6.1.5.5.7.3.4": "emailProtection", "1.3.6.1.5.5.7.3.3": "codeSigning",
    "1.3.6.1.5.5.7.3.8": "timeStamping", "1.3.6.1.5.5.7.3.9": "OCSPSigning",
    "2.5.29.37.0": "any",
}
SIG_NAMES = {
    "1.2.840.113549.1.1.11": "sha256WithRSAEncryption", "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
    "1.2.840.113549.1.1.12": "sha384WithRSAEncryption", "1.2.840.113549.1.1.13": "sha512WithRSAEncryption",
    "1.2.840.113549.1.1.4": "md5WithRSAEncryption", "1.2.840.113549.1.1.10": "rsassaPss",
    "1.2.840.10045.4.3.2": "ecdsa-with-SHA256", "1.2.840.10045.4.3.3": "ecdsa-with-SHA384",
    "1.2.840.10045.4.3.4": "ecdsa-with-SHA512", "1.2.840.10045.4.1": "ecdsa-with-SHA1",
    "1.3.101.112": "ED25519", "1.3.101.113": "ED448",
}


def cipher_table():
    """hex code -> IANA name, from `openssl ciphers -V -stdname`."""
    out = subprocess.run(["openssl", "ciphers", "-V", "-stdname", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"],
                         check=True, capture_output=True, text=True).stdout
    table = {}
    for line in out.splitlines():
        m = re.match(r"\s*0x([0-9A-Fa-f]{2}),0x([0-9A-Fa-f]{2})\s+-\s+(\S+)", line)
        if m:
            table[int(m.group(1) + m.group(2), 16)] = m.group(3)
    if len(table) < 50:
        die("could not read the cipher table from openssl")
    return table


# ---------------------------------------------------------------- certificates

def utc(cert, which):
    if hasattr(cert, which + "_utc"):  # cryptography >= 42
        return getattr(cert, which + "_utc").astimezone(timezone.utc)
    return getattr(cert, which).replace(tzinfo=timezone.utc)


def rfc3339_ms(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def verify_self(cert):
    pub = cert.public_key()
    try:
        if isinstance(pub, rsa.RSAPublicKey):
            if cert.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.10":
                pad = cert.signature_algorithm_parameters
                pub.verify(cert.signature, cert.tbs_certificate_bytes, pad, cert.signature_hash_algorithm)
            else:
                pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                           cert.signature_hash_algorithm)
        elif isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        elif isinstance(pub, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            pub.verify(cert.signature, cert.tbs_certificate_bytes)
        elif isinstance(pub, dsa.DSAPublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, cert.signature_hash_algorithm)
        else:
            return False
        return True
    except Exception:
        return False


def cert_record(der):
    cert = x509.load_der_x509_certificate(der)
    exts = cert.extensions

    def ext(oid):
        try:
            return exts.get_extension_for_oid(oid).value
        except x509.ExtensionNotFound:
            return None

    san = ext(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    san_dns = san.get_values_for_type(x509.DNSName) if san is not None else []
    san_ip = [str(a) for a in san.get_values_for_type(x509.IPAddress)] if san is not None else []
    ekuv = ext(ExtensionOID.EXTENDED_KEY_USAGE)
    eku = [EKU_NAMES.get(o.dotted_string, o.dotted_string) for o in ekuv] if ekuv is not None else []
    ku = ext(ExtensionOID.KEY_USAGE)
    key_usage = []
    if ku is not None:
        bits = [("digitalSignature", ku.digital_signature), ("nonRepudiation", ku.content_commitment),
                ("keyEncipherment", ku.key_encipherment), ("dataEncipherment", ku.data_encipherment),
                ("keyAgreement", ku.key_agreement), ("keyCertSign", ku.key_cert_sign),
                ("cRLSign", ku.crl_sign),
                ("encipherOnly", ku.encipher_only if ku.key_agreement else False),
                ("decipherOnly", ku.decipher_only if ku.key_agreement else False)]
        key_usage = [n for n, v in bits if v]
    bc = ext(ExtensionOID.BASIC_CONSTRAINTS)
    pub = cert.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        kt, kb = "RSA", pub.key_size
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        kt, kb = "EC", pub.curve.key_size
    elif isinstance(pub, ed25519.Ed25519PublicKey):
        kt, kb = "Ed25519", 256
    elif isinstance(pub, ed448.Ed448PublicKey):
        kt, kb = "Ed448", 456
    elif isinstance(pub, dsa.DSAPublicKey):
        kt, kb = "DSA", pub.key_size
    else:
        die(f"unknown key type {type(pub)}")
    sig_oid = cert.signature_algorithm_oid.dotted_string
    nb = utc(cert, "not_valid_before")
    na = utc(cert, "not_valid_after")
    rec = {
        "sha256": hashlib.sha256(der).hexdigest(),
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "not_before": rfc3339_ms(nb),
        "not_after": rfc3339_ms(na),
        "san_dns": list(san_dns),
        "san_ip": san_ip,
        "eku_present": ekuv is not None,
        "eku": eku,
        "key_usage": key_usage,
        "is_ca": bool(bc.ca) if bc is not None else False,
        "self_signed": cert.subject == cert.issuer and verify_self(cert),
        "key_type": kt,
        "key_bits": kb,
        "signature_algorithm": SIG_NAMES.get(sig_oid, sig_oid),
    }
    # independent cross-check of a few fields against `openssl x509 -text`
    pem = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-text", "-serial"],
                         input=der, capture_output=True, check=True).stdout.decode()
    m = re.search(r"Signature Algorithm: (\S+)", pem)
    if not m or (m.group(1) != rec["signature_algorithm"] and m.group(1) != sig_oid):
        die(f"signature algorithm mismatch for {rec['subject']}: openssl says {m and m.group(1)}")
    m = re.search(r"^serial=([0-9A-F]+)$", pem, re.M)
    if not m or int(m.group(1), 16) != cert.serial_number:
        die(f"serial mismatch for {rec['subject']}")
    if kt == "RSA" and f"Public-Key: ({kb} bit)" not in pem:
        die(f"RSA key size mismatch for {rec['subject']}")
    return rec


def load_pem_chain(certdir, names):
    ders = []
    for n in names:
        path = os.path.join(certdir, n)
        with open(path, "rb") as f:
            data = f.read()
        for block in re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", data, re.S):
            ders.append(x509.load_pem_x509_certificate(block).public_bytes(serialization.Encoding.DER))
    return ders


# ---------------------------------------------------------------- tshark

TSHARK_OPTS = ["-o", "tls.desegment_ssl_records:TRUE", "-o", "tcp.desegment_tcp_streams:TRUE",
               "-o", "tcp.check_checksum:FALSE", "-d", "tcp.port==465,tls"]


def tshark_json(pcap):
    p = subprocess.run(["tshark", "-r", pcap, *TSHARK_OPTS, "-T", "json", "--no-duplicate-keys"],
                       capture_output=True)
    if p.returncode != 0:
        die(f"tshark failed on {pcap}: {p.stderr.decode()[-2000:]}")
    return json.loads(p.stdout)


def layer_list(layers, name):
    return aslist(layers.get(name))


def hexbytes(s):
    return bytes.fromhex(s.replace(":", ""))


def walk_records(tls_layer):
    """yield record dicts of one tls layer, in order."""
    for rec in aslist(tls_layer.get("tls.record")):
        if isinstance(rec, dict):
            yield rec


def parse_sessions(frames, ciphers):
    streams = {}
    order = []
    for fr in frames:
        L = fr["_source"]["layers"]
        if "tcp" not in L:
            continue
        tcp = L["tcp"]
        ip = L["ip"]
        sid = int(tcp["tcp.stream"])
        flags = int(tcp["tcp.flags"], 16)
        src = (ip["ip.src"], int(tcp["tcp.srcport"]))
        dst = (ip["ip.dst"], int(tcp["tcp.dstport"]))
        if sid not in streams:
            if not (flags & 0x02 and not flags & 0x10):
                die(f"stream {sid} does not start with a client SYN")
            epoch = L["frame"]["frame.time_epoch"]
            streams[sid] = {"syn_epoch": epoch, "client": src, "server": dst, "frames": []}
            order.append(sid)
        st = streams[sid]
        st["frames"].append((fr, src == st["client"], flags))
    sessions = []
    for sid in order:
        sessions.append(parse_stream(streams[sid], ciphers))
    return sessions


def ts_from_epoch(epoch):
    d = Decimal(epoch)
    secs = int(d)
    ms = int((d - secs) * 1000)  # truncated
    dt = datetime.fromtimestamp(secs, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms:03d}Z"


def parse_stream(st, ciphers):
    smtp = {"banner_host": None, "ehlo": None, "starttls_offered": None, "starttls": False,
            "implicit_tls": False, "starttls_reply_code": None}
    tls = {"version": None, "cipher": None, "sni": None, "cert_requested": None,
           "client_cert_presented": None, "server_chain": [], "client_chain": [], "alert": None,
           "resumed": False, "chain_source": None, "resumed_from": None}
    ch_session_id = sh_session_id = b""
    sh_ext_types = []
    server_full_flight = False  # Certificate or ServerHelloDone before the server's CCS
    tls_started = False
    first_payload_seen = False
    saw_client_hello = saw_server_hello = False
    saw_certreq = False
    client_cert_msg = None  # list of DERs, [] for empty message
    server_chain_der = []
    client_chain_der = []
    ccs = {True: False, False: False}
    fin_after_ccs = {True: False, False: False}
    appdata = {True: False, False: False}
    cleartext_fatal_alert = False
    expect_ehlo_reply = False
    pending_starttls = False
    rst_before_done = fin_before_done = False
    version_code = None
    done = False

    def handshake_done():
        if version_code is None:
            return False
        if version_code == 0x0304:
            return saw_server_hello and appdata[True] and appdata[False]
        return fin_after_ccs[True] and fin_after_ccs[False]

    for fr, from_client, flags in st["frames"]:
        L = fr["_source"]["layers"]
        tcplen = int(L["tcp"].get("tcp.len", "0"))
        tls_layers = layer_list(L, "tls")
        smtp_layers = layer_list(L, "smtp")
        if tcplen > 0 and not first_payload_seen:
            first_payload_seen = True
            if from_client and tls_layers and not smtp_layers:
                smtp["implicit_tls"] = True
        # ---- plaintext SMTP (tshark's smtp dissector stops after a successful STARTTLS)
        if not tls_started:
            for sm in smtp_layers:
                if from_client:
                    # the raw command lines (tshark splits "STARTTLS" into "STAR" "TLS")
                    for line in aslist(sm.get("smtp.command_line")):
                        words = line.rstrip("\r\n").split(None, 1)
                        if not words:
                            continue
                        cu = words[0].upper()
                        par = words[1].strip() if len(words) > 1 else None
                        if cu in ("EHLO", "HELO") and smtp["ehlo"] is None:
                            smtp["ehlo"] = par
                            expect_ehlo_reply = cu
                        elif cu == "STARTTLS":
                            pending_starttls = True
                else:
                    rt = sm.get("smtp.response_tree")
                    if rt is None:
                        continue
                    for r in aslist(rt):
                        code = int(aslist(r.get("smtp.response.code"))[0])
                        params = aslist(r.get("smtp.rsp.parameter"))
                        if smtp["banner_host"] is None and code == 220 and not expect_ehlo_reply and not pending_starttls and smtp["ehlo"] is None:
                            first = params[0] if params else ""
                            toks = first.split()
                            smtp["banner_host"] = toks[0] if toks else None
                        elif expect_ehlo_reply:
                            # only an EHLO reply can list extensions; after HELO it stays null
                            if expect_ehlo_reply == "EHLO":
                                smtp["starttls_offered"] = any(p.strip().upper().split()[:1] == ["STARTTLS"] for p in params)
                            expect_ehlo_reply = False
                        elif pending_starttls and smtp["starttls_reply_code"] is None:
                            smtp["starttls_reply_code"] = code
                            smtp["starttls"] = code == 220
                            pending_starttls = False
        # ---- TLS records
        for tl in tls_layers:
            for rec in walk_records(tl):
                ctype = int(rec.get("tls.record.content_type", rec.get("tls.record.opaque_type", "0")))
                if ctype == 22:
                    hs_list = aslist(rec.get("tls.handshake"))
                    for hs in hs_list:
                        if not isinstance(hs, dict) or "tls.handshake.type" not in hs:
                            # encrypted handshake message (Finished after CCS, or TLS 1.3)
                            if ccs[from_client]:
                                fin_after_ccs[from_client] = True
                            continue
                        for htype in aslist(hs["tls.handshake.type"]):
                            htype = int(htype)
                            if htype == 1 and from_client:
                                tls_started = True
                                saw_client_hello = True
                                sni = find_key(hs, "tls.handshake.extensions_server_name")
                                tls["sni"] = sni[0] if sni else None
                                ch_session_id = hexbytes(hs.get("tls.handshake.session_id", ""))
                            elif htype == 2 and not from_client:
                                saw_server_hello = True
                                v = int(hs["tls.handshake.version"], 16)
                                sv = find_key(hs, "tls.handshake.extensions.supported_version")
                                if sv:
                                    v = int(sv[0], 16)
                                version_code = v
                                tls["version"] = VERSIONS.get(v, hex(v))
                                sh_session_id = hexbytes(hs.get("tls.handshake.session_id", ""))
                                sh_ext_types = [int(t) for t in find_key(hs, "tls.handshake.extension.type")]
                                cs = int(hs["tls.handshake.ciphersuite"], 16)
                                if cs not in ciphers:
                                    die(f"cipher 0x{cs:04x} not in openssl's table")
                                tls["cipher"] = ciphers[cs]
                            elif htype == 13 and not from_client:
                                saw_certreq = True
                            elif htype == 14 and not from_client:
                                server_full_flight = True
                            elif htype == 11:
                                if not from_client:
                                    server_full_flight = True
                                certs = [hexbytes(h) for h in find_key(hs, "tls.handshake.certificate")]
                                if from_client:
                                    client_cert_msg = certs
                                    client_chain_der = certs
                                else:
                                    server_chain_der = certs
                elif ctype == 20:
                    ccs[from_client] = True
                elif ctype == 21:
                    am = rec.get("tls.alert_message")
                    if isinstance(am, dict) and "tls.alert_message.desc" in am:
                        desc = int(am["tls.alert_message.desc"])
                        level = int(am.get("tls.alert_message.level", "0"))
                        if tls["alert"] is None:
                            tls["alert"] = ALERTS.get(desc, str(desc))
                        if level == 2 and not handshake_done():
                            cleartext_fatal_alert = True
                elif ctype == 23:
                    appdata[from_client] = True
        if tls_layers and not tls_started:
            # TLS records before a ClientHello would be odd; record it
            pass
        if not done and handshake_done():
            done = True
        if tls_started and not done:
            if flags & 0x04:
                rst_before_done = True
                if fin_before_done and not cleartext_fatal_alert:
                    die("ambiguous capture: FIN and then RST before the TLS handshake completed")
            elif flags & 0x01:
                fin_before_done = True
                if rst_before_done and not cleartext_fatal_alert:
                    die("ambiguous capture: RST and then FIN before the TLS handshake completed")

    if version_code is not None and version_code <= 0x0303:
        tls["cert_requested"] = saw_certreq
        tls["client_cert_presented"] = bool(client_cert_msg)
    # no ServerHello (version unknown): cert_requested / client_cert_presented stay null
    tls["server_chain"] = [hashlib.sha256(d).hexdigest() for d in server_chain_der]
    tls["client_chain"] = [hashlib.sha256(d).hexdigest() for d in client_chain_der]
    if server_chain_der or client_chain_der:
        tls["chain_source"] = "wire"
    # Resumption: TLS 1.3 ServerHello with pre_shared_key (41, RFC 8446 4.2.11); TLS <= 1.2
    # abbreviated handshake (RFC 5246 7.3): the server echoes the client's non-empty session
    # id, or (ticket, RFC 5077 3.1) its CCS comes with no Certificate/ServerHelloDone before it.
    if version_code == 0x0304:
        tls["resumed"] = 41 in sh_ext_types
    elif version_code is not None:
        echo = bool(ch_session_id) and ch_session_id == sh_session_id
        tls["resumed"] = echo or (ccs[False] and not server_full_flight)

    if not tls_started:
        outcome = "no_tls"
    elif done:
        outcome = "established"
    elif cleartext_fatal_alert:
        outcome = "alert"
    elif rst_before_done:
        outcome = "reset"
    elif fin_before_done:
        outcome = "closed"
    else:
        outcome = "incomplete"
    return {
        "ts": ts_from_epoch(st["syn_epoch"]),
        "client_ip": st["client"][0], "client_port": st["client"][1],
        "server_ip": st["server"][0], "server_port": st["server"][1],
        "direction": None,
        "smtp": smtp,
        "tls": tls,
        "outcome": outcome,
        "_ders": server_chain_der + client_chain_der,
        "_server_der": server_chain_der,
        "_client_der": client_chain_der,
        "_client_cert_msg": client_cert_msg,
        "_syn_ns": int(Decimal(st["syn_epoch"]) * 1_000_000_000),
    }


def find_key(obj, key):
    """all values of `key` anywhere below obj, in document order."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                out.extend(aslist(v))
            else:
                out.extend(find_key(v, key))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(find_key(v, key))
    return out


def session_id(s):
    """mxcert's session id (record contract, README): the first 8 bytes of SHA-256 over the
    first packet's time in ns (i64 big-endian), client address + port, server address + port."""
    h = hashlib.sha256(struct.pack(">q", s["_syn_ns"]))
    for ip, port in ((s["client_ip"], s["client_port"]), (s["server_ip"], s["server_port"])):
        h.update(ipaddress.ip_address(ip).packed + struct.pack(">H", port))
    return h.hexdigest()[:16]


def carry_resumption(sessions):
    """A resumed session without chains of its own carries those of the last earlier full
    handshake with chains between the same client address and server endpoint for the same SNI
    and version (the rule mxcert documents for its resumption cache)."""
    last_full = {}
    for s in sessions:
        t = s["tls"]
        key = (s["client_ip"], s["server_ip"], s["server_port"], t["sni"], t["version"])
        if t["resumed"]:
            o = last_full.get(key)
            if t["chain_source"] is None and o is not None:
                t["server_chain"] = o["tls"]["server_chain"]
                t["client_chain"] = o["tls"]["client_chain"]
                t["chain_source"] = "resumed"
                t["resumed_from"] = session_id(o)
        elif t["chain_source"] is not None and s["outcome"] == "established":
            last_full[key] = s


def direction(args, client_ip, server_ip):
    nets = [ipaddress.ip_network(args[i + 1], strict=False) for i, a in enumerate(args) if a == "--local-net"]
    c_in = any(ipaddress.ip_address(client_ip) in n for n in nets)
    s_in = any(ipaddress.ip_address(server_ip) in n for n in nets)
    if s_in and not c_in:
        return "inbound"
    if c_in and not s_in:
        return "outbound"
    return "unknown"


# ---------------------------------------------------------------- checks

def parse_spec(s):
    spec = {}
    for part in s.split(";"):
        if not part.strip():
            continue
        k, _, v = part.partition("=")
        spec[k.strip()] = v.strip()
    return spec


def check(case, i, what, got, want):
    if got != want:
        die(f"{case}: session {i}: {what}: capture says {got!r}, configuration says {want!r}")


def tri(v):
    return {"1": True, "0": False, "none": None, "true": True, "false": False, "null": None}[v]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pcap", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--certs", required=True)
    ap.add_argument("--desc", required=True)
    ap.add_argument("--arg", action="append", default=[])
    ap.add_argument("--session", action="append", default=[])
    a = ap.parse_args()
    case = os.path.basename(a.pcap)
    ciphers = cipher_table()
    frames = tshark_json(a.pcap)
    sessions = parse_sessions(frames, ciphers)
    specs = [parse_spec(s) for s in a.session]
    if len(sessions) != len(specs):
        die(f"{case}: capture has {len(sessions)} TCP sessions, configuration expects {len(specs)}")
    all_ders = {}
    for i, (s, spec) in enumerate(zip(sessions, specs)):
        s["direction"] = direction(a.arg, s["client_ip"], s["server_ip"])
        # --- configured chains vs the DER on the wire
        visible = s["tls"]["version"] not in (None, "TLS1.3")
        for side, key in (("srv", "_server_der"), ("cli", "_client_der")):
            if side not in spec:
                continue
            names = [n for n in spec[side].split(",") if n]
            configured = load_pem_chain(a.certs, names) if visible else []
            if s[key] != configured:
                die(f"{case}: session {i}: {side} chain on the wire "
                    f"({[hashlib.sha256(d).hexdigest()[:12] for d in s[key]]}) != configured {names} "
                    f"({[hashlib.sha256(d).hexdigest()[:12] for d in configured]})")
        if "cli" in spec and visible:
            want_presented = bool([n for n in spec["cli"].split(",") if n])
            check(case, i, "client_cert_presented", s["tls"]["client_cert_presented"], want_presented)
        sm, tl = s["smtp"], s["tls"]
        if "version" in spec:
            check(case, i, "version", tl["version"], None if spec["version"] == "none" else spec["version"])
        if "cipher" in spec:
            check(case, i, "cipher", tl["cipher"], spec["cipher"])
        if "port" in spec:
            check(case, i, "server_port", s["server_port"], int(spec["port"]))
        if "sni" in spec:
            check(case, i, "sni", tl["sni"], None if spec["sni"] == "none" else spec["sni"])
        if "ehlo" in spec:
            check(case, i, "ehlo", sm["ehlo"], None if spec["ehlo"] == "none" else spec["ehlo"])
        if "banner" in spec:
            check(case, i, "banner_host", sm["banner_host"], None if spec["banner"] == "none" else spec["banner"])
        if "implicit" in spec:
            check(case, i, "implicit_tls", sm["implicit_tls"], tri(spec["implicit"]))
        if "offered" in spec:
            check(case, i, "starttls_offered", sm["starttls_offered"], tri(spec["offered"]))
        if "starttls_code" in spec:
            want = None if spec["starttls_code"] == "none" else int(spec["starttls_code"])
            check(case, i, "starttls_reply_code", sm["starttls_reply_code"], want)
        if "certreq" in spec:
            check(case, i, "cert_requested", tl["cert_requested"], tri(spec["certreq"]))
        if "clientcert" in spec:
            check(case, i, "client_cert_presented", tl["client_cert_presented"], tri(spec["clientcert"]))
        if "emptycert" in spec:
            check(case, i, "empty client Certificate message", s["_client_cert_msg"], [])
        if "alert" in spec:
            check(case, i, "alert", tl["alert"], None if spec["alert"] == "none" else spec["alert"])
        if "outcome" in spec:
            check(case, i, "outcome", s["outcome"], spec["outcome"])
        if "direction" in spec:
            check(case, i, "direction", s["direction"], spec["direction"])
        if "resumed" in spec:
            check(case, i, "resumed", tl["resumed"], tri(spec["resumed"]))
        for d in s["_ders"]:
            all_ders[hashlib.sha256(d).hexdigest()] = d
    carry_resumption(sessions)
    for s in sessions:
        for k in [k for k in s if k.startswith("_")]:
            del s[k]
    certs = [cert_record(all_ders[h]) for h in sorted(all_ders)]
    out = {
        "capture": case,
        "description": a.desc,
        "args": a.arg,
        "sessions": sessions,
        "certificates": certs,
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
