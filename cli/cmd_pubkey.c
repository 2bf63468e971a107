/* flowvault pubkey KEY: the public half, as SPKI PEM. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"

/* Replace `path` with `text` atomically: a reader sees the old or the new file. */
static int write_public_file(const struct cli *cli, const char *path, const char *text)
{
	size_t len = strlen(text), tmp_len = strlen(path) + 16;
	char *tmp = malloc(tmp_len);
	int fd, err = 0;

	if (!tmp)
		return cli_failf(cli, EXIT_FAILURE_OTHER, "out of memory");
	snprintf(tmp, tmp_len, "%s.XXXXXX", path);
	fd = mkstemp(tmp);
	if (fd < 0) {
		err = errno;
	} else {
		if (fchmod(fd, 0644) != 0 || write(fd, text, len) != (ssize_t)len ||
		    fsync(fd) != 0)
			err = errno ? errno : EIO;
		if (close(fd) != 0 && !err)
			err = errno;
		if (!err && rename(tmp, path) != 0)
			err = errno;
		if (err)
			unlink(tmp);
	}
	free(tmp);
	if (err)
		return cli_failf(cli, EXIT_FAILURE_OTHER, "cannot write '%s': %s", path,
		                 strerror(err));
	return EXIT_OK;
}

static int run_pubkey(struct cli *cli, int argc, char **argv)
{
	static const struct option options[] = {
		{ "out", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	char fp[FV_FINGERPRINT_HEX_SIZE];
	const char *out_path = NULL;
	fv_context *ctx;
	fv_key *key = NULL;
	char *pem = NULL;
	int c, rc;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "o:", options, NULL)) != -1) {
		if (c == 'o')
			out_path = optarg;
		else
			return cli_usage(cli, "unknown option '%s'", argv[optind - 1]);
	}
	if (argc - optind != 1)
		return cli_usage(cli, argc - optind < 1 ? "missing KEY" : "expected one KEY");
	if ((rc = cli_open_context(cli, &ctx, 0)) != EXIT_OK)
		return rc;
	if (fv_key_open(&key, ctx, argv[optind]) != FV_OK ||
	    fv_key_public_pem(&pem, key) != FV_OK || fv_key_fingerprint(fp, key) != FV_OK) {
		rc = cli_fail(cli);
		goto out;
	}
	if (out_path && (rc = write_public_file(cli, out_path, pem)) != EXIT_OK)
		goto out;
	if (cli->json) {
		json_object *doc = json_object_new_object();

		json_object_object_add(doc, "key", json_object_new_string(argv[optind]));
		json_object_object_add(doc, "provider", json_object_new_string(fv_key_provider(key)));
		json_object_object_add(doc, "pem", json_object_new_string(pem));
		json_object_object_add(doc, "fingerprint_sha256", json_object_new_string(fp));
		cli_print_json(doc);
	} else if (!out_path) {
		fputs(pem, stdout);
	} else if (!cli->quiet) {
		fprintf(stderr, "wrote %s (fingerprint %s)\n", out_path, fp);
	}
out:
	fv_free(pem);
	fv_key_free(key);
	fv_context_free(ctx);
	return rc;
}

const struct cli_command cli_cmd_pubkey = {
	.name = "pubkey",
	.synopsis = "pubkey KEY [--out FILE]",
	.summary = "print KEY's public key as SPKI PEM (what the Graph API takes)",
	.help =
		"Prints the public key of KEY as a PEM SubjectPublicKeyInfo, byte for byte\n"
		"what `openssl pkey -pubout` prints for the same key. With --json, prints\n"
		"{\"key\", \"provider\", \"pem\", \"fingerprint_sha256\"}.\n\n"
		"Options:\n"
		"  -o, --out FILE  write the PEM to FILE (replaced atomically) instead of stdout\n",
	.run = run_pubkey,
};
