/*
 * import: a JSON Lines record mapped to the create spec (channels flattened, ignored and
 * unknown members, malformed lines); user_create_imported_txn keeping a migrated user's id,
 * status, verification and created_at, and refusing without leaving an index entry behind,
 * while user_create (the users API) keeps ignoring those members; import_users on a real store
 * over CSV edge cases (quotes, line breaks in a field, a byte order mark, CRLF, wrong widths)
 * with the skip report's line numbers, the already-imported rule, and the same outcome for
 * every batch size.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "import.h"
#include "user.h"

static char err[256];

/* import_jsonl_spec of a string; *spec set (new) or NULL. */
static int spec_of(const char *line, json_t **spec)
{
	err[0] = '\0';
	return import_jsonl_spec(line, strlen(line), spec, err, sizeof(err));
}

static void jsonl_mapping(void)
{
	json_t *spec = NULL;
	enum import_format fmt = IMPORT_CSV;

	check(
	    spec_of(
		"{\"user_id\":\"x1\",\"email\":{\"value\":\"A@b.example\",\"email_verified\":"
		"true,\"verified_at\":\"2024-01-01T00:00:00Z\"},\"phone_number\":{\"value\":"
		"\"+15550001111\",\"phone_number_verified\":false},\"username\":\"u\","
		"\"status\":\"Disabled\",\"name\":{\"first_name\":\"A\"},\"custom_data\":{},"
		"\"external_account_id\":\"e\",\"roles\":[\"r\"],\"created_at\":5,"
		"\"updated_at\":6,\"status_changed_at\":7,\"last_auth\":null,\"org_ids\":[\"o\"]}",
		&spec) == IMPORT_OK);
	check(strcmp(json_string_value(json_object_get(spec, "email")), "A@b.example") == 0);
	check(json_is_true(json_object_get(spec, "email_verified")));
	check(strcmp(json_string_value(json_object_get(spec, "phone_number")), "+15550001111") ==
	      0);
	check(json_is_false(json_object_get(spec, "phone_number_verified")));
	check(json_integer_value(json_object_get(spec, "created_at")) == 5);
	check(strcmp(json_string_value(json_object_get(spec, "status")), "Disabled") == 0);
	/* What otlogin sets itself, or does not import, is not handed on. */
	check(json_object_get(spec, "updated_at") == NULL &&
	      json_object_get(spec, "status_changed_at") == NULL &&
	      json_object_get(spec, "last_auth") == NULL &&
	      json_object_get(spec, "org_ids") == NULL);
	check(json_object_get(spec, "verified_at") == NULL);
	json_decref(spec);

	check(spec_of("{\"email\":\"plain@b.example\",\"phone_number\":null}", &spec) == IMPORT_OK);
	check(strcmp(json_string_value(json_object_get(spec, "email")), "plain@b.example") == 0);
	check(json_is_null(json_object_get(spec, "phone_number")));
	json_decref(spec);

	check(spec_of("{\"email\":\"a@b.example\",\"password\":\"x\"}", &spec) ==
	      IMPORT_UNKNOWN_MEMBER);
	check(spec == NULL && strstr(err, "\"password\"") != NULL);
	check(spec_of("{\"email\":{\"value\":\"a@b.example\",\"primary\":true}}", &spec) ==
	      IMPORT_UNKNOWN_MEMBER);
	check(strstr(err, "email.primary") != NULL);
	/* Each channel's own flag only: email_verified inside phone_number is unknown. */
	check(spec_of("{\"phone_number\":{\"value\":\"+15550001111\",\"email_verified\":true}}",
		      &spec) == IMPORT_UNKNOWN_MEMBER);

	check(spec_of("{\"email\":", &spec) == IMPORT_MALFORMED && spec == NULL);
	/* The parser's message quotes the token it stopped at: not into the report. */
	check(spec_of("{\"email\" \"secret@example.org\"}", &spec) == IMPORT_MALFORMED);
	check_msg(strstr(err, "secret") == NULL && strstr(err, "column") != NULL, "%s", err);
	check(spec_of("[{\"email\":\"a@b.example\"}]", &spec) == IMPORT_MALFORMED);
	check(spec_of("\"a@b.example\"", &spec) == IMPORT_MALFORMED);
	check(spec_of("{\"email\":\"a@b.example\",\"email\":\"c@b.example\"}", &spec) ==
	      IMPORT_MALFORMED);
	check(spec_of("{\"email\":\"a@b.example\"} {}", &spec) == IMPORT_MALFORMED);

	check(import_format_of("users.jsonl", &fmt) == 0 && fmt == IMPORT_JSONL);
	check(import_format_of("/x/Users.CSV", &fmt) == 0 && fmt == IMPORT_CSV);
	check(import_format_of("users.ndjson", &fmt) == 0 && fmt == IMPORT_JSONL);
	check(import_format_of("users.txt", &fmt) < 0 && import_format_of("csv", &fmt) < 0);
	check(strcmp(import_reason_name(IMPORT_UNKNOWN_MEMBER), "unknown_member") == 0);
}

