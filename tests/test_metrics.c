/* test_metrics.c: the Prometheus endpoint (daemon/metrics.c,
 * docs/METRICS.md), end to end.
 *
 * gorod runs with `metrics = 127.0.0.1:0` in its --config file: the
 * kernel picks a free port, so two tests never race for one, and gorod's
 * log says which ("gorod: metrics on http://127.0.0.1:PORT/metrics",
 * written before READY=1, so it is there once harness_start returns). The
 * scrapes are plain HTTP/1.0 over a socket, read to the end of file.
 *
 * Each scrape is parsed strictly (text format 0.0.4): every line a HELP
 * or TYPE comment or a sample `name{labels} value`; every sample's family
 * has a TYPE line before it, and its lines are together; a counter's name
 * ends in _total; a histogram's buckets are cumulative, end at le="+Inf",
 * and agree with _count; no sample twice. The parts:
 *
 * - format: the families docs/METRICS.md lists are served, and only
 *   those; the content type; gauges that must hold at rest.
 * - locks: N lock/unlock pairs of each kind (write, read, semaphore) make
 *   the wait and the hold histograms count at least N more each.
 * - contended: one session holds a mutex while another's request waits
 *   (known to be queued by a reply that came after it: pipelining), for
 *   60 ms: that wait and that hold both land above the 10 ms bucket. A
 *   holder that disconnects counts as a release.
 * - tasks: N func tasks spawned and waited for: spawned grows by exactly
 *   N, finished{outcome="exited"} by N.
 * - leak: a task that waits on its own WaitGroup (a definite leak): the
 *   leaks gauge shows it within FIND_MS (polled scrapes), and it goes away
 *   with the task.
 * - http: 404 for another path, 405 for POST, a request line and a
 *   header over the limit and bytes that are not HTTP are refused; gorod
 *   still answers stats and scrapes; a connection that sends nothing is
 *   closed within the timeout (10 s), and does not hold up scrapes
 *   meanwhile.
 * - reload: SIGHUP with another address in the file moves the endpoint
 *   (the old port then refuses connections); with an address in use it
 *   stays where it was. The reload has no reply: gorod's log lines are
 *   the events waited for.
 * - bind: a second gorod with --metrics on a port in use, and ones with
 *   addresses that are not, exit 1 and say why.
 *
 * $GOROD and $GOROCTL name what to test, $GORO_METRICS_DOC the list
 * (meson passes them). */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "goro/goro.h"
#include "harness.h"
#include "tap.h"

#define WAIT_MS 20000
#define FIND_MS 10000    /* a leak finding should take < 1 s */
#define HTTP_MS 10000    /* one HTTP exchange */
#define IDLE_CLOSE_MS 20000 /* gorod closes an idle connection after 10 s */
#define HOLD_MS 60
#define NPAIRS 50
#define NTASKS 7

static struct harness h;
static goro_client *c;
static int port;

/* ---- HTTP ----------------------------------------------------------------------- */

static int64_t ms_left(int64_t deadline)
{
	int64_t left = deadline - harness_now_ms();
	return left > 0 ? left : 0;
}

/* How many lines of gorod's log start with prefix; the number after the
 * prefix on the last of them into *num (may be NULL). */
static int log_lines(const char *prefix, int *num)
{
	char line[1024];
	int n = 0;
	FILE *f = fopen(h.log, "r");

	if (!f)
		bail_out("open %s", h.log);
	while (fgets(line, sizeof line, f)) {
		if (strncmp(line, prefix, strlen(prefix)))
			continue;
		n++;
		if (num)
			*num = atoi(line + strlen(prefix));
	}
	fclose(f);
	return n;
}

#define METRICS_ON "gorod: metrics on http://127.0.0.1:"

/* The port of gorod's latest "metrics on" line, once (reload reads it
 * again). */
static int metrics_port(void)
{
	if (!port && (log_lines(METRICS_ON, &port) == 0 || port <= 0))
		bail_out("gorod's log does not say where the metrics are");
	return port;
}

static int connect_metrics(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)metrics_port()) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
		bail_out("connect to 127.0.0.1:%d: %s", port, strerror(errno));
	return fd;
}

/* Reads fd to its end of file (or an error: a reset counts as the end)
 * into a malloc'd, NUL-terminated buffer. Returns the length, or
 * -ETIMEDOUT. */
