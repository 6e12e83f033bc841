#include "import.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "user.h"

static const char *const reason_names[IMPORT_REASONS] = {"duplicate", "invalid", "malformed",
							 "unknown_member"};

/* Outcomes of a record beyond the skip reasons. */
enum { OUT_CREATED = IMPORT_REASONS, OUT_ALREADY, OUT_PENDING };

const char *import_reason_name(enum import_reason r)
{
	return r < IMPORT_REASONS ? reason_names[r] : "unknown";
}

int import_format_of(const char *path, enum import_format *fmt)
{
	static const struct {
		const char *ext;
		enum import_format fmt;
	} exts[] = {{".jsonl", IMPORT_JSONL},
		    {".ndjson", IMPORT_JSONL},
		    {".json", IMPORT_JSONL},
		    {".csv", IMPORT_CSV}};
	size_t len = strlen(path);

	for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
		size_t n = strlen(exts[i].ext);
		if (len > n && strcasecmp(path + len - n, exts[i].ext) == 0) {
			*fmt = exts[i].fmt;
			return 0;
		}
	}
	return -1;
}

/* ---- JSON Lines ---------------------------------------------------------------------------- */

/*
 * The User object's members. KEEP: handed to user_create_imported_txn as they are (it checks
 * them); CHANNEL: {value, <name>_verified, verified_at}, flattened; IGNORE: what otlogin sets
 * itself at the import (timestamps of changes, the last login) or does not import
 * (organization memberships belong to another system's organizations).
 */
enum member_use { KEEP, CHANNEL, IGNORE };
static const struct {
	const char *name;
	enum member_use use;
} members[] = {
    {"user_id", KEEP},
    {"email", CHANNEL},
    {"phone_number", CHANNEL},
    {"username", KEEP},
    {"status", KEEP},
    {"name", KEEP},
    {"custom_data", KEEP},
    {"external_account_id", KEEP},
    {"roles", KEEP},
    {"created_at", KEEP},
    {"status_changed_at", IGNORE},
    {"updated_at", IGNORE},
    {"last_auth", IGNORE},
    {"org_ids", IGNORE},
};

/* email / phone_number as the export gives it (object, or a plain string) into spec. */
static int channel_member(json_t *spec, const char *name, json_t *v, char *err, size_t errlen)
{
	char flag[40];
	const char *key;
	json_t *m;

	if (!json_is_object(v)) {
		/* A string, null, or a wrong type user_create_imported_txn refuses as invalid. */
		json_object_set(spec, name, v);
		return IMPORT_OK;
	}
	snprintf(flag, sizeof(flag), "%s_verified", name);
	json_object_foreach(v, key, m)
	{
		if (strcmp(key, "value") == 0)
			json_object_set(spec, name, m);
		else if (strcmp(key, flag) == 0)
			json_object_set(spec, flag, m);
		else if (strcmp(key, "verified_at") != 0) {
			snprintf(err, errlen, "unknown member \"%s.%.64s\"", name, key);
			return IMPORT_UNKNOWN_MEMBER;
		}
	}
	return IMPORT_OK;
}

int import_jsonl_spec(const char *line, size_t len, json_t **spec, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr), *v, *out = NULL;
	const char *key;
	int rc = IMPORT_MALFORMED;

	*spec = NULL;
	if (obj == NULL) {
		/* Jansson's text ends in "near '<token>'": the token may be an address. */
		char *near = strstr(jerr.text, " near ");
		if (near != NULL)
			*near = '\0';
		snprintf(err, errlen, "not JSON: %s (column %d)", jerr.text, jerr.column);
		goto out;
	}
	if (!json_is_object(obj)) {
		snprintf(err, errlen, "not a JSON object");
		goto out;
	}
	out = json_object();
	if (out == NULL)
		goto out;
	json_object_foreach(obj, key, v)
	{
		size_t i = 0;
		while (i < sizeof(members) / sizeof(members[0]) &&
		       strcmp(members[i].name, key) != 0)
			i++;
		if (i == sizeof(members) / sizeof(members[0])) {
			snprintf(err, errlen, "unknown member \"%.64s\"", key);
			rc = IMPORT_UNKNOWN_MEMBER;
			goto out;
		}
		if (members[i].use == KEEP)
			json_object_set(out, key, v);
		else if (members[i].use == CHANNEL &&
			 (rc = channel_member(out, key, v, err, errlen)) != IMPORT_OK)
			goto out;
	}
	*spec = out;
	out = NULL;
	rc = IMPORT_OK;
