/*
 * The PEM key provider: an RSA private key in a PEM file on disk, loaded
 * into this process and used through OpenSSL 3.
 *
 * Accepted: PKCS#1 ("RSA PRIVATE KEY", optionally "Proc-Type: 4,ENCRYPTED")
 * and PKCS#8 ("PRIVATE KEY" or "ENCRYPTED PRIVATE KEY"), RSA of at least
 * 2048 bits. `generate` writes RSA-2048 as encrypted PKCS#8 (PBES2, PBKDF2,
 * AES-256-CBC). Of all providers this is the weakest store: the key is in
 * memory while the process runs, so the file permission checks below are
 * the main defence.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <flowvault/provider.h>

#define PEM_PLUGIN_VERSION "1.0.0"
#define PEM_FILE_MAX (64 * 1024)   /* far above any RSA PEM key */
#define PEM_MIN_BITS 2048
#define PEM_GENERATE_BITS 2048
#define SECRET_FORMS "env:NAME, file:PATH or prompt"

/* Set once by the entry point, before any other call. */
static const fv_host *pem_host;

enum pem_format {
	PEM_FORMAT_NONE,            /* no PEM block at all */
	PEM_FORMAT_NOT_PRIVATE,     /* PEM, but a certificate or public key */
	PEM_FORMAT_OPENSSH,         /* OpenSSH's own format, not PEM */
	PEM_FORMAT_OTHER_PRIVATE,   /* "EC PRIVATE KEY", "DSA PRIVATE KEY", ... */
	PEM_FORMAT_PKCS1,
	PEM_FORMAT_PKCS1_ENCRYPTED,
	PEM_FORMAT_PKCS8,
	PEM_FORMAT_PKCS8_ENCRYPTED
};

static const char *format_name(enum pem_format f)
{
	switch (f) {
	case PEM_FORMAT_PKCS1: return "PKCS#1";
	case PEM_FORMAT_PKCS1_ENCRYPTED: return "encrypted PKCS#1";
	case PEM_FORMAT_PKCS8: return "PKCS#8";
	case PEM_FORMAT_PKCS8_ENCRYPTED: return "encrypted PKCS#8";
	default: return "unknown";
	}
}

static int format_is_encrypted(enum pem_format f)
{
	return f == PEM_FORMAT_PKCS1_ENCRYPTED || f == PEM_FORMAT_PKCS8_ENCRYPTED;
}

struct fv_instance {
	char *location;          /* "keys.<name>", for messages */
	char *path;              /* absolute (the host resolved it) */
	char *passphrase_ref;    /* secret reference or NULL */
	int allow_group_readable;
	EVP_PKEY *generated;     /* made by key_generate, handed to key_open */
};

struct fv_pkey {
	EVP_PKEY *pkey;
	/* Set up once for RSA-OAEP/SHA-256 and duplicated per call: saves the
	 * per-call algorithm fetches (EVP_PKEY_CTX is not shared by threads). */
	EVP_PKEY_CTX *oaep;
	char *path;
	enum pem_format format;
	size_t modulus_bytes;
	int bits;
};

static const fv_config_field pem_fields[] = {
	{ "path", FV_FIELD_STRING,
	  FV_FIELD_REQUIRED | FV_FIELD_KEY_REFERENCE | FV_FIELD_PATH,
	  "PEM file holding the RSA private key (PKCS#1 or PKCS#8)" },
	{ "passphrase", FV_FIELD_SECRET, 0,
	  "secret reference to the passphrase of an encrypted key file" },
	{ "allow_group_readable", FV_FIELD_BOOL, 0,
	  "accept a key file readable by group or others (mounts you cannot chmod)" },
	{ NULL, 0, 0, NULL }
};

/* ---- Small helpers ---- */

static char *dup_string(const char *s)
{
	size_t n = strlen(s) + 1;
	char *copy = malloc(n);

	if (copy)
		memcpy(copy, s, n);
	return copy;
}

