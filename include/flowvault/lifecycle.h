/*
 * libflowvault key lifecycle: rotate a key to a new one without a moment in
 * which a phone number holds a key that `flowvault serve` cannot decrypt
 * with, and check that a whole installation is healthy (`flowvault doctor`).
 * Conventions are those of flowvault.h: fv_status returns, out-parameters
 * first, fv_error_last() for the message.
 *
 * Rotation KEY -> NAME, step by step (see docs/lifecycle.md):
 *   1. begin      journal the intent and the new configuration entry;
 *   2. prepared   keys.NAME (a copy of keys.KEY with a new key reference) is
 *                 in the configuration, and NAME follows KEY in serve.keys;
 *   3. generated  NAME exists in KEY's backend;
 *   4. registered NAME is uploaded to each of KEY's phone numbers and read
 *                 back VALID (one journal line per number);
 *   5. switched   NAME takes over KEY's phone_numbers/waba_id and comes
 *                 before KEY in serve.keys: the grace window starts;
 *   6. finished   --finish: every number of NAME is read again (numbers
 *                 that appeared meanwhile get NAME), then KEY leaves
 *                 serve.keys and, on request, the configuration and its
 *                 backend, in that order.
 * Until --finish, fv_rotate_abort goes back: KEY is registered again on
 * every number, KEY comes first in serve.keys and NAME leaves it.
 * Every step is recorded in an append-only journal next to the
 * configuration file, "<config>.rotation.journal", fsync'd line by line, so
 * a rotation interrupted at any point (crash, kill -9, Ctrl-C) continues with
 * fv_rotate_resume without repeating finished work. The configuration file
 * is rewritten atomically and checked before it replaces the old one.
 *
 * Threads: these functions rewrite the configuration file; run one at a
 * time per configuration (a lock on the journal refuses a second rotate).
 */
#ifndef FLOWVAULT_LIFECYCLE_H
#define FLOWVAULT_LIFECYCLE_H

#include <stddef.h>
#include <stdint.h>

#include <flowvault/flowvault.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Rotation ---- */

/* Where a rotation stands: the last step the journal records. */
enum fv_rotation_state {
	FV_ROTATION_NONE = 0,        /* the journal records no rotation */
	FV_ROTATION_BEGUN = 1,
	FV_ROTATION_PREPARED = 2,
	FV_ROTATION_GENERATED = 3,
	FV_ROTATION_REGISTERING = 4, /* target numbers known, some registered */
	FV_ROTATION_SWITCHED = 5,    /* grace window: serve tries NAME, then KEY */
	FV_ROTATION_FINISHED = 6,
	FV_ROTATION_ABORTING = 7,    /* going back to KEY (fv_rotate_abort) */
	FV_ROTATION_ABORTED = 8,     /* every number on KEY again; NAME unused */
	FV_ROTATION_FINISHING = 9    /* --finish began retiring KEY; not done */
};

/* "none", "begun", "prepared", "generated", "registering", "switched",
 * "finished", "aborting", "aborted", "finishing". */
FV_API const char *fv_rotation_state_name(int state);

/* The default grace window between the switch and --finish. */
#define FV_ROTATION_DEFAULT_GRACE_SECONDS (24L * 3600L)

/*
 * Progress: called at each step and after each batch of numbers. `done` of
 * `total` numbers are registered (both 0 outside the registration step);
 * `message` is one line for a person. Return non-zero to stop at the next
 * point where stopping is safe: the call then fails with FV_ERR_GENERIC
 * ("interrupted") and fv_rotate_resume continues later.
 */
typedef int (*fv_rotate_progress_fn)(void *arg, int state, size_t done, size_t total,
                                     const char *message);

typedef struct fv_rotate_options {
	/* Fields of the new key entry, "FIELD=VALUE" (NULL-terminated, or
	 * NULL). Key-reference fields the plugin marks FV_FIELD_KEY_REFERENCE
	 * must be given here unless they are file paths, which are derived:
	 * same directory, file named NAME with the old extension. */
	const char *const *set;
	/* The grace window recorded for --finish; <= 0 means the default. */
	long grace_seconds;
	fv_rotate_progress_fn progress;
	void *progress_arg;
} fv_rotate_options;

typedef struct fv_rotation fv_rotation;

/*
 * Start rotating `key` to a new key `new_name` (see the steps above) and go
 * as far as the switch. Refuses (FV_ERR_USAGE) while another rotation of
 * this configuration is not finished, when keys.`new_name` exists, or when
 * a key reference cannot be derived. On failure *out (when not NULL) still
 * describes where the rotation stands, for reporting.
 */
