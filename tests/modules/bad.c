/* bad.c: two gorod modules that must not load, for test_tasks_func.c.
 *
 * Built twice (tests/meson.build): bad_init.so, whose goro_module_init()
 * registers a function and then refuses with -EINVAL; and, with
 * -DBAD_NO_INIT, bad_noinit.so, which has no goro_module_init at all.
 * gorod given either in its --module-dir must refuse to start, with a
 * message that names the module; nothing of it may stay registered. */
#include <errno.h>

#include "goro/module.h"

static int bad_func(struct goro_task *t, const struct goro_value *args, size_t nargs)
{
	return goro_task_fail(t, -EIO, "bad.func must never run");
}

#ifndef BAD_NO_INIT
int goro_module_init(struct goro_module *m);

int goro_module_init(struct goro_module *m)
{
	goro_func_register(m, "bad.func", bad_func);
	return -EINVAL;
}
#else
/* Not the entry point gorod looks for. */
int goro_module_start(struct goro_module *m);

int goro_module_start(struct goro_module *m)
{
	return goro_func_register(m, "bad.func", bad_func);
}
#endif
