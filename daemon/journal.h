/* journal.h: durable task records (journal.c). */
#ifndef GORO_JOURNAL_H
#define GORO_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>

struct task;

/* The most of each stream an end record keeps (its last bytes). */
#define JOURNAL_OUTPUT_MAX (1u << 20)

/* Main goroutine, before serving: opens (creating) dir/tasks.journal,
 * restores the tasks it records (task_restore; those without an end are
 * lost), rewrites it compacted, and starts the writer thread. dir NULL:
 * no journal, every call below does nothing. 0, or a negative code having
 * printed why. */
int journal_open(const char *dir);

/* Writes what is pending, stops the writer, closes the file. */
void journal_close(void);

/* Whether spawns may be accepted: 0, or the error that broke the journal
 * (a failed write or sync), which a spawn then answers. */
int journal_error(void);

/* names_lock held: appends t's spawn record. Returns the sequence number
 * to wait for before acknowledging the spawn (0: no journal). */
uint64_t journal_spawned(const struct task *t);

/* t has ended (state and outcome final; names_lock NOT held, its output
 * locks taken here): appends its end record with the last of its output.
 * Not waited for: written with the next group. */
void journal_ended(struct task *t);

/* Goroutine: parks until record seq is on disk. 0, or -EIO when the
 * journal broke first. */
int journal_wait(uint64_t seq);

#endif /* GORO_JOURNAL_H */
