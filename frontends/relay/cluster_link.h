/* The interface between the relay and its cluster module (cluster-redis.so,
 * built from cluster_redis.c): the module is only a transport — a link to
 * one Redis server that subscribes to channels, publishes binary messages
 * and says when the link comes up or goes down.  What the messages mean is
 * the relay's (relay_cluster.c), so chat-relay never links hiredis.  The
 * module runs on the relay's event loop through the host table below and
 * never blocks it.  Internal: built with the relay, refused by version. */
#ifndef CHAT_CLUSTER_LINK_H
#define CHAT_CLUSTER_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "loop.h"

#define CHAT_CLUSTER_LINK_VERSION 1
#define CHAT_CLUSTER_LINK_SYMBOL "chat_cluster_link_module"

/* What the relay lends the module: its loop (the module links no chatcore). */
struct chat_cluster_host {
	size_t size; /* sizeof(struct chat_cluster_host) */
	struct chat_loop *loop;
	int (*loop_add)(struct chat_loop *loop, int fd, unsigned events, chat_fd_cb cb, void *arg,
	                struct chat_watch **watch);
	int (*loop_modify)(struct chat_loop *loop, struct chat_watch *watch, unsigned events);
	void (*loop_remove)(struct chat_loop *loop, struct chat_watch *watch);
	int (*timer_add)(struct chat_loop *loop, uint64_t delay_ms, chat_timer_cb cb, void *arg,
	                 struct chat_timer **timer);
	void (*timer_cancel)(struct chat_loop *loop, struct chat_timer *timer);
};

struct chat_cluster_cbs {
	/* Connected and subscribed to every channel: publishing works. */
	void (*on_up)(void *arg);
	/* The link is lost (or the first connect failed): said once per loss;
	 * the module reconnects by itself (1 s doubling to 10 s).  why names
	 * the server. */
	void (*on_down)(void *arg, const char *why);
	/* A message on one of the channels (data is the module's: copy it). */
	void (*on_message)(void *arg, const char *channel, size_t len, const uint8_t *data);
};

struct chat_cluster_link;

struct chat_cluster_module {
	unsigned version; /* CHAT_CLUSTER_LINK_VERSION */
	/* Start connecting to host:port (returns at once; on_up follows).
	 * name ([a-z0-9_.:-]) names both connections on the server (CLIENT
	 * LIST), so an operator sees which relay is which.
	 * out_max bounds the bytes published and not yet acknowledged by the
	 * server: past it, publish fails and the link is dropped (and
	 * reconnected) rather than grow.  0 or a negative error code (then err
	 * says why). */
	int (*open)(const struct chat_cluster_host *host, const char *addr, int port, const char *name,
	            size_t nchannels, const char *const *channels, size_t out_max,
	            const struct chat_cluster_cbs *cbs, void *arg, struct chat_cluster_link **out,
	            size_t errlen, char *err);
	/* 0, or -1 when the link is not up or its queue is full (the link is
	 * then being dropped: on_down follows). */
	int (*publish)(struct chat_cluster_link *l, const char *channel, size_t len,
	               const uint8_t *data);
	/* Not from inside one of its callbacks.  No callback runs after it. */
	void (*close)(struct chat_cluster_link *l);
};

#endif
