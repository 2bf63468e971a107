"""memscan.py PID MODULUS_HEX: print "found" when the key's modulus (its
first 32 bytes, big-endian as in DER, or as little-endian 64-bit limbs as
OpenSSL keeps a BIGNUM) is in the readable memory of PID, else "absent"."""
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
        try:
            mem.seek(start)
            chunk = mem.read(end - start)
        except (OSError, ValueError, OverflowError):
            continue
        if any(n in chunk for n in needles):
            found = True
            break
print("found" if found else "absent")
