/* config.c: gorod's settings, from the command line and the configuration
 * file.
 *
 * One table (settings[]) names every setting once: its long option, how
 * its value is read, and where it goes in struct config. The command line
 * and the file both go through it, so a key in the file is spelled like
 * the flag (`leak-after = 5m` is `--leak-after 5m`) and is checked the
 * same way. The file is `key = value` lines; `#` starts a comment line;
 * an empty value unsets a string setting. Flags win over the file, at the
 * start and at every reload: the command line is kept (cmdline, given[])
 * and laid over what the file says each time.
 *
 * The file is trusted with what it configures (a module directory is code
 * gorod loads), so a root gorod refuses a file that someone other than
 * root could have written. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

enum kind { K_STR, K_PROCS, K_COUNT, K_SIZE, K_DURATION };

struct setting {
	const char *name; /* the long option, and the file's key */
	int flag;         /* getopt's value (a letter for those with a short option) */
	enum kind kind;
	size_t off;       /* into struct config */
	long long max;    /* K_PROCS, K_SIZE */
};

#define AT(field) offsetof(struct config, field)

static const struct setting settings[] = {
	{ "socket", 's', K_STR, AT(socket), 0 },
	{ "maxprocs", 'p', K_PROCS, AT(maxprocs), RT_MAXPROCS_LIMIT },
	{ "module-dir", 'm', K_STR, AT(module_dir), 0 },
	{ "output-max", 'O', K_SIZE, AT(task.output_max), 1LL << 30 },
	{ "keep-tasks", 'K', K_COUNT, AT(task.keep_count), 100000000 },
	{ "keep-age", 'A', K_DURATION, AT(task.keep_age_ms), 0 },
	{ "keep-output", 'B', K_SIZE, AT(task.keep_output), 1LL << 40 },
	{ "leak-after", 'L', K_DURATION, AT(task.leak_after_ms), 0 },
	{ "metrics", 'M', K_STR, AT(metrics), 0 },
	{ "state-dir", 'S', K_STR, AT(state_dir), 0 },
	/* Per-user limits (quota.c, where the defaults are explained). */
	{ "sessions-per-user", 0x100, K_COUNT, AT(quota.sessions), 1000000 },
	{ "requests-per-user", 0x101, K_COUNT, AT(quota.requests), 100000000 },
	{ "tasks-per-user", 0x102, K_COUNT, AT(quota.tasks), 100000000 },
	{ "names-per-user", 0x103, K_COUNT, AT(quota.names), 100000000 },
	{ "output-per-user", 0x104, K_SIZE, AT(quota.output), 1LL << 40 },
};

#define NSETTINGS (sizeof settings / sizeof settings[0])
#define LINE_MAX_LEN 4096

