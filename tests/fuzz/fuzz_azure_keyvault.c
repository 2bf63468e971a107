/*
 * Key Vault answers, without sockets: the first byte picks what to parse,
 * the rest is what the vault (or a token service) could send. This file
 * includes the azure-keyvault plugin's sources to reach their static parsers.
 *   0: a bearer challenge (WWW-Authenticate of a 401)
 *   1: Get Key (the key bundle and its JWK)
 *   2: Decrypt (base64url value)
 *   3: a token answer (access_token, expires_in as number or string)
 *   4: an error answer, of Key Vault and of a token service
 */
#include "../../plugins/azure-keyvault/azure.c"
#include "../../plugins/azure-keyvault/auth.c"
#include "fuzz_cloud2_host.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fv_instance inst = { 0 };
	struct fv_pkey key = { 0 };
	struct cloud_response resp;
	struct cloud_secret token = { NULL, 0 };
	unsigned char out[512];
	size_t out_len = sizeof(out), n;
	char code[64], message[512];
	int64_t lifetime = 0;
	const struct cloud_token_source src = {
		.location = "keys.fuzz", .source = "fuzz", .token_name = "token", .fix = "check"
	};

	if (size < 1)
		return 0;
	az_host = &fuzz_host;
	inst.location = "keys.fuzz";
	inst.vault_url = "https://fuzz.vault.azure.net";
	inst.vault_host = "fuzz.vault.azure.net";
	inst.key_name = "flows";
	inst.auth.kind = data[0] & 0x80 ? AZ_AUTH_CLIENT_SECRET : AZ_AUTH_MANAGED_IDENTITY;
	inst.auth.tenant_id = "tenant";
	snprintf(inst.auth.source, sizeof(inst.auth.source), "fuzz");
	key.inst = &inst;
	fuzz_response(&resp, 200, data + 1, size - 1);
	switch (data[0] % 5) {
	case 0:
		resp.status = 401;
		n = size - 1 < sizeof(resp.www_authenticate) - 1 ? size - 1
		                                                  : sizeof(resp.www_authenticate) - 1;
		memcpy(resp.www_authenticate, data + 1, n);
		resp.www_authenticate[n] = '\0';
		take_challenge(&inst, &resp);
		break;
	case 1:
		key_from_bundle(&inst, &key, &resp);
		free(key.spki);
		free(key.kid);
		free(key.decrypt_url);
		break;
	case 2:
		key.kid = "https://fuzz.vault.azure.net/keys/flows/0";
		plaintext_from(&key, &resp, out, &out_len);
		break;
	case 3:
		if (cloud_oauth_answer(&fuzz_host, &src, &resp, &token, &lifetime) == FV_OK)
			cloud_secret_clear(&fuzz_host, &token);
		break;
	default:
		resp.status = 403;
		vault_error(&resp, code, sizeof(code), message, sizeof(message));
		cloud_oauth_answer(&fuzz_host, &src, &resp, &token, &lifetime);
		break;
	}
	cloud_response_free(&resp);
	return 0;
}
