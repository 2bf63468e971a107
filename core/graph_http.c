/*
 * The Graph API request runner: one libcurl multi handle, at most
 * graph.max_in_flight transfers at a time, retries with exponential backoff
 * and full jitter, and the X-Business-Use-Case-Usage rate-limit header.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "graph_internal.h"

/* Answers larger than this are not Graph API answers we know. */
#define GRAPH_MAX_ANSWER (8u * 1024 * 1024)
/* Longest wait between two tries, whatever the backoff says. */
#define GRAPH_BACKOFF_CAP_MS 60000L
/* Code 1 ("unknown error") may be a permanent bug on Meta's side: retry it
 * only this often. */
#define GRAPH_UNKNOWN_ERROR_RETRIES 2u

struct graph_transfer {
	CURL *easy;
	struct curl_slist *headers;
	char *answer;
	size_t answer_len;
	char *usage;                  /* X-Business-Use-Case-Usage, if sent */
	char error[CURL_ERROR_SIZE];
	double started;
};

double graph_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int graph_job_request(struct graph_job *job, const char *method, const char *url,
                      const char *body)
{
	char *url_copy = strdup(url), *body_copy = body ? strdup(body) : NULL;

	if (!url_copy || (body && !body_copy)) {
		free(url_copy);
		free(body_copy);
		return fv__error_nomem();
	}
	free(job->url);
	free(job->body);
	job->method = method;
	job->url = url_copy;
	job->body = body_copy;
	job->tries = 0;
	return FV_OK;
}

enum graph_step graph_job_fail(struct graph_job *job, int status, const char *fmt, ...)
{
	va_list ap;
	char *message = NULL;

	va_start(ap, fmt);
	if (vasprintf(&message, fmt, ap) < 0)
		message = NULL;
	va_end(ap);
	free(job->message);
	job->message = message;
	job->status = status;
	job->done = 1;
	return GRAPH_STEP_FAIL;
}

void graph_job_clear(struct graph_job *job)
{
	free(job->url);
	free(job->body);
	free(job->message);
	free(job->fbtrace_id);
	job->url = job->body = job->message = job->fbtrace_id = NULL;
}

/* ---- What to do with an answer ---- */

enum verdict { VERDICT_OK, VERDICT_RETRY, VERDICT_FAIL };

/* Graph error codes that may succeed when tried again. */
static int code_is_transient(int code)
{
	switch (code) {
	case 1: case 2: case 4: case 17: case 341: case 80007: case 80008:
	case 130429: case 131000: case 131016: case 133004:
		return 1;
	default:
		return 0;
	}
}

/* Codes that never succeed by trying again, whatever `is_transient` says. */
static int code_is_final(int code)
{
	return code == 0 || code == 10 || code == 100 || code == 190 ||
	       (code >= 200 && code <= 299) || code == 368;
}

static int code_is_rate_limit(int code)
{
	return code == 4 || code == 17 || code == 341 || code == 80007 ||
	       code == 80008 || code == 130429;
}

/* What to do about an error code: the part of the message that says it. */
static const char *code_advice(int code)
{
	if (code == 190)
		return "the access token is expired or invalid: create a new system-user "
		       "token in Meta Business Manager and point graph.access_token at it";
	if (code == 10 || (code >= 200 && code <= 299))
		return "permission denied: give the token's system user the "
		       "whatsapp_business_management permission on this WABA, and check that "
		       "the phone number is allow-listed for the app";
	if (code == 100)
		return "invalid parameter: the key is not a valid RSA-2048 public key PEM, or "
		       "the phone-number id does not exist or does not belong to the token's "
		       "WABA (flowvault status --waba ID lists the numbers)";
	if (code == 0)
		return "the request could not be authenticated: check the app and the token";
	if (code == 368)
		return "the account is temporarily blocked for policy violations: see "
		       "Business Support Home";
	if (code_is_rate_limit(code))
		return "the Graph API rate limit was reached: wait and run the command again";
	if (code_is_transient(code))
		return "the Graph API is temporarily unavailable: run the command again later";
	return "see the Graph API error code reference";
}

