/*
 * /metrics: counters and latency histograms in the Prometheus text format.
 * Lock-free: every request touches a few atomics; rendering reads them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../serve_internal.h"

/* Upper bounds in seconds; the last bucket is +Inf. */
static const double bucket_bounds[METRICS_BUCKETS - 1] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10
};

/* Statuses with their own counter; anything else goes into "other". */
static const int known_statuses[METRICS_STATUS_SLOTS - 1] = {
	200, 400, 404, 405, 413, 421, 427, 432, 500, 503, 415, 431
};

#define OUTCOME_COUNT (FV_FLOW_KEYS_UNAVAILABLE + 1)

struct serve_metrics *fv__metrics_map(int separated)
{
	struct serve_metrics *m = mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE,
	                               MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED) {
		fv__error_set(FV_ERR_NOMEM, "serve: cannot map the metrics region: %s",
		              strerror(errno));
		return NULL;
	}
	m->separated = separated;
	return m; /* zero-filled by the kernel */
}

void fv__metrics_unmap(struct serve_metrics *m)
{
	if (m)
		munmap(m, sizeof(*m));
}

int fv__metrics_key_slot(struct serve_metrics *m, const char *name)
{
	unsigned int i, n = atomic_load(&m->key_slots);

	for (i = 0; i < n; i++)
		if (strcmp(m->keys[i].name, name) == 0)
			return (int)i;
	if (n >= METRICS_KEY_SLOTS)
		return -1;
	snprintf(m->keys[n].name, sizeof(m->keys[n].name), "%s", name);
	atomic_store(&m->key_slots, n + 1);
	return (int)n;
}

void fv__metrics_request(struct serve_metrics *m, int http_status)
{
	size_t i;

	for (i = 0; i < METRICS_STATUS_SLOTS - 1; i++)
		if (known_statuses[i] == http_status)
			break;
	atomic_fetch_add(&m->by_status[i], 1);
}

static void observe(struct serve_histogram *h, double seconds)
{
	size_t i;

	for (i = 0; i < METRICS_BUCKETS - 1 && seconds > bucket_bounds[i]; i++)
		;
	atomic_fetch_add(&h->buckets[i], 1);
	atomic_fetch_add(&h->count, 1);
	atomic_fetch_add(&h->sum_us, (uint_fast64_t)(seconds * 1e6));
}

void fv__metrics_reply(struct serve_metrics *m, const fv_flow_reply *reply,
                       const int *key_slots)
{
	if (reply->outcome >= 0 && reply->outcome < OUTCOME_COUNT)
		atomic_fetch_add(&m->by_outcome[reply->outcome], 1);
	if (reply->key_index >= 0 && reply->key_index < SERVE_MAX_KEYS &&
	    key_slots[reply->key_index] >= 0)
		atomic_fetch_add(&m->keys[key_slots[reply->key_index]].requests, 1);
	if (reply->decrypt_seconds > 0)
		observe(&m->decrypt, reply->decrypt_seconds);
	if (reply->upstream_seconds > 0)
		observe(&m->upstream, reply->upstream_seconds);
}

void fv__metrics_media(struct serve_metrics *m, size_t ok, size_t failed, uint64_t clear_bytes)
{
	if (!m)
		return;
	atomic_fetch_add(&m->media_ok, ok);
	atomic_fetch_add(&m->media_failed, failed);
	atomic_fetch_add(&m->media_bytes, clear_bytes);
}

struct text {
	char *buf;
	size_t len, cap;
	int failed;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = 1;
			return;
		}
		if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		{
			size_t cap = t->cap * 2 + (size_t)n;
			char *grown = realloc(t->buf, cap);

			if (!grown) {
				t->failed = 1;
				return;
			}
			t->buf = grown;
			t->cap = cap;
		}
	}
}

static void put_histogram(struct text *t, const char *name, const char *help,
                          struct serve_histogram *h)
{
	uint_fast64_t cumulative = 0;
	size_t i;

	put(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (i = 0; i < METRICS_BUCKETS; i++) {
		cumulative += atomic_load(&h->buckets[i]);
		if (i < METRICS_BUCKETS - 1)
			put(t, "%s_bucket{le=\"%g\"} %ju\n", name, bucket_bounds[i],
			    (uintmax_t)cumulative);
		else
			put(t, "%s_bucket{le=\"+Inf\"} %ju\n", name, (uintmax_t)cumulative);
	}
	put(t, "%s_sum %.6f\n%s_count %ju\n", name,
	    (double)atomic_load(&h->sum_us) / 1e6, name, (uintmax_t)atomic_load(&h->count));
}

/* Label values are key names from the configuration: escape them anyway. */
static void put_label(struct text *t, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			put(t, "\\%c", *s);
		else if (*s == '\n')
			put(t, "\\n");
		else
			put(t, "%c", *s);
	}
}

