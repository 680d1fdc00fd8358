/* notify.h: telling the service manager how gorod is (notify.c). */
#ifndef GORO_NOTIFY_H
#define GORO_NOTIFY_H

#include <stdbool.h>

/* The name gorod's own listening socket has in systemd's fd store. */
#define NOTIFY_FDNAME "gorod-listen"

/* READY=1 with a STATUS= line for the socket at path (kept: it must live
 * until notify_stopping), then the STATUS= refresher and, when WatchdogSec
 * is set, the watchdog. Main goroutine. */
int notify_ready(const char *path);

void notify_reloading(void);
/* READY=1 again; outcome (or NULL) leads the STATUS= line. */
void notify_reloaded(const char *outcome);
/* STOPPING=1; stops the refresher and the watchdog. */
void notify_stopping(void);

/* Puts the listening socket in systemd's fd store; whether it took it. */
bool notify_store_listener(int fd);
/* Takes it out again (a stored socket gorod will not serve). */
void notify_forget_listener(void);

#endif /* GORO_NOTIFY_H */
