/*
 * Sessions: a pool per instance, so that threads decrypting with one key
 * each get a session of their own (a PKCS#11 session runs one operation at a
 * time). Sessions are read-only: login state is shared by all sessions of
 * the application on the token, and nothing but generate/delete writes.
 *
 * Recovery: when a call fails because the session, the login or the token
 * went away, the pool is emptied, a session is opened, the PIN reference is
 * resolved again and the user logs in again; the caller retries once. A
 * generation number tells threads that someone else already recovered.
 * When the module itself stopped answering (a p11-kit server that went
 * away: CKR_DEVICE_ERROR, then CKR_CRYPTOKI_NOT_INITIALIZED) and not just
 * the token, the module is initialized again, which reconnects; the
 * module's epoch tells every instance on it to find its token again.
 *
 * fork(): the child must not use the parent's sessions. The pid recorded
 * with the pool differs in the child; the module is initialized again
 * (module.c), the inherited handles are forgotten (never closed: on a
 * networked HSM they would be the parent's) and the child logs in afresh.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugin.h"

int p11_pool_init(fv_instance *inst)
{
	if (pthread_mutex_init(&inst->lock, NULL) != 0)
		return FV_ERR_GENERIC;
	inst->pid = getpid();
	return FV_OK;
}

void p11_pool_destroy(fv_instance *inst)
{
	size_t i;

	if (inst->pid == getpid() && inst->mod)
		for (i = 0; i < inst->idle_count; i++)
			inst->mod->fns->C_CloseSession(inst->idle[i]);
	free(inst->idle);
	inst->idle = NULL;
	inst->idle_count = inst->idle_cap = 0;
	pthread_mutex_destroy(&inst->lock);
}

int p11_rv_recoverable(CK_RV rv)
{
	return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
	       rv == CKR_USER_NOT_LOGGED_IN || rv == CKR_DEVICE_REMOVED ||
	       rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_DEVICE_ERROR ||
	       rv == CKR_CRYPTOKI_NOT_INITIALIZED;
}

static int open_session(fv_instance *inst, CK_FLAGS extra, CK_SESSION_HANDLE *s)
{
	CK_RV rv = inst->mod->fns->C_OpenSession(inst->slot, CKF_SERIAL_SESSION | extra,
	                                         NULL, NULL, s);

	if (rv == CKR_OK)
		return FV_OK;
	if (rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_DEVICE_REMOVED)
		return P11_ERROR(FV_ERR_BACKEND,
			"token '%s': C_OpenSession failed: %s; insert or reconnect the token",
			inst->token_label, p11_ckr_name(rv));
	if (rv == CKR_TOKEN_WRITE_PROTECTED)
		return P11_ERROR(FV_ERR_BACKEND,
			"token '%s': C_OpenSession(read-write) failed: %s; the token is write-protected",
			inst->token_label, p11_ckr_name(rv));
	return P11_ERROR(FV_ERR_BACKEND, "token '%s': C_OpenSession failed: %s",
	                 inst->token_label, p11_ckr_name(rv));
}

static void forget_idle(fv_instance *inst, int close_them)
{
	size_t i;

	if (close_them)
		for (i = 0; i < inst->idle_count; i++)
			inst->mod->fns->C_CloseSession(inst->idle[i]);
	inst->idle_count = 0;
}

/* The module was initialized again (by any instance): the sessions and
 * slot this instance knew are gone. Lock held. */
static int follow_module_epoch_locked(fv_instance *inst)
{
	int broken, rc;
	unsigned int epoch = p11_module_epoch(inst->mod, &broken);

	if (broken) {
		/* An earlier attempt to initialize it again failed (the server
		 * was still away): try again now. */
		rc = p11_module_reinitialize(inst->mod, epoch, CKR_CRYPTOKI_NOT_INITIALIZED);
		if (rc != FV_OK)
			return rc;
		epoch = p11_module_epoch(inst->mod, &broken);
	}
	if (epoch == inst->mod_epoch)
		return FV_OK;
	forget_idle(inst, 0);
	inst->generation++;
	rc = p11_token_select(inst);
	if (rc != FV_OK) {
		/* A remote module initializes without its server, with no
		 * slots: initialize it again on the next call. */
		p11_module_mark_broken(inst->mod, epoch);
		return P11_ERROR(FV_ERR_BACKEND,
			"token '%s' is not reachable through module '%s' since the module was initialized again; check the token (or its p11-kit server), then retry",
			inst->token_label, inst->mod->path);
	}
	inst->mod_epoch = epoch;
	return FV_OK;
}

/* A fresh, logged-in session for the current generation. Lock held. */
static int renew_locked(fv_instance *inst, CK_SESSION_HANDLE *out)
{
	CK_SESSION_HANDLE s;
	int rc;

	rc = open_session(inst, 0, &s);
	if (rc != FV_OK)
		return rc;
	rc = p11_token_login(inst, s);
	if (rc != FV_OK) {
		inst->mod->fns->C_CloseSession(s);
		return rc;
	}
	*out = s;
	return FV_OK;
}

