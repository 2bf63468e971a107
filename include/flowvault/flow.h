/*
 * WhatsApp Flows data exchange with a vault-held key, and the endpoint server.
 *
 * The protocol (Meta's "Implementing your Flow endpoint"):
 *  - WhatsApp POSTs {"encrypted_flow_data", "encrypted_aes_key",
 *    "initial_vector"}, each standard base64 with padding.
 *  - The AES key is the RSA-OAEP (SHA-256, MGF1-SHA-256, empty label)
 *    decryption of encrypted_aes_key: exactly 16 bytes. The private key
 *    operation happens inside the key's backend (fv_key_decrypt).
 *  - encrypted_flow_data is AES-128-GCM ciphertext followed by its 16-byte
 *    tag, with the 16-byte initial_vector as IV and no AAD; the clear text is
 *    a UTF-8 JSON object.
 *  - The response is encrypted with the same AES key and the IV with every
 *    byte inverted; the body is base64(ciphertext || tag), text/plain.
 *
 * Include <flowvault/flowvault.h>, which includes this header.
 */
#ifndef FLOWVAULT_FLOW_H
#define FLOWVAULT_FLOW_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FV_FLOW_AES_KEY_BYTES 16
#define FV_FLOW_IV_BYTES 16
#define FV_FLOW_TAG_BYTES 16

/* ---- Request and response crypto ---- */

/* What a response to one request is encrypted with: the request's AES key
 * and the inverted IV. Wiped when freed. */
typedef struct fv_flow_session fv_flow_session;

/*
 * Decrypt one Flows request body (the raw HTTP body, `body_len` bytes, need
 * not be NUL-terminated) with `key`.
 *
 * On success *clear is the clear request JSON exactly as sent,
 * NUL-terminated, *clear_len bytes (free it with fv_flow_clear_free, which
 * wipes it), and *session can encrypt the response (free it with
 * fv_flow_session_free). `session` may be NULL when no response is needed.
 *
 * FV_ERR_DECRYPT when the request cannot be decrypted: not JSON, a field
 * missing, bad base64, wrong lengths, OAEP failure, GCM tag mismatch, clear
 * text that is not a UTF-8 JSON object. Any other status comes from the key
 * backend (token gone, TPM unreachable...) and says nothing about the request.
 */
FV_API int fv_flow_decrypt_request(char **clear, size_t *clear_len,
                                   fv_flow_session **session, fv_key *key,
                                   const void *body, size_t body_len);

/*
 * The same with several keys tried in order (current key first, then keys
 * kept during a rotation). *key_index tells which one decrypted it (may be
 * NULL). FV_ERR_DECRYPT when no key can; when every key failed and at least
 * one failed for a backend reason, that backend status is returned instead,
 * because the request may be fine.
 */
FV_API int fv_flow_decrypt_request_any(char **clear, size_t *clear_len,
                                       fv_flow_session **session,
                                       size_t *key_index, fv_key *const *keys,
                                       size_t key_count, const void *body,
                                       size_t body_len);

/*
 * Encrypt a clear response (`clear_len` bytes of JSON) for the request that
 * created `session`: *body is base64(ciphertext || tag), NUL-terminated,
 * *body_len characters (fv_free it). A session may encrypt several
 * responses (each uses the same key and IV, as the protocol requires).
 */
FV_API int fv_flow_encrypt_response(char **body, size_t *body_len,
                                    const fv_flow_session *session,
                                    const void *clear, size_t clear_len);

FV_API void fv_flow_session_free(fv_flow_session *session);
/* Wipe and free clear text returned by this API. */
FV_API void fv_flow_clear_free(char *clear, size_t clear_len);

/*
 * Check an X-Hub-Signature-256 header value ("sha256=<64 hex digits>")
 * against HMAC-SHA256(secret, body) in constant time. FV_OK on a match;
 * FV_ERR_AUTH when the header is missing (NULL), malformed or wrong.
 */
FV_API int fv_flow_signature_check(const char *header, const void *body,
                                   size_t body_len, const void *secret,
                                   size_t secret_len);

