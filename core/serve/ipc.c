/*
 * Messages between the server's processes: control messages (with
 * descriptors, SCM_RIGHTS) between the supervisor and its children, and the
 * workers' side of the key process channels.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "../serve_internal.h"

int fv__ctl_send(int fd, const struct ctl_msg *msg, const int *fds, size_t nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
		struct cmsghdr align;
	} control;
	struct iovec iov = { (void *)msg, sizeof(*msg) };
	struct msghdr mh;
	ssize_t n;

	if (nfds > CTL_MAX_FDS)
		return fv__error_set(FV_ERR_USAGE, "serve: too many descriptors in one message");
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (nfds) {
		struct cmsghdr *c;

		memset(&control, 0, sizeof(control));
		mh.msg_control = control.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	do
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(*msg))
		return fv__error_set(FV_ERR_GENERIC, "serve: control message not sent: %s",
		                     strerror(errno));
	return FV_OK;
}

int fv__ctl_recv(int fd, struct ctl_msg *msg, int *fds, size_t *nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
		struct cmsghdr align;
	} control;
	struct iovec iov = { msg, sizeof(*msg) };
	struct msghdr mh;
	struct cmsghdr *c;
	ssize_t n;

	*nfds = 0;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = control.buf;
	mh.msg_controllen = sizeof(control.buf);
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return 0;
	if (n < 0)
		return -1;
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			if (*nfds + k > CTL_MAX_FDS)
				k = CTL_MAX_FDS - *nfds;
			memcpy(fds + *nfds, CMSG_DATA(c), k * sizeof(int));
			*nfds += k;
		}
	if ((size_t)n != sizeof(*msg) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		size_t i;

		for (i = 0; i < *nfds; i++)
			close(fds[i]);
		*nfds = 0;
		return -1;
	}
	msg->text[sizeof(msg->text) - 1] = '\0';
	return 1;
}

/* ---- A worker's channels ---- */

struct channel {
	pthread_mutex_t lock;
	int fd;                   /* -1 while the key process is down */
	uint32_t next_id;
};

struct keyproc_link {
	struct channel *ch;
	size_t count;
	size_t key_count;         /* replies naming another key are refused */
	atomic_size_t next;
};

/* Each thread keeps to one channel (the pool has one per thread). */
static _Thread_local size_t my_channel = (size_t)-1;

int fv__link_new(struct keyproc_link **out, size_t count, size_t key_count)
{
	struct keyproc_link *l = calloc(1, sizeof(*l));
	size_t i;

	if (!l || !(l->ch = calloc(count, sizeof(*l->ch)))) {
		free(l);
		return fv__error_nomem();
	}
	l->count = count;
	l->key_count = key_count;
	for (i = 0; i < count; i++) {
		pthread_mutex_init(&l->ch[i].lock, NULL);
		l->ch[i].fd = -1;
	}
	*out = l;
	return FV_OK;
}

void fv__link_set(struct keyproc_link *l, size_t first, const int *fds, size_t count)
{
	size_t i;

	for (i = 0; i < count; i++) {
		struct channel *c;

		if (first + i >= l->count) {
			close(fds[i]);
			continue;
		}
		c = &l->ch[first + i];
		{
			struct timeval tv = { IPC_TIMEOUT_MS / 1000, (IPC_TIMEOUT_MS % 1000) * 1000 };

			setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		}
		pthread_mutex_lock(&c->lock);
		if (c->fd >= 0)
			close(c->fd);
		c->fd = fds[i];
		pthread_mutex_unlock(&c->lock);
	}
}

void fv__link_free(struct keyproc_link *l)
{
	size_t i;

	if (!l)
		return;
	for (i = 0; i < l->count; i++) {
		if (l->ch[i].fd >= 0)
			close(l->ch[i].fd);
		pthread_mutex_destroy(&l->ch[i].lock);
	}
	free(l->ch);
	free(l);
}

