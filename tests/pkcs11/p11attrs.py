#!/usr/bin/env python3
"""Print the protection attributes of the private and public keys labelled
LABEL, talking to the PKCS#11 module directly through ctypes.

    p11attrs.py MODULE INIT_ARGS TOKEN_LABEL LABEL [PIN]
    p11attrs.py --set-false MODULE INIT_ARGS TOKEN_LABEL LABEL PIN ATTRIBUTE

The second form sets a boolean attribute (e.g. CKA_EXTRACTABLE) of the
private key to false, as a token's own tools would, and prints nothing.

It exists for NSS softokn, which needs C_Initialize init args that
pkcs11-tool cannot pass; it shares no code with flowvault. Output, one line
per object: "private sensitive=1 always_sensitive=1 extractable=0 ...
modulus=HEX exponent=HEX"."""
import ctypes as C
import sys

CK_ULONG = C.c_ulong
CKA = {"class": 0x0, "token": 0x1, "private": 0x2, "label": 0x3,
       "sensitive": 0x103, "decrypt": 0x105, "unwrap": 0x107, "sign": 0x108,
       "extractable": 0x162, "local": 0x163, "never_extractable": 0x164,
       "always_sensitive": 0x165, "encrypt": 0x104}
CKO_PUBLIC_KEY, CKO_PRIVATE_KEY = 2, 3


class InitArgs(C.Structure):
    _fields_ = [("create", C.c_void_p), ("destroy", C.c_void_p),
                ("lock", C.c_void_p), ("unlock", C.c_void_p),
                ("flags", CK_ULONG), ("reserved", C.c_char_p)]


class Attribute(C.Structure):
    _fields_ = [("type", CK_ULONG), ("value", C.c_void_p), ("len", CK_ULONG)]


# Index of each function in CK_FUNCTION_LIST (PKCS#11 2.40 order).
FN = {"C_Initialize": 0, "C_Finalize": 1, "C_GetSlotList": 4,
      "C_GetTokenInfo": 6, "C_OpenSession": 12, "C_CloseSession": 13,
      "C_Login": 18, "C_GetAttributeValue": 24, "C_SetAttributeValue": 25,
      "C_FindObjectsInit": 26,
      "C_FindObjects": 27, "C_FindObjectsFinal": 28}


def main():
    argv = sys.argv[1:]
    set_false = None
    if argv and argv[0] == "--set-false":
        set_false = argv[6].lower().replace("cka_", "")
        argv = argv[1:6]
    module, init_args, token, label = argv[0:4]
    pin = argv[4].encode() if len(argv) > 4 else None
    lib = C.CDLL(module)
    fl = C.POINTER(C.c_void_p)()
    lib.C_GetFunctionList(C.byref(fl))
    # Skip the CK_VERSION at the start of the list (padded to a pointer).
    table = C.cast(fl, C.POINTER(C.c_void_p))

    def fn(name):
        def call(*args):
            proto = C.CFUNCTYPE(CK_ULONG, *([C.c_void_p] * len(args)))
            return proto(table[1 + FN[name]])(*args)
        return call

    def check(rv, what):
        if rv != 0:
            sys.exit(f"{what} failed: 0x{rv:x}")

    args = InitArgs(None, None, None, None, 0x2, init_args.encode() or None)
    check(fn("C_Initialize")(C.addressof(args)), "C_Initialize")
    n = CK_ULONG(32)
    slots = (CK_ULONG * 32)()
    check(fn("C_GetSlotList")(1, C.addressof(slots), C.addressof(n)), "C_GetSlotList")
    slot = None
    for i in range(n.value):
        info = (C.c_ubyte * 512)()
        if fn("C_GetTokenInfo")(slots[i], C.addressof(info)) == 0:
            if bytes(info[:32]).decode().rstrip() == token:
                slot = slots[i]
    if slot is None:
        sys.exit(f"no token '{token}'")
    session = CK_ULONG()
    flags = 0x6 if set_false is not None else 0x4  # CKF_SERIAL_SESSION (| CKF_RW_SESSION)
    check(fn("C_OpenSession")(slot, flags, None, None, C.addressof(session)), "C_OpenSession")
    if pin is not None:
        rv = fn("C_Login")(session.value, 1, C.cast(C.c_char_p(pin), C.c_void_p), len(pin))
        if rv not in (0, 0x100):
            sys.exit(f"C_Login failed: 0x{rv:x}")
    for cls, name in ((CKO_PRIVATE_KEY, "private"), (CKO_PUBLIC_KEY, "public")):
        c = CK_ULONG(cls)
        lab = C.create_string_buffer(label.encode(), len(label))
        tmpl = (Attribute * 2)(Attribute(CKA["class"], C.addressof(c), C.sizeof(c)),
                               Attribute(CKA["label"], C.addressof(lab), len(label)))
        check(fn("C_FindObjectsInit")(session.value, C.addressof(tmpl), 2), "C_FindObjectsInit")
        objs = (CK_ULONG * 4)()
        count = CK_ULONG()
        check(fn("C_FindObjects")(session.value, C.addressof(objs), 4, C.addressof(count)), "C_FindObjects")
        fn("C_FindObjectsFinal")(session.value)
        if set_false is not None:
            if name == "private":
                if count.value != 1:
                    sys.exit(f"{count.value} private keys labelled '{label}'")
                v = C.c_ubyte(0)
                a = Attribute(CKA[set_false], C.addressof(v), 1)
                check(fn("C_SetAttributeValue")(session.value, objs[0], C.addressof(a), 1),
                      "C_SetAttributeValue")
            continue
        for k in range(count.value):
            fields = []
            for attr in ("token", "private", "sensitive", "always_sensitive",
                         "extractable", "never_extractable", "local", "decrypt",
                         "sign", "unwrap", "encrypt"):
                v = C.c_ubyte(0xff)
                a = Attribute(CKA[attr], C.addressof(v), 1)
                rv = fn("C_GetAttributeValue")(session.value, objs[k], C.addressof(a), 1)
                fields.append(f"{attr}={v.value if rv == 0 else '-'}")
            for attr, t in (("modulus", 0x120), ("exponent", 0x122)):
                a = Attribute(t, None, 0)
                if fn("C_GetAttributeValue")(session.value, objs[k], C.addressof(a), 1) == 0:
                    buf = (C.c_ubyte * a.len)()
                    a.value = C.addressof(buf)
                    fn("C_GetAttributeValue")(session.value, objs[k], C.addressof(a), 1)
                    fields.append(f"{attr}={bytes(buf).hex().upper().lstrip('0')}")
            print(name, " ".join(fields))
    fn("C_CloseSession")(session.value)
    fn("C_Finalize")(None)


main()
