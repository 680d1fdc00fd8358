/* error.h: names and messages for the codes of include/goro/errors.h. */
#ifndef GORO_PROTO_ERROR_H
#define GORO_PROTO_ERROR_H

#include "goro/errors.h"

/* "EINVAL" for -EINVAL, ...; "EUNKNOWN" for a code not in the table. */
const char *proto_err_name(int code);

/* A sentence for a negative code; "unknown error" for one not in the table. */
const char *proto_strerror(int code);

/* The code for a wire name ("EDEADLK" -> -EDEADLK); 0 when unknown. */
int proto_err_from_name(const char *name, size_t len);

#endif
