/*
 * The "TSS2 PRIVATE KEY" PEM format, as written and read by tpm2-openssl,
 * tpm2-tss-engine and openssl_tpm2_engine:
 *
 *   TPMKey ::= SEQUENCE {
 *       type       OBJECT IDENTIFIER,      -- 2.23.133.10.1.3: loadable key
 *       emptyAuth  [0] EXPLICIT BOOLEAN OPTIONAL,
 *       parent     INTEGER,                -- persistent handle or 0x40000001
 *       pubkey     OCTET STRING,           -- marshalled TPM2B_PUBLIC
 *       privkey    OCTET STRING }          -- marshalled TPM2B_PRIVATE
 *
 * The private part is encrypted by the parent key inside the TPM that made
 * it, so the file is useless anywhere else. Encoding goes through OpenSSL's
 * ASN.1 templates and the TPM structures through tss2-mu.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/asn1t.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

#include <tss2/tss2_mu.h>

#include "tpm2_plugin.h"

#define TSS2_PEM_NAME "TSS2 PRIVATE KEY"
#define OID_LOADABLE_KEY "2.23.133.10.1.3"
#define OID_IMPORTABLE_KEY "2.23.133.10.1.4"
#define OID_SEALED_DATA "2.23.133.10.1.5"
/* A key file is a few hundred bytes; refuse anything absurd. */
#define KEYFILE_MAX (64 * 1024)

typedef struct TSSPrivKey {
	ASN1_OBJECT *type;
	ASN1_BOOLEAN emptyAuth;   /* -1 when absent */
	ASN1_INTEGER *parent;
	ASN1_OCTET_STRING *pubkey;
	ASN1_OCTET_STRING *privkey;
} TSSPrivKey;

ASN1_SEQUENCE(TSSPrivKey) = {
	ASN1_SIMPLE(TSSPrivKey, type, ASN1_OBJECT),
	ASN1_EXP_OPT(TSSPrivKey, emptyAuth, ASN1_BOOLEAN, 0),
	ASN1_SIMPLE(TSSPrivKey, parent, ASN1_INTEGER),
	ASN1_SIMPLE(TSSPrivKey, pubkey, ASN1_OCTET_STRING),
	ASN1_SIMPLE(TSSPrivKey, privkey, ASN1_OCTET_STRING)
/* cppcheck-suppress unknownMacro ; OpenSSL's template macro */
} static_ASN1_SEQUENCE_END(TSSPrivKey)

IMPLEMENT_STATIC_ASN1_ALLOC_FUNCTIONS(TSSPrivKey)
IMPLEMENT_STATIC_ASN1_ENCODE_FUNCTIONS(TSSPrivKey)

static int damaged(const char *what, const char *detail)
{
	return TPM2_ERROR(FV_ERR_BACKEND,
		"%s is damaged or truncated (%s); restore it from a backup, or generate a new key",
		what, detail);
}

int tpm2_keyblob_decode(struct tpm2_keyblob *out, const char *pem,
                        size_t pem_len, const char *what)
{
	char *name = NULL, *header = NULL, oid[64];
	unsigned char *der = NULL;
	const unsigned char *p;
	long der_len = 0;
	uint64_t parent;
	size_t off;
	TSSPrivKey *tk = NULL;
	BIO *bio;
	int rc = FV_ERR_BACKEND;

	memset(out, 0, sizeof(*out));
	if (pem_len > KEYFILE_MAX)
		return TPM2_ERROR(FV_ERR_BACKEND, "%s is not a TSS2 key file (%zu bytes)", what,
		                  pem_len);
	bio = BIO_new_mem_buf(pem, (int)pem_len);
	if (!bio)
		return FV_ERR_NOMEM;
	ERR_clear_error();
	if (!PEM_read_bio(bio, &name, &header, &der, &der_len)) {
		unsigned long e = ERR_peek_last_error();

		ERR_clear_error();
		BIO_free(bio);
		if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
			return TPM2_ERROR(FV_ERR_BACKEND,
				"%s is not a TSS2 key file: no '-----BEGIN " TSS2_PEM_NAME
				"-----' line; point key_file at a key made by `flowvault generate` or tpm2-openssl",
				what);
		return damaged(what, "its PEM block cannot be decoded");
	}
	BIO_free(bio);
	if (strcmp(name, TSS2_PEM_NAME) != 0) {
		rc = TPM2_ERROR(FV_ERR_BACKEND,
			"%s holds a '%s' PEM block, not '" TSS2_PEM_NAME
			"'; a software key belongs to the pem provider", what, name);
		goto out;
	}
	p = der;
	tk = d2i_TSSPrivKey(NULL, &p, der_len);
	if (!tk || p != der + der_len) {
		ERR_clear_error();
		rc = damaged(what, "its ASN.1 structure is invalid");
		goto out;
	}
	if (OBJ_obj2txt(oid, sizeof(oid), tk->type, 1) <= 0) {
		rc = damaged(what, "bad type OID");
		goto out;
	}
	if (strcmp(oid, OID_LOADABLE_KEY) != 0) {
		rc = TPM2_ERROR(FV_ERR_BACKEND, "%s has type %s (%s); only loadable keys (%s) are supported",
			what, oid,
			strcmp(oid, OID_IMPORTABLE_KEY) == 0 ? "importable key" :
			strcmp(oid, OID_SEALED_DATA) == 0 ? "sealed data" : "unknown",
			OID_LOADABLE_KEY);
		goto out;
	}
	if (!ASN1_INTEGER_get_uint64(&parent, tk->parent) || parent > UINT32_MAX) {
		ERR_clear_error();
		rc = damaged(what, "bad parent");
		goto out;
	}
	/* tpm2-openssl writes 0 for "the owner hierarchy". */
	if (parent == 0)
		parent = TPM2_OWNER_PARENT;
	if (parent != TPM2_OWNER_PARENT && (parent >> 24) != 0x81) {
		rc = TPM2_ERROR(FV_ERR_BACKEND,
			"%s names parent 0x%08lx; supported parents are persistent handles (0x81xxxxxx) and the owner hierarchy (0x40000001)",
			what, (unsigned long)parent);
		goto out;
	}
	out->parent = (uint32_t)parent;
	out->empty_auth = tk->emptyAuth > 0;

	off = 0;
	if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(tk->pubkey->data, (size_t)tk->pubkey->length, &off,
	                                   &out->pub) != TSS2_RC_SUCCESS ||
	    off != (size_t)tk->pubkey->length) {
		rc = damaged(what, "its public part is not a TPM2B_PUBLIC");
		goto out;
	}
	off = 0;
	if (Tss2_MU_TPM2B_PRIVATE_Unmarshal(tk->privkey->data, (size_t)tk->privkey->length, &off,
	                                    &out->priv) != TSS2_RC_SUCCESS ||
	    off != (size_t)tk->privkey->length || out->priv.size == 0) {
		rc = damaged(what, "its private part is not a TPM2B_PRIVATE");
		goto out;
	}
	rc = FV_OK;
