/*
 * The key's RFC 7512 "pkcs11:" URI. p11-kit parses it (percent-decoding,
 * attribute names, token and slot fields); we only read the results.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

/* A URI that cannot name a key (bad syntax, another object type, no label
 * or id) is a configuration error (exit 2 in the CLI), as is a secret
 * written in it. */
#define URI_ERROR FV_ERR_CONFIG

/*
 * pin-source, as p11-kit documents it, names a file holding the PIN: a
 * "file:" URI or a plain absolute path. Other forms ("|program", remote
 * URIs) are not supported. The result is a secret reference "file:PATH",
 * resolved by the host like every other secret (which also refuses a file
 * readable by others).
 */
static int pin_source_reference(char **out, const char *source, const char *where)
{
	const char *path = NULL;
	size_t len;

	*out = NULL;
	if (strncmp(source, "file://localhost/", 17) == 0)
		path = source + 16;
	else if (strncmp(source, "file:///", 8) == 0)
		path = source + 7;
	else if (strncmp(source, "file:/", 6) == 0 && source[6] != '/')
		path = source + 5;
	else if (source[0] == '/')
		path = source;
	if (!path)
		return P11_ERROR(FV_ERR_CONFIG,
			"%s.uri: pin-source must be a file: URI or an absolute path of a file holding the PIN (e.g. pin-source=file:/etc/flowvault/pin); or use the pin field",
			where);
	len = strlen(path);
	*out = malloc(len + 6);
	if (!*out)
		return FV_ERR_NOMEM;
	memcpy(*out, "file:", 5);
	memcpy(*out + 5, path, len + 1);
	return FV_OK;
}

static int target_parse(struct p11_target *t, const char *text, const char *where)
{
	CK_ATTRIBUTE *attr;
	const char *source;
	int rc;

	memset(t, 0, sizeof(*t));
	/* Refuse before parsing, so that no message can ever echo the PIN. */
	if (strcasestr(text, "pin-value"))
		return P11_ERROR(FV_ERR_CONFIG,
			"%s.uri: pin-value is refused: secrets never go in the configuration; use the pin field (env:NAME, file:PATH or prompt) or pin-source",
			where);
	t->uri = p11_kit_uri_new();
	if (!t->uri)
		return FV_ERR_NOMEM;
	rc = p11_kit_uri_parse(text, P11_KIT_URI_FOR_ANY, t->uri);
	if (rc != P11_KIT_URI_OK)
		return P11_ERROR(URI_ERROR,
			"%s.uri: '%s' is not a valid PKCS#11 URI (%s); see RFC 7512, e.g. pkcs11:token=flows;object=flows-key;type=private",
			where, text, p11_kit_uri_message(rc));
	if (p11_kit_uri_any_unrecognized(t->uri))
		return P11_ERROR(URI_ERROR,
			"%s.uri: '%s' has an attribute this tool does not understand; use token, manufacturer, serial, model, slot-id, slot-description, slot-manufacturer, object, id, type and pin-source",
			where, text);

	attr = p11_kit_uri_get_attribute(t->uri, CKA_CLASS);
	if (attr && (attr->ulValueLen != sizeof(CK_OBJECT_CLASS) ||
	             *(CK_OBJECT_CLASS *)attr->pValue != CKO_PRIVATE_KEY))
		return P11_ERROR(URI_ERROR,
			"%s.uri: type must be 'private' (or absent): the URI names the private key; its public key is found by the same id/label",
			where);
	attr = p11_kit_uri_get_attribute(t->uri, CKA_LABEL);
	if (attr && attr->ulValueLen > 0) {
		t->label = malloc(attr->ulValueLen + 1);
		if (!t->label)
			return FV_ERR_NOMEM;
		memcpy(t->label, attr->pValue, attr->ulValueLen);
		t->label[attr->ulValueLen] = '\0';
		if (strlen(t->label) != attr->ulValueLen)
			return P11_ERROR(URI_ERROR, "%s.uri: the object label contains a NUL byte", where);
	}
	attr = p11_kit_uri_get_attribute(t->uri, CKA_ID);
	if (attr && attr->ulValueLen > 0) {
		t->id = malloc(attr->ulValueLen);
		if (!t->id)
			return FV_ERR_NOMEM;
		memcpy(t->id, attr->pValue, attr->ulValueLen);
		t->id_len = attr->ulValueLen;
	}
	if (!t->label && !t->id)
		return P11_ERROR(URI_ERROR,
			"%s.uri: name the key with object=LABEL (and optionally id=%%XX...), e.g. pkcs11:token=flows;object=flows-key",
			where);

	source = p11_kit_uri_get_pin_source(t->uri);
	if (source) {
		rc = pin_source_reference(&t->pin_source_ref, source, where);
		if (rc != FV_OK)
			return rc;
	}
	return FV_OK;
}

/* On failure nothing stays allocated in *t. */
int p11_target_parse(struct p11_target *t, const char *text, const char *where)
{
	int rc = target_parse(t, text, where);

	if (rc != FV_OK)
		p11_target_clear(t);
	return rc;
}

void p11_target_clear(struct p11_target *t)
{
	if (t->uri)
		p11_kit_uri_free(t->uri);
	free(t->label);
	free(t->id);
	free(t->pin_source_ref);
	memset(t, 0, sizeof(*t));
}

const char *p11_hex(const unsigned char *data, size_t len)
{
	static _Thread_local char buf[2 * 64 + 4];
	size_t i, n = len > 64 ? 64 : len;

	for (i = 0; i < n; i++)
		snprintf(buf + 2 * i, 3, "%02x", data[i]);
	buf[2 * n] = '\0';
	if (n < len)
		strcat(buf, "...");
	return buf;
}

const char *p11_target_describe(const struct p11_target *t)
{
	static _Thread_local char buf[256];

	if (t->label && t->id)
		snprintf(buf, sizeof(buf), "object '%s' id %s", t->label,
		         p11_hex(t->id, t->id_len));
	else if (t->label)
		snprintf(buf, sizeof(buf), "object '%s'", t->label);
	else
		snprintf(buf, sizeof(buf), "id %s", p11_hex(t->id, t->id_len));
	return buf;
}

void p11_trim_copy(char *dst, size_t dst_size, const unsigned char *src,
                   size_t src_len)
{
	size_t n = src_len < dst_size - 1 ? src_len : dst_size - 1;

	memcpy(dst, src, n);
	while (n > 0 && (dst[n - 1] == ' ' || dst[n - 1] == '\0'))
		n--;
	dst[n] = '\0';
}