out:
	json_decref(out);
	json_decref(obj);
	return rc;
}

/* ---- CSV ----------------------------------------------------------------------------------- */

enum col_kind { COL_STRING, COL_BOOL, COL_INT, COL_OBJECT, COL_ROLES, COL_NAME, COL_IGNORE };
static const struct {
	const char *name, *member;
	enum col_kind kind;
} columns[] = {
    {"user_id", "user_id", COL_STRING},
    {"email", "email", COL_STRING},
    {"email_verified", "email_verified", COL_BOOL},
    {"phone_number", "phone_number", COL_STRING},
    {"phone_number_verified", "phone_number_verified", COL_BOOL},
    {"username", "username", COL_STRING},
    {"status", "status", COL_STRING},
    {"external_account_id", "external_account_id", COL_STRING},
    {"name.title", "title", COL_NAME},
    {"name.first_name", "first_name", COL_NAME},
    {"name.middle_name", "middle_name", COL_NAME},
    {"name.last_name", "last_name", COL_NAME},
    {"custom_data", "custom_data", COL_OBJECT},
    {"roles", "roles", COL_ROLES},
    {"created_at", "created_at", COL_INT},
    {"status_changed_at", NULL, COL_IGNORE},
    {"updated_at", NULL, COL_IGNORE},
    {"last_auth", NULL, COL_IGNORE},
};
#define NCOLUMNS (sizeof(columns) / sizeof(columns[0]))

/*
 * Split one CSV record (RFC 4180: quoted fields may hold commas, "" and line breaks) in place
 * into at most max fields. Returns the number of fields, or -1 when it is not well formed.
 */
static int csv_split(char *rec, char **fields, int max)
{
	char *r = rec, *w = rec;
	int n = 0;

	for (;;) {
		if (n == max)
			return -1;
		fields[n++] = w;
		if (*r == '"') {
			for (r++;; r++) {
				if (*r == '\0')
					return -1; /* an unclosed quote */
				if (*r == '"' && r[1] == '"')
					*w++ = *r++;
				else if (*r == '"')
					break;
				else
					*w++ = *r;
			}
			r++;
			if (*r != ',' && *r != '\0')
				return -1; /* text after the closing quote */
		} else {
			for (; *r != ',' && *r != '\0'; r++) {
				if (*r == '"')
					return -1; /* a quote inside an unquoted field */
				*w++ = *r;
			}
		}
		if (*r == '\0') {
			*w = '\0';
			return n;
		}
		*w++ = '\0';
		r++;
	}
}

/* The header's columns: index into columns[] of each field. */
struct csv_header {
	int col[NCOLUMNS];
	int n;
};

static int csv_header_parse(char *rec, struct csv_header *h, char *err, size_t errlen)
{
	char *fields[NCOLUMNS + 1];
	int n = csv_split(rec, fields, NCOLUMNS + 1);

	if (n < 0) {
		snprintf(err, errlen,
			 "CSV header: not a list of known column names (at most %zu, each once)",
			 NCOLUMNS);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		size_t c = 0;
		while (c < NCOLUMNS && strcmp(columns[c].name, fields[i]) != 0)
			c++;
		if (c == NCOLUMNS) {
			snprintf(err, errlen, "CSV header: unknown column \"%.64s\"", fields[i]);
			return -1;
		}
		for (int j = 0; j < i; j++)
			if (h->col[j] == (int)c) {
				snprintf(err, errlen, "CSV header: column \"%s\" given twice",
					 columns[c].name);
				return -1;
			}
		h->col[i] = (int)c;
	}
	h->n = n;
	return 0;
}

/* A CSV boolean (new reference): true/false (any case) or 1/0; other text stays a string. */
static json_t *csv_bool(const char *s)
{
	if (strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0)
		return json_true();
	if (strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0)
		return json_false();
	return json_string(s);
}

