/* The xor-demo suite through its ops (handshake, open, session_save/load,
 * fingerprint): see suite_harness.h for the input.  The suite has no
 * checksum or MAC to repair: a changed message is changed bytes. */
#define SUITE_NAME "xor-demo"
#include "suite_harness.h"

static int suite_fix_hs(struct fuzz_buf *msg)
{
	(void)msg;
	return 0;
}

static void suite_fix_sealed(void *sender, int sender_role, struct fuzz_in *in,
                             struct fuzz_buf *msg)
{
	(void)sender;
	(void)sender_role;
	mutate(in, msg);
}