struct imp_arg {
	json_t *spec, *user;
	int rc;
};

static int imported_txn(struct store_txn *t, void *argp)
{
	struct imp_arg *a = argp;
	a->rc = user_create_imported_txn(t, a->spec, &a->user, err, sizeof(err));
	return a->rc == USER_CREATED ? 0 : STORE_REFUSE(a->rc);
}

/* user_create_imported_txn of a json_pack spec in its own transaction; the user or NULL. */
static int create_imported(json_t **user, const char *fmt, ...)
{
	struct imp_arg a = {NULL, NULL, 0};
	va_list ap;
	int rc;

	va_start(ap, fmt);
	a.spec = json_vpack_ex(NULL, 0, fmt, ap);
	va_end(ap);
	err[0] = '\0';
	rc = store_run(c.store, imported_txn, &a);
	json_decref(a.spec);
	*user = a.user;
	return rc < 0 && store_refused(rc) < 0 ? rc : a.rc;
}

static int exists(enum user_idtype type, const char *canonical)
{
	json_t *u = NULL;
	int rc = user_get(&c, type, canonical, &u);
	json_decref(u);
	return rc == STORE_FOUND;
}

static void creating_imported(void)
{
	json_t *u = NULL, *ch;

	check(create_imported(&u, "{s:s, s:s, s:b, s:s, s:s, s:I}", "user_id", "tx-42", "email",
			      "Kept@Example.org", "email_verified", 1, "username", "kept", "status",
			      "Pending", "created_at", (json_int_t)1700000000000) == USER_CREATED);
	check(strcmp(json_string_value(json_object_get(u, "user_id")), "tx-42") == 0);
	ch = json_object_get(u, "email");
	check(strcmp(json_string_value(json_object_get(ch, "value")), "kept@example.org") == 0);
	check(json_is_true(json_object_get(ch, "email_verified")));
	check(json_is_string(json_object_get(ch, "verified_at")));
	check(strcmp(json_string_value(json_object_get(u, "status")), "Pending") == 0);
	check(json_integer_value(json_object_get(u, "created_at")) == 1700000000000);
	json_decref(u);
	check(exists(ID_USER_ID, "tx-42") && exists(ID_EMAIL, "kept@example.org"));

	/* A taken user_id: refused before any identifier is claimed. */
	check(create_imported(&u, "{s:s, s:s, s:s}", "user_id", "tx-42", "email",
			      "other@example.org", "username", "other") == USER_CONFLICT);
	check(!exists(ID_EMAIL, "other@example.org") && !exists(ID_USERNAME, "other"));
	/* Bad kept members: refused before anything is written. */
	check(create_imported(&u, "{s:s, s:s}", "email", "st@example.org", "status", "Deleted") ==
	      USER_INVALID);
	check(strstr(err, "status") != NULL && !exists(ID_EMAIL, "st@example.org"));
	check(create_imported(&u, "{s:s, s:s}", "email", "sp@example.org", "user_id", "a b") ==
	      USER_INVALID);
	check(!exists(ID_EMAIL, "sp@example.org") && !exists(ID_USER_ID, "a b"));
	check(create_imported(&u, "{s:s, s:s}", "email", "ev@example.org", "email_verified",
			      "yes") == USER_INVALID);
	check(create_imported(&u, "{s:s, s:i}", "email", "ca@example.org", "created_at", -1) ==
	      USER_INVALID);
	check(!exists(ID_EMAIL, "ev@example.org") && !exists(ID_EMAIL, "ca@example.org"));
	/* Without kept members: as user_create, a new id. */
	check(create_imported(&u, "{s:s}", "email", "new@example.org") == USER_CREATED);
	check(strlen(json_string_value(json_object_get(u, "user_id"))) == 32);
	json_decref(u);

	/* The users API's create does not take what only an import may set. */
	json_t *spec =
	    json_pack("{s:s, s:s, s:s, s:b, s:I}", "email", "api@example.org", "user_id", "chosen",
		      "status", "Disabled", "email_verified", 1, "created_at", (json_int_t)5);
	check(user_create(&c, spec, &u, err, sizeof(err)) == USER_CREATED);
	check(strcmp(json_string_value(json_object_get(u, "user_id")), "chosen") != 0);
	check(strcmp(json_string_value(json_object_get(u, "status")), "Active") == 0);
	check(json_is_false(json_object_get(json_object_get(u, "email"), "email_verified")));
	check(json_integer_value(json_object_get(u, "created_at")) != 5);
	check(!exists(ID_USER_ID, "chosen"));
	json_decref(u);
	json_decref(spec);
}

