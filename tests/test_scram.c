/* SCRAM-SHA-256 against the example exchange of RFC 7677 section 3, both
 * roles, and the failures: wrong password, tampered messages, a server that
 * cannot prove itself, malformed input. */
#include <string.h>

#include <chat/error.h>

#include "scram.h"
#include "testutils.h"

/* RFC 7677 section 3: user "user", password "pencil", i=4096. */
#define CLIENT_NONCE "rOprNGfwEbeRWgbNEkqO"
#define SERVER_NONCE_PART "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define CLIENT_FIRST "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define SERVER_FIRST "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define CLIENT_FINAL "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

static const uint8_t salt[16] = { /* base64 W22ZaJ0SNY7soEsUEjb6gQ== */
	0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e, 0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81
};

static void test_rfc7677_client(void)
{
	struct chat_scram_client c;
	char out[512];

	CHECK_EQ_INT(chat_scram_client_first(&c, "user", CLIENT_NONCE, NULL, sizeof(out), out), CHAT_OK);
	CHECK(strcmp(out, CLIENT_FIRST) == 0);
	CHECK_EQ_INT(chat_scram_client_final(&c, SERVER_FIRST, 6, "pencil", sizeof(out), out), CHAT_OK);
	CHECK(strcmp(out, CLIENT_FINAL) == 0);
	CHECK_EQ_INT(chat_scram_client_verify(&c, SERVER_FINAL), CHAT_OK);
	chat_scram_client_wipe(&c);
}

static void test_rfc7677_server(void)
{
	struct chat_scram_server s;
	struct chat_scram_verifier v;
	char out[512];

	chat_scram_make_verifier(6, "pencil", sizeof(salt), salt, 4096, &v);
	CHECK_EQ_INT(chat_scram_server_first_in(&s, CLIENT_FIRST, 0, NULL), CHAT_OK);
	CHECK(strcmp(s.user, "user") == 0);
	CHECK_EQ_INT(chat_scram_server_first(&s, &v, SERVER_NONCE_PART, sizeof(out), out), CHAT_OK);
	CHECK(strcmp(out, SERVER_FIRST) == 0);
	CHECK_EQ_INT(chat_scram_server_final(&s, CLIENT_FINAL, sizeof(out), out), CHAT_OK);
	CHECK(strcmp(out, SERVER_FINAL) == 0);
	chat_scram_server_wipe(&s);
}

