/*
 * Internals of the Graph API client (core/graph*.c only): the parsed "graph"
 * section, the client, and the request runner with retries.
 */
#ifndef FLOWVAULT_CORE_GRAPH_INTERNAL_H
#define FLOWVAULT_CORE_GRAPH_INTERNAL_H

#include <curl/curl.h>
#include <openssl/x509.h>

#include "internal.h"

#define GRAPH_DEFAULT_BASE_URL "https://graph.facebook.com"
#define GRAPH_DEFAULT_API_VERSION "v25.0"

struct graph_settings {
	char *base_url;               /* no trailing '/' */
	char *api_version;
	char *token_reference;
	char *ca_file;                /* absolute, or NULL */
	long timeout_ms;
	long connect_timeout_ms;
	unsigned int max_retries;
	unsigned int max_in_flight;
	double max_wait_seconds;
	long retry_base_ms;
};

struct fv_graph {
	struct graph_settings settings;
	char *endpoint;               /* base_url "/" api_version */
	char *origin;                 /* "https://host[:port]/": paging must stay there */
	char *auth_header;            /* "Authorization: Bearer <token>", wiped on free */
	STACK_OF(X509) *ca_certs;     /* graph.ca_file, added to the default trust */
	CURLM *multi;
	char user_agent[64];
	/* A rate-limit answer asks to wait: no request starts before this
	 * (monotonic seconds). */
	double paused_until;
	/* Set when the rate limit lasts longer than graph.max_wait_seconds:
	 * requests not yet started fail with this message. */
	char *stop_message;
	/* fv_graph_set_progress: told each time a job of a run ends. */
	fv_graph_progress_fn progress;
	void *progress_arg;
};

/* What a request's success handler tells the runner. */
enum graph_step {
	GRAPH_STEP_DONE = 0,  /* the job is finished successfully */
	GRAPH_STEP_NEXT = 1,  /* the job has set up its next request */
	GRAPH_STEP_FAIL = 2   /* the job failed: graph_job_fail was called */
};

struct graph_transfer;

/* One unit of work: a chain of requests, each retried on its own. */
struct graph_job {
	/* The request to make (set by the owner; runner frees url/body when a
	 * new request is set with graph_job_request). */
	const char *method;           /* "GET" or "POST" */
	char *url;
	char *body;                   /* form body for POST, or NULL */
	/* Called with the parsed JSON of a 2xx answer. */
	enum graph_step (*on_answer)(struct graph_job *job, json_object *answer);
	void *arg;

	/* Outcome, filled by the runner. */
	int done;
	int status;                   /* FV_OK, or FV_ERR_* when failed */
	char *message;
	int error_code;
	int error_subcode;
	long http_status;
	char *fbtrace_id;
	unsigned int attempts;        /* all requests of this job */

	/* Runner state. */
	unsigned int tries;           /* tries of the current request */
	double not_before;            /* monotonic seconds */
	struct graph_transfer *transfer;
};

/* Set the next request of `job` (copies url and body). */
int graph_job_request(struct graph_job *job, const char *method, const char *url,
                      const char *body);
/* Mark `job` failed with a message (and FV_ERR_GRAPH unless status says
 * otherwise). Returns GRAPH_STEP_FAIL. */
enum graph_step graph_job_fail(struct graph_job *job, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void graph_job_clear(struct graph_job *job);

/* Run jobs to completion, graph.max_in_flight requests at a time, with retry,
 * backoff and rate-limit waits. Each job's outcome is in the job; returns
 * FV_OK unless the runner itself failed (memory, libcurl). */
int graph_run(struct fv_graph *graph, struct graph_job **jobs, size_t count);

/* Monotonic clock in seconds. */
double graph_now(void);

#endif