const char *config_path;
static bool config_path_given;
static struct config cmdline;       /* the flags given, ... */
static bool given[NSETTINGS];       /* ... which ones */
static struct task_config task_defaults;

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: gorod [--socket PATH] [--maxprocs N] [--config FILE] [OPTIONS]\n"
		"\n"
		"The gorod daemon: a goroutine runtime shared by every process.\n"
		"\n"
		"  -c, --config FILE  settings as `key = value` lines, keys spelled like\n"
		"                     these options; flags win. Default, if it exists:\n"
		"                     $CONFIGURATION_DIRECTORY/gorod.conf (systemd), else\n"
		"                     /etc/gorod/gorod.conf (root), else\n"
		"                     ${XDG_CONFIG_HOME:-~/.config}/gorod/gorod.conf\n"
		"  -s, --socket PATH  where to listen; default: $GOROD_SOCKET, else\n"
		"                     $XDG_RUNTIME_DIR/gorod.sock (not for root), else\n"
		"                     /run/gorod/gorod.sock\n"
		"  -p, --maxprocs N   worker threads (GOMAXPROCS); default: the CPUs\n"
		"                     this process may use\n"
		"  -m, --module-dir DIR  load the task functions of every *.so in DIR\n"
		"      --output-max BYTES  task output kept per stream (default 1M;\n"
		"                     suffixes K, M, G)\n"
		"      --keep-tasks N     finished tasks kept for wait and logs (10000)\n"
		"      --keep-age DUR     ... and for how long (1h; 250ms, 2s, 1m, 1h)\n"
		"      --keep-output BYTES  output kept over all finished tasks (256M)\n"
		"      --leak-after DUR   a task alive this long without progress is a\n"
		"                     suspected leak, unless it said otherwise (10m)\n"
		"      --metrics ADDR     serve Prometheus metrics at http://ADDR/metrics,\n"
		"                     ADDR like 127.0.0.1:9464 (default: off)\n"
		"      --state-dir DIR    keep the task journal there, so that tasks and their\n"
		"                     outcomes survive a restart; default: $STATE_DIRECTORY\n"
		"                     (systemd's StateDirectory=), else none\n"
		"\n"
		"Per-user limits: past one, that user's request gets EAGAIN naming the\n"
		"setting; other users go on. 0 is none. Root and gorod's own user are\n"
		"counted but never refused. The defaults fit a small shared machine\n"
		"(2 CPUs, a service's 1024 file descriptors):\n"
		"      --sessions-per-user N  connections at once (64: a client needs one\n"
		"                     per thread; 64 is a sixteenth of the descriptors)\n"
		"      --requests-per-user N  requests that wait (lock, acquire, wg wait,\n"
		"                     task wait, following logs) in flight at once (4096;\n"
		"                     each holds a goroutine)\n"
		"      --tasks-per-user N     tasks queued, running or paused (1024: room\n"
		"                     for a queue behind a semaphore; two CPUs run a few)\n"
		"      --names-per-user N     WaitGroups, mutexes and semaphores in use\n"
		"                     that the user's requests made (10000, ~5 MiB)\n"
		"      --output-per-user BYTES  output kept of the user's tasks, live and\n"
		"                     finished (64M: 32 tasks at the default output-max);\n"
		"                     past it rings stop growing and the rest is cut\n"
		"\n"
		"  -V, --version      print the version and exit\n"
		"  -h, --help         print this help and exit\n"
		"\n"
		"Signals: SIGTERM or SIGINT stop gorod; SIGHUP reads the configuration\n"
		"file again; SIGUSR1 logs scheduler counters.\n");
}

