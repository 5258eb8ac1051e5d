/* chat-relay: the relay server.  One epoll loop, non-blocking sockets,
 * bounded per-client output queues.  Until the relay protocol lands it runs
 * protocol 0: every frame is echoed back to its sender (docs/PROTOCOL.md). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "loop.h"
#include "program.h"

struct client {
	struct relay *relay;
	struct chat_conn *conn;
	struct client *prev, *next;
	uint64_t last_active;
};

struct relay {
	struct chat_prog prog;
	struct chat_loop *loop;
	const struct chat_transport_ops *tp;
	void *listener;
	struct chat_watch *listen_watch, *signal_watch;
	int signal_fd;
	struct client *clients;
	size_t nclients, max_clients;
	struct chat_conn_limits limits;
	long long idle_timeout_ms;
	int exit_status;
};

static void client_frame(struct chat_conn *c, size_t len, const uint8_t *frame, void *arg)
{
	struct client *cl = arg;

	cl->last_active = chat_loop_now_ms();
	/* Protocol 0: echo.  chat_conn_send closes a client whose queue overflows. */
	chat_conn_send(c, len, frame);
}

static void client_close(struct chat_conn *c, int err, const char *reason, void *arg)
{
	struct client *cl = arg;
	struct relay *r = cl->relay;

	if (err == CHAT_OK || err == CHAT_ERR_CLOSED)
		chat_info("client %s disconnected: %s", chat_conn_peer(c), reason);
	else
		chat_warn("client %s dropped: %s", chat_conn_peer(c), reason);
	if (cl->prev)
		cl->prev->next = cl->next;
	else
		r->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	r->nclients--;
	free(cl);
}

static const struct chat_conn_cbs client_cbs = {
	.on_frame = client_frame,
	.on_close = client_close,
};

static long long resume_accept(struct chat_loop *loop, void *arg)
{
	struct relay *r = arg;

	chat_loop_modify(loop, r->listen_watch, CHAT_EV_READ);
	return -1;
}

static void on_accept(struct chat_loop *loop, int fd, unsigned events, void *arg)
{
	struct relay *r = arg;

	(void)fd;
	(void)events;
	for (int i = 0; i < 64; i++) {
		void *handle = NULL;
		int rc = r->tp->accept(r->listener, &handle);
		if (rc == CHAT_ERR_AGAIN)
			return;
		if (rc != CHAT_OK) {
			/* Out of fds or memory: the listener stays readable, so a
			 * level-triggered loop would spin.  Pause accepting for a second. */
			chat_warn("accept failed: %s; pausing new connections for 1 s", chat_strerror(rc));
			if (chat_loop_modify(loop, r->listen_watch, 0) == CHAT_OK)
				chat_loop_timer_add(loop, 1000, resume_accept, r, NULL);
			return;
		}
		if (r->nclients >= r->max_clients) {
			char peer[CHAT_ADDR_MAX] = "?";
			r->tp->address(handle, 0, sizeof(peer), peer);
			chat_warn("refusing %s: %zu clients connected (relay.max_clients)", peer,
			          r->nclients);
			r->tp->close(handle);
			continue;
		}
		struct client *cl = calloc(1, sizeof(*cl));
		if (!cl) {
			r->tp->close(handle);
			chat_err("out of memory accepting a client");
			continue;
		}
		cl->relay = r;
		cl->last_active = chat_loop_now_ms();
		rc = chat_conn_new(loop, r->tp, handle, &r->limits, &client_cbs, cl, &cl->conn);
		if (rc) {
			chat_err("cannot watch a new client: %s", chat_strerror(rc));
			free(cl);
			continue;
		}
		cl->next = r->clients;
		if (r->clients)
			r->clients->prev = cl;
		r->clients = cl;
		r->nclients++;
		chat_info("client %s connected (%zu connected)", chat_conn_peer(cl->conn), r->nclients);
	}
}

static long long idle_check(struct chat_loop *loop, void *arg)
{
	struct relay *r = arg;
	uint64_t now = chat_loop_now_ms();

	(void)loop;
	for (struct client *cl = r->clients, *next; cl; cl = next) {
		next = cl->next; /* closing frees cl (its on_close unlinks it) */
		if (now - cl->last_active >= (uint64_t)r->idle_timeout_ms)
			chat_conn_close(cl->conn, CHAT_ERR_TIMEOUT, "idle for too long (relay.idle_timeout)");
	}
	return 1000;
}