/* import_users over text; the report into report (static), the stats into *st. */
static char report[4096];

static int run(const char *text, enum import_format fmt, size_t batch, struct import_stats *st)
{
	FILE *in = fmemopen((void *)text, strlen(text), "r");
	FILE *rep = fmemopen(report, sizeof(report), "w");
	struct import_opts o = {fmt, batch, rep, NULL};
	int rc;

	memset(report, 0, sizeof(report));
	err[0] = '\0';
	rc = import_users(c.store, in, &o, st, err, sizeof(err));
	fclose(rep);
	fclose(in);
	return rc;
}

static void importing_csv(void)
{
	struct import_stats st;
	json_t *u = NULL;
	const char *csv = "\xEF\xBB\xBF"
			  "email,username,name.first_name,roles,custom_data,email_verified\r\n"
			  "c1@example.org,c1,\"Doe, \"\"J\"\"\",a;b,\"{\"\"k\"\":1}\",TRUE\r\n"
			  "c2@example.org,c2,\"two\r\nlines\",,,\r\n"
			  "c3@example.org,c3\r\n"	     /* line 5: two fields */
			  "c4@example.org,c4,x\"y,,,\r\n"    /* line 6: a quote in a bare field */
			  "\r\n"			     /* line 7: blank */
			  "c5@example.org,c5,\"z\"w,,,\r\n"  /* line 8: text after a quote */
			  "c6@example.org,c6,,\"[1]\",,\r\n" /* line 9: roles not strings */
			  "c7@example.org,c7,,,[],maybe\r\n" /* line 10: custom_data, flag */
			  "c8@example.org,c8,,,,\r\n"	     /* line 11: created */
			  "c9@example.org,c9,\"never closed,,,\r\n"; /* line 12: to the end */

	check(run(csv, IMPORT_CSV, 2, &st) == 0);
	check_msg(st.records == 9 && st.created == 3 && st.skipped == 6, "%lu %lu %lu", st.records,
		  st.created, st.skipped);
	check(st.by_reason[IMPORT_MALFORMED] == 4 && st.by_reason[IMPORT_INVALID] == 2);
	check_msg(strstr(report, "line 5: skipped, malformed: 2 fields where the header has 6") !=
		      NULL,
		  "%s", report);
	check(strstr(report, "line 6: skipped, malformed") != NULL);
	check(strstr(report, "line 8: skipped, malformed") != NULL);
	check(strstr(report, "line 9: skipped, invalid: roles") != NULL);
	check(strstr(report, "line 10: skipped, invalid") != NULL);
	check(strstr(report, "line 12: skipped, malformed") != NULL);
	check(strstr(report, "line 11") == NULL && strstr(report, "line 7") == NULL);
	check(user_get(&c, ID_EMAIL, "c1@example.org", &u) == STORE_FOUND);
	check(strcmp(json_string_value(json_object_get(json_object_get(u, "name"), "first_name")),
		     "Doe, \"J\"") == 0);
	check(json_array_size(json_object_get(u, "roles")) == 2);
	check(json_integer_value(json_object_get(json_object_get(u, "custom_data"), "k")) == 1);
	check(json_is_true(json_object_get(json_object_get(u, "email"), "email_verified")));
	json_decref(u);
	check(user_get(&c, ID_EMAIL, "c2@example.org", &u) == STORE_FOUND);
	check(strcmp(json_string_value(json_object_get(json_object_get(u, "name"), "first_name")),
		     "two\nlines") == 0);
	json_decref(u);

	/* Again, one record a transaction: the same users are already there. */
	check(run(csv, IMPORT_CSV, 1, &st) == 0);
	check(st.records == 9 && st.created == 0 && st.already == 3 && st.skipped == 6);

	/* A header that names an unknown or repeated column stops before any record. */
	check(run("email,pasword\nx1@example.org,p\n", IMPORT_CSV, 0, &st) < 0);
	check(strstr(err, "unknown column \"pasword\"") != NULL && st.records == 0);
	check(run("email,email\nx1@example.org,x2@example.org\n", IMPORT_CSV, 0, &st) < 0);
	check(strstr(err, "twice") != NULL);
	check(!exists(ID_EMAIL, "x1@example.org"));
	check(run("", IMPORT_CSV, 0, &st) == 0 && st.records == 0);
}

