/*
 * Key rotation: KEY -> NAME in steps, each recorded in the journal
 * (journal.c) before the next one starts, so that an interrupted rotation
 * continues where it stopped. See lifecycle.h for the steps and
 * docs/lifecycle.md for the operator's view.
 *
 * Invariant: no phone number is moved to NAME before serve.keys holds NAME,
 * and KEY stays in serve.keys until --finish (aborting: NAME stays until
 * every number is back on KEY), so every number always holds a key that
 * `flowvault serve` decrypts with (once serve has reloaded or restarted on
 * the configuration). A key is deleted only after the configuration stopped
 * naming it.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libgen.h>
#include <signal.h>
#include <unistd.h>

#include "graph_internal.h"
#include "serve_internal.h"

struct fv_rotation {
	char *config_path;
	char *journal_path;
	char *key, *new_name;
	json_object *entry;          /* the new key entry, as journaled */
	int state;
	int generating;              /* "generating" recorded, "generated" not yet */
	char fingerprint[FV_FINGERPRINT_HEX_SIZE];
	char **targets;
	size_t target_count;
	unsigned char *registered;   /* holds NAME (journaled "registered") */
	unsigned char *restored;     /* holds KEY again (abort: "restored") */
	char **errors;               /* last journaled failure, or NULL */
	int64_t started_at, switched_at, finished_at, aborted_at, state_since;
	long grace_seconds;
	int destroyed;
	int finish_destroy;          /* "finishing" recorded with destroy */
	json_object *old_entry;      /* keys.KEY as "finishing" recorded it */
	int abort_destroy;           /* "aborting" recorded with destroy */
	int new_destroyed;
	/* The last batch of uploads journaled ("uploading") and those of its
	 * numbers with no result line after it: requests that may still have
	 * been in flight when the process that sent them died. */
	int64_t upload_at;
	json_object *upload_open;    /* {PHONE: true}, or NULL */
	char *serve_note;

	/* While working. */
	struct fv__journal *journal;
	const fv_rotate_options *opts;
	int resumed;
};

const char *fv_rotation_state_name(int state)
{
	static const char *const names[] = { "none", "begun", "prepared", "generated",
	                                     "registering", "switched", "finished",
	                                     "aborting", "aborted", "finishing" };

	return state >= 0 && state <= FV_ROTATION_FINISHING ? names[state] : "unknown";
}

const char *fv_rotation_number_state_name(int state)
{
	return state == FV_ROTATION_NUMBER_NEW_KEY ? "new_key"
	     : state == FV_ROTATION_NUMBER_FAILED ? "failed" : "old_key";
}

/* ---- Small JSON helpers ---- */