/* ---- Media uploads (PhotoPicker, DocumentPicker) ----
 *
 * A decrypted data-exchange request carries, per uploaded file,
 * {"media_id", "cdn_url", "file_name", "encryption_metadata": {
 * "encryption_key", "hmac_key", "iv", "encrypted_hash", "plaintext_hash"}}.
 * The file at cdn_url is ciphertext || 10-byte MAC; these functions check
 * SHA-256(file) against encrypted_hash, the first 10 bytes of
 * HMAC-SHA256(hmac_key, iv || ciphertext) against the MAC (in constant
 * time), decrypt AES-256-CBC with PKCS#7 padding, and check SHA-256(clear)
 * against plaintext_hash: in one streaming pass. Verdicts come only from
 * fv_media_final, in that order (FV_ERR_DECRYPT with the failed stage).
 */
typedef struct fv_media fv_media;

/* Parse one media object (`len` bytes of JSON). The keys are copied into
 * the verifier's contexts and wiped everywhere else. */
FV_API int fv_media_open(fv_media **out, const char *json, size_t len);
FV_API const char *fv_media_id(const fv_media *media);
FV_API const char *fv_media_cdn_url(const fv_media *media);    /* NULL if absent */
FV_API const char *fv_media_file_name(const fv_media *media);  /* NULL if absent */

/* Where clear bytes go as they are decrypted; return FV_OK to go on. Clear
 * bytes are not verified until fv_media_final succeeds: a sink that must
 * not keep an unverified file writes somewhere it can discard. */
typedef int (*fv_media_sink_fn)(void *arg, const void *clear, size_t len);

/* Feed the downloaded file in pieces of any size. */
FV_API int fv_media_update(fv_media *media, const void *data, size_t len,
                           fv_media_sink_fn sink, void *arg);
/* End of the file: FV_OK with the clear file's SHA-256 and size, or
 * FV_ERR_DECRYPT naming the check that failed. */
FV_API int fv_media_final(fv_media *media, fv_media_sink_fn sink, void *arg,
                          unsigned char sha256[32], uint64_t *size);
/* Wipes the keys. */
FV_API void fv_media_free(fv_media *media);

/* Downloading cdn_url: HTTPS only, peer verified, no redirects, the host in
 * an allowlist, bounded in size and time. */
#define FV_MEDIA_DEFAULT_MAX_BYTES (100ull * 1024 * 1024)
#define FV_MEDIA_DEFAULT_TIMEOUT_MS 8000L
typedef struct fv_media_fetch_options {
	/* Host names; one starting with "." allows its subdomains. NULL: the
	 * WhatsApp CDN ("mmg.whatsapp.net", ".whatsapp.net"). */
	const char *const *allowed_hosts;
	size_t allowed_count;
	uint64_t max_bytes;      /* 0: FV_MEDIA_DEFAULT_MAX_BYTES */
	long timeout_ms;         /* whole download; 0: FV_MEDIA_DEFAULT_TIMEOUT_MS */
	const char *ca_file;     /* CA bundle to trust instead of the system's; NULL: the system's */
} fv_media_fetch_options;

/* Download the media's cdn_url into fv_media_update. Call fv_media_final
 * afterwards for the verdict. FV_ERR_DECRYPT when the URL, host, size or a
 * redirect is refused; FV_ERR_BACKEND when the download fails. */
FV_API int fv_media_fetch(fv_media *media, const fv_media_fetch_options *options,
                          fv_media_sink_fn sink, void *arg);

/* ---- A request handler without sockets ----
 *
 * Everything `flowvault serve` does for one POST, as a pure function of the
 * body and the signature header, so tests and fuzzers can drive it. */

/*
 * The business logic: called with the clear request JSON (NUL-terminated)
 * and the name of the key that decrypted it. Set *http_status to the
 * upstream's status and *response to a malloc'ed buffer of *response_len
 * bytes (may stay NULL when there is no body); the handler wipes and frees
 * it. Return FV_OK when an answer was received, an FV_ERR_* status (after
 * logging why) when the upstream is down, slow or broken.
 * Called from several threads at once by the server.
 */
typedef int (*fv_flow_upstream_fn)(void *arg, const char *key_name,
                                   const char *request, size_t request_len,
                                   long *http_status, char **response,
                                   size_t *response_len);

typedef struct fv_flow_handler_config {
	fv_key *const *keys;        /* tried in order; borrowed, must outlive the handler */
	size_t key_count;           /* at least 1 */
	/* App secrets for X-Hub-Signature-256 (a match with any one passes);
	 * copied, and the copies are wiped when the handler is freed. With
	 * none, the signature is not checked. */
	const char *const *app_secrets;
	const size_t *app_secret_lens;
	size_t app_secret_count;
	/* NULL: only pings and error notifications are answered; anything
	 * else gets 500 and a logged configuration error. */
	fv_flow_upstream_fn upstream;
	void *upstream_arg;
} fv_flow_handler_config;