static ssize_t read_all(int fd, char **out, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (len + 1 == cap && !(buf = realloc(buf, cap *= 2)))
			bail_out("out of memory");
		if (poll(&p, 1, (int)ms_left(deadline)) <= 0) {
			free(buf);
			return -ETIMEDOUT;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*out = buf;
	return (ssize_t)len;
}

/* An HTTP reply: the status, the header block, the body (into raw). */
struct reply {
	int status;
	char *raw;
	const char *headers, *body;
	size_t body_len;
};

static void reply_free(struct reply *r)
{
	free(r->raw);
	memset(r, 0, sizeof *r);
}

/* Sends req (len bytes) on a new connection and reads the reply to the
 * end. Returns 0, or -1 when nothing that looks like HTTP came back (a
 * closed connection: status 0). */
static int http(const char *req, size_t len, struct reply *r)
{
	int fd = connect_metrics();
	ssize_t n;
	char *end;

	memset(r, 0, sizeof *r);
	/* A refused request may be answered and closed before all of it is
	 * sent: a failed write is not an error here. */
	if (harness_write_full(fd, req, len) < 0)
		shutdown(fd, SHUT_WR);
	n = read_all(fd, &r->raw, HTTP_MS);
	close(fd);
	if (n < 0)
		bail_out("no reply in %d ms", HTTP_MS);
	if (sscanf(r->raw, "HTTP/1.%*d %d", &r->status) != 1 || !(end = strstr(r->raw, "\r\n\r\n"))) {
		r->status = 0;
		return -1;
	}
	*end = '\0';
	r->headers = r->raw;
	r->body = end + 4;
	r->body_len = (size_t)n - (size_t)(r->body - r->raw);
	return 0;
}

static int get(const char *path, struct reply *r)
{
	char req[512];

	snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
	return http(req, strlen(req), r);
}

/* ---- the exposition, parsed ------------------------------------------------------- */

#define MAX_FAMILIES 128
#define MAX_SAMPLES 4096

struct family {
	char name[128];
	char type[16];
	bool help, ended;
};

struct sample {
	char name[128];
	char labels[256];  /* inside the braces, as written */
	double value;
	int family;
};

struct expo {
	struct family f[MAX_FAMILIES];
	int nf;
	struct sample s[MAX_SAMPLES];
	int ns;
};

static bool ends_with(const char *s, const char *sfx)
{
	size_t n = strlen(s), m = strlen(sfx);

	return n >= m && !strcmp(s + n - m, sfx);
}

static bool is_name(const char *s, size_t n, bool colon)
{
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
			     (colon && ch == ':');
		if (!alpha && !(i > 0 && ch >= '0' && ch <= '9'))
			return false;
	}
	return n > 0;
}

static int family_find(const struct expo *e, const char *name)
{
	for (int i = 0; i < e->nf; i++)
		if (!strcmp(e->f[i].name, name))
			return i;
	return -1;
}

/* The family a sample name belongs to, by its TYPE: the name itself, or
 * for a histogram the name less _bucket, _sum or _count. */
static int family_of(const struct expo *e, const char *name)
{
	static const char *const sfx[] = { "_bucket", "_sum", "_count" };
	int i = family_find(e, name);
	char base[128];

	if (i >= 0)
		return strcmp(e->f[i].type, "histogram") ? i : -1;
	for (int k = 0; k < 3; k++) {
		if (ends_with(name, sfx[k])) {
			snprintf(base, sizeof base, "%.*s", (int)(strlen(name) - strlen(sfx[k])), name);
			i = family_find(e, base);
			if (i >= 0 && !strcmp(e->f[i].type, "histogram"))
				return i;
		}
	}
	return -1;
}

/* `label="value",...`: names valid, values quoted with only \\ \" \n
 * escapes. */
static bool labels_ok(const char *l)
{
	while (*l) {
		const char *eq = strchr(l, '=');
		if (!eq || !is_name(l, (size_t)(eq - l), false) || eq[1] != '"')
			return false;
		l = eq + 2;
		while (*l && *l != '"') {
			if (*l == '\\' && (l[1] == '\\' || l[1] == '"' || l[1] == 'n'))
				l++;
			else if (*l == '\\' || *l == '\n')
				return false;
			l++;
		}
		if (*l != '"')
			return false;
		l++;
		if (*l == ',')
			l++;
		else if (*l)
			return false;
	}
	return true;
}

static bool value_ok(const char *v, double *out)
{
	char *end;

	if (!strcmp(v, "+Inf") || !strcmp(v, "-Inf") || !strcmp(v, "NaN")) {
		*out = !strcmp(v, "NaN") ? NAN : v[0] == '-' ? -INFINITY : INFINITY;
		return true;
	}
	*out = strtod(v, &end);
	return end != v && *end == '\0';
}

