#!/usr/bin/env python3
"""Generate config/flowvault.schema.json from the field tables the parser uses.

usage: config/gen-schema.py [SOURCE_DIR] > config/flowvault.schema.json

The field names come from the C sources: top_level_fields and
host_key_fields (core/config.c), graph_fields (core/graph.c), serve_fields
(core/serve_config.c), media_fields (core/serve/media.c) and each plugin's
fv_config_field table (plugins/*/*.c: name, type, flags, help). Types and descriptions of the
host's own fields are below; a field the sources have and this file does not
describe stops the generator, so the schema cannot fall behind the parser.
tests/cli/schema.sh regenerates the schema and compares.
"""
import json
import os
import re
import sys

SECRET = {
    "type": "string",
    "pattern": "^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+|prompt)$",
    "description": "a secret reference: env:NAME, file:PATH or prompt (never the secret itself)",
}
GRAPH_ID = {"type": "string", "pattern": "^[0-9]+$"}

HOST = {
    "top": {
        "plugin_path": {"type": "array", "items": {"type": "string"},
                        "description": "directories searched for plugins first"},
        "keys": None,   # built below
        "graph": None,
        "serve": None,
    },
    "key": {
        "provider": {"type": "string", "description": "the plugin holding the key"},
        "phone_numbers": {"type": "array", "items": GRAPH_ID,
                          "description": "phone-number ids the key is registered on"},
        "waba_id": dict(GRAPH_ID, description="a WhatsApp Business Account: all its numbers"),
        "require_non_extractable": {
            "type": "boolean",
            "description": "refuse a key that can leave its store (default true)"},
    },
    "graph": {
        "base_url": {"type": "string", "description": "Graph API root (https)"},
        "api_version": {"type": "string", "pattern": "^v[0-9]+\\.[0-9]+$"},
        "access_token": dict(SECRET, description="secret reference to a system-user token"),
        "ca_file": {"type": "string", "description": "extra CA certificates (PEM)"},
        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
        "connect_timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
        "max_retries": {"type": "integer", "minimum": 0},
        "max_in_flight": {"type": "integer", "minimum": 1},
        "max_wait_seconds": {"type": "number", "minimum": 0},
        "retry_base_ms": {"type": "integer", "minimum": 1},
    },
    "serve": {
        "listen": {"type": "string", "description": "HOST:PORT of the Flows endpoint"},
        "admin_listen": {"type": "string",
                         "description": "HOST:PORT for /metrics and /healthz, or \"off\""},
        "cert": {"type": "string", "description": "TLS certificate (PEM)"},
        "key": {"type": "string", "description": "TLS private key (PEM)"},
        "path": {"type": "string", "description": "the endpoint's URL path"},
        "keys": {"type": "array", "items": {"type": "string"},
                 "description": "keys tried in order on each request"},
        "app_secrets": {"type": "array", "items": SECRET, "maxItems": 2,
                        "description": "Meta app secrets for X-Hub-Signature-256"},
        "allow_unsigned": {"type": "boolean",
                           "description": "serve requests without a signature check (unsafe)"},
        "upstream": {"type": "string", "description": "URL clear requests are POSTed to"},
        "upstream_timeout_ms": {"type": "integer", "minimum": 1},
        "max_body_bytes": {"type": "integer", "minimum": 1},
        "max_connections": {"type": "integer", "minimum": 1},
        "request_timeout_s": {"type": "integer", "minimum": 1},
        "threads": {"type": "integer", "minimum": 1},
        "isolation": {"enum": ["separated", "none"],
                      "description": "a key process apart from the HTTP workers (default)"},
        "workers": {"type": "integer", "minimum": 1, "maximum": 64},
        "user": {"type": "string", "description": "the user the HTTP workers run as"},
        "pid_file": {"type": "string"},
        "log_format": {"enum": ["text", "json"]},
        "admin_token": {"type": "string", "pattern": "^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$",
                        "description": "Bearer token every admin request needs (env: or file:)"},
        "admin_cert": {"type": "string", "description": "TLS certificate of the admin listener (PEM)"},
        "admin_key": {"type": "string", "description": "TLS private key of the admin listener (PEM)"},
        "admin_insecure": {"type": "boolean",
                           "description": "allow a non-loopback admin_listen without TLS and token (unsafe)"},
        "nodes": {"type": "array", "maxItems": 64,
                  "items": {"type": "string", "pattern": "^https?://"},
                  "description": "admin URLs of every node serving Flows, asked by rotate and doctor"},
        "nodes_ca": {"type": "string", "description": "CA file verifying the nodes (default: the system's)"},
        "media": None,  # built below
    },
    "media": {
        "allowed_hosts": {"type": "array", "minItems": 1, "maxItems": 32,
                          "items": {"type": "string", "pattern": "^[A-Za-z0-9.-]+$"},
                          "description": "CDN hosts files may come from (\".domain\": its "
                                         "subdomains); default the WhatsApp CDN"},
        "max_file_bytes": {"type": "integer", "minimum": 26, "maximum": 1073741824},
        "max_total_bytes": {"type": "integer", "minimum": 26, "maximum": 4294967296},
        "timeout_ms": {"type": "integer", "minimum": 100, "maximum": 9500,
                       "description": "all downloads of a request; with upstream_timeout_ms "
                                      "at most 9500"},
        "ca_file": {"type": "string", "description": "CA bundle for the CDN (PEM)"},
    },
}

