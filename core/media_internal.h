/*
 * Media downloads as pieces a caller can drive itself (serve runs several at
 * once in a curl multi handle, pinned to addresses its supervisor resolved).
 * fv_media_fetch is these pieces run one after the other.
 */
#ifndef FLOWVAULT_CORE_MEDIA_INTERNAL_H
#define FLOWVAULT_CORE_MEDIA_INTERNAL_H

#include <curl/curl.h>

#include "internal.h"

/* `host` matches an entry of `hosts` (one starting with "." matches its
 * subdomains); hosts NULL: the WhatsApp CDN default. */
FV_INTERNAL int fv__media_host_allowed(const char *host, const char *const *hosts,
                                       size_t count);

/* fv_media_open on a parsed object (which keeps its key strings: the
 * caller wipes them). */
FV_INTERNAL int fv__media_open_object(fv_media **out, json_object *obj);

struct fv__media_download;

/* Check cdn_url (https, host allowed) and prepare its easy handle; the
 * caller may add options (CURLOPT_RESOLVE, a CA blob) before running it. */
FV_INTERNAL int fv__media_download_new(struct fv__media_download **out, fv_media *media,
                                       const fv_media_fetch_options *options,
                                       fv_media_sink_fn sink, void *arg);
FV_INTERNAL CURL *fv__media_download_easy(struct fv__media_download *d);
FV_INTERNAL const char *fv__media_download_host(const struct fv__media_download *d);
FV_INTERNAL const char *fv__media_download_port(const struct fv__media_download *d);
/* The verdict on the transfer (size, redirect, HTTP status, transport);
 * fv_media_final gives the one on the content. */
FV_INTERNAL int fv__media_download_done(struct fv__media_download *d, CURLcode result);
FV_INTERNAL void fv__media_download_free(struct fv__media_download *d);

#endif