/* The key's name ("flows") from the location ("keys.flows"), for hints. */
static const char *key_name_of(const struct fv_instance *inst)
{
	return strncmp(inst->location, "keys.", 5) == 0 ? inst->location + 5
	                                                 : inst->location;
}

/* The latest OpenSSL error reason, for debug logs; clears the queue so that
 * stale errors never reach the next operation on this thread. */
static void log_openssl_errors(const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char buf[256];

	if (e) {
		ERR_error_string_n(e, buf, sizeof(buf));
		pem_host->log(FV_LOG_DEBUG, "pem: %s: %s", what, buf);
	}
	ERR_clear_error();
}

/*
 * What the first private-key PEM block of `text` is. OpenSSL would tell us
 * only "decoding failed"; knowing the block's label lets the messages say
 * "encrypted, set passphrase" or "EC key" instead.
 */
static enum pem_format classify_pem(const char *text, char *label, size_t label_len)
{
	enum pem_format found = PEM_FORMAT_NONE;
	const char *line = text;

	label[0] = '\0';
	while (line && *line) {
		const char *next = strchr(line, '\n');

		if (strncmp(line, "-----BEGIN ", 11) == 0) {
			const char *start = line + 11;
			const char *end = strstr(start, "-----");
			size_t n;

			if (end && (!next || end < next)) {
				n = (size_t)(end - start);
				if (n >= label_len)
					n = label_len - 1;
				memcpy(label, start, n);
				label[n] = '\0';
				if (strcmp(label, "ENCRYPTED PRIVATE KEY") == 0)
					return PEM_FORMAT_PKCS8_ENCRYPTED;
				if (strcmp(label, "PRIVATE KEY") == 0)
					return PEM_FORMAT_PKCS8;
				if (strcmp(label, "OPENSSH PRIVATE KEY") == 0)
					return PEM_FORMAT_OPENSSH;
				if (strcmp(label, "RSA PRIVATE KEY") == 0) {
					/* RFC 1421 headers follow BEGIN, up to a blank line. */
					const char *h = next ? next + 1 : NULL;

					while (h && *h && *h != '\n' && *h != '\r') {
						const char *hn = strchr(h, '\n');

						if (strncmp(h, "Proc-Type:", 10) == 0 &&
						    strstr(h, "ENCRYPTED") &&
						    (!hn || strstr(h, "ENCRYPTED") < hn))
							return PEM_FORMAT_PKCS1_ENCRYPTED;
						if (!strchr(h, ':') || (hn && strchr(h, ':') > hn))
							break;
						h = hn ? hn + 1 : NULL;
					}
					return PEM_FORMAT_PKCS1;
				}
				n = strlen(label);
				if (n > 12 && strcmp(label + n - 12, " PRIVATE KEY") == 0)
					return PEM_FORMAT_OTHER_PRIVATE;
				found = PEM_FORMAT_NOT_PRIVATE; /* keep looking */
			}
		}
		line = next ? next + 1 : NULL;
	}
	return found;
}

/* ---- Reading the key file ---- */

/* Read `inst->path` after checking its permissions; the caller wipes and
 * frees *out. */