/* One sample line into e; false with why. */
static bool parse_sample(struct expo *e, char *line, char *why, size_t wlen)
{
	struct sample *s = &e->s[e->ns];
	char *sp = strrchr(line, ' '), *brace = strchr(line, '{');
	size_t nlen;

	if (!sp || e->ns == MAX_SAMPLES) {
		snprintf(why, wlen, "not a sample");
		return false;
	}
	*sp = '\0';
	if (brace && brace < sp) {
		size_t ll = strlen(brace + 1);
		if (ll == 0 || brace[ll] != '}' || ll > sizeof s->labels) {
			snprintf(why, wlen, "labels not closed");
			return false;
		}
		snprintf(s->labels, sizeof s->labels, "%.*s", (int)ll - 1, brace + 1);
		nlen = (size_t)(brace - line);
	} else {
		s->labels[0] = '\0';
		nlen = strlen(line);
	}
	if (nlen >= sizeof s->name || !is_name(line, nlen, true) || !labels_ok(s->labels) ||
	    !value_ok(sp + 1, &s->value)) {
		snprintf(why, wlen, "a bad name, labels or value");
		return false;
	}
	snprintf(s->name, sizeof s->name, "%.*s", (int)nlen, line);
	if ((s->family = family_of(e, s->name)) < 0) {
		snprintf(why, wlen, "%s has no TYPE before it", s->name);
		return false;
	}
	if (e->f[s->family].ended) {
		snprintf(why, wlen, "%s's lines are not together", s->name);
		return false;
	}
	if (!strcmp(e->f[s->family].type, "counter") && !ends_with(s->name, "_total")) {
		snprintf(why, wlen, "counter %s does not end in _total", s->name);
		return false;
	}
	for (int i = 0; i < e->ns; i++) {
		if (!strcmp(e->s[i].name, s->name) && !strcmp(e->s[i].labels, s->labels)) {
			snprintf(why, wlen, "%s{%s} twice", s->name, s->labels);
			return false;
		}
	}
	e->ns++;
	return true;
}

/* A "# HELP" or "# TYPE" line; false with why. */
static bool parse_comment(struct expo *e, char *line, int *cur, char *why, size_t wlen)
{
	static const char *const types[] = { "counter", "gauge", "histogram", "summary", "untyped" };
	bool help = !strncmp(line, "# HELP ", 7), type = !strncmp(line, "# TYPE ", 7);
	char *name = line + 7, *sp = strchr(name, ' ');
	int i;

	if ((!help && !type) || !sp || !is_name(name, (size_t)(sp - name), true) ||
	    (size_t)(sp - name) >= sizeof e->f[0].name) {
		snprintf(why, wlen, "a comment that is not HELP or TYPE");
		return false;
	}
	*sp = '\0';
	if ((i = family_find(e, name)) < 0) {
		if (e->nf == MAX_FAMILIES) {
			snprintf(why, wlen, "too many families");
			return false;
		}
		i = e->nf++;
		snprintf(e->f[i].name, sizeof e->f[i].name, "%s", name);
	} else if (i != *cur || (type && e->f[i].type[0]) || (help && e->f[i].help)) {
		snprintf(why, wlen, "%s: a second HELP or TYPE, or after its samples", name);
		return false;
	}
	if (*cur >= 0 && *cur != i)
		e->f[*cur].ended = true;
	*cur = i;
	if (help) {
		e->f[i].help = true;
		return true;
	}
	for (size_t k = 0; k < sizeof types / sizeof types[0]; k++)
		if (!strcmp(sp + 1, types[k]))
			snprintf(e->f[i].type, sizeof e->f[i].type, "%s", types[k]);
	if (!e->f[i].type[0]) {
		snprintf(why, wlen, "%s: unknown type '%s'", name, sp + 1);
		return false;
	}
	return true;
}

/* Each histogram's series (its labels less le): buckets in increasing le,
 * cumulative, the last +Inf, equal to _count; _sum there. */
static bool histograms_ok(const struct expo *e, char *why, size_t wlen)
{
	for (int i = 0; i < e->ns; i++) {
		const struct sample *s = &e->s[i];
		const struct family *f = &e->f[s->family];
		char series[256], want[300], lebuf[32];
		double prev_le = -INFINITY, prev = 0, inf = NAN;
		bool sum = false, count = false;

		if (strcmp(f->type, "histogram") || !ends_with(s->name, "_count"))
			continue;
		snprintf(series, sizeof series, "%s", s->labels);
		for (int j = 0; j < e->ns; j++) {
			const struct sample *b = &e->s[j];
			const char *le;
			double lev;

			if (b->family != s->family)
				continue;
			if (ends_with(b->name, "_sum") && !strcmp(b->labels, series))
				sum = true;
			if (ends_with(b->name, "_count") && !strcmp(b->labels, series))
				count = true;
			if (!ends_with(b->name, "_bucket") || !(le = strstr(b->labels, "le=\"")))
				continue;
			snprintf(want, sizeof want, "%s%sle=", series, series[0] ? "," : "");
			if (strncmp(b->labels, want, strlen(want)))
				continue;
			snprintf(lebuf, sizeof lebuf, "%.*s", (int)strcspn(le + 4, "\""), le + 4);
			if (!value_ok(lebuf, &lev) || lev <= prev_le ||
			    b->value < prev) {
				snprintf(why, wlen, "%s{%s}: not increasing, or not cumulative", b->name,
					 b->labels);
				return false;
			}
			prev_le = lev;
			prev = b->value;
			if (isinf(lev))
				inf = b->value;
		}
		if (isnan(inf) || inf != s->value || !sum || !count) {
			snprintf(why, wlen, "%s{%s}: no +Inf bucket, or it is not _count (%g), or no _sum",
				 s->name, series, s->value);
			return false;
		}
	}
	return true;
}