char *fv__metrics_render(struct serve_metrics *m, size_t *len)
{
	struct text t = { 0 };
	size_t i;

	t.cap = 4096;
	t.buf = malloc(t.cap);
	if (!t.buf)
		return NULL;
	t.buf[0] = '\0';
	put(&t, "# HELP flowvault_requests_total Requests to the Flows endpoint, by HTTP status.\n"
	        "# TYPE flowvault_requests_total counter\n");
	for (i = 0; i < METRICS_STATUS_SLOTS; i++) {
		if (i < METRICS_STATUS_SLOTS - 1)
			put(&t, "flowvault_requests_total{status=\"%d\"} %ju\n", known_statuses[i],
			    (uintmax_t)atomic_load(&m->by_status[i]));
		else
			put(&t, "flowvault_requests_total{status=\"other\"} %ju\n",
			    (uintmax_t)atomic_load(&m->by_status[i]));
	}
	put(&t, "# HELP flowvault_flow_outcomes_total Flows requests by how they were answered.\n"
	        "# TYPE flowvault_flow_outcomes_total counter\n");
	for (i = 0; i < OUTCOME_COUNT; i++)
		put(&t, "flowvault_flow_outcomes_total{outcome=\"%s\"} %ju\n",
		    fv_flow_outcome_name((int)i), (uintmax_t)atomic_load(&m->by_outcome[i]));
	put(&t, "# HELP flowvault_key_requests_total Requests decrypted, by the key that decrypted them.\n"
	        "# TYPE flowvault_key_requests_total counter\n");
	for (i = 0; i < atomic_load(&m->key_slots) && i < METRICS_KEY_SLOTS; i++) {
		put(&t, "flowvault_key_requests_total{key=\"");
		put_label(&t, m->keys[i].name);
		put(&t, "\"} %ju\n", (uintmax_t)atomic_load(&m->keys[i].requests));
	}
	put_histogram(&t, "flowvault_decrypt_seconds",
	              "Time to decrypt a request: RSA-OAEP in the key backend plus AES-GCM.",
	              &m->decrypt);
	put_histogram(&t, "flowvault_upstream_seconds",
	              "Time the business logic (upstream) took to answer.", &m->upstream);
	put(&t, "# HELP flowvault_requests_in_flight Requests being handled now.\n"
	        "# TYPE flowvault_requests_in_flight gauge\n"
	        "flowvault_requests_in_flight %d\n", atomic_load(&m->in_flight));
	put(&t, "# HELP flowvault_config_generation Configuration generation being served "
	        "(1 at start, one more per successful reload).\n"
	        "# TYPE flowvault_config_generation gauge\n"
	        "flowvault_config_generation %u\n", atomic_load(&m->generation));
	put(&t, "# HELP flowvault_reloads_total Reloads (SIGHUP), by result.\n"
	        "# TYPE flowvault_reloads_total counter\n"
	        "flowvault_reloads_total{result=\"ok\"} %ju\n"
	        "flowvault_reloads_total{result=\"failed\"} %ju\n",
	    (uintmax_t)atomic_load(&m->reloads), (uintmax_t)atomic_load(&m->reload_failures));
	put(&t, "# HELP flowvault_media_files_total Media files in Flows requests (serve.media), "
	        "by result: verified and passed on, or reported failed to the upstream.\n"
	        "# TYPE flowvault_media_files_total counter\n"
	        "flowvault_media_files_total{result=\"ok\"} %ju\n"
	        "flowvault_media_files_total{result=\"failed\"} %ju\n"
	        "# HELP flowvault_media_bytes_total Clear bytes of verified media files passed to "
	        "the upstream.\n"
	        "# TYPE flowvault_media_bytes_total counter\n"
	        "flowvault_media_bytes_total %ju\n",
	    (uintmax_t)atomic_load(&m->media_ok), (uintmax_t)atomic_load(&m->media_failed),
	    (uintmax_t)atomic_load(&m->media_bytes));
	if (m->separated)
		put(&t, "# HELP flowvault_process_restarts_total Server processes restarted after "
		        "they died.\n"
		        "# TYPE flowvault_process_restarts_total counter\n"
		        "flowvault_process_restarts_total{process=\"worker\"} %ju\n"
		        "flowvault_process_restarts_total{process=\"key\"} %ju\n",
		    (uintmax_t)atomic_load(&m->worker_restarts),
		    (uintmax_t)atomic_load(&m->keyproc_restarts));
	if (t.failed) {
		free(t.buf);
		return NULL;
	}
	*len = t.len;
	return t.buf;
}