static const char *jstr(json_object *o, const char *name)
{
	json_object *v;

	return o && json_object_object_get_ex(o, name, &v) &&
	       json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static int64_t jint(json_object *o, const char *name)
{
	json_object *v;

	return o && json_object_object_get_ex(o, name, &v) ? json_object_get_int64(v) : 0;
}

static json_object *jget(json_object *o, const char *name)
{
	json_object *v;

	return o && json_object_object_get_ex(o, name, &v) ? v : NULL;
}

static json_object *jcopy(json_object *src)
{
	json_object *dst = NULL;

	if (!src || json_object_deep_copy(src, &dst, NULL) != 0)
		return NULL;
	return dst;
}

static int array_has(json_object *array, const char *s)
{
	size_t i;

	for (i = 0; array && i < json_object_array_length(array); i++)
		if (strcmp(json_object_get_string(json_object_array_get_idx(array, i)), s) == 0)
			return 1;
	return 0;
}

static json_object *record_new(const char *event)
{
	json_object *o = json_object_new_object();

	if (o)
		json_object_object_add(o, "event", json_object_new_string(event));
	return o;
}

/* ---- The rotation as the journal tells it ---- */

static void targets_clear(struct fv_rotation *r)
{
	size_t i;

	for (i = 0; i < r->target_count; i++) {
		free(r->targets[i]);
		free(r->errors[i]);
	}
	free(r->targets);
	free(r->errors);
	free(r->registered);
	free(r->restored);
	r->targets = r->errors = NULL;
	r->registered = r->restored = NULL;
	r->target_count = 0;
}

void fv_rotation_free(fv_rotation *r)
{
	if (!r)
		return;
	fv__journal_close(r->journal);
	targets_clear(r);
	json_object_put(r->entry);
	json_object_put(r->old_entry);
	json_object_put(r->upload_open);
	free(r->config_path);
	free(r->journal_path);
	free(r->key);
	free(r->new_name);
	free(r->serve_note);
	free(r);
}

static ssize_t target_index(const struct fv_rotation *r, const char *id)
{
	size_t i;

	for (i = 0; id && i < r->target_count; i++)
		if (strcmp(r->targets[i], id) == 0)
			return (ssize_t)i;
	return -1;
}

/* Add `id` to the targets unless it is there. */
static int target_add(struct fv_rotation *r, const char *id)
{
	size_t n = r->target_count;
	void *p;

	if (!id || target_index(r, id) >= 0)
		return FV_OK;
	if (!(p = realloc(r->targets, (n + 1) * sizeof(*r->targets))))
		return fv__error_nomem();
	r->targets = p;
	if (!(p = realloc(r->errors, (n + 1) * sizeof(*r->errors))))
		return fv__error_nomem();
	r->errors = p;
	if (!(p = realloc(r->registered, n + 1)))
		return fv__error_nomem();
	r->registered = p;
	if (!(p = realloc(r->restored, n + 1)))
		return fv__error_nomem();
	r->restored = p;
	if (!(r->targets[n] = strdup(id)))
		return fv__error_nomem();
	r->errors[n] = NULL;
	r->registered[n] = r->restored[n] = 0;
	r->target_count = n + 1;
	return FV_OK;
}

static int targets_set(struct fv_rotation *r, json_object *list)
{
	size_t i, n = json_object_array_length(list);
	int rc = FV_OK;

	targets_clear(r);
	for (i = 0; i < n && rc == FV_OK; i++)
		rc = target_add(r, json_object_get_string(json_object_array_get_idx(list, i)));
	return rc;
}

static void target_error_set(struct fv_rotation *r, size_t k, const char *why)
{
	free(r->errors[k]);
	r->errors[k] = why ? strdup(why) : NULL;
}

/* Replay the journal's records of the last rotation into `r`. */
static int rotation_load(struct fv_rotation *r)
{
	json_object *records, *rec;
	size_t i, n, begin = 0;
	int found = 0, rc;

	if ((rc = fv__journal_read(&records, r->journal_path)) != FV_OK)
		return rc;
	n = json_object_array_length(records);
	for (i = 0; i < n; i++) {
		const char *ev = jstr(json_object_array_get_idx(records, i), "event");

		if (ev && strcmp(ev, "begin") == 0) {
			begin = i;
			found = 1;
		}
	}
	targets_clear(r);
	json_object_put(r->entry);
	json_object_put(r->old_entry);
	r->entry = r->old_entry = NULL;
	free(r->key);
	free(r->new_name);
	r->key = r->new_name = NULL;
	r->state = FV_ROTATION_NONE;
	r->generating = r->destroyed = r->finish_destroy = 0;
	r->abort_destroy = r->new_destroyed = 0;
	json_object_put(r->upload_open);
	r->upload_open = NULL;
	r->upload_at = 0;
	r->fingerprint[0] = '\0';
	r->started_at = r->switched_at = r->finished_at = r->aborted_at = r->state_since = 0;
	r->grace_seconds = FV_ROTATION_DEFAULT_GRACE_SECONDS;
	if (!found) {
		json_object_put(records);
		return FV_OK;
	}
	rec = json_object_array_get_idx(records, begin);
	if (!jstr(rec, "key") || !jstr(rec, "new") || !jget(rec, "entry")) {
		json_object_put(records);
		return fv__error_set(FV_ERR_CONFIG,
			"rotation journal '%s': the last \"begin\" record lacks key, new or entry; "
			"the file was edited or damaged", r->journal_path);
	}
	r->key = strdup(jstr(rec, "key"));
	r->new_name = strdup(jstr(rec, "new"));
	r->entry = jcopy(jget(rec, "entry"));
	if (!r->key || !r->new_name || !r->entry) {
		json_object_put(records);
		return fv__error_nomem();
	}
	r->started_at = r->state_since = jint(rec, "time");
	if (jint(rec, "grace_seconds") > 0)
		r->grace_seconds = (long)jint(rec, "grace_seconds");
	r->state = FV_ROTATION_BEGUN;
	for (i = begin + 1; i < n && rc == FV_OK; i++) {
		const char *ev;
		int before = r->state;

		rec = json_object_array_get_idx(records, i);
		ev = jstr(rec, "event");
		if (!ev)
			continue;
		if (strcmp(ev, "prepared") == 0) {
			r->state = FV_ROTATION_PREPARED;
		} else if (strcmp(ev, "generating") == 0) {
			r->generating = 1;
		} else if (strcmp(ev, "generated") == 0) {
			snprintf(r->fingerprint, sizeof(r->fingerprint), "%s",
			         jstr(rec, "fingerprint") ? jstr(rec, "fingerprint") : "");
			r->generating = 0;
			r->state = FV_ROTATION_GENERATED;
		} else if (strcmp(ev, "targets") == 0 &&
		           json_object_is_type(jget(rec, "phone_numbers"), json_type_array)) {
			rc = targets_set(r, jget(rec, "phone_numbers"));
			r->state = FV_ROTATION_REGISTERING;
		} else if (strcmp(ev, "registered") == 0 || strcmp(ev, "restored") == 0 ||
		           strcmp(ev, "failed") == 0) {
			ssize_t k = target_index(r, jstr(rec, "phone"));

			if (r->upload_open)
				json_object_object_del(r->upload_open, jstr(rec, "phone"));
			if (k < 0)
				continue;
			if (ev[0] == 'f') {
				target_error_set(r, (size_t)k, jstr(rec, "reason") ? jstr(rec, "reason")
				                                                  : "failed");
				continue;
			}
			target_error_set(r, (size_t)k, NULL);
			if (ev[0] == 'r' && ev[2] == 'g')
				r->registered[k] = 1;
			else
				r->restored[k] = 1;
		} else if (strcmp(ev, "uploading") == 0 &&
		           json_object_is_type(jget(rec, "phones"), json_type_array)) {
			json_object *list = jget(rec, "phones");
			size_t k;

			json_object_put(r->upload_open);
			r->upload_open = json_object_new_object();
			r->upload_at = jint(rec, "time");
			for (k = 0; r->upload_open && k < json_object_array_length(list); k++)
				json_object_object_add(r->upload_open, json_object_get_string(
				                       json_object_array_get_idx(list, k)),
				                       json_object_new_boolean(1));
		} else if (strcmp(ev, "finish_check") == 0 &&
		           json_object_is_type(jget(rec, "phone_numbers"), json_type_array)) {
			json_object *list = jget(rec, "phone_numbers"), *missing = jget(rec, "missing");
			size_t k;

			for (k = 0; k < json_object_array_length(list) && rc == FV_OK; k++)
				rc = target_add(r, json_object_get_string(json_object_array_get_idx(list, k)));
			/* Numbers found without NAME are not on it until registered. */
			for (k = 0; missing && k < json_object_array_length(missing); k++) {
				ssize_t t = target_index(r, json_object_get_string(
				                               json_object_array_get_idx(missing, k)));

				if (t >= 0)
					r->registered[t] = 0;
			}
		} else if (strcmp(ev, "switched") == 0) {
			r->switched_at = jint(rec, "time");
			r->state = FV_ROTATION_SWITCHED;
		} else if (strcmp(ev, "finishing") == 0) {
			r->finish_destroy = json_object_get_boolean(jget(rec, "destroy"));
			json_object_put(r->old_entry);
			r->old_entry = jcopy(jget(rec, "old_entry"));
			r->state = FV_ROTATION_FINISHING;
		} else if (strcmp(ev, "destroyed") == 0) {
			r->destroyed = 1;
		} else if (strcmp(ev, "finished") == 0) {
			r->finished_at = jint(rec, "time");
			r->state = FV_ROTATION_FINISHED;
		} else if (strcmp(ev, "aborting") == 0) {
			r->abort_destroy |= json_object_get_boolean(jget(rec, "destroy_new"));
			r->state = FV_ROTATION_ABORTING;
		} else if (strcmp(ev, "new_destroyed") == 0) {
			r->new_destroyed = 1;
		} else if (strcmp(ev, "aborted") == 0) {
			r->aborted_at = jint(rec, "time");
			r->state = FV_ROTATION_ABORTED;
		}
		if (r->state != before)
			r->state_since = jint(rec, "time");
	}
	json_object_put(records);
	return rc;
}

static int rotation_new(struct fv_rotation **out, fv_context *ctx)
{
	struct fv_rotation *r;
	const char *path = fv_context_config_path(ctx);

	*out = NULL;
	if (!ctx || !path)
		return fv__error_set(FV_ERR_CONFIG,
			"rotation needs a configuration file (pass --config FILE or set FLOWVAULT_CONFIG)");
	if (!(r = calloc(1, sizeof(*r))))
		return fv__error_nomem();
	r->grace_seconds = FV_ROTATION_DEFAULT_GRACE_SECONDS;
	if (!(r->config_path = strdup(path)) ||
	    asprintf(&r->journal_path, "%s.rotation.journal", path) < 0) {
		r->journal_path = NULL;
		fv_rotation_free(r);
		return fv__error_nomem();
	}
	*out = r;
	return FV_OK;
}

static int journal(struct fv_rotation *r, json_object *record)
{
	return fv__journal_append(r->journal, record);
}

/* Tests stop a rotation right after a step is journaled, to kill it there
 * (FLOWVAULT_TEST_ROTATE_PAUSE=prepared|generated|registered|finishing|retired|
 * unswitched). */
static void test_pause(const char *step)
{
	const char *want = getenv("FLOWVAULT_TEST_ROTATE_PAUSE");

	if (want && strcmp(want, step) == 0)
		for (;;)
			pause();
}

static int progress(struct fv_rotation *r, size_t done, size_t total, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int progress(struct fv_rotation *r, size_t done, size_t total, const char *fmt, ...)
{
	char message[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	fv__log(FV_LOG_INFO, "rotate: %s", message);
	if (r->opts && r->opts->progress &&
	    r->opts->progress(r->opts->progress_arg, r->state, done, total, message) != 0)
		return fv__error_set(FV_ERR_GENERIC,
			"interrupted (rotation %s -> %s at step \"%s\"); every finished step is in "
			"the journal: run flowvault rotate --resume to continue", r->key, r->new_name,
			fv_rotation_state_name(r->state));
	return FV_OK;
}

static void set_serve_note(struct fv_rotation *r, const char *what)
{
	free(r->serve_note);
	if (asprintf(&r->serve_note, "serve.keys changed (%s): a running flowvault serve reads "
	             "serve.keys only when it starts; restart it to pick up the change", what) < 0)
		r->serve_note = NULL;
}

static int serve_sync(struct fv_rotation *r, fv_context *cur, const char *need);

/* serve.keys was rewritten: reload a local serve (serve.pid_file) and wait
 * for it, or leave a note saying to restart it. */
static void serve_reload_or_note(struct fv_rotation *r, const char *what)
{
	fv_context *cur = NULL;

	set_serve_note(r, what);
	if (fv_context_open(&cur, r->config_path, 0) == FV_OK)
		(void)serve_sync(r, cur, NULL);
	fv_error_clear();
	fv_context_free(cur);
}

/* ---- Configuration changes, each idempotent ---- */

/* serve.keys with NAME inserted right after KEY (when KEY is there). */
static int apply_prepare(json_object *root, const struct fv_rotation *r, int *changed,
                         int *serve_changed)
{
	json_object *keys = jget(root, "keys"), *existing, *serve_keys;

	*changed = *serve_changed = 0;
	if (!keys || !jget(keys, r->key))
		return fv__error_set(FV_ERR_CONFIG, "keys.%s: no longer in the configuration; "
		                     "the rotation cannot go on", r->key);
	existing = jget(keys, r->new_name);
	if (existing && !json_object_equal(existing, r->entry))
		return fv__error_set(FV_ERR_CONFIG,
			"keys.%s is in the configuration but is not the entry this rotation wrote "
			"(see the \"begin\" record in %s); restore it or remove it, then resume",
			r->new_name, r->journal_path);
	if (!existing) {
		json_object_object_add(keys, r->new_name, jcopy(r->entry));
		*changed = 1;
	}
	serve_keys = jget(jget(root, "serve"), "keys");
	if (json_object_is_type(serve_keys, json_type_array) && array_has(serve_keys, r->key) &&
	    !array_has(serve_keys, r->new_name)) {
		json_object *list = json_object_new_array();
		size_t i;

		for (i = 0; i < json_object_array_length(serve_keys); i++) {
			json_object *item = json_object_array_get_idx(serve_keys, i);

			json_object_array_add(list, json_object_get(item));
			if (strcmp(json_object_get_string(item), r->key) == 0)
				json_object_array_add(list, json_object_new_string(r->new_name));
		}
		json_object_object_add(jget(root, "serve"), "keys", list);
		*changed = *serve_changed = 1;
	}
	return FV_OK;
}

/* NAME takes KEY's targets; in serve.keys NAME comes right before KEY. */
static int apply_switch(json_object *root, const struct fv_rotation *r, int *changed,
                        int *serve_changed)
{
	static const char *const target_fields[] = { "phone_numbers", "waba_id", NULL };
	json_object *keys = jget(root, "keys"), *old, *new_entry, *serve_keys;
	size_t i;

	*changed = *serve_changed = 0;
	old = jget(keys, r->key);
	new_entry = jget(keys, r->new_name);
	if (!new_entry)
		return fv__error_set(FV_ERR_CONFIG, "keys.%s: no longer in the configuration; "
		                     "the rotation cannot switch to it", r->new_name);
	for (i = 0; old && target_fields[i]; i++) {
		json_object *v = jget(old, target_fields[i]);

		if (!v)
			continue;
		json_object_object_add(new_entry, target_fields[i], json_object_get(v));
		json_object_object_del(old, target_fields[i]);
		*changed = 1;
	}
	serve_keys = jget(jget(root, "serve"), "keys");
	if (json_object_is_type(serve_keys, json_type_array) && array_has(serve_keys, r->key)) {
		json_object *list = json_object_new_array();

		for (i = 0; i < json_object_array_length(serve_keys); i++) {
			json_object *item = json_object_array_get_idx(serve_keys, i);
			const char *s = json_object_get_string(item);

			if (strcmp(s, r->new_name) == 0)
				continue;
			if (strcmp(s, r->key) == 0)
				json_object_array_add(list, json_object_new_string(r->new_name));
			json_object_array_add(list, json_object_get(item));
		}
		if (!json_object_equal(list, serve_keys)) {
			json_object_object_add(jget(root, "serve"), "keys", list);
			*changed = *serve_changed = 1;
		} else {
			json_object_put(list);
		}
	}
	return FV_OK;
}

/* Apply `fn` to the current configuration and write it when it changed. */
typedef int (*apply_fn)(json_object *, const struct fv_rotation *, int *, int *);

static int config_update(struct fv_rotation *r, apply_fn fn, int *serve_changed)
{
	fv_context *cur = NULL;
	json_object *root;
	int rc, changed = 0;

	*serve_changed = 0;
	if ((rc = fv_context_open(&cur, r->config_path, 0)) != FV_OK)
		return rc;
	if (!(root = jcopy(cur->root))) {
		fv_context_free(cur);
		return fv__error_nomem();
	}
	rc = fn(root, r, &changed, serve_changed);
	if (rc == FV_OK && changed)
		rc = fv__config_write(r->config_path, root);
	json_object_put(root);
	fv_context_free(cur);
	return rc;
}

/* ---- The new key entry ---- */

static int valid_key_name(const char *s)
{
	size_t i;

	if (!s || !*s || strlen(s) > 64)
		return 0;
	for (i = 0; s[i]; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("_-.", s[i]))
			return 0;
	return 1;
}

/* "dir/old.pem" -> "dir/NAME.pem": same directory, old extension. */
static char *derive_path(const char *old, const char *name)
{
	const char *slash = strrchr(old, '/'), *base = slash ? slash + 1 : old;
	const char *dot = strrchr(base, '.');
	char *out = NULL;

	if (!dot || dot == base)
		dot = "";
	if (asprintf(&out, "%.*s%s%s", (int)(base - old), old, name, dot) < 0)
		return NULL;
	return out;
}

/* A hint for a reference that cannot be derived: the old value with the
 * PKCS#11 object (or the label) renamed, when it has one. */
static void reference_hint(char *buf, size_t len, const char *field, const char *old,
                           const char *name)
{
	const char *obj = old ? strstr(old, "object=") : NULL;

	if (obj) {
		size_t keep = (size_t)(obj - old) + 7, rest = strcspn(obj + 7, ";?");

		snprintf(buf, len, "--set '%s=%.*s%s%s'", field, (int)keep, old, name, obj + 7 + rest);
	} else if (strcmp(field, "handle") == 0) {
		snprintf(buf, len, "--set handle=0x81xxxxxx (a free persistent handle)");
	} else {
		snprintf(buf, len, "--set %s=VALUE", field);
	}
}

static int set_field(json_object *entry, const fv_config_field *f, const char *value,
                     const char *key)
{
	json_object *v = NULL;

	switch (f->type) {
	case FV_FIELD_STRING:
	case FV_FIELD_SECRET:
		v = json_object_new_string(value);
		break;
	case FV_FIELD_BOOL:
		if (strcmp(value, "true") == 0 || strcmp(value, "false") == 0)
			v = json_object_new_boolean(value[0] == 't');
		else
			return fv__error_set(FV_ERR_USAGE, "--set %s=%s: expected true or false",
			                     f->name, value);
		break;
	case FV_FIELD_INT: {
		char *end;
		long long n;

		errno = 0;
		n = strtoll(value, &end, 10);
		if (errno || *end || end == value)
			return fv__error_set(FV_ERR_USAGE, "--set %s=%s: expected an integer",
			                     f->name, value);
		v = json_object_new_int64(n);
		break;
	}
	default:
		return fv__error_set(FV_ERR_USAGE,
			"--set %s: a list cannot be set on the command line; edit keys.%s in the "
			"configuration before rotating", f->name, key);
	}
	if (!v)
		return fv__error_nomem();
	json_object_object_add(entry, f->name, v);
	return FV_OK;
}

static int build_entry(json_object **out, fv_context *cur, const char *key,
                       const char *name, const char *const *set)
{
	const struct fv_key_entry *old = fv__config_key(cur, key);
	const struct fv_plugin *plugin = NULL;
	const fv_config_field *fields;
	json_object *entry;
	char known[512] = "", hint[512];
	size_t i, used = 0, nset = 0;
	int rc = FV_OK;

	*out = NULL;
	if ((rc = fv__plugin_get(&plugin, cur, old->provider)) != FV_OK || !plugin)
		return fv__error_prefix("keys.%s.provider", key);
	fields = plugin->ops->config_fields;
	for (i = 0; fields && fields[i].name && used < sizeof(known); i++)
		used += (size_t)snprintf(known + used, sizeof(known) - used, "%s%s",
		                         i ? ", " : "", fields[i].name);
	if (!(entry = json_object_new_object()))
		return fv__error_nomem();
	json_object_object_foreach(old->entry, fname, fvalue) {
		if (strcmp(fname, "phone_numbers") == 0 || strcmp(fname, "waba_id") == 0)
			continue; /* they move to the new key at the switch */
		json_object_object_add(entry, fname, jcopy(fvalue));
	}
	for (nset = 0; set && set[nset] && rc == FV_OK; nset++) {
		const char *eq = strchr(set[nset], '=');
		const fv_config_field *f = NULL;
		size_t flen = eq ? (size_t)(eq - set[nset]) : 0;

		if (!eq || flen == 0 || !eq[1]) {
			rc = fv__error_set(FV_ERR_USAGE, "--set '%s': expected FIELD=VALUE", set[nset]);
			break;
		}
		for (i = 0; fields && fields[i].name; i++)
			if (strlen(fields[i].name) == flen && strncmp(fields[i].name, set[nset], flen) == 0)
				f = &fields[i];
		if (!f) {
			rc = fv__error_set(FV_ERR_USAGE,
				"--set %.*s: not a field of the %s provider (its fields: %s)%s", (int)flen,
				set[nset], old->provider, known,
				(flen == 13 && strncmp(set[nset], "phone_numbers", 13) == 0) ||
				(flen == 7 && strncmp(set[nset], "waba_id", 7) == 0)
					? "; the phone numbers move to the new key at the switch" : "");
			break;
		}
		rc = set_field(entry, f, eq + 1, key);
	}
	/* Each key reference must change: given with --set, or a derived path. */
	for (i = 0; rc == FV_OK && fields && fields[i].name; i++) {
		const fv_config_field *f = &fields[i];
		json_object *oldv = jget(old->entry, f->name);
		size_t k;
		int given = 0;

		if (!(f->flags & FV_FIELD_KEY_REFERENCE) || !oldv)
			continue;
		for (k = 0; set && set[k]; k++)
			if (strncmp(set[k], f->name, strlen(f->name)) == 0 &&
			    set[k][strlen(f->name)] == '=')
				given = 1;
		if (given)
			continue;
		if ((f->flags & FV_FIELD_PATH) && f->type == FV_FIELD_STRING) {
			char *p = derive_path(json_object_get_string(oldv), name);

			if (!p) {
				rc = fv__error_nomem();
				break;
			}
			json_object_object_add(entry, f->name, json_object_new_string(p));
			free(p);
			continue;
		}
		reference_hint(hint, sizeof(hint), f->name, json_object_get_string(oldv), name);
		rc = fv__error_set(FV_ERR_USAGE,
			"keys.%s.%s names the key inside the %s backend and cannot be derived for "
			"the new key: pass %s", key, f->name, old->provider, hint);
	}
	if (rc != FV_OK) {
		json_object_put(entry);
		return rc;
	}
	*out = entry;
	return FV_OK;
}

/* ---- Steps ---- */

static int step_prepare(struct fv_rotation *r)
{
	json_object *rec;
	int rc, serve_changed = 0;

	if ((rc = progress(r, 0, 0, "adding keys.%s to %s", r->new_name, r->config_path)) != FV_OK)
		return rc;
	if (config_update(r, apply_prepare, &serve_changed) != FV_OK)
		return fv__error_prefix("rotate %s -> %s", r->key, r->new_name);
	if (serve_changed)
		set_serve_note(r, "added the new key after the old one");
	rec = record_new("prepared");
	json_object_object_add(rec, "serve_keys_changed", json_object_new_boolean(serve_changed));
	if ((rc = journal(r, rec)) != FV_OK)
		return rc;
	r->state = FV_ROTATION_PREPARED;
	test_pause("prepared");
	return FV_OK;
}

static int step_generate(struct fv_rotation *r)
{
	fv_context *cur = NULL;
	fv_key *k = NULL;
	json_object *rec;
	int rc;

	if ((rc = progress(r, 0, 0, "generating key %s", r->new_name)) != FV_OK)
		return rc;
	if ((rc = fv_context_open(&cur, r->config_path, 0)) != FV_OK)
		return rc;
	if (r->generating) {
		/* Interrupted between making the key and recording it: the key
		 * there now is the one this rotation made (the reference was
		 * checked to be free before "begin"). */
		rc = fv_key_open(&k, cur, r->new_name);
		if (rc == FV_OK)
			fv__log(FV_LOG_INFO, "rotate: key %s was generated before the interruption; "
			        "using it", r->new_name);
		else if (rc == FV_ERR_NOT_FOUND)
			rc = fv_key_generate(&k, cur, r->new_name);
	} else {
		if ((rc = journal(r, record_new("generating"))) == FV_OK)
			rc = fv_key_generate(&k, cur, r->new_name);
	}
	if (rc == FV_OK && (rc = fv_key_fingerprint(r->fingerprint, k)) == FV_OK) {
		rec = record_new("generated");
		json_object_object_add(rec, "fingerprint", json_object_new_string(r->fingerprint));
		if ((rc = journal(r, rec)) == FV_OK)
			r->state = FV_ROTATION_GENERATED;
	}
	fv_key_free(k);
	fv_context_free(cur);
	if (rc == FV_OK)
		test_pause("generated");
	return rc;
}

static int add_unique(json_object *list, const char *id)
{
	if (!array_has(list, id))
		json_object_array_add(list, json_object_new_string(id));
	return FV_OK;
}

/* KEY's numbers: its phone_numbers, then those of its waba_id as Graph
 * lists them now (*graph opened for that when it was NULL). */
static int key_numbers(json_object *list, fv_context *cur, const char *key, fv_graph **graph)
{
	const char *waba = fv_context_key_waba(cur, key);
	size_t i, n = fv_context_key_phone_count(cur, key);
	char **ids = NULL;
	int rc;

	for (i = 0; i < n; i++)
		add_unique(list, fv_context_key_phone(cur, key, i));
	if (!waba)
		return FV_OK;
	if ((!*graph && (rc = fv_graph_open(graph, cur)) != FV_OK) ||
	    (rc = fv_graph_waba_phone_numbers(&ids, &n, *graph, waba)) != FV_OK)
		return rc;
	for (i = 0; i < n; i++)
		add_unique(list, ids[i]);
	fv_graph_ids_free(ids);
	return FV_OK;
}

static int step_targets(struct fv_rotation *r)
{
	fv_context *cur = NULL;
	fv_graph *graph = NULL;
	json_object *list = json_object_new_array(), *rec;
	int rc;

	if ((rc = progress(r, 0, 0, "listing the phone numbers of key %s", r->key)) != FV_OK)
		goto out;
	if ((rc = fv_context_open(&cur, r->config_path, 0)) != FV_OK ||
	    (rc = key_numbers(list, cur, r->key, &graph)) != FV_OK)
		goto out;
	if ((rc = targets_set(r, list)) != FV_OK)
		goto out;
	rec = record_new("targets");
	json_object_object_add(rec, "phone_numbers", json_object_get(list));
	if ((rc = journal(r, rec)) == FV_OK)
		r->state = FV_ROTATION_REGISTERING;
out:
	json_object_put(list);
	fv_graph_free(graph);
	fv_context_free(cur);
	return rc;
}

/* ---- A running flowvault serve on this configuration ---- */

/* How long a serve may take to report the new serve.keys after SIGHUP. */
#define SERVE_RELOAD_SECONDS 30

/*
 * Where a serve on this machine answers /healthz and how to reload it, from
 * the serve section (serve.admin_listen with its TLS and token,
 * serve.pid_file), so that rotate works with a serve that has an admin
 * listener and a reload and with one that has not: the Flows listener is
 * asked first; when it answers 404 (its /healthz moved to the admin
 * listener) the admin listener is asked.
 */
struct serve_local {
	char urls[2][512];
	size_t url_count;
	const char *ca[2];          /* what verifies each listener's certificate */
	char *token;                /* serve.admin_token, for the admin listener */
	size_t token_len;
	char pid_file[PATH_MAX];
	long pid;                   /* a running process named by pid_file, or 0 */
	char **want;                /* serve.keys as configured, in order */
	size_t want_count;
	struct serve_config sc;
};

static void serve_local_clear(struct serve_local *sl)
{
	fv_secret_free(sl->token, sl->token_len);
	fv__serve_config_clear(&sl->sc);
	memset(sl, 0, sizeof(*sl));
}

static long pid_file_read(const char *path)
{
	char buf[32] = "", *end;
	FILE *f = fopen(path, "re");
	long pid;

	if (!f)
		return 0;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	(void)fclose(f);
	errno = 0;
	pid = strtol(buf, &end, 10);
	if (errno || end == buf || (*end && *end != '\n') || pid <= 1 || pid > INT_MAX)
		return 0;
	return kill((pid_t)pid, 0) == 0 ? pid : 0;
}

/* http(s)://HOST:PORT/healthz for a listening address (a wildcard is asked
 * on loopback). */
static void local_url(char *buf, size_t len, int https, const char *host, unsigned int port)
{
	host = strcmp(host, "0.0.0.0") == 0 ? "127.0.0.1" : strcmp(host, "::") == 0 ? "::1" : host;
	snprintf(buf, len, "%s://%s%s%s:%u/healthz", https ? "https" : "http",
	         strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", port);
}

static int serve_local_find(struct serve_local *sl, fv_context *cur)
{
	const char *pidf;

	memset(sl, 0, sizeof(*sl));
	if (!cur->serve)
		return 0;
	if (fv__serve_config_parse(&sl->sc, cur->serve, "serve", cur) != FV_OK)
		return -1;
	sl->want = sl->sc.keys;
	sl->want_count = sl->sc.key_count;
	/* serve's own certificate is the trust anchor (self-signed is common). */
	sl->ca[sl->url_count] = sl->sc.cert_path;
	local_url(sl->urls[sl->url_count++], sizeof(sl->urls[0]), sl->sc.cert_path != NULL,
	          sl->sc.host, sl->sc.port);
	if (sl->sc.admin_listen) {
		sl->ca[sl->url_count] = sl->sc.nodes_ca ? sl->sc.nodes_ca : sl->sc.admin_cert_path;
		local_url(sl->urls[sl->url_count++], sizeof(sl->urls[0]),
		          sl->sc.admin_cert_path != NULL, sl->sc.admin_host, sl->sc.admin_port);
		if (sl->sc.admin_token &&
		    fv_secret_resolve(&sl->token, &sl->token_len, sl->sc.admin_token,
		                      "serve.admin_token") != FV_OK) {
			serve_local_clear(sl);
			return -1;
		}
	}
	if ((pidf = sl->sc.pid_file) != NULL) {
		snprintf(sl->pid_file, sizeof(sl->pid_file), "%s", pidf);
		sl->pid = pid_file_read(sl->pid_file);
	}
	return 1;
}

enum { HEALTHZ_NONE, HEALTHZ_UNREADABLE, HEALTHZ_OK };

/*
 * Ask the local serve which keys it holds. *names gets them in serve's order
 * as an array of {"name", "fingerprint"} (fingerprint when /healthz gives
 * one): /healthz lists "keys" as an object {NAME: status} (with the
 * fingerprints in "fingerprints": {NAME: hex}), or as an array of names or
 * of {"name", "fingerprint_sha256"}.
 */
static int healthz_get(struct serve_local *sl, json_object **names, char *url, size_t url_len,
                       char *why, size_t why_len)
{
	size_t u;

	*names = NULL;
	snprintf(url, url_len, "%s", sl->urls[0]);
	for (u = 0; u < sl->url_count; u++) {
		struct node_answer a;
		json_object *doc, *keys, *list;
		size_t i;

		snprintf(url, url_len, "%s", sl->urls[u]);
		if (fv__node_get(&a, url, sl->ca[u], u > 0 ? sl->token : NULL) != FV_OK)
			return HEALTHZ_UNREADABLE;
		if (a.result == NODE_REFUSED) {
			fv__node_answer_clear(&a);
			/* The admin listener is only asked after the Flows listener
			 * answered without /healthz. */
			return HEALTHZ_NONE;
		}
		if (a.result == NODE_ANSWERED && a.http_status == 404 && u + 1 < sl->url_count) {
			fv__node_answer_clear(&a);
			continue;
		}
		doc = a.result == NODE_ANSWERED && (a.http_status == 200 || a.http_status == 503) &&
		      a.body ? json_tokener_parse(a.body) : NULL;
		keys = jget(doc, "keys");
		if (!keys || !(json_object_is_type(keys, json_type_object) ||
		               json_object_is_type(keys, json_type_array))) {
			if (a.result != NODE_ANSWERED)
				snprintf(why, why_len, "%s", a.why);
			else if (a.http_status == 401)
				snprintf(why, why_len, "HTTP 401: it wants serve.admin_token");
			else
				snprintf(why, why_len, "unexpected answer");
			fv__node_answer_clear(&a);
			json_object_put(doc);
			return HEALTHZ_UNREADABLE;
		}
		fv__node_answer_clear(&a);
		list = json_object_new_array();
		if (json_object_is_type(keys, json_type_object)) {
			json_object_object_foreach(keys, name, v) {
				json_object *o = json_object_new_object();
				const char *fp = jstr(v, "fingerprint_sha256")
				               ? jstr(v, "fingerprint_sha256")
				               : jstr(jget(doc, "fingerprints"), name);

				json_object_object_add(o, "name", json_object_new_string(name));
				if (fp)
					json_object_object_add(o, "fingerprint", json_object_new_string(fp));
				json_object_array_add(list, o);
			}
		} else {
			for (i = 0; i < json_object_array_length(keys); i++) {
				json_object *v = json_object_array_get_idx(keys, i), *o;
				const char *name = json_object_is_type(v, json_type_string)
				                 ? json_object_get_string(v) : jstr(v, "name");
				const char *fp = jstr(v, "fingerprint_sha256") ? jstr(v, "fingerprint_sha256")
				                                              : jstr(v, "fingerprint");

				if (!name)
					continue;
				o = json_object_new_object();
				json_object_object_add(o, "name", json_object_new_string(name));
				if (fp)
					json_object_object_add(o, "fingerprint", json_object_new_string(fp));
				json_object_array_add(list, o);
			}
		}
		json_object_put(doc);
		*names = list;
		return HEALTHZ_OK;
	}
	snprintf(why, why_len, "no /healthz");
	return HEALTHZ_UNREADABLE;
}

static int healthz_has(json_object *names, const char *key)
{
	size_t i;

	for (i = 0; key && i < json_object_array_length(names); i++)
		if (strcmp(jstr(json_object_array_get_idx(names, i), "name"), key) == 0)
			return 1;
	return 0;
}

/* serve reports exactly serve.keys, first key first, and NAME with the
 * fingerprint this rotation generated when it tells fingerprints. */
static int healthz_matches(const struct fv_rotation *r, const struct serve_local *sl,
                           json_object *names)
{
	size_t i;

	if (json_object_array_length(names) != sl->want_count)
		return 0;
	for (i = 0; i < sl->want_count; i++) {
		json_object *o = json_object_array_get_idx(names, i);

		if (!healthz_has(names, sl->want[i]))
			return 0;
		if (i == 0 && strcmp(jstr(o, "name"), sl->want[0]) != 0)
			return 0;
		if (r->fingerprint[0] && jstr(o, "fingerprint") && r->new_name &&
		    strcmp(jstr(o, "name"), r->new_name) == 0 &&
		    strcmp(jstr(o, "fingerprint"), r->fingerprint) != 0)
			return 0;
	}
	return 1;
}

/*
 * Bring a serve running on this machine to the configuration as written
 * now. When serve.pid_file names a running process, it gets SIGHUP and rotate
 * waits until /healthz reports serve.keys as configured. Otherwise serve is
 * asked once. `need` is a key serve must hold before the next step (numbers
 * move to it): its absence stops the rotation (FV_ERR_GENERIC, saying what
 * to restart). Without `need`, what cannot be confirmed leaves a note to
 * restart serve.
 */
static int serve_sync(struct fv_rotation *r, fv_context *cur, const char *need)
{
	struct serve_local sl;
	json_object *names = NULL;
	char url[512], why[300] = "";
	int found, rc = FV_OK, hz;
	double waited = 0;

	found = serve_local_find(&sl, cur);
	if (found < 0)
		return fv_error_last()->status;
	if (!found)
		return FV_OK;
	hz = healthz_get(&sl, &names, url, sizeof(url), why, sizeof(why));
	if (sl.pid && !(hz == HEALTHZ_OK && healthz_matches(r, &sl, names))) {
		fv__log(FV_LOG_INFO, "rotate: asking flowvault serve (pid %ld, %s) to reload %s",
		        sl.pid, sl.pid_file, r->config_path);
		if (kill((pid_t)sl.pid, SIGHUP) != 0) {
			fv__log(FV_LOG_WARNING, "rotate: cannot signal pid %ld (%s): %s", sl.pid,
			        sl.pid_file, strerror(errno));
		} else {
			do {
				struct timespec ts = { 0, 200 * 1000 * 1000 };

				nanosleep(&ts, NULL);
				waited += 0.2;
				json_object_put(names);
				hz = healthz_get(&sl, &names, url, sizeof(url), why, sizeof(why));
			} while (!(hz == HEALTHZ_OK && healthz_matches(r, &sl, names)) &&
			         waited < SERVE_RELOAD_SECONDS);
		}
		if (hz == HEALTHZ_OK && healthz_matches(r, &sl, names)) {
			free(r->serve_note);
			if (asprintf(&r->serve_note, "flowvault serve (pid %ld) reloaded serve.keys",
			             sl.pid) < 0)
				r->serve_note = NULL;
		} else if (need) {
			rc = fv__error_set(FV_ERR_GENERIC,
				"flowvault serve (pid %ld from %s) did not report serve.keys as configured "
				"at %s within %d s of SIGHUP: read its log, restart it, then run flowvault "
				"rotate --resume; no phone number was moved", sl.pid, sl.pid_file, url,
				SERVE_RELOAD_SECONDS);
		} else {
			fv__log(FV_LOG_WARNING, "rotate: flowvault serve (pid %ld) did not report the "
			        "new serve.keys at %s after SIGHUP; restart it", sl.pid, url);
		}
	} else if (hz == HEALTHZ_NONE) {
		fv__log(FV_LOG_INFO, "rotate: no flowvault serve answers at %s; it will read "
		        "serve.keys when it starts", url);
	} else if (hz == HEALTHZ_UNREADABLE) {
		fv__log(FV_LOG_WARNING, "rotate: cannot tell which keys the flowvault serve at %s "
		        "holds (%s); make sure every running serve was restarted on %s",
		        url, why, r->config_path);
	} else if (need && !healthz_has(names, need)) {
		rc = fv__error_set(FV_ERR_GENERIC,
			"the flowvault serve at %s does not decrypt with key %s yet (it reads "
			"serve.keys only when it starts): restart it, then run flowvault rotate "
			"--resume; no phone number was moved", url, need);
	}
	json_object_put(names);
	serve_local_clear(&sl);
	return rc;
}

/* Which key a registration pass moves numbers to: NAME (the rotation,
 * --finish) or KEY again (--abort). */
enum pass_kind { PASS_NEW, PASS_RESTORE };

/*
 * Every node of serve.nodes must list key `name` with fingerprint `fp` as
 * ok before a phone number moves to it: WhatsApp's requests for that number
 * may reach any node, and one without the key answers 421. Nothing is
 * changed here; what to do is said per kind of run.
 */
static int nodes_sync(struct fv_rotation *r, fv_context *cur, int kind, const char *name,
                      const char *fp)
{
	fv_node_status *nodes = NULL;
	size_t count = 0, i, bad = 0, used = 0;
	char first[768] = "", others[512] = "", retry[128];

	if (fv_nodes_query(&nodes, &count, cur) != FV_OK)
		return fv__error_prefix("serve.nodes: cannot ask the nodes; no phone number was moved");
	for (i = 0; i < count; i++) {
		const fv_node_status *n = &nodes[i];
		const fv_node_key *k = fv_node_find_key(n, name);
		char why[600];

		if (n->error)
			snprintf(why, sizeof(why), "%s", n->error);
		else if (!k)
			snprintf(why, sizeof(why), "does not list key %s (generation %ld, %zu key%s)",
			         name, n->generation, n->key_count, n->key_count == 1 ? "" : "s");
		else if (!k->fingerprint[0])
			snprintf(why, sizeof(why), "lists key %s without its fingerprint", name);
		else if (strcmp(k->fingerprint, fp) != 0)
			snprintf(why, sizeof(why), "lists key %s with fingerprint %.16s..., not %.16s...: "
			         "its configuration names another key %s", name, k->fingerprint, fp, name);
		else if (!k->ok)
			snprintf(why, sizeof(why), "lists key %s as unavailable (it cannot decrypt with "
			         "it: read that node's log)", name);
		else {
			fv__log(FV_LOG_INFO, "rotate: node %s holds key %s (generation %ld)", n->url,
			        name, n->generation);
			continue;
		}
		fv__log(FV_LOG_WARNING, "rotate: node %s: %s", n->url, why);
		if (!bad++)
			snprintf(first, sizeof(first), "%s %s", n->url, why);
		else if (used < sizeof(others))
			used += (size_t)snprintf(others + used, sizeof(others) - used, "%s%s",
			                         used ? ", " : "; also ", n->url);
	}
	fv_nodes_free(nodes, count);
	if (!bad)
		return FV_OK;
	if (kind == PASS_RESTORE)
		snprintf(retry, sizeof(retry), "flowvault rotate --abort");
	else if (r->state == FV_ROTATION_SWITCHED)
		snprintf(retry, sizeof(retry), "flowvault rotate --finish %s", r->new_name);
	else
		snprintf(retry, sizeof(retry), "flowvault rotate --resume");
	return fv__error_set(FV_ERR_GENERIC,
		"%zu of %zu serve.nodes do not serve key %s yet: %s%s; make sure flowvault serve "
		"runs there and is reachable, distribute the configuration (%s) to %s, reload "
		"flowvault serve there (systemctl reload, or SIGHUP), then run %s; no phone number "
		"was moved", bad, count, name, first, others, r->config_path,
		bad == 1 ? "that node" : "those nodes", retry);
}


static unsigned char *pass_done(struct fv_rotation *r, int kind)
{
	return kind == PASS_RESTORE ? r->restored : r->registered;
}

/* Journal one number as verified (or as failed, with the reason), when the
 * batch it was in comes back. */
static int journal_number(struct fv_rotation *r, size_t index, int kind, const char *fp,
                          const char *how, const char *failure)
{
	json_object *rec = record_new(failure ? "failed" : kind == PASS_RESTORE ? "restored"
	                                                                       : "registered");

	json_object_object_add(rec, "phone", json_object_new_string(r->targets[index]));
	if (failure) {
		json_object_object_add(rec, "reason", json_object_new_string(failure));
	} else {
		json_object_object_add(rec, "fingerprint", json_object_new_string(fp));
		json_object_object_add(rec, "how", json_object_new_string(how));
	}
	if (journal(r, rec) != FV_OK)
		return fv_error_last()->status;
	target_error_set(r, index, failure);
	if (!failure)
		pass_done(r, kind)[index] = 1;
	return FV_OK;
}

/* Before a batch of uploads: which numbers get a request, so that a resume
 * knows which requests a crash may have left in flight. */
static int journal_uploading(struct fv_rotation *r, const char **ids, size_t n, int kind)
{
	json_object *rec = record_new("uploading"), *list = json_object_new_array();
	size_t i;

	for (i = 0; list && i < n; i++)
		json_object_array_add(list, json_object_new_string(ids[i]));
	json_object_object_add(rec, "phones", list);
	json_object_object_add(rec, "kind", json_object_new_string(kind == PASS_RESTORE
	                                                           ? "restore" : "new"));
	return journal(r, rec);
}

/*
 * An interrupted run may have died with uploads in flight: the Graph API can
 * apply such a request after this process reads the number, and the number
 * would then be uploaded to twice or, when aborting, end on the other key.
 * Such a request ends at most one request timeout after the death, which
 * came before this run started, and at most one batch's length after its
 * "uploading" line: wait until the earlier of the two, then read.
 */
static int settle_interrupted_uploads(struct fv_rotation *r, const fv_graph *graph)
{
	const struct graph_settings *gs = &graph->settings;
	double timeout = (double)gs->timeout_ms / 1000.0 + 1.0;
	double batch = (gs->max_retries + 1.0) * timeout + gs->max_wait_seconds +
	               (double)gs->retry_base_ms / 1000.0 * (double)(1u << (gs->max_retries & 15u));
	double until, now = (double)time(NULL);

	if (!r->upload_open || json_object_object_length(r->upload_open) == 0)
		return FV_OK;
	until = (double)r->upload_at + batch + 1.0;
	if (until > now + timeout)
		until = now + timeout;
	if (until <= now)
		return FV_OK;
	fv__log(FV_LOG_INFO, "rotate: the interrupted run may have left %d uploads in flight; "
	        "waiting %.0f s for them to end before reading the numbers",
	        json_object_object_length(r->upload_open), until - now);
	while ((double)time(NULL) < until) {
		struct timespec ts = { 0, 200 * 1000 * 1000 };
		int rc;

		nanosleep(&ts, NULL);
		if ((rc = progress(r, 0, 0, "waiting for the uploads of the interrupted run to "
		                   "end")) != FV_OK)
			return rc;
	}
	json_object_put(r->upload_open);
	r->upload_open = NULL;
	return FV_OK;
}

/* One pass over the numbers not yet done, `chunk` at a time. With
 * FV_GRAPH_STATUS, numbers that already hold the key as VALID (from an
 * upload an interruption kept out of the journal, or because they never
 * left it) are recorded without an upload. Returns the worst per-number
 * status. */
static int register_pass(struct fv_rotation *r, fv_graph *graph, fv_key *key, int kind,
                         int mode, size_t chunk, size_t *failed, unsigned char *unread)
{
	const char **ids = calloc(chunk, sizeof(*ids));
	size_t *index = calloc(chunk, sizeof(*index));
	unsigned char *done_flags = pass_done(r, kind);
	const char *target_name = kind == PASS_RESTORE ? r->key : r->new_name;
	char fp[FV_FINGERPRINT_HEX_SIZE];
	size_t i = 0, n, k, done;
	int worst = FV_OK, rc = FV_OK;

	*failed = 0;
	if (!ids || !index || fv_key_fingerprint(fp, key) != FV_OK) {
		free(ids);
		free(index);
		return ids && index ? fv_error_last()->status : fv__error_nomem();
	}
	while (i < r->target_count) {
		fv_graph_result *res = NULL;

		for (n = 0; i < r->target_count && n < chunk; i++)
			if (!done_flags[i] && !(unread && unread[i])) {
				ids[n] = r->targets[i];
				index[n++] = i;
			}
		if (!n)
			break;
		if (mode == FV_GRAPH_REGISTER && (rc = journal_uploading(r, ids, n, kind)) != FV_OK)
			break;
		fv_graph_check(&res, graph, key, ids, n, mode);
		if (!res) {
			rc = fv_error_last()->status;
			break;
		}
		for (k = 0; k < n && rc == FV_OK; k++) {
			if (res[k].status == FV_OK) {
				rc = journal_number(r, index[k], kind, fp, mode == FV_GRAPH_REGISTER
				                    ? "uploaded" : "found", NULL);
				continue;
			}
			if (mode == FV_GRAPH_STATUS && res[k].status != FV_ERR_GRAPH)
				continue; /* it lacks the key: the upload pass deals with it */
			if (mode == FV_GRAPH_STATUS) {
				char why[512];

				/* Unknown whether an earlier upload landed: uploading now
				 * could be the second time. */
				snprintf(why, sizeof(why), "not read (%s); not uploaded to, so that no "
				         "number gets the key twice", res[k].message && *res[k].message
				         ? res[k].message : "Graph API error");
				unread[index[k]] = 1;
				(*failed)++;
				worst = FV_ERR_GRAPH;
				rc = journal_number(r, index[k], kind, fp, NULL, why);
				continue;
			}
			(*failed)++;
			rc = journal_number(r, index[k], kind, fp, NULL,
			                    res[k].message && *res[k].message ? res[k].message : "failed");
			if (res[k].status == FV_ERR_GRAPH || worst == FV_OK)
				worst = res[k].status;
		}
		fv_graph_results_free(res, n);
		if (rc != FV_OK)
			break;
		for (done = 0, k = 0; k < r->target_count; k++)
			done += done_flags[k];
		if ((rc = progress(r, done, r->target_count, "%zu of %zu phone numbers on key %s",
		                   done, r->target_count, target_name)) != FV_OK)
			break;
	}
	free(ids);
	free(index);
	return rc != FV_OK ? rc : worst;
}

/*
 * Move every target number not yet done to the key named `name` (NAME, or
 * KEY for an abort): first read them all (no upload: numbers that hold it
 * already are recorded as found), make sure a local serve holds the key,
 * then upload to the rest. `expect_fp`, when set, is the fingerprint the key
 * must have.
 */
static int move_numbers(struct fv_rotation *r, fv_context *cur, int kind, const char *name,
                        const char *expect_fp, int read_first)
{
	fv_graph *graph = NULL;
	fv_key *key = NULL;
	char fp[FV_FINGERPRINT_HEX_SIZE];
	unsigned char *done_flags = pass_done(r, kind), *unread = NULL;
	size_t pending = 0, i, failed = 0, chunk, unread_count = 0;
	int rc;

	for (i = 0; i < r->target_count; i++)
		pending += !done_flags[i];
	if (!pending)
		return FV_OK;
	if ((rc = fv_key_open(&key, cur, name)) != FV_OK ||
	    (rc = fv_key_fingerprint(fp, key)) != FV_OK)
		goto out;
	if (expect_fp && expect_fp[0] && strcmp(fp, expect_fp) != 0) {
		rc = fv__error_set(FV_ERR_MISMATCH,
			"key %s now has fingerprint %s, not %s which this rotation generated; "
			"its key reference was changed or the key replaced; nothing was uploaded",
			name, fp, expect_fp);
		goto out;
	}
	if ((rc = fv_graph_open(&graph, cur)) != FV_OK)
		goto out;
	chunk = graph->settings.max_in_flight ? graph->settings.max_in_flight : 8;
	if (read_first && (rc = settle_interrupted_uploads(r, graph)) != FV_OK)
		goto out;
	if (read_first) {
		if ((rc = progress(r, r->target_count - pending, r->target_count,
		                   "checking which of %zu phone numbers already hold key %s",
		                   pending, name)) != FV_OK)
			goto out;
		if (!(unread = calloc(r->target_count + 1, 1))) {
			rc = fv__error_nomem();
			goto out;
		}
		rc = register_pass(r, graph, key, kind, FV_GRAPH_STATUS, chunk, &failed, unread);
		if (rc != FV_OK && rc != FV_ERR_GRAPH && rc != FV_ERR_MISMATCH)
			goto out;
		unread_count = failed;
	}
	for (pending = 0, i = 0; i < r->target_count; i++)
		pending += !done_flags[i] && !(unread && unread[i]);
	rc = FV_OK;
	failed = 0;
	/* This machine's serve first (it may need a reload), then every node. */
	if (pending && ((rc = serve_sync(r, cur, name)) != FV_OK ||
	                (rc = nodes_sync(r, cur, kind, name, fp)) != FV_OK))
		goto out;
	if (pending) {
		if ((rc = progress(r, r->target_count - pending, r->target_count,
		                   "registering key %s on %zu phone numbers", name, pending)) != FV_OK)
			goto out;
		rc = register_pass(r, graph, key, kind, FV_GRAPH_REGISTER, chunk, &failed, unread);
	}
	failed += unread_count;
	if (rc == FV_OK && unread_count)
		rc = FV_ERR_GRAPH;
	if (rc == FV_ERR_GRAPH || rc == FV_ERR_MISMATCH) {
		for (i = 0; i < r->target_count && !r->errors[i]; i++)
			;
		rc = fv__error_set(rc,
			"%zu of %zu phone numbers could not be moved to key %s (first: %s: %s); %s",
			failed, r->target_count, name, i < r->target_count ? r->targets[i] : "?",
			i < r->target_count ? r->errors[i] : "?",
			kind == PASS_RESTORE
				? "the abort stopped before the new key left serve.keys: fix the "
				  "cause, then run flowvault rotate --abort again"
				: r->state == FV_ROTATION_SWITCHED
				? "the old key stays in serve.keys: fix the cause, then run "
				  "flowvault rotate --finish again"
				: "the rotation stopped before the switch and both keys stay in "
				  "serve.keys: fix the cause, then run flowvault rotate --resume");
	}
out:
	free(unread);
	fv_graph_free(graph);
	fv_key_free(key);
	return rc;
}

static int step_register(struct fv_rotation *r)
{
	fv_context *cur = NULL;
	int rc;

	if ((rc = fv_context_open(&cur, r->config_path, 0)) != FV_OK)
		return rc;
	/* On resume, numbers uploaded before the interruption are read, not
	 * uploaded again. */
	rc = move_numbers(r, cur, PASS_NEW, r->new_name, r->fingerprint, r->resumed);
	fv_context_free(cur);
	return rc;
}

static int step_switch(struct fv_rotation *r)
{
	json_object *rec;
	int rc, serve_changed = 0;

	test_pause("registered");
	if ((rc = progress(r, r->target_count, r->target_count,
	                   "switching: key %s becomes current, %s previous", r->new_name,
	                   r->key)) != FV_OK)
		return rc;
	if (config_update(r, apply_switch, &serve_changed) != FV_OK)
		return fv__error_prefix("rotate %s -> %s: switch", r->key, r->new_name);
	if (serve_changed)
		serve_reload_or_note(r, "the new key is now tried first");
	rec = record_new("switched");
	r->switched_at = (int64_t)time(NULL);
	json_object_object_add(rec, "time", json_object_new_int64(r->switched_at));
	json_object_object_add(rec, "grace_until",
	                       json_object_new_int64(r->switched_at + r->grace_seconds));
	if ((rc = journal(r, rec)) != FV_OK)
		return rc;
	r->state = FV_ROTATION_SWITCHED;
	return progress(r, r->target_count, r->target_count,
	                "switched: key %s is current; finish after the grace window with "
	                "flowvault rotate --finish %s", r->new_name, r->new_name);
}

/* From the current state up to the switch. */
static int rotation_run(struct fv_rotation *r)
{
	int rc = FV_OK;

	if (r->state == FV_ROTATION_BEGUN)
		rc = step_prepare(r);
	if (rc == FV_OK && r->state == FV_ROTATION_PREPARED)
		rc = step_generate(r);
	if (rc == FV_OK && r->state == FV_ROTATION_GENERATED)
		rc = step_targets(r);
	if (rc == FV_OK && r->state == FV_ROTATION_REGISTERING)
		rc = step_register(r);
	if (rc == FV_OK && r->state == FV_ROTATION_REGISTERING)
		rc = step_switch(r);
	return rc;
}

static int lock_and_load(struct fv_rotation *r)
{
	int rc;

	if ((rc = fv__journal_open(&r->journal, r->journal_path)) != FV_OK)
		return rc;
	return rotation_load(r);
}

static int unfinished_error(const struct fv_rotation *r)
{
	return fv__error_set(FV_ERR_USAGE,
		"a rotation %s -> %s is not finished (step \"%s\", journal %s): %s", r->key,
		r->new_name, fv_rotation_state_name(r->state), r->journal_path,
		r->state == FV_ROTATION_SWITCHED
			? "finish it with flowvault rotate --finish NAME after its grace window, or "
			  "go back with flowvault rotate --abort"
			: r->state == FV_ROTATION_ABORTING
			? "complete the abort with flowvault rotate --abort"
			: "continue it with flowvault rotate --resume, or go back with flowvault "
			  "rotate --abort");
}

int fv_rotate_start(fv_rotation **out, fv_context *ctx, const char *key,
                    const char *new_name, const fv_rotate_options *opts)
{
	struct fv_rotation *r = NULL;
	fv_context *check = NULL;
	json_object *entry = NULL, *root = NULL, *rec;
	fv_key *probe = NULL;
	const char *text;
	int rc, changed, serve_changed;

	if (out)
		*out = NULL;
	if (!key || !new_name)
		return fv__error_set(FV_ERR_USAGE, "rotate needs KEY and --new NAME");
	if ((rc = rotation_new(&r, ctx)) != FV_OK)
		return rc;
	r->opts = opts;
	if ((rc = lock_and_load(r)) != FV_OK)
		goto out;
	if (r->state != FV_ROTATION_NONE && r->state != FV_ROTATION_FINISHED &&
	    r->state != FV_ROTATION_ABORTED) {
		rc = unfinished_error(r);
		goto out;
	}
	/* Work on the file as it is now, not on what ctx read earlier. */
	if ((rc = fv_context_open(&check, r->config_path, 0)) != FV_OK)
		goto out;
	if (!fv__config_key(check, key)) {
		rc = fv__error_set(FV_ERR_USAGE, "no key '%s' in %s", key, r->config_path);
		goto out;
	}
	if (!valid_key_name(new_name) || strcmp(new_name, key) == 0) {
		rc = fv__error_set(FV_ERR_USAGE,
			"--new '%s': give a new key name (letters, digits, '-', '_', '.'; not %s)",
			new_name, key);
		goto out;
	}
	if (fv__config_key(check, new_name)) {
		rc = fv__error_set(FV_ERR_USAGE, "keys.%s already exists in %s; choose another --new NAME",
		                   new_name, r->config_path);
		goto out;
	}
	if ((rc = build_entry(&entry, check, key, new_name, opts ? opts->set : NULL)) != FV_OK)
		goto out;
	free(r->key);
	free(r->new_name);
	json_object_put(r->entry);
	targets_clear(r);
	r->key = strdup(key);
	r->new_name = strdup(new_name);
	r->entry = entry;
	entry = NULL;
	r->grace_seconds = opts && opts->grace_seconds > 0 ? opts->grace_seconds
	                                                   : FV_ROTATION_DEFAULT_GRACE_SECONDS;
	r->fingerprint[0] = '\0';
	r->started_at = r->switched_at = r->finished_at = 0;
	r->destroyed = r->generating = 0;
	if (!r->key || !r->new_name) {
		rc = fv__error_nomem();
		goto out;
	}

	/* Dry run of the configuration change: the whole file must stay valid,
	 * the plugin must accept the new entry, and no key may exist yet at the
	 * new reference (a key found there later is then the one we made). */
	if (!(root = jcopy(check->root))) {
		rc = fv__error_nomem();
		goto out;
	}
	if ((rc = apply_prepare(root, r, &changed, &serve_changed)) != FV_OK)
		goto out;
	fv_context_free(check);
	check = NULL;
	text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
	if ((rc = fv__context_open_text(&check, text, strlen(text), r->config_path)) != FV_OK) {
		fv__error_prefix("the new configuration would not be valid");
		goto out;
	}
	rc = fv_key_open(&probe, check, new_name);
	if (rc == FV_OK) {
		fv_key_free(probe);
		rc = fv__error_set(FV_ERR_EXISTS,
			"a key already exists where keys.%s would point; choose another --new NAME "
			"or --set the key reference to an unused one", new_name);
		goto out;
	}
	if (rc != FV_ERR_NOT_FOUND) {
		fv__error_prefix("checking the new key entry keys.%s", new_name);
		goto out;
	}
	fv_error_clear();

	rec = record_new("begin");
	json_object_object_add(rec, "v", json_object_new_int(1));
	json_object_object_add(rec, "key", json_object_new_string(key));
	json_object_object_add(rec, "new", json_object_new_string(new_name));
	json_object_object_add(rec, "entry", jcopy(r->entry));
	json_object_object_add(rec, "grace_seconds", json_object_new_int64(r->grace_seconds));
	r->started_at = (int64_t)time(NULL);
	json_object_object_add(rec, "time", json_object_new_int64(r->started_at));
	if ((rc = journal(r, rec)) != FV_OK)
		goto out;
	r->state = FV_ROTATION_BEGUN;
	rc = rotation_run(r);
out:
	fv_context_free(check);
	json_object_put(root);
	json_object_put(entry);
	fv__journal_close(r->journal);
	r->journal = NULL;
	r->opts = NULL;
	if (out)
		*out = r;
	else
		fv_rotation_free(r);
	return rc;
}

static int finish_continue(struct fv_rotation *r, int forced);
static int abort_run(struct fv_rotation *r);

int fv_rotate_resume(fv_rotation **out, fv_context *ctx, const fv_rotate_options *opts)
{
	struct fv_rotation *r;
	int rc;

	if (out)
		*out = NULL;
	if ((rc = rotation_new(&r, ctx)) != FV_OK)
		return rc;
	r->opts = opts;
	r->resumed = 1;
	if ((rc = lock_and_load(r)) != FV_OK)
		goto out;
	if (r->state == FV_ROTATION_NONE)
		rc = fv__error_set(FV_ERR_USAGE, "no rotation to resume (no journal at %s)",
		                   r->journal_path);
	else if (r->state == FV_ROTATION_FINISHED || r->state == FV_ROTATION_ABORTED)
		rc = fv__error_set(FV_ERR_USAGE,
			"no rotation to resume: the last one (%s -> %s) is %s", r->key,
			r->new_name, fv_rotation_state_name(r->state));
	else if (r->state == FV_ROTATION_FINISHING)
		rc = finish_continue(r, 0);
	else if (r->state == FV_ROTATION_ABORTING)
		rc = abort_run(r);
	else if (r->state != FV_ROTATION_SWITCHED)
		rc = rotation_run(r);
out:
	fv__journal_close(r->journal);
	r->journal = NULL;
	r->opts = NULL;
	if (out)
		*out = r;
	else
		fv_rotation_free(r);
	return rc;
}

int fv_rotation_read(fv_rotation **out, fv_context *ctx)
{
	struct fv_rotation *r;
	int rc;

	if (!out)
		return fv__error_set(FV_ERR_USAGE, "fv_rotation_read: out is NULL");
	*out = NULL;
	if ((rc = rotation_new(&r, ctx)) != FV_OK)
		return rc;
	if ((rc = rotation_load(r)) != FV_OK) {
		fv_rotation_free(r);
		return rc;
	}
	*out = r;
	return FV_OK;
}

/*
 * A context in which key `name` has `entry`: the configuration as it is,
 * with the journaled entry put back in memory. The key to delete is
 * deleted after its entry left the configuration file, so that a crash in
 * between never leaves the file naming a deleted key.
 */
static int context_with_entry(fv_context **out, fv_context *base, const char *name,
                              json_object *entry)
{
	json_object *root, *e;
	const char *text;
	int rc;

	*out = NULL;
	if (!entry)
		return fv__error_set(FV_ERR_CONFIG, "keys.%s: its entry is neither in the "
		                     "configuration nor in the rotation journal", name);
	root = jcopy(base->root);
	e = jcopy(entry);
	if (!root || !e || !jget(root, "keys")) {
		json_object_put(root);
		json_object_put(e);
		return root && e ? fv__error_set(FV_ERR_CONFIG, "the configuration has no keys")
		                 : fv__error_nomem();
	}
	json_object_object_del(e, "phone_numbers");
	json_object_object_del(e, "waba_id");
	json_object_object_add(jget(root, "keys"), name, e);
	text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
	rc = fv__context_open_text(out, text, strlen(text), base->config_path);
	json_object_put(root);
	return rc;
}

/* Delete key `name` (described by `entry`) in its backend (FV_CAP_DELETE);
 * with check_only, only whether its plugin can. */
static int key_delete(fv_context *base, const char *name, json_object *entry,
                      const char *option, int check_only)
{
	const struct fv_key_entry *ke;
	const struct fv_plugin *plugin = NULL;
	int (*del)(fv_instance *) = NULL;
	struct fv_config *cfg = NULL;
	fv_instance *inst = NULL;
	fv_context *cur = NULL;
	int rc;

	if ((rc = context_with_entry(&cur, base, name, entry)) != FV_OK)
		return fv__error_prefix("%s", option);
	ke = fv__config_key(cur, name);
	if (fv__plugin_get(&plugin, cur, ke->provider) != FV_OK || !plugin) {
		rc = fv__error_prefix("keys.%s.provider", name);
		goto out;
	}
	if (plugin->ops->capabilities & FV_CAP_DELETE)
		del = FV_PLUGIN_OP(plugin, key_delete);
	if (!del) {
		rc = fv__error_set(FV_ERR_UNSUPPORTED,
			"%s: the %s plugin cannot delete keys (it lacks the delete capability); "
			"nothing was changed: run it without %s, then remove key %s from its store "
			"with the store's own tools", option, plugin->name, option, name);
		goto out;
	}
	if (check_only)
		goto out;
	if ((rc = fv__config_view_new(&cfg, cur, name, plugin->ops->config_fields)) != FV_OK)
		goto out;
	fv_error_clear();
	rc = plugin->ops->instance_open(cfg, &inst);
	if (rc == FV_OK) {
		fv_error_clear();
		rc = del(inst);
		plugin->ops->instance_close(inst);
	}
	if (rc == FV_ERR_NOT_FOUND) {
		/* Deleted before an interruption kept it out of the journal. */
		fv__log(FV_LOG_INFO, "rotate: key %s is already gone from its backend", name);
		fv_error_clear();
		rc = FV_OK;
	} else if (rc != FV_OK) {
		if (rc > 0)
			rc = FV_ERR_PLUGIN;
		if (!fv_error_last()->message[0])
			fv__error_set(rc, "the %s plugin gave no reason", plugin->name);
		fv__error_prefix("deleting key '%s' (%s)", name, plugin->name);
	}
	fv__config_view_free(cfg);
out:
	fv_context_free(cur);
	return rc;
}

/* NAME leaves serve.keys; with `destroy`, keys.NAME leaves the
 * configuration too. */
static void drop_key(json_object *root, const char *name, int destroy, int *changed,
                     int *serve_changed)
{
	json_object *serve_keys = jget(jget(root, "serve"), "keys");

	*changed = *serve_changed = 0;
	if (json_object_is_type(serve_keys, json_type_array) && array_has(serve_keys, name)) {
		json_object *list = json_object_new_array();
		size_t i;

		for (i = 0; i < json_object_array_length(serve_keys); i++) {
			json_object *item = json_object_array_get_idx(serve_keys, i);

			if (strcmp(json_object_get_string(item), name) != 0)
				json_object_array_add(list, json_object_get(item));
		}
		json_object_object_add(jget(root, "serve"), "keys", list);
		*changed = *serve_changed = 1;
	}
	if (destroy && jget(jget(root, "keys"), name)) {
		json_object_object_del(jget(root, "keys"), name);
		*changed = 1;
	}
}

/* KEY leaves serve.keys; when the finish destroys it, keys.KEY goes too. */
static int apply_retire(json_object *root, const struct fv_rotation *r, int *changed,
                        int *serve_changed)
{
	drop_key(root, r->key, r->finish_destroy, changed, serve_changed);
	return FV_OK;
}

static int append_ids(json_object *list, char *buf, size_t len)
{
	size_t i, used = 0, n = json_object_array_length(list);

	buf[0] = '\0';
	for (i = 0; i < n && used + 32 < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
		                         json_object_get_string(json_object_array_get_idx(list, i)));
	if (i < n)
		snprintf(buf + used, len - used, " and %zu more", n - i);
	return (int)n;
}

/*
 * Before KEY is retired: list NAME's numbers again (its phone_numbers and
 * the numbers of its waba_id now) and read each; journal what was checked
 * and what lacks NAME, then register NAME on those (or refuse).
 */
static int finish_check(struct fv_rotation *r, fv_context *cur, int no_register)
{
	json_object *all = json_object_new_array(), *missing = json_object_new_array(), *rec;
	json_object *unread = json_object_new_array();
	const char **ids = NULL;
	fv_graph *graph = NULL;
	fv_graph_result *res = NULL;
	fv_key *key = NULL;
	char fp[FV_FINGERPRINT_HEX_SIZE], names[1024];
	size_t i, n;
	int rc = FV_OK;

	if (!all || !missing || !unread) {
		rc = fv__error_nomem();
		goto out;
	}
	if ((rc = key_numbers(all, cur, r->new_name, &graph)) != FV_OK) {
		fv__error_prefix("--finish: listing the phone numbers of WABA %s again",
		                 fv_context_key_waba(cur, r->new_name));
		goto out;
	}
	n = json_object_array_length(all);
	if (n) {
		if ((rc = fv_key_open(&key, cur, r->new_name)) != FV_OK ||
		    (rc = fv_key_fingerprint(fp, key)) != FV_OK)
			goto out;
		if (r->fingerprint[0] && strcmp(fp, r->fingerprint) != 0) {
			rc = fv__error_set(FV_ERR_MISMATCH,
				"key %s now has fingerprint %s, not %s which this rotation generated; "
				"its key reference was changed or the key replaced; nothing was changed",
				r->new_name, fp, r->fingerprint);
			goto out;
		}
		if (!graph && (rc = fv_graph_open(&graph, cur)) != FV_OK)
			goto out;
		if (!(ids = calloc(n, sizeof(*ids)))) {
			rc = fv__error_nomem();
			goto out;
		}
		for (i = 0; i < n; i++)
			ids[i] = json_object_get_string(json_object_array_get_idx(all, i));
		fv_graph_check(&res, graph, key, ids, n, FV_GRAPH_STATUS);
		if (!res) {
			rc = fv__error_prefix("--finish: reading the phone numbers of key %s",
			                      r->new_name);
			goto out;
		}
		rc = FV_OK;
		for (i = 0; i < n && rc == FV_OK; i++) {
			ssize_t k;

			rc = target_add(r, ids[i]);
			k = target_index(r, ids[i]);
			if (rc != FV_OK || k < 0)
				break;
			if (res[i].status == FV_ERR_GRAPH) {
				/* Not known: an upload could be its second. */
				json_object_array_add(unread, json_object_new_string(ids[i]));
				target_error_set(r, (size_t)k, res[i].message);
			} else if (res[i].status != FV_OK) {
				json_object_array_add(missing, json_object_new_string(ids[i]));
				r->registered[k] = 0;
			} else {
				r->registered[k] = 1;
			}
		}
		if (rc != FV_OK)
			goto out;
	}
	rec = record_new("finish_check");
	json_object_object_add(rec, "phone_numbers", json_object_get(all));
	json_object_object_add(rec, "missing", json_object_get(missing));
	json_object_object_add(rec, "unread", json_object_get(unread));
	json_object_object_add(rec, "fingerprint", json_object_new_string(r->fingerprint));
	if ((rc = journal(r, rec)) != FV_OK)
		goto out;
	if (json_object_array_length(unread)) {
		ssize_t first = target_index(r, json_object_get_string(
		                                    json_object_array_get_idx(unread, 0)));

		append_ids(unread, names, sizeof(names));
		rc = fv__error_set(FV_ERR_GRAPH,
			"--finish: %zu of %zu phone numbers of key %s could not be read (%s; first: "
			"%s); key %s stays until every number is known to hold %s: run flowvault "
			"rotate --finish %s again", json_object_array_length(unread), n, r->new_name,
			names, first >= 0 && r->errors[first] ? r->errors[first] : "?", r->key,
			r->new_name, r->new_name);
		goto out;
	}
	if (!json_object_array_length(missing))
		goto out;
	append_ids(missing, names, sizeof(names));
	if (no_register) {
		rc = fv__error_set(FV_ERR_MISMATCH,
			"--finish --no-register: %zu of %zu phone numbers of key %s do not hold it as "
			"VALID: %s; key %s still serves them, so it stays: register %s on them "
			"(flowvault rotate --finish %s without --no-register does), then finish",
			json_object_array_length(missing), n, r->new_name, names, r->key,
			r->new_name, r->new_name);
		goto out;
	}
	fv__log(FV_LOG_INFO, "rotate: registering key %s on %zu phone numbers that lack it: %s",
	        r->new_name, json_object_array_length(missing), names);
	rc = move_numbers(r, cur, PASS_NEW, r->new_name, r->fingerprint, 0);
out:
	fv_graph_results_free(res, res ? json_object_array_length(all) : 0);
	free(ids);
	fv_key_free(key);
	fv_graph_free(graph);
	json_object_put(all);
	json_object_put(missing);
	json_object_put(unread);
	return rc;
}

/* "finishing" is journaled: retire KEY in the configuration, reload serve,
 * then delete KEY in its backend, then record the end. */
static int finish_continue(struct fv_rotation *r, int forced)
{
	fv_context *cur = NULL;
	json_object *rec;
	int rc, serve_changed = 0;

	if (config_update(r, apply_retire, &serve_changed) != FV_OK)
		return fv__error_prefix("rotate --finish %s", r->new_name);
	if (serve_changed)
		serve_reload_or_note(r, "the old key was removed");
	test_pause("retired");
	if (r->finish_destroy && !r->destroyed) {
		if ((rc = fv_context_open(&cur, r->config_path, 0)) != FV_OK)
			return rc;
		rc = key_delete(cur, r->key, r->old_entry, "--destroy-old", 0);
		fv_context_free(cur);
		if (rc != FV_OK)
			return fv__error_prefix("key %s left the configuration; its deletion did not "
			                        "happen (run flowvault rotate --resume to try again)",
			                        r->key);
		if ((rc = journal(r, record_new("destroyed"))) != FV_OK)
			return rc;
		r->destroyed = 1;
	}
	rec = record_new("finished");
	r->finished_at = (int64_t)time(NULL);
	json_object_object_add(rec, "time", json_object_new_int64(r->finished_at));
	json_object_object_add(rec, "destroyed", json_object_new_boolean(r->destroyed));
	json_object_object_add(rec, "forced", json_object_new_boolean(forced));
	if ((rc = journal(r, rec)) == FV_OK)
		r->state = FV_ROTATION_FINISHED;
	return rc;
}

int fv_rotate_finish(fv_rotation **out, fv_context *ctx, const char *new_name,
                     unsigned int flags, long grace_seconds)
{
	struct fv_rotation *r;
	fv_context *cur = NULL;
	json_object *rec;
	int rc, destroy = (flags & FV_ROTATE_DESTROY_OLD) != 0, forced = 0;
	int64_t now = (int64_t)time(NULL), until;

	if (out)
		*out = NULL;
	if ((rc = rotation_new(&r, ctx)) != FV_OK)
		return rc;
	if ((rc = lock_and_load(r)) != FV_OK)
		goto out;
	if (r->state == FV_ROTATION_NONE) {
		rc = fv__error_set(FV_ERR_USAGE, "no rotation to finish (no journal at %s)",
		                   r->journal_path);
		goto out;
	}
	if (!new_name || strcmp(new_name, r->new_name) != 0) {
		rc = fv__error_set(FV_ERR_USAGE,
			"--finish %s: the last rotation is %s -> %s; give its new key's name",
			new_name ? new_name : "(none)", r->key, r->new_name);
		goto out;
	}
	if (r->state == FV_ROTATION_FINISHED) {
		rc = fv__error_set(FV_ERR_USAGE, "the rotation %s -> %s is already finished",
		                   r->key, r->new_name);
		goto out;
	}
	if (r->state == FV_ROTATION_ABORTING || r->state == FV_ROTATION_ABORTED) {
		rc = fv__error_set(FV_ERR_USAGE,
			"the rotation %s -> %s was aborted%s; there is nothing to finish",
			r->key, r->new_name, r->state == FV_ROTATION_ABORTING
				? " (not completely: run flowvault rotate --abort again)" : "");
		goto out;
	}
	if (r->state != FV_ROTATION_SWITCHED && r->state != FV_ROTATION_FINISHING) {
		rc = fv__error_set(FV_ERR_USAGE,
			"the rotation %s -> %s has not switched yet (step \"%s\"): run flowvault "
			"rotate --resume first", r->key, r->new_name, fv_rotation_state_name(r->state));
		goto out;
	}
	if ((rc = fv_context_open(&cur, r->config_path, 0)) != FV_OK)
		goto out;
	if (r->state == FV_ROTATION_SWITCHED) {
		if (grace_seconds > 0)
			r->grace_seconds = grace_seconds;
		until = r->switched_at + r->grace_seconds;
		if (now < until && !(flags & FV_ROTATE_FORCE)) {
			char when[64];
			time_t t = (time_t)until;
			struct tm tm;

			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&t, &tm));
			rc = fv__error_set(FV_ERR_GENERIC,
				"the grace window of rotation %s -> %s lasts until %s (%lld s from now): "
				"clients may still encrypt to key %s; try again then, or pass --force",
				r->key, r->new_name, when, (long long)(until - now), r->key);
			goto out;
		}
		forced = now < until;
	}
	/* Refuse before changing anything when the plugin cannot delete. */
	if (destroy && !r->destroyed &&
	    (rc = key_delete(cur, r->key, r->old_entry ? r->old_entry
	                     : jget(jget(cur->root, "keys"), r->key), "--destroy-old", 1)) != FV_OK)
		goto out;
	if (r->state == FV_ROTATION_SWITCHED &&
	    (rc = finish_check(r, cur, (flags & FV_ROTATE_NO_REGISTER) != 0)) != FV_OK)
		goto out;
	if (r->state == FV_ROTATION_SWITCHED || (destroy && !r->finish_destroy)) {
		json_object *entry = jget(jget(cur->root, "keys"), r->key);

		rec = record_new("finishing");
		json_object_object_add(rec, "destroy", json_object_new_boolean(destroy ||
		                                                              r->finish_destroy));
		json_object_object_add(rec, "old_entry", entry ? jcopy(entry) : jcopy(r->old_entry));
		if ((rc = journal(r, rec)) != FV_OK)
			goto out;
		if (entry) {
			json_object_put(r->old_entry);
			r->old_entry = jcopy(entry);
		}
		r->finish_destroy |= destroy;
		r->state = FV_ROTATION_FINISHING;
	}
	test_pause("finishing");
	rc = finish_continue(r, forced);
out:
	fv_context_free(cur);
	fv__journal_close(r->journal);
	r->journal = NULL;
	if (out)
		*out = r;
	else
		fv_rotation_free(r);
	return rc;
}

/* ---- Abort ---- */

/* KEY takes back what NAME took at the switch, and comes right before NAME
 * in serve.keys (the order before the switch). */
static int apply_unswitch(json_object *root, const struct fv_rotation *r, int *changed,
                          int *serve_changed)
{
	json_object *keys = jget(root, "keys"), *old, *new_entry, *serve_keys, *v;
	size_t i;

	*changed = *serve_changed = 0;
	if (!(old = jget(keys, r->key)))
		return fv__error_set(FV_ERR_CONFIG, "keys.%s: no longer in the configuration; the "
		                     "abort cannot give its phone numbers back", r->key);
	new_entry = jget(keys, r->new_name);
	if (new_entry && (v = jget(new_entry, "phone_numbers")) != NULL) {
		json_object *mine = jget(old, "phone_numbers");

		if (!mine) {
			json_object_object_add(old, "phone_numbers", json_object_get(v));
		} else {
			for (i = 0; i < json_object_array_length(v); i++)
				add_unique(mine, json_object_get_string(json_object_array_get_idx(v, i)));
		}
		json_object_object_del(new_entry, "phone_numbers");
		*changed = 1;
	}
	if (new_entry && (v = jget(new_entry, "waba_id")) != NULL) {
		if (!jget(old, "waba_id"))
			json_object_object_add(old, "waba_id", json_object_get(v));
		json_object_object_del(new_entry, "waba_id");
		*changed = 1;
	}
	serve_keys = jget(jget(root, "serve"), "keys");
	if (json_object_is_type(serve_keys, json_type_array) && array_has(serve_keys, r->key) &&
	    array_has(serve_keys, r->new_name)) {
		json_object *list = json_object_new_array();

		for (i = 0; i < json_object_array_length(serve_keys); i++) {
			json_object *item = json_object_array_get_idx(serve_keys, i);
			const char *s = json_object_get_string(item);

			if (strcmp(s, r->new_name) == 0)
				continue;
			json_object_array_add(list, json_object_get(item));
			if (strcmp(s, r->key) == 0)
				json_object_array_add(list, json_object_new_string(r->new_name));
		}
		if (!json_object_equal(list, serve_keys)) {
			json_object_object_add(jget(root, "serve"), "keys", list);
			*changed = *serve_changed = 1;
		} else {
			json_object_put(list);
		}
	}
	return FV_OK;
}

/* Every number is back on KEY: NAME leaves serve.keys (and, destroying it,
 * the configuration). */
static int apply_release(json_object *root, const struct fv_rotation *r, int *changed,
                         int *serve_changed)
{
	drop_key(root, r->new_name, r->abort_destroy, changed, serve_changed);
	return FV_OK;
}

static int abort_run(struct fv_rotation *r)
{
	fv_context *cur = NULL;
	int rc, serve_changed = 0;

	if ((rc = progress(r, 0, r->target_count, "aborting: key %s takes its phone numbers back",
	                   r->key)) != FV_OK)
		return rc;
	if (config_update(r, apply_unswitch, &serve_changed) != FV_OK)
		return fv__error_prefix("rotate --abort");
	if (serve_changed)
		serve_reload_or_note(r, "the previous key is tried first again");
	test_pause("unswitched");
	if (r->target_count) {
		if ((rc = fv_context_open(&cur, r->config_path, 0)) != FV_OK)
			return rc;
		/* Read every number first: those that never moved, or were put
		 * back before an interruption, are not uploaded to. */
		rc = move_numbers(r, cur, PASS_RESTORE, r->key, NULL, 1);
		fv_context_free(cur);
		cur = NULL;
		if (rc != FV_OK)
			return rc;
	}
	if (config_update(r, apply_release, &serve_changed) != FV_OK)
		return fv__error_prefix("rotate --abort");
	if (serve_changed)
		serve_reload_or_note(r, "the new key was removed");
	if (r->abort_destroy && !r->new_destroyed) {
		if ((rc = fv_context_open(&cur, r->config_path, 0)) != FV_OK)
			return rc;
		rc = key_delete(cur, r->new_name, r->entry, "--destroy-new", 0);
		fv_context_free(cur);
		if (rc != FV_OK)
			return fv__error_prefix("key %s left the configuration; its deletion did not "
			                        "happen (run flowvault rotate --abort --destroy-new "
			                        "again)", r->new_name);
		if ((rc = journal(r, record_new("new_destroyed"))) != FV_OK)
			return rc;
		r->new_destroyed = 1;
	}
	{
		json_object *rec = record_new("aborted");

		r->aborted_at = (int64_t)time(NULL);
		json_object_object_add(rec, "time", json_object_new_int64(r->aborted_at));
		if ((rc = journal(r, rec)) != FV_OK)
			return rc;
	}
	r->state = FV_ROTATION_ABORTED;
	return progress(r, r->target_count, r->target_count,
	                "aborted: every phone number holds key %s again; key %s is %s", r->key,
	                r->new_name, r->new_destroyed ? "deleted" : "unused");
}

int fv_rotate_abort(fv_rotation **out, fv_context *ctx, unsigned int flags,
                    const fv_rotate_options *opts)
{
	struct fv_rotation *r;
	fv_context *cur = NULL;
	int rc, destroy = (flags & FV_ROTATE_DESTROY_NEW) != 0;

	if (out)
		*out = NULL;
	if ((rc = rotation_new(&r, ctx)) != FV_OK)
		return rc;
	r->opts = opts;
	if ((rc = lock_and_load(r)) != FV_OK)
		goto out;
	if (r->state == FV_ROTATION_NONE) {
		rc = fv__error_set(FV_ERR_USAGE, "no rotation to abort (no journal at %s)",
		                   r->journal_path);
		goto out;
	}
	if (r->state == FV_ROTATION_FINISHED || r->state == FV_ROTATION_FINISHING) {
		rc = fv__error_set(FV_ERR_USAGE,
			"the rotation %s -> %s cannot be aborted: --finish %s has run and key %s is "
			"retired%s; to go back, rotate %s to a new key", r->key, r->new_name,
			r->new_name, r->key, r->state == FV_ROTATION_FINISHING
				? " (not completely: run flowvault rotate --resume)" : "", r->new_name);
		goto out;
	}
	if (r->state == FV_ROTATION_ABORTED && (!destroy || r->new_destroyed))
		goto out; /* done already: nothing changes */
	if ((rc = fv_context_open(&cur, r->config_path, 0)) != FV_OK)
		goto out;
	/* Refuse before changing anything when the plugin cannot delete. */
	if (destroy && (rc = key_delete(cur, r->new_name, r->entry, "--destroy-new", 1)) != FV_OK)
		goto out;
	if (r->state != FV_ROTATION_ABORTING || (destroy && !r->abort_destroy)) {
		json_object *rec = record_new("aborting");

		json_object_object_add(rec, "destroy_new", json_object_new_boolean(destroy ||
		                                                                  r->abort_destroy));
		json_object_object_add(rec, "from", json_object_new_string(
		                               fv_rotation_state_name(r->state)));
		if ((rc = journal(r, rec)) != FV_OK)
			goto out;
		r->abort_destroy |= destroy;
		r->state = FV_ROTATION_ABORTING;
	}
	rc = abort_run(r);
out:
	fv_context_free(cur);
	fv__journal_close(r->journal);
	r->journal = NULL;
	r->opts = NULL;
	if (out)
		*out = r;
	else
		fv_rotation_free(r);
	return rc;
}

/* ---- Accessors ---- */

int fv_rotation_state(const fv_rotation *r) { return r ? r->state : FV_ROTATION_NONE; }
const char *fv_rotation_key(const fv_rotation *r) { return r ? r->key : NULL; }
const char *fv_rotation_new_key(const fv_rotation *r) { return r ? r->new_name : NULL; }
const char *fv_rotation_journal_path(const fv_rotation *r) { return r ? r->journal_path : NULL; }
const char *fv_rotation_fingerprint(const fv_rotation *r) { return r ? r->fingerprint : ""; }
int64_t fv_rotation_started_at(const fv_rotation *r) { return r ? r->started_at : 0; }
int64_t fv_rotation_switched_at(const fv_rotation *r) { return r ? r->switched_at : 0; }
int64_t fv_rotation_finished_at(const fv_rotation *r) { return r ? r->finished_at : 0; }
long fv_rotation_grace_seconds(const fv_rotation *r) { return r ? r->grace_seconds : 0; }
int fv_rotation_old_destroyed(const fv_rotation *r) { return r ? r->destroyed : 0; }
size_t fv_rotation_target_count(const fv_rotation *r) { return r ? r->target_count : 0; }
const char *fv_rotation_serve_note(const fv_rotation *r) { return r ? r->serve_note : NULL; }

const char *fv_rotation_target(const fv_rotation *r, size_t index)
{
	return r && index < r->target_count ? r->targets[index] : NULL;
}

int fv_rotation_target_registered(const fv_rotation *r, size_t index)
{
	return r && index < r->target_count ? r->registered[index] : 0;
}

const char *fv_rotation_target_error(const fv_rotation *r, size_t index)
{
	return r && index < r->target_count ? r->errors[index] : NULL;
}

int64_t fv_rotation_aborted_at(const fv_rotation *r) { return r ? r->aborted_at : 0; }
int64_t fv_rotation_state_since(const fv_rotation *r) { return r ? r->state_since : 0; }

int64_t fv_rotation_grace_overrun(const fv_rotation *r, int64_t now)
{
	int64_t until;

	if (!r || r->state != FV_ROTATION_SWITCHED || !r->switched_at)
		return 0;
	until = r->switched_at + r->grace_seconds;
	return now > until ? now - until : 0;
}

int fv_rotation_target_state(const fv_rotation *r, size_t index)
{
	if (!r || index >= r->target_count)
		return FV_ROTATION_NUMBER_OLD_KEY;
	if (r->errors[index])
		return FV_ROTATION_NUMBER_FAILED;
	if (r->restored[index])
		return FV_ROTATION_NUMBER_OLD_KEY;
	return r->registered[index] ? FV_ROTATION_NUMBER_NEW_KEY : FV_ROTATION_NUMBER_OLD_KEY;
}

size_t fv_rotation_registered_count(const fv_rotation *r)
{
	size_t i, n = 0;

	for (i = 0; r && i < r->target_count; i++)
		n += r->registered[i] && !r->restored[i];
	return n;
}
