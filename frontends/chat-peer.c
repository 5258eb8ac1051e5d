/* chat-peer: direct peer-to-peer messages with no relay.  This first cut
 * validates configuration and plugins; the messaging itself needs a cipher
 * suite with mutual authentication and is not in this version. */
#include <stdio.h>

#include "program.h"

int main(int argc, char **argv)
{
	static const struct chat_prog_flag flags[] = {
		{ "listen", 'l', "peer", "listen", "ADDR", "address to listen on, host:port or [v6]:port" },
		{ NULL, 0, NULL, NULL, NULL, NULL },
	};
	struct chat_prog p = {
		.name = "chat-peer",
		.section = "peer",
		.summary = "Peer-to-peer node of the chat framework: one authenticated connection per message.",
		.usage_tail = "This version supports --help, --version, --list-plugins and --check-config only.\n",
		.flags = flags,
	};
	int status = chat_prog_start(&p, argc, argv);

	if (status < 0) {
		chat_prog_error(&p, "peer-to-peer messaging is not available in this version "
		                "(it needs the aescbc-hmac suite); use --check-config or --list-plugins");
		status = 2;
	}
	chat_prog_finish(&p);
	return status;
}
