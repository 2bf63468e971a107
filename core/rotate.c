/*
 * Key rotation: KEY -> NAME in steps, each recorded in the journal
 * (journal.c) before the next one starts, so that an interrupted rotation
 * continues where it stopped. See lifecycle.h for the steps and
 * docs/lifecycle.md for the operator's view.
 *
 * Invariant: no phone number is moved to NAME before serve.keys holds NAME,
 * and KEY stays in serve.keys until --finish, so every number always holds
 * a key that `flowvault serve` decrypts with (once serve has been restarted
 * on the configuration: it reads serve.keys at start).
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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
	unsigned char *registered;
	char **errors;
	int64_t started_at, switched_at, finished_at;
	long grace_seconds;
	int destroyed;
	char *serve_note;

	/* While working. */
	struct fv__journal *journal;
	const fv_rotate_options *opts;
	int resumed;
};

const char *fv_rotation_state_name(int state)
{
	static const char *const names[] = { "none", "begun", "prepared", "generated",
	                                     "registering", "switched", "finished" };

	return state >= 0 && state <= FV_ROTATION_FINISHED ? names[state] : "unknown";
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
	r->targets = r->errors = NULL;
	r->registered = NULL;
	r->target_count = 0;
}

void fv_rotation_free(fv_rotation *r)
{
	if (!r)
		return;
	fv__journal_close(r->journal);
	targets_clear(r);
	json_object_put(r->entry);
	free(r->config_path);
	free(r->journal_path);
	free(r->key);
	free(r->new_name);
	free(r->serve_note);
	free(r);
}

static int targets_set(struct fv_rotation *r, json_object *list)
{
	size_t i, n = json_object_array_length(list);

	targets_clear(r);
	r->targets = calloc(n + 1, sizeof(*r->targets));
	r->errors = calloc(n + 1, sizeof(*r->errors));
	r->registered = calloc(n + 1, 1);
	if (!r->targets || !r->errors || !r->registered)
		return fv__error_nomem();
	for (i = 0; i < n; i++) {
		const char *id = json_object_get_string(json_object_array_get_idx(list, i));

		if (!(r->targets[i] = strdup(id ? id : "")))
			return fv__error_nomem();
		r->target_count = i + 1;
	}
	r->target_count = n;
	return FV_OK;
}

