/* The keys of the core sections of chat.ini.  One row per key; config.c
 * validates files, --set and flag overrides against this table alone. */
#include "config.h"

/* The build passes the installed plugin directory; this fallback only serves
 * builds outside CMake. */
#ifndef CHAT_DEFAULT_PLUGIN_DIR
#define CHAT_DEFAULT_PLUGIN_DIR "/usr/local/lib/chat/plugins"
#endif

const struct chat_cfg_key chat_cfg_schema[] = {
	{ "core", "plugin_dir", CHAT_CFG_PATH, CHAT_DEFAULT_PLUGIN_DIR, 0, 0,
	  "directory searched for plugins named in this file" },
	{ "core", "log_level", CHAT_CFG_LEVEL, "info", 0, 0,
	  "least severe message logged: error, warn, info or debug" },
	{ "core", "max_frame", CHAT_CFG_INT, "65536", 64, 16777216,
	  "largest frame accepted on any connection, in bytes" },

	{ "relay", "transport", CHAT_CFG_NAME, "tcp", 0, 0,
	  "transport plugin the relay listens with" },
	{ "relay", "listen", CHAT_CFG_ADDRESS, "127.0.0.1:7400", 0, 0,
	  "address the relay listens on" },
	{ "relay", "max_clients", CHAT_CFG_INT, "10000", 1, 1000000,
	  "clients connected at once; more are refused" },
	{ "relay", "out_queue_limit", CHAT_CFG_INT, "1048576", 4096, 268435456,
	  "bytes queued for one slow client before it is cut off" },
	{ "relay", "idle_timeout", CHAT_CFG_INT, "0", 0, 86400,
	  "seconds without a frame before a client is dropped (0: never)" },
	{ "relay", "suites", CHAT_CFG_LIST, "", 0, 0,
	  "suites the relay carries, comma-separated (empty: any suite)" },
	{ "relay", "max_rooms", CHAT_CFG_INT, "16", 1, 1024,
	  "rooms one client may be in at once" },
	{ "relay", "max_room_members", CHAT_CFG_INT, "64", 2, 4096,
	  "members of one room" },

	{ "client", "transport", CHAT_CFG_NAME, "tcp", 0, 0,
	  "transport plugin used to reach the relay" },
	{ "client", "connect", CHAT_CFG_ADDRESS, "127.0.0.1:7400", 0, 0,
	  "address of the relay" },
	{ "client", "user", CHAT_CFG_STRING, "", 0, 0,
	  "name shown to the other participants" },
	{ "client", "connect_timeout", CHAT_CFG_INT, "5000", 1, 600000,
	  "milliseconds" },
	{ "client", "suites", CHAT_CFG_LIST, "aescbc-hmac, rc4dh", 0, 0,
	  "suites you allow, most preferred first, comma-separated" },
	{ "client", "directory", CHAT_CFG_PATH, "", 0, 0,
	  "JSON file of contacts and shared passwords (for suites that need a secret)" },
	{ "client", "max_message", CHAT_CFG_INT, "61440", 1, 1048576,
	  "largest message you can send or receive, in bytes of UTF-8 text" },

	{ "peer", "transport", CHAT_CFG_NAME, "tcp", 0, 0,
	  "transport plugin for direct peer-to-peer sessions" },
	{ "peer", "listen", CHAT_CFG_ADDRESS, "127.0.0.1:7500", 0, 0,
	  "address a peer listens on for direct sessions" },
	{ "peer", "user", CHAT_CFG_STRING, "", 0, 0,
	  "your username (asked for when empty)" },
	{ "peer", "directory", CHAT_CFG_PATH, "", 0, 0,
	  "JSON contacts file: username, ip, port, password (read again when it changes)" },
	{ "peer", "suite", CHAT_CFG_NAME, "aescbc-hmac", 0, 0,
	  "cipher suite messages are sent with and the only one accepted" },
	{ "peer", "timeout", CHAT_CFG_INT, "10000", 100, 600000,
	  "milliseconds one message exchange (connect to acknowledgement) may take" },
	{ "peer", "log", CHAT_CFG_PATH, "", 0, 0,
	  "encrypted message log (empty: chat-peer-USER.log in the current directory)" },
	{ "peer", "log_iterations", CHAT_CFG_INT, "200000", 1000, 10000000,
	  "PBKDF2 iterations for the key of a new message log" },

	{ NULL, NULL, 0, NULL, 0, 0, NULL },
};
