/*
 * The configuration file: found by the documented search order, parsed with
 * json-c, checked strictly (unknown fields and wrong types are errors that
 * name the JSON path) before anything uses it.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define CONFIG_MAX_BYTES (1024 * 1024)

static const char *const top_level_fields[] = {
	"plugin_path", "keys", "graph", "serve", NULL
};
static const char *const host_key_fields[] = {
	"provider", "phone_numbers", "waba_id", "require_non_extractable", NULL
};

static int in_list(const char *const *list, const char *name)
{
	for (; *list; list++)
		if (strcmp(*list, name) == 0)
			return 1;
	return 0;
}

static void join_list(char *buf, size_t len, const char *const *list)
{
	size_t used = 0;

	buf[0] = '\0';
	for (; *list && used < len; list++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s",
		                         used ? ", " : "", *list);
}

int fv__config_is_host_key_field(const char *name)
{
	return in_list(host_key_fields, name);
}

static const char *type_name(json_type t)
{
	switch (t) {
	case json_type_null: return "null";
	case json_type_boolean: return "a boolean";
	case json_type_double: return "a number";
	case json_type_int: return "an integer";
	case json_type_object: return "an object";
	case json_type_array: return "an array";
	case json_type_string: return "a string";
	}
	return "unknown";
}

static int expect_type(json_object *v, json_type t, const char *where)
{
	if (json_object_get_type(v) != t)
		return fv__error_set(FV_ERR_CONFIG, "%s: expected %s, found %s", where,
		                     type_name(t), type_name(json_object_get_type(v)));
	return FV_OK;
}

/* An array of strings into a NULL-terminated copy. */
static int string_array(char ***out, size_t *count, json_object *v,
                        const char *where, int digits_only)
{
	char item_where[256];
	size_t i, n;
	char **list;
	int rc;

	if ((rc = expect_type(v, json_type_array, where)) != FV_OK)
		return rc;
	n = json_object_array_length(v);
	list = calloc(n + 1, sizeof(*list));
	if (!list)
		return fv__error_nomem();
	for (i = 0; i < n; i++) {
		json_object *item = json_object_array_get_idx(v, i);
		const char *s;

		snprintf(item_where, sizeof(item_where), "%s[%zu]", where, i);
		if ((rc = expect_type(item, json_type_string, item_where)) != FV_OK)
			goto fail;
		s = json_object_get_string(item);
		if (!*s || (digits_only && strspn(s, "0123456789") != strlen(s))) {
			rc = fv__error_set(FV_ERR_CONFIG, "%s: '%s' is not %s", item_where, s,
			                   digits_only ? "a numeric id" : "a non-empty string");
			goto fail;
		}
		if (!(list[i] = strdup(s))) {
			rc = fv__error_nomem();
			goto fail;
		}
	}
	*out = list;
	*count = n;
	return FV_OK;
fail:
	for (i = 0; i < n; i++)
		free(list[i]);
	free(list);
	return rc;
}

