#!/usr/bin/env python3
"""The AWS credential endpoints of the SDKs' default chain, on loopback.

- STS AssumeRoleWithWebIdentity (AWS STS API Reference; Query protocol:
  form-encoded POST, XML answer, ErrorResponse on failure). Run with --cert
  for HTTPS, as STS is.
- The container credentials endpoint (ECS task role / EKS Pod Identity):
  GET with the Authorization token, JSON answer.
- IMDSv2 (EC2 User Guide, "Use IMDSv2"): PUT /latest/api/token with
  X-aws-ec2-metadata-token-ttl-seconds, then GETs with
  X-aws-ec2-metadata-token; a request without the token gets 401.

Credentials handed out are the identities named "webid", "container" and
"imds" in the identities file, which aws_kms_sim.py also accepts.
Checked against botocore's own credential providers (vendor_boto3.py).

Usage: aws_creds_sim.py --port P --identities FILE [--cert C --key K]
           [--web-identity-token T] [--container-token T] [--lifetime S]
"""
import argparse
import datetime
import hmac
import json
import secrets
import threading
import urllib.parse
import uuid
from xml.sax.saxutils import escape

import simlib

STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
ROLE_NAME = "flows-role"


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class CredsHandler(simlib.Handler):
    def expiration(self):
        return iso(datetime.datetime.utcnow() + datetime.timedelta(seconds=self.server.lifetime))

    def sts_error(self, status, code, message):
        body = ('<ErrorResponse xmlns="%s"><Error><Type>Sender</Type><Code>%s</Code>'
                '<Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>'
                % (STS_NS, code, escape(message), uuid.uuid4()))
        self.send(status, body, "text/xml")

    def do_POST(self):
        if self.handle_sim():
            return
        body = self.read_body()
        if self.path != "/":
            return self.sts_error(404, "InvalidAction", "Could not find operation")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return self.sts_error(400, "InvalidAction", "Could not find operation")
        form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True, strict_parsing=False)
        form = {k: v[0] for k, v in form.items()}
        if form.get("Action") != "AssumeRoleWithWebIdentity" or form.get("Version") != "2011-06-15":
            return self.sts_error(400, "InvalidAction",
                                  "Could not find operation %s for version %s"
                                  % (form.get("Action"), form.get("Version")))
        allowed = {"Action", "Version", "RoleArn", "RoleSessionName", "WebIdentityToken",
                   "ProviderId", "PolicyArns", "Policy", "DurationSeconds"}
        unknown = [k for k in form if k not in allowed and not k.startswith("PolicyArns.")]
        if unknown:
            return self.sts_error(400, "InvalidParameterValue", "Unknown parameter %s" % unknown[0])
        for name in ("RoleArn", "RoleSessionName", "WebIdentityToken"):
            if not form.get(name):
                return self.sts_error(400, "MissingParameter",
                                      "The request must contain the parameter %s" % name)
        self.server.faults.count("AssumeRoleWithWebIdentity")
        if not hmac.compare_digest(form["WebIdentityToken"], self.server.web_identity_token):
            return self.sts_error(400, "InvalidIdentityToken",
                                  "Couldn't retrieve verification key from your identity provider")
        ident = self.server.ids["webid"]
        role = form["RoleArn"]
        session = form["RoleSessionName"]
        body = ('<AssumeRoleWithWebIdentityResponse xmlns="%s"><AssumeRoleWithWebIdentityResult>'
                '<SubjectFromWebIdentityToken>system:serviceaccount:flows:flowvault</SubjectFromWebIdentityToken>'
                '<Audience>sts.amazonaws.com</Audience>'
                '<AssumedRoleUser><Arn>%s</Arn><AssumedRoleId>AROAEXAMPLE:%s</AssumedRoleId></AssumedRoleUser>'
                '<Credentials><SessionToken>%s</SessionToken><SecretAccessKey>%s</SecretAccessKey>'
                '<Expiration>%s</Expiration><AccessKeyId>%s</AccessKeyId></Credentials>'
                '<Provider>oidc.test</Provider></AssumeRoleWithWebIdentityResult>'
                '<ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata>'
                '</AssumeRoleWithWebIdentityResponse>'
                % (STS_NS,
                   escape(role.replace(":iam::", ":sts::").replace(":role/", ":assumed-role/") + "/" + session),
                   escape(session), escape(ident["token"]), escape(ident["secret_key"]),
                   self.expiration(), escape(ident["access_key"]), uuid.uuid4()))
        self.send(200, body, "text/xml")

    def imds_token_ok(self):
        tok = self.headers.get("X-aws-ec2-metadata-token")
        with self.server.lock:
            return tok is not None and tok in self.server.imds_tokens

    def do_PUT(self):
        self.read_body()
        if self.path != "/latest/api/token":
            return self.send(404, "Not Found", "text/plain")
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return self.send(400, "Bad Request", "text/plain")
        self.server.faults.count("imds-token")
        tok = secrets.token_urlsafe(32)
        with self.server.lock:
            self.server.imds_tokens.add(tok)
        self.send(200, tok, "text/plain", {"X-aws-ec2-metadata-token-ttl-seconds": ttl})

    def do_GET(self):
        if self.handle_sim():
            return
        self.read_body()
        if self.path == "/container/creds":
            self.server.faults.count("container")
            if self.headers.get("Authorization") != self.server.container_token:
                return self.send(401, {"code": "AccessDenied",
                                       "message": "Authorization token is missing or invalid"})
            ident = self.server.ids["container"]
            return self.send(200, {"AccessKeyId": ident["access_key"],
                                   "SecretAccessKey": ident["secret_key"],
                                   "Token": ident["token"], "Expiration": self.expiration(),
                                   "RoleArn": "arn:aws:iam::111122223333:role/flows"})
        if self.path.startswith("/latest/meta-data/"):
            if not self.imds_token_ok():
                return self.send(401, "", "text/plain")
            if self.path == "/latest/meta-data/iam/security-credentials/":
                self.server.faults.count("imds-role")
                return self.send(200, ROLE_NAME, "text/plain")
            if self.path == "/latest/meta-data/iam/security-credentials/" + ROLE_NAME:
                self.server.faults.count("imds-creds")
                ident = self.server.ids["imds"]
                now = datetime.datetime.utcnow()
                return self.send(200, {"Code": "Success", "LastUpdated": iso(now),
                                       "Type": "AWS-HMAC", "AccessKeyId": ident["access_key"],
                                       "SecretAccessKey": ident["secret_key"],
                                       "Token": ident["token"], "Expiration": self.expiration()},
                                 "text/plain")
        return self.send(404, "Not Found", "text/plain")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--identities", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--web-identity-token", default="eyJ.test-web-identity-token.sig")
    ap.add_argument("--container-token", default="container-auth-token-0006")
    ap.add_argument("--lifetime", type=int, default=3600)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    ids = {i["name"]: i for i in json.load(open(a.identities))}

    def setup(srv):
        srv.ids = ids
        srv.web_identity_token = a.web_identity_token
        srv.container_token = a.container_token
        srv.lifetime = a.lifetime
        srv.imds_tokens = set()
        srv.lock = threading.Lock()

    simlib.serve(CredsHandler, a.port, a.cert, a.key, a.verbose, setup)


if __name__ == "__main__":
    main()
