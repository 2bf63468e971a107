#!/usr/bin/env python3
"""Check a JSON document against the member list flowvault(1) gives for it.

usage: json_shape.py MANPAGE NAME < document

The page's JSON OUTPUT section lists each document as
    .TP / .B NAME / .nf / {"a", "b"?: {...}, "c": [{"d"}]} / .fi
where every member is present unless marked ?, {...} is an object whose
members vary, and a member's value may be described as an object or an
array of objects. The document must have every member that is not optional,
and no member the page does not name.
"""
import json
import re
import sys

FREE = "free"


def parse(text):
    tokens = re.findall(r'"[^"]*"|\{\.\.\.\}|[{}\[\]:,?]', text)
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take(expected=None):
        nonlocal pos
        tok = tokens[pos]
        if expected and tok != expected:
            raise ValueError("expected %s at token %d (%s) of %s" % (expected, pos, tok, text))
        pos += 1
        return tok

    def value():
        if peek() == "{...}":
            take()
            return FREE
        if peek() == "[":
            take("[")
            inner = value()
            take("]")
            return ("array", inner)
        return obj()

    def obj():
        take("{")
        members = {}
        while peek() != "}":
            name = take().strip('"')
            optional = False
            sub = None
            if peek() == "?":
                take()
                optional = True
            if peek() == ":":
                take()
                sub = value()
            members[name] = (optional, sub)
            if peek() == ",":
                take()
        take("}")
        return members

    shape = value()
    if pos != len(tokens):
        raise ValueError("trailing text in " + text)
    return shape


def check(shape, doc, path, problems):
    if shape == FREE:
        if not isinstance(doc, dict):
            problems.append("%s: expected an object" % (path or "document"))
        return
    if isinstance(shape, tuple):
        if not isinstance(doc, list):
            problems.append("%s: expected an array" % path)
            return
        for i, item in enumerate(doc):
            check(shape[1], item, "%s[%d]" % (path, i), problems)
        return
    if not isinstance(doc, dict):
        problems.append("%s: expected an object, got %r" % (path or "document", doc))
        return
    for name in doc:
        if name not in shape:
            problems.append("%s: member not in flowvault(1)" % (path + "." + name).lstrip("."))
    for name, (optional, sub) in shape.items():
        where = (path + "." + name).lstrip(".")
        if name not in doc:
            if not optional:
                problems.append("%s: documented member missing" % where)
            continue
        if sub is not None and doc[name] is not None:
            check(sub, doc[name], where, problems)


def shapes_from_page(page):
    text = open(page).read().replace("\\-", "-")
    section = text.split(".SH JSON OUTPUT", 1)[1].split("\n.SH ", 1)[0]
    found = {}
    # The body is the lines up to .fi.
    for m in re.finditer(r"^\.TP\n\.B ([^\n]+)\n\.nf\n(.*?)\n\.fi$", section, re.S | re.M):
        found[m.group(1).strip()] = " ".join(m.group(2).split("\n"))
    return found


def main():
    page, name = sys.argv[1], sys.argv[2]
    shapes = shapes_from_page(page)
    if name not in shapes:
        sys.exit("flowvault(1) documents no JSON for '%s' (it has: %s)" % (name, ", ".join(shapes)))
    doc = json.loads(sys.stdin.read())
    problems = []
    check(parse(shapes[name]), doc, "", problems)
    if problems:
        sys.exit("'%s' differs from flowvault(1):\n  %s" % (name, "\n  ".join(problems)))


main()
