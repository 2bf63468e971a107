/*
 * flowvault key provider for PKCS#11 tokens and HSMs: the entry point, the
 * function table and the configuration. The private key is generated in
 * the token as sensitive and never extractable; only C_Decrypt reaches it.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

const fv_host *p11_host;

static const fv_config_field config_fields[] = {
	{ "module", FV_FIELD_STRING, FV_FIELD_REQUIRED,
	  "PKCS#11 module: absolute path of the .so, or a module name registered with p11-kit" },
	{ "uri", FV_FIELD_STRING, FV_FIELD_REQUIRED | FV_FIELD_KEY_REFERENCE,
	  "RFC 7512 URI of the key, e.g. pkcs11:token=flows;object=flows-key (pin-value is refused)" },
	{ "pin", FV_FIELD_SECRET, 0,
	  "user PIN: env:NAME, file:PATH or prompt (wins over the URI's pin-source)" },
	{ "init_args", FV_FIELD_STRING, 0,
	  "string passed as pReserved to C_Initialize (NSS softokn: configdir='sql:DIR' ...)" },
	{ "allow_host_oaep", FV_FIELD_BOOL, 0,
	  "when the token lacks OAEP-SHA256: raw RSA in the token, padding removed here (default false)" },
	{ NULL, 0, 0, NULL }
};

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void instance_close(fv_instance *inst)
{
	if (!inst)
		return;
	if (inst->mod) {
		p11_pool_destroy(inst);
		p11_module_put(inst->mod);
	}
	p11_target_clear(&inst->target);
	free(inst->pin_ref);
	free(inst->where);
	free(inst);
}

static int instance_open(const fv_config *cfg, fv_instance **out)
{
	const char *module = NULL, *uri = NULL, *pin = NULL, *init_args = NULL;
	fv_instance *inst;
	CK_SESSION_HANDLE s;
	int allow = 0, rc;

	*out = NULL;
	inst = calloc(1, sizeof(*inst));
	if (!inst)
		return FV_ERR_NOMEM;
	inst->where = strdup(p11_host->config_location(cfg));
	if (!inst->where) {
		free(inst);
		return FV_ERR_NOMEM;
	}
	if (p11_host->config_string(cfg, "module", &module) != FV_OK ||
	    p11_host->config_string(cfg, "uri", &uri) != FV_OK) {
		rc = P11_ERROR(FV_ERR_CONFIG, "%s: module and uri are required for provider pkcs11",
		               inst->where);
		goto fail;
	}
	p11_host->config_string(cfg, "pin", &pin);
	p11_host->config_string(cfg, "init_args", &init_args);
	p11_host->config_bool(cfg, "allow_host_oaep", &allow);
	inst->allow_host_oaep = allow;

	rc = p11_target_parse(&inst->target, uri, inst->where);
	if (rc != FV_OK)
		goto fail;
	if (pin && inst->target.pin_source_ref)
		P11_LOG(FV_LOG_INFO, "%s: pin is set, so the uri's pin-source is not used",
		        inst->where);
	inst->pin_ref = dup_or_null(pin);
	if (pin && !inst->pin_ref) {
		rc = FV_ERR_NOMEM;
		goto fail;
	}

	rc = p11_module_get(&inst->mod, module, init_args, inst->where);
	if (rc != FV_OK)
		goto fail;
	rc = p11_pool_init(inst);
	if (rc != FV_OK) {
		p11_module_put(inst->mod);
		inst->mod = NULL;
		goto fail;
	}
	rc = p11_token_select(inst);
	if (rc != FV_OK)
		goto fail;

	/* Log in once, on a session the pool keeps open: login lasts as long
	 * as the application has a session on the token. */
	{
		unsigned int gen;

		rc = p11_session_get(inst, &s, &gen);
		if (rc != FV_OK)
			goto fail;
		rc = p11_token_login(inst, s);
		if (rc != FV_OK) {
			p11_session_drop(inst, s);
			goto fail;
		}
		p11_session_put(inst, s, gen);
	}
	*out = inst;
	return FV_OK;
fail:
	instance_close(inst);
	return rc;
}

static int key_generate(fv_instance *inst)
{
	return p11_keygen(inst);
}

static void key_close(fv_pkey *key)
{
	if (!key)
		return;
	pthread_mutex_destroy(&key->lock);
	free(key->modulus);
	free(key->spki);
	free(key);
}

static int key_open(fv_instance *inst, fv_pkey **out)
{
	fv_pkey *key;
	CK_SESSION_HANDLE s;
	unsigned int gen;
	int rc;

	*out = NULL;
	key = calloc(1, sizeof(*key));
	if (!key)
		return FV_ERR_NOMEM;
	key->inst = inst;
	if (pthread_mutex_init(&key->lock, NULL) != 0) {
		free(key);
		return FV_ERR_GENERIC;
	}
	rc = p11_session_get(inst, &s, &gen);
	if (rc != FV_OK) {
		key_close(key);
		return rc;
	}
	rc = p11_find_private_key(inst, s, &key->handle);
	if (rc == FV_OK) {
		key->handle_gen = gen;
		rc = p11_key_load_public(key, s);
	}
	if (rc == FV_OK)
		rc = p11_key_load_properties(key, s);
	if (rc == FV_OK)
		rc = p11_decrypt_probe(key, s);
	p11_session_put(inst, s, gen);
	if (rc != FV_OK) {
		key_close(key);
		return rc;
	}
	*out = key;
	return FV_OK;
}

