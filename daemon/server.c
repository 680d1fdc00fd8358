/* server.c: the listening socket and the accept loop.
 *
 * The path: --socket, else $GOROD_SOCKET, else $XDG_RUNTIME_DIR/gorod.sock
 * for a per-user gorod, else /run/gorod/gorod.sock (root). A per-user
 * socket is created 0600 (only its owner may connect); the system one 0660
 * and group goro when that group exists (its members may). gorod refuses to start when a live gorod already answers
 * on the path, and replaces a socket file nobody answers on (left by a
 * gorod that crashed). The accept loop is a goroutine parked on the
 * listening fd; each connection gets a session goroutine (session.c). */
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "gorod.h"

static struct rt_gref accept_g;
static bool accept_running;
static struct rt_wg accept_wg;

int server_socket_path(const char *opt, char *buf, size_t len)
{
	const char *env = getenv("GOROD_SOCKET"), *xdg = getenv("XDG_RUNTIME_DIR");
	int n;

	if (opt && *opt)
		n = snprintf(buf, len, "%s", opt);
	else if (env && *env)
		n = snprintf(buf, len, "%s", env);
	else if (geteuid() != 0 && xdg && *xdg)
		n = snprintf(buf, len, "%s/gorod.sock", xdg);
	else
		n = snprintf(buf, len, "/run/gorod/gorod.sock");
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int fill_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof *sa);
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sa->sun_path)
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, path);
	return 0;
}

/* 0 when nothing answers on path (absent, or a stale socket now removed);
 * -EADDRINUSE when a live gorod does; -ENOTSOCK for another kind of file. */
static int clear_stale(const char *path, const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, r;

	if (lstat(path, &st) < 0)
		return 0;
	if (!S_ISSOCK(st.st_mode))
		return -ENOTSOCK;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (const struct sockaddr *)sa, sizeof *sa);
	close(fd);
	if (r == 0)
		return -EADDRINUSE;
	if (errno == ECONNREFUSED && unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int server_listen(const char *path)
{
	struct sockaddr_un sa;
	bool system = geteuid() == 0;
	mode_t mode = system ? 0660 : 0600, old;
	int fd, r;

	if ((r = fill_addr(path, &sa)) < 0) {
		fprintf(stderr, "gorod: socket path too long (%zu bytes, at most %zu): %s\n",
			strlen(path), sizeof sa.sun_path - 1, path);
		return r;
	}
	if (strcmp(path, "/run/gorod/gorod.sock") == 0)
		mkdir("/run/gorod", 0755);
	r = clear_stale(path, &sa);
	if (r == -EADDRINUSE) {
		fprintf(stderr, "gorod: a gorod is already running at %s "
				"(stop it first, or give another --socket)\n", path);
		return r;
	}
	if (r < 0) {
		fprintf(stderr, "gorod: %s exists and is not a socket gorod can replace: %s\n",
			path, strerror(-r));
		return r;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		perror("gorod: socket");
		return r;
	}
	old = umask((mode_t)~mode & 0777);
	r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
	umask(old);
	if (r < 0 || chmod(path, mode) < 0 || listen(fd, 1024) < 0) {
		r = -errno;
		fprintf(stderr, "gorod: cannot listen on %s: %s\n", path, strerror(errno));
		close(fd);
		return r;
	}
	/* The system gorod's group: members of goro may connect, as through
	 * gorod.socket's SocketGroup=goro (sysusers.d makes the group). */
	struct group *gr = system ? getgrnam("goro") : NULL;
	if (gr && chown(path, 0, gr->gr_gid) < 0)
		fprintf(stderr, "gorod: cannot give %s to group goro: %s\n", path, strerror(errno));
	return fd;
}

void server_accept_loop(void *arg)
{
	int lfd = (int)(intptr_t)arg;
	struct rt_pollfd *pfd = NULL;
	bool warned = false;

	if (rt_pollfd_open(lfd, &pfd) < 0) {
		fprintf(stderr, "gorod: cannot poll the listening socket\n");
		rt_wg_done(&accept_wg);
		return;
	}
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			session_accepted();
			if (rt_go(session_serve, (void *)(intptr_t)fd, NULL) < 0) {
				close(fd);
				session_ended_early();
			}
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EAGAIN) {
			if (rt_pollfd_wait(pfd, RT_READ, RT_FOREVER) < 0)
				break; /* cancelled: gorod is stopping */
			continue;
		}
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			if (!warned)
				fprintf(stderr, "gorod: accept: %s; new connections wait\n",
					strerror(errno));
			warned = true;
			if (rt_sleep(rt_deadline_ms(100)) < 0)
				break;
			continue;
		}
		fprintf(stderr, "gorod: accept: %s\n", strerror(errno));
		break;
	}
	rt_pollfd_close(pfd);
	rt_wg_done(&accept_wg);
}

int server_start(int lfd)
{
	int r;

	rt_wg_add(&accept_wg, 1);
	r = rt_go(server_accept_loop, (void *)(intptr_t)lfd, &accept_g);
	if (r < 0) {
		rt_wg_done(&accept_wg);
		return r;
	}
	accept_running = true;
	return 0;
}

/* Goroutine only: stops accepting and waits until the loop has ended. */
void server_stop(void)
{
	if (!accept_running)
		return;
	rt_cancel(accept_g);
	rt_wg_wait(&accept_wg, RT_FOREVER);
	accept_running = false;
}