static void on_signal(struct chat_loop *loop, int fd, unsigned events, void *arg)
{
	struct relay *r = arg;
	struct signalfd_siginfo si;

	(void)events;
	if (read(fd, &si, sizeof(si)) != sizeof(si))
		return;
	chat_info("shutting down on %s: closing %zu client(s)", strsignal((int)si.ssi_signo),
	          r->nclients);
	while (r->clients)
		chat_conn_close(r->clients->conn, CHAT_OK, "relay shutting down");
	chat_loop_stop(loop);
}

static int relay_run(struct relay *r)
{
	const char *address = chat_config_get(r->prog.cfg, "relay", "listen");
	char bound[CHAT_ADDR_MAX];
	sigset_t mask;
	int rc;

	r->tp = r->prog.transport->desc->ops.transport;
	r->max_clients = (size_t)chat_config_int(r->prog.cfg, "relay", "max_clients");
	r->limits.max_frame = r->prog.max_frame;
	r->limits.out_limit = (size_t)chat_config_int(r->prog.cfg, "relay", "out_queue_limit");
	r->idle_timeout_ms = chat_config_int(r->prog.cfg, "relay", "idle_timeout") * 1000;
	r->signal_fd = -1;

	rc = chat_loop_new(&r->loop);
	if (rc) {
		chat_prog_error(&r->prog, "cannot create the event loop: %s", chat_strerror(rc));
		return 1;
	}
	rc = r->tp->listen(&r->prog.transport->host, address, &r->listener);
	if (rc) {
		chat_prog_error(&r->prog, "cannot listen on %s (relay.listen, %s): %s", address,
		                chat_config_where(r->prog.cfg, "relay", "listen"), chat_strerror(rc));
		return 1;
	}
	if (r->tp->address(r->listener, 1, sizeof(bound), bound) != CHAT_OK)
		snprintf(bound, sizeof(bound), "%s", address);

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	r->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (r->signal_fd < 0 ||
	    chat_loop_add(r->loop, r->signal_fd, CHAT_EV_READ, on_signal, r, &r->signal_watch) ||
	    chat_loop_add(r->loop, r->tp->fd(r->listener), CHAT_EV_READ, on_accept, r,
	                  &r->listen_watch)) {
		chat_prog_error(&r->prog, "cannot set up the event loop");
		return 1;
	}
	if (r->idle_timeout_ms > 0 && chat_loop_timer_add(r->loop, 1000, idle_check, r, NULL)) {
		chat_prog_error(&r->prog, "cannot set up the idle timer");
		return 1;
	}
	chat_info("listening on %s (transport %s %s, max frame %zu bytes, max %zu clients)",
	          bound, r->prog.transport->desc->name, r->prog.transport->desc->version,
	          r->limits.max_frame, r->max_clients);
	rc = chat_loop_run(r->loop);
	if (rc) {
		chat_prog_error(&r->prog, "event loop failed: %s", chat_strerror(rc));
		return 1;
	}
	chat_info("stopped");
	return 0;
}

int main(int argc, char **argv)
{
	static const struct chat_prog_flag flags[] = {
		{ "listen", 'l', "relay", "listen", "ADDR", "address to listen on, host:port or [v6]:port" },
		{ NULL, 0, NULL, NULL, NULL, NULL },
	};
	struct relay r = {
		.prog = {
			.name = "chat-relay",
			.section = "relay",
			.summary = "Relay server of the chat framework: routes end-to-end encrypted messages it cannot read.",
			.flags = flags,
		},
	};
	int status = chat_prog_start(&r.prog, argc, argv);

	if (status < 0)
		status = relay_run(&r);
	if (r.loop) {
		while (r.clients)
			chat_conn_close(r.clients->conn, CHAT_OK, "relay stopped");
		chat_loop_remove(r.loop, r.listen_watch);
		chat_loop_remove(r.loop, r.signal_watch);
		if (r.listener)
			r.tp->listener_close(r.listener);
		chat_loop_free(r.loop);
	}
	if (r.signal_fd >= 0)
		close(r.signal_fd);
	chat_prog_finish(&r.prog);
	return status;
}
