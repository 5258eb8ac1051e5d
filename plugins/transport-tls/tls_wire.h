/* What a transport-tls link is, for anything that speaks it without the
 * plugin (bench/loadgen.c's TLS clients): one definition, so the bench
 * negotiates exactly what chat-client does.  No dependencies. */
#ifndef CHAT_TLS_WIRE_H
#define CHAT_TLS_WIRE_H

/* TLS 1.3 only, or 1.3 and 1.2 with ECDHE and AEAD ciphers; no SHA-1
 * signatures.  %SERVER_PRECEDENCE: a relay's order wins. */
#define TLS_PRIO_COMMON ":+AES-256-GCM:+CHACHA20-POLY1305:+AES-128-GCM:+AEAD:+SIGN-ALL:" \
	"-SIGN-RSA-SHA1:-SIGN-ECDSA-SHA1:+GROUP-EC-ALL:+ECDHE-ECDSA:+ECDHE-RSA:+CTYPE-X509:" \
	"%SERVER_PRECEDENCE"
#define TLS_PRIO_13 "NONE:+VERS-TLS1.3" TLS_PRIO_COMMON
#define TLS_PRIO_12 "NONE:+VERS-TLS1.3:+VERS-TLS1.2" TLS_PRIO_COMMON

#define TLS_ALPN "chat/1"
#define TLS_FP_SIZE 72 /* "sha256:" + 64 hex digits + NUL */

/* What a relay with no configured certificate keeps in its state directory. */
#define TLS_KEY_FILE "tls-key.pem"
#define TLS_CERT_FILE "tls-cert.pem"

#endif
