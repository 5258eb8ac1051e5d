#include <chat/error.h>

static const char *const texts[] = {
	[0] = "success",
	[-CHAT_ERR_NOMEM] = "out of memory",
	[-CHAT_ERR_INVALID] = "invalid argument",
	[-CHAT_ERR_AGAIN] = "operation would block",
	[-CHAT_ERR_CLOSED] = "connection closed by peer",
	[-CHAT_ERR_IO] = "input/output error",
	[-CHAT_ERR_NOSPACE] = "buffer or queue full",
	[-CHAT_ERR_TOO_BIG] = "message too big",
	[-CHAT_ERR_MALFORMED] = "malformed input",
	[-CHAT_ERR_AUTH] = "authentication failed",
	[-CHAT_ERR_INTEGRITY] = "integrity check failed (message modified)",
	[-CHAT_ERR_REPLAY] = "replayed or out-of-order message",
	[-CHAT_ERR_STALE] = "timestamp outside the accepted window",
	[-CHAT_ERR_STATE] = "message out of place in the protocol",
	[-CHAT_ERR_FAILED] = "session failed earlier",
	[-CHAT_ERR_CONFIG] = "invalid configuration",
	[-CHAT_ERR_ADDRINUSE] = "address already in use",
	[-CHAT_ERR_REFUSED] = "connection refused",
	[-CHAT_ERR_RESOLVE] = "host name cannot be resolved",
	[-CHAT_ERR_TIMEOUT] = "timed out",
	[-CHAT_ERR_INPROGRESS] = "operation in progress",
	[-CHAT_ERR_UNSUPPORTED] = "operation not supported",
	[-CHAT_ERR_RANDOM] = "random number source failed",
	[-CHAT_ERR_NOTFOUND] = "not found",
	[-CHAT_ERR_ABI] = "plugin ABI version mismatch",
	[-CHAT_ERR_PLUGIN] = "plugin cannot be loaded",
	[-CHAT_ERR_PEER_VALUE] = "peer sent an invalid public value",
	[-CHAT_ERR_NOSECRET] = "suite needs a shared secret but none is configured",
	[-CHAT_ERR_ADDRESS] = "malformed address",
	[-CHAT_ERR_UNREACHABLE] = "network or host unreachable",
	[-CHAT_ERR_RESET] = "connection reset by peer",
	[-CHAT_ERR_TLS] = "TLS handshake failed",
	[-CHAT_ERR_CERT] = "the peer's certificate or key is not trusted",
};

const char *chat_strerror(int err)
{
	if (err > 0 || err < CHAT_ERR_LAST || !texts[-err])
		return "unknown error";
	return texts[-err];
}