FV_API int fv_rotate_start(fv_rotation **out, fv_context *ctx, const char *key,
                           const char *new_name, const fv_rotate_options *opts);
/* Continue the unfinished rotation of ctx's configuration at its first
 * unfinished step; numbers already registered are not uploaded again. */
FV_API int fv_rotate_resume(fv_rotation **out, fv_context *ctx,
                            const fv_rotate_options *opts);
/* Read where the last rotation stands, changing nothing. FV_OK with state
 * FV_ROTATION_NONE when there is none. */
FV_API int fv_rotation_read(fv_rotation **out, fv_context *ctx);

enum fv_rotate_finish_flags {
	FV_ROTATE_FORCE = 1u << 0,        /* finish before the grace window ends */
	FV_ROTATE_DESTROY_OLD = 1u << 1,  /* delete the old key in its backend and
	                                     its configuration entry */
	FV_ROTATE_NO_REGISTER = 1u << 2   /* refuse (FV_ERR_MISMATCH, naming them)
	                                     when numbers lack the new key instead
	                                     of registering it on them */
};
/*
 * Retire the previous key of the switched rotation to `new_name`. Refuses
 * before the grace window ends unless FV_ROTATE_FORCE. First every number of
 * the new key is listed again (its phone_numbers and the numbers of its
 * waba_id, from the Graph API) and read: numbers that do not hold the new
 * key as VALID (added to the WABA during the rotation, say) get it
 * registered, or with FV_ROTATE_NO_REGISTER the call fails naming them. The
 * check is journaled. Then, recorded as "finishing": the old key leaves
 * serve.keys (with FV_ROTATE_DESTROY_OLD also keys.<old>), a local serve
 * reloads, and only then is the old key deleted in its backend
 * (FV_ERR_UNSUPPORTED, changing nothing, when its plugin cannot delete).
 * An interrupted finish continues with this call or fv_rotate_resume.
 * `grace_seconds` > 0 replaces the window recorded when the rotation
 * started.
 */
FV_API int fv_rotate_finish(fv_rotation **out, fv_context *ctx, const char *new_name,
                            unsigned int flags, long grace_seconds);

enum fv_rotate_abort_flags {
	FV_ROTATE_DESTROY_NEW = 1u << 0   /* delete the new key in its backend and
	                                     its configuration entry */
};
/*
 * Go back from the unfinished rotation (any step before --finish): KEY takes
 * back the phone_numbers/waba_id NAME took at the switch and comes first in
 * serve.keys (a local serve reloads, or must hold KEY); KEY is registered
 * again on every target number that does not hold it as VALID (read back,
 * same key); then NAME leaves serve.keys. keys.NAME and the key stay, unused,
 * unless FV_ROTATE_DESTROY_NEW (FV_ERR_UNSUPPORTED, changing nothing, when
 * the plugin cannot delete). Journaled number by number: an interrupted
 * abort continues with this call or fv_rotate_resume; once done, calling it
 * again changes nothing. Refused (FV_ERR_USAGE) once --finish has begun.
 */
FV_API int fv_rotate_abort(fv_rotation **out, fv_context *ctx, unsigned int flags,
                           const fv_rotate_options *opts);

FV_API void fv_rotation_free(fv_rotation *rotation);

FV_API int fv_rotation_state(const fv_rotation *r);
FV_API const char *fv_rotation_key(const fv_rotation *r);       /* old key, or NULL */
FV_API const char *fv_rotation_new_key(const fv_rotation *r);   /* new key, or NULL */
FV_API const char *fv_rotation_journal_path(const fv_rotation *r);
/* Fingerprint of the new key once generated, else "". */
FV_API const char *fv_rotation_fingerprint(const fv_rotation *r);
/* Unix times; 0 when the step has not happened. */
FV_API int64_t fv_rotation_started_at(const fv_rotation *r);
FV_API int64_t fv_rotation_switched_at(const fv_rotation *r);
FV_API int64_t fv_rotation_finished_at(const fv_rotation *r);
FV_API long fv_rotation_grace_seconds(const fv_rotation *r);
/* The old key was deleted in its backend by --finish --destroy-old. */
FV_API int fv_rotation_old_destroyed(const fv_rotation *r);
/* The phone numbers the rotation moves (known from FV_ROTATION_REGISTERING). */
FV_API size_t fv_rotation_target_count(const fv_rotation *r);
FV_API const char *fv_rotation_target(const fv_rotation *r, size_t index);
FV_API int fv_rotation_target_registered(const fv_rotation *r, size_t index);
/* Why the last attempt on this number failed (as journaled), or NULL. */
FV_API const char *fv_rotation_target_error(const fv_rotation *r, size_t index);
FV_API size_t fv_rotation_registered_count(const fv_rotation *r);