/* Parses body strictly into e. Returns true, or false having said why
 * (with the line) through diag. */
static bool expo_parse(const char *body, size_t len, struct expo *e)
{
	char *text = strndup(body, len), *line = text, *nl, why[1024] = "";
	int cur = -1, lineno = 0;
	bool good = len > 0 && body[len - 1] == '\n';

	memset(e, 0, sizeof *e);
	if (!good)
		snprintf(why, sizeof why, "the text does not end with a newline");
	for (; good && (nl = strchr(line, '\n')); line = nl + 1) {
		char copy[512];

		*nl = '\0';
		lineno++;
		snprintf(copy, sizeof copy, "%s", line);
		if (line[0] == '#') {
			good = parse_comment(e, line, &cur, why, sizeof why);
		} else {
			good = parse_sample(e, line, why, sizeof why);
			if (good && e->s[e->ns - 1].family != cur) {
				snprintf(why, sizeof why, "a sample of %s under the TYPE of another family",
					 e->s[e->ns - 1].name);
				good = false;
			}
		}
		if (!good)
			diag("metrics line %d: %s: %s", lineno, why, copy);
	}
	if (good && !(good = histograms_ok(e, why, sizeof why)))
		diag("metrics: %s", why);
	free(text);
	return good;
}

/* The value of name{labels}, or NAN when there is none. */
static double val(const struct expo *e, const char *name, const char *labels)
{
	for (int i = 0; i < e->ns; i++)
		if (!strcmp(e->s[i].name, name) && !strcmp(e->s[i].labels, labels))
			return e->s[i].value;
	return NAN;
}

/* As an integer for is() and cmp_ok(): -1000000 stands for "none". */
static long long ival(double v)
{
	return isnan(v) || isinf(v) ? -1000000 : (long long)v;
}

/* Scrapes /metrics into *e; bails out unless it is a 200 that parses. */
static void scrape(struct expo *e)
{
	struct reply r;

	if (get("/metrics", &r) < 0 || r.status != 200) {
		harness_dump_log(&h, 60);
		bail_out("GET /metrics: status %d", r.status);
	}
	if (!expo_parse(r.body, r.body_len, e))
		bail_out("the exposition does not parse (above)");
	reply_free(&r);
}

/* ---- parts ------------------------------------------------------------------------ */

/* The family names docs/METRICS.md lists (lines "| `gorod_...` |"). */
static int documented(char names[][128], int max)
{
	const char *path = getenv("GORO_METRICS_DOC");
	char line[1024];
	int n = 0;
	FILE *f;

	if (!path || !(f = fopen(path, "r")))
		bail_out("$GORO_METRICS_DOC must name docs/METRICS.md");
	while (fgets(line, sizeof line, f) && n < max)
		if (!strncmp(line, "| `gorod_", 9))
			snprintf(names[n++], 128, "%.*s", (int)strcspn(line + 3, "`"), line + 3);
	fclose(f);
	return n;
}

