/* config.h: gorod's settings, from its command line and its configuration
 * file (config.c). */
#ifndef GORO_CONFIG_H
#define GORO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quota.h"
#include "task.h"

struct config {
	char *socket;        /* NULL: the default path (server.c) */
	char *module_dir;    /* NULL: no modules */
	char *metrics;       /* HOST:PORT, or NULL: no metrics endpoint */
	char *state_dir;     /* the task journal's directory, or NULL: none */
	int maxprocs;        /* 0: the CPUs this process may use */
	struct task_config task;
	struct quota_limits quota; /* per-user limits (quota.c) */
};

/* Where the configuration file is: --config, else
 * $CONFIGURATION_DIRECTORY/gorod.conf (systemd), else /etc/gorod/gorod.conf
 * for root, else $XDG_CONFIG_HOME/gorod/gorod.conf (~/.config/...). */
extern const char *config_path;

/* Reads the command line and then the file into *cf (flags win over the
 * file). Returns 0, 1 when gorod should exit 0 at once (--help,
 * --version), or -EINVAL having printed what is wrong. */
int config_load(int argc, char **argv, struct config *cf);

/* Reads the file again, under the same command line, into a fresh *cf.
 * On an error (said in err) *cf holds nothing to free. */
int config_reload(struct config *cf, char *err, size_t errlen);

void config_free(struct config *cf);

#endif /* GORO_CONFIG_H */
