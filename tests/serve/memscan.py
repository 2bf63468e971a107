"""memscan.py PID HEX_FILE: print "found" when the bytes written in HEX_FILE
(their first 32, as written or reversed: a key's modulus big-endian as in DER,
or as the little-endian 64-bit limbs OpenSSL keeps a BIGNUM in) are in the
readable memory of PID, else "absent"."""
import re
import sys

pid, hexfile = sys.argv[1], sys.argv[2]
modulus = bytes.fromhex(open(hexfile).read().strip())
needles = [modulus[:32], modulus[::-1][:32]]
found = False
with open("/proc/%s/maps" % pid) as maps, open("/proc/%s/mem" % pid, "rb", 0) as mem:
    for line in maps:
        m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+)", line)
        start, end, perms = int(m.group(1), 16), int(m.group(2), 16), m.group(3)
        if perms[0] != "r" or "[vvar]" in line or "[vsyscall]" in line:
            continue
        # Reserved regions of terabytes (a sanitizer's shadow memory) hold no
        # key: skip them. Read the rest in pieces that overlap by a needle.
        if end - start > 1 << 32:
            continue
        pos, tail = start, b""
        while pos < end and not found:
            try:
                mem.seek(pos)
                chunk = mem.read(min(end - pos, 1 << 24))
            except (OSError, ValueError, OverflowError):
                break
            if not chunk:
                break
            data = tail + chunk
            found = any(n in data for n in needles)
            tail = data[-32:]
            pos += len(chunk)
        if found:
            break
print("found" if found else "absent")
