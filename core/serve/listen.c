/*
 * Listening sockets of the server: bound by the process that starts it (the
 * supervisor, or the single process with isolation "none"), handed to
 * libmicrohttpd with MHD_OPTION_LISTEN_SOCKET, and shared by every worker.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../serve_internal.h"

#define LISTEN_BACKLOG 1024

int fv__serve_listen(int *fd_out, const char *host, unsigned int port, const char *field,
                     const char *as_written)
{
	struct addrinfo hints, *res = NULL;
	char service[8];
	int fd, one = 1, err;

	*fd_out = -1;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(service, sizeof(service), "%u", port);
	err = getaddrinfo(host, service, &hints, &res);
	if (err != 0 || !res)
		return fv__error_set(FV_ERR_CONFIG, "serve.%s: cannot resolve '%s': %s", field,
		                     host, gai_strerror(err));
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		err = errno;
		freeaddrinfo(res);
		return fv__error_set(FV_ERR_GENERIC, "serve.%s: cannot create a socket: %s", field,
		                     strerror(err));
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (res->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
		err = errno;
		freeaddrinfo(res);
		close(fd);
		return fv__error_set(FV_ERR_GENERIC,
			"serve.%s: cannot listen on %s: %s%s", field, as_written, strerror(err),
			err == EADDRINUSE ? " (another process listens there: stop it or choose "
			                    "another port)"
			: err == EACCES ? " (ports below 1024 need root or CAP_NET_BIND_SERVICE)" : "");
	}
	freeaddrinfo(res);
	*fd_out = fd;
	return FV_OK;
}

unsigned int fv__serve_bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	memset(&ss, 0, sizeof(ss));
	if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}

int fv__serve_bind(const struct serve_config *cfg, int *flows_fd, int *admin_fd)
{
	int rc;

	*admin_fd = -1;
	if ((rc = fv__serve_listen(flows_fd, cfg->host, cfg->port, "listen", cfg->listen)) != FV_OK)
		return rc;
	if (cfg->admin_listen &&
	    (rc = fv__serve_listen(admin_fd, cfg->admin_host, cfg->admin_port, "admin_listen",
	                           cfg->admin_listen)) != FV_OK) {
		close(*flows_fd);
		*flows_fd = -1;
	}
	return rc;
}

void fv__serve_log_started(const struct serve_gen *gen, unsigned int port, const char *how)
{
	const struct serve_config *cfg = &gen->cfg;

	if (!cfg->app_secret_count)
		fv__log(FV_LOG_WARNING, "serve: serve.allow_unsigned is true and no app_secrets "
		        "are set: X-Hub-Signature-256 is not checked, so anyone who reaches %s can "
		        "make the key decrypt; set serve.app_secrets", cfg->listen);
	fv__log(FV_LOG_INFO, "serve: answering Flows requests on %s://%s%s%s:%u%s with %zu key%s "
	        "(%s), %s, upstream %s; /healthz and /metrics %s%s",
	        gen->tls_cert ? "https" : "http", strchr(cfg->host, ':') ? "[" : "",
	        cfg->host, strchr(cfg->host, ':') ? "]" : "", port, cfg->path, cfg->key_count,
	        cfg->key_count == 1 ? "" : "s", cfg->keys[0], how,
	        cfg->upstream ? "configured" : "none (pings and error notifications only)",
	        !cfg->admin_listen ? "off" : gen->admin_tls_cert ? "on https://" : "on http://",
	        cfg->admin_listen ? cfg->admin_listen : "");
}
