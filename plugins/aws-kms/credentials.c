/*
 * AWS credentials: the configured secret references, else the chain in the
 * SDKs' order — environment, shared credentials/config files (AWS_PROFILE),
 * web identity (STS AssumeRoleWithWebIdentity), the container credentials
 * endpoint, IMDSv2. The first source that has credentials wins; a source
 * that has them but fails is an error (falling through to another identity
 * would be a surprise). Temporary credentials are cached until shortly
 * before they expire, so decrypts make no extra round trip.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/crypto.h>

#include "aws_kms.h"

#define CREDS_FILE_MAX (1024 * 1024)
/* Refresh this long before expiry (at most half the lifetime). */
#define REFRESH_MARGIN_MS (5 * 60 * 1000)
#define IMDS_BUDGET_MS 2500
#define IMDS_DEFAULT "http://169.254.169.254"
#define ECS_HOST "http://169.254.170.2"

/* ---- Small helpers ---- */

static const char *env(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

void aws_access_key_hint(const struct cloud_secret *akid, char *buf, size_t len)
{
	if (!akid->data || akid->len < 8)
		snprintf(buf, len, "(short access key id)");
	else
		snprintf(buf, len, "...%s", akid->data + akid->len - 4);
}

static void creds_free(struct aws_creds *c)
{
	if (!c)
		return;
	cloud_secret_clear(aws_host, &c->access_key);
	cloud_secret_clear(aws_host, &c->secret_key);
	cloud_secret_clear(aws_host, &c->session_token);
	free(c);
}

/* Read a whole small file into wiped-on-free memory; FV_ERR_NOT_FOUND,
 * with no message, when there is none: the chain goes on. */
static int read_small_file(const char *path, const char *what, char **out, size_t *out_len)
{
	int err = cloud_file_read(path, CREDS_FILE_MAX, out, out_len, NULL);

	if (err == ENOENT)
		return FV_ERR_NOT_FOUND;
	if (err == ENOMEM)
		return AWS_ERROR(FV_ERR_NOMEM, "out of memory");
	if (err == EINVAL || err == EFBIG)
		return AWS_ERROR(FV_ERR_AUTH, "aws-kms: %s '%s' is not a regular file of at most %d bytes",
		                 what, path, CREDS_FILE_MAX);
	if (err)
		return AWS_ERROR(FV_ERR_AUTH, "aws-kms: %s '%s': cannot open: %s", what, path,
		                 strerror(err));
	return FV_OK;
}

/* "2026-12-01T10:00:00Z" (fractions and offsets ignored) as Unix time. */
static int parse_iso8601(const char *s, time_t *out)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
		return 0;
	*out = timegm(&tm);
	return *out != (time_t)-1;
}

/* Turn a wall-clock expiry into the monotonic deadlines of `c`. */
static void set_expiry(struct aws_creds *c, time_t expires)
{
	int64_t now = cloud_now_ms();
	int64_t left = ((int64_t)expires - (int64_t)time(NULL)) * 1000;
	int64_t margin = left / 2 < REFRESH_MARGIN_MS ? left / 2 : REFRESH_MARGIN_MS;

	if (left <= 0) {
		c->expires_at_ms = now;
		c->refresh_at_ms = now;
		return;
	}
	c->expires_at_ms = now + left;
	c->refresh_at_ms = now + left - margin;
}

static struct aws_creds *creds_new(const char *source)
{
	struct aws_creds *c = calloc(1, sizeof(*c));

	if (c)
		snprintf(c->source, sizeof(c->source), "%s", source);
	return c;
}

/* ---- Sources ---- */