static void append(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t size, const char *fmt, ...)
{
	size_t used = strlen(buf);
	va_list ap;

	if (used + 1 >= size)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + used, size - used, fmt, ap);
	va_end(ap);
}

static const char *json_string_field(json_object *obj, const char *name)
{
	json_object *v;

	if (obj && json_object_object_get_ex(obj, name, &v) &&
	    json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return NULL;
}

static int json_int_field(json_object *obj, const char *name, int *out)
{
	json_object *v;

	if (!obj || !json_object_object_get_ex(obj, name, &v) ||
	    !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_string)))
		return 0;
	*out = json_object_get_int(v);
	return 1;
}

/* A random duration in [0, limit_ms]: "full jitter" spreads the retries of
 * concurrent requests instead of synchronising them. */
static double full_jitter_seconds(long limit_ms)
{
	uint32_t r = 0;

	/* Jitter needs no secrecy, but one generator is simpler to reason about;
	 * should it fail, wait half the limit (the mean of full jitter). */
	if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1) {
		ERR_clear_error();
		r = UINT32_MAX / 2;
	}
	return (double)limit_ms * ((double)r / 4294967295.0) / 1000.0;
}

static double backoff_seconds(const struct fv_graph *g, unsigned int tries)
{
	long limit = g->settings.retry_base_ms;
	unsigned int i;

	for (i = 1; i < tries && limit < GRAPH_BACKOFF_CAP_MS; i++)
		limit *= 2;
	if (limit > GRAPH_BACKOFF_CAP_MS)
		limit = GRAPH_BACKOFF_CAP_MS;
	return full_jitter_seconds(limit);
}

/*
 * X-Business-Use-Case-Usage: {"<business id>": [{"type": ...,
 * "estimated_time_to_regain_access": <minutes>, ...}]}. The longest regain
 * time in seconds, or 0 when none is announced.
 */
static double usage_wait_seconds(const char *header, char *business, size_t business_len)
{
	json_object *usage = header ? json_tokener_parse(header) : NULL;
	double longest = 0;

	business[0] = '\0';
	if (!usage || !json_object_is_type(usage, json_type_object)) {
		json_object_put(usage);
		return 0;
	}
	json_object_object_foreach(usage, id, entries) {
		size_t i, n;

		if (!json_object_is_type(entries, json_type_array))
			continue;
		n = json_object_array_length(entries);
		for (i = 0; i < n; i++) {
			json_object *entry = json_object_array_get_idx(entries, i), *v;
			double minutes;

			if (!json_object_is_type(entry, json_type_object) ||
			    !json_object_object_get_ex(entry, "estimated_time_to_regain_access", &v))
				continue;
			minutes = json_object_get_double(v);
			if (minutes * 60.0 > longest) {
				longest = minutes * 60.0;
				snprintf(business, business_len, "%s", id);
			}
		}
	}
	json_object_put(usage);
	return longest;
}

/* The host part of a URL, for messages. */
static void url_host(char *out, size_t len, const char *url)
{
	const char *start = strstr(url, "://"), *end;

	start = start ? start + 3 : url;
	end = strchr(start, '/');
	snprintf(out, len, "%.*s", (int)(end ? (size_t)(end - start) : strlen(start)), start);
}

/* The URL without its query, for messages and logs: a query could carry
 * paging cursors or, from a misbehaving server, an access_token. */
static void url_for_log(char *out, size_t len, const char *url)
{
	const char *q = strchr(url, '?');

	snprintf(out, len, "%.*s%s", (int)(q ? (size_t)(q - url) : strlen(url)), url,
	         q ? "?..." : "");
}

/* Names whose values are credentials wherever they appear in a URL query
 * or a JSON answer: the Graph API puts access_token into paging.next. */