/*
 * One request and its reply (matched by id: a reply that arrives after its
 * request timed out is skipped). FV_OK, or FV_ERR_BACKEND when the key
 * process is down, closed the channel or did not answer in time: the caller
 * answers 503 at once rather than wait for a restart.
 */
static int roundtrip(struct keyproc_link *l, struct ipc_request *req, void *reply,
                     size_t reply_len)
{
	struct channel *c;
	double deadline;
	int rc = FV_ERR_BACKEND;

	if (my_channel >= l->count)
		my_channel = atomic_fetch_add(&l->next, 1) % l->count;
	c = &l->ch[my_channel];
	pthread_mutex_lock(&c->lock);
	if (c->fd < 0)
		goto out;
	req->id = ++c->next_id;
	if (send(c->fd, req, sizeof(*req), MSG_NOSIGNAL) != (ssize_t)sizeof(*req))
		goto dead;
	deadline = fv__now_seconds() * 1e3 + IPC_TIMEOUT_MS;
	for (;;) {
		/* One recv per reply: SO_RCVTIMEO (set in fv__link_set) bounds it. */
		ssize_t n = recv(c->fd, reply, reply_len, MSG_TRUNC);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			fv__log(FV_LOG_ERROR, "serve: the key process did not answer within %d ms "
			        "(answering 503)", IPC_TIMEOUT_MS);
			goto out;
		}
		if (n <= 0)
			goto dead;
		if ((size_t)n == reply_len && ((const uint32_t *)reply)[1] == req->id &&
		    ((const uint32_t *)reply)[0] == req->op) {
			rc = FV_OK;
			goto out;
		}
		/* A late reply to an earlier request, or junk: skip it. */
		if (fv__now_seconds() * 1e3 > deadline)
			goto out;
	}
dead:
	/* The key process is gone: this channel stays closed until the
	 * supervisor hands over a new one. */
	close(c->fd);
	c->fd = -1;
out:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int fv__link_unwrap(void *arg, unsigned char aes_key[FV_FLOW_AES_KEY_BYTES],
                    size_t *key_index, const unsigned char *wrapped, size_t wrapped_len)
{
	struct keyproc_link *l = arg;
	struct ipc_request req;
	struct ipc_reply rep;
	int result;

	/* No RSA key that WhatsApp uses has a longer ciphertext. */
	if (wrapped_len == 0 || wrapped_len > IPC_CIPHERTEXT_MAX)
		return FV__UNWRAP_UNDECRYPTABLE;
	memset(&req, 0, sizeof(req));
	req.op = IPC_DECRYPT;
	req.len = (uint32_t)wrapped_len;
	memcpy(req.ciphertext, wrapped, wrapped_len);
	if (roundtrip(l, &req, &rep, sizeof(rep)) != FV_OK)
		return FV__UNWRAP_UNAVAILABLE;
	switch (rep.status) {
	case IPC_OK:
		if (rep.key_index >= l->key_count) {
			result = FV__UNWRAP_BACKEND;
			break;
		}
		memcpy(aes_key, rep.aes_key, FV_FLOW_AES_KEY_BYTES);
		*key_index = rep.key_index;
		result = FV__UNWRAP_OK;
		break;
	case IPC_UNDECRYPTABLE:
		result = FV__UNWRAP_UNDECRYPTABLE;
		break;
	default:
		result = FV__UNWRAP_BACKEND;
		break;
	}
	OPENSSL_cleanse(&rep, sizeof(rep));
	return result;
}

int fv__link_probe(struct keyproc_link *l, struct ipc_probe_reply *out)
{
	struct ipc_request req;

	memset(&req, 0, sizeof(req));
	req.op = IPC_PROBE;
	if (roundtrip(l, &req, out, sizeof(*out)) != FV_OK)
		return FV_ERR_BACKEND;
	for (size_t i = 0; i < SERVE_MAX_KEYS; i++)
		out->fingerprints[i][FV_FINGERPRINT_HEX_SIZE - 1] = '\0';
	return FV_OK;
}