static int from_config(struct fv_instance *inst, struct aws_creds **out)
{
	char purpose[256], where[192];
	struct aws_creds *c;
	int rc;

	if (!inst->cfg_access_key_ref || !inst->cfg_secret_key_ref)
		return AWS_ERROR(FV_ERR_CONFIG,
			"%s: set both access_key_id and secret_access_key (secret references), or neither to use the AWS credential chain",
			inst->location);
	snprintf(where, sizeof(where), "configuration (%s.access_key_id)", inst->location);
	if (!(c = creds_new(where)))
		return AWS_ERROR(FV_ERR_NOMEM, "out of memory");
	snprintf(purpose, sizeof(purpose), "AWS access key id for %s", inst->location);
	rc = cloud_secret_resolve(aws_host, inst->cfg_access_key_ref, purpose, &c->access_key);
	if (rc == FV_OK) {
		snprintf(purpose, sizeof(purpose), "AWS secret access key for %s", inst->location);
		rc = cloud_secret_resolve(aws_host, inst->cfg_secret_key_ref, purpose, &c->secret_key);
	}
	if (rc == FV_OK && inst->cfg_session_token_ref) {
		snprintf(purpose, sizeof(purpose), "AWS session token for %s", inst->location);
		rc = cloud_secret_resolve(aws_host, inst->cfg_session_token_ref, purpose,
		                          &c->session_token);
	}
	if (rc != FV_OK) {
		creds_free(c);
		return rc;
	}
	*out = c;
	return FV_OK;
}

/* 1 and *out when the environment has a key pair; 0 when it has none. */
static int from_env(struct aws_creds **out, int *rc)
{
	const char *akid = env("AWS_ACCESS_KEY_ID"), *secret = env("AWS_SECRET_ACCESS_KEY");
	const char *token = env("AWS_SESSION_TOKEN");
	struct aws_creds *c;

	if (!akid || !secret)
		return 0;
	if (!(c = creds_new("environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"))) {
		*rc = AWS_ERROR(FV_ERR_NOMEM, "out of memory");
		return 1;
	}
	*rc = cloud_secret_set(aws_host, akid, strlen(akid), &c->access_key);
	if (*rc == FV_OK)
		*rc = cloud_secret_set(aws_host, secret, strlen(secret), &c->secret_key);
	if (*rc == FV_OK && token)
		*rc = cloud_secret_set(aws_host, token, strlen(token), &c->session_token);
	if (*rc != FV_OK)
		creds_free(c);
	else
		*out = c;
	return 1;
}

static void default_path(char *buf, size_t len, const char *var, const char *file)
{
	const char *home = env("HOME");

	if (env(var))
		snprintf(buf, len, "%s", env(var));
	else
		snprintf(buf, len, "%s/.aws/%s", home ? home : "", file);
}

/* Look in both shared files; 1 when the profile gave credentials or an
 * error, 0 to go on with the chain. */
static int from_shared_files(struct fv_instance *inst, struct aws_creds **out, int *rc)
{
	const char *profile = env("AWS_PROFILE") ? env("AWS_PROFILE") : "default";
	char paths[2][512], source[1200];
	struct aws_profile prof[2];
	int i, which = -1;

	memset(prof, 0, sizeof(prof));
	default_path(paths[0], sizeof(paths[0]), "AWS_SHARED_CREDENTIALS_FILE", "credentials");
	default_path(paths[1], sizeof(paths[1]), "AWS_CONFIG_FILE", "config");
	*rc = FV_OK;
	for (i = 0; i < 2 && *rc == FV_OK; i++) {
		char *text = NULL;
		size_t len = 0;
		int r = read_small_file(paths[i], i ? "AWS config file" : "AWS shared credentials file",
		                        &text, &len);

		if (r == FV_ERR_NOT_FOUND)
			continue;
		if (r != FV_OK) {
			*rc = r;
			break;
		}
		*rc = aws_profile_parse(aws_host, text, len, profile, i == 1, &prof[i]);
		OPENSSL_clear_free(text, len + 1);
	}
	if (*rc != FV_OK)
		goto done;
	/* The credentials file wins over the config file. */
	for (i = 0; i < 2 && which < 0; i++)
		if (prof[i].access_key.data || prof[i].secret_key.data)
			which = i;
	if (which < 0) {
		for (i = 0; i < 2; i++) {
			if (prof[i].found && prof[i].unsupported[0]) {
				*rc = AWS_ERROR(FV_ERR_UNSUPPORTED,
					"%s: AWS profile '%s' in '%s' uses %s, which aws-kms does not follow; "
					"give the profile static keys, use web identity or the instance role, or set access_key_id/secret_access_key",
					inst->location, profile, paths[i], prof[i].unsupported);
				goto done;
			}
		}
		if (env("AWS_PROFILE") && !prof[0].found && !prof[1].found) {
			*rc = AWS_ERROR(FV_ERR_AUTH,
				"%s: AWS_PROFILE=%s, but neither '%s' nor '%s' has that profile; fix AWS_PROFILE or the files",
				inst->location, profile, paths[0], paths[1]);
			goto done;
		}
		goto done; /* nothing here: next source */
	}
	snprintf(source, sizeof(source), "shared %s file '%s' (profile '%s')",
	         which ? "config" : "credentials", paths[which], profile);
	if (!prof[which].access_key.data || !prof[which].secret_key.data) {
		*rc = AWS_ERROR(FV_ERR_AUTH,
			"%s: %s has only one of aws_access_key_id and aws_secret_access_key; give both",
			inst->location, source);
		goto done;
	}
	if (!(*out = creds_new(source))) {
		*rc = AWS_ERROR(FV_ERR_NOMEM, "out of memory");
		goto done;
	}
	(*out)->access_key = prof[which].access_key;
	(*out)->secret_key = prof[which].secret_key;
	(*out)->session_token = prof[which].session_token;
	memset(&prof[which].access_key, 0, sizeof(prof[which].access_key));
	memset(&prof[which].secret_key, 0, sizeof(prof[which].secret_key));
	memset(&prof[which].session_token, 0, sizeof(prof[which].session_token));
done:
	aws_profile_clear(aws_host, &prof[0]);
	aws_profile_clear(aws_host, &prof[1]);
	return *rc != FV_OK || *out;
}

