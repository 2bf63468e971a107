/* flowvault flow decrypt|encrypt: Flows data-exchange crypto for debugging and scripts. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"

/* Requests are a few kilobytes; refuse anything absurd before reading it all. */
#define FLOW_INPUT_MAX (16 * 1024 * 1024)

/* The whole of FILE ("-" or NULL for stdin), NUL-terminated; NULL after
 * printing why, with the exit code in *rc. `what` names the expected
 * content for the message about empty input. */
static char *read_input(const struct cli *cli, size_t *out_len, const char *path,
                        const char *what, int *rc)
{
	int from_stdin = !path || strcmp(path, "-") == 0;
	const char *name = from_stdin ? "standard input" : path;
	FILE *f = from_stdin ? stdin : fopen(path, "rb");
	size_t len = 0, cap = 8192;
	char *buf = NULL, *result = NULL;

	if (!f) {
		/* A file named on the command line that is not there is the
		 * caller's mistake, like a missing --config FILE. */
		*rc = cli_failf(cli, EXIT_USAGE, "cannot read '%s': %s", name, strerror(errno));
		return NULL;
	}
	if (from_stdin && isatty(fileno(stdin)) && !cli->quiet)
		fprintf(stderr, "flowvault %s: reading the request from standard input (the "
		        "terminal); end it with Ctrl-D, or give --in FILE\n", cli->command);
	for (;;) {
		char *grown = realloc(buf, cap + 1);

		if (!grown) {
			*rc = cli_failf(cli, EXIT_FAILURE_OTHER, "cannot read '%s': out of memory", name);
			break;
		}
		buf = grown;
		len += fread(buf + len, 1, cap - len, f);
		if (len < cap) {
			if (ferror(f)) {
				*rc = cli_failf(cli, EXIT_FAILURE_OTHER, "cannot read '%s': %s", name,
				                strerror(errno));
				break;
			}
			if (len == 0) {
				*rc = cli_failf(cli, EXIT_USAGE, "'%s': empty input (expected %s)", name,
				                what);
				break;
			}
			buf[len] = '\0';
			*out_len = len;
			result = buf;
			buf = NULL;
			break;
		}
		if (cap >= FLOW_INPUT_MAX) {
			*rc = cli_failf(cli, EXIT_USAGE, "'%s' is larger than %d bytes", name,
			                FLOW_INPUT_MAX);
			break;
		}
		cap *= 2;
	}
	if (!from_stdin)
		(void)fclose(f); /* read-only: errors showed in ferror() above */
	free(buf);
	return result;
}

/* Decrypt failures that are the request's fault get their own exit code. */
static int fail_decrypt(const struct cli *cli)
{
	const fv_error *err = fv_error_last();

	if (err->status == FV_ERR_DECRYPT)
		return cli_failf(cli, EXIT_UNDECRYPTABLE, "the request cannot be decrypted: %s",
		                 err->message);
	return cli_fail(cli);
}

static int flow_decrypt(struct cli *cli, fv_key *key, const char *in_path)
{
	char *body = NULL, *clear = NULL;
	size_t body_len = 0, clear_len = 0;
	int rc = EXIT_OK;

	if (!(body = read_input(cli, &body_len, in_path, "a Flows request body", &rc)))
		return rc;
	if (fv_flow_decrypt_request(&clear, &clear_len, NULL, key, body, body_len) != FV_OK) {
		rc = fail_decrypt(cli);
	} else if (cli->json) {
		json_object *doc = json_object_new_object();

		json_object_object_add(doc, "key", json_object_new_string(fv_key_name(key)));
		json_object_object_add(doc, "request", json_tokener_parse(clear));
		cli_print_json(doc);
	} else {
		/* The clear request is the command's result: a short write is a failure. */
		if (fwrite(clear, 1, clear_len, stdout) != clear_len || putchar('\n') == EOF ||
		    fflush(stdout) != 0)
			rc = cli_failf(cli, EXIT_FAILURE_OTHER,
			               "cannot write the clear request to standard output: %s",
			               strerror(errno));
	}
	fv_flow_clear_free(clear, clear_len);
	free(body);
	return rc;
}

