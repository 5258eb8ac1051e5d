/* Framed connections (core/src/conn.c) over a socketpair, through a minimal
 * in-test transport: frames split anywhere arrive whole and in order, and a
 * read holding many frames does not hold up the loop -- at most a budget of
 * frames per connection per loop round, the rest delivered on later rounds
 * without new input, due timers running in between.  Every wait is bounded. */
#define _GNU_SOURCE
#include "testutils.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chat/error.h>
#include <chat/transport.h>

#include "conn.h"
#include "frame.h"
#include "loop.h"

/* ---- a transport over one end of a socketpair (the handle is fd + 1) */

static int sp_fd(void *h)
{
	return (int)(intptr_t)h - 1;
}

static int sp_read(void *h, size_t len, uint8_t *dst, size_t *got)
{
	ssize_t n = read(sp_fd(h), dst, len);

	*got = 0;
	if (n > 0) {
		*got = (size_t)n;
		return CHAT_OK;
	}
	if (n == 0)
		return CHAT_ERR_CLOSED;
	return errno == EAGAIN ? CHAT_ERR_AGAIN : CHAT_ERR_IO;
}

static int sp_write(void *h, size_t len, const uint8_t *src, size_t *sent)
{
	ssize_t n = send(sp_fd(h), src, len, MSG_NOSIGNAL);

	*sent = 0;
	if (n >= 0) {
		*sent = (size_t)n;
		return CHAT_OK;
	}
	return errno == EAGAIN ? CHAT_ERR_AGAIN : CHAT_ERR_IO;
}

static int sp_address(void *h, int local, size_t cap, char *dst)
{
	(void)h;
	snprintf(dst, cap, local ? "local" : "peer");
	return CHAT_OK;
}

static void sp_close(void *h)
{
	if (h)
		close(sp_fd(h));
}

static const struct chat_transport_ops sp_ops = {
	.size = sizeof(sp_ops),
	.read = sp_read,
	.write = sp_write,
	.fd = sp_fd,
	.address = sp_address,
	.close = sp_close,
};

/* ---- the receiving side */

struct rx {
	struct chat_conn *conn;
	size_t frames;          /* frames delivered */
	size_t bad;             /* frames not the expected ones */
	size_t close_at;        /* close (1) / close after flush (2) at this frame */
	int close_how;
	int closed;
	uint32_t next;          /* the number the next frame must carry */
	size_t frames_at_timer; /* frames delivered when the timer ran */
	int timer_ran;
};

/* Frame k: its 4-byte number k, then k % 37 bytes of (k + i). */
static size_t make_frame(uint32_t k, uint8_t *dst)
{
	size_t n = 4 + k % 37;

	chat_frame_put_header(n, dst);
	dst[4] = (uint8_t)(k >> 24);
	dst[5] = (uint8_t)(k >> 16);
	dst[6] = (uint8_t)(k >> 8);
	dst[7] = (uint8_t)k;
	for (size_t i = 4; i < n; i++)
		dst[4 + i] = (uint8_t)(k + i);
	return CHAT_FRAME_HDR + n;
}

static void on_frame(struct chat_conn *c, size_t len, const uint8_t *f, void *arg)
{
	struct rx *rx = arg;
	uint32_t k;
	int ok = len >= 4;

	(void)c;
	k = ok ? (uint32_t)f[0] << 24 | (uint32_t)f[1] << 16 | (uint32_t)f[2] << 8 | f[3] : 0;
	ok = ok && k == rx->next && len == 4 + k % 37;
	for (size_t i = 4; ok && i < len; i++)
		ok = f[i] == (uint8_t)(k + i);
	rx->bad += !ok;
	rx->next++;
	rx->frames++;
	if (rx->close_how && rx->frames == rx->close_at) {
		if (rx->close_how == 1)
			chat_conn_close(rx->conn, CHAT_OK, "test closes");
		else
			chat_conn_close_after_flush(rx->conn, "test closes after flush");
	}
}

static void on_close(struct chat_conn *c, int err, const char *reason, void *arg)
{
	struct rx *rx = arg;

	(void)c;
	(void)err;
	(void)reason;
	rx->closed = 1;
}

static const struct chat_conn_cbs cbs = { .on_frame = on_frame, .on_close = on_close };

static long long on_timer(struct chat_loop *loop, void *arg)
{
	struct rx *rx = arg;

	(void)loop;
	rx->timer_ran = 1;
	rx->frames_at_timer = rx->frames;
	return -1;
}

/* frames k0 .. k0+n-1 into one buffer; returns its length */
static size_t make_frames(uint32_t k0, size_t n, uint8_t *dst)
{
	size_t len = 0;

	for (size_t i = 0; i < n; i++)
		len += make_frame(k0 + (uint32_t)i, dst + len);
	return len;
}

static void write_all(int fd, size_t len, const uint8_t *src)
{
	while (len) {
		ssize_t n = write(fd, src, len);

		if (n < 0 && errno == EAGAIN) {
			usleep(1000);
			continue;
		}
		CHECK(n > 0);
		if (n <= 0)
			return;
		src += n;
		len -= (size_t)n;
	}
}

static void setup(struct chat_loop **loop, int sv[2], struct rx *rx)
{
	struct chat_conn_limits lim = { .max_frame = 65536, .out_limit = 1 << 20 };
	int big = 1 << 20;

	memset(rx, 0, sizeof(*rx));
	CHECK_EQ_INT(chat_loop_new(loop), CHAT_OK);
	CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	CHECK_EQ_INT(chat_conn_new(*loop, &sp_ops, (void *)(intptr_t)(sv[1] + 1), &lim, &cbs, rx,
	                           &rx->conn), CHAT_OK);
}

