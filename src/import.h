/*
 * import: bulk import of users (otloginctl user import), the migration path from Transmit.
 * Reads users as JSON Lines (one users-API User object a line, as Transmit's user export
 * gives them) or as CSV with a header line, and creates them with user_create_imported_txn
 * (the users API's checks and indexes), many to a transaction.
 *
 * Resumable: a record whose identifiers already belong to the user it describes is counted
 * "already imported" and not created again, so running the same file again after a crash (or
 * twice) creates every user exactly once. A record is that user when every identifier it
 * carries (email, phone_number, username) and its user_id when it has one lead to the same
 * stored user, and: that user has the record's user_id (when the record has one), else the
 * record's external_account_id (when it has one), else exactly the record's identifiers.
 * Any other record one of whose identifiers is taken is a duplicate.
 */
#ifndef OTLOGIN_IMPORT_H
#define OTLOGIN_IMPORT_H

#include <jansson.h>
#include <stdio.h>

#include "store.h"

enum import_format { IMPORT_JSONL, IMPORT_CSV };

/* Why a record was skipped. */
enum import_reason {
	IMPORT_DUPLICATE,      /* an identifier (or the user_id) belongs to another user */
	IMPORT_INVALID,	       /* the users API refuses it: address, number, a member's type... */
	IMPORT_MALFORMED,      /* not a JSON object / not a CSV record of the header's width */
	IMPORT_UNKNOWN_MEMBER, /* a member this import does not know (JSON Lines) */
	IMPORT_REASONS
};

/* The name of a reason as the summary spells it ("duplicate", ...). */
const char *import_reason_name(enum import_reason r);

/* The format a file name's extension names (.jsonl, .ndjson, .json; .csv): 0, or -1. */
int import_format_of(const char *path, enum import_format *fmt);

struct import_opts {
	enum import_format format;
	size_t batch;	/* records per transaction (IMPORT_BATCH when 0) */
	FILE *report;	/* one line per skipped record, with its line number */
	FILE *progress; /* NULL, or one line after each committed transaction */
};

/* Records per transaction by default: see bench/README.md ("Bulk import") for the choice. */
#define IMPORT_BATCH 1000

struct import_stats {
	unsigned long records, created, already, skipped, by_reason[IMPORT_REASONS];
};

/*
 * Import every record of in into s. Returns 0 when the input was read to its end (skipped
 * records are in st and on o->report), or -1 with a message in err: the input could not be
 * read, a CSV header names an unknown or repeated column, or the store failed. The
 * transactions committed before a failure stay; running the import again resumes it.
 */
int import_users(struct store *s, FILE *in, const struct import_opts *o, struct import_stats *st,
		 char *err, size_t errlen);

/*
 * The summary as {"records", "created", "already_imported", "skipped", "by_reason"}: a new
 * reference, or NULL when out of memory.
 */
json_t *import_summary(const struct import_stats *st);

/*
 * One JSON Lines record (len bytes, no newline) as the spec user_create_imported_txn takes,
 * a new reference in *spec; or a reason with a message in err. Exposed for the unit tests.
 */
int import_jsonl_spec(const char *line, size_t len, json_t **spec, char *err, size_t errlen);
#define IMPORT_OK (-1)

#endif
