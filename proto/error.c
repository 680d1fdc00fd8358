/* error.c: the tables generated from GORO_ERR_MAP (include/goro/errors.h). */
#include <string.h>

#include "error.h"

struct err_row {
	int code;
	const char *name;
	const char *msg;
};

static const struct err_row err_rows[] = {
#define ERR_ROW_(name, value, msg) { -(value), #name, msg },
	GORO_ERR_MAP(ERR_ROW_)
#undef ERR_ROW_
};

static const struct err_row *err_find(int code)
{
	for (size_t i = 0; i < sizeof err_rows / sizeof err_rows[0]; i++)
		if (err_rows[i].code == code)
			return &err_rows[i];
	return NULL;
}

const char *proto_err_name(int code)
{
	const struct err_row *r = err_find(code);
	return r ? r->name : "EUNKNOWN";
}

const char *proto_strerror(int code)
{
	const struct err_row *r = err_find(code);
	return r ? r->msg : "unknown error";
}

int proto_err_from_name(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof err_rows / sizeof err_rows[0]; i++)
		if (strlen(err_rows[i].name) == len &&
		    memcmp(err_rows[i].name, name, len) == 0)
			return err_rows[i].code;
	return 0;
}
