/* flowvault serve: the Flows endpoint, until SIGTERM or SIGINT. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int run_serve(struct cli *cli, int argc, char **argv)
{
	static const struct option options[] = {
		{ "check", no_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 },
	};
	fv_context *ctx = NULL;
	fv_server *server = NULL;
	sigset_t stop_signals;
	int c, rc, check_only = 0;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (c == 'c')
			check_only = 1;
		else
			return cli_usage(cli, "unknown option '%s'", argv[optind - 1]);
	}
	if (argc != optind)
		return cli_usage(cli, "unexpected argument '%s'", argv[optind]);

	/* One line per request is the point of a server's log: show them unless -q. */
	if (!cli->quiet)
		fv_log_set(NULL, NULL, cli->verbose >= 2 ? FV_LOG_DEBUG : FV_LOG_INFO);

	/* Blocked before any thread exists, so every server thread inherits the
	 * mask and only sigwait() below sees these signals. */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	if ((rc = cli_open_context(cli, &ctx, 0)) != EXIT_OK)
		return rc;
	if (fv_server_new(&server, ctx) != FV_OK) {
		rc = cli_fail(cli);
		goto out;
	}
	if (check_only) {
		if (fv_server_check(server) != FV_OK) {
			rc = cli_fail(cli);
			goto out;
		}
		if (!cli->quiet)
			fprintf(stderr, "flowvault serve: configuration, keys and addresses are usable\n");
		goto out;
	}
	/* Until SIGTERM or SIGINT; SIGHUP reloads the configuration. */
	if (fv_server_run(server) != FV_OK) {
		rc = cli_fail(cli);
		goto out;
	}
	rc = EXIT_OK;
out:
	fv_server_free(server);
	fv_context_free(ctx);
	return rc;
}

const struct cli_command cli_cmd_serve = {
	.name = "serve",
	.synopsis = "serve [--check]",
	.summary = "run the WhatsApp Flows endpoint (decrypt, forward to upstream, encrypt)",
	.help =
		"Answers WhatsApp Flows data-exchange requests with the keys named in the\n"
		"configuration's \"serve\" section. Each POST to serve.path is checked\n"
		"(X-Hub-Signature-256 against serve.app_secrets), decrypted with the\n"
		"first key that can, and then:\n"
		"  - a ping is answered {\"data\":{\"status\":\"active\"}}, an error notification\n"
		"    {\"data\":{\"acknowledged\":true}}, without calling upstream;\n"
		"  - anything else is POSTed as clear application/json to serve.upstream, and\n"
		"    its JSON answer is encrypted back (its HTTP 427 passes through).\n"
		"HTTP status: 200 answered; 421 cannot decrypt (WhatsApp refreshes the public\n"
		"key); 432 bad signature; 427 flow token expired (from upstream); 500 upstream\n"
		"down, slow, or not configured, or a key backend failed; 413 body too large.\n"
		"Anything else on the Flows listener gets 404. On serve.admin_listen\n"
		"(default 127.0.0.1:9464): GET /healthz, 200 when every key can decrypt, and\n"
		"GET /metrics, Prometheus text.\n"
		"One log line per request on stderr (status, key, latencies; never clear data).\n"
		"SIGTERM or SIGINT: stop accepting, finish requests in flight, exit 0.\n\n"
		"Configuration (\"serve\" section; see docs/flows.md):\n"
		"  keys                 key names, current first, then keys kept while rotating\n"
		"  listen               HOST:PORT (default 127.0.0.1:8080)\n"
		"  admin_listen         HOST:PORT for /healthz and /metrics (default\n"
		"                       127.0.0.1:9464), or \"off\"\n"
		"  admin_cert, admin_key  TLS for the admin listener (PEM)\n"
		"  admin_token          env: or file: reference; admin requests need it as a\n"
		"                       Bearer token (401 otherwise)\n"
		"  admin_insecure       true: allow a non-loopback admin_listen without TLS\n"
		"                       and token (warned about)\n"
		"  nodes, nodes_ca      admin URLs of every node (rotate and doctor ask\n"
		"                       them) and the CA file that verifies them\n"
		"  path                 endpoint path (default /flows)\n"
		"  cert, key            TLS certificate and key files (PEM); without them plain\n"
		"                       HTTP, for use behind a TLS proxy\n"
		"  app_secrets          up to two secret references (env:, file:, prompt);\n"
		"                       required unless allow_unsigned is true\n"
		"  allow_unsigned       true: serve without checking signatures (tests only;\n"
		"                       logged as a warning)\n"
		"  upstream             http(s) URL of the business logic\n"
		"  upstream_timeout_ms  default 8000, at most 9500 (WhatsApp waits 10 s)\n"
		"  max_body_bytes       default 1048576\n"
		"  max_connections      default 1000\n"
		"  request_timeout_s    idle connection timeout, default 15\n"
		"  threads              server threads, default 16\n\n"
		"Options:\n"
		"  --check  open the keys, resolve the secrets, bind and release the\n"
		"           addresses, then exit (0 when serve could start)\n",
	.run = run_serve,
};