/* Take AccessKeyId/SecretAccessKey/Token/Expiration from a JSON answer of
 * the container endpoint or IMDS. */
static int creds_from_json(json_object *doc, const char *token_key, const char *source,
                           struct aws_creds **out)
{
	const char *akid, *secret, *token, *expiration;
	size_t akid_len, secret_len, token_len = 0;
	struct aws_creds *c;
	time_t expires;
	int rc;

	akid = cloud_json_string(doc, "AccessKeyId", &akid_len);
	secret = cloud_json_string(doc, "SecretAccessKey", &secret_len);
	token = cloud_json_string(doc, token_key, &token_len);
	expiration = cloud_json_string(doc, "Expiration", NULL);
	if (!akid || !secret || !akid_len || !secret_len)
		return AWS_ERROR(FV_ERR_AUTH,
			"aws-kms: %s answered without AccessKeyId and SecretAccessKey", source);
	if (!(c = creds_new(source)))
		return AWS_ERROR(FV_ERR_NOMEM, "out of memory");
	rc = cloud_secret_set(aws_host, akid, akid_len, &c->access_key);
	if (rc == FV_OK)
		rc = cloud_secret_set(aws_host, secret, secret_len, &c->secret_key);
	if (rc == FV_OK && token && token_len)
		rc = cloud_secret_set(aws_host, token, token_len, &c->session_token);
	if (rc != FV_OK) {
		creds_free(c);
		return rc;
	}
	if (expiration && parse_iso8601(expiration, &expires))
		set_expiry(c, expires);
	*out = c;
	return FV_OK;
}

/* ---- Web identity (STS AssumeRoleWithWebIdentity, the EKS way) ---- */

/* The text of the first element named `name` under `node`. */
static const xmlChar *xml_find_text(xmlNode *node, const char *name)
{
	for (; node; node = node->next) {
		const xmlChar *found;

		if (node->type == XML_ELEMENT_NODE && xmlStrEqual(node->name, BAD_CAST name) &&
		    node->children && node->children->type == XML_TEXT_NODE)
			return node->children->content;
		if ((found = xml_find_text(node->children, name)))
			return found;
	}
	return NULL;
}

/* Wipe every text node: the document held a secret key and a token. */
static void xml_wipe(xmlNode *node)
{
	for (; node; node = node->next) {
		if (node->type == XML_TEXT_NODE && node->content)
			OPENSSL_cleanse(node->content, (size_t)xmlStrlen(node->content));
		xml_wipe(node->children);
	}
}

static int from_web_identity(struct fv_instance *inst, int64_t deadline,
                             struct aws_creds **out, int *rc)
{
	const char *token_file = env("AWS_WEB_IDENTITY_TOKEN_FILE"), *role = env("AWS_ROLE_ARN");
	const char *session = env("AWS_ROLE_SESSION_NAME");
	static const char *const headers[] = {
		"Content-Type: application/x-www-form-urlencoded; charset=utf-8", NULL
	};
	char source[768], url[512], session_buf[64];
	char *jwt = NULL;
	size_t jwt_len = 0;
	struct cloud_response resp;
	xmlDoc *doc = NULL;
	xmlNode *root;