typedef struct fv_flow_handler fv_flow_handler;

FV_API int fv_flow_handler_new(fv_flow_handler **out,
                               const fv_flow_handler_config *config);
FV_API void fv_flow_handler_free(fv_flow_handler *handler);

/* Why a reply is what it is: for logs and metrics, never clear data. */
typedef enum fv_flow_outcome {
	FV_FLOW_ANSWERED = 0,         /* 200, upstream's answer encrypted */
	FV_FLOW_PING,                 /* 200, {"data":{"status":"active"}} */
	FV_FLOW_ERROR_ACK,            /* 200, error notification acknowledged */
	FV_FLOW_BAD_SIGNATURE,        /* 432 */
	FV_FLOW_UNDECRYPTABLE,        /* 421 */
	FV_FLOW_EXPIRED,              /* 427 from upstream, passed through */
	FV_FLOW_UPSTREAM_ERROR,       /* 500: upstream down, slow, or bad answer */
	FV_FLOW_NO_UPSTREAM,          /* 500: no upstream configured */
	FV_FLOW_KEY_ERROR,            /* 500: a key backend failed */
	FV_FLOW_INTERNAL_ERROR,       /* 500: encryption failed, out of memory */
	FV_FLOW_KEYS_UNAVAILABLE      /* 503: the server's key process is restarting */
} fv_flow_outcome;

/* A short name for an outcome ("answered", "ping", "bad-signature"...). */
FV_API const char *fv_flow_outcome_name(int outcome);

typedef struct fv_flow_reply {
	int http_status;             /* 200, 421, 427, 432, 500 or 503 */
	int outcome;                 /* an fv_flow_outcome */
	char *body;                  /* NUL-terminated, "" for an empty body */
	size_t body_len;
	const char *content_type;    /* "text/plain" when body_len > 0, else NULL */
	long key_index;              /* index of the key that decrypted, or -1 */
	double decrypt_seconds;      /* time spent decrypting (0 if not reached) */
	double upstream_seconds;     /* time spent waiting for upstream (0 if none) */
} fv_flow_reply;

/*
 * Answer one request: `body` is the raw HTTP body, `signature` the
 * X-Hub-Signature-256 header value or NULL when absent. Returns FV_OK with
 * *reply filled for every request, good or bad (the HTTP status says how it
 * went); an error status only for a misuse or when out of memory. Free the
 * reply with fv_flow_reply_clear. Thread-safe: one handler serves many
 * threads.
 */
FV_API int fv_flow_handle(fv_flow_reply *reply, fv_flow_handler *handler,
                          const void *body, size_t body_len,
                          const char *signature);
FV_API void fv_flow_reply_clear(fv_flow_reply *reply);

/* ---- The endpoint server (`flowvault serve`) ---- */

typedef struct fv_server fv_server;

/*
 * Prepare a server from the configuration's "serve" section: open its keys,
 * resolve its app secrets, read TLS files, set up the upstream client.
 * Nothing listens yet. Errors name the JSON path.
 */
FV_API int fv_server_new(fv_server **out, fv_context *ctx);
/*
 * What `flowvault serve --check` proves: bind and release serve.listen and
 * serve.admin_listen, so that fv_server_start can bind them too.
 */
FV_API int fv_server_check(fv_server *server);
/* Bind and start answering (libmicrohttpd thread pool). */
FV_API int fv_server_start(fv_server *server);
/*
 * Start if needed, then serve until SIGTERM or SIGINT, which the caller
 * must have blocked in every thread (sigprocmask before any thread starts):
 * SIGHUP reloads the configuration the context was opened from (with
 * serve.isolation "separated"), and systemd is told about readiness,
 * reloads and the stop when it started the process (sd_notify). Returns
 * after fv_server_shutdown.
 */
FV_API int fv_server_run(fv_server *server);
/* The bound TCP port (useful with "listen": "127.0.0.1:0"), or 0. */
FV_API unsigned int fv_server_port(const fv_server *server);
/*
 * Stop gracefully: stop accepting connections, let requests in flight
 * finish (for at most the upstream timeout plus a margin), then close
 * everything. Safe to call more than once.
 */
FV_API int fv_server_shutdown(fv_server *server);
/* Shut down if still running, and free. */
FV_API void fv_server_free(fv_server *server);

#ifdef __cplusplus
}
#endif

#endif /* FLOWVAULT_FLOW_H */
