/* chat-client against a relay that does not know the user's SCRAM verifier
 * (an impostor, or a man in the middle): it can send a plausible challenge,
 * but not the server signature.  The client must refuse it (error
 * relay-auth, exit 1) and never take LOGGED_IN without the proof.  The fake
 * relay is this program, on 127.0.0.1. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "paths.h"
#include "relayproc.h"
#include "testutils.h"

enum { BAD_SIGNATURE, NO_PROOF, GARBAGE_CHALLENGE };

static int listen_any(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 4) ||
	    getsockname(fd, (struct sockaddr *)&a, &len))
		return -1;
	*port = ntohs(a.sin_port);
	return fd;
}

/* Run chat-client as alice against the fake relay; returns its exit status,
 * its stdout in out. */
static int run_client(int mode, char *out, size_t cap)
{
	char addr[64], pwfile[] = "/tmp/chat-fake-pw.XXXXXX";
	int port, lfd = listen_any(&port), pipefd[2], pwfd = mkstemp(pwfile);
	struct chat_msg m;

	if (lfd < 0 || pwfd < 0 || pipe2(pipefd, O_CLOEXEC))
		return -1;
	if (write(pwfd, "alice password\n", 15) != 15)
		return -1;
	close(pwfd);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(pipefd[1], 1);
		int devnull = open("/dev/null", O_RDWR);
		dup2(devnull, 0);
		execl(CHAT_TEST_BIN_DIR "/chat-client", "chat-client", "--config",
		      CHAT_TEST_SOURCE_DIR "/chat.ini", "--set", "core.plugin_dir=" CHAT_TEST_PLUGIN_DIR,
		      "--set", "client.data_dir=", "--set", "client.transport=tcp", "--connect", addr, "-u", "alice", "--suites", "rc4dh",
		      "--password-file", pwfile, (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);
	struct timeval tv = { .tv_sec = 10 };
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	int c = poll(&p, 1, 10000) == 1 ? accept(lfd, NULL, NULL) : -1;
	if (c >= 0) {
		setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (!expect_type(c, CHAT_MSG_HELLO, &m)) {
			begin(CHAT_MSG_WELCOME);
			chat_put_u8(&wb, CHAT_PROTO_VERSION);
			chat_put_u8(&wb, 0);
			send_msg(c);
		}
		if (!expect_type(c, CHAT_MSG_AUTH, &m)) {
			char nonce[128] = "", first[CHAT_TEXT_MAX + 1];
			const char *r = strstr(m.text, "r=");
			snprintf(nonce, sizeof(nonce), "%s", r ? r + 2 : "x");
			if (mode == NO_PROOF) {
				begin(CHAT_MSG_LOGGED_IN); /* "welcome", with no proof at all */
				chat_put_str8(&wb, "alice");
				chat_put_u8(&wb, 1);
				chat_put_u64(&wb, 0);
			} else {
				/* a challenge with a salt the impostor made up */
				snprintf(first, sizeof(first), mode == GARBAGE_CHALLENGE ? "r=%s,i=x" :
				         "r=%sIMPOSTOR,s=c2FsdHNhbHRzYWx0c2FsdA==,i=4096", nonce);
				begin(CHAT_MSG_AUTH_CHALLENGE);
				chat_put_str16(&wb, first);
			}
			send_msg(c);
		}
		if (mode == BAD_SIGNATURE && !expect_type(c, CHAT_MSG_AUTH_FINAL, &m)) {
			begin(CHAT_MSG_AUTH_OK);
			chat_put_u8(&wb, CHAT_AUTH_LOGIN);
			chat_put_str16(&wb, "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
			send_msg(c);
			begin(CHAT_MSG_LOGGED_IN);
			chat_put_str8(&wb, "alice");
			chat_put_u8(&wb, 1);
			chat_put_u64(&wb, 0);
			send_msg(c);
		}
	}
	size_t n = 0;
	ssize_t got;
	while (n + 1 < cap && (got = read(pipefd[0], out + n, cap - 1 - n)) > 0)
		n += (size_t)got;
	out[n] = '\0';
	int status;
	waitpid(pid, &status, 0);
	if (c >= 0)
		close(c);
	close(lfd);
	close(pipefd[0]);
	unlink(pwfile);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

int main(void)
{
	char out[8192];

	signal(SIGPIPE, SIG_IGN);
	chat_wbuf_init(&wb, 1 << 16);
	CHECK_EQ_INT(run_client(BAD_SIGNATURE, out, sizeof(out)), 1);
	CHECK_STR_CONTAINS(out, "error relay-auth");
	CHECK(strstr(out, "logged-in") == NULL);
	CHECK_EQ_INT(run_client(NO_PROOF, out, sizeof(out)), 1);
	CHECK_STR_CONTAINS(out, "error relay-auth");
	CHECK(strstr(out, "logged-in") == NULL);
	CHECK_EQ_INT(run_client(GARBAGE_CHALLENGE, out, sizeof(out)), 1);
	CHECK_STR_CONTAINS(out, "error relay-auth");
	chat_wbuf_free(&wb);
	return test_done("e2e_fake_relay");
}
