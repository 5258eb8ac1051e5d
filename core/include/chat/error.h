/* One flat list of error codes shared by the core and every plugin.
 * 0 is success; every error is negative.  chat_strerror() lives in the core
 * (plugins return codes; the core turns them into text). */
#ifndef CHAT_ERROR_H
#define CHAT_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

enum chat_err {
	CHAT_OK = 0,
	CHAT_ERR_NOMEM = -1,        /* out of memory */
	CHAT_ERR_INVALID = -2,      /* invalid argument */
	CHAT_ERR_AGAIN = -3,        /* would block: retry when the fd is ready */
	CHAT_ERR_CLOSED = -4,       /* peer closed the connection */
	CHAT_ERR_IO = -5,           /* I/O error (errno kept by the caller) */
	CHAT_ERR_NOSPACE = -6,      /* output buffer or queue too small */
	CHAT_ERR_TOO_BIG = -7,      /* frame or message over the limit */
	CHAT_ERR_MALFORMED = -8,    /* input does not parse */
	CHAT_ERR_AUTH = -9,         /* authentication failed */
	CHAT_ERR_INTEGRITY = -10,   /* MAC or checksum mismatch */
	CHAT_ERR_REPLAY = -11,      /* repeated or out-of-order sequence number */
	CHAT_ERR_STALE = -12,       /* timestamp outside the accepted window */
	CHAT_ERR_STATE = -13,       /* message out of place for the state machine */
	CHAT_ERR_FAILED = -14,      /* the object failed earlier and stays failed */
	CHAT_ERR_CONFIG = -15,      /* bad configuration value */
	CHAT_ERR_ADDRINUSE = -16,   /* address already in use */
	CHAT_ERR_REFUSED = -17,     /* connection refused */
	CHAT_ERR_RESOLVE = -18,     /* host name cannot be resolved */
	CHAT_ERR_TIMEOUT = -19,     /* timed out */
	CHAT_ERR_INPROGRESS = -20,  /* non-blocking connect still in progress */
	CHAT_ERR_UNSUPPORTED = -21, /* operation not provided */
	CHAT_ERR_RANDOM = -22,      /* random source failed */
	CHAT_ERR_NOTFOUND = -23,    /* no such file, plugin, key or user */
	CHAT_ERR_ABI = -24,         /* plugin ABI mismatch */
	CHAT_ERR_PLUGIN = -25,      /* plugin cannot be loaded or is incomplete */
	CHAT_ERR_PEER_VALUE = -26,  /* peer sent an invalid public value */
	CHAT_ERR_NOSECRET = -27,    /* the suite needs a shared secret; none given */
	CHAT_ERR_ADDRESS = -28,     /* malformed address */
	CHAT_ERR_UNREACHABLE = -29, /* network or host unreachable */
	CHAT_ERR_RESET = -30,       /* connection reset by peer */
	CHAT_ERR_TLS = -31,         /* TLS handshake failed (protocol, version, cipher, not TLS) */
	CHAT_ERR_CERT = -32,        /* the peer's certificate or key is not trusted */
};
#define CHAT_ERR_LAST CHAT_ERR_CERT

/* Static text for an error code; never NULL (unknown codes get a generic text). */
const char *chat_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
