/*
 * The resolver process: the one part of the separated server that looks
 * host names up (getaddrinfo reads /etc/hosts, /etc/resolv.conf and loads
 * NSS modules, which the workers' seccomp filter forbids). It holds no key,
 * no secret and no listener; it runs as serve.user and answers a worker only
 * for a host in that worker's serve.media.allowed_hosts, checked again here,
 * so that a compromised worker cannot use it to probe other names.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../media_internal.h"
#include "media.h"

/* Workers of every live generation (each has one connection). */
#define RESOLVER_MAX_CLIENTS 256

struct client {
	int fd;
	char *hosts[MEDIA_MAX_HOSTS + 1];    /* NULL-terminated; empty: the default */
	size_t host_count;
};

static void client_close(struct client *c)
{
	size_t i;

	close(c->fd);
	for (i = 0; i < c->host_count; i++)
		free(c->hosts[i]);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

static int client_add(struct client *clients, size_t *count, int fd, const char *text)
{
	struct client *c;
	const char *p = text;

	if (*count == RESOLVER_MAX_CLIENTS) {
		close(fd);
		return -1;
	}
	c = &clients[(*count)++];
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	while (*p && c->host_count < MEDIA_MAX_HOSTS) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		if (len && !(c->hosts[c->host_count++] = strndup(p, len)))
			c->host_count--;
		p += len + (nl != NULL);
	}
	return 0;
}

static void answer(struct client *c)
{
	struct resolve_request q;
	struct resolve_reply r;
	struct addrinfo hints, *res = NULL, *ai;
	ssize_t n = recv(c->fd, &q, sizeof(q), MSG_DONTWAIT);
	int err;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n != (ssize_t)sizeof(q)) {
		client_close(c);     /* the worker is gone (or speaks nonsense) */
		return;
	}
	q.host[sizeof(q.host) - 1] = '\0';
	q.port[sizeof(q.port) - 1] = '\0';
	memset(&r, 0, sizeof(r));
	r.id = q.id;
	if (!fv__media_host_allowed(q.host, c->host_count ? (const char *const *)c->hosts : NULL,
	                            c->host_count)) {
		r.status = FV_ERR_DECRYPT;
		snprintf(r.text, sizeof(r.text), "host '%.64s' is not in serve.media.allowed_hosts; "
		         "not looked up", q.host);
		goto send;
	}
	memset(&hints, 0, sizeof(hints));
	/* No AI_ADDRCONFIG: it asks the kernel over netlink, which a unit's
	 * RestrictAddressFamilies= may forbid; libcurl tries every address. */
	hints.ai_socktype = SOCK_STREAM;
	err = getaddrinfo(q.host, q.port, &hints, &res);
	if (err != 0 || !res) {
		r.status = FV_ERR_BACKEND;
		snprintf(r.text, sizeof(r.text), "cannot resolve '%.64s': %s", q.host,
		         gai_strerror(err));
		goto send;
	}
	for (ai = res; ai && r.count < RESOLVE_MAX_ADDRS; ai = ai->ai_next) {
		char addr[INET6_ADDRSTRLEN];

		if (ai->ai_family == AF_INET6) {
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)ai->ai_addr)->sin6_addr, addr,
			          sizeof(addr));
			snprintf(r.addrs[r.count++], RESOLVE_ADDR_MAX, "[%s]", addr);
		} else if (ai->ai_family == AF_INET) {
			inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)ai->ai_addr)->sin_addr, addr,
			          sizeof(addr));
			snprintf(r.addrs[r.count++], RESOLVE_ADDR_MAX, "%s", addr);
		}
	}
	freeaddrinfo(res);
	r.status = r.count ? FV_OK : FV_ERR_BACKEND;
	if (!r.count)
		snprintf(r.text, sizeof(r.text), "'%.64s' has no IPv4 or IPv6 address", q.host);
send:
	if (send(c->fd, &r, sizeof(r), MSG_NOSIGNAL) != (ssize_t)sizeof(r))
		client_close(c);
}

void fv__resolver_main(int ctl)
{
	static struct client clients[RESOLVER_MAX_CLIENTS];
	struct pollfd p[RESOLVER_MAX_CLIENTS + 1];
	size_t count = 0, polled, i, j;

	fv__serve_log_role("resolver");
	prctl(PR_SET_NAME, "fv-resolver");
	for (;;) {
		int got;

		p[0].fd = ctl;
		p[0].events = POLLIN;
		for (i = 0; i < count; i++) {
			p[i + 1].fd = clients[i].fd;
			p[i + 1].events = POLLIN;
		}
		polled = count;
		got = poll(p, count + 1, -1);
		if (got < 0 && errno != EINTR)
			_exit(1);
		if (got <= 0)
			continue;
		if (p[0].revents) {
			struct ctl_msg msg;
			int fds[CTL_MAX_FDS];
			size_t nfds = 0;

			if (fv__ctl_recv(ctl, &msg, fds, &nfds) <= 0)
				_exit(0); /* the supervisor is gone */
			msg.text[sizeof(msg.text) - 1] = '\0';
			for (j = 0; j < nfds; j++) {
				if (msg.type == CTL_RESOLVER && j == 0)
					client_add(clients, &count, fds[j], msg.text);
				else
					close(fds[j]);
			}
		}
		for (i = 0; i < polled; i++)
			if (p[i + 1].fd == clients[i].fd && p[i + 1].revents)
				answer(&clients[i]);
		/* Compact closed connections. */
		for (i = j = 0; i < count; i++)
			if (clients[i].fd >= 0)
				clients[j++] = clients[i];
		count = j;
	}
}