static const char *const secret_names[] = {
	"access_token", "appsecret_proof", "client_secret", "fb_exchange_token",
	"input_token", NULL
};

/*
 * Copy `in` to `out` for a log line with the value of every secret_names
 * parameter or member replaced by "***": "access_token=EAAG..." and
 * "\"access_token\": \"EAAG...\"" alike.
 */
static void redact_for_log(char *out, size_t len, const char *in)
{
	size_t o = 0;

	if (!len)
		return;
	while (*in && o + 1 < len) {
		const char *const *name;
		size_t n = 0;

		for (name = secret_names; *name; name++) {
			n = strlen(*name);
			if (strncasecmp(in, *name, n) == 0)
				break;
		}
		if (*name) {
			const char *v = in + n;

			if (*v == '"')
				v++;
			v += strspn(v, " \t:=");
			if (*v == '"')
				v++;
			/* Keep the name and separators, drop the value up to its end. */
			while (in < v && o + 1 < len)
				out[o++] = *in++;
			in += strcspn(in, "&\"',; \t\r\n}");
			for (const char *m = "***"; *m && o + 1 < len; m++)
				out[o++] = *m;
			continue;
		}
		out[o++] = *in++;
	}
	out[o] = '\0';
}

struct classification {
	enum verdict verdict;
	int code;
	int subcode;
	int graph_error;              /* the answer carried a Graph error object */
	char message[768];
	char *fbtrace_id;
	json_object *answer;          /* parsed 2xx answer (VERDICT_OK) */
};

static void classify_transport(struct classification *c, CURLcode rc,
                               const struct graph_transfer *t,
                               const struct fv_graph *g, const char *url)
{
	char host[256];
	const char *detail = t->error[0] ? t->error : curl_easy_strerror(rc);

	url_host(host, sizeof(host), url);
	c->code = -1;
	switch (rc) {
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		c->verdict = VERDICT_FAIL;
		snprintf(c->message, sizeof(c->message),
		         "TLS: the certificate of %s is not trusted (%s); if the server uses a "
		         "private CA, set graph.ca_file to that CA's certificate", host, detail);
		return;
	case CURLE_OPERATION_TIMEDOUT:
		c->verdict = VERDICT_RETRY;
		snprintf(c->message, sizeof(c->message),
		         "no answer from %s within graph.timeout_seconds (%.3g s) or "
		         "graph.connect_timeout_seconds (%.3g s): %s", host,
		         (double)g->settings.timeout_ms / 1000.0,
		         (double)g->settings.connect_timeout_ms / 1000.0, detail);
		return;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		c->verdict = VERDICT_RETRY;
		snprintf(c->message, sizeof(c->message),
		         "connection to %s failed: %s; check graph.base_url and the network",
		         host, detail);
		return;
	default:
		c->verdict = VERDICT_FAIL;
		snprintf(c->message, sizeof(c->message), "request to %s failed: %s", host,
		         detail);
	}
}