/* In a child after fork(): re-initialize, forget, log in again. */
static int after_fork_locked(fv_instance *inst)
{
	CK_SESSION_HANDLE s;
	int rc;

	rc = p11_module_after_fork(inst->mod);
	if (rc < 0)
		return rc;
	forget_idle(inst, 0);
	inst->pid = getpid();
	inst->generation++;
	rc = renew_locked(inst, &s);
	if (rc != FV_OK)
		return rc;
	inst->idle[inst->idle_count++] = s;
	return FV_OK;
}

static int reserve_locked(fv_instance *inst)
{
	CK_SESSION_HANDLE *grown;
	size_t cap;

	if (inst->idle_count < inst->idle_cap)
		return FV_OK;
	cap = inst->idle_cap ? inst->idle_cap * 2 : 8;
	grown = realloc(inst->idle, cap * sizeof(*grown));
	if (!grown)
		return FV_ERR_NOMEM;
	inst->idle = grown;
	inst->idle_cap = cap;
	return FV_OK;
}

int p11_session_get(fv_instance *inst, CK_SESSION_HANDLE *session,
                    unsigned int *gen)
{
	int rc;

	pthread_mutex_lock(&inst->lock);
	rc = reserve_locked(inst);
	if (rc == FV_OK && inst->pid != getpid())
		rc = after_fork_locked(inst);
	if (rc == FV_OK)
		rc = follow_module_epoch_locked(inst);
	if (rc != FV_OK) {
		pthread_mutex_unlock(&inst->lock);
		return rc;
	}
	*gen = inst->generation;
	if (inst->idle_count > 0) {
		*session = inst->idle[--inst->idle_count];
		pthread_mutex_unlock(&inst->lock);
		return FV_OK;
	}
	/* A new session is logged in already unless the token lost the
	 * login (removed and back): then log in again. */
	rc = renew_locked(inst, session);
	pthread_mutex_unlock(&inst->lock);
	return rc;
}

void p11_session_put(fv_instance *inst, CK_SESSION_HANDLE session,
                     unsigned int gen)
{
	pthread_mutex_lock(&inst->lock);
	if (gen == inst->generation && inst->pid == getpid() &&
	    reserve_locked(inst) == FV_OK) {
		inst->idle[inst->idle_count++] = session;
		session = CK_INVALID_HANDLE;
	}
	pthread_mutex_unlock(&inst->lock);
	if (session != CK_INVALID_HANDLE && inst->pid == getpid())
		inst->mod->fns->C_CloseSession(session);
}

void p11_session_drop(fv_instance *inst, CK_SESSION_HANDLE session)
{
	if (inst->pid == getpid())
		inst->mod->fns->C_CloseSession(session);
}

int p11_session_open_rw(fv_instance *inst, CK_SESSION_HANDLE *session)
{
	CK_SESSION_HANDLE s;
	unsigned int gen;
	int rc;

	/* Goes through the pool first so a fork is noticed and login is done. */
	rc = p11_session_get(inst, &s, &gen);
	if (rc != FV_OK)
		return rc;
	rc = open_session(inst, CKF_RW_SESSION, session);
	p11_session_put(inst, s, gen);
	return rc;
}

int p11_recover(fv_instance *inst, unsigned int gen, CK_RV why)
{
	CK_TOKEN_INFO ti;
	CK_SESSION_HANDLE s;
	CK_RV rv;
	int rc;

	pthread_mutex_lock(&inst->lock);
	if (gen != inst->generation) {
		pthread_mutex_unlock(&inst->lock);
		return FV_OK;
	}
	P11_LOG(FV_LOG_WARNING, "token '%s': %s; opening a new session and logging in again",
	        inst->token_label, p11_ckr_name(why));
	if (why == CKR_DEVICE_REMOVED || why == CKR_TOKEN_NOT_PRESENT ||
	    why == CKR_DEVICE_ERROR || why == CKR_CRYPTOKI_NOT_INITIALIZED) {
		unsigned int epoch = inst->mod_epoch;

		rv = inst->mod->fns->C_GetTokenInfo(inst->slot, &ti);
		if (rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_DEVICE_REMOVED) {
			/* The module answers; the token is out: wait for it. */
			forget_idle(inst, 1);
			pthread_mutex_unlock(&inst->lock);
			return P11_ERROR(FV_ERR_BACKEND,
				"token '%s' is gone (C_GetTokenInfo: %s); reconnect it and retry",
				inst->token_label, p11_ckr_name(rv));
		}
		if (rv != CKR_OK) {
			/* The module itself is broken (its server went away):
			 * initialize it again, then find the token anew. */
			forget_idle(inst, 0);
			rc = p11_module_reinitialize(inst->mod, epoch, rv);
			if (rc == FV_OK)
				rc = follow_module_epoch_locked(inst);
			if (rc != FV_OK) {
				pthread_mutex_unlock(&inst->lock);
				return rc;
			}
		} else {
			inst->token_flags = ti.flags;
		}
	}
	forget_idle(inst, 1);
	inst->generation++;
	rc = reserve_locked(inst);
	if (rc == FV_OK)
		rc = renew_locked(inst, &s);
	if (rc == FV_OK)
		inst->idle[inst->idle_count++] = s;
	pthread_mutex_unlock(&inst->lock);
	return rc;
}
