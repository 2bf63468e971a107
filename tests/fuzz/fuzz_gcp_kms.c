/*
 * Cloud KMS answers, without sockets: the first byte picks what to parse,
 * the rest is what the service (or a token service) could send. This file
 * includes the gcp-kms plugin's sources to reach their static parsers.
 *   0: getPublicKey (pem, pemCrc32c, name, algorithm)
 *   1: asymmetricDecrypt (plaintext and its CRC32C, verifiedCiphertextCrc32c)
 *   2: a token answer (access_token, expires_in)
 *   3: an error answer, of Cloud KMS and of a token service
 */
#include "../../plugins/gcp-kms/gcp.c"
#include "../../plugins/gcp-kms/auth.c"
#include "fuzz_cloud2_host.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fv_instance inst = { 0 };
	struct fv_pkey key = { 0 };
	struct cloud_response resp;
	struct cloud_secret token = { NULL, 0 };
	unsigned char out[512];
	size_t out_len = sizeof(out);
	char status[64], message[512];
	int64_t lifetime = 0;
	const struct cloud_token_source src = {
		.location = "keys.fuzz", .source = "fuzz", .token_name = "token", .fix = "check"
	};

	if (size < 1)
		return 0;
	gcp_host = &fuzz_host;
	inst.location = "keys.fuzz";
	inst.version_name = "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1";
	inst.endpoint = "https://cloudkms.googleapis.com";
	snprintf(inst.auth.source, sizeof(inst.auth.source), "fuzz");
	key.inst = &inst;
	fuzz_response(&resp, 200, data + 1, size - 1);
	switch (data[0] % 4) {
	case 0:
		public_key_from(&inst, &key, &resp);
		free(key.spki);
		break;
	case 1:
		plaintext_from(&key, &resp, out, &out_len);
		break;
	case 2:
		if (cloud_oauth_answer(&fuzz_host, &src, &resp, &token, &lifetime) == FV_OK)
			cloud_secret_clear(&fuzz_host, &token);
		break;
	default:
		resp.status = 400;
		google_error(&resp, status, sizeof(status), message, sizeof(message));
		cloud_oauth_answer(&fuzz_host, &src, &resp, &token, &lifetime);
		break;
	}
	cloud_response_free(&resp);
	return 0;
}
