#!/usr/bin/env python3
"""Read a capture of tpm2-tss's pcap TCTI (pcapng, one TCP segment per TPM
command or response) and answer questions about the command stream.

  tpm_trace.py FILE count CC          commands with command code CC (hex)
                                      that the TPM answered with success
  tpm_trace.py FILE contains HEXBYTES 1 if the bytes occur in any command
                                      or response, else 0
  tpm_trace.py FILE response CC HEXBYTES
                                      1 if they occur in a response to CC
"""
import struct
import sys

EPB = 6  # pcapng Enhanced Packet Block


def payloads(path):
    """TPM commands and responses in capture order."""
    data = open(path, "rb").read()
    out, i = [], 0
    order = "<"
    while i + 12 <= len(data):
        btype = struct.unpack_from(order + "I", data, i)[0]
        if btype == 0x0A0D0D0A:  # section header: byte order magic follows
            order = "<" if data[i + 8:i + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        blen = struct.unpack_from(order + "I", data, i + 4)[0]
        if blen < 12 or i + blen > len(data):
            raise SystemExit("%s: truncated pcapng block at %d" % (path, i))
        if btype == EPB:
            caplen = struct.unpack_from(order + "I", data, i + 20)[0]
            pkt = data[i + 28:i + 28 + caplen]
            ihl = (pkt[0] & 0x0F) * 4         # IPv4 header
            tcp = (pkt[ihl + 12] >> 4) * 4    # TCP header
            if len(pkt) > ihl + tcp:
                out.append(pkt[ihl + tcp:])
        i += blen
    return out


def exchanges(path):
    """(command code, command, response) for each TPM command."""
    p = payloads(path)
    res = []
    for k in range(0, len(p) - 1, 2):
        cmd, rsp = p[k], p[k + 1]
        res.append((struct.unpack(">I", cmd[6:10])[0], cmd, rsp))
    return res


def main():
    path, what = sys.argv[1], sys.argv[2]
    ex = exchanges(path)
    if what == "count":
        cc = int(sys.argv[3], 16)
        print(sum(1 for c, _, r in ex if c == cc and r[6:10] == b"\0\0\0\0"))
    elif what == "contains":
        needle = bytes.fromhex(sys.argv[3])
        print(int(any(needle in c or needle in r for _, c, r in ex)))
    elif what == "response":
        cc, needle = int(sys.argv[3], 16), bytes.fromhex(sys.argv[4])
        print(int(any(needle in r for c, _, r in ex if c == cc)))
    else:
        raise SystemExit("tpm_trace.py: unknown question " + what)


if __name__ == "__main__":
    main()