static void test_format(void)
{
	static struct expo e;
	static char doc[MAX_FAMILIES][128];
	struct reply r;
	int nd, missing = 0, extra = 0;
	char l[32];

	is(get("/metrics", &r), 0, "format: GET /metrics answers HTTP");
	is(r.status, 200, "format: 200");
	ok(r.headers && strstr(r.headers, "Content-Type: text/plain; version=0.0.4"),
	   "format: Content-Type text/plain; version=0.0.4");
	ok(expo_parse(r.body, r.body_len, &e), "format: the exposition parses strictly (%d families, "
	   "%d samples)", e.nf, e.ns);
	reply_free(&r);

	nd = documented(doc, MAX_FAMILIES);
	cmp_ok(nd, >=, 25, "format: docs/METRICS.md lists %d families", nd);
	for (int i = 0; i < nd; i++)
		if (family_find(&e, doc[i]) < 0 && ++missing)
			diag("documented, not served: %s", doc[i]);
	for (int i = 0; i < e.nf; i++) {
		bool found = false;
		for (int j = 0; j < nd; j++)
			found = found || !strcmp(doc[j], e.f[i].name);
		if (!found && ++extra)
			diag("served, not documented: %s", e.f[i].name);
		if (!e.f[i].help && ++extra)
			diag("no HELP: %s", e.f[i].name);
	}
	is(missing, 0, "format: every documented family is served");
	is(extra, 0, "format: every family served is documented, with a HELP line");

	is(ival(val(&e, "gorod_build_info", "version=\"0.1.0\"")), 1, "format: gorod_build_info");
	cmp_ok(ival(val(&e, "gorod_maxprocs", "")), >=, 1, "format: gorod_maxprocs");
	snprintf(l, sizeof l, "queue=\"p%d\"", (int)val(&e, "gorod_maxprocs", "") - 1);
	ok(!isnan(val(&e, "gorod_runqueue_length", "queue=\"global\"")) &&
	   !isnan(val(&e, "gorod_runqueue_length", l)), "format: a run queue per worker, and the global one");
	cmp_ok(ival(val(&e, "gorod_goroutines", "state=\"waiting\"")), >=, 3,
	       "format: goroutines waiting (main, accept loop, session, ...)");
	cmp_ok(ival(val(&e, "gorod_goroutines", "state=\"running\"")), >=, 1,
	       "format: one running at least (the scrape's own)");
	is(ival(val(&e, "gorod_sessions", "")), 1, "format: gorod_sessions 1 (the test's)");
	cmp_ok(ival(val(&e, "gorod_requests_total", "")), >=, 1, "format: gorod_requests_total");
	cmp_ok(ival(val(&e, "gorod_resident_memory_bytes", "")), >, 1 << 20,
	       "format: gorod_resident_memory_bytes");
	is(ival(val(&e, "gorod_leaks", "kind=\"definite\"")), 0, "format: no leak at rest");
}

/* The count of kind's observations in histogram name, and of those over
 * le (one of its bounds). */
static double hcount(const struct expo *e, const char *name, const char *kind)
{
	char n[128], l[64];

	snprintf(n, sizeof n, "%s_count", name);
	snprintf(l, sizeof l, "kind=\"%s\"", kind);
	return val(e, n, l);
}

static double hover(const struct expo *e, const char *name, const char *kind, const char *le)
{
	char n[128], l[96];

	snprintf(n, sizeof n, "%s_bucket", name);
	snprintf(l, sizeof l, "kind=\"%s\",le=\"%s\"", kind, le);
	return hcount(e, name, kind) - val(e, n, l);
}

static void test_locks(void)
{
	static struct expo a, b;
	static const char *const kinds[] = { "mutex", "rwmutex_read", "sem" };
	int fails = 0;

	scrape(&a);
	for (int i = 0; i < NPAIRS; i++) {
		fails += goro_mutex_lock(c, "mx.w", GORO_WRITE, WAIT_MS, 0, NULL) < 0;
		fails += goro_mutex_unlock(c, "mx.w", 0, 0) < 0;
		fails += goro_mutex_lock(c, "mx.r", GORO_READ, WAIT_MS, 0, NULL) < 0;
		fails += goro_mutex_unlock(c, "mx.r", 0, 0) < 0;
		fails += goro_sem_acquire(c, "mx.s", 2, 1, WAIT_MS, 0, NULL) < 0;
		fails += goro_sem_release(c, "mx.s", 0, 0) < 0;
	}
	is(fails, 0, "locks: %d lock/unlock pairs each of a write lock, a read lock, a semaphore",
	   NPAIRS);
	scrape(&b);
	for (int k = 0; k < 3; k++) {
		cmp_ok(ival(hcount(&b, "gorod_lock_wait_seconds", kinds[k]) -
				   hcount(&a, "gorod_lock_wait_seconds", kinds[k])), >=, NPAIRS,
		       "locks: gorod_lock_wait_seconds_count{kind=\"%s\"} grew by %d at least", kinds[k],
		       NPAIRS);
		cmp_ok(ival(hcount(&b, "gorod_lock_hold_seconds", kinds[k]) -
				   hcount(&a, "gorod_lock_hold_seconds", kinds[k])), >=, NPAIRS,
		       "locks: gorod_lock_hold_seconds_count{kind=\"%s\"} grew by %d at least", kinds[k],
		       NPAIRS);
	}
	is(ival(hover(&b, "gorod_lock_wait_seconds", "mutex", "0.01") -
		hover(&a, "gorod_lock_wait_seconds", "mutex", "0.01")), 0,
	   "locks: uncontended, none waited over 10 ms");
}

struct lock_reply {
	bool done;
	int err;
};

static void on_reply(void *arg, int err, const struct goro_reply *rep)
{
	struct lock_reply *x = arg;

	x->done = true;
	x->err = err;
}

