/*
 * One configured key as `keys` and `doctor` report it: whether it opens,
 * whether its require_non_extractable setting refuses it, its fingerprint and
 * the structured facts its plugin gives (cli/keyreport.c).
 */
#ifndef FLOWVAULT_CLI_KEYREPORT_H
#define FLOWVAULT_CLI_KEYREPORT_H

#include <flowvault/flowvault.h>

struct json_object;

enum cli_key_state {
	CLI_KEY_OK = 0,        /* opens, and the policy allows it */
	CLI_KEY_REFUSED,       /* opens, but require_non_extractable refuses it */
	CLI_KEY_UNREACHABLE    /* does not open: see status and message */
};

struct cli_key_report {
	const char *name;
	int state;                     /* enum cli_key_state */
	int status;                    /* fv_status of the failure or refusal */
	char message[1024];            /* why it is refused or unreachable */
	char fingerprint[FV_FINGERPRINT_HEX_SIZE];
	fv_key *key;                   /* open unless unreachable; for inspection only
	                                  when refused */
	const fv_key_details *details; /* NULL when unreachable */
};

/* Open key `name` for inspection and fill `r` (never fails: the report says
 * what happened). Free with cli_key_report_clear. */
void cli_key_report_open(struct cli_key_report *r, fv_context *ctx, const char *name);
void cli_key_report_clear(struct cli_key_report *r);
/* "ok", "refused", "unreachable". */
const char *cli_key_state_name(int state);

/* The report's structured members (state, fingerprint_sha256, oaep, backend,
 * location, remote_id, bits, properties, warnings, require_non_extractable,
 * info, error) added to `o`. */
void cli_key_report_json(struct json_object *o, const struct cli_key_report *r);
/* One warning as {"property", "message", "refused"}. */
struct json_object *cli_key_warning_json(const fv_key_warning *w);
/* "backend file, /etc/flowvault/flows.pem, 2048 bits, OAEP in host" or ""
 * when the plugin says nothing structured. */
void cli_key_summary(char *buf, size_t len, const fv_key_details *d);

#endif