	if (!token_file || !role)
		return 0;
	snprintf(source, sizeof(source), "web identity (AWS_ROLE_ARN=%s, token file '%s')",
	         role, token_file);
	if (env("AWS_ENDPOINT_URL_STS"))
		snprintf(url, sizeof(url), "%s", env("AWS_ENDPOINT_URL_STS"));
	else
		snprintf(url, sizeof(url), "https://sts.%s.amazonaws.com/", inst->region);
	if (!session) {
		snprintf(session_buf, sizeof(session_buf), "flowvault-%ld", (long)getpid());
		session = session_buf;
	}
	*rc = read_small_file(token_file, "web identity token file", &jwt, &jwt_len);
	if (*rc == FV_ERR_NOT_FOUND)
		*rc = AWS_ERROR(FV_ERR_AUTH, "%s: %s: no such file; check AWS_WEB_IDENTITY_TOKEN_FILE",
		                inst->location, source);
	if (*rc != FV_OK)
		return 1;
	while (jwt_len && (jwt[jwt_len - 1] == '\n' || jwt[jwt_len - 1] == '\r' ||
	                   jwt[jwt_len - 1] == ' '))
		jwt[--jwt_len] = '\0';

	{
		const struct cloud_form_field form[] = {
			{ "Action", "AssumeRoleWithWebIdentity", 0 },
			{ "Version", "2011-06-15", 0 },
			{ "RoleArn", role, 0 },
			{ "RoleSessionName", session, 0 },
			{ "WebIdentityToken", jwt, jwt_len },
		};

		*rc = cloud_form_post(inst->http, url, headers, form, sizeof(form) / sizeof(form[0]),
		                      "STS AssumeRoleWithWebIdentity", deadline, &resp);
	}
	if (*rc != FV_OK)
		goto out;
	if (resp.len > 0 && resp.len < (size_t)CLOUD_RESPONSE_MAX)
		doc = xmlReadMemory(resp.body, (int)resp.len, "sts.xml", NULL,
		                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	root = doc ? xmlDocGetRootElement(doc) : NULL;
	if (resp.status != 200) {
		const xmlChar *code = root ? xml_find_text(root, "Code") : NULL;
		const xmlChar *msg = root ? xml_find_text(root, "Message") : NULL;

		*rc = AWS_ERROR(resp.status >= 500 ? FV_ERR_BACKEND : FV_ERR_AUTH,
			"%s: STS refused %s: HTTP %ld %s: %s; check the role's trust policy and the token",
			inst->location, source, resp.status, code ? (const char *)code : "",
			msg ? (const char *)msg : "(no message)");
	} else {
		const xmlChar *akid = root ? xml_find_text(root, "AccessKeyId") : NULL;
		const xmlChar *secret = root ? xml_find_text(root, "SecretAccessKey") : NULL;
		const xmlChar *token = root ? xml_find_text(root, "SessionToken") : NULL;
		const xmlChar *expiration = root ? xml_find_text(root, "Expiration") : NULL;
		struct aws_creds *c;
		time_t expires;

		if (!akid || !secret || !token) {
			*rc = AWS_ERROR(FV_ERR_BACKEND, "%s: STS answered %s without credentials",
			                inst->location, source);
		} else if (!(c = creds_new(source))) {
			*rc = AWS_ERROR(FV_ERR_NOMEM, "out of memory");
		} else {
			*rc = cloud_secret_set(aws_host, (const char *)akid, strlen((const char *)akid),
			                       &c->access_key);
			if (*rc == FV_OK)
				*rc = cloud_secret_set(aws_host, (const char *)secret,
				                       strlen((const char *)secret), &c->secret_key);
			if (*rc == FV_OK)
				*rc = cloud_secret_set(aws_host, (const char *)token,
				                       strlen((const char *)token), &c->session_token);
			if (*rc == FV_OK && expiration && parse_iso8601((const char *)expiration, &expires))
				set_expiry(c, expires);
			if (*rc == FV_OK)
				*out = c;
			else
				creds_free(c);
		}
	}
	if (doc) {
		xml_wipe(xmlDocGetRootElement(doc));
		xmlFreeDoc(doc);
	}
	cloud_response_free(&resp);
out:
	cloud_buf_free(jwt, jwt_len + 1);
	return 1;
}

/* ---- Container credentials endpoint (ECS, EKS Pod Identity) ---- */

/* Plain HTTP is allowed only to the hosts the SDKs allow. */
static int container_http_host_ok(const char *url)
{
	static const char *const allowed[] = {
		"http://127.", "http://localhost:", "http://localhost/", "http://[::1]",
		"http://169.254.170.2:", "http://169.254.170.2/", "http://169.254.170.23:",
		"http://169.254.170.23/", "http://[fd00:ec2::23]",
	};
	size_t i;

	if (strncasecmp(url, "https://", 8) == 0)
		return 1;
	for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		if (strncasecmp(url, allowed[i], strlen(allowed[i])) == 0)
			return 1;
	return 0;
}

static int from_container(struct fv_instance *inst, int64_t deadline,
                          struct aws_creds **out, int *rc)
{
	const char *rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	const char *full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	const char *token_file = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
	const char *token_env = env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
	static const char *const headers[] = { "Accept: application/json", NULL };
	struct cloud_secret auth = { NULL, 0 };
	struct cloud_request req;
	struct cloud_response resp;
	char url[1024], source[1200];
	json_object *doc = NULL;