static int read_key_file(const struct fv_instance *inst, char **out, size_t *out_len)
{
	struct stat st;
	char *buf;
	size_t used = 0;
	int fd, err;

	/* O_NONBLOCK: a FIFO at `path` must be refused below, not hang us. */
	fd = open(inst->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		err = errno;
		if (err == ENOENT)
			return pem_host->error(FV_ERR_NOT_FOUND,
				"%s.path: no such file '%s'; fix the path, or create a key there with `flowvault generate %s`",
				inst->location, inst->path, key_name_of(inst));
		if (err == EACCES)
			return pem_host->error(FV_ERR_PERMISSION,
				"%s.path: cannot read '%s': %s; run as the key file's owner",
				inst->location, inst->path, strerror(err));
		return pem_host->error(FV_ERR_BACKEND, "%s.path: cannot open '%s': %s",
		                   inst->location, inst->path, strerror(err));
	}
	/* Check the file we opened, not the name: it cannot change under us. */
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return pem_host->error(FV_ERR_BACKEND,
			"%s.path: '%s' is not a regular file; point it at a PEM private key file",
			inst->location, inst->path);
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		close(fd);
		return pem_host->error(FV_ERR_PERMISSION,
			"%s.path: private key file '%s' is writable by %s (mode %03o); fix with chmod 600 '%s'",
			inst->location, inst->path,
			(st.st_mode & S_IWOTH) ? "others" : "its group",
			(unsigned)(st.st_mode & 0777), inst->path);
	}
	if (st.st_mode & (S_IRGRP | S_IROTH)) {
		if (!inst->allow_group_readable) {
			close(fd);
			return pem_host->error(FV_ERR_PERMISSION,
				"%s.path: private key file '%s' is readable by %s (mode %03o); fix with chmod 600 '%s' "
				"(or, on a mount whose mode cannot be changed, set \"allow_group_readable\": true in %s)",
				inst->location, inst->path,
				(st.st_mode & S_IROTH) ? "others" : "its group",
				(unsigned)(st.st_mode & 0777), inst->path, inst->location);
		}
		pem_host->log(FV_LOG_INFO,
		          "pem: %s: key file '%s' has mode %03o; accepted because allow_group_readable is set",
		          inst->location, inst->path, (unsigned)(st.st_mode & 0777));
	}
	if (st.st_size > PEM_FILE_MAX) {
		close(fd);
		return pem_host->error(FV_ERR_BACKEND,
			"%s.path: '%s' is not a PEM private key (%lld bytes is far too large for one)",
			inst->location, inst->path, (long long)st.st_size);
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return pem_host->error(FV_ERR_NOMEM, "out of memory");
	}
	while (used < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + used, (size_t)st.st_size - used);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = errno;
			close(fd);
			OPENSSL_clear_free(buf, (size_t)st.st_size + 1);
			return pem_host->error(FV_ERR_BACKEND, "%s.path: cannot read '%s': %s",
			                   inst->location, inst->path, strerror(err));
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	close(fd);
	buf[used] = '\0';
	*out = buf;
	*out_len = used;
	return FV_OK;
}

struct passphrase_arg {
	const char *passphrase;  /* NULL when none is configured */
	size_t len;
	int asked;               /* OpenSSL wanted a passphrase */
	int too_long;
};

/* OpenSSL's pem_password_cb; never falls back to OpenSSL's own prompt. */
static int passphrase_cb(char *buf, int size, int rwflag, void *u)
{
	struct passphrase_arg *arg = u;

	(void)rwflag;
	arg->asked = 1;
	if (!arg->passphrase || size < 0)
		return -1;
	if (arg->len > (size_t)size) {
		arg->too_long = 1;
		return -1;
	}
	memcpy(buf, arg->passphrase, arg->len);
	return (int)arg->len;
}

/* On failure the host has recorded why. */
static int resolve_passphrase(const struct fv_instance *inst, const char *purpose,
                              char **out, size_t *out_len)
{
	return pem_host->secret_resolve(inst->passphrase_ref, purpose, out, out_len);
}

/* Decode the key file into an RSA EVP_PKEY of at least PEM_MIN_BITS. */
static int load_key(const struct fv_instance *inst, EVP_PKEY **out,
                    enum pem_format *format_out)
{
	struct passphrase_arg pass = { NULL, 0, 0, 0 };
	char purpose[512], label[64];
	char *text = NULL, *secret = NULL;
	size_t text_len = 0, secret_len = 0;
	enum pem_format format;
	EVP_PKEY *pkey = NULL;
	BIO *bio;
	int rc, bits;