static int flow_encrypt(struct cli *cli, fv_key *key, const char *request_path,
                        const char *response_path)
{
	char *body = NULL, *clear = NULL, *response = NULL, *sealed = NULL;
	size_t body_len = 0, clear_len = 0, response_len = 0, sealed_len = 0;
	fv_flow_session *session = NULL;
	json_object *parsed = NULL;
	int rc = EXIT_OK;

	if (!(body = read_input(cli, &body_len, request_path, "a Flows request body", &rc)))
		return rc;
	if (!(response = read_input(cli, &response_len, response_path, "the clear response JSON", &rc)))
		goto out;
	parsed = json_tokener_parse(response);
	if (!parsed || strlen(response) != response_len) {
		rc = cli_failf(cli, EXIT_USAGE, "'%s' is not a JSON document; the response "
		               "must be the clear JSON the Flow expects", response_path);
		goto out;
	}
	if (fv_flow_decrypt_request(&clear, &clear_len, &session, key, body, body_len) != FV_OK) {
		rc = fail_decrypt(cli);
		goto out;
	}
	if (fv_flow_encrypt_response(&sealed, &sealed_len, session, response,
	                             response_len) != FV_OK) {
		rc = cli_fail(cli);
		goto out;
	}
	if (cli->json) {
		json_object *doc = json_object_new_object();

		json_object_object_add(doc, "key", json_object_new_string(fv_key_name(key)));
		json_object_object_add(doc, "body", json_object_new_string(sealed));
		cli_print_json(doc);
	} else {
		printf("%s\n", sealed);
	}
out:
	json_object_put(parsed);
	fv_free(sealed);
	fv_flow_session_free(session);
	fv_flow_clear_free(clear, clear_len);
	free(response);
	free(body);
	return rc;
}

static int run_flow(struct cli *cli, int argc, char **argv)
{
	static const struct option options[] = {
		{ "in", required_argument, NULL, 'i' },
		{ "request", required_argument, NULL, 'r' },
		{ "response", required_argument, NULL, 'R' },
		{ NULL, 0, NULL, 0 },
	};
	const char *in_path = NULL, *request_path = NULL, *response_path = NULL, *action;
	fv_context *ctx = NULL;
	fv_key *key = NULL;
	int c, rc, decrypt;

	if (argc < 2)
		return cli_usage(cli, "missing decrypt, encrypt or media-decrypt");
	action = argv[1];
	if (strcmp(action, "media-decrypt") == 0)
		return cli_flow_media_decrypt(cli, argc - 1, argv + 1);
	if (strcmp(action, "decrypt") == 0)
		decrypt = 1;
	else if (strcmp(action, "encrypt") == 0)
		decrypt = 0;
	else {
		static const char *const actions[] = { "decrypt", "encrypt", "media-decrypt" };
		const char *hint = cli_suggest(action, actions, 3);

		if (hint)
			return cli_usage(cli, "unknown action '%s'; did you mean '%s'?", action, hint);
		return cli_usage(cli, "unknown action '%s' (decrypt, encrypt or media-decrypt)",
		                 action);
	}
	argc--;
	argv++;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "i:", options, NULL)) != -1) {
		if (c == 'i' && decrypt)
			in_path = optarg;
		else if (c == 'r' && !decrypt)
			request_path = optarg;
		else if (c == 'R' && !decrypt)
			response_path = optarg;
		else
			return cli_usage(cli, "unknown option '%s' for flow %s", argv[optind - 1],
			                 action);
	}
	if (argc - optind != 1)
		return cli_usage(cli, argc - optind < 1 ? "missing KEY" : "expected one KEY");
	if (!decrypt && (!request_path || !response_path))
		return cli_usage(cli, "flow encrypt needs --request FILE and --response FILE");
	if ((rc = cli_open_context(cli, &ctx, 0)) != EXIT_OK)
		return rc;
	if (fv_key_open(&key, ctx, argv[optind]) != FV_OK)
		rc = cli_fail(cli);
	else if (decrypt)
		rc = flow_decrypt(cli, key, in_path);
	else
		rc = flow_encrypt(cli, key, request_path, response_path);
	fv_key_free(key);
	fv_context_free(ctx);
	return rc;
}

