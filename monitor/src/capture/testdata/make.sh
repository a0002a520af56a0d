#!/bin/sh
# Regenerates the capture fixtures of capture/file.rs and capture/decode.rs from two captures
# in shared/pcaps-external (third-party captures, see shared/pcaps-external/MANIFEST.md), with
# Wireshark's own tools so the files are written by real software, then prints the tshark
# ground truth that the tests hard-code. Run from this directory; needs editcap, mergecap,
# tshark (apt-get install tshark). Made with Wireshark 4.0.17.
set -eu
EXT=${EXT:-../../../../../shared/pcaps-external}

# pcapng with two interfaces of different link types (Ethernet, BSD NULL), packets interleaved
# by time, nanosecond if_tsresol as mergecap writes it.
mergecap -F pcapng -w merged-ether-null.pcapng \
    "$EXT/zeek__smtp-starttls.pcap" "$EXT/arkime__ssl-selfsign.pcap"
# Classic pcap with the nanosecond magic (a1b23c4d).
editcap -F nsecpcap "$EXT/zeek__smtp-starttls.pcap" smtp-starttls.nsec.pcap
# Snaplen 80: TCP payloads cut short, the decoder must flag them truncated.
editcap -s 80 "$EXT/zeek__smtp-starttls.pcap" smtp-starttls.snap80.pcap

for f in merged-ether-null.pcapng smtp-starttls.nsec.pcap smtp-starttls.snap80.pcap; do
    echo "== $f"
    echo "frames:        $(tshark -r "$f" 2>/dev/null | wc -l)"
    echo "tcp frames:    $(tshark -r "$f" -Y tcp 2>/dev/null | wc -l)"
    echo "cut frames:    $(tshark -r "$f" -Y 'tcp && frame.cap_len < frame.len' 2>/dev/null | wc -l)"
    echo "captured bytes $(tshark -r "$f" -T fields -e frame.cap_len 2>/dev/null | awk '{s+=$1} END {print s}')"
    echo "first/last ts  $(tshark -r "$f" -T fields -e frame.time_epoch 2>/dev/null | sed -n '1p;$p' | tr '\n' ' ')"
done