	rc = read_key_file(inst, &text, &text_len);
	if (rc != FV_OK)
		return rc;
	format = classify_pem(text, label, sizeof(label));
	switch (format) {
	case PEM_FORMAT_NONE:
		rc = pem_host->error(FV_ERR_BACKEND,
			"%s.path: '%s' is not a PEM private key (no -----BEGIN line); point it at an RSA key in PEM",
			inst->location, inst->path);
		goto out;
	case PEM_FORMAT_NOT_PRIVATE:
		rc = pem_host->error(FV_ERR_BACKEND,
			"%s.path: '%s' is not a PEM private key: it holds a %s; point it at the RSA private key",
			inst->location, inst->path, label);
		goto out;
	case PEM_FORMAT_OPENSSH:
		rc = pem_host->error(FV_ERR_UNSUPPORTED,
			"%s.path: '%s' is in OpenSSH's own format, not PEM; convert a copy with `ssh-keygen -p -m PEM -f FILE`",
			inst->location, inst->path);
		goto out;
	case PEM_FORMAT_OTHER_PRIVATE:
		rc = pem_host->error(FV_ERR_UNSUPPORTED,
			"%s.path: '%s' holds a non-RSA key (%s); WhatsApp Flows needs an RSA-2048 key (`flowvault generate %s` makes one)",
			inst->location, inst->path, label, key_name_of(inst));
		goto out;
	default:
		break;
	}

	if (format_is_encrypted(format)) {
		if (!inst->passphrase_ref) {
			rc = pem_host->error(FV_ERR_CONFIG,
				"%s: key file '%s' is encrypted (%s); set \"passphrase\" in %s to a secret reference ("
				SECRET_FORMS ")",
				inst->location, inst->path, format_name(format), inst->location);
			goto out;
		}
		snprintf(purpose, sizeof(purpose), "Passphrase for key file '%s'", inst->path);
		rc = resolve_passphrase(inst, purpose, &secret, &secret_len);
		if (rc != FV_OK)
			goto out;
		pass.passphrase = secret;
		pass.len = secret_len;
	} else if (inst->passphrase_ref) {
		pem_host->log(FV_LOG_WARNING,
		          "pem: %s: \"passphrase\" is set but '%s' is not encrypted; the key is stored in the clear",
		          inst->location, inst->path);
	}

	bio = BIO_new_mem_buf(text, (int)text_len);
	if (!bio) {
		rc = pem_host->error(FV_ERR_NOMEM, "out of memory");
		goto out;
	}
	pkey = PEM_read_bio_PrivateKey_ex(bio, NULL, passphrase_cb, &pass, NULL, NULL);
	BIO_free(bio);
	/* The passphrase has done its job: wipe it now, not at the end. */
	if (secret) {
		pem_host->secret_free(secret, secret_len);
		secret = NULL;
		pass.passphrase = NULL;
	}
	if (!pkey) {
		log_openssl_errors("decoding the key file");
		if (pass.too_long)
			rc = pem_host->error(FV_ERR_AUTH,
				"%s.passphrase: the passphrase is too long for OpenSSL; use a shorter one",
				inst->location);
		else if (pass.asked && format_is_encrypted(format))
			rc = pem_host->error(FV_ERR_AUTH,
				"%s.passphrase: wrong passphrase for key file '%s' (it does not decrypt the %s key); check the secret that \"passphrase\" refers to",
				inst->location, inst->path, format_name(format));
		else if (pass.asked)
			rc = pem_host->error(FV_ERR_CONFIG,
				"%s: key file '%s' is encrypted; set \"passphrase\" in %s to a secret reference ("
				SECRET_FORMS ")",
				inst->location, inst->path, inst->location);
		else
			rc = pem_host->error(FV_ERR_BACKEND,
				"%s.path: '%s' is not a PEM private key: its %s block cannot be decoded (truncated or damaged?); restore it from a backup",
				inst->location, inst->path, label);
		goto out;
	}
	ERR_clear_error();