/* Which key a target number holds, as far as the journal knows. */
enum fv_rotation_number_state {
	FV_ROTATION_NUMBER_OLD_KEY = 0,
	FV_ROTATION_NUMBER_NEW_KEY = 1,
	FV_ROTATION_NUMBER_FAILED = 2    /* the last attempt failed: see _error */
};
FV_API int fv_rotation_target_state(const fv_rotation *r, size_t index);
/* "old_key", "new_key", "failed". */
FV_API const char *fv_rotation_number_state_name(int state);
/* Unix time of the abort's end, 0 when not aborted. */
FV_API int64_t fv_rotation_aborted_at(const fv_rotation *r);
/* The time the rotation entered its current state (the journal line that
 * put it there), 0 when there is none: with `now`, how long it has stood
 * there. */
FV_API int64_t fv_rotation_state_since(const fv_rotation *r);
/* Seconds by which a switched rotation has overrun its grace window at
 * `now` (0 when not switched or still inside it): what doctor warns of. */
FV_API int64_t fv_rotation_grace_overrun(const fv_rotation *r, int64_t now);
/* A note for the operator about `flowvault serve` after this call (restart
 * it to pick up serve.keys), or NULL. */
FV_API const char *fv_rotation_serve_note(const fv_rotation *r);

/* ---- Health checks (flowvault doctor) ---- */

/*
 * Encrypt a fresh random secret to the key's public key with RSA-OAEP
 * (SHA-256, MGF1-SHA-256, empty label) using OpenSSL, decrypt it with
 * fv_key_decrypt inside the backend, and compare. FV_OK when they agree.
 */
FV_API int fv_key_self_test(fv_key *key);

/* The configuration's "serve" section: whether there is one, its "keys" in
 * order, and its "app_secrets" references (never their values). */
FV_API int fv_context_has_serve(const fv_context *ctx);
FV_API size_t fv_context_serve_key_count(const fv_context *ctx);
FV_API const char *fv_context_serve_key(const fv_context *ctx, size_t index);
FV_API size_t fv_context_serve_secret_count(const fv_context *ctx);
FV_API const char *fv_context_serve_secret(const fv_context *ctx, size_t index);
/* serve.allow_unsigned is true: requests without a valid X-Hub-Signature-256
 * are served. */
FV_API int fv_context_serve_allow_unsigned(const fv_context *ctx);
/* serve.cert (want_key 0) or serve.key (1) made absolute against the
 * configuration's directory: a copy to fv_free, or NULL when absent. */
FV_API char *fv_context_serve_tls_file(const fv_context *ctx, int want_key);
/* Whether the configuration has a "graph" section. */
FV_API int fv_context_has_graph(const fv_context *ctx);
/* serve.admin_insecure is true and serve.admin_listen is not a loopback
 * address: the admin listener is reachable without TLS or without a token. */
FV_API int fv_context_serve_admin_insecure(const fv_context *ctx);

/* ---- The other nodes (serve.nodes) ---- */

typedef struct fv_node_key {
	const char *name;
	const char *fingerprint;      /* hex SHA-256 of the public key; "" when not told */
	int ok;                       /* the node decrypts with it now */
} fv_node_key;

typedef struct fv_node_status {
	const char *url;              /* as serve.nodes lists it */
	int reachable;                /* an HTTP answer came */
	int authenticated;            /* and was not 401/403 */
	long http_status;             /* 0 when none */
	const char *error;            /* why its keys are not known; NULL when they are */
	long generation;              /* configurations loaded; -1 when not known */
	const fv_node_key *keys;      /* serve.keys of the node, in its order */
	size_t key_count;
} fv_node_status;

/*
 * Ask every node of serve.nodes for its /healthz (serve.nodes_ca,
 * serve.admin_token): one entry per node, in order, each saying what went
 * wrong with it. FV_OK with *count 0 when there are no nodes; an error only
 * for the configuration or the token's reference. Free with fv_nodes_free.
 */
FV_API int fv_nodes_query(fv_node_status **out, size_t *count, fv_context *ctx);
FV_API void fv_nodes_free(fv_node_status *nodes, size_t count);
/* The node's entry for key `name`, or NULL. */
FV_API const fv_node_key *fv_node_find_key(const fv_node_status *node, const char *name);

#ifdef __cplusplus
}
#endif

#endif /* FLOWVAULT_LIFECYCLE_H */