static void classify_answer(struct classification *c, long http,
                            const struct graph_transfer *t, const char *url)
{
	json_object *answer = NULL, *error;
	enum json_tokener_error jerr = json_tokener_success;
	json_tokener *tok = json_tokener_new();
	char host[256];
	int transient = 0;

	url_host(host, sizeof(host), url);
	if (tok) {
		answer = json_tokener_parse_ex(tok, t->answer ? t->answer : "",
		                               (int)t->answer_len);
		jerr = json_tokener_get_error(tok);
		if (!answer || jerr != json_tokener_success ||
		    json_tokener_get_parse_end(tok) < t->answer_len) {
			json_object_put(answer);
			answer = NULL;
		}
		json_tokener_free(tok);
	}
	if (http >= 200 && http < 300) {
		if (answer && json_object_is_type(answer, json_type_object)) {
			c->verdict = VERDICT_OK;
			c->answer = answer;
			return;
		}
		json_object_put(answer);
		/* A cut or garbled answer is a transport problem, worth a retry. */
		c->verdict = VERDICT_RETRY;
		c->code = (int)http;
		snprintf(c->message, sizeof(c->message),
		         "the Graph API at %s sent malformed JSON (HTTP %ld, %zu bytes)", host,
		         http, t->answer_len);
		return;
	}
	if (answer && json_object_object_get_ex(answer, "error", &error) &&
	    json_object_is_type(error, json_type_object)) {
		const char *message = json_string_field(error, "message");
		const char *type = json_string_field(error, "type");
		const char *user_msg = json_string_field(error, "error_user_msg");
		const char *trace = json_string_field(error, "fbtrace_id");
		json_object *v;

		c->graph_error = 1;
		if (!json_int_field(error, "code", &c->code))
			c->code = (int)http;
		json_int_field(error, "error_subcode", &c->subcode);
		if (json_object_object_get_ex(error, "is_transient", &v))
			transient = json_object_get_boolean(v);
		if (trace)
			c->fbtrace_id = strdup(trace);
		snprintf(c->message, sizeof(c->message), "Graph API error %d", c->code);
		if (c->subcode)
			append(c->message, sizeof(c->message), " (subcode %d)", c->subcode);
		if (type)
			append(c->message, sizeof(c->message), " %s", type);
		append(c->message, sizeof(c->message), ": %s",
		       message ? message : "(no message)");
		if (user_msg)
			append(c->message, sizeof(c->message), " (%s)", user_msg);
		append(c->message, sizeof(c->message), "; %s", code_advice(c->code));
		if (trace)
			append(c->message, sizeof(c->message),
			       " [fbtrace_id %s: quote it to Meta support]", trace);
		json_object_put(answer);
		/* A final Graph code wins over a retryable HTTP status. */
		c->verdict = !code_is_final(c->code) &&
		                     (code_is_transient(c->code) || transient || http == 429 ||
		                      http >= 500)
		                     ? VERDICT_RETRY
		                     : VERDICT_FAIL;
		return;
	}
	json_object_put(answer);
	c->code = (int)http;
	c->verdict = (http == 429 || http >= 500) ? VERDICT_RETRY : VERDICT_FAIL;
	snprintf(c->message, sizeof(c->message), "HTTP %ld from the Graph API at %s%s", http,
	         host, c->verdict == VERDICT_RETRY ? " (server busy or failing)"
	                                           : " without a Graph error object");
}

/* ---- Transfers ---- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct graph_transfer *t = arg;
	size_t len = size * nmemb;
	char *grown;

	if (t->answer_len + len > GRAPH_MAX_ANSWER)
		return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
	grown = realloc(t->answer, t->answer_len + len + 1);
	if (!grown)
		return 0;
	memcpy(grown + t->answer_len, data, len);
	t->answer = grown;
	t->answer_len += len;
	t->answer[t->answer_len] = '\0';
	return len;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	static const char name[] = "x-business-use-case-usage:";
	struct graph_transfer *t = arg;
	size_t len = size * nmemb;

	if (len > sizeof(name) - 1 && strncasecmp(data, name, sizeof(name) - 1) == 0) {
		const char *v = data + sizeof(name) - 1;
		size_t vlen = len - (sizeof(name) - 1);

		while (vlen && (*v == ' ' || *v == '\t'))
			v++, vlen--;
		while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
			vlen--;
		free(t->usage);
		t->usage = strndup(v, vlen);
	}
	return len;
}

/* Add graph.ca_file's certificates to the trust store libcurl set up, so a
 * private CA is trusted in addition to the system's. */
static CURLcode on_ssl_ctx(CURL *easy, void *ssl_ctx, void *arg)
{
	const struct fv_graph *g = arg;
	X509_STORE *store = SSL_CTX_get_cert_store((SSL_CTX *)ssl_ctx);
	int i;

	(void)easy;
	for (i = 0; g->ca_certs && i < sk_X509_num(g->ca_certs); i++)
		if (X509_STORE_add_cert(store, sk_X509_value(g->ca_certs, i)) != 1)
			ERR_clear_error(); /* already there: fine */
	return CURLE_OK;
}

