/*
 * libflowvault Graph API client: put a key's public half on WhatsApp Business
 * phone numbers (`whatsapp_business_encryption`) and prove it is there and
 * VALID. Conventions are those of flowvault.h: fv_status returns,
 * out-parameters first, fv_error_last() for the message.
 *
 * The client reads the configuration's "graph" section (see docs/graph.md):
 * base_url, api_version, access_token (a secret reference), ca_file,
 * timeouts, retries and concurrency. TLS verification is always on. The access
 * token is sent only in the Authorization header and never logged.
 *
 * Threads: one fv_graph is used by one thread at a time; its requests run
 * concurrently inside fv_graph_check on a libcurl multi handle.
 */
#ifndef FLOWVAULT_GRAPH_H
#define FLOWVAULT_GRAPH_H

#include <stddef.h>

#include <flowvault/flowvault.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fv_graph fv_graph;

/* A client for ctx's "graph" section. Resolves graph.access_token now, so a
 * missing or unreadable token is reported here (FV_ERR_CONFIG when there is
 * no access_token, FV_ERR_SECRET when the reference cannot be resolved). */
FV_API int fv_graph_open(fv_graph **out, fv_context *ctx);
/* Wipes the token. */
FV_API void fv_graph_free(fv_graph *graph);

/*
 * Progress of the runs of `graph` (fv_graph_check, WABA listing): called on
 * the calling thread each time one unit of work ends, with how many of
 * `total` are done and how many of those failed at the Graph API so far.
 * NULL turns it off.
 */
typedef void (*fv_graph_progress_fn)(void *arg, size_t done, size_t total, size_t failed);
FV_API void fv_graph_set_progress(fv_graph *graph, fv_graph_progress_fn fn, void *arg);

/* The Graph API root requests go to, e.g. "https://graph.facebook.com/v25.0". */
FV_API const char *fv_graph_endpoint(const fv_graph *graph);

/*
 * The phone-number ids of a WhatsApp Business Account, following the cursor
 * paging to the end. `*ids` is a NULL-terminated array; free it with
 * fv_graph_ids_free. FV_ERR_GRAPH when the Graph API refuses or retries run
 * out.
 */
FV_API int fv_graph_waba_phone_numbers(char ***ids, size_t *count, fv_graph *graph,
                                       const char *waba_id);
FV_API void fv_graph_ids_free(char **ids);

/* What fv_graph_check does for each number. */
enum fv_graph_mode {
	FV_GRAPH_STATUS = 0,   /* read the stored key and its status */
	FV_GRAPH_REGISTER = 1  /* upload the key, then read it back */
};

/* The signature status Graph reports for a number's key. */
enum fv_graph_key_status {
	FV_GRAPH_KEY_NONE = 0,     /* no key stored, or not read */
	FV_GRAPH_KEY_VALID = 1,
	FV_GRAPH_KEY_MISMATCH = 2,
	FV_GRAPH_KEY_UNKNOWN = 3   /* another value: see status_text */
};

/*
 * The outcome for one phone number. The library allocates these; members are
 * only ever appended, so read the ones you know and ignore the size.
 */
typedef struct fv_graph_result {
	const char *phone_number_id;
	/* FV_OK when the number holds our key with status VALID; FV_ERR_GRAPH
	 * when the Graph API refused or retries ran out; FV_ERR_MISMATCH when
	 * the stored key is another one, its status is not VALID, or there is
	 * none. */
	int status;
	int registered;            /* Graph holds a key for this number */
	int key_status;            /* enum fv_graph_key_status */
	const char *status_text;   /* the status as Graph spelled it, or NULL */
	int matches_local;         /* stored key is the same SPKI as ours */
	/* Fingerprint of the stored key (as fv_spki_fingerprint), "" if none. */
	char remote_fingerprint[FV_FINGERPRINT_HEX_SIZE];
	/* When status is not FV_OK: what happened and what to do (never NULL,
	 * "" on success). */
	const char *message;
	/* Graph API error details, when the Graph API answered with an error:
	 * its `code` (or the HTTP status when the body had no error object; -1
	 * when no HTTP answer came at all), `error_subcode` (0 when absent),
	 * the HTTP status (0 when none) and `fbtrace_id` (NULL when absent). */
	int error_code;
	int error_subcode;
	long http_status;
	const char *fbtrace_id;
	unsigned int attempts;     /* HTTP requests made for this number */
} fv_graph_result;

/*
 * For each of `count` phone-number ids, concurrently (graph.max_in_flight at
 * a time): with FV_GRAPH_REGISTER upload `key`'s public key, then read the
 * number's key back and compare it with ours (DER SPKI) and check that its
 * status is VALID. One number's failure never stops the others.
 *
 * `*results` gets `count` entries in the order of `phone_ids` (free with
 * fv_graph_results_free) whenever the return value is not a usage, key or
 * memory error. Returns FV_OK when every number is fine; otherwise
 * FV_ERR_GRAPH if any number got a Graph API error, else FV_ERR_MISMATCH,
 * with a summary message; per-number details are in the results.
 */
FV_API int fv_graph_check(fv_graph_result **results, fv_graph *graph, fv_key *key,
                          const char *const *phone_ids, size_t count, int mode);
FV_API void fv_graph_results_free(fv_graph_result *results, size_t count);

/* "VALID", "MISMATCH", "UNKNOWN" or NULL (FV_GRAPH_KEY_NONE). */
FV_API const char *fv_graph_key_status_name(int key_status);

#ifdef __cplusplus
}
#endif

#endif /* FLOWVAULT_GRAPH_H */