static void test_contended(void)
{
	static struct expo a, b;
	struct lock_reply rep = { 0 };
	struct goro_grant g;
	goro_client *w, *d;
	char *json;

	if (goro_connect(h.sock, &w) < 0 || goro_connect(h.sock, &d) < 0)
		bail_out("connect");
	scrape(&a);
	is(goro_mutex_lock(c, "mx.c", GORO_WRITE, WAIT_MS, 0, NULL), 0, "contended: the test locks mx.c");
	is(goro_send_mutex_lock(w, "mx.c", GORO_WRITE, WAIT_MS, 0, on_reply, &rep), 0,
	   "contended: another session asks for it");
	/* Its stats reply comes after the lock request was handled: queued. */
	is(goro_stats_json(w, &json), 0, "contended: a later request on it is answered");
	free(json);
	ok(!rep.done, "contended: so the lock request waits in gorod");
	usleep(HOLD_MS * 1000); /* the hold being measured, not a wait for an event */
	is(goro_mutex_unlock(c, "mx.c", 0, 0), 0, "contended: the test unlocks after %d ms", HOLD_MS);
	is(harness_process_until(w, &rep.done, WAIT_MS), 0, "contended: the waiter gets its reply");
	is(rep.err, 0, "contended: it is granted the lock");
	is(goro_mutex_unlock(w, "mx.c", 0, 0), 0, "contended: and unlocks");

	/* A holder that goes away releases too: its hold is counted. */
	is(goro_mutex_lock(d, "mx.d", GORO_WRITE, WAIT_MS, 0, NULL), 0, "contended: a third session "
	   "locks mx.d");
	goro_close(d);
	is(harness_wait_stat(c, "sessions_count", 2, WAIT_MS), 0, "contended: and disconnects");
	scrape(&b);
	cmp_ok(ival(hover(&b, "gorod_lock_wait_seconds", "mutex", "0.01") -
			   hover(&a, "gorod_lock_wait_seconds", "mutex", "0.01")), >=, 1,
	       "contended: a wait landed above the 10 ms bucket");
	cmp_ok(ival(hover(&b, "gorod_lock_hold_seconds", "mutex", "0.01") -
			   hover(&a, "gorod_lock_hold_seconds", "mutex", "0.01")), >=, 1,
	       "contended: so did the hold");
	cmp_ok(ival(1000 * (val(&b, "gorod_lock_wait_seconds_sum", "kind=\"mutex\"") -
			    val(&a, "gorod_lock_wait_seconds_sum", "kind=\"mutex\""))), >=, HOLD_MS,
	       "contended: _sum grew by the wait at least (in ms)");
	is(ival(hcount(&b, "gorod_lock_hold_seconds", "mutex") -
		       hcount(&a, "gorod_lock_hold_seconds", "mutex")), 3,
	   "contended: three holds ended: the test's, the waiter's, the dead session's");
	goro_close(w);
	is(harness_wait_stat(c, "sessions_count", 1, WAIT_MS), 0, "contended: the sessions end");
	/* gorod keeps mx.d's owner-died mark for its next user: be that. */
	is(goro_mutex_lock(c, "mx.d", GORO_WRITE, WAIT_MS, 0, &g), 0, "contended: lock mx.d again");
	ok(g.owner_died, "contended: told its owner died");
	is(goro_mutex_unlock(c, "mx.d", 0, 0), 0, "contended: unlock it");
}

static void test_tasks(void)
{
	static struct expo a, b;
	struct goro_spawn sp = { .func = "noop" };
	int fails = 0;

	scrape(&a);
	for (int i = 0; i < NTASKS; i++) {
		struct goro_outcome o;
		uint64_t id;
		if (goro_spawn(c, &sp, &id) < 0 || goro_wait(c, id, WAIT_MS, &o) < 0 ||
		    o.state != GORO_TASK_EXITED)
			fails++;
		goro_outcome_clear(&o);
	}
	is(fails, 0, "tasks: %d noop tasks spawned, each exited", NTASKS);
	scrape(&b);
	is(ival(val(&b, "gorod_tasks_spawned_total", "") -
		       val(&a, "gorod_tasks_spawned_total", "")), NTASKS,
	   "tasks: gorod_tasks_spawned_total grew by exactly %d", NTASKS);
	is(ival(val(&b, "gorod_tasks_finished_total", "outcome=\"exited\"") -
		       val(&a, "gorod_tasks_finished_total", "outcome=\"exited\"")), NTASKS,
	   "tasks: gorod_tasks_finished_total{outcome=\"exited\"} too");
	is(ival(val(&b, "gorod_tasks", "state=\"running\"")), 0, "tasks: none running now");
	ok(!isnan(val(&b, "gorod_tasks_finished_total", "outcome=\"leaked\"")),
	   "tasks: every outcome has its sample (leaked too)");
}

/* Scrapes until gorod_leaks{kind="definite"} is want, at most timeout_ms. */
static int wait_leaks(double want, int timeout_ms)
{
	static struct expo e;
	int64_t deadline = harness_now_ms() + timeout_ms, start = harness_now_ms();

	for (int pause = 1;; pause = pause < 20 ? pause * 2 : 20) {
		scrape(&e);
		if (val(&e, "gorod_leaks", "kind=\"definite\"") == want)
			return (int)(harness_now_ms() - start);
		if (harness_now_ms() >= deadline)
			return -ETIMEDOUT;
		usleep((useconds_t)pause * 1000);
	}
}