static void transfer_free(struct graph_transfer *t)
{
	struct curl_slist *h;

	if (!t)
		return;
	if (t->easy)
		curl_easy_cleanup(t->easy);
	/* Our copy of the Authorization header holds the token. */
	for (h = t->headers; h; h = h->next)
		OPENSSL_cleanse(h->data, strlen(h->data));
	curl_slist_free_all(t->headers);
	free(t->answer);
	free(t->usage);
	free(t);
}

static int transfer_start(struct fv_graph *g, struct graph_job *job)
{
	struct graph_transfer *t = calloc(1, sizeof(*t));
	struct curl_slist *h;
	char shown[512];
	CURLcode rc = CURLE_OK;

	if (!t || !(t->easy = curl_easy_init())) {
		free(t);
		return fv__error_nomem();
	}
	h = curl_slist_append(NULL, g->auth_header);
	if (h)
		t->headers = h;
	if (h && job->body)
		h = curl_slist_append(t->headers,
		                      "Content-Type: application/x-www-form-urlencoded");
	if (h)
		h = curl_slist_append(t->headers, "Accept: application/json");
	if (!h) {
		transfer_free(t);
		return fv__error_nomem();
	}
	t->started = graph_now();
#define SET(opt, val) if (rc == CURLE_OK) rc = curl_easy_setopt(t->easy, opt, val)
	SET(CURLOPT_URL, job->url);
	SET(CURLOPT_PROTOCOLS_STR, "https");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_NOSIGNAL, 1L);
	/* TLS verification is always on; there is deliberately no switch. */
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	SET(CURLOPT_HTTPHEADER, t->headers);
	SET(CURLOPT_USERAGENT, g->user_agent);
	SET(CURLOPT_TIMEOUT_MS, g->settings.timeout_ms);
	SET(CURLOPT_CONNECTTIMEOUT_MS, g->settings.connect_timeout_ms);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, t);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, t);
	SET(CURLOPT_ERRORBUFFER, t->error);
	SET(CURLOPT_PRIVATE, job);
	SET(CURLOPT_ACCEPT_ENCODING, "");
	if (g->ca_certs) {
		SET(CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
		SET(CURLOPT_SSL_CTX_DATA, g);
	}
	if (job->body) {
		SET(CURLOPT_POSTFIELDS, job->body);
		SET(CURLOPT_POSTFIELDSIZE, (long)strlen(job->body));
	} else {
		SET(CURLOPT_HTTPGET, 1L);
	}
#undef SET
	if (rc != CURLE_OK) {
		transfer_free(t);
		return fv__error_set(FV_ERR_GENERIC, "libcurl refused an option: %s",
		                     curl_easy_strerror(rc));
	}
	if (curl_multi_add_handle(g->multi, t->easy) != CURLM_OK) {
		transfer_free(t);
		return fv__error_set(FV_ERR_GENERIC, "libcurl could not start a transfer");
	}
	job->transfer = t;
	job->tries++;
	job->attempts++;
	url_for_log(shown, sizeof(shown), job->url);
	fv__log(FV_LOG_INFO, "graph: %s %s (try %u of %u; Authorization: Bearer ***)",
	        job->method, shown, job->tries, g->settings.max_retries + 1);
	fv__log(FV_LOG_DEBUG, "graph: > User-Agent: %s", g->user_agent);
	if (job->body)
		fv__log(FV_LOG_DEBUG, "graph: > Content-Type: application/x-www-form-urlencoded "
		        "(%zu bytes)", strlen(job->body));
	return FV_OK;
}