	if (!EVP_PKEY_is_a(pkey, "RSA")) {
		rc = pem_host->error(FV_ERR_UNSUPPORTED,
			"%s.path: '%s' holds a non-RSA key (%s); WhatsApp Flows needs an RSA-2048 key (`flowvault generate %s` makes one)",
			inst->location, inst->path, EVP_PKEY_get0_type_name(pkey),
			key_name_of(inst));
		goto out;
	}
	bits = EVP_PKEY_get_bits(pkey);
	if (bits < PEM_MIN_BITS) {
		rc = pem_host->error(FV_ERR_UNSUPPORTED,
			"%s.path: '%s' is a %d-bit RSA key; WhatsApp Flows needs at least %d bits (`flowvault generate %s` makes an RSA-2048 key)",
			inst->location, inst->path, bits, PEM_MIN_BITS, key_name_of(inst));
		goto out;
	}
	*out = pkey;
	pkey = NULL;
	*format_out = format;
	rc = FV_OK;
out:
	if (secret)
		pem_host->secret_free(secret, secret_len);
	EVP_PKEY_free(pkey);
	/* An unencrypted key file is the private key itself. */
	OPENSSL_clear_free(text, text_len + 1);
	return rc;
}

/* ---- Instances ---- */

static void pem_instance_close(fv_instance *inst)
{
	if (!inst)
		return;
	EVP_PKEY_free(inst->generated);
	free(inst->location);
	free(inst->path);
	free(inst->passphrase_ref);
	free(inst);
}

static int pem_instance_open(const fv_config *cfg, fv_instance **out)
{
	struct fv_instance *inst;
	const char *location, *path = NULL, *passphrase = NULL;
	int allow = 0, rc;

	location = pem_host->config_location(cfg);
	if (!location)
		location = "keys.?";
	rc = pem_host->config_string(cfg, "path", &path);
	if (rc != FV_OK || !path || !*path)
		return pem_host->error(FV_ERR_CONFIG,
			"%s.path: missing; give the PEM file that holds the key", location);
	rc = pem_host->config_string(cfg, "passphrase", &passphrase);
	if (rc != FV_OK && rc != FV_ERR_NOT_FOUND)
		return rc;
	if (rc == FV_ERR_NOT_FOUND)
		passphrase = NULL;
	rc = pem_host->config_bool(cfg, "allow_group_readable", &allow);
	if (rc != FV_OK && rc != FV_ERR_NOT_FOUND)
		return rc;
	if (rc == FV_ERR_NOT_FOUND)
		allow = 0;

	inst = calloc(1, sizeof(*inst));
	if (!inst)
		return pem_host->error(FV_ERR_NOMEM, "out of memory");
	inst->location = dup_string(location);
	inst->path = dup_string(path);
	inst->passphrase_ref = passphrase ? dup_string(passphrase) : NULL;
	inst->allow_group_readable = allow != 0;
	if (!inst->location || !inst->path || (passphrase && !inst->passphrase_ref)) {
		pem_instance_close(inst);
		return pem_host->error(FV_ERR_NOMEM, "out of memory");
	}
	*out = inst;
	return FV_OK;
}

/* ---- Keys ---- */

static void pem_key_close(fv_pkey *key)
{
	if (!key)
		return;
	EVP_PKEY_CTX_free(key->oaep);
	EVP_PKEY_free(key->pkey); /* clears the private numbers */
	free(key->path);
	free(key);
}

