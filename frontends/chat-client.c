/* chat-client: the terminal client.  This first cut speaks relay protocol 0
 * (echo): each line read from stdin is sent as one frame and each frame the
 * relay returns is printed as "< LINE".  At end of input it waits for the
 * echoes of everything it sent, then exits 0.  If the relay goes away it says
 * so and exits 1. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "loop.h"
#include "program.h"

struct client {
	struct chat_prog prog;
	struct chat_loop *loop;
	struct chat_conn *conn;
	struct chat_watch *in_watch;
	const char *address;
	uint8_t *line;
	size_t line_len, line_cap;
	size_t outstanding;
	int stdin_done, connected, status;
};

static void maybe_finish(struct client *c)
{
	if (c->stdin_done && c->outstanding == 0 && c->conn) {
		chat_conn_close(c->conn, CHAT_OK, "done");
		chat_loop_stop(c->loop);
	}
}

static void send_line(struct client *c, size_t len, const uint8_t *text)
{
	if (!c->conn || chat_conn_send(c->conn, len, text) != CHAT_OK)
		return;
	c->outstanding++;
}

static void input_eof(struct client *c)
{
	if (c->line_len)
		send_line(c, c->line_len, c->line);
	c->line_len = 0;
	c->stdin_done = 1;
	if (c->in_watch)
		chat_loop_remove(c->loop, c->in_watch);
	c->in_watch = NULL;
	maybe_finish(c);
}

/* Split input into lines; each line is one frame. */
static int input_bytes(struct client *c, size_t n, const uint8_t *buf)
{
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			send_line(c, c->line_len, c->line);
			c->line_len = 0;
			continue;
		}
		if (c->line_len == c->prog.max_frame) {
			chat_prog_error(&c->prog, "input line longer than %zu bytes (core.max_frame); "
			                "it is sent in pieces", c->prog.max_frame);
			send_line(c, c->line_len, c->line);
			c->line_len = 0;
		}
		if (c->line_len == c->line_cap) {
			size_t cap = c->line_cap ? c->line_cap * 2 : 256;
			uint8_t *grown = realloc(c->line, cap);
			if (!grown) {
				chat_prog_error(&c->prog, "out of memory");
				c->status = 1;
				chat_loop_stop(c->loop);
				return -1;
			}
			c->line = grown;
			c->line_cap = cap;
		}
		c->line[c->line_len++] = buf[i];
	}
	return 0;
}

static void on_stdin(struct chat_loop *loop, int fd, unsigned events, void *arg)
{
	struct client *c = arg;
	uint8_t buf[4096];
	ssize_t n;

	(void)loop;
	(void)events;
	n = read(fd, buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0)
		input_eof(c);
	else
		input_bytes(c, (size_t)n, buf);
}

/* epoll cannot watch regular files (they are always ready): read them whole. */
static void read_file_input(struct client *c)
{
	uint8_t buf[65536];
	ssize_t n;

	while ((n = read(STDIN_FILENO, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
		if (n > 0 && input_bytes(c, (size_t)n, buf))
			return;
	if (n < 0)
		chat_prog_error(&c->prog, "reading standard input: %s", strerror(errno));
	input_eof(c);
}

static void on_frame(struct chat_conn *conn, size_t len, const uint8_t *frame, void *arg)
{
	struct client *c = arg;

	(void)conn;
	printf("< %.*s\n", (int)len, (const char *)frame);
	fflush(stdout);
	if (c->outstanding)
		c->outstanding--;
	maybe_finish(c);
}

static void on_connect(struct chat_conn *conn, void *arg)
{
	struct client *c = arg;

	c->connected = 1;
	chat_info("connected to relay %s", chat_conn_peer(conn));
	struct stat st;
	if (fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode)) {
		read_file_input(c);
		return;
	}
	if (chat_loop_add(c->loop, STDIN_FILENO, CHAT_EV_READ, on_stdin, c, &c->in_watch)) {
		chat_prog_error(&c->prog, "cannot watch standard input");
		c->status = 1;
		chat_loop_stop(c->loop);
	}
}

static void on_close(struct chat_conn *conn, int err, const char *reason, void *arg)
{
	struct client *c = arg;

	(void)conn;
	c->conn = NULL;
	if (err == CHAT_OK)
		return;
	if (!c->connected)
		chat_prog_error(&c->prog, "cannot connect to relay %s (client.connect, %s): %s",
		                c->address, chat_config_where(c->prog.cfg, "client", "connect"), reason);
	else
		chat_prog_error(&c->prog, "lost the relay %s: %s", c->address, reason);
	c->status = 1;
	chat_loop_stop(c->loop);
}

static long long on_connect_timeout(struct chat_loop *loop, void *arg)
{
	struct client *c = arg;

	(void)loop;
	if (!c->connected && c->conn)
		chat_conn_close(c->conn, CHAT_ERR_TIMEOUT, "connect timed out (client.connect_timeout)");
	return -1;
}

static const struct chat_conn_cbs cbs = {
	.on_frame = on_frame,
	.on_close = on_close,
	.on_connect = on_connect,
};

static int client_run(struct client *c)
{
	struct chat_conn_limits lim = { .max_frame = c->prog.max_frame, .out_limit = 16u << 20 };
	int rc;

	c->address = chat_config_get(c->prog.cfg, "client", "connect");
	rc = chat_loop_new(&c->loop);
	if (rc) {
		chat_prog_error(&c->prog, "cannot create the event loop: %s", chat_strerror(rc));
		return 1;
	}
	fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
	rc = chat_conn_connect(c->loop, c->prog.transport->desc->ops.transport,
	                       &c->prog.transport->host, c->address, &lim, &cbs, c, &c->conn);
	if (rc) {
		chat_prog_error(&c->prog, "cannot connect to relay %s (client.connect, %s): %s",
		                c->address, chat_config_where(c->prog.cfg, "client", "connect"),
		                chat_strerror(rc));
		return 1;
	}
	chat_loop_timer_add(c->loop, (uint64_t)chat_config_int(c->prog.cfg, "client", "connect_timeout"),
	                    on_connect_timeout, c, NULL);
	rc = chat_loop_run(c->loop);
	if (rc) {
		chat_prog_error(&c->prog, "event loop failed: %s", chat_strerror(rc));
		return 1;
	}
	return c->status;
}

int main(int argc, char **argv)
{
	static const struct chat_prog_flag flags[] = {
		{ "connect", 'C', "client", "connect", "ADDR", "relay address, host:port or [v6]:port" },
		{ "user", 'u', "client", "user", "NAME", "your username" },
		{ NULL, 0, NULL, NULL, NULL, NULL },
	};
	struct client c = {
		.prog = {
			.name = "chat-client",
			.section = "client",
			.summary = "Terminal client of the chat framework.",
			.usage_tail = "This version speaks relay protocol 0 (echo): each input line is sent as\n"
			              "one frame and each frame returned by the relay is printed as '< LINE'.\n",
			.flags = flags,
		},
	};
	int status = chat_prog_start(&c.prog, argc, argv);

	if (status < 0)
		status = client_run(&c);
	if (c.loop) {
		if (c.conn)
			chat_conn_close(c.conn, CHAT_OK, "exiting");
		chat_loop_remove(c.loop, c.in_watch);
		chat_loop_free(c.loop);
	}
	free(c.line);
	chat_prog_finish(&c.prog);
	return status;
}
