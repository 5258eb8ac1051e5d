#include "fakenet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chat/error.h>

static struct fake_conn *conns;     /* every connection, for fakenet_reset */
static struct fake_conn *connected; /* the last one connect() made */
static struct fake_listener *listener;
static unsigned counter;

static int new_fd(void)
{
	int fd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fd < 0) {
		perror("fakenet: eventfd");
		abort();
	}
	return fd;
}

struct fake_conn *fake_conn_new(const char *addr)
{
	struct fake_conn *c = calloc(1, sizeof(*c));

	if (!c)
		abort();
	c->fd = new_fd();
	if (addr)
		snprintf(c->addr, sizeof(c->addr), "%s", addr);
	else
		snprintf(c->addr, sizeof(c->addr), "10.0.0.%u:%u", 1 + counter % 200, 40000 + counter);
	counter++;
	snprintf(c->local, sizeof(c->local), "127.0.0.1:7400");
	chat_frame_decoder_init(&c->dec, CHAT_FRAME_HARD_MAX);
	c->next = conns;
	conns = c;
	return c;
}

void fake_listener_queue(struct fake_listener *l, struct fake_conn *c)
{
	if (l->npending < sizeof(l->pending) / sizeof(l->pending[0]))
		l->pending[l->npending++] = c;
}

struct fake_conn *fake_connected(void)
{
	return connected;
}

struct fake_listener *fake_the_listener(void)
{
	return listener;
}

void fake_push(struct fake_conn *c, size_t len, const void *data)
{
	if (c->in_off == c->in_len) {
		c->in_off = c->in_len = 0;
	}
	uint8_t *n = realloc(c->in, c->in_len + len + 1);
	if (!n)
		abort();
	c->in = n;
	if (len)
		memcpy(c->in + c->in_len, data, len);
	c->in_len += len;
}

void fake_push_frame(struct fake_conn *c, size_t len, const void *frame)
{
	uint8_t hdr[CHAT_FRAME_HDR];

	chat_frame_put_header(len, hdr);
	fake_push(c, sizeof(hdr), hdr);
	fake_push(c, len, frame);
}

void fake_push_eof(struct fake_conn *c)
{
	c->eof = 1;
}

int fake_next_frame(struct fake_conn *c, const uint8_t **frame, size_t *len)
{
	free(c->frame);
	c->frame = NULL;
	while (c->out_off < c->out_len) {
		size_t used = 0, flen = 0;
		const uint8_t *f = NULL;
		int rc = chat_frame_decode(&c->dec, c->out_len - c->out_off, c->out + c->out_off, &used,
		                           &f, &flen);
		c->out_off += used;
		if (rc < 0)
			return 0;
		if (rc == 1) {
			c->frame = malloc(flen + 1);
			if (!c->frame)
				abort();
			memcpy(c->frame, f, flen);
			*frame = c->frame;
			*len = flen;
			return 1;
		}
	}
	c->out_off = c->out_len = 0;
	return 0;
}

/* ---- the ops */

static int f_listen(const struct chat_host *host, const char *address, void **out)
{
	(void)host;
	(void)address;
	if (listener)
		return CHAT_ERR_ADDRINUSE;
	listener = calloc(1, sizeof(*listener));
	if (!listener)
		return CHAT_ERR_NOMEM;
	listener->fd = new_fd();
	*out = listener;
	return CHAT_OK;
}

static int f_accept(void *l, void **conn)
{
	struct fake_listener *fl = l;

	if (!fl->npending)
		return CHAT_ERR_AGAIN;
	*conn = fl->pending[0];
	memmove(fl->pending, fl->pending + 1, --fl->npending * sizeof(fl->pending[0]));
	return CHAT_OK;
}

static int f_connect(const struct chat_host *host, const char *address, void **conn)
{
	(void)host;
	struct fake_conn *c = fake_conn_new(address);

	connected = c;
	*conn = c;
	return CHAT_ERR_INPROGRESS;
}

static int f_connect_finish(void *conn)
{
	struct fake_conn *c = conn;
	return c->reset ? CHAT_ERR_REFUSED : CHAT_OK;
}

static int f_read(void *conn, size_t len, uint8_t *dst, size_t *got)
{
	struct fake_conn *c = conn;
	size_t n = c->in_len - c->in_off;

	*got = 0;
	if (!n)
		return c->eof ? (c->reset ? CHAT_ERR_RESET : CHAT_ERR_CLOSED) : CHAT_ERR_AGAIN;
	if (n > len)
		n = len;
	memcpy(dst, c->in + c->in_off, n);
	c->in_off += n;
	*got = n;
	return CHAT_OK;
}

static int f_write(void *conn, size_t len, const uint8_t *src, size_t *sent)
{
	struct fake_conn *c = conn;

	*sent = 0;
	if (c->eof && c->reset)
		return CHAT_ERR_RESET;
	if (c->write_budget && len > c->write_budget)
		len = c->write_budget;
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 1024;
		while (cap < c->out_len + len)
			cap *= 2;
		uint8_t *n = realloc(c->out, cap);
		if (!n)
			abort();
		c->out = n;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, src, len);
	c->out_len += len;
	*sent = len;
	return CHAT_OK;
}

static int f_fd(void *handle)
{
	/* A listener or a connection: the one listener is known by address. */
	if (listener && handle == (void *)listener)
		return listener->fd;
	return ((struct fake_conn *)handle)->fd;
}

static int f_address(void *handle, int local, size_t cap, char *dst)
{
	if (listener && handle == (void *)listener) {
		snprintf(dst, cap, "127.0.0.1:7400");
		return CHAT_OK;
	}
	struct fake_conn *c = handle;
	snprintf(dst, cap, "%s", local ? c->local : c->addr);
	return CHAT_OK;
}

static void f_close(void *conn)
{
	struct fake_conn *c = conn;

	if (!c || c->closed)
		return;
	c->closed = 1;
	close(c->fd);
	c->fd = -1;
}

static void f_listener_close(void *l)
{
	struct fake_listener *fl = l;

	if (!fl || fl->fd < 0)
		return;
	close(fl->fd);
	fl->fd = -1;
}

const struct chat_transport_ops fake_ops = {
	.size = sizeof(struct chat_transport_ops),
	.listen = f_listen,
	.accept = f_accept,
	.connect = f_connect,
	.connect_finish = f_connect_finish,
	.read = f_read,
	.write = f_write,
	.fd = f_fd,
	.address = f_address,
	.close = f_close,
	.listener_close = f_listener_close,
};

void fake_run(struct chat_loop *loop, int max)
{
	for (int i = 0; i < max; i++) {
		size_t before = 0, after = 0;
		for (struct fake_conn *c = conns; c; c = c->next)
			before += c->in_off + c->out_len + (size_t)c->closed;
		chat_loop_run_once(loop, 0);
		for (struct fake_conn *c = conns; c; c = c->next)
			after += c->in_off + c->out_len + (size_t)c->closed;
		if (before == after && i > 0)
			break;
	}
}

void fakenet_reset(void)
{
	while (conns) {
		struct fake_conn *c = conns;
		conns = c->next;
		if (c->fd >= 0)
			close(c->fd);
		free(c->in);
		free(c->out);
		free(c->frame);
		chat_frame_decoder_free(&c->dec);
		free(c);
	}
	connected = NULL;
	if (listener) {
		/* pending connections are on the conns list, freed above */
		if (listener->fd >= 0)
			close(listener->fd);
		free(listener);
		listener = NULL;
	}
	counter = 0;
}
