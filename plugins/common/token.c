/*
 * A cached bearer token, shared by the threads of one plugin instance: one
 * fetch when it is missing or about to expire, never one per decrypt. See
 * cloud.h.
 */
#include <pthread.h>
#include <string.h>

#include "cloud.h"

/* Refresh this long before expiry (Google's and Microsoft's clients use
 * five minutes), or at half the lifetime of a short-lived token. */
#define TOKEN_REFRESH_MARGIN_MS (5 * 60 * 1000)

int cloud_token_init(struct cloud_token *t)
{
	memset(t, 0, sizeof(*t));
	if (pthread_mutex_init(&t->lock, NULL) != 0)
		return FV_ERR_NOMEM;
	t->initialized = 1;
	return FV_OK;
}

void cloud_token_destroy(const fv_host *host, struct cloud_token *t)
{
	if (!t || !t->initialized)
		return;
	cloud_secret_clear(host, &t->value);
	pthread_mutex_destroy(&t->lock);
	t->initialized = 0;
}

int cloud_token_get(const fv_host *host, struct cloud_token *t,
                    cloud_token_fetch_fn fetch, void *arg, int64_t deadline_ms,
                    struct cloud_secret *copy)
{
	int64_t now, lifetime_s = 0, margin;
	int rc = FV_OK;

	/* Held across the fetch: concurrent callers wait for that one fetch
	 * instead of each asking the token service. */
	pthread_mutex_lock(&t->lock);
	now = cloud_now_ms();
	if (!t->value.data || now >= t->refresh_at_ms) {
		struct cloud_secret fresh = { NULL, 0 };

		rc = fetch(arg, deadline_ms, &fresh, &lifetime_s);
		if (rc == FV_OK) {
			cloud_secret_clear(host, &t->value);
			t->value = fresh;
			t->fetches++;
			if (lifetime_s <= 0) {
				t->refresh_at_ms = INT64_MAX; /* a configured token: never */
			} else {
				margin = lifetime_s * 1000 / 2;
				if (margin > TOKEN_REFRESH_MARGIN_MS)
					margin = TOKEN_REFRESH_MARGIN_MS;
				t->refresh_at_ms = cloud_now_ms() + lifetime_s * 1000 - margin;
			}
		} else {
			cloud_secret_clear(host, &fresh);
		}
	}
	if (rc == FV_OK)
		rc = cloud_secret_set(host, t->value.data, t->value.len, copy);
	pthread_mutex_unlock(&t->lock);
	return rc;
}

void cloud_token_invalidate(struct cloud_token *t, const struct cloud_secret *used)
{
	pthread_mutex_lock(&t->lock);
	/* Only the token that was refused: another thread may have a new one. */
	if (t->value.data && used && used->data && t->value.len == used->len &&
	    memcmp(t->value.data, used->data, used->len) == 0 && t->refresh_at_ms != INT64_MAX)
		t->refresh_at_ms = 0;
	pthread_mutex_unlock(&t->lock);
}

uint64_t cloud_token_fetches(struct cloud_token *t)
{
	uint64_t n;

	pthread_mutex_lock(&t->lock);
	n = t->fetches;
	pthread_mutex_unlock(&t->lock);
	return n;
}