out:
	if (rc != FV_OK)
		memset(out, 0, sizeof(*out));
	TSSPrivKey_free(tk);
	OPENSSL_free(name);
	OPENSSL_free(header);
	OPENSSL_free(der);
	return rc;
}

int tpm2_keyblob_encode(char **pem, size_t *pem_len,
                        const struct tpm2_keyblob *blob)
{
	uint8_t pub[sizeof(TPM2B_PUBLIC)], priv[sizeof(TPM2B_PRIVATE)];
	size_t pub_len = 0, priv_len = 0;
	unsigned char *der = NULL;
	TSSPrivKey *tk;
	BUF_MEM *mem;
	BIO *bio = NULL;
	int der_len, rc = FV_ERR_GENERIC;

	*pem = NULL;
	*pem_len = 0;
	if (Tss2_MU_TPM2B_PUBLIC_Marshal(&blob->pub, pub, sizeof(pub), &pub_len) ||
	    Tss2_MU_TPM2B_PRIVATE_Marshal(&blob->priv, priv, sizeof(priv), &priv_len))
		return TPM2_ERROR(FV_ERR_GENERIC, "cannot marshal the key created by the TPM");

	tk = TSSPrivKey_new();
	if (!tk)
		return FV_ERR_NOMEM;
	tk->type = OBJ_txt2obj(OID_LOADABLE_KEY, 1);
	/* Absent means "an authorization value is needed". */
	tk->emptyAuth = blob->empty_auth ? 0xff : -1;
	if (!tk->type ||
	    !ASN1_INTEGER_set_uint64(tk->parent, blob->parent) ||
	    !ASN1_OCTET_STRING_set(tk->pubkey, pub, (int)pub_len) ||
	    !ASN1_OCTET_STRING_set(tk->privkey, priv, (int)priv_len)) {
		rc = FV_ERR_NOMEM;
		goto out;
	}
	der_len = i2d_TSSPrivKey(tk, &der);
	if (der_len <= 0) {
		rc = TPM2_ERROR(FV_ERR_GENERIC, "cannot encode the TSS2 key file");
		goto out;
	}
	bio = BIO_new(BIO_s_mem());
	if (!bio || !PEM_write_bio(bio, TSS2_PEM_NAME, "", der, der_len)) {
		rc = FV_ERR_NOMEM;
		goto out;
	}
	BIO_get_mem_ptr(bio, &mem);
	*pem = OPENSSL_malloc(mem->length + 1);
	if (!*pem) {
		rc = FV_ERR_NOMEM;
		goto out;
	}
	memcpy(*pem, mem->data, mem->length);
	(*pem)[mem->length] = '\0';
	*pem_len = mem->length;
	rc = FV_OK;
out:
	ERR_clear_error();
	BIO_free(bio);
	OPENSSL_free(der);
	TSSPrivKey_free(tk);
	return rc;
}

int tpm2_keyblob_read(struct tpm2_keyblob *out, const char *path,
                      const char *where)
{
	char what[4096 + 64], *buf = NULL;
	struct stat st;
	size_t got = 0;
	ssize_t n;
	int fd, rc;

	snprintf(what, sizeof(what), "%s.key_file '%s'", where, path);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return TPM2_ERROR(FV_ERR_NOT_FOUND,
				"%s: no such file; create the key with `flowvault generate`", what);
		return TPM2_ERROR(FV_ERR_BACKEND, "%s: cannot open: %s", what, strerror(errno));
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return TPM2_ERROR(FV_ERR_BACKEND, "%s is not a regular file", what);
	}
	if (st.st_size > KEYFILE_MAX) {
		close(fd);
		return TPM2_ERROR(FV_ERR_BACKEND, "%s is not a TSS2 key file (%lld bytes)", what,
		                  (long long)st.st_size);
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return FV_ERR_NOMEM;
	}
	while (got < (size_t)st.st_size) {
		n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (got == 0) {
		free(buf);
		return TPM2_ERROR(FV_ERR_BACKEND,
			"%s is empty; restore it from a backup, or generate a new key", what);
	}
	buf[got] = '\0';
	rc = tpm2_keyblob_decode(out, buf, got, what);
	free(buf);
	return rc;
}
