/*
 * The Vault token: a configured token (secret reference), or one from an
 * AppRole or Kubernetes service-account login, kept in secure memory and
 * reused until shortly before its lease ends, so a decrypt costs one
 * request.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "vault_transit.h"

#define JWT_MAX (64 * 1024)

static void token_free(struct vault_token *t)
{
	if (!t)
		return;
	cloud_secret_clear(vault_host, &t->token);
	free(t);
}

/* The service-account token file, trailing newline removed. */
static int read_jwt(struct fv_instance *inst, struct cloud_secret *out)
{
	char buf[JWT_MAX];
	size_t used = 0;
	ssize_t n;
	int fd = open(inst->jwt_file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	int rc;

	if (fd < 0)
		return VAULT_ERROR(FV_ERR_AUTH, "%s.jwt_file: cannot read '%s': %s; mount the service-account token there or set jwt_file",
		                   inst->location, inst->jwt_file, strerror(errno));
	while (used < sizeof(buf) && (n = read(fd, buf + used, sizeof(buf) - used)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		used += (size_t)n;
	}
	close(fd);
	while (used && (buf[used - 1] == '\n' || buf[used - 1] == '\r' || buf[used - 1] == ' '))
		used--;
	if (used == 0 || used == sizeof(buf)) {
		OPENSSL_cleanse(buf, sizeof(buf));
		return VAULT_ERROR(FV_ERR_AUTH, "%s.jwt_file: '%s' does not hold a service-account token",
		                   inst->location, inst->jwt_file);
	}
	rc = cloud_secret_set(vault_host, buf, used, out);
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}

static int login(struct fv_instance *inst, int64_t deadline, struct vault_token **out)
{
	struct cloud_secret credential = { NULL, 0 };
	struct vault_error err;
	json_object *body = NULL, *resp = NULL, *auth = NULL;
	const char *client_token;
	size_t token_len = 0;
	struct vault_token *t;
	char path[300], purpose[300];
	int64_t lease = 0;
	int rc;

	if (inst->auth == VAULT_AUTH_APPROLE) {
		snprintf(purpose, sizeof(purpose), "AppRole secret_id for %s", inst->location);
		rc = cloud_secret_resolve(vault_host, inst->secret_id_ref, purpose, &credential);
	} else {
		rc = read_jwt(inst, &credential);
	}
	if (rc != FV_OK)
		return rc;
	body = json_object_new_object();
	if (!body ||
	    (inst->auth == VAULT_AUTH_APPROLE
	             ? json_object_object_add(body, "role_id", json_object_new_string(inst->role_id)) ||
	                       json_object_object_add(body, "secret_id",
	                                              json_object_new_string_len(credential.data, (int)credential.len))
	             : json_object_object_add(body, "role", json_object_new_string(inst->kubernetes_role)) ||
	                       json_object_object_add(body, "jwt",
	                                              json_object_new_string_len(credential.data, (int)credential.len)))) {
		rc = VAULT_ERROR(FV_ERR_NOMEM, "out of memory");
		goto out;
	}
	cloud_secret_clear(vault_host, &credential);
	snprintf(path, sizeof(path), "auth/%s/login", inst->auth_mount);
	rc = vault_post_anonymous(inst, path, body, deadline, &resp, &err);
	if (rc != FV_OK) {
		if (err.status)
			rc = VAULT_ERROR(err.status >= 500 ? FV_ERR_BACKEND : FV_ERR_AUTH,
				"%s: Vault refused the %s: HTTP %ld: %s; check the credentials and the auth mount '%s'",
				inst->location, inst->auth_source, err.status,
				err.message[0] ? err.message : "(no message)", inst->auth_mount);
		goto out;
	}
	json_object_object_get_ex(resp, "auth", &auth);
	client_token = cloud_json_string(auth, "client_token", &token_len);
	if (!client_token || !token_len) {
		rc = VAULT_ERROR(FV_ERR_BACKEND, "%s: Vault answered the %s without auth.client_token",
		                 inst->location, inst->auth_source);
		goto out;
	}
	cloud_json_int(auth, "lease_duration", &lease);
	t = calloc(1, sizeof(*t));
	if (!t) {
		rc = VAULT_ERROR(FV_ERR_NOMEM, "out of memory");
		goto out;
	}
	rc = cloud_secret_set(vault_host, client_token, token_len, &t->token);
	if (rc != FV_OK) {
		free(t);
		goto out;
	}
	/* Log in again after two thirds of the lease: well before it ends. */
	if (lease > 0)
		t->refresh_at_ms = cloud_now_ms() + lease * 1000 * 2 / 3;
	VAULT_LOG(FV_LOG_DEBUG, "vault-transit: %s: logged in with the %s (lease %lld s)",
	          inst->location, inst->auth_source, (long long)lease);
	*out = t;
out:
	cloud_secret_clear(vault_host, &credential);
	cloud_json_free_wiped(body);
	cloud_json_free_wiped(resp);
	return rc;
}

static int fetch(struct fv_instance *inst, int64_t deadline, struct vault_token **out)
{
	struct vault_token *t;
	char purpose[300];
	int rc;

	if (inst->auth != VAULT_AUTH_TOKEN)
		return login(inst, deadline, out);
	t = calloc(1, sizeof(*t));
	if (!t)
		return VAULT_ERROR(FV_ERR_NOMEM, "out of memory");
	snprintf(purpose, sizeof(purpose), "Vault token for %s", inst->location);
	rc = cloud_secret_resolve(vault_host, inst->token_ref, purpose, &t->token);
	if (rc != FV_OK) {
		free(t);
		return rc;
	}
	*out = t;
	return FV_OK;
}

static int usable(const struct vault_token *t)
{
	return t && (!t->refresh_at_ms || cloud_now_ms() < t->refresh_at_ms);
}

int vault_token_get(struct fv_instance *inst, int64_t deadline, struct vault_token **out)
{
	struct vault_token *fresh = NULL, *old;
	int rc;

	pthread_mutex_lock(&inst->token_lock);
	if (usable(inst->token)) {
		inst->token->refs++;
		*out = inst->token;
		pthread_mutex_unlock(&inst->token_lock);
		return FV_OK;
	}
	pthread_mutex_unlock(&inst->token_lock);

	pthread_mutex_lock(&inst->login_lock);
	pthread_mutex_lock(&inst->token_lock);
	if (usable(inst->token)) {
		inst->token->refs++;
		*out = inst->token;
		pthread_mutex_unlock(&inst->token_lock);
		pthread_mutex_unlock(&inst->login_lock);
		return FV_OK;
	}
	pthread_mutex_unlock(&inst->token_lock);
	rc = fetch(inst, deadline, &fresh);
	pthread_mutex_lock(&inst->token_lock);
	if (rc == FV_OK) {
		old = inst->token;
		fresh->refs = 2; /* the cache's and the caller's */
		inst->token = fresh;
		*out = fresh;
		if (old && --old->refs == 0)
			token_free(old);
	}
	pthread_mutex_unlock(&inst->token_lock);
	pthread_mutex_unlock(&inst->login_lock);
	return rc;
}

void vault_token_put(struct fv_instance *inst, struct vault_token *t)
{
	int last;

	if (!t)
		return;
	pthread_mutex_lock(&inst->token_lock);
	last = --t->refs == 0;
	pthread_mutex_unlock(&inst->token_lock);
	if (last)
		token_free(t);
}

void vault_token_forget(struct fv_instance *inst, struct vault_token *t)
{
	int last = 0;

	pthread_mutex_lock(&inst->token_lock);
	if (inst->token == t) {
		inst->token = NULL;
		last = --t->refs == 0;
	}
	pthread_mutex_unlock(&inst->token_lock);
	if (last)
		token_free(t);
}

void vault_token_cleanup(struct fv_instance *inst)
{
	if (inst->token && --inst->token->refs == 0)
		token_free(inst->token);
	inst->token = NULL;
}