	if (!rel && !full)
		return 0;
	if (rel)
		snprintf(url, sizeof(url), "%s%s", ECS_HOST, rel);
	else
		snprintf(url, sizeof(url), "%s", full);
	snprintf(source, sizeof(source), "container credentials endpoint (%s)",
	         rel ? "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI" : "AWS_CONTAINER_CREDENTIALS_FULL_URI");
	if (!container_http_host_ok(url)) {
		*rc = AWS_ERROR(FV_ERR_AUTH,
			"%s: %s: plain HTTP is allowed only to loopback and the container agent's addresses; use https",
			inst->location, source);
		return 1;
	}
	if (token_file) {
		char *text = NULL;
		size_t len = 0;

		*rc = read_small_file(token_file, "container authorization token file", &text, &len);
		if (*rc == FV_ERR_NOT_FOUND)
			*rc = AWS_ERROR(FV_ERR_AUTH, "%s: %s: token file '%s' does not exist",
			                inst->location, source, token_file);
		if (*rc != FV_OK)
			return 1;
		while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
			len--;
		*rc = cloud_secret_set(aws_host, text, len, &auth);
		OPENSSL_clear_free(text, len + 1);
	} else if (token_env) {
		*rc = cloud_secret_set(aws_host, token_env, strlen(token_env), &auth);
	}
	if (*rc != FV_OK)
		return 1;
	memset(&req, 0, sizeof(req));
	req.method = "GET";
	req.url = url;
	req.headers = headers;
	req.secret_header_name = auth.data ? "Authorization" : NULL;
	req.secret_header_value = &auth;
	req.idempotent = 1;
	req.allow_http = 1;
	req.what = "container credentials";
	*rc = cloud_http_perform(inst->meta_http, &req, deadline, &resp);
	cloud_secret_clear(aws_host, &auth);
	if (*rc != FV_OK)
		return 1;
	if (resp.status != 200)
		*rc = AWS_ERROR(FV_ERR_AUTH, "%s: %s answered HTTP %ld; check the task role and the token",
		                inst->location, source, resp.status);
	else if (cloud_json_parse(resp.body, resp.len, &doc) != FV_OK)
		*rc = AWS_ERROR(FV_ERR_AUTH, "%s: %s answered with something other than a JSON object",
		                inst->location, source);
	else
		*rc = creds_from_json(doc, "Token", source, out);
	cloud_json_free_wiped(doc);
	cloud_response_free(&resp);
	return 1;
}

/* ---- IMDSv2 ---- */

static int from_imds(struct fv_instance *inst, int64_t deadline, struct aws_creds **out,
                     char *why, size_t why_len)
{
	const char *base = env("AWS_EC2_METADATA_SERVICE_ENDPOINT") ? env("AWS_EC2_METADATA_SERVICE_ENDPOINT")
	                                                            : IMDS_DEFAULT;
	static const char *const ttl_headers[] = { "X-aws-ec2-metadata-token-ttl-seconds: 21600", NULL };
	struct cloud_secret token = { NULL, 0 };
	struct cloud_request req;
	struct cloud_response resp;
	char url[1024], role[256], source[1400];
	json_object *doc = NULL;
	size_t n;
	int rc;

	memset(&resp, 0, sizeof(resp));
	/* Off EC2 nothing answers: give up soon, as the SDKs do. */
	if (deadline > cloud_now_ms() + IMDS_BUDGET_MS)
		deadline = cloud_now_ms() + IMDS_BUDGET_MS;
	snprintf(source, sizeof(source), "instance metadata (IMDSv2 at %s)", base);
	memset(&req, 0, sizeof(req));
	snprintf(url, sizeof(url), "%s/latest/api/token", base);
	req.method = "PUT";
	req.url = url;
	req.headers = ttl_headers;
	req.idempotent = 1;
	req.allow_http = 1;
	req.what = "IMDSv2 token";
	rc = cloud_http_perform(inst->meta_http, &req, deadline, &resp);
	if (rc != FV_OK) {
		snprintf(why, why_len, "no instance metadata service at %s", base);
		return FV_ERR_NOT_FOUND;
	}
	if (resp.status != 200 || resp.len == 0) {
		snprintf(why, why_len, "%s answered HTTP %ld for a session token", base, resp.status);
		cloud_response_free(&resp);
		return FV_ERR_NOT_FOUND;
	}
	rc = cloud_secret_set(aws_host, resp.body, resp.len, &token);
	cloud_response_free(&resp);
	if (rc != FV_OK)
		return rc;

	req.method = "GET";
	req.headers = NULL;
	req.secret_header_name = "X-aws-ec2-metadata-token";
	req.secret_header_value = &token;
	req.what = "IMDSv2 role name";
	snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/", base);
	rc = cloud_http_perform(inst->meta_http, &req, deadline, &resp);
	if (rc != FV_OK)
		goto out;
	if (resp.status != 200 || resp.len == 0) {
		snprintf(why, why_len, "%s has no instance role (HTTP %ld); attach a role to the instance",
		         base, resp.status);
		rc = FV_ERR_NOT_FOUND;
		goto out;
	}
	n = strcspn(resp.body, "\r\n");
	if (n == 0 || n >= sizeof(role) || strchr(resp.body, '/') || strchr(resp.body, '?')) {
		rc = AWS_ERROR(FV_ERR_AUTH, "%s: %s answered a role name that is not one", inst->location, source);
		goto out;
	}
	memcpy(role, resp.body, n);
	role[n] = '\0';
	cloud_response_free(&resp);

	req.what = "IMDSv2 role credentials";
	snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/%s", base, role);
	snprintf(source, sizeof(source), "instance metadata (IMDSv2 at %s, role '%s')", base, role);
	rc = cloud_http_perform(inst->meta_http, &req, deadline, &resp);
	if (rc != FV_OK)
		goto out;
	if (resp.status != 200 || cloud_json_parse(resp.body, resp.len, &doc) != FV_OK) {
		rc = AWS_ERROR(FV_ERR_AUTH, "%s: %s answered HTTP %ld without credentials",
		               inst->location, source, resp.status);
		goto out;
	}
	{
		const char *code = cloud_json_string(doc, "Code", NULL);

		if (code && strcmp(code, "Success") != 0) {
			rc = AWS_ERROR(FV_ERR_AUTH, "%s: %s: credentials not available (Code %s)",
			               inst->location, source, code);
			goto out;
		}
	}
	rc = creds_from_json(doc, "Token", source, out);
out:
	cloud_json_free_wiped(doc);
	cloud_response_free(&resp);
	cloud_secret_clear(aws_host, &token);
	return rc;
}

/* ---- The chain ---- */

static int fetch(struct fv_instance *inst, int64_t deadline, struct aws_creds **out)
{
	char why[512] = "";
	int rc = FV_OK;

	*out = NULL;
	if (inst->cfg_access_key_ref || inst->cfg_secret_key_ref)
		return from_config(inst, out);
	if (from_env(out, &rc) || from_shared_files(inst, out, &rc) ||
	    from_web_identity(inst, deadline, out, &rc) || from_container(inst, deadline, out, &rc))
		return rc;
	if (env("AWS_EC2_METADATA_DISABLED") && strcasecmp(env("AWS_EC2_METADATA_DISABLED"), "true") == 0) {
		snprintf(why, sizeof(why), "AWS_EC2_METADATA_DISABLED is set");
		rc = FV_ERR_NOT_FOUND;
	} else {
		rc = from_imds(inst, deadline, out, why, sizeof(why));
	}
	if (rc == FV_ERR_NOT_FOUND)
		return AWS_ERROR(FV_ERR_AUTH,
			"%s: no AWS credentials found: tried the environment (AWS_ACCESS_KEY_ID), the shared files "
			"(profile '%s'), web identity (AWS_WEB_IDENTITY_TOKEN_FILE), the container endpoint "
			"(AWS_CONTAINER_CREDENTIALS_*) and instance metadata (%s); set access_key_id and "
			"secret_access_key in %s or provide one of these",
			inst->location, env("AWS_PROFILE") ? env("AWS_PROFILE") : "default", why, inst->location);
	return rc;
}

int aws_creds_get(struct fv_instance *inst, int64_t deadline, struct aws_creds **out)
{
	struct aws_creds *fresh = NULL, *old;
	int64_t now;
	int rc;

	pthread_mutex_lock(&inst->creds_lock);
	now = cloud_now_ms();
	if (inst->creds && (!inst->creds->refresh_at_ms || now < inst->creds->refresh_at_ms)) {
		inst->creds->refs++;
		*out = inst->creds;
		pthread_mutex_unlock(&inst->creds_lock);
		return FV_OK;
	}
	pthread_mutex_unlock(&inst->creds_lock);

	pthread_mutex_lock(&inst->refresh_lock);
	pthread_mutex_lock(&inst->creds_lock);
	now = cloud_now_ms();
	if (inst->creds && (!inst->creds->refresh_at_ms || now < inst->creds->refresh_at_ms)) {
		/* Another thread fetched them while we waited. */
		inst->creds->refs++;
		*out = inst->creds;
		pthread_mutex_unlock(&inst->creds_lock);
		pthread_mutex_unlock(&inst->refresh_lock);
		return FV_OK;
	}
	pthread_mutex_unlock(&inst->creds_lock);

	rc = fetch(inst, deadline, &fresh);

	pthread_mutex_lock(&inst->creds_lock);
	if (rc == FV_OK) {
		AWS_LOG(FV_LOG_DEBUG, "aws-kms: %s: credentials from %s%s", inst->location, fresh->source,
		        fresh->expires_at_ms ? " (temporary)" : "");
		old = inst->creds;
		fresh->refs = 2; /* the cache's and the caller's */
		inst->creds = fresh;
		*out = fresh;
		if (old && --old->refs == 0)
			creds_free(old);
	} else if (inst->creds && inst->creds->expires_at_ms &&
	           cloud_now_ms() < inst->creds->expires_at_ms) {
		/* Refreshing early failed; the old ones are still good. */
		AWS_LOG(FV_LOG_WARNING,
		        "aws-kms: %s: refreshing credentials from %s failed; using the current ones until they expire",
		        inst->location, inst->creds->source);
		inst->creds->refs++;
		*out = inst->creds;
		rc = FV_OK;
	}
	pthread_mutex_unlock(&inst->creds_lock);
	pthread_mutex_unlock(&inst->refresh_lock);
	return rc;
}

void aws_creds_put(struct fv_instance *inst, struct aws_creds *creds)
{
	int last;

	if (!creds)
		return;
	pthread_mutex_lock(&inst->creds_lock);
	last = --creds->refs == 0;
	pthread_mutex_unlock(&inst->creds_lock);
	if (last)
		creds_free(creds);
}

void aws_creds_forget(struct fv_instance *inst, struct aws_creds *creds)
{
	int last = 0;

	pthread_mutex_lock(&inst->creds_lock);
	if (inst->creds == creds) {
		inst->creds = NULL;
		last = --creds->refs == 0;
	}
	pthread_mutex_unlock(&inst->creds_lock);
	if (last)
		creds_free(creds);
}

void aws_creds_cleanup(struct fv_instance *inst)
{
	if (inst->creds && --inst->creds->refs == 0)
		creds_free(inst->creds);
	inst->creds = NULL;
}