static void say(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

/* A size like 4096, 64K, 1M, 2G, at most max. */
static int parse_size(const char *s, long long max, int64_t *v)
{
	char *end;
	long long n, mul = 1;

	errno = 0;
	n = strtoll(s, &end, 10);
	if (*end == 'K' || *end == 'k')
		mul = 1024, end++;
	else if (*end == 'M' || *end == 'm')
		mul = 1024 * 1024, end++;
	else if (*end == 'G' || *end == 'g')
		mul = 1024 * 1024 * 1024, end++;
	if (*s == '\0' || *end != '\0' || errno || n < 0 || n > max / mul)
		return -EINVAL;
	*v = n * mul;
	return 0;
}

/* A duration like 250ms, 2s, 1m, 1h (a bare number is seconds), in ms. */
static int parse_duration(const char *s, int64_t *ms)
{
	char *end;
	long long n, mul;

	errno = 0;
	n = strtoll(s, &end, 10);
	if (strcmp(end, "ms") == 0)
		mul = 1;
	else if (strcmp(end, "s") == 0 || *end == '\0')
		mul = 1000;
	else if (strcmp(end, "m") == 0)
		mul = 60000;
	else if (strcmp(end, "h") == 0)
		mul = 3600000;
	else
		mul = 0;
	if (*s == '\0' || errno || mul == 0 || n < 0 || n > 10LL * 366 * 24 * 3600000 / mul)
		return -EINVAL;
	*ms = n * mul;
	return 0;
}

/* Sets one setting of *cf from its text; `what` names it in the message
 * ("--keep-age", or "FILE:LINE: keep-age"). */
static int set(struct config *cf, const struct setting *st, const char *v, const char *what,
	       char *err, size_t len)
{
	void *field = (char *)cf + st->off;

	switch (st->kind) {
	case K_STR: {
		char **s = field, *copy = *v ? strdup(v) : NULL;
		if (*v && !copy) {
			say(err, len, "%s: out of memory", what);
			return -ENOMEM;
		}
		free(*s);
		*s = copy;
		return 0;
	}
	case K_PROCS:
	case K_COUNT: {
		int64_t n, min = st->kind == K_PROCS;
		if (strpbrk(v, "KkMmGg") || parse_size(v, st->max, &n) < 0 || n < min) {
			say(err, len, "%s wants a whole number from %lld to %lld, not '%s'", what,
			    (long long)min, st->max, v);
			return -EINVAL;
		}
		if (st->kind == K_PROCS)
			*(int *)field = (int)n;
		else
			*(int64_t *)field = n;
		return 0;
	}
	case K_SIZE:
		if (parse_size(v, st->max, field) < 0) {
			say(err, len, "%s wants a number from 0 to %lld (suffixes K, M, G), not '%s'",
			    what, st->max, v);
			return -EINVAL;
		}
		return 0;
	case K_DURATION:
		if (parse_duration(v, field) < 0) {
			say(err, len, "%s wants a duration like 250ms, 2s, 1m or 1h "
			    "(at most ten years), not '%s'", what, v);
			return -EINVAL;
		}
		return 0;
	}
	return -EINVAL;
}

static const struct setting *find(const char *name)
{
	for (size_t i = 0; i < NSETTINGS; i++)
		if (strcmp(settings[i].name, name) == 0)
			return &settings[i];
	return NULL;
}

static char *trim(char *s)
{
	char *e = s + strlen(s);

	while (*s == ' ' || *s == '\t')
		s++;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static void default_path(void)
{
	static char buf[4096];
	const char *dir = getenv("CONFIGURATION_DIRECTORY"), *xdg = getenv("XDG_CONFIG_HOME"),
		   *home = getenv("HOME");

	if (config_path)
		return;
	if (dir && *dir && !strchr(dir, ':'))
		snprintf(buf, sizeof buf, "%s/gorod.conf", dir);
	else if (geteuid() == 0)
		snprintf(buf, sizeof buf, "/etc/gorod/gorod.conf");
	else if (xdg && *xdg)
		snprintf(buf, sizeof buf, "%s/gorod/gorod.conf", xdg);
	else if (home && *home)
		snprintf(buf, sizeof buf, "%s/.config/gorod/gorod.conf", home);
	else
		return;
	config_path = buf;
}

/* Reads config_path into *cf. A missing file is no error unless it was
 * named with --config. */
static int read_file(struct config *cf, char *err, size_t len)
{
	char line[LINE_MAX_LEN + 2], what[512];
	struct stat st;
	FILE *f;
	int n = 0, r = 0;

	if (!config_path)
		return 0;
	f = fopen(config_path, "re");
	if (!f && !config_path_given) {
		/* The default place: nothing there is no error, and one that
		 * cannot be read (a $HOME not this user's) only a warning. */
		if (errno != ENOENT && errno != ENOTDIR)
			fprintf(stderr, "gorod: not reading %s: %s\n", config_path, strerror(errno));
		return 0;
	}
	if (!f) {
		say(err, len, "cannot read %s: %s", config_path, strerror(errno));
		return -errno;
	}
	if (fstat(fileno(f), &st) == 0 && geteuid() == 0 &&
	    (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)))) {
		say(err, len, "%s may be written by others than root; gorod runs as root "
		    "and will not take its settings (chown root and chmod go-w it)", config_path);
		fclose(f);
		return -EPERM;
	}
	while (r == 0 && fgets(line, sizeof line, f)) {
		char *key, *value, *eq;
		const struct setting *s;

		n++;
		if (strlen(line) > LINE_MAX_LEN) {
			say(err, len, "%s:%d: the line is longer than %d bytes", config_path, n,
			    LINE_MAX_LEN);
			r = -EINVAL;
			break;
		}
		key = trim(line);
		if (*key == '\0' || *key == '#')
			continue;
		eq = strchr(key, '=');
		if (!eq) {
			say(err, len, "%s:%d: expected `key = value`, not '%s'", config_path, n, key);
			r = -EINVAL;
			break;
		}
		*eq = '\0';
		key = trim(key);
		value = trim(eq + 1);
		s = find(key);
		if (!s) {
			say(err, len, "%s:%d: unknown key '%s'; the keys are socket, maxprocs, "
			    "module-dir, output-max, keep-tasks, keep-age, keep-output, "
			    "leak-after, metrics, state-dir, sessions-per-user, requests-per-user, "
			    "tasks-per-user, names-per-user, output-per-user", config_path, n, key);
			r = -EINVAL;
			break;
		}
		snprintf(what, sizeof what, "%s:%d: %s", config_path, n, key);
		r = set(cf, s, value, what, err, len);
	}
	if (r == 0 && ferror(f)) {
		say(err, len, "cannot read %s: %s", config_path, strerror(errno));
		r = -EIO;
	}
	fclose(f);
	return r;
}

