# A tiny STARTTLS client on Python's ssl module (OpenSSL) that abandons the TLS handshake after
# the server's first flight: with FIN (mode close), with RST (mode reset), or holds the
# connection open, prints "ready" and waits for stdin to close (mode hold).
#   python3 abandon.py HOST PORT close|reset|hold [EHLO-NAME]
# Used by pcaps/make.sh (fixtures) and the live-capture system tests.
import socket, ssl, struct, sys, time
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((host, port), timeout=10)
f = s.makefile("rb")
def reply():
    while True:
        line = f.readline()
        if not line or line[3:4] != b"-":
            return line
reply()
ehlo = sys.argv[4] if len(sys.argv) > 4 else "abandon.client.example"
s.sendall(b"EHLO " + ehlo.encode() + b"\r\n"); reply()
s.sendall(b"STARTTLS\r\n")
if not reply().startswith(b"220"):
    sys.exit(1)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(inc, out, server_hostname="mx.test.example")
try:
    obj.do_handshake()
except ssl.SSLWantReadError:
    pass
s.sendall(out.read())                     # ClientHello
buf = b""
deadline = time.time() + 10
while time.time() < deadline:             # read the server's flight up to ServerHelloDone
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
    # walk complete records; stop when a handshake record ends with ServerHelloDone (type 14)
    i, seen_done = 0, False
    while i + 5 <= len(buf):
        ln = struct.unpack(">H", buf[i + 3:i + 5])[0]
        if i + 5 + ln > len(buf):
            break
        if buf[i] == 22 and buf[i + 5 + ln - 4:i + 5 + ln] == b"\x0e\x00\x00\x00":
            seen_done = True
        i += 5 + ln
    if seen_done and i == len(buf):
        break
time.sleep(0.05)
if mode == "hold":
    # keep the connection open mid-handshake until stdin closes (live-capture tests)
    print("ready", flush=True)
    sys.stdin.read()
elif mode == "reset":
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
else:
    s.shutdown(socket.SHUT_WR)
    s.settimeout(5)
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass
    s.close()
