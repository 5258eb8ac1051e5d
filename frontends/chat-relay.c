/* chat-relay: the relay server.  One epoll loop, non-blocking sockets,
 * bounded per-client output queues; the routing itself is core/src/relay.c. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "program.h"
#include "relay.h"

struct server {
	struct chat_prog prog;
	struct chat_loop *loop;
	struct chat_relay *relay;
	const struct chat_transport_ops *tp;
	void *listener;
	struct chat_watch *listen_watch, *signal_watch;
	int signal_fd;
	int stopping;
};

static long long resume_accept(struct chat_loop *loop, void *arg)
{
	struct server *s = arg;

	chat_loop_modify(loop, s->listen_watch, CHAT_EV_READ);
	return -1;
}

static void on_accept(struct chat_loop *loop, int fd, unsigned events, void *arg)
{
	struct server *s = arg;

	(void)fd;
	(void)events;
	for (int i = 0; i < 64; i++) {
		void *handle = NULL;
		int rc = s->tp->accept(s->listener, &handle);
		if (rc == CHAT_ERR_AGAIN)
			return;
		if (rc != CHAT_OK) {
			/* Out of fds or memory: the listener stays readable, so a
			 * level-triggered loop would spin.  Pause accepting for a second. */
			chat_warn("accept failed: %s; pausing new connections for 1 s", chat_strerror(rc));
			if (chat_loop_modify(loop, s->listen_watch, 0) == CHAT_OK)
				chat_loop_timer_add(loop, 1000, resume_accept, s, NULL);
			return;
		}
		rc = chat_relay_accept(s->relay, s->tp, handle);
		if (rc && rc != CHAT_ERR_NOSPACE)
			chat_err("cannot take a new client: %s", chat_strerror(rc));
	}
}

static long long stop_when_drained(struct chat_loop *loop, void *arg)
{
	struct server *s = arg;
	static int ticks;

	/* Give clients up to 2 s to receive their BYE, then stop regardless. */
	if (chat_relay_clients(s->relay) == 0 || ++ticks >= 40) {
		chat_loop_stop(loop);
		return -1;
	}
	return 50;
}

static void on_signal(struct chat_loop *loop, int fd, unsigned events, void *arg)
{
	struct server *s = arg;
	struct signalfd_siginfo si;

	(void)events;
	if (read(fd, &si, sizeof(si)) != sizeof(si))
		return;
	if (s->stopping) {
		chat_info("second %s: stopping now", strsignal((int)si.ssi_signo));
		chat_loop_stop(loop);
		return;
	}
	s->stopping = 1;
	chat_info("shutting down on %s: telling %zu client(s)", strsignal((int)si.ssi_signo),
	          chat_relay_clients(s->relay));
	chat_loop_remove(loop, s->listen_watch);
	s->listen_watch = NULL;
	chat_relay_shutdown(s->relay, "relay shutting down");
	chat_loop_timer_add(loop, 0, stop_when_drained, s, NULL);
}

/* relay.suites: the suites the relay carries (chat_prog_start already
 * loaded each, so a typo was reported before we got here). */
static void load_policy(struct server *s, struct chat_relay_config *rc, char (*names)[33],
                        const char **ptrs)
{
	rc->nsuites = chat_config_list(s->prog.cfg, "relay", "suites", 16, names);
	for (size_t i = 0; i < rc->nsuites; i++)
		ptrs[i] = names[i];
	rc->suites = ptrs;
}

static int serve(struct server *s)
{
	const char *address = chat_config_get(s->prog.cfg, "relay", "listen");
	struct chat_relay_config rc = { 0 };
	char names[16][33], bound[CHAT_ADDR_MAX];
	const char *ptrs[16];
	sigset_t mask;
	int err;

	load_policy(s, &rc, names, ptrs);
	s->tp = s->prog.transport->desc->ops.transport;
	rc.limits.max_frame = s->prog.max_frame;
	rc.limits.out_limit = (size_t)chat_config_int(s->prog.cfg, "relay", "out_queue_limit");
	rc.max_clients = (size_t)chat_config_int(s->prog.cfg, "relay", "max_clients");
	rc.idle_timeout_ms = chat_config_int(s->prog.cfg, "relay", "idle_timeout") * 1000;
	rc.max_rooms_per_client = (size_t)chat_config_int(s->prog.cfg, "relay", "max_rooms");
	rc.max_room_members = (size_t)chat_config_int(s->prog.cfg, "relay", "max_room_members");
	rc.max_pending_offers = 32;
	rc.max_bad_requests = 10;

	if ((err = chat_loop_new(&s->loop)) || (err = chat_relay_new(s->loop, &rc, &s->relay))) {
		chat_prog_error(&s->prog, "cannot start: %s", chat_strerror(err));
		return 1;
	}
	err = s->tp->listen(&s->prog.transport->host, address, &s->listener);
	if (err) {
		chat_prog_error(&s->prog, "cannot listen on %s (relay.listen, %s): %s", address,
		                chat_config_where(s->prog.cfg, "relay", "listen"), chat_strerror(err));
		return 1;
	}
	if (s->tp->address(s->listener, 1, sizeof(bound), bound) != CHAT_OK)
		snprintf(bound, sizeof(bound), "%s", address);

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	s->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (s->signal_fd < 0 ||
	    chat_loop_add(s->loop, s->signal_fd, CHAT_EV_READ, on_signal, s, &s->signal_watch) ||
	    chat_loop_add(s->loop, s->tp->fd(s->listener), CHAT_EV_READ, on_accept, s,
	                  &s->listen_watch)) {
		chat_prog_error(&s->prog, "cannot set up the event loop");
		return 1;
	}
	chat_info("listening on %s (transport %s %s, max frame %zu bytes, max %zu clients, suites: %s)",
	          bound, s->prog.transport->desc->name, s->prog.transport->desc->version,
	          rc.limits.max_frame, rc.max_clients,
	          rc.nsuites ? chat_config_get(s->prog.cfg, "relay", "suites") : "any");
	err = chat_loop_run(s->loop);
	if (err) {
		chat_prog_error(&s->prog, "event loop failed: %s", chat_strerror(err));
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
	struct server s = {
		.prog = {
			.name = "chat-relay",
			.section = "relay",
			.summary = "Relay server of the chat framework: routes end-to-end encrypted messages it cannot read.",
			.flags = flags,
		},
		.signal_fd = -1,
	};
	int status = chat_prog_start(&s.prog, argc, argv);

	if (status < 0)
		status = serve(&s);
	if (s.loop) {
		chat_relay_free(s.relay);
		chat_loop_remove(s.loop, s.listen_watch);
		chat_loop_remove(s.loop, s.signal_watch);
		if (s.listener)
			s.tp->listener_close(s.listener);
		chat_loop_free(s.loop);
	}
	if (s.signal_fd >= 0)
		close(s.signal_fd);
	chat_prog_finish(&s.prog);
	return status;
}