static void run_for(struct chat_loop *loop, const struct rx *rx, size_t want, int rounds)
{
	uint64_t end = chat_loop_now_ms() + 3000;

	for (int i = 0; i < rounds && rx->frames < want && !rx->closed && chat_loop_now_ms() < end; i++)
		CHECK_EQ_INT(chat_loop_run_once(loop, 50), CHAT_OK);
}

/* 4,000 small frames in one write (about 100 KiB, two reads): a timer due
 * at once runs after the first round's budget, long before the last frame;
 * every frame still arrives, in order, with no further input. */
static void test_timer_between_frames(void)
{
	enum { N = 4000 };
	static uint8_t buf[N * 48];
	struct chat_loop *loop;
	struct rx rx;
	int sv[2], rounds = 0;
	size_t len = make_frames(0, N, buf);

	setup(&loop, sv, &rx);
	write_all(sv[0], len, buf);
	CHECK_EQ_INT(chat_loop_timer_add(loop, 0, on_timer, &rx, NULL), CHAT_OK);
	while (rx.frames < N && rounds < 1000) {
		CHECK_EQ_INT(chat_loop_run_once(loop, 50), CHAT_OK);
		rounds++;
		if (rounds == 1) {
			/* One round: one budget of frames, then the due timer. */
			CHECK(rx.frames > 0 && rx.frames < N);
			CHECK(rx.timer_ran);
		}
	}
	CHECK(rx.timer_ran);
	CHECK(rx.frames_at_timer < N / 10);
	CHECK_EQ_INT(rx.frames, N);
	CHECK_EQ_INT(rx.bad, 0);
	CHECK(rounds >= N / 64); /* at most 64 frames per round */
	printf("conn: %d frames in one write: timer ran after %zu, all in %d rounds\n", N,
	       rx.frames_at_timer, rounds);
	/* Reading resumes afterwards. */
	len = make_frames(N, 3, buf);
	write_all(sv[0], len, buf);
	run_for(loop, &rx, N + 3, 100);
	CHECK_EQ_INT(rx.frames, N + 3);
	CHECK_EQ_INT(rx.bad, 0);
	chat_conn_close(rx.conn, CHAT_OK, "done");
	chat_loop_free(loop);
	close(sv[0]);
}

/* Input arriving while earlier bytes are held is read only after them;
 * frames cut at every place across the held part and later reads. */
static void test_order_across_writes(void)
{
	enum { N = 3000 };
	static uint8_t buf[N * 48];
	struct chat_loop *loop;
	struct rx rx;
	int sv[2];
	size_t len = make_frames(0, N, buf), half = len / 2 + 3;

	setup(&loop, sv, &rx);
	write_all(sv[0], half, buf);
	CHECK_EQ_INT(chat_loop_run_once(loop, 50), CHAT_OK);
	CHECK(rx.frames > 0 && rx.frames < N / 2);
	write_all(sv[0], len - half, buf + half); /* the rest, while some is held */
	run_for(loop, &rx, N, 1000);
	CHECK_EQ_INT(rx.frames, N);
	CHECK_EQ_INT(rx.bad, 0);
	/* One byte at a time works too (and never touches the budget). */
	len = make_frames(N, 20, buf);
	for (size_t i = 0; i < len; i++) {
		write_all(sv[0], 1, buf + i);
		CHECK_EQ_INT(chat_loop_run_once(loop, 0), CHAT_OK);
	}
	run_for(loop, &rx, N + 20, 100);
	CHECK_EQ_INT(rx.frames, N + 20);
	CHECK_EQ_INT(rx.bad, 0);
	chat_conn_close(rx.conn, CHAT_OK, "done");
	chat_loop_free(loop);
	close(sv[0]);
}

/* Closing (at once, or after the output is written) while input is held:
 * not one more frame, nothing leaked (ASan / valgrind), the loop empties. */
static void test_close_while_held(void)
{
	enum { N = 2000 };
	static uint8_t buf[N * 48];
	size_t len = make_frames(0, N, buf);

	for (int how = 1; how <= 2; how++) {
		struct chat_loop *loop;
		struct rx rx;
		int sv[2];

		setup(&loop, sv, &rx);
		rx.close_how = how;
		rx.close_at = 100; /* in the second round's budget */
		write_all(sv[0], len, buf);
		run_for(loop, &rx, N, 50);
		for (int i = 0; i < 5; i++)
			CHECK_EQ_INT(chat_loop_run_once(loop, 0), CHAT_OK);
		CHECK(rx.closed);
		CHECK_EQ_INT(rx.frames, 100);
		CHECK_EQ_INT(rx.bad, 0);
		/* Nothing left in the loop: no watch, no resume timer. */
		CHECK_EQ_INT(chat_loop_run(loop), CHAT_OK);
		chat_loop_free(loop);
		close(sv[0]);
	}
}

/* A peer that closes right after a burst: every frame is delivered before
 * the close is noticed. */
static void test_eof_after_burst(void)
{
	enum { N = 1000 };
	static uint8_t buf[N * 48];
	struct chat_loop *loop;
	struct rx rx;
	int sv[2];
	size_t len = make_frames(0, N, buf);

	setup(&loop, sv, &rx);
	write_all(sv[0], len, buf);
	close(sv[0]);
	run_for(loop, &rx, N + 1, 1000);
	CHECK_EQ_INT(rx.frames, N);
	CHECK_EQ_INT(rx.bad, 0);
	CHECK(rx.closed);
	chat_loop_free(loop);
}

int main(void)
{
	test_timer_between_frames();
	test_order_across_writes();
	test_close_while_held();
	test_eof_after_burst();
	return test_done("test_conn");
}