static void free_string_array(char **list, size_t n)
{
	size_t i;

	if (!list)
		return;
	for (i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

static int valid_provider_name(const char *s)
{
	return *s && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == strlen(s);
}

/* Key names travel in the X-Flowvault-Key header and in file names. */
#define KEY_NAME_MAX 64
#define KEY_NAME_CHARS \
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"

static int check_key_name(const char *name)
{
	char shown[KEY_NAME_MAX + 4];
	size_t len = strlen(name), i;

	if (len >= 1 && len <= KEY_NAME_MAX && strspn(name, KEY_NAME_CHARS) == len)
		return FV_OK;
	/* Shown without its control characters, cut at the limit. */
	for (i = 0; i < len && i < KEY_NAME_MAX; i++)
		shown[i] = (name[i] >= 0x20 && name[i] < 0x7f) ? name[i] : '?';
	snprintf(shown + i, sizeof(shown) - i, "%s", len > KEY_NAME_MAX ? "..." : "");
	return fv__error_set(FV_ERR_CONFIG,
		"keys: '%s' is not a valid key name; use 1 to %d letters, digits, '.', '_' or '-' "
		"(key names are sent in an HTTP header)", shown, KEY_NAME_MAX);
}

/*
 * A relative file: secret reference is relative to the configuration
 * file's directory (under systemd the working directory is /), like every
 * other path in the configuration. The core's own secret fields are made
 * absolute in the parsed document once, here, so that every reader gets the
 * same answer; the member keeps serialising as written, so that rewriting
 * the configuration (rotate) leaves the user's text alone.
 */
char *fv__config_secret_reference(const fv_context *ctx, const char *reference)
{
	char *path, *out;

	if (!reference || strncmp(reference, "file:", 5) != 0 || reference[5] == '/' ||
	    !reference[5] || !ctx || !ctx->config_path)
		return strdup(reference ? reference : "");
	if (!(path = fv__config_resolve_path(ctx, reference + 5)))
		return NULL;
	if (asprintf(&out, "file:%s", path) < 0)
		out = NULL;
	free(path);
	return out;
}

static int normalise_secret_member(const fv_context *ctx, json_object *v)
{
	const char *as_written;
	char *text, *absolute;

	if (!json_object_is_type(v, json_type_string))
		return FV_OK;
	if (!(absolute = fv__config_secret_reference(ctx, json_object_get_string(v))))
		return fv__error_nomem();
	if (strcmp(absolute, json_object_get_string(v)) == 0) {
		free(absolute);
		return FV_OK;
	}
	as_written = json_object_to_json_string_ext(v, JSON_C_TO_STRING_NOSLASHESCAPE);
	text = as_written ? strdup(as_written) : NULL;
	if (!text || json_object_set_string(v, absolute) != 1) {
		free(text);
		free(absolute);
		return fv__error_nomem();
	}
	free(absolute);
	/* Kept by json_object_deep_copy, which copies this serializer's text. */
	json_object_set_serializer(v, json_object_userdata_to_json_string, text,
	                           json_object_free_userdata);
	return FV_OK;
}

static int normalise_secret_references(fv_context *ctx)
{
	json_object *v;
	size_t i;
	int rc = FV_OK;

	if (ctx->graph && json_object_object_get_ex(ctx->graph, "access_token", &v))
		rc = normalise_secret_member(ctx, v);
	if (rc == FV_OK && ctx->serve &&
	    json_object_object_get_ex(ctx->serve, "app_secrets", &v) &&
	    json_object_is_type(v, json_type_array))
		for (i = 0; rc == FV_OK && i < json_object_array_length(v); i++)
			rc = normalise_secret_member(ctx, json_object_array_get_idx(v, i));
	return rc;
}

static int parse_key(struct fv_key_entry *key, const char *name, json_object *obj)
{
	char where[256], field_where[320];
	json_object *v;
	int rc;

	snprintf(where, sizeof(where), "keys.%s", name);
	if ((rc = expect_type(obj, json_type_object, where)) != FV_OK)
		return rc;
	if (!(key->name = strdup(name)))
		return fv__error_nomem();
	key->entry = obj;
	if (!json_object_object_get_ex(obj, "provider", &v))
		return fv__error_set(FV_ERR_CONFIG,
			"%s.provider: missing; name the plugin that holds this key (pem, pkcs11, tpm2, openssl, ...)",
			where);
	snprintf(field_where, sizeof(field_where), "%s.provider", where);
	if ((rc = expect_type(v, json_type_string, field_where)) != FV_OK)
		return rc;
	if (!valid_provider_name(json_object_get_string(v)))
		return fv__error_set(FV_ERR_CONFIG,
			"%s: '%s' is not a provider name (lowercase letters, digits, - and _)",
			field_where, json_object_get_string(v));
	if (!(key->provider = strdup(json_object_get_string(v))))
		return fv__error_nomem();
	if (json_object_object_get_ex(obj, "phone_numbers", &v)) {
		snprintf(field_where, sizeof(field_where), "%s.phone_numbers", where);
		if ((rc = string_array(&key->phone_numbers, &key->phone_count, v,
		                       field_where, 1)) != FV_OK)
			return rc;
	}
	if (json_object_object_get_ex(obj, "waba_id", &v)) {
		const char *s;

		snprintf(field_where, sizeof(field_where), "%s.waba_id", where);
		if ((rc = expect_type(v, json_type_string, field_where)) != FV_OK)
			return rc;
		s = json_object_get_string(v);
		if (!*s || strspn(s, "0123456789") != strlen(s))
			return fv__error_set(FV_ERR_CONFIG, "%s: '%s' is not a numeric id",
			                     field_where, s);
		if (!(key->waba_id = strdup(s)))
			return fv__error_nomem();
	}
	key->require_non_extractable = 1;
	if (json_object_object_get_ex(obj, "require_non_extractable", &v)) {
		snprintf(field_where, sizeof(field_where), "%s.require_non_extractable", where);
		if ((rc = expect_type(v, json_type_boolean, field_where)) != FV_OK)
			return rc;
		key->require_non_extractable = json_object_get_boolean(v) ? 1 : 0;
	}
	return FV_OK;
}

static int parse_root(fv_context *ctx)
{
	char known[256];
	json_object *v;
	int rc;

	if (json_object_get_type(ctx->root) != json_type_object)
		return fv__error_set(FV_ERR_CONFIG,
			"the configuration must be a JSON object; see flowvault.json(5)");
	join_list(known, sizeof(known), top_level_fields);
	json_object_object_foreach(ctx->root, name, value) {
		(void)value;
		if (!in_list(top_level_fields, name))
			return fv__error_set(FV_ERR_CONFIG,
				"%s: unknown field (known fields: %s)", name, known);
	}
	if (json_object_object_get_ex(ctx->root, "plugin_path", &v) &&
	    (rc = string_array(&ctx->plugin_path, &ctx->plugin_path_count, v,
	                       "plugin_path", 0)) != FV_OK)
		return rc;
	if (json_object_object_get_ex(ctx->root, "keys", &v)) {
		size_t i = 0;

		if ((rc = expect_type(v, json_type_object, "keys")) != FV_OK)
			return rc;
		ctx->key_count = (size_t)json_object_object_length(v);
		ctx->keys = calloc(ctx->key_count ? ctx->key_count : 1, sizeof(*ctx->keys));
		if (!ctx->keys)
			return fv__error_nomem();
		json_object_object_foreach(v, name2, entry) {
			if ((rc = check_key_name(name2)) != FV_OK ||
			    (rc = parse_key(&ctx->keys[i++], name2, entry)) != FV_OK)
				return rc;
		}
	}
	if (json_object_object_get_ex(ctx->root, "graph", &v)) {
		if ((rc = expect_type(v, json_type_object, "graph")) != FV_OK ||
		    (rc = fv__graph_config_check(v, "graph")) != FV_OK)
			return rc;
		ctx->graph = v;
	}
	if (json_object_object_get_ex(ctx->root, "serve", &v)) {
		if ((rc = expect_type(v, json_type_object, "serve")) != FV_OK)
			return rc;
		ctx->serve = v;
	}
	return normalise_secret_references(ctx);
}

/* The first existing file of the documented search order. Environment
 * inputs are ignored in a set-user-ID or set-group-ID process. */
static int find_config(char **out, const char *explicit_path, char *looked,
                       size_t looked_len)
{
	char candidate[PATH_MAX];
	const char *env;

	looked[0] = '\0';
	if (!explicit_path && (env = secure_getenv("FLOWVAULT_CONFIG")) && *env)
		explicit_path = env;
	if (explicit_path) {
		/* Made absolute when opened (load_file), so that relative paths in
		 * it resolve against its directory. */
		*out = strdup(explicit_path);
		return *out ? FV_OK : fv__error_nomem();
	}
	if ((env = secure_getenv("XDG_CONFIG_HOME")) && *env)
		snprintf(candidate, sizeof(candidate), "%s/flowvault/config.json", env);
	else if ((env = secure_getenv("HOME")) && *env)
		snprintf(candidate, sizeof(candidate), "%s/.config/flowvault/config.json", env);
	else
		candidate[0] = '\0';
	if (candidate[0]) {
		if (access(candidate, F_OK) == 0) {
			*out = strdup(candidate);
			return *out ? FV_OK : fv__error_nomem();
		}
		snprintf(looked, looked_len, "%s, ", candidate);
	}
	if (access("/etc/flowvault/config.json", F_OK) == 0) {
		*out = strdup("/etc/flowvault/config.json");
		return *out ? FV_OK : fv__error_nomem();
	}
	snprintf(looked + strlen(looked), looked_len - strlen(looked),
	         "/etc/flowvault/config.json");
	*out = NULL;
	return FV_ERR_NOT_FOUND;
}

/* True when the `len` bytes at `p` are all white space (bounded: the text
 * need not be NUL-terminated). */
static int only_space(const char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
			return 0;
	return 1;
}

/*
 * What json-c does not refuse. Duplicate members: json-c keeps the last of
 * two members of the same name silently, so that a second "serve" object
 * could drop settings of the first. And what its strict mode (0.16) still
 * accepts: member names in single quotes, NaN and Infinity, "1.", control
 * characters inside strings. This runs only on text json-c has accepted,
 * so it only has to follow strings and nesting; member names with escapes
 * are decoded by json-c, as in the parsed document.
 */
#define SCAN_DEPTH_MAX JSON_TOKENER_DEFAULT_DEPTH

struct scan_member {
	char *name;
	size_t line;
};

struct scan_frame {
	int is_object;
	int expect_name;                 /* object: a member name comes next */
	size_t index;                    /* array: the current element */
	size_t path_len;                 /* length of this container's path */
	struct scan_member *members;     /* object: names so far */
	size_t count, cap;
};

static int compare_members(const void *a, const void *b)
{
	const struct scan_member *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c)
		return c;
	return x->line < y->line ? -1 : x->line > y->line;
}

/* The member name of the string token text[start..end] (quotes included). */
static char *member_name(const char *text, size_t start, size_t end)
{
	json_object *decoded;
	char *name, *token;

	if (!memchr(text + start + 1, '\\', end - start - 1))
		return strndup(text + start + 1, end - start - 1);
	if (!(token = strndup(text + start, end - start + 1)))
		return NULL;
	decoded = json_tokener_parse(token);
	free(token);
	name = json_object_is_type(decoded, json_type_string)
	               ? strdup(json_object_get_string(decoded))
	               : NULL;
	json_object_put(decoded);
	return name;
}

static int add_member(struct scan_frame *f, char *name, size_t line)
{
	if (f->count == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 8;
		struct scan_member *grown = realloc(f->members, cap * sizeof(*grown));

		if (!grown)
			return -1;
		f->members = grown;
		f->cap = cap;
	}
	f->members[f->count].name = name;
	f->members[f->count].line = line;
	f->count++;
	return 0;
}

/* On closing an object: its members sorted by name, then line. */
static int frame_check(const fv_context *ctx, struct scan_frame *f, const char *path)
{
	size_t i;

	if (f->count > 1)
		qsort(f->members, f->count, sizeof(*f->members), compare_members);
	for (i = 1; i < f->count; i++)
		if (strcmp(f->members[i - 1].name, f->members[i].name) == 0)
			return fv__error_set(FV_ERR_CONFIG,
				"%s: %s%s%s: duplicate member (first at line %zu, again at line %zu); "
				"keep only one", ctx->config_path, path, *path ? "." : "",
				f->members[i].name, f->members[i - 1].line, f->members[i].line);
	return FV_OK;
}

static void frame_clear(struct scan_frame *f)
{
	size_t i;

	for (i = 0; i < f->count; i++)
		free(f->members[i].name);
	free(f->members);
	memset(f, 0, sizeof(*f));
}

/* Append the name of the value about to open inside `parent` to `path`. */
static void path_push(char *path, size_t size, const struct scan_frame *parent)
{
	size_t used = strlen(path);

	if (!parent || used >= size - 1)
		return;
	if (parent->is_object && parent->count)
		snprintf(path + used, size - used, "%s%s", used ? "." : "",
		         parent->members[parent->count - 1].name);
	else if (!parent->is_object)
		snprintf(path + used, size - used, "[%zu]", parent->index);
}

static int not_strict(const fv_context *ctx, size_t line, const char *what)
{
	return fv__error_set(FV_ERR_CONFIG,
		"%s:%zu: not valid JSON: %s (the configuration is strict JSON)",
		ctx->config_path, line, what);
}

static int check_strict(const fv_context *ctx, const char *text, size_t len)
{
	struct scan_frame frames[SCAN_DEPTH_MAX + 1];
	char path[512] = "";
	size_t i, j, line = 1;
	int depth = 0, rc = FV_OK;

	memset(frames, 0, sizeof(frames));
	for (i = 0; i < len && rc == FV_OK; i++) {
		struct scan_frame *top = depth ? &frames[depth - 1] : NULL;
		char c = text[i];

		switch (c) {
		case '\n':
			line++;
			break;
		case '"':
			for (j = i + 1; j < len && text[j] != '"'; j++) {
				if ((unsigned char)text[j] < 0x20)
					break;
				if (text[j] == '\\')
					j++;
			}
			if (j < len && text[j] != '"') {
				rc = not_strict(ctx, line, "a control character in a string (write it as an escape)");
				break;
			}
			if (j >= len)
				goto out; /* json-c accepted it: cannot happen */
			if (top && top->is_object && top->expect_name) {
				char *name = member_name(text, i, j);

				if (!name || add_member(top, name, line) != 0) {
					free(name);
					rc = fv__error_nomem();
					break;
				}
				top->expect_name = 0;
			}
			i = j;
			break;
		case ',':
			if (top && top->is_object)
				top->expect_name = 1;
			else if (top)
				top->index++;
			break;
		case '{':
		case '[':
			if (depth > SCAN_DEPTH_MAX - 1) {
				rc = fv__error_set(FV_ERR_CONFIG, "%s:%zu: nested too deeply",
				                   ctx->config_path, line);
				break;
			}
			path_push(path, sizeof(path), top);
			top = &frames[depth++];
			top->is_object = c == '{';
			top->expect_name = top->is_object;
			top->path_len = strlen(path);
			break;
		case '}':
		case ']':
			if (!top)
				goto out;
			if (top->is_object)
				rc = frame_check(ctx, top, path);
			frame_clear(top);
			depth--;
			path[depth ? frames[depth - 1].path_len : 0] = '\0';
			break;
		/* Outside strings, what json-c's strict mode still accepts. */
		case '\'':
			rc = not_strict(ctx, line, "a member name in single quotes");
			break;
		case 'N':
		case 'I':
			rc = not_strict(ctx, line, "NaN and Infinity are not JSON numbers");
			break;
		case '.':
			if (i + 1 >= len || text[i + 1] < '0' || text[i + 1] > '9')
				rc = not_strict(ctx, line, "a number ends in '.'");
			break;
		default:
			break;
		}
	}
out:
	while (depth > 0)
		frame_clear(&frames[--depth]);
	return rc;
}

/* A hint for what strict JSON refuses and json-c's lenient mode accepted. */
static const char *strict_hint(const char *text, size_t len, size_t offset)
{
	size_t i;

	if (offset < len && text[offset] == '/')
		return " (comments are not allowed: the configuration is strict JSON)";
	if (offset < len && (text[offset] == '}' || text[offset] == ']')) {
		for (i = offset; i > 0; i--) {
			char c = text[i - 1];

			if (c == ',')
				return " (a trailing comma is not allowed: the configuration is strict JSON)";
			if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
				break;
		}
	}
	return "";
}

/* Parse the JSON text of a configuration into ctx->root: strict JSON (no
 * comments, trailing commas, single quotes or other extensions; UTF-8), one
 * document, no duplicate member names. */
static int parse_text(fv_context *ctx, const char *text, size_t len)
{
	struct json_tokener *tok;
	enum json_tokener_error jerr;
	size_t line = 1, i, offset;
	const char *what, *hint = "";
	int rc = FV_OK;

	if (len > CONFIG_MAX_BYTES)
		return fv__error_set(FV_ERR_CONFIG, "%s: larger than %d bytes", ctx->config_path,
		                     CONFIG_MAX_BYTES);
	tok = json_tokener_new();
	if (!tok)
		return fv__error_nomem();
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	ctx->root = json_tokener_parse_ex(tok, text, (int)len);
	jerr = json_tokener_get_error(tok);
	offset = json_tokener_get_parse_end(tok);
	/* Trailing white space after the document is fine; anything else is not. */
	if (ctx->root && jerr == json_tokener_success && offset <= len &&
	    only_space(text + offset, len - offset)) {
		json_tokener_free(tok);
		if ((rc = check_strict(ctx, text, len)) != FV_OK) {
			json_object_put(ctx->root);
			ctx->root = NULL;
		}
		return rc;
	}
	for (i = 0; i < offset && i < len; i++)
		if (text[i] == '\n')
			line++;
	if (jerr == json_tokener_continue || (!ctx->root && jerr == json_tokener_success)) {
		what = "unexpected end of file";
	} else if (jerr != json_tokener_success) {
		what = json_tokener_error_desc(jerr);
		hint = strict_hint(text, len, offset);
	} else {
		what = "text after the end of the document";
	}
	rc = fv__error_set(FV_ERR_CONFIG, "%s:%zu: not valid JSON: %s%s", ctx->config_path,
	                   line, what, hint);
	json_object_put(ctx->root);
	ctx->root = NULL;
	json_tokener_free(tok);
	return rc;
}

/* Open the configuration once, check the open file (owner, modes, every
 * directory of its name as given and as resolved) and read that same
 * descriptor: a name swapped after the check is never read. */
static int load_file(fv_context *ctx)
{
	char *text = NULL, *real = NULL;
	size_t len = 0;
	int rc, fd;

	rc = fv__file_open_checked(ctx->config_path, "configuration file", &fd);
	if (rc == FV_ERR_NOT_FOUND)
		return fv__error_set(FV_ERR_CONFIG, "configuration file '%s' does not exist",
		                     ctx->config_path);
	if (rc != FV_OK)
		return fv__error_restatus(FV_ERR_CONFIG);
	/* The file opened, absolute and resolved: relative paths in it are
	 * relative to its directory. */
	if (fv__fd_path(fd, &real) != FV_OK) {
		close(fd);
		return fv__error_restatus(FV_ERR_CONFIG);
	}
	free(ctx->config_path);
	ctx->config_path = real;
	rc = fv__fd_read(fd, &text, &len, ctx->config_path, CONFIG_MAX_BYTES);
	close(fd);
	if (rc != FV_OK)
		return fv__error_restatus(FV_ERR_CONFIG);
	rc = parse_text(ctx, text, len);
	free(text);
	return rc;
}

/* Check the parsed document; on failure free ctx. */
static int finish_open(fv_context **out, fv_context *ctx, int rc)
{
	if (rc == FV_OK && (rc = parse_root(ctx)) != FV_OK)
		fv__error_prefix("%s", ctx->config_path);
	if (rc == FV_OK && ctx->serve &&
	    (rc = fv__serve_config_check(ctx, ctx->serve, "serve")) != FV_OK)
		fv__error_prefix("%s", ctx->config_path);
	if (rc != FV_OK) {
		/* Every configuration problem is a configuration error (exit 2). */
		if (fv_error_last()->status != FV_ERR_NOMEM)
			fv__error_restatus(FV_ERR_CONFIG);
		rc = fv_error_last()->status;
		fv_context_free(ctx);
		return rc;
	}
	*out = ctx;
	return FV_OK;
}

int fv_context_open(fv_context **out, const char *config_path, unsigned int flags)
{
	char looked[PATH_MAX * 2];
	fv_context *ctx;
	int rc;

	if (!out)
		return fv__error_set(FV_ERR_USAGE, "fv_context_open: out is NULL");
	*out = NULL;
	fv_error_clear();
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return fv__error_nomem();
	pthread_mutex_init(&ctx->plugins_lock, NULL);
	rc = find_config(&ctx->config_path, config_path, looked, sizeof(looked));
	if (rc == FV_ERR_NOT_FOUND) {
		if (flags & FV_CONTEXT_CONFIG_OPTIONAL) {
			*out = ctx;
			return FV_OK;
		}
		fv_context_free(ctx);
		return fv__error_set(FV_ERR_CONFIG,
			"no configuration found (looked at %s); pass --config FILE or set FLOWVAULT_CONFIG "
			"(flowvault init writes one; flowvault.json(5) describes the format)", looked);
	}
	if (rc == FV_ERR_CONFIG) {
		fv_context_free(ctx);
		return rc;
	}
	if (rc == FV_OK)
		rc = load_file(ctx);
	return finish_open(out, ctx, rc);
}

int fv__context_open_text(fv_context **out, const char *text, size_t len,
                          const char *name)
{
	fv_context *ctx;
	int rc;

	*out = NULL;
	fv_error_clear();
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return fv__error_nomem();
	pthread_mutex_init(&ctx->plugins_lock, NULL);
	ctx->config_path = strdup(name);
	rc = ctx->config_path ? parse_text(ctx, text, len) : fv__error_nomem();
	return finish_open(out, ctx, rc);
}

void fv_context_free(fv_context *ctx)
{
	size_t i;

	if (!ctx)
		return;
	fv__plugins_unload(ctx);
	pthread_mutex_destroy(&ctx->plugins_lock);
	for (i = 0; i < ctx->key_count; i++) {
		free(ctx->keys[i].name);
		free(ctx->keys[i].provider);
		free_string_array(ctx->keys[i].phone_numbers, ctx->keys[i].phone_count);
		free(ctx->keys[i].waba_id);
	}
	free(ctx->keys);
	free_string_array(ctx->plugin_path, ctx->plugin_path_count);
	free(ctx->search_path);
	json_object_put(ctx->root);
	free(ctx->config_path);
	free(ctx);
}

const char *fv_context_config_path(const fv_context *ctx)
{
	return ctx ? ctx->config_path : NULL;
}

size_t fv_context_key_count(const fv_context *ctx)
{
	return ctx ? ctx->key_count : 0;
}

const char *fv_context_key_name(const fv_context *ctx, size_t index)
{
	return ctx && index < ctx->key_count ? ctx->keys[index].name : NULL;
}

const struct fv_key_entry *fv__config_key(const fv_context *ctx, const char *name)
{
	size_t i;

	for (i = 0; ctx && name && i < ctx->key_count; i++)
		if (strcmp(ctx->keys[i].name, name) == 0)
			return &ctx->keys[i];
	return NULL;
}

const char *fv_context_key_provider(const fv_context *ctx, const char *name)
{
	const struct fv_key_entry *key = fv__config_key(ctx, name);

	return key ? key->provider : NULL;
}

size_t fv_context_key_phone_count(const fv_context *ctx, const char *name)
{
	const struct fv_key_entry *key = fv__config_key(ctx, name);

	return key ? key->phone_count : 0;
}

const char *fv_context_key_phone(const fv_context *ctx, const char *name,
                                 size_t index)
{
	const struct fv_key_entry *key = fv__config_key(ctx, name);

	return key && index < key->phone_count ? key->phone_numbers[index] : NULL;
}

const char *fv_context_key_waba(const fv_context *ctx, const char *name)
{
	const struct fv_key_entry *key = fv__config_key(ctx, name);

	return key ? key->waba_id : NULL;
}

char *fv__config_resolve_path(const fv_context *ctx, const char *path)
{
	char dir_buf[PATH_MAX];
	char *joined;
	const char *dir;
	size_t len;

	if (!path)
		return NULL;
	if (path[0] == '/' || !ctx || !ctx->config_path)
		return strdup(path);
	snprintf(dir_buf, sizeof(dir_buf), "%s", ctx->config_path);
	dir = dirname(dir_buf);
	len = strlen(dir) + strlen(path) + 2;
	joined = malloc(len);
	if (joined)
		snprintf(joined, len, "%s/%s", dir, path);
	return joined;
}

/* ---- The view of one key entry that its plugin reads ---- */

static const char *field_type_name(int type)
{
	switch (type) {
	case FV_FIELD_STRING: return "a string";
	case FV_FIELD_INT: return "an integer";
	case FV_FIELD_BOOL: return "a boolean";
	case FV_FIELD_STRING_ARRAY: return "an array of strings";
	case FV_FIELD_SECRET: return "a secret reference (env:NAME, file:PATH or prompt)";
	}
	return "a value";
}

static int field_value_ok(const fv_config_field *field, json_object *v)
{
	size_t i;

	switch (field->type) {
	case FV_FIELD_STRING:
	case FV_FIELD_SECRET:
		return json_object_is_type(v, json_type_string);
	case FV_FIELD_INT:
		return json_object_is_type(v, json_type_int);
	case FV_FIELD_BOOL:
		return json_object_is_type(v, json_type_boolean);
	case FV_FIELD_STRING_ARRAY:
		if (!json_object_is_type(v, json_type_array))
			return 0;
		for (i = 0; i < json_object_array_length(v); i++)
			if (!json_object_is_type(json_object_array_get_idx(v, i),
			                         json_type_string))
				return 0;
		return 1;
	}
	return 0;
}

void fv__config_view_free(struct fv_config *cfg)
{
	size_t i;

	if (!cfg)
		return;
	for (i = 0; cfg->paths && i < cfg->field_count; i++)
		free(cfg->paths[i]);
	free(cfg->paths);
	free(cfg->location);
	free(cfg);
}

int fv__config_view_new(struct fv_config **out, const fv_context *ctx,
                        const char *key_name, const fv_config_field *fields)
{
	static const fv_config_field no_fields[] = { { NULL, 0, 0, NULL } };
	const struct fv_key_entry *key = fv__config_key(ctx, key_name);
	struct fv_config *cfg;
	char known[512];
	size_t i, used;
	int rc = FV_OK;

	*out = NULL;
	if (!key)
		return fv__error_set(FV_ERR_NOT_FOUND, "keys.%s: no such key in %s",
		                     key_name ? key_name : "(null)",
		                     ctx && ctx->config_path ? ctx->config_path
		                                             : "the configuration");
	if (!fields)
		fields = no_fields;
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg)
		return fv__error_nomem();
	cfg->entry = key->entry;
	cfg->fields = fields;
	for (cfg->field_count = 0; fields && fields[cfg->field_count].name;)
		cfg->field_count++;
	cfg->paths = calloc(cfg->field_count + 1, sizeof(char *));
	if (!cfg->paths || asprintf(&cfg->location, "keys.%s", key->name) < 0) {
		cfg->location = NULL;
		fv__config_view_free(cfg);
		return fv__error_nomem();
	}

	used = (size_t)snprintf(known, sizeof(known),
	                        "provider, phone_numbers, waba_id, require_non_extractable");
	for (i = 0; i < cfg->field_count && used < sizeof(known); i++)
		used += (size_t)snprintf(known + used, sizeof(known) - used, ", %s",
		                         fields[i].name);

	json_object_object_foreach(key->entry, name, value) {
		const fv_config_field *field = NULL;

		if (fv__config_is_host_key_field(name))
			continue;
		for (i = 0; i < cfg->field_count; i++)
			if (strcmp(fields[i].name, name) == 0)
				field = &fields[i];
		if (!field) {
			rc = fv__error_set(FV_ERR_CONFIG,
				"%s.%s: unknown field for provider '%s' (known fields: %s)",
				cfg->location, name, key->provider, known);
			break;
		}
		if (!field_value_ok(field, value)) {
			rc = fv__error_set(FV_ERR_CONFIG, "%s.%s: expected %s", cfg->location,
			                   name, field_type_name(field->type));
			break;
		}
		if (field->type == FV_FIELD_SECRET) {
			char where[320];

			snprintf(where, sizeof(where), "%s.%s", cfg->location, name);
			if ((rc = fv__secret_check_field(json_object_get_string(value),
			                                 where)) != FV_OK)
				break;
		}
	}
	for (i = 0; rc == FV_OK && i < cfg->field_count; i++) {
		json_object *v;
		int present = json_object_object_get_ex(key->entry, fields[i].name, &v);

		if (!present && (fields[i].flags & FV_FIELD_REQUIRED)) {
			rc = fv__error_set(FV_ERR_CONFIG, "%s.%s: missing (%s)", cfg->location,
			                   fields[i].name,
			                   fields[i].help ? fields[i].help : "required");
			break;
		}
		if (present && (fields[i].flags & FV_FIELD_PATH) &&
		    fields[i].type == FV_FIELD_STRING &&
		    !(cfg->paths[i] = fv__config_resolve_path(ctx, json_object_get_string(v))))
			rc = fv__error_nomem();
		/* file: references relative to the configuration's directory. */
		if (present && fields[i].type == FV_FIELD_SECRET &&
		    !(cfg->paths[i] = fv__config_secret_reference(ctx, json_object_get_string(v))))
			rc = fv__error_nomem();
	}
	if (rc != FV_OK) {
		fv__config_view_free(cfg);
		return rc;
	}
	*out = cfg;
	return FV_OK;
}