FIELD_TYPES = {
    "FV_FIELD_STRING": {"type": "string"},
    "FV_FIELD_INT": {"type": "integer"},
    "FV_FIELD_BOOL": {"type": "boolean"},
    "FV_FIELD_STRING_ARRAY": {"type": "array", "items": {"type": "string"}},
    "FV_FIELD_SECRET": SECRET,
}


def c_list(src, path, name):
    text = open(os.path.join(src, path)).read()
    m = re.search(r"%s\[\] = \{(.*?)\};" % re.escape(name), text, re.S)
    if not m:
        sys.exit("%s: no list %s" % (path, name))
    return re.findall(r'"([a-z_]+)"', m.group(1))


def c_string(expr, names):
    """The value of adjacent C string literals and #define'd string names."""
    out = ""
    for lit, name in re.findall(r'"((?:[^"\\]|\\.)*)"|([A-Z_][A-Z0-9_]*)', expr):
        out += names.get(name, "") if name else bytes(lit, "utf-8").decode("unicode_escape")
    return out


def field_macros(root):
    """Field-table macros of headers shared by plugins (CLOUD_HTTP_CONFIG_FIELDS)."""
    macros = {}
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(".h"):
                text = open(os.path.join(d, f)).read()
                for m in re.finditer(r"#define (\w+_FIELDS)[ \t]*\\\n((?:.*\\\n)*.*)", text):
                    macros[m.group(1)] = m.group(2).replace("\\\n", "\n")
    return macros


def plugin_fields(src):
    plugins = {}
    root = os.path.join(src, "plugins")
    macros = field_macros(root)
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        if not os.path.isdir(d):
            continue
        text = "".join(open(os.path.join(d, f)).read() for f in sorted(os.listdir(d))
                       if f.endswith(".c"))
        for macro, body in macros.items():
            text = re.sub(r"\b%s\b" % macro, lambda _: body, text)
        headers = "".join(open(os.path.join(d, f)).read() for f in sorted(os.listdir(d))
                          if f.endswith(".h"))
        names = dict(re.findall(r'#define ([A-Z_][A-Z0-9_]*)[ \t]+"([^"\n]*)"', text + headers))
        fields = []
        for m in re.finditer(r'\{\s*"([a-z_]+)",\s*(FV_FIELD_[A-Z_]+),\s*([^,]*?),\s*'
                             r'((?:"(?:[^"\\]|\\.)*"\s*|[A-Z_][A-Z0-9_]*\s*)+)\}', text):
            fields.append((m.group(1), m.group(2), m.group(3), c_string(m.group(4), names)))
        if fields:
            plugins[name] = fields
    return plugins


def described(section, names):
    props = {}
    for n in names:
        if n not in HOST[section]:
            sys.exit("%s field '%s' is in the parser but not described in "
                     "config/gen-schema.py: add its type there" % (section, n))
        props[n] = HOST[section][n]
    return props


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    top = c_list(src, "core/config.c", "top_level_fields")
    host_key = c_list(src, "core/config.c", "host_key_fields")
    graph = c_list(src, "core/graph.c", "graph_fields")
    serve = c_list(src, "core/serve_config.c", "serve_fields")
    HOST["serve"]["media"] = {
        "type": "object", "additionalProperties": False,
        "description": "verify and decrypt media uploads for the upstream (docs/media.md)",
        "properties": described("media", c_list(src, "core/serve/media.c", "media_fields"))}
    key_props = described("key", host_key)

    branches = []
    for plugin, fields in plugin_fields(src).items():
        props = {n: {"$ref": "#/$defs/key/properties/" + n} for n in host_key}
        props["provider"] = {"const": plugin}
        required = ["provider"]
        for name, ftype, flags, help_text in fields:
            props[name] = dict(FIELD_TYPES[ftype], description=help_text)
            if "FV_FIELD_REQUIRED" in flags:
                required.append(name)
        branches.append({
            "if": {"properties": {"provider": {"const": plugin}}, "required": ["provider"]},
            "then": {"properties": props, "required": required, "additionalProperties": False},
        })

    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://flowvault.invalid/flowvault.schema.json",
        "title": "flowvault configuration",
        "description": "flowvault.json(5). Generated by config/gen-schema.py from the "
                       "parser's field tables; do not edit by hand.",
        "type": "object",
        "additionalProperties": False,
        "properties": {},
        "$defs": {
            "key": {
                "type": "object",
                "required": ["provider"],
                "properties": key_props,
                "allOf": branches,
            },
        },
    }
    for n in top:
        if n == "keys":
            schema["properties"][n] = {
                "type": "object",
                "description": "the keys, by name",
                "propertyNames": {"pattern": "^[A-Za-z0-9._-]{1,64}$"},
                "additionalProperties": {"$ref": "#/$defs/key"},
            }
        elif n == "graph":
            schema["properties"][n] = {"type": "object", "additionalProperties": False,
                                       "description": "the Graph API client",
                                       "properties": described("graph", graph)}
        elif n == "serve":
            schema["properties"][n] = {"type": "object", "additionalProperties": False,
                                       "description": "the Flows endpoint (flowvault serve)",
                                       "properties": described("serve", serve)}
        else:
            schema["properties"][n] = described("top", [n])[n]
    json.dump(schema, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


main()