/* Decide what happens after a finished transfer. */
static void transfer_done(struct fv_graph *g, struct graph_job *job, CURLcode rc)
{
	struct graph_transfer *t = job->transfer;
	struct classification c = { 0 };
	char shown[512], business[128];
	double now = graph_now(), wait = 0, regain;
	long http = 0;
	unsigned int allowed;

	job->transfer = NULL;
	curl_multi_remove_handle(g->multi, t->easy);
	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &http);
	url_for_log(shown, sizeof(shown), job->url);
	if (rc == CURLE_OK) {
		fv__log(FV_LOG_INFO, "graph: < HTTP %ld from %s %s in %.0f ms", http, job->method,
		        shown, (now - t->started) * 1000.0);
		if (t->answer && fv__log_enabled(FV_LOG_DEBUG)) {
			char shown_answer[1024];

			redact_for_log(shown_answer, sizeof(shown_answer), t->answer);
			fv__log(FV_LOG_DEBUG, "graph: < %s", shown_answer);
		}
		classify_answer(&c, http, t, job->url);
	} else {
		fv__log(FV_LOG_INFO, "graph: %s %s failed after %.0f ms: %s", job->method, shown,
		        (now - t->started) * 1000.0, t->error[0] ? t->error : curl_easy_strerror(rc));
		classify_transport(&c, rc, t, g, job->url);
	}

	/* A rate-limit announcement holds back every request, not only this one. */
	regain = usage_wait_seconds(t->usage, business, sizeof(business));
	if (regain > 0) {
		if (regain <= g->settings.max_wait_seconds) {
			fv__log(FV_LOG_WARNING,
			        "graph: rate limit for business %s: waiting %.0f s as the Graph API asks",
			        business, regain);
			if (now + regain > g->paused_until)
				g->paused_until = now + regain;
			wait = regain;
		} else if (!g->stop_message) {
			time_t when = time(NULL) + (time_t)(regain + 0.999);
			char stamp[64];
			struct tm tm;

			gmtime_r(&when, &tm);
			strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M UTC", &tm);
			if (asprintf(&g->stop_message,
			             "the Graph API rate limit for business %s is reached; access "
			             "returns in about %.0f minutes, longer than graph.max_wait_seconds "
			             "(%.0f s): try again after %s", business, (double)(long)(regain / 60.0 + 0.999),
			             g->settings.max_wait_seconds, stamp) < 0)
				g->stop_message = NULL;
		}
	}

	if (c.verdict == VERDICT_OK) {
		enum graph_step step;

		job->error_code = -1; /* a refusal by the handler is not a Graph code */
		job->error_subcode = 0;
		step = job->on_answer(job, c.answer);

		json_object_put(c.answer);
		job->http_status = http;
		if (step == GRAPH_STEP_DONE) {
			job->done = 1;
			job->status = FV_OK;
		} else if (step == GRAPH_STEP_NEXT) {
			job->not_before = 0;
		}
		transfer_free(t);
		return;
	}

	allowed = g->settings.max_retries;
	if (c.code == 1 && c.graph_error && allowed > GRAPH_UNKNOWN_ERROR_RETRIES)
		allowed = GRAPH_UNKNOWN_ERROR_RETRIES;
	if (c.verdict == VERDICT_RETRY && regain > g->settings.max_wait_seconds)
		c.verdict = VERDICT_FAIL; /* the stop message says when to come back */
	job->http_status = http;
	job->error_code = c.code;
	job->error_subcode = c.subcode;
	free(job->fbtrace_id);
	job->fbtrace_id = c.fbtrace_id;
	if (c.verdict == VERDICT_RETRY && job->tries <= allowed) {
		double delay = backoff_seconds(g, job->tries);

		if (wait > delay)
			delay = wait;
		job->not_before = now + delay;
		fv__log(FV_LOG_INFO, "graph: %s; retrying %s %s in %.0f ms", c.message,
		        job->method, shown, delay * 1000.0);
	} else if (c.verdict == VERDICT_RETRY) {
		graph_job_fail(job, FV_ERR_GRAPH, "%s; retries ran out after %u tries "
		               "(graph.max_retries is %u): try again later", c.message,
		               job->tries, g->settings.max_retries);
	} else if (g->stop_message && regain > g->settings.max_wait_seconds) {
		graph_job_fail(job, FV_ERR_GRAPH, "%s; %s", c.message, g->stop_message);
	} else {
		graph_job_fail(job, FV_ERR_GRAPH, "%s", c.message);
		/* A refused token (190) is refused for every other number too: start
		 * no more requests. */
		if (c.code == 190 && c.graph_error && !g->stop_message &&
		    asprintf(&g->stop_message, "not tried: the access token was refused (%s)",
		             c.message) < 0)
			g->stop_message = NULL;
	}
	transfer_free(t);
}