static void test_leak(void)
{
	static struct expo e;
	const char *goroctl = getenv("GOROCTL");
	const char *argv[] = { goroctl, "--socket", h.sock, "wg", "wait", "mx.leak", NULL };
	struct goro_spawn sp = { .argv = argv, .wg = "mx.leak" };
	struct goro_outcome o;
	uint64_t id = 0;
	int ms;

	if (!goroctl)
		bail_out("$GOROCTL must name goroctl");
	scrape(&e);
	is(goro_spawn(c, &sp, &id), 0, "leak: a task waits on its own WaitGroup (spawn --wg G -- "
	   "goroctl wg wait G)");
	ms = wait_leaks(1, FIND_MS);
	cmp_ok(ms, >=, 0, "leak: gorod_leaks{kind=\"definite\"} shows it (after %d ms)", ms);
	{
		static struct expo f;
		scrape(&f);
		cmp_ok(ival(val(&f, "gorod_leaks_found_total", "kind=\"definite\"") -
				   val(&e, "gorod_leaks_found_total", "kind=\"definite\"")), >=, 1,
		       "leak: gorod_leaks_found_total{kind=\"definite\"} counts it");
	}
	is(goro_kill(c, id, SIGKILL), 0, "leak: kill the task");
	is(goro_wait(c, id, WAIT_MS, &o), 0, "leak: it ends");
	goro_outcome_clear(&o);
	cmp_ok(wait_leaks(0, FIND_MS), >=, 0, "leak: and the finding goes away");
}

static void test_http(void)
{
	static struct expo e;
	size_t big = 64 * 1024;
	char *req = malloc(big + 64);
	struct reply r;
	long long v = -1;
	int idle = connect_metrics();

	is(get("/other", &r), 0, "http: GET /other answers");
	is(r.status, 404, "http: 404");
	reply_free(&r);
	is(get("/metrics/x", &r), 0, "http: GET /metrics/x answers");
	is(r.status, 404, "http: 404");
	reply_free(&r);
	snprintf(req, big, "POST /metrics HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi");
	is(http(req, strlen(req), &r), 0, "http: POST /metrics answers");
	is(r.status, 405, "http: 405");
	ok(r.headers && strstr(r.headers, "Allow: GET"), "http: Allow: GET");
	reply_free(&r);

	/* A request line over the limit, then a header: refused, and gorod
	 * keeps no more of it than the limit. */
	memcpy(req, "GET /", 5);
	memset(req + 5, 'a', big);
	memcpy(req + 5 + big, " HTTP/1.0\r\n\r\n", 14);
	http(req, big + 19, &r);
	ok(r.status != 200, "http: a 64 KiB request line is refused (status %d; 0: closed)", r.status);
	reply_free(&r);
	snprintf(req, big + 64, "GET /metrics HTTP/1.0\r\nX-Big: ");
	memset(req + strlen(req), 'b', big - 64);
	req[big - 30] = '\0';
	strcat(req, "\r\n\r\n");
	http(req, strlen(req), &r);
	ok(r.status != 200, "http: a 64 KiB header is refused (status %d)", r.status);
	reply_free(&r);
	for (size_t i = 0; i < 4096; i++)
		req[i] = (char)(i * 7 + 1);
	http(req, 4096, &r);
	ok(r.status != 200, "http: bytes that are not HTTP are refused (status %d)", r.status);
	reply_free(&r);

	is(harness_stat(c, "goroutines.live", &v), 0, "http: gorod still answers stats");
	scrape(&e);
	ok(1, "http: a scrape still works, while a connection that sent nothing is open");
	{
		char *rest = NULL;
		int64_t t0 = harness_now_ms();
		ssize_t n = read_all(idle, &rest, IDLE_CLOSE_MS);
		ok(n >= 0, "http: gorod closes the silent connection after %lld ms",
		   (long long)(harness_now_ms() - t0));
		free(rest);
	}
	close(idle);
	free(req);
}

/* Writes the configuration file gorod reads (--config): its metrics
 * line. */
static char conf[64];

static void write_conf(const char *metrics)
{
	FILE *f = fopen(conf, "w");

	if (!f || fprintf(f, "# test_metrics\nmetrics = %s\n", metrics) < 0 || fclose(f) != 0)
		bail_out("write %s: %s", conf, strerror(errno));
}

/* Waits at most timeout_ms for gorod's log to hold n lines that start
 * with prefix. */
static bool wait_log(const char *prefix, int n, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	for (int pause = 1; log_lines(prefix, NULL) < n; pause = pause < 20 ? pause * 2 : 20) {
		if (harness_now_ms() >= deadline)
			return false;
		usleep((useconds_t)pause * 1000);
	}
	return true;
}

