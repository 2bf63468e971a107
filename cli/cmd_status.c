/* flowvault status KEY: is KEY's public key registered, the same, and VALID? */
#include "cli.h"
#include "cmd_graph.h"

static int run_status(struct cli *cli, int argc, char **argv)
{
	return cli_graph_command(cli, argc, argv, FV_GRAPH_STATUS);
}

const struct cli_command cli_cmd_status = {
	.name = "status",
	.synopsis = "status KEY [--phone ID]... [--waba ID]...",
	.summary = "check that KEY's public key is registered and VALID on its phone numbers",
	.help =
		"Reads the business public key stored on each target phone number through the\n"
		"Graph API (GET /{phone-number-id}/whatsapp_business_encryption), compares it\n"
		"with KEY's public key (same SubjectPublicKeyInfo, compared as DER) and checks\n"
		"that its signature status is VALID. Nothing is uploaded. Numbers are checked\n"
		"concurrently (graph.max_in_flight at a time); one number's failure does not\n"
		"stop the others. A number with no key stored is reported as not registered.\n"
		"\n"
		"Targets: the --phone and --waba options when given; otherwise the key's\n"
		"\"phone_numbers\" and \"waba_id\" from the configuration. A WABA stands for all\n"
		"of its phone numbers (listed through the Graph API, every page).\n"
		"\n"
		"Options:\n"
		"  --phone ID  a phone-number id (repeatable)\n"
		"  --waba ID   a WhatsApp Business Account id: all its numbers (repeatable)\n"
		"\n"
		"Output: the numbers the key is meant for (from the configuration), then one\n"
		"row per number: REGISTERED, STATUS (VALID, MISMATCH, another value as\n"
		"UNKNOWN, - when none), MATCHES (stored key is KEY's), TRIES, RESULT.\n"
		"With --json: {\"key\", \"fingerprint_sha256\", \"results\": [{\"phone_number_id\",\n"
		"\"registered\", \"status\": \"VALID\"|\"MISMATCH\"|\"UNKNOWN\"|null, \"matches_local\",\n"
		"\"error\": null | {\"code\", \"message\", \"fbtrace_id\"}}]}.\n"
		"\n"
		"Configuration: the \"graph\" section (base_url, api_version, access_token as a\n"
		"secret reference such as \"env:WHATSAPP_ACCESS_TOKEN\", ca_file, timeouts,\n"
		"retries); see docs/graph.md. The token is sent only in the Authorization\n"
		"header; -v shows requests with \"Authorization: Bearer ***\".\n"
		"\n"
		"Exit codes: 0 every number holds KEY with status VALID; 2 usage or\n"
		"configuration; 3 the key cannot be read; 4 the Graph API refused or retries\n"
		"ran out for some number (wins over 5); 5 some number has no key, another key,\n"
		"or a status other than VALID.\n",
	.run = run_status,
};