static int key_public_der(fv_pkey *key, unsigned char *der, size_t *len)
{
	if (!der || *len < key->spki_len) {
		*len = key->spki_len;
		if (!der)
			return FV_OK;
		return P11_ERROR(FV_ERR_BUFFER_TOO_SMALL, "public key needs %zu bytes", key->spki_len);
	}
	memcpy(der, key->spki, key->spki_len);
	*len = key->spki_len;
	return FV_OK;
}

static int key_decrypt(fv_pkey *key, const unsigned char *in, size_t in_len,
                       unsigned char *out, size_t *out_len)
{
	return p11_decrypt(key, in, in_len, out, out_len);
}

static void append_item(char *buf, size_t len, const char *text)
{
	size_t used = strlen(buf);

	snprintf(buf + used, len - used, "%s%s", used ? ", " : "", text);
}

/* "sensitive, never extractable, generated in the token" from the key's
 * attributes; "never extractable" only from CKA_NEVER_EXTRACTABLE. */
static void protection_text(const fv_pkey *key, char *buf, size_t len)
{
	uint32_t p = key->properties, known = key->properties_known;

	buf[0] = '\0';
	if (known & FV_KEY_PROP_SENSITIVE)
		append_item(buf, len, p & FV_KEY_PROP_SENSITIVE ? "sensitive" : "not sensitive");
	if ((known & p) & FV_KEY_PROP_EXTRACTABLE)
		append_item(buf, len, "extractable");
	else if (known & FV_KEY_PROP_NEVER_EXTRACTABLE)
		append_item(buf, len, p & FV_KEY_PROP_NEVER_EXTRACTABLE
		                              ? "never extractable"
		                              : "not extractable now, but was before");
	if (known & FV_KEY_PROP_GENERATED_INSIDE)
		append_item(buf, len, p & FV_KEY_PROP_GENERATED_INSIDE ? "generated in the token"
		                                                       : "imported");
	if ((known & p) & FV_KEY_PROP_CAN_SIGN)
		append_item(buf, len, "can sign");
	if ((known & p) & FV_KEY_PROP_CAN_UNWRAP)
		append_item(buf, len, "can unwrap");
}

static int key_info(fv_pkey *key, char *buf, size_t len)
{
	fv_instance *inst = key->inst;
	char protection[160];
	const char *mode;

	switch (__atomic_load_n(&key->oaep_mode, __ATOMIC_ACQUIRE)) {
	case P11_OAEP_TOKEN:
		mode = "oaep: token";
		break;
	case P11_OAEP_HOST:
		mode = "oaep: host";
		break;
	default:
		mode = "oaep: unavailable (set allow_host_oaep or use a token with OAEP-SHA256)";
		break;
	}
	protection_text(key, protection, sizeof(protection));
	snprintf(buf, len, "%s; token '%s' (slot %lu); %s; RSA-%zu%s%s", mode,
	         inst->token_label, (unsigned long)inst->slot,
	         p11_target_describe(&inst->target), key->modulus_len * 8,
	         protection[0] ? "; " : "", protection);
	return FV_OK;
}

static int key_describe(fv_pkey *key, fv_key_description *out)
{
	/* Members this host knows of: it set struct_size to its own size. */
	if (out->struct_size < offsetof(fv_key_description, properties_known) +
	                       sizeof(out->properties_known))
		return P11_ERROR(FV_ERR_PLUGIN, "key_describe: the host's description is too short");
	switch (__atomic_load_n(&key->oaep_mode, __ATOMIC_ACQUIRE)) {
	case P11_OAEP_TOKEN:
		out->oaep = "token";
		break;
	case P11_OAEP_HOST:
		out->oaep = "host";
		break;
	default:
		out->oaep = NULL; /* none: key_info says why */
		break;
	}
	out->backend = "token";
	out->location = key->location;
	out->remote_id = NULL;
	out->bits = (unsigned int)(key->modulus_len * 8);
	out->properties = key->properties;
	out->properties_known = key->properties_known;
	return FV_OK;
}

static int key_list(fv_instance *inst, fv_key_list_cb cb, void *arg)
{
	return p11_objects_list(inst, cb, arg);
}

static int key_delete(fv_instance *inst)
{
	return p11_objects_delete(inst);
}

static const fv_provider provider = {
	.abi_version = FV_PROVIDER_ABI_VERSION,
	.struct_size = sizeof(fv_provider),
	.name = "pkcs11",
	.version = P11_PLUGIN_VERSION,
	.capabilities = FV_CAP_GENERATE | FV_CAP_INFO | FV_CAP_LIST | FV_CAP_DELETE |
	                FV_CAP_DESCRIBE,
	.config_fields = config_fields,
	.instance_open = instance_open,
	.instance_close = instance_close,
	.key_generate = key_generate,
	.key_open = key_open,
	.key_close = key_close,
	.key_public_der = key_public_der,
	.key_decrypt = key_decrypt,
	.key_info = key_info,
	.key_list = key_list,
	.key_delete = key_delete,
	.key_describe = key_describe,
};

static int pkcs11_entry(uint32_t host_abi_version, const fv_host *host,
                        const fv_provider **out)
{
	if (fv_provider_host_check(host_abi_version, host) != FV_OK)
		return FV_ERR_PLUGIN;
	p11_host = host;
	*out = &provider;
	return FV_OK;
}

FV_PROVIDER_DEFINE_ENTRY(pkcs11_entry)
