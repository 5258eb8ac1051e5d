/* chat-tap: a recording TCP proxy for the end-to-end tests.
 *   chat-tap PORTFILE TARGET_PORT RECORDFILE
 * Listens on 127.0.0.1:0 (the port goes to PORTFILE), forwards every
 * connection to 127.0.0.1:TARGET_PORT and appends every byte that passes, in
 * both directions, to RECORDFILE: exactly what the relay receives and sends.
 * SIGUSR1 toggles a stall: nothing is read or forwarded in either direction,
 * nothing is closed (a link gone silent, as through a dead router); new
 * connections are still accepted and joined to the target, and stall too.
 * Loopback only; exits on SIGTERM or after 10 minutes. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXPAIRS 64

static volatile sig_atomic_t stop, stalled;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static void on_usr1(int sig)
{
	(void)sig;
	stalled = !stalled;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	int pairs[MAXPAIRS][2], npairs = 0;
	FILE *rec, *pf;
	time_t deadline = time(NULL) + 600;

	if (argc != 4) {
		fprintf(stderr, "usage: chat-tap PORTFILE TARGET_PORT RECORDFILE\n");
		return 2;
	}
	signal(SIGTERM, on_term);
	signal(SIGUSR1, on_usr1); /* poll() is never restarted: a toggle acts at once */
	signal(SIGPIPE, SIG_IGN);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 16) ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen)) {
		perror("chat-tap: listen");
		return 1;
	}
	rec = fopen(argv[3], "ab");
	pf = fopen(argv[1], "w");
	if (!rec || !pf) {
		perror("chat-tap: files");
		return 1;
	}
	fprintf(pf, "%d\n", ntohs(a.sin_port));
	fclose(pf);
	while (!stop && time(NULL) < deadline) {
		struct pollfd p[1 + 2 * MAXPAIRS];
		int n = 0;
		/* Stalled: pairs are polled for nothing (a negative fd is skipped),
		 * so their bytes wait in the kernel until the stall ends. */
		int stall = stalled;
		p[n++] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		for (int i = 0; i < npairs; i++) {
			p[n++] = (struct pollfd){ .fd = stall ? -1 : pairs[i][0], .events = POLLIN };
			p[n++] = (struct pollfd){ .fd = stall ? -1 : pairs[i][1], .events = POLLIN };
		}
		if (poll(p, (nfds_t)n, 200) <= 0)
			continue;
		int polled = npairs; /* a pair accepted below was not polled yet */
		if ((p[0].revents & POLLIN) && npairs < MAXPAIRS) {
			int c = accept(lfd, NULL, NULL);
			int s = socket(AF_INET, SOCK_STREAM, 0);
			struct sockaddr_in t = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
			inet_pton(AF_INET, "127.0.0.1", &t.sin_addr);
			if (c >= 0 && s >= 0 && connect(s, (struct sockaddr *)&t, sizeof(t)) == 0) {
				pairs[npairs][0] = c;
				pairs[npairs][1] = s;
				npairs++;
			} else {
				if (c >= 0)
					close(c);
				if (s >= 0)
					close(s);
			}
		}
		for (int i = 0; i < polled; i++) {
			for (int dir = 0; dir < 2; dir++) {
				if (!(p[1 + 2 * i + dir].revents & (POLLIN | POLLHUP | POLLERR)))
					continue;
				char buf[65536];
				ssize_t got = read(pairs[i][dir], buf, sizeof(buf));
				if (got <= 0) {
					close(pairs[i][0]);
					close(pairs[i][1]);
					pairs[i][0] = pairs[i][1] = -1;
					break;
				}
				fwrite(buf, 1, (size_t)got, rec);
				fflush(rec);
				for (ssize_t off = 0; off < got;) {
					ssize_t w = write(pairs[i][!dir], buf + off, (size_t)(got - off));
					if (w <= 0 && errno != EINTR)
						break;
					if (w > 0)
						off += w;
				}
			}
		}
		for (int i = 0; i < npairs; i++) /* drop closed pairs */
			if (pairs[i][0] < 0) {
				pairs[i][0] = pairs[npairs - 1][0];
				pairs[i][1] = pairs[npairs - 1][1];
				npairs--;
				i--;
			}
	}
	fclose(rec);
	return 0;
}