static ssize_t target_index(const struct fv_rotation *r, const char *id)
{
	size_t i;

	for (i = 0; id && i < r->target_count; i++)
		if (strcmp(r->targets[i], id) == 0)
			return (ssize_t)i;
	return -1;
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
	r->entry = NULL;
	free(r->key);
	free(r->new_name);
	r->key = r->new_name = NULL;
	r->state = FV_ROTATION_NONE;
	r->generating = r->destroyed = 0;
	r->fingerprint[0] = '\0';
	r->started_at = r->switched_at = r->finished_at = 0;
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
	r->started_at = jint(rec, "time");
	if (jint(rec, "grace_seconds") > 0)
		r->grace_seconds = (long)jint(rec, "grace_seconds");
	r->state = FV_ROTATION_BEGUN;
	for (i = begin + 1; i < n && rc == FV_OK; i++) {
		const char *ev;

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
		} else if (strcmp(ev, "registered") == 0) {
			ssize_t k = target_index(r, jstr(rec, "phone"));

			if (k >= 0)
				r->registered[k] = 1;
		} else if (strcmp(ev, "switched") == 0) {
			r->switched_at = jint(rec, "time");
			r->state = FV_ROTATION_SWITCHED;
		} else if (strcmp(ev, "destroyed") == 0) {
			r->destroyed = 1;
		} else if (strcmp(ev, "finished") == 0) {
			r->finished_at = jint(rec, "time");
			r->state = FV_ROTATION_FINISHED;
		}
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
 * (FLOWVAULT_TEST_ROTATE_PAUSE=prepared|generated|registered). */
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

static void apply_finish(json_object *root, const struct fv_rotation *r, int destroy,
                         int *changed, int *serve_changed)
{
	json_object *serve_keys = jget(jget(root, "serve"), "keys");

	*changed = *serve_changed = 0;
	if (json_object_is_type(serve_keys, json_type_array) && array_has(serve_keys, r->key)) {
		json_object *list = json_object_new_array();
		size_t i;

		for (i = 0; i < json_object_array_length(serve_keys); i++) {
			json_object *item = json_object_array_get_idx(serve_keys, i);

			if (strcmp(json_object_get_string(item), r->key) != 0)
				json_object_array_add(list, json_object_get(item));
		}
		json_object_object_add(jget(root, "serve"), "keys", list);
		*changed = *serve_changed = 1;
	}
	if (destroy && jget(jget(root, "keys"), r->key)) {
		json_object_object_del(jget(root, "keys"), r->key);
		*changed = 1;
	}
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

static int step_targets(struct fv_rotation *r)
{
	fv_context *cur = NULL;
	fv_graph *graph = NULL;
	json_object *list = json_object_new_array(), *rec;
	const char *waba;
	size_t i, n;
	int rc;

	if ((rc = progress(r, 0, 0, "listing the phone numbers of key %s", r->key)) != FV_OK)
		goto out;
	if ((rc = fv_context_open(&cur, r->config_path, 0)) != FV_OK)
		goto out;
	n = fv_context_key_phone_count(cur, r->key);
	for (i = 0; i < n; i++)
		add_unique(list, fv_context_key_phone(cur, r->key, i));
	if ((waba = fv_context_key_waba(cur, r->key)) != NULL) {
		char **ids = NULL;

		if ((rc = fv_graph_open(&graph, cur)) != FV_OK ||
		    (rc = fv_graph_waba_phone_numbers(&ids, &n, graph, waba)) != FV_OK)
			goto out;
		for (i = 0; i < n; i++)
			add_unique(list, ids[i]);
		fv_graph_ids_free(ids);
	}
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

struct probe_body {
	char *data;
	size_t len;
};

static size_t probe_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct probe_body *b = arg;
	size_t n = size * nmemb;
	char *grown;

	if (b->len + n > 65536 || !(grown = realloc(b->data, b->len + n + 1)))
		return 0;
	b->data = grown;
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

/*
 * Before any number moves to NAME, a flowvault serve running on this
 * configuration must already decrypt with NAME: ask its /healthz (which
 * lists the keys it holds). Nothing listening is fine (it will read the new
 * serve.keys when it starts); a serve that does not hold NAME stops the
 * rotation here.
 */
static int serve_probe(struct fv_rotation *r, fv_context *cur)
{
	struct serve_config sc;
	struct probe_body body = { 0 };
	json_object *doc = NULL, *keys;
	const char *host;
	char url[512];
	CURL *curl;
	CURLcode cc;
	long http = 0;
	size_t i;
	int rc = FV_OK, listed = 0;

	if (!cur->serve)
		return FV_OK;
	if (fv__serve_config_parse(&sc, cur->serve, "serve", cur) != FV_OK)
		return fv_error_last()->status;
	for (i = 0; i < sc.key_count; i++)
		listed |= strcmp(sc.keys[i], r->new_name) == 0;
	if (!listed) {
		fv__serve_config_clear(&sc);
		return FV_OK;
	}
	if (!sc.admin_listen) {
		fv__log(FV_LOG_WARNING, "rotate: serve.admin_listen is off, so whether a running "
		        "flowvault serve holds key %s cannot be checked; make sure every running "
		        "serve was restarted on %s", r->new_name, r->config_path);
		fv__serve_config_clear(&sc);
		return FV_OK;
	}
	host = strcmp(sc.admin_host, "0.0.0.0") == 0 ? "127.0.0.1"
	     : strcmp(sc.admin_host, "::") == 0 ? "::1" : sc.admin_host;
	/* /healthz is on the admin listener, always plain HTTP. */
	snprintf(url, sizeof(url), "http://%s%s%s:%u/healthz",
	         strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", sc.admin_port);
	if (!(curl = curl_easy_init())) {
		fv__serve_config_clear(&sc);
		return fv__error_nomem();
	}
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, probe_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
	cc = curl_easy_perform(curl);
	if (cc == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http);
	curl_easy_cleanup(curl);
	if (cc == CURLE_COULDNT_CONNECT) {
		fv__log(FV_LOG_INFO, "rotate: no flowvault serve answers at %s; it will read "
		        "serve.keys when it starts", url);
	} else if (cc != CURLE_OK || (http != 200 && http != 503) ||
	           !(doc = json_tokener_parse(body.data ? body.data : "")) ||
	           !json_object_object_get_ex(doc, "keys", &keys)) {
		fv__log(FV_LOG_WARNING, "rotate: cannot tell whether the flowvault serve at %s holds "
		        "key %s (%s); make sure every running serve was restarted on %s",
		        url, r->new_name, cc != CURLE_OK ? curl_easy_strerror(cc) : "unexpected answer",
		        r->config_path);
	} else if (!json_object_object_get_ex(keys, r->new_name, NULL)) {
		rc = fv__error_set(FV_ERR_GENERIC,
			"the flowvault serve at %s does not decrypt with key %s yet (it reads "
			"serve.keys only when it starts): restart it, then run flowvault rotate "
			"--resume; no phone number was moved", url, r->new_name);
	}
	json_object_put(doc);
	free(body.data);
	fv__serve_config_clear(&sc);
	return rc;
}

static int journal_registered(struct fv_rotation *r, size_t index, const char *how)
{
	json_object *rec = record_new("registered");

	json_object_object_add(rec, "phone", json_object_new_string(r->targets[index]));
	json_object_object_add(rec, "fingerprint", json_object_new_string(r->fingerprint));
	json_object_object_add(rec, "how", json_object_new_string(how));
	if (journal(r, rec) != FV_OK)
		return fv_error_last()->status;
	r->registered[index] = 1;
	free(r->errors[index]);
	r->errors[index] = NULL;
	return FV_OK;
}

/* One pass over the numbers not yet registered, `chunk` at a time. With
 * FV_GRAPH_STATUS (on resume) numbers that already hold NAME as VALID, from
 * an upload the interruption kept out of the journal, are recorded without
 * a second upload. Returns the worst per-number status. */
static int register_pass(struct fv_rotation *r, fv_graph *graph, fv_key *key, int mode,
                         size_t chunk, size_t *failed)
{
	const char **ids = calloc(chunk, sizeof(*ids));
	size_t *index = calloc(chunk, sizeof(*index));
	size_t i = 0, n, k, done;
	int worst = FV_OK, rc = FV_OK;

	*failed = 0;
	if (!ids || !index) {
		free(ids);
		free(index);
		return fv__error_nomem();
	}
	while (i < r->target_count) {
		fv_graph_result *res = NULL;

		for (n = 0; i < r->target_count && n < chunk; i++)
			if (!r->registered[i]) {
				ids[n] = r->targets[i];
				index[n++] = i;
			}
		if (!n)
			break;
		fv_graph_check(&res, graph, key, ids, n, mode);
		if (!res) {
			rc = fv_error_last()->status;
			break;
		}
		for (k = 0; k < n && rc == FV_OK; k++) {
			if (res[k].status == FV_OK) {
				rc = journal_registered(r, index[k], mode == FV_GRAPH_REGISTER
				                                    ? "uploaded" : "found");
				continue;
			}
			if (mode == FV_GRAPH_STATUS)
				continue; /* the upload pass deals with it */
			(*failed)++;
			free(r->errors[index[k]]);
			r->errors[index[k]] = strdup(res[k].message ? res[k].message : "failed");
			if (res[k].status == FV_ERR_GRAPH || worst == FV_OK)
				worst = res[k].status;
		}
		fv_graph_results_free(res, n);
		if (rc != FV_OK)
			break;
		for (done = 0, k = 0; k < r->target_count; k++)
			done += r->registered[k];
		if ((rc = progress(r, done, r->target_count, "%zu of %zu phone numbers on key %s",
		                   done, r->target_count, r->new_name)) != FV_OK)
			break;
	}
	free(ids);
	free(index);
	return rc != FV_OK ? rc : worst;
}

static int step_register(struct fv_rotation *r)
{
	fv_context *cur = NULL;
	fv_graph *graph = NULL;
	fv_key *key = NULL;
	char fp[FV_FINGERPRINT_HEX_SIZE];
	size_t pending = 0, i, failed = 0, chunk;
	int rc;

	for (i = 0; i < r->target_count; i++)
		pending += !r->registered[i];
	if (!pending)
		return FV_OK;
	if ((rc = fv_context_open(&cur, r->config_path, 0)) != FV_OK)
		goto out;
	if ((rc = fv_key_open(&key, cur, r->new_name)) != FV_OK ||
	    (rc = fv_key_fingerprint(fp, key)) != FV_OK)
		goto out;
	if (r->fingerprint[0] && strcmp(fp, r->fingerprint) != 0) {
		rc = fv__error_set(FV_ERR_MISMATCH,
			"key %s now has fingerprint %s, not %s which this rotation generated; "
			"its key reference was changed or the key replaced; nothing was uploaded",
			r->new_name, fp, r->fingerprint);
		goto out;
	}
	if ((rc = fv_graph_open(&graph, cur)) != FV_OK)
		goto out;
	chunk = graph->settings.max_in_flight ? graph->settings.max_in_flight : 8;
	if (r->resumed) {
		if ((rc = progress(r, r->target_count - pending, r->target_count,
		                   "checking which of %zu phone numbers already hold key %s",
		                   pending, r->new_name)) != FV_OK)
			goto out;
		rc = register_pass(r, graph, key, FV_GRAPH_STATUS, chunk, &failed);
		if (rc != FV_OK && rc != FV_ERR_GRAPH && rc != FV_ERR_MISMATCH)
			goto out;
	}
	for (pending = 0, i = 0; i < r->target_count; i++)
		pending += !r->registered[i];
	if (pending && (rc = serve_probe(r, cur)) != FV_OK)
		goto out;
	if (pending) {
		if ((rc = progress(r, r->target_count - pending, r->target_count,
		                   "registering key %s on %zu phone numbers", r->new_name,
		                   pending)) != FV_OK)
			goto out;
		rc = register_pass(r, graph, key, FV_GRAPH_REGISTER, chunk, &failed);
		if (rc == FV_ERR_GRAPH || rc == FV_ERR_MISMATCH) {
			for (i = 0; i < r->target_count && !r->errors[i]; i++)
				;
			rc = fv__error_set(rc,
				"%zu of %zu phone numbers could not be moved to key %s (first: %s: %s); "
				"the rotation stopped before the switch and both keys stay in serve.keys: "
				"fix the cause, then run flowvault rotate --resume", failed, r->target_count,
				r->new_name, i < r->target_count ? r->targets[i] : "?",
				i < r->target_count ? r->errors[i] : "?");
		}
	}
out:
	fv_graph_free(graph);
	fv_key_free(key);
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
		set_serve_note(r, "the new key is now tried first");
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
			? "finish it with flowvault rotate --finish NAME after its grace window"
			: "continue it with flowvault rotate --resume");
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
	if (r->state != FV_ROTATION_NONE && r->state != FV_ROTATION_FINISHED) {
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
	else if (r->state == FV_ROTATION_FINISHED)
		rc = fv__error_set(FV_ERR_USAGE,
			"no rotation to resume: the last one (%s -> %s) is finished", r->key,
			r->new_name);
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

/* Delete the configured key `name` in its backend (FV_CAP_DELETE). */
static int key_delete(fv_context *cur, const char *name, int check_only)
{
	const struct fv_key_entry *entry = fv__config_key(cur, name);
	const struct fv_plugin *plugin = NULL;
	int (*del)(fv_instance *) = NULL;
	struct fv_config *cfg = NULL;
	fv_instance *inst = NULL;
	int rc;

	if (!entry)
		return fv__error_set(FV_ERR_CONFIG, "keys.%s: not in the configuration any more; "
		                     "cannot delete it in its backend", name);
	if (fv__plugin_get(&plugin, cur, entry->provider) != FV_OK || !plugin)
		return fv__error_prefix("keys.%s.provider", name);
	if (plugin->ops->capabilities & FV_CAP_DELETE)
		del = FV_PLUGIN_OP(plugin, key_delete);
	if (!del)
		return fv__error_set(FV_ERR_UNSUPPORTED,
			"--destroy-old: the %s plugin cannot delete keys (it lacks the delete "
			"capability); nothing was changed: run --finish without --destroy-old, then "
			"remove key %s from its store with the store's own tools", plugin->name, name);
	if (check_only)
		return FV_OK;
	if ((rc = fv__config_view_new(&cfg, cur, name, plugin->ops->config_fields)) != FV_OK)
		return rc;
	fv_error_clear();
	rc = plugin->ops->instance_open(cfg, &inst);
	if (rc == FV_OK) {
		fv_error_clear();
		rc = del(inst);
		plugin->ops->instance_close(inst);
	}
	if (rc != FV_OK) {
		if (rc > 0)
			rc = FV_ERR_PLUGIN;
		if (!fv_error_last()->message[0])
			fv__error_set(rc, "the %s plugin gave no reason", plugin->name);
		fv__error_prefix("deleting key '%s' (%s)", name, plugin->name);
	}
	fv__config_view_free(cfg);
	return rc;
}

int fv_rotate_finish(fv_rotation **out, fv_context *ctx, const char *new_name,
                     unsigned int flags, long grace_seconds)
{
	struct fv_rotation *r;
	fv_context *cur = NULL;
	json_object *root = NULL, *rec;
	int rc, destroy = (flags & FV_ROTATE_DESTROY_OLD) != 0, changed, serve_changed;
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
	if (r->state != FV_ROTATION_SWITCHED) {
		rc = fv__error_set(FV_ERR_USAGE,
			"the rotation %s -> %s has not switched yet (step \"%s\"): run flowvault "
			"rotate --resume first", r->key, r->new_name, fv_rotation_state_name(r->state));
		goto out;
	}
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
	if ((rc = fv_context_open(&cur, r->config_path, 0)) != FV_OK)
		goto out;
	if (destroy && !r->destroyed) {
		/* Refuse before changing anything when the plugin cannot delete. */
		if ((rc = key_delete(cur, r->key, 1)) != FV_OK)
			goto out;
		rc = key_delete(cur, r->key, 0);
		if (rc == FV_ERR_NOT_FOUND) {
			/* Deleted before an interruption kept it out of the journal. */
			fv__log(FV_LOG_INFO, "rotate: key %s is already gone from its backend", r->key);
			rc = FV_OK;
		}
		if (rc != FV_OK)
			goto out;
		if ((rc = journal(r, record_new("destroyed"))) != FV_OK)
			goto out;
		r->destroyed = 1;
	}
	if (!(root = jcopy(cur->root))) {
		rc = fv__error_nomem();
		goto out;
	}
	apply_finish(root, r, destroy, &changed, &serve_changed);
	if (changed && (rc = fv__config_write(r->config_path, root)) != FV_OK)
		goto out;
	if (serve_changed)
		set_serve_note(r, "the old key was removed");
	rec = record_new("finished");
	r->finished_at = now;
	json_object_object_add(rec, "time", json_object_new_int64(now));
	json_object_object_add(rec, "destroyed", json_object_new_boolean(r->destroyed));
	json_object_object_add(rec, "forced", json_object_new_boolean(now < until));
	if ((rc = journal(r, rec)) == FV_OK)
		r->state = FV_ROTATION_FINISHED;
out:
	json_object_put(root);
	fv_context_free(cur);
	fv__journal_close(r->journal);
	r->journal = NULL;
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

size_t fv_rotation_registered_count(const fv_rotation *r)
{
	size_t i, n = 0;

	for (i = 0; r && i < r->target_count; i++)
		n += r->registered[i];
	return n;
}
