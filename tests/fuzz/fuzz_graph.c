/*
 * Graph API answers, without sockets: the first byte picks what to parse,
 * the rest is what a server could send. This file includes the Graph client's
 * sources to reach their static parsers; CMakeLists.txt leaves those two
 * files out of this target's core sources.
 *   0: an answer body with an HTTP status (error envelope, malformed JSON)
 *   1: an X-Business-Use-Case-Usage header
 *   2: a page of a WABA's phone-number listing (paging)
 *   3: a read-back of the stored key, in both shapes
 *   4: the answer to an upload
 */
#include "../../core/graph_http.c"
#include "../../core/graph.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A fixed RSA-2048 SPKI to compare read-back keys against. */
static unsigned char our_der[512];
static size_t our_der_len;

static void setup(void)
{
	EVP_PKEY *pkey = EVP_RSA_gen(2048);
	unsigned char *p = our_der;
	int n = pkey ? i2d_PUBKEY(pkey, NULL) : -1;

	if (n <= 0 || (size_t)n > sizeof(our_der) || i2d_PUBKEY(pkey, &p) != n)
		abort();
	our_der_len = (size_t)n;
	EVP_PKEY_free(pkey);
	fv_log_set(NULL, NULL, -1);
}

static json_object *parse_object(const char *text, size_t len)
{
	json_tokener *tok = json_tokener_new();
	json_object *obj = tok ? json_tokener_parse_ex(tok, text, (int)len) : NULL;

	json_tokener_free(tok);
	if (obj && !json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		obj = NULL;
	}
	return obj;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fv_graph graph = { 0 };
	char *text;
	size_t len;

	if (size < 1)
		return 0;
	if (!our_der_len)
		setup();
	len = size - 1;
	text = malloc(len + 1);
	if (!text)
		return 0;
	memcpy(text, data + 1, len);
	text[len] = '\0';
	graph.origin = (char *)"https://graph.example/";

	switch (data[0] % 5) {
	case 0: {
		struct graph_transfer t = { 0 };
		struct classification c = { 0 };
		long http = len ? 100 + (unsigned char)text[0] % 500 : 200;

		t.answer = text;
		t.answer_len = len;
		classify_answer(&c, http, &t, "https://graph.example/v25.0/1/x?fields=y");
		if (c.verdict != VERDICT_OK && !c.message[0])
			__builtin_trap();
		json_object_put(c.answer);
		free(c.fbtrace_id);
		break;
	}
	case 1: {
		char business[128];
		double wait = usage_wait_seconds(text, business, sizeof(business));

		if (wait < 0 && wait == wait)
			__builtin_trap();
		break;
	}
	case 2: {
		struct listing l = { &graph, "1", NULL, 0, 0, 0 };
		struct graph_job job = { 0 };
		json_object *answer = parse_object(text, len);
		size_t i;

		job.arg = &l;
		if (answer)
			(void)listing_page(&job, answer);
		json_object_put(answer);
		for (i = 0; i < l.count; i++)
			free(l.ids[i]);
		free(l.ids);
		graph_job_clear(&job);
		break;
	}
	case 3:
	case 4: {
		fv_graph_result result = { 0 };
		struct number_job nj = { 0 };
		json_object *answer = parse_object(text, len);

		result.phone_number_id = "1";
		nj.result = &result;
		nj.der = our_der;
		nj.der_len = our_der_len;
		nj.get_url = (char *)"https://graph.example/v25.0/1/whatsapp_business_encryption";
		if (answer)
			(void)(data[0] % 5 == 3 ? number_read(&nj.job, answer)
			                        : number_uploaded(&nj.job, answer));
		json_object_put(answer);
		free((char *)result.status_text);
		graph_job_clear(&nj.job);
		break;
	}
	}
	free(text);
	return 0;
}