/* The defaults, then the file, then the flags given. */
static int build(struct config *cf, char *err, size_t len)
{
	int r;

	*cf = (struct config){ .task = task_defaults, .quota = quota_defaults };
	r = read_file(cf, err, len);
	for (size_t i = 0; r == 0 && i < NSETTINGS; i++) {
		const struct setting *st = &settings[i];
		void *to = (char *)cf + st->off, *from = (char *)&cmdline + st->off;

		if (!given[i])
			continue;
		if (st->kind == K_STR) {
			char **s = to, *v = *(char **)from;
			free(*s);
			*s = v ? strdup(v) : NULL;
			if (v && !*s) {
				say(err, len, "out of memory");
				r = -ENOMEM;
			}
		} else if (st->kind == K_PROCS) {
			*(int *)to = *(int *)from;
		} else {
			*(int64_t *)to = *(int64_t *)from;
		}
	}
	if (r < 0) {
		config_free(cf);
		return r;
	}
	if (cf->task.output_max > cf->task.output_limit)
		cf->task.output_limit = cf->task.output_max;
	/* systemd's StateDirectory= (the first, if it names several). */
	const char *sd = getenv("STATE_DIRECTORY");
	if (!cf->state_dir && sd && *sd && !(cf->state_dir = strndup(sd, strcspn(sd, ":")))) {
		say(err, len, "out of memory");
		config_free(cf);
		return -ENOMEM;
	}
	return 0;
}

int config_load(int argc, char **argv, struct config *cf)
{
	static struct option longopts[NSETTINGS + 4];
	char err[1024], what[64];
	size_t k = 0;
	int c, idx;

	for (size_t i = 0; i < NSETTINGS; i++)
		longopts[k++] = (struct option){ settings[i].name, required_argument, NULL,
						 settings[i].flag };
	longopts[k++] = (struct option){ "config", required_argument, NULL, 'c' };
	longopts[k++] = (struct option){ "version", no_argument, NULL, 'V' };
	longopts[k++] = (struct option){ "help", no_argument, NULL, 'h' };
	task_defaults = task_config;
	cmdline = (struct config){ .task = task_defaults, .quota = quota_defaults };

	while ((c = getopt_long(argc, argv, "p:s:m:c:Vh", longopts, &idx)) != -1) {
		const struct setting *st = NULL;

		switch (c) {
		case 'c':
			config_path = optarg;
			config_path_given = true;
			continue;
		case 'V':
			printf("gorod %s\n", GOROD_VERSION);
			return 1;
		case 'h':
			usage(stdout);
			return 1;
		case '?':
			fprintf(stderr, "Try 'gorod --help'.\n");
			return -EINVAL;
		}
		for (size_t i = 0; i < NSETTINGS; i++)
			if (settings[i].flag == c) {
				st = &settings[i];
				given[i] = true;
			}
		if (!st)
			return -EINVAL;
		snprintf(what, sizeof what, "--%s", st->name);
		if (set(&cmdline, st, optarg, what, err, sizeof err) < 0) {
			fprintf(stderr, "gorod: %s\n", err);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "gorod: unexpected argument '%s'. Try 'gorod --help'.\n", argv[optind]);
		return -EINVAL;
	}
	default_path();
	if (build(cf, err, sizeof err) < 0) {
		fprintf(stderr, "gorod: %s\n", err);
		return -EINVAL;
	}
	/* The limits apply from the first connection; reload() applies the
	 * next ones (main.c). */
	quota_set_limits(&cf->quota);
	return 0;
}

int config_reload(struct config *cf, char *err, size_t errlen)
{
	return build(cf, err, errlen);
}

void config_free(struct config *cf)
{
	free(cf->socket);
	free(cf->module_dir);
	free(cf->metrics);
	free(cf->state_dir);
	cf->socket = cf->module_dir = cf->metrics = cf->state_dir = NULL;
}