static void test_refusals(void)
{
	struct chat_scram_client c;
	struct chat_scram_server s;
	struct chat_scram_verifier v;
	char out[512], final[512];

	/* Wrong password: the server refuses the proof. */
	chat_scram_make_verifier(6, "pencil", sizeof(salt), salt, 4096, &v);
	CHECK_EQ_INT(chat_scram_client_first(&c, "user", CLIENT_NONCE, NULL, sizeof(out), out), CHAT_OK);
	CHECK_EQ_INT(chat_scram_server_first_in(&s, out, 0, NULL), CHAT_OK);
	CHECK_EQ_INT(chat_scram_server_first(&s, &v, SERVER_NONCE_PART, sizeof(out), out), CHAT_OK);
	CHECK_EQ_INT(chat_scram_client_final(&c, out, 6, "pencim", sizeof(final), final), CHAT_OK);
	CHECK_EQ_INT(chat_scram_server_final(&s, final, sizeof(out), out), CHAT_ERR_AUTH);

	/* A server that does not know the verifier cannot produce server-final. */
	CHECK_EQ_INT(chat_scram_client_first(&c, "user", CLIENT_NONCE, NULL, sizeof(out), out), CHAT_OK);
	CHECK_EQ_INT(chat_scram_client_final(&c, SERVER_FIRST, 6, "pencil", sizeof(out), out), CHAT_OK);
	CHECK_EQ_INT(chat_scram_client_verify(&c, "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), CHAT_ERR_AUTH);
	CHECK_EQ_INT(chat_scram_client_first(&c, "user", CLIENT_NONCE, NULL, sizeof(out), out), CHAT_OK);
	CHECK_EQ_INT(chat_scram_client_final(&c, SERVER_FIRST, 6, "pencil", sizeof(out), out), CHAT_OK);
	CHECK_EQ_INT(chat_scram_client_verify(&c, "e=invalid-proof"), CHAT_ERR_AUTH);

	/* The server nonce must extend the client's; too few iterations refused. */
	CHECK_EQ_INT(chat_scram_client_first(&c, "user", CLIENT_NONCE, NULL, sizeof(out), out), CHAT_OK);
	CHECK_EQ_INT(chat_scram_client_final(&c, "r=somebodyelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", 6,
	                                     "pencil", sizeof(out), out), CHAT_ERR_AUTH);
	CHECK_EQ_INT(chat_scram_client_first(&c, "user", CLIENT_NONCE, NULL, sizeof(out), out), CHAT_OK);
	CHECK_EQ_INT(chat_scram_client_final(&c, "r=" CLIENT_NONCE "x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1", 6,
	                                     "pencil", sizeof(out), out), CHAT_ERR_MALFORMED);
	CHECK_EQ_INT(chat_scram_client_first(&c, "user", CLIENT_NONCE, NULL, sizeof(out), out), CHAT_OK);
	CHECK_EQ_INT(chat_scram_client_final(&c, "r=" CLIENT_NONCE "x,s=!!!,i=4096", 6,
	                                     "pencil", sizeof(out), out), CHAT_ERR_MALFORMED);

	/* Tampered client-final (another nonce, or channel binding). */
	const char *bad[] = {
		"c=biws,r=rOprNGfwEbeRWgbNEkqOXXXX,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		"c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVR=",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_EQ_INT(chat_scram_server_first_in(&s, CLIENT_FIRST, 0, NULL), CHAT_OK);
		CHECK_EQ_INT(chat_scram_server_first(&s, &v, SERVER_NONCE_PART, sizeof(out), out), CHAT_OK);
		int rc = chat_scram_server_final(&s, bad[i], sizeof(out), out);
		CHECK(rc == CHAT_ERR_AUTH || rc == CHAT_ERR_MALFORMED);
	}
	/* Malformed client-first. */
	CHECK_EQ_INT(chat_scram_server_first_in(&s, "a,,n=user,r=abc", 0, NULL), CHAT_ERR_MALFORMED);
	CHECK_EQ_INT(chat_scram_server_first_in(&s, "n,a=admin,n=user,r=abc", 0, NULL), CHAT_ERR_MALFORMED);
	CHECK_EQ_INT(chat_scram_server_first_in(&s, "n,,n=user", 0, NULL), CHAT_ERR_MALFORMED);
	CHECK_EQ_INT(chat_scram_server_first_in(&s, "n,,n=us=41r,r=abc", 0, NULL), CHAT_ERR_MALFORMED);
	CHECK_EQ_INT(chat_scram_server_first_in(&s, "n,,n=,r=abc", 0, NULL), CHAT_ERR_MALFORMED);
	/* Username escaping round-trips. */
	CHECK_EQ_INT(chat_scram_client_first(&c, "a,b=c", "nonce", NULL, sizeof(out), out), CHAT_OK);
	CHECK(strcmp(out, "n,,n=a=2Cb=3Dc,r=nonce") == 0);
	CHECK_EQ_INT(chat_scram_server_first_in(&s, out, 0, NULL), CHAT_OK);
	CHECK(strcmp(s.user, "a,b=c") == 0);
	/* Out of order. */
	struct chat_scram_client fresh = { 0 };
	CHECK_EQ_INT(chat_scram_client_verify(&fresh, SERVER_FINAL), CHAT_ERR_STATE);
}

/* One whole exchange; returns the server's verdict on client-final. */
static int exchange(const struct chat_scram_cb *client_cb, size_t link_len, const uint8_t *link,
                    int *first_rc, const char **why)
{
	struct chat_scram_client c;
	struct chat_scram_server s;
	struct chat_scram_verifier v;
	char out[512], final[512];
	int rc;

	chat_scram_make_verifier(6, "pencil", sizeof(salt), salt, 4096, &v);
	CHECK_EQ_INT(chat_scram_client_first(&c, "user", CLIENT_NONCE, client_cb, sizeof(out), out), CHAT_OK);
	*first_rc = chat_scram_server_first_in(&s, out, link_len, link);
	*why = s.why;
	if (*first_rc != CHAT_OK)
		return *first_rc;
	CHECK_EQ_INT(chat_scram_server_first(&s, &v, SERVER_NONCE_PART, sizeof(out), out), CHAT_OK);
	CHECK_EQ_INT(chat_scram_client_final(&c, out, 6, "pencil", sizeof(final), final), CHAT_OK);
	rc = chat_scram_server_final(&s, final, sizeof(out), out);
	*why = s.why;
	if (rc == CHAT_OK)
		CHECK_EQ_INT(chat_scram_client_verify(&c, out), CHAT_OK);
	return rc;
}

/* SCRAM-SHA-256-PLUS with tls-exporter (RFC 5802 sections 6-7, RFC 9266):
 * the GS2 header and c= as the RFCs spell them, and every rule: the same
 * channel works, another channel (a TLS-terminating proxy) fails, 'p' over
 * a link without binding fails, 'y' over a link with binding is a downgrade,
 * 'n' and 'y' over a plain link work. */
static void test_channel_binding(void)
{
	struct chat_scram_client c;
	struct chat_scram_cb cb = { .flag = 'p', .len = 32 };
	uint8_t other[32];
	char out[512];
	const char *why;
	int first;

	for (size_t i = 0; i < 32; i++) {
		cb.data[i] = (uint8_t)i;
		other[i] = (uint8_t)(i ^ 0x80);
	}
	CHECK_EQ_INT(chat_scram_client_first(&c, "user", CLIENT_NONCE, &cb, sizeof(out), out), CHAT_OK);
	CHECK(strcmp(out, "p=tls-exporter,,n=user,r=" CLIENT_NONCE) == 0);
	/* c= is base64("p=tls-exporter,," || 00 01 .. 1f). */
	CHECK_EQ_INT(chat_scram_client_final(&c, SERVER_FIRST, 6, "pencil", sizeof(out), out), CHAT_OK);
	CHECK(strncmp(out, "c=cD10bHMtZXhwb3J0ZXIsLAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f,r=", 69) == 0);

	CHECK_EQ_INT(exchange(&cb, 32, cb.data, &first, &why), CHAT_OK);
	CHECK_EQ_INT(exchange(&cb, 32, other, &first, &why), CHAT_ERR_AUTH);
	CHECK(first == CHAT_OK && why && strstr(why, "TLS-intercepting proxy"));
	CHECK_EQ_INT(exchange(&cb, 0, NULL, &first, &why), CHAT_ERR_AUTH);
	CHECK(first == CHAT_ERR_AUTH && why && strstr(why, "plain TCP here"));
	struct chat_scram_cb y = { .flag = 'y' }, n = { .flag = 'n' };
	CHECK_EQ_INT(exchange(&y, 32, cb.data, &first, &why), CHAT_ERR_AUTH);
	CHECK(first == CHAT_ERR_AUTH && why && strstr(why, "downgrade"));
	CHECK_EQ_INT(exchange(&y, 0, NULL, &first, &why), CHAT_OK);
	CHECK_EQ_INT(exchange(&n, 0, NULL, &first, &why), CHAT_OK);
	CHECK_EQ_INT(exchange(&n, 32, cb.data, &first, &why), CHAT_OK); /* a client without binding */
	/* A proxy that rewrites 'p' to 'n' in client-first cannot fix c=. */
	{
		struct chat_scram_client cc;
		struct chat_scram_server s;
		struct chat_scram_verifier v;
		char first_msg[512], final[512];
		chat_scram_make_verifier(6, "pencil", sizeof(salt), salt, 4096, &v);
		CHECK_EQ_INT(chat_scram_client_first(&cc, "user", CLIENT_NONCE, &cb, sizeof(first_msg), first_msg), CHAT_OK);
		CHECK(strcmp(first_msg, "p=tls-exporter,,n=user,r=" CLIENT_NONCE) == 0);
		CHECK_EQ_INT(chat_scram_server_first_in(&s, "n,,n=user,r=" CLIENT_NONCE, 32, cb.data), CHAT_OK);
		CHECK_EQ_INT(chat_scram_server_first(&s, &v, SERVER_NONCE_PART, sizeof(out), out), CHAT_OK);
		CHECK_EQ_INT(chat_scram_client_final(&cc, out, 6, "pencil", sizeof(final), final), CHAT_OK);
		CHECK_EQ_INT(chat_scram_server_final(&s, final, sizeof(out), out), CHAT_ERR_AUTH);
	}
	/* Another binding type is refused by name; binding data too long is invalid. */
	struct chat_scram_server s;
	CHECK_EQ_INT(chat_scram_server_first_in(&s, "p=tls-unique,,n=user,r=abc", 32, cb.data), CHAT_ERR_AUTH);
	CHECK(s.why && strstr(s.why, "other than tls-exporter"));
	struct chat_scram_cb huge = { .flag = 'p', .len = CHAT_SCRAM_CB_MAX + 1 };
	CHECK_EQ_INT(chat_scram_client_first(&c, "user", CLIENT_NONCE, &huge, sizeof(out), out), CHAT_ERR_INVALID);
}

int main(void)
{
	test_rfc7677_client();
	test_rfc7677_server();
	test_refusals();
	test_channel_binding();
	return test_done("test_scram");
}