static int pem_key_open(fv_instance *inst, fv_pkey **out)
{
	struct fv_pkey *key;
	enum pem_format format = PEM_FORMAT_NONE;
	EVP_PKEY *pkey = NULL;
	int rc;

	if (inst->generated) {
		/* Just written by key_generate: no need to ask for the passphrase again. */
		pkey = inst->generated;
		inst->generated = NULL;
		format = PEM_FORMAT_PKCS8_ENCRYPTED;
	} else if ((rc = load_key(inst, &pkey, &format)) != FV_OK) {
		return rc;
	}
	key = calloc(1, sizeof(*key));
	if (!key || !(key->path = dup_string(inst->path))) {
		free(key);
		EVP_PKEY_free(pkey);
		return pem_host->error(FV_ERR_NOMEM, "out of memory");
	}
	key->pkey = pkey;
	key->format = format;
	key->bits = EVP_PKEY_get_bits(pkey);
	key->modulus_bytes = (size_t)EVP_PKEY_get_size(pkey);
	key->oaep = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	if (!key->oaep || EVP_PKEY_decrypt_init(key->oaep) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_padding(key->oaep, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md_name(key->oaep, "SHA256", NULL) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md_name(key->oaep, "SHA256", NULL) <= 0) {
		log_openssl_errors("setting up RSA-OAEP");
		pem_key_close(key);
		return pem_host->error(FV_ERR_BACKEND,
			"%s: OpenSSL cannot set up RSA-OAEP with SHA-256 for '%s'",
			inst->location, inst->path);
	}
	pem_host->log(FV_LOG_DEBUG, "pem: %s: loaded %d-bit RSA key from '%s' (%s)",
	          inst->location, key->bits, inst->path, format_name(format));
	*out = key;
	return FV_OK;
}

static int pem_key_public_der(fv_pkey *key, unsigned char *der, size_t *len)
{
	unsigned char *p = der;
	int need;

	if (!key || !len)
		return pem_host->error(FV_ERR_USAGE, "pem: key_public_der: missing argument");
	need = i2d_PUBKEY(key->pkey, NULL);
	if (need <= 0) {
		log_openssl_errors("encoding the public key");
		return pem_host->error(FV_ERR_BACKEND,
			"'%s': cannot encode the public key", key->path);
	}
	if (!der) {
		*len = (size_t)need;
		return FV_OK;
	}
	if (*len < (size_t)need) {
		*len = (size_t)need;
		return FV_ERR_BUFFER_TOO_SMALL;
	}
	if (i2d_PUBKEY(key->pkey, &p) != need) {
		log_openssl_errors("encoding the public key");
		return pem_host->error(FV_ERR_BACKEND,
			"'%s': cannot encode the public key", key->path);
	}
	*len = (size_t)need;
	return FV_OK;
}

/* RSA-OAEP with SHA-256 and MGF1-SHA-256, empty label. One EVP_PKEY_CTX
 * per call: the EVP_PKEY itself is only read, so threads may share it. */
static int pem_key_decrypt(fv_pkey *key, const unsigned char *in, size_t in_len,
                           unsigned char *out, size_t *out_len)
{
	EVP_PKEY_CTX *ctx = NULL;
	unsigned char *plain = NULL;
	size_t plain_len;
	int rc;

	if (!key || !in || !out_len)
		return pem_host->error(FV_ERR_USAGE, "pem: key_decrypt: missing argument");
	if (in_len != key->modulus_bytes)
		return pem_host->error(FV_ERR_DECRYPT,
			"ciphertext is %zu bytes; the %d-bit key in '%s' takes exactly %zu",
			in_len, key->bits, key->path, key->modulus_bytes);

	plain_len = key->modulus_bytes;
	plain = OPENSSL_malloc(plain_len);
	ctx = EVP_PKEY_CTX_dup(key->oaep);
	if (!plain || !ctx) {
		rc = pem_host->error(FV_ERR_NOMEM, "out of memory");
		goto out;
	}
	/* Into our own buffer of the modulus size, so that a short `out` is
	 * told apart from a padding failure. */
	if (EVP_PKEY_decrypt(ctx, plain, &plain_len, in, in_len) <= 0) {
		log_openssl_errors("RSA-OAEP decryption");
		rc = pem_host->error(FV_ERR_DECRYPT,
			"the ciphertext fails the RSA-OAEP (SHA-256) check with the key in '%s': "
			"it was encrypted to another key or with other parameters",
			key->path);
		goto out;
	}
	if (!out || *out_len < plain_len) {
		*out_len = plain_len;
		rc = FV_ERR_BUFFER_TOO_SMALL;
		goto out;
	}
	memcpy(out, plain, plain_len);
	*out_len = plain_len;
	rc = FV_OK;
out:
	EVP_PKEY_CTX_free(ctx);
	OPENSSL_clear_free(plain, key->modulus_bytes);
	return rc;
}

static int pem_key_info(fv_pkey *key, char *buf, size_t len)
{
	if (!key || !buf || len == 0)
		return FV_ERR_USAGE;
	snprintf(buf, len, "file: %s (%s, RSA-%d); oaep: host (OpenSSL)",
	         key->path, format_name(key->format), key->bits);
	return FV_OK;
}

/* The key is in this process's memory and in a file: no store keeps it. */
static int pem_key_describe(fv_pkey *key, fv_key_description *out)
{
	if (!key || !out ||
	    out->struct_size < offsetof(fv_key_description, properties_known) +
	                       sizeof(out->properties_known))
		return FV_ERR_USAGE;
	out->oaep = "host";
	out->backend = "file";
	out->location = key->path;
	out->remote_id = NULL;
	out->bits = key->bits > 0 ? (unsigned int)key->bits : 0;
	out->properties = FV_KEY_PROP_IN_HOST_MEMORY;
	out->properties_known = FV_KEY_PROP_IN_HOST_MEMORY;
	return FV_OK;
}

/* ---- Generating a key ---- */

static int new_passphrase(const struct fv_instance *inst, char **out, size_t *out_len)
{
	char purpose[512];
	char *again = NULL;
	size_t again_len = 0;
	int rc;

	snprintf(purpose, sizeof(purpose), "New passphrase for key file '%s'", inst->path);
	rc = resolve_passphrase(inst, purpose, out, out_len);
	if (rc != FV_OK)
		return rc;
	if (*out_len == 0) {
		pem_host->secret_free(*out, *out_len);
		*out = NULL;
		return pem_host->error(FV_ERR_SECRET,
			"%s.passphrase: the passphrase is empty; a generated key file is always encrypted",
			inst->location);
	}
	/* A typo at a prompt would lock the key away for good: ask twice. */
	if (strcmp(inst->passphrase_ref, "prompt") == 0) {
		snprintf(purpose, sizeof(purpose), "Repeat the passphrase for '%s'", inst->path);
		rc = resolve_passphrase(inst, purpose, &again, &again_len);
		if (rc != FV_OK) {
			pem_host->secret_free(*out, *out_len);
			*out = NULL;
			return rc;
		}
		if (again_len != *out_len || CRYPTO_memcmp(again, *out, again_len) != 0)
			rc = pem_host->error(FV_ERR_AUTH,
				"%s.passphrase: the two passphrases differ; nothing was written",
				inst->location);
		pem_host->secret_free(again, again_len);
		if (rc != FV_OK) {
			pem_host->secret_free(*out, *out_len);
			*out = NULL;
		}
	}
	return rc;
}

static int pem_key_generate(fv_instance *inst)
{
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	char *secret = NULL, *data;
	size_t secret_len = 0;
	long data_len;
	struct stat st;
	int rc;

	/* Fail before asking for a passphrase; file_create checks again. */
	if (lstat(inst->path, &st) == 0)
		return pem_host->error(FV_ERR_EXISTS,
			"%s.path: '%s' already exists; refusing to overwrite a key file (move it away or choose another path)",
			inst->location, inst->path);
	if (!inst->passphrase_ref)
		return pem_host->error(FV_ERR_CONFIG,
			"%s: generating a key needs a passphrase to encrypt the file; set \"passphrase\" in %s to a secret reference ("
			SECRET_FORMS ")",
			inst->location, inst->location);
	rc = new_passphrase(inst, &secret, &secret_len);
	if (rc != FV_OK)
		return rc;
	if (secret_len > INT32_MAX) {
		rc = pem_host->error(FV_ERR_AUTH, "%s.passphrase: the passphrase is too long",
		                 inst->location);
		goto out;
	}

	ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	if (!ctx || EVP_PKEY_keygen_init(ctx) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, PEM_GENERATE_BITS) <= 0 ||
	    EVP_PKEY_generate(ctx, &pkey) <= 0) {
		log_openssl_errors("generating an RSA key");
		rc = pem_host->error(FV_ERR_BACKEND, "%s: OpenSSL could not generate an RSA-%d key",
		                 inst->location, PEM_GENERATE_BITS);
		goto out;
	}
	/* The public exponent is OpenSSL's default, 65537. PKCS#8 with a
	 * cipher gives PBES2 with PBKDF2 (HMAC-SHA256) in OpenSSL 3. */
	bio = BIO_new(BIO_s_mem());
	if (!bio || !PEM_write_bio_PKCS8PrivateKey(bio, pkey, EVP_aes_256_cbc(),
	                                           secret, (int)secret_len, NULL, NULL)) {
		log_openssl_errors("encrypting the new key");
		rc = pem_host->error(FV_ERR_BACKEND, "%s: OpenSSL could not encrypt the new key",
		                 inst->location);
		goto out;
	}
	pem_host->secret_free(secret, secret_len);
	secret = NULL;
	data_len = BIO_get_mem_data(bio, &data);
	if (data_len <= 0) {
		rc = pem_host->error(FV_ERR_BACKEND, "%s: OpenSSL wrote no key data", inst->location);
		goto out;
	}
	rc = pem_host->file_create(inst->path, data, (size_t)data_len, 0600);
	if (rc == FV_OK) {
		pem_host->log(FV_LOG_INFO, "pem: %s: wrote a new RSA-%d key to '%s' (encrypted PKCS#8)",
		          inst->location, PEM_GENERATE_BITS, inst->path);
		EVP_PKEY_free(inst->generated);
		inst->generated = pkey;
		pkey = NULL;
	}
out:
	if (secret)
		pem_host->secret_free(secret, secret_len);
	BIO_free(bio);
	EVP_PKEY_free(pkey);
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

/* ---- The table and the entry point ---- */

static const fv_provider pem_provider = {
	.abi_version = FV_PROVIDER_ABI_VERSION,
	.struct_size = sizeof(fv_provider),
	.name = "pem",
	.version = PEM_PLUGIN_VERSION,
	/* No FV_CAP_DELETE: removing a key file is better done by a person who
	 * can see it (and shred it if it was never encrypted). */
	.capabilities = FV_CAP_GENERATE | FV_CAP_INFO | FV_CAP_DESCRIBE,
	.config_fields = pem_fields,
	.instance_open = pem_instance_open,
	.instance_close = pem_instance_close,
	.key_generate = pem_key_generate,
	.key_open = pem_key_open,
	.key_close = pem_key_close,
	.key_public_der = pem_key_public_der,
	.key_decrypt = pem_key_decrypt,
	.key_info = pem_key_info,
	.key_list = NULL,
	.key_delete = NULL,
	.key_describe = pem_key_describe,
};

static int pem_entry(uint32_t host_abi_version, const fv_host *h,
                     const fv_provider **out)
{
	if (fv_provider_host_check(host_abi_version, h) != FV_OK)
		return FV_ERR_PLUGIN;
	pem_host = h;
	*out = &pem_provider;
	return FV_OK;
}

FV_PROVIDER_DEFINE_ENTRY(pem_entry)