static void importing_jsonl(void)
{
	struct import_stats st;
	json_t *summary;
	/* Line 3 repeats line 1 (already imported, within one transaction), line 4 takes its
	 * email with another username (duplicate), line 5 is line 1 again without its
	 * username: fewer identifiers than the user has is not the same record. */
	const char *text = "{\"email\":\"j1@example.org\",\"username\":\"j1\"}\n"
			   "\n"
			   "{\"email\":\"j1@example.org\",\"username\":\"j1\"}\n"
			   "{\"email\":\"j1@example.org\",\"username\":\"j1b\"}\n"
			   "{\"email\":\"j1@example.org\"}\n"
			   "{\"user_id\":\"j-2\",\"email\":\"j2@example.org\"}\n"
			   "{\"user_id\":\"j-2\",\"email\":\"j2b@example.org\"}\n"
			   "{\"email\":\"j3@example.org\",\"external_account_id\":\"e3\"}\n"
			   "{\"email\":\"j3@example.org\",\"external_account_id\":\"other\"}";

	for (size_t batch = 1; batch <= 20; batch += 19) {
		check(run(text, IMPORT_JSONL, batch, &st) == 0);
		if (batch == 1) {
			check_msg(st.records == 8 && st.created == 3 && st.already == 1 &&
				      st.by_reason[IMPORT_DUPLICATE] == 4,
				  "%lu %lu %lu %lu", st.records, st.created, st.already,
				  st.by_reason[IMPORT_DUPLICATE]);
		} else {
			check(st.records == 8 && st.created == 0 && st.already == 4 &&
			      st.by_reason[IMPORT_DUPLICATE] == 4);
		}
		check(strstr(report, "line 4: skipped, duplicate: username") == NULL);
		check(strstr(report, "line 4: skipped, duplicate: email already belongs") != NULL);
		check(strstr(report, "line 5: skipped, duplicate") != NULL);
		check(strstr(report, "line 7: skipped, duplicate: user_id") != NULL);
		check(strstr(report, "line 9: skipped, duplicate") != NULL);
	}
	check(!exists(ID_USERNAME, "j1b") && !exists(ID_EMAIL, "j2b@example.org"));
	summary = import_summary(&st);
	check(json_integer_value(json_object_get(summary, "already_imported")) == 4);
	check(json_integer_value(
		  json_object_get(json_object_get(summary, "by_reason"), "duplicate")) == 4);
	check(json_object_size(json_object_get(summary, "by_reason")) == IMPORT_REASONS);
	json_decref(summary);
}

int main(void)
{
	jsonl_mapping();
	if (fixture_open("/dev/shm", "import", 8) < 0)
		return check_done();
	creating_imported();
	importing_csv();
	importing_jsonl();
	fixture_close();
	return check_done();
}