/* Roles (new reference): a JSON array, or names separated by ';', spaces around one dropped. */
static json_t *csv_roles(char *s)
{
	json_t *a;
	char *save = NULL;

	if (*s == '[') {
		a = json_loads(s, 0, NULL);
		return a ? a : json_string(s);
	}
	a = json_array();
	for (char *r = strtok_r(s, ";", &save); a && r; r = strtok_r(NULL, ";", &save)) {
		size_t n;
		r += strspn(r, " ");
		for (n = strlen(r); n > 0 && r[n - 1] == ' '; n--)
			r[n - 1] = '\0';
		if (*r != '\0' && json_array_append_new(a, json_string(r)) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

/*
 * A cell as the member its column names (new reference, NULL when not UTF-8). What does not
 * parse as its kind stays a string, which user_create_imported_txn refuses as invalid.
 */
static json_t *csv_value(enum col_kind kind, char *s)
{
	json_t *v;
	size_t digits = strspn(s, "0123456789");

	switch (kind) {
	case COL_BOOL:
		return csv_bool(s);
	case COL_INT:
		return digits > 0 && digits < 19 && s[digits] == '\0'
			   ? json_integer(strtoll(s, NULL, 10))
			   : json_string(s);
	case COL_OBJECT:
		v = json_loads(s, JSON_REJECT_DUPLICATES, NULL);
		return v ? v : json_string(s);
	case COL_ROLES:
		return csv_roles(s);
	default:
		return json_string(s);
	}
}

/* One CSV record as a spec (as import_jsonl_spec). rec is changed. */
static int csv_spec(char *rec, const struct csv_header *h, json_t **spec, char *err, size_t errlen)
{
	char *fields[NCOLUMNS + 1];
	int n = csv_split(rec, fields, NCOLUMNS + 1);
	json_t *out, *v;

	*spec = NULL;
	if (n != h->n) {
		if (n < 0)
			snprintf(err, errlen, "not a well-formed CSV record");
		else
			snprintf(err, errlen, "%d fields where the header has %d", n, h->n);
		return IMPORT_MALFORMED;
	}
	out = json_object();
	for (int i = 0; out != NULL && i < n; i++) {
		enum col_kind kind = columns[h->col[i]].kind;
		const char *member = columns[h->col[i]].member;
		if (fields[i][0] == '\0' || kind == COL_IGNORE)
			continue; /* an empty cell: the member is absent */
		v = csv_value(kind, fields[i]);
		if (v == NULL) {
			snprintf(err, errlen, "column %s is not UTF-8", columns[h->col[i]].name);
			json_decref(out);
			return IMPORT_MALFORMED;
		}
		if (kind == COL_NAME) {
			json_t *name = json_object_get(out, "name");
			if (name == NULL)
				json_object_set_new(out, "name", name = json_object());
			json_object_set_new(name, member, v);
		} else {
			json_object_set_new(out, member, v);
		}
	}
	*spec = out;
	return out ? IMPORT_OK : IMPORT_MALFORMED;
}

/* ---- reading records ----------------------------------------------------------------------- */

struct reader {
	FILE *in;
	enum import_format fmt;
	char *line, *rec;
	size_t linecap, reccap, reclen;
	unsigned long lineno, start; /* lines read; the line the current record starts on */
};

/* Append one physical line (without its end) to the record; 1, 0 at the end, -1 on error. */
static int read_line(struct reader *r, int continued)
{
	ssize_t n = getline(&r->line, &r->linecap, r->in);

	if (n < 0)
		return ferror(r->in) ? -1 : 0;
	r->lineno++;
	while (n > 0 && (r->line[n - 1] == '\n' || r->line[n - 1] == '\r'))
		r->line[--n] = '\0';
	if (r->lineno == 1 && n >= 3 && memcmp(r->line, "\xEF\xBB\xBF", 3) == 0) {
		memmove(r->line, r->line + 3, (size_t)n - 2); /* a UTF-8 byte order mark */
		n -= 3;
	}
	if (r->reclen + (size_t)n + 2 > r->reccap) {
		size_t cap = (r->reclen + (size_t)n + 2) * 2;
		char *p = realloc(r->rec, cap);
		if (p == NULL)
			return -1;
		r->rec = p;
		r->reccap = cap;
	}
	if (continued)
		r->rec[r->reclen++] = '\n'; /* a line break inside a quoted CSV field */
	memcpy(r->rec + r->reclen, r->line, (size_t)n + 1);
	r->reclen += (size_t)n;
	return 1;
}

/*
 * 1 when a CSV record's text ends inside a quoted field (one that began with a quote), whose
 * line break then belongs to the field. A stray quote inside a bare field opens nothing:
 * csv_split refuses that record alone.
 */
static int quote_open(const char *s)
{
	int quoted = 0, field_start = 1;

	for (; *s; s++) {
		if (quoted) {
			if (*s == '"' && s[1] == '"')
				s++;
			else if (*s == '"')
				quoted = 0;
		} else if (field_start && *s == '"') {
			quoted = 1;
		}
		field_start = !quoted && *s == ',';
	}
	return quoted;
}

/* The next non-blank record into r->rec: 1, 0 at the end, -1 on a read error. */
static int next_record(struct reader *r)
{
	int rc;

	for (;;) {
		r->reclen = 0;
		if ((rc = read_line(r, 0)) <= 0)
			return rc;
		r->start = r->lineno;
		while (r->fmt == IMPORT_CSV && quote_open(r->rec))
			if ((rc = read_line(r, 1)) <= 0)
				return rc < 0 ? rc : 1; /* csv_split finds the unclosed quote */
		if (r->rec[strspn(r->rec, " \t")] != '\0')
			return 1;
	}
}

/* ---- importing ----------------------------------------------------------------------------- */

struct item {
	unsigned long line;
	json_t *spec; /* NULL: skipped when read */
	int outcome;  /* a reason, OUT_CREATED, OUT_ALREADY or OUT_PENDING */
	char msg[160];
};

struct batch {
	struct item *items;
	size_t n;
	size_t from, to; /* the part of items the next transaction takes */
};

static const struct {
	const char *member;
	enum user_idtype type;
} identifiers[] = {{"email", ID_EMAIL}, {"phone_number", ID_PHONE}, {"username", ID_USERNAME}};
#define NIDS (sizeof(identifiers) / sizeof(identifiers[0]))

/* The stored user's identifier member ("email" object or "username" string), or NULL. */
static const char *stored_identifier(json_t *user, const char *member)
{
	json_t *v = json_object_get(user, member);
	return json_is_object(v) ? json_string_value(json_object_get(v, "value"))
				 : json_string_value(v);
}

/*
 * Whether holder, the one user all of spec's identifiers lead to, is the user spec describes
 * (import.h says when).
 */
static int same_record(json_t *holder, json_t *spec)
{
	const char *uid = json_string_value(json_object_get(spec, "user_id"));
	json_t *ext = json_object_get(spec, "external_account_id");

	if (uid != NULL)
		return strcmp(uid, json_string_value(json_object_get(holder, "user_id"))) == 0;
	if (json_is_string(ext))
		return json_equal(ext, json_object_get(holder, "external_account_id"));
	for (size_t i = 0; i < NIDS; i++) {
		json_t *v = json_object_get(spec, identifiers[i].member);
		int has = v != NULL && !json_is_null(v);
		if (has != (stored_identifier(holder, identifiers[i].member) != NULL))
			return 0;
	}
	return 1;
}

/*
 * One record inside t: OUT_CREATED, OUT_ALREADY, IMPORT_DUPLICATE or IMPORT_INVALID (msg),
 * or a negative store_rc. The identifiers are looked up before user_create_imported_txn runs,
 * so that it never finds one taken after it claimed another: a refused record must leave
 * nothing in the batch's transaction.
 */
static int import_one(struct store_txn *t, json_t *spec, char *msg, size_t msglen)
{
	struct {
		enum user_idtype type;
		const char *name;
		char *canonical;
	} keys[NIDS + 1];
	json_t *holder = NULL, *u = NULL, *v;
	size_t nkeys = 0, found = 0;
	const char *taken = NULL;
	int rc = 0, same = 1, valid = 1;

	/* An invalid identifier is not looked up: the create says why, before it writes. */
	for (size_t i = 0; i <= NIDS && valid; i++) {
		const char *member = i < NIDS ? identifiers[i].member : "user_id";
		v = json_object_get(spec, member);
		if (v == NULL || json_is_null(v))
			continue;
		keys[nkeys].type = i < NIDS ? identifiers[i].type : ID_USER_ID;
		keys[nkeys].name = member;
		keys[nkeys].canonical = user_normalize(keys[nkeys].type, json_string_value(v));
		valid = keys[nkeys++].canonical != NULL;
	}
	for (size_t i = 0; i < nkeys && valid; i++) {
		rc = user_find_txn(t, keys[i].type, keys[i].canonical, &u);
		if (rc < 0)
			goto out;
		if (rc != STORE_FOUND)
			continue;
		found++;
		if (taken == NULL)
			taken = keys[i].name;
		if (holder == NULL) {
			holder = u;
		} else {
			same &= json_equal(json_object_get(holder, "user_id"),
					   json_object_get(u, "user_id"));
			json_decref(u);
		}
		u = NULL;
	}
	if (found > 0) {
		if (same && found == nkeys && same_record(holder, spec)) {
			rc = OUT_ALREADY;
		} else {
			if (strcmp(taken, "user_id") == 0)
				snprintf(msg, msglen, "user_id is another user's");
			else
				snprintf(msg, msglen, "%s already belongs to another user", taken);
			rc = IMPORT_DUPLICATE;
		}
		goto out;
	}
	rc = user_create_imported_txn(t, spec, &u, msg, msglen);
	if (rc == USER_CREATED) {
		rc = OUT_CREATED;
	} else if (rc == USER_INVALID) {
		rc = IMPORT_INVALID;
	} else if (rc == USER_CONFLICT) {
		/* Not reached after the look-ups above; the batch must not commit a half claim. */
		log_err("import: a conflict the look-ups did not see");
		rc = STORE_ERR;
	}
out:
	json_decref(u);
	json_decref(holder);
	for (size_t i = 0; i < nkeys; i++)
		free(keys[i].canonical);
	return rc;
}

/* The batch's transaction: every record read well. It may run more than once (store_run). */
static int batch_txn(struct store_txn *t, void *arg)
{
	struct batch *b = arg;

	for (size_t i = b->from; i < b->to; i++) {
		struct item *it = &b->items[i];
		int rc;
		if (it->spec == NULL)
			continue;
		it->msg[0] = '\0';
		rc = import_one(t, it->spec, it->msg, sizeof(it->msg));
		if (rc < 0)
			return rc;
		it->outcome = rc;
	}
	return 0;
}

/*
 * Commit the batch's records: in one transaction, or, when it keeps losing lock conflicts
 * (store_run gave up: the workers' short transactions kept taking pages it needs, or another
 * process holds a lock for long), in halves, down to one record a transaction. 0, or -1 with
 * err when the store failed otherwise or a single record could not get its locks twice in a
 * row; the parts committed before stay (a re-run finds them imported).
 */
static int batch_commit(struct store *s, struct batch *b, char *err, size_t errlen)
{
	size_t chunk = b->n;
	int single_failures = 0, rc;

	for (b->from = 0; b->from < b->n;) {
		b->to = b->from + chunk < b->n ? b->from + chunk : b->n;
		rc = store_run(s, batch_txn, b);
		if (rc >= 0) {
			b->from = b->to;
			continue;
		}
		if (rc == STORE_RETRY && (chunk > 1 || ++single_failures < 2)) {
			chunk = chunk > 1 ? chunk / 2 : 1;
			log_warn(
			    "import: lock conflicts at line %lu; %zu records a transaction now",
			    b->items[b->from].line, chunk);
			continue;
		}
		snprintf(err, errlen,
			 "the database failed%s at line %lu; lines %lu to %lu were not imported "
			 "(run the import again to resume)",
			 rc == STORE_RETRY ? " (a lock another process holds)" : "",
			 b->items[b->from].line, b->items[b->from].line, b->items[b->n - 1].line);
		return -1;
	}
	return 0;
}

/* After the commit: count the first n records' outcomes, report their skips in order. */
static void batch_report(struct batch *b, size_t n, const struct import_opts *o,
			 struct import_stats *st)
{
	for (size_t i = 0; i < n; i++) {
		struct item *it = &b->items[i];
		st->records++;
		if (it->outcome == OUT_CREATED) {
			st->created++;
		} else if (it->outcome == OUT_ALREADY) {
			st->already++;
		} else if (it->outcome >= 0 && it->outcome < IMPORT_REASONS) {
			st->skipped++;
			st->by_reason[it->outcome]++;
			if (o->report != NULL)
				fprintf(o->report, "line %lu: skipped, %s: %s\n", it->line,
					reason_names[it->outcome], it->msg);
		}
	}
}

static void batch_clear(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		json_decref(b->items[i].spec);
		b->items[i].spec = NULL;
	}
	b->n = 0;
}

/* A read error: the records of the batch being read are not imported (a re-run resumes). */
static void read_failed(const struct reader *r, char *err, size_t errlen)
{
	snprintf(err, errlen, "cannot read the input after line %lu: %s", r->lineno,
		 strerror(errno));
}

int import_users(struct store *s, FILE *in, const struct import_opts *o, struct import_stats *st,
		 char *err, size_t errlen)
{
	struct reader r = {.in = in, .fmt = o->format};
	struct csv_header h = {.n = 0};
	size_t cap = o->batch > 0 ? o->batch : IMPORT_BATCH;
	struct batch b = {.items = calloc(cap, sizeof(struct item))};
	int rc = -1, more = 1;

	memset(st, 0, sizeof(*st));
	if (b.items == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (o->format == IMPORT_CSV) {
		int hr = next_record(&r);
		if (hr < 0) {
			read_failed(&r, err, errlen);
			goto out;
		}
		if (hr == 0) {
			rc = 0; /* an empty file */
			goto out;
		}
		if (csv_header_parse(r.rec, &h, err, errlen) < 0)
			goto out;
	}
	while (more) {
		int nr = 0;
		while (b.n < cap && (nr = next_record(&r)) == 1) {
			struct item *it = &b.items[b.n++];
			it->line = r.start;
			it->msg[0] = '\0';
			it->outcome =
			    o->format == IMPORT_JSONL
				? import_jsonl_spec(r.rec, r.reclen, &it->spec, it->msg,
						    sizeof(it->msg))
				: csv_spec(r.rec, &h, &it->spec, it->msg, sizeof(it->msg));
			if (it->outcome == IMPORT_OK)
				it->outcome = OUT_PENDING;
		}
		if (nr < 0) {
			read_failed(&r, err, errlen);
			goto out;
		}
		more = nr == 1 || b.n == cap;
		if (b.n == 0)
			break;
		if (batch_commit(s, &b, err, errlen) < 0) {
			/* What the committed part of the batch did counts too. */
			batch_report(&b, b.from, o, st);
			goto out;
		}
		batch_report(&b, b.n, o, st);
		if (o->progress != NULL) {
			fprintf(o->progress, "committed through line %lu\n", b.items[b.n - 1].line);
			fflush(o->progress);
		}
		batch_clear(&b);
		/* The checkpoint that lets old log files go, as a worker does between requests. */
		store_maintain(s);
	}
	rc = 0;
out:
	if (b.items != NULL)
		batch_clear(&b);
	free(b.items);
	free(r.line);
	free(r.rec);
	return rc;
}

json_t *import_summary(const struct import_stats *st)
{
	json_t *by = json_object();

	for (int i = 0; by != NULL && i < IMPORT_REASONS; i++)
		json_object_set_new(by, reason_names[i],
				    json_integer((json_int_t)st->by_reason[i]));
	return json_pack("{s:I, s:I, s:I, s:I, s:o}", "records", (json_int_t)st->records, "created",
			 (json_int_t)st->created, "already_imported", (json_int_t)st->already,
			 "skipped", (json_int_t)st->skipped, "by_reason", by);
}
