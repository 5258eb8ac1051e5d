/* One epoll event loop: fd readiness and timers (Redis ae.c in spirit).
 * Handlers may remove any watch, including their own, at any time: removal
 * takes effect at once (no further callbacks) and memory is released after
 * the current dispatch round.  Deferred calls run after each dispatch round,
 * which is where connections closed inside handlers are freed. */
#ifndef CHAT_LOOP_H
#define CHAT_LOOP_H

#include <stdint.h>

#define CHAT_EV_READ 1u
#define CHAT_EV_WRITE 2u
#define CHAT_EV_HUP 4u /* error or hang-up; always reported, never requested */

struct chat_loop;
struct chat_watch;
struct chat_timer;

typedef void (*chat_fd_cb)(struct chat_loop *loop, int fd, unsigned events, void *arg);
/* Return the delay in ms until the next call, or -1 to stop the timer (it is
 * then freed; the handle becomes invalid). */
typedef long long (*chat_timer_cb)(struct chat_loop *loop, void *arg);
typedef void (*chat_defer_cb)(void *arg);

int chat_loop_new(struct chat_loop **loop);
/* Frees watches, timers and pending deferred calls (running the deferred calls).
 * Not from inside a callback of this loop. */
void chat_loop_free(struct chat_loop *loop);

/* events 0 registers a paused watch (no callbacks, not even HUP).  An fd may
 * have one watch.  watch may be NULL when the watch lives as long as the loop. */
int chat_loop_add(struct chat_loop *loop, int fd, unsigned events, chat_fd_cb cb,
                  void *arg, struct chat_watch **watch);
int chat_loop_modify(struct chat_loop *loop, struct chat_watch *watch, unsigned events);
void chat_loop_remove(struct chat_loop *loop, struct chat_watch *watch);

int chat_loop_timer_add(struct chat_loop *loop, uint64_t delay_ms, chat_timer_cb cb,
                        void *arg, struct chat_timer **timer);
/* Cancel a timer that has not stopped itself; safe inside any callback. */
void chat_loop_timer_cancel(struct chat_loop *loop, struct chat_timer *timer);

/* Run fn(arg) after the current dispatch round. */
int chat_loop_defer(struct chat_loop *loop, chat_defer_cb fn, void *arg);

/* Dispatch one round, waiting at most timeout_ms (-1: until an event or timer).
 * Returns CHAT_OK (also when a signal interrupted the wait), CHAT_ERR_IO, or
 * CHAT_ERR_INVALID when called from inside a callback of the same loop. */
int chat_loop_run_once(struct chat_loop *loop, int timeout_ms);
/* Run until chat_loop_stop(), or until there are no watches, timers or deferred
 * calls left (waiting would never end).  Returns CHAT_OK or the error of a round. */
int chat_loop_run(struct chat_loop *loop);
void chat_loop_stop(struct chat_loop *loop);

uint64_t chat_loop_now_ms(void); /* CLOCK_MONOTONIC */

#endif
