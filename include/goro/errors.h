/* goro/errors.h: the one table of gorod's error codes.
 *
 * Every gorod function returns 0 (or a count) on success and a negative code
 * on failure. Most codes are plain errno values; the few conditions that have
 * no errno (a WaitGroup counter that would go negative, a lock whose previous
 * owner died) get codes above GORO_ERR_BASE so that they never collide.
 *
 * The table below is declared once, as an X-macro, and generates the enum,
 * goro_strerror(), goro_err_name() and the stable strings on the wire
 * (libuv's error map). Each row is X(NAME, value, message); the wire string
 * is the name itself ("EINVAL", "ENEGATIVE", ...). */
#ifndef GORO_ERRORS_H
#define GORO_ERRORS_H

#include <errno.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GORO_ERR_BASE 4096

#define GORO_ERRNO_MAP(X)                                                     \
	X(EPERM, EPERM, "operation not permitted")                            \
	X(ENOENT, ENOENT, "no such task or name")                             \
	X(ESRCH, ESRCH, "no such goroutine")                                  \
	X(EINTR, EINTR, "interrupted")                                        \
	X(EIO, EIO, "input/output error")                                     \
	X(EBADF, EBADF, "bad file descriptor")                                \
	X(EAGAIN, EAGAIN, "resource temporarily unavailable")                 \
	X(ENOMEM, ENOMEM, "out of memory")                                    \
	X(EACCES, EACCES, "permission denied")                                \
	X(EBUSY, EBUSY, "resource busy")                                      \
	X(EEXIST, EEXIST, "already exists")                                   \
	X(EINVAL, EINVAL, "invalid argument")                                 \
	X(ERANGE, ERANGE, "value out of range")                               \
	X(EDEADLK, EDEADLK, "resource deadlock would occur")                  \
	X(ENAMETOOLONG, ENAMETOOLONG, "name too long")                        \
	X(ENOSYS, ENOSYS, "not supported")                                    \
	X(EPROTO, EPROTO, "protocol error")                                   \
	X(EMSGSIZE, EMSGSIZE, "message too long")                             \
	X(ECONNREFUSED, ECONNREFUSED, "gorod is not running")                 \
	X(ECONNRESET, ECONNRESET, "connection reset by gorod")                \
	X(ENOTCONN, ENOTCONN, "not connected")                                \
	X(ETIMEDOUT, ETIMEDOUT, "timed out")                                  \
	X(ECANCELED, ECANCELED, "operation canceled")                         \
	X(EOWNERDEAD, EOWNERDEAD, "previous owner died")                      \
	X(E2BIG, E2BIG, "argument list too long")                             \
	X(ENOEXEC, ENOEXEC, "exec format error")                              \
	X(ECHILD, ECHILD, "no child processes")                               \
	X(ENOTDIR, ENOTDIR, "not a directory")                                \
	X(EISDIR, EISDIR, "is a directory")                                   \
	X(ENFILE, ENFILE, "too many open files in system")                    \
	X(EMFILE, EMFILE, "too many open files")                              \
	X(ETXTBSY, ETXTBSY, "text file busy")                                 \
	X(ENOSPC, ENOSPC, "no space left on device")                          \
	X(EPIPE, EPIPE, "broken pipe")                                        \
	X(ELOOP, ELOOP, "too many levels of symbolic links")                  \
	X(ENOTSUP, ENOTSUP, "operation not supported")                        \
	X(ENOTRECOVERABLE, ENOTRECOVERABLE, "state not recoverable")

/* Conditions without an errno of their own. Messages use Go's wording where
 * Go has one. */
#define GORO_OWN_MAP(X)                                                       \
	X(ENEGATIVE, GORO_ERR_BASE + 1, "negative WaitGroup counter")         \
	X(EWGMISUSE, GORO_ERR_BASE + 2,                                       \
	  "WaitGroup misuse: Add called concurrently with Wait")             \
	X(ENOTLOCKED, GORO_ERR_BASE + 3, "unlock of unlocked mutex")          \
	X(ENOTHELD, GORO_ERR_BASE + 4,                                        \
	  "release of semaphore without acquire")                             \
	X(ELOST, GORO_ERR_BASE + 5,                                           \
	  "what held the counter can no longer finish")

#define GORO_ERR_MAP(X) GORO_ERRNO_MAP(X) GORO_OWN_MAP(X)

enum goro_err {
#define GORO_ERR_ENUM_(name, value, msg) GORO_##name = -(value),
	GORO_ERR_MAP(GORO_ERR_ENUM_)
#undef GORO_ERR_ENUM_
};

#ifdef __cplusplus
}
#endif

#endif /* GORO_ERRORS_H */