const struct cli_command cli_cmd_flow = {
	.name = "flow",
	.synopsis = "flow decrypt KEY [--in FILE] | flow encrypt KEY --request FILE --response FILE"
	            " | flow media-decrypt --media FILE (--in FILE | --fetch) --out FILE",
	.summary = "decrypt a Flows request or encrypt its response with KEY",
	.help =
		"WhatsApp Flows data-exchange crypto, for debugging and scripts; the private\n"
		"key stays in its store (RSA-OAEP runs in the key's backend).\n\n"
		"  flow decrypt KEY [--in FILE]\n"
		"      Reads a request body ({\"encrypted_flow_data\", \"encrypted_aes_key\",\n"
		"      \"initial_vector\"}) from FILE or standard input and prints the clear\n"
		"      request JSON. With --json: {\"key\", \"request\"}.\n\n"
		"  flow encrypt KEY --request FILE --response FILE\n"
		"      Decrypts the request in --request again to recover its AES key, then\n"
		"      encrypts the clear JSON in --response (exactly its bytes) and prints\n"
		"      the response body: base64(AES-128-GCM cipher text and tag) under the\n"
		"      inverted IV. With --json: {\"key\", \"body\"}.\n\n"
		"  flow media-decrypt --media OBJECT --in CDN_FILE --out FILE\n"
		"  flow media-decrypt --media OBJECT --fetch [--ca-file FILE] --out FILE\n"
		"      Verifies and decrypts one PhotoPicker/DocumentPicker upload: OBJECT is\n"
		"      its JSON from the clear request ({\"media_id\", \"cdn_url\", \"file_name\",\n"
		"      \"encryption_metadata\"}); the encrypted file comes from CDN_FILE or,\n"
		"      with --fetch, from its cdn_url over verified HTTPS (WhatsApp CDN hosts\n"
		"      only, no redirects). Checks SHA-256 of the file, its HMAC, the AES-256-CBC\n"
		"      padding and SHA-256 of the clear file; writes the clear file to --out\n"
		"      (mode 0600, never replacing a file) only when every check passed.\n"
		"      With --json: {\"media_id\", \"file_name\", \"size\", \"sha256\"}.\n\n"
		"Options:\n"
		"  -i, --in FILE    request body to decrypt (default: standard input; - too);\n"
		"                   for media-decrypt, the encrypted file from the CDN\n"
		"  --media FILE     media object JSON (media-decrypt)\n"
		"  -o, --out FILE   where to write the clear media file (media-decrypt)\n"
		"  --fetch          download the media's cdn_url (media-decrypt)\n"
		"  --ca-file FILE   CA bundle for --fetch instead of the system's\n"
		"  --allow-host H   also download from host H (.H: and its subdomains)\n"
		"  --request FILE   request body whose AES key encrypts the response\n"
		"  --response FILE  clear response JSON to encrypt\n\n"
		"Exit status 6 when the request cannot be decrypted (bad JSON or base64, wrong\n"
		"lengths, encrypted to another key, GCM tag mismatch, clear text not JSON);\n"
		"3 when the key backend fails; 2 for usage and configuration errors, and for\n"
		"an input file that cannot be read or is empty. With --json every failure is\n"
		"{\"error\": {\"status\", \"message\", \"exit_code\"}}.\n",
	.run = run_flow,
};