/* Whether 127.0.0.1:p refuses connections, within timeout_ms. */
static bool refused(int p, int timeout_ms)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)p) };
	int64_t deadline = harness_now_ms() + timeout_ms;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int pause = 1;; pause = pause < 20 ? pause * 2 : 20) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int r = connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ? errno : 0;
		close(fd);
		if (r == ECONNREFUSED)
			return true;
		if (harness_now_ms() >= deadline)
			return false;
		usleep((useconds_t)pause * 1000);
	}
}

/* SIGHUP with another address in the file: the endpoint moves; with an
 * address in use, it stays. gorod's log lines are the events here (the
 * reload has no reply to wait for). */
static void test_reload(void)
{
	static struct expo e;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof sa;
	int old = metrics_port(), on = log_lines(METRICS_ON, NULL), busy, fd;
	char addr[64];

	write_conf("localhost:0");
	is(kill(h.pid, SIGHUP), 0, "reload: metrics = localhost:0 in the file, and SIGHUP");
	ok(wait_log(METRICS_ON, on + 1, WAIT_MS), "reload: gorod says where the metrics are now");
	port = 0;
	cmp_ok(metrics_port(), !=, old, "reload: on another port (%d, was %d)", port, old);
	scrape(&e);
	ok(1, "reload: the new address is scraped");
	ok(refused(old, WAIT_MS), "reload: the old one is closed");

	/* An address in use: a socket of the test's listens on it. */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 1) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0)
		bail_out("listen: %s", strerror(errno));
	busy = ntohs(sa.sin_port);
	snprintf(addr, sizeof addr, "127.0.0.1:%d", busy);
	write_conf(addr);
	is(kill(h.pid, SIGHUP), 0, "reload: an address in use (%s), and SIGHUP", addr);
	ok(wait_log("gorod: reload: metrics: cannot listen on", 1, WAIT_MS),
	   "reload: gorod says it cannot listen there");
	scrape(&e);
	ok(1, "reload: and still serves the address it had");
	close(fd);
}

static void test_bind(void)
{
	const char *gorod = getenv("GOROD");
	char sock[400], addr[64], err[4096];
	const char *argv[] = { gorod, "--socket", sock, "--metrics", addr, NULL };
	int r;

	snprintf(sock, sizeof sock, "%s/second.sock", h.dir);
	snprintf(addr, sizeof addr, "127.0.0.1:%d", metrics_port());
	r = harness_run(argv, NULL, 0, NULL, 0, err, sizeof err, WAIT_MS);
	is(r, 1, "bind: a gorod whose metrics port is in use exits 1");
	ok(strstr(err, "cannot listen on 127.0.0.1:") && strstr(err, "in use"),
	   "bind: and says why");
	if (!strstr(err, "in use"))
		diag("its stderr: %s", err);
	snprintf(addr, sizeof addr, "nonsense");
	r = harness_run(argv, NULL, 0, NULL, 0, err, sizeof err, WAIT_MS);
	is(r, 1, "bind: a gorod with --metrics nonsense exits 1");
	ok(strstr(err, "'nonsense' is not an address"), "bind: and says why");
	if (!strstr(err, "not an address"))
		diag("its stderr: %s", err);
	snprintf(addr, sizeof addr, "127.0.0.1:65536");
	r = harness_run(argv, NULL, 0, NULL, 0, err, sizeof err, WAIT_MS);
	is(r, 1, "bind: port 65536: exit 1");
	ok(access(sock, F_OK) < 0, "bind: and no socket left behind");
}

static void remove_conf(void)
{
	unlink(conf);
}

/* The parts, in order; `test_metrics NAME..` runs only those named. */
static const struct harness_part parts[] = {
	{ "format", test_format }, { "locks", test_locks }, { "contended", test_contended },
	{ "tasks", test_tasks },   { "leak", test_leak },   { "http", test_http },
	{ "reload", test_reload }, { "bind", test_bind },
};

int main(int argc, char **argv)
{
	const char *args[] = { "--config", conf, NULL };
	int fd;

	signal(SIGPIPE, SIG_IGN);
	unsetenv("GOROD_SOCKET");
	snprintf(conf, sizeof conf, "/tmp/gorod-metrics-XXXXXX");
	if ((fd = mkstemp(conf)) < 0)
		bail_out("mkstemp: %s", strerror(errno));
	close(fd);
	atexit(remove_conf); /* a bail_out too */
	write_conf("127.0.0.1:0");
	harness_run_parts(&h, &c, args, "with metrics = 127.0.0.1:0 in its --config file", parts,
			  sizeof parts / sizeof parts[0], argc, argv, WAIT_MS);
	harness_cleanup(&h);
	return done_testing();
}