/* Tell the progress callback how far the run is. */
static void run_progress(const struct fv_graph *g, struct graph_job **jobs, size_t count,
                         size_t pending)
{
	size_t i, failed = 0;

	if (!g->progress)
		return;
	for (i = 0; i < count; i++)
		failed += jobs[i]->done && jobs[i]->status != FV_OK;
	g->progress(g->progress_arg, count - pending, count, failed);
}

int graph_run(struct fv_graph *g, struct graph_job **jobs, size_t count)
{
	size_t pending = 0, in_flight = 0, i;
	int rc = FV_OK;

	for (i = 0; i < count; i++)
		if (!jobs[i]->done)
			pending++;
	while (pending) {
		double now = graph_now(), wake = now + 1.0;
		CURLMsg *msg;
		int running, left, timeout_ms, finished;

		/* Start what may start: free slots, backoff over, no rate-limit pause. */
		for (i = 0; i < count && rc == FV_OK; i++) {
			struct graph_job *job = jobs[i];

			if (job->done || job->transfer)
				continue;
			if (g->stop_message) {
				if (!job->attempts)
					job->error_code = -1;
				graph_job_fail(job, FV_ERR_GRAPH, "%s", g->stop_message);
				pending--;
				run_progress(g, jobs, count, pending);
				continue;
			}
			if (job->not_before > now || g->paused_until > now ||
			    in_flight >= g->settings.max_in_flight) {
				double at = job->not_before > g->paused_until ? job->not_before
				                                              : g->paused_until;
				if (at > now && at < wake)
					wake = at;
				continue;
			}
			if ((rc = transfer_start(g, job)) == FV_OK)
				in_flight++;
		}
		if (rc != FV_OK)
			break;
		if (!pending)
			break;

		if (curl_multi_perform(g->multi, &running) != CURLM_OK) {
			rc = fv__error_set(FV_ERR_GENERIC, "libcurl multi handle failed");
			break;
		}
		finished = 0;
		while ((msg = curl_multi_info_read(g->multi, &left))) {
			struct graph_job *job;
			char *private = NULL;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &private);
			job = (struct graph_job *)(void *)private;
			in_flight--;
			transfer_done(g, job, msg->data.result);
			finished++;
			if (job->done) {
				pending--;
				run_progress(g, jobs, count, pending);
			}
		}
		/* A finished transfer frees a slot or sets up a next request:
		 * start over at once instead of waiting. */
		if (!pending || finished)
			continue;
		now = graph_now();
		timeout_ms = (int)((wake - now) * 1000.0) + 1;
		if (timeout_ms < 1)
			timeout_ms = 1;
		if (timeout_ms > 1000)
			timeout_ms = 1000;
		if (in_flight)
			curl_multi_poll(g->multi, NULL, 0, timeout_ms, NULL);
		else
			nanosleep(&(struct timespec){ .tv_sec = timeout_ms / 1000,
			                              .tv_nsec = (timeout_ms % 1000) * 1000000L },
			          NULL);
	}
	if (rc != FV_OK) {
		/* Tear down transfers still running so jobs can be freed. */
		for (i = 0; i < count; i++) {
			if (jobs[i]->transfer) {
				curl_multi_remove_handle(g->multi, jobs[i]->transfer->easy);
				transfer_free(jobs[i]->transfer);
				jobs[i]->transfer = NULL;
			}
		}
	}
	return rc;
}
