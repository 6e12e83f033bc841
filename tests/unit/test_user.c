/*
 * user: identifiers canonicalised and uniquely indexed on a real store; conflicts and invalid
 * specs refused without leaving an index entry behind; lookups by every identifier type; login
 * lookups with open and closed signup; updates that reindex (and keep a verification only for
 * an unchanged identifier) and refuse to leave a user without email and phone; deletion of a
 * user and its indexes; recording a login; paging; the pure helpers.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "fixture.h"
#include "user.h"

static char err[256];

/* user_create of a spec given in json_pack's format; the user (new) into *u when created. */
static int create(json_t **u, const char *fmt, ...)
{
	json_t *spec, *user = NULL;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	spec = json_vpack_ex(NULL, 0, fmt, ap);
	va_end(ap);
	err[0] = '\0';
	rc = user_create(&c, spec, &user, err, sizeof(err));
	json_decref(spec);
	if (u != NULL)
		*u = user;
	else
		json_decref(user);
	return rc;
}

/* The user_id found under an identifier, or "" (static storage). */
static const char *found(enum user_idtype type, const char *canonical)
{
	static char id[64];
	json_t *u = NULL;

	id[0] = '\0';
	if (user_get(&c, type, canonical, &u) == STORE_FOUND)
		snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(u, "user_id")));
	json_decref(u);
	return id;
}

struct login_arg {
	json_t *client;
	enum user_idtype type;
	const char *canonical;
	json_t *user;
};

static int login_txn(struct store_txn *t, void *argp)
{
	struct login_arg *a = argp;
	json_decref(a->user);
	a->user = NULL;
	return user_for_login_txn(t, a->client, a->type, a->canonical, &a->user);
}

/* user_for_login_txn in a transaction of its own; the user's id into id (size 64) or "". */
static int for_login(const char *signup, enum user_idtype type, const char *canonical, char *id)
{
	struct login_arg a = {json_pack("{s:s}", "signup", signup), type, canonical, NULL};
	int rc = store_run(c.store, login_txn, &a);

	id[0] = '\0';
	if (rc == ERR_NONE && a.user != NULL)
		snprintf(id, 64, "%s", json_string_value(json_object_get(a.user, "user_id")));
	json_decref(a.user);
	json_decref(a.client);
	return rc;
}

struct update_arg {
	const char *id;
	json_t *patch, *user;
	int was_active;
};

/* As account.c runs it: only an update commits. */
static int update_txn(struct store_txn *t, void *argp)
{
	struct update_arg *a = argp;
	int rc;

	json_decref(a->user);
	a->user = NULL;
	rc = user_update_txn(t, a->id, a->patch, &a->user, &a->was_active, err, sizeof(err));
	return rc <= 0 || rc == USER_CREATED ? rc : STORE_REFUSE(rc);
}

/* Update user id with a patch in json_pack's format; the result (new) into *u when updated. */
static int update(const char *id, json_t **u, int *was_active, const char *fmt, ...)
{
	struct update_arg a = {id, NULL, NULL, -1};
	va_list ap;
	int rc;

	va_start(ap, fmt);
	a.patch = json_vpack_ex(NULL, 0, fmt, ap);
	va_end(ap);
	err[0] = '\0';
	rc = store_outcome(store_run(c.store, update_txn, &a), STORE_ERR);
	json_decref(a.patch);
	if (was_active != NULL)
		*was_active = a.was_active;
	if (u != NULL && rc == USER_CREATED)
		*u = a.user;
	else
		json_decref(a.user);
	return rc;
}

static int delete_txn(struct store_txn *t, void *id)
{
	return user_delete_txn(t, id);
}

struct record_arg {
	const char *id, *channel;
};

static int record_txn(struct store_txn *t, void *argp)
{
	struct record_arg *a = argp;
	json_t *u;
	int rc = user_find_txn(t, ID_USER_ID, a->id, &u);

	if (rc != STORE_FOUND)
		return rc < 0 ? rc : STORE_ERR;
	rc = user_record_login_txn(t, u, a->channel);
	json_decref(u);
	return rc;
}

static int record_login(const char *id, const char *channel)
{
	struct record_arg a = {id, channel};
	return store_run(c.store, record_txn, &a);
}

/* The stored user (new reference) or NULL. */
static json_t *by_id(const char *id)
{
	json_t *u = NULL;
	return user_get(&c, ID_USER_ID, id, &u) == STORE_FOUND ? u : NULL;
}

static int verified(json_t *u, const char *member)
{
	char flag[40];
	snprintf(flag, sizeof(flag), "%s_verified", member);
	return json_is_true(json_object_get(json_object_get(u, member), flag));
}

static void pure_helpers(void)
{
	char *s, long_name[130];

	check(user_idtype_parse("email") == ID_EMAIL);
	check(user_idtype_parse("phone_number") == ID_PHONE);
	check(user_idtype_parse("user_id") == ID_USER_ID);
	check(user_idtype_parse("username") == ID_USERNAME);
	check(user_idtype_parse("phone") == ID_INVALID &&
	      user_idtype_parse("Email") == ID_INVALID && user_idtype_parse("") == ID_INVALID &&
	      user_idtype_parse(NULL) == ID_INVALID);
	for (int t = ID_EMAIL; t < ID_INVALID; t++)
		check(user_idtype_parse(user_idtype_name((enum user_idtype)t)) ==
		      (enum user_idtype)t);
	check(strcmp(user_idtype_name(ID_INVALID), "invalid") == 0);

	/* E.164: '+', 7 to 15 digits, the first not 0. */
	check(user_phone_valid("+1234567") && user_phone_valid("+123456789012345"));
	check(!user_phone_valid("+123456") && !user_phone_valid("+1234567890123456"));
	check(!user_phone_valid("+0123456789") && !user_phone_valid("14155550100"));
	check(!user_phone_valid("+1415555010a") && !user_phone_valid("+1 415555010") &&
	      !user_phone_valid("+") && !user_phone_valid("") && !user_phone_valid(NULL));

	s = user_normalize(ID_EMAIL, "Alice.B@Example.COM");
	check(s != NULL && strcmp(s, "alice.b@example.com") == 0);
	free(s);
	check(user_normalize(ID_EMAIL, "not an address") == NULL);
	check(user_normalize(ID_EMAIL, "a@b@c") == NULL);
	check(user_normalize(ID_EMAIL, "") == NULL && user_normalize(ID_EMAIL, NULL) == NULL);
	s = user_normalize(ID_PHONE, "+14155550100");
	check(s != NULL && strcmp(s, "+14155550100") == 0);
	free(s);
	check(user_normalize(ID_PHONE, "0014155550100") == NULL);
	s = user_normalize(ID_USERNAME, "Alice_1");
	check(s != NULL && strcmp(s, "Alice_1") == 0); /* as given */
	free(s);
	check(user_normalize(ID_USERNAME, "al ice") == NULL &&
	      user_normalize(ID_USERNAME, "") == NULL &&
	      user_normalize(ID_USERNAME, "a\tb") == NULL &&
	      user_normalize(ID_USER_ID, "a\x7f") == NULL);
	memset(long_name, 'n', 128);
	long_name[128] = '\0';
	s = user_normalize(ID_USERNAME, long_name);
	check(s != NULL);
	free(s);
	long_name[128] = 'n';
	long_name[129] = '\0';
	check(user_normalize(ID_USERNAME, long_name) == NULL);
	check(user_normalize(ID_INVALID, "x") == NULL);
}

static void creating(char alice[64])
{
	json_t *u = NULL, *v = NULL;

	check(create(&u, "{s:s, s:s, s:s, s:{s:s}, s:[s], s:{s:i}, s:s}", "email",
		     "Alice@Example.COM", "phone_number", "+14155550100", "username", "alice",
		     "name", "given_name", "Alice", "roles", "admin", "custom_data", "n", 1,
		     "external_account_id", "ext-1") == USER_CREATED);
	snprintf(alice, 64, "%s", json_string_value(json_object_get(u, "user_id")) ?: "");
	check(strlen(alice) == 32 && strspn(alice, "0123456789abcdef") == 32);
	check(strcmp(user_email(u) ?: "", "alice@example.com") == 0);
	check(strcmp(user_phone(u) ?: "", "+14155550100") == 0);
	check(!verified(u, "email") && !verified(u, "phone_number"));
	check(user_is_active(u));
	check(strcmp(json_string_value(json_object_get(u, "username")) ?: "", "alice") == 0);
	check(json_array_size(json_object_get(u, "org_ids")) == 0);
	check(strcmp(json_string_value(json_object_get(u, "external_account_id")) ?: "", "ext-1") ==
	      0);
	check(json_integer_value(json_object_get(json_object_get(u, "custom_data"), "n")) == 1);

	/* Found by each identifier, in canonical form only; the stored record is the one made. */
	check(strcmp(found(ID_EMAIL, "alice@example.com"), alice) == 0);
	check(strcmp(found(ID_PHONE, "+14155550100"), alice) == 0);
	check(strcmp(found(ID_USERNAME, "alice"), alice) == 0);
	check(strcmp(found(ID_USER_ID, alice), alice) == 0);
	check(strcmp(found(ID_EMAIL, "Alice@Example.COM"), "") == 0);
	check(strcmp(found(ID_USERNAME, "Alice"), "") == 0);
	check(strcmp(found(ID_EMAIL, "nobody@example.com"), "") == 0);
	check(strcmp(found(ID_USER_ID, "0123"), "") == 0);
	v = by_id(alice);
	check(v != NULL && json_equal(u, v));
	json_decref(v);
	json_decref(u);

	/* A phone-only user; defaults for what the spec leaves out. */
	check(create(&u, "{s:s}", "phone_number", "+442071838750") == USER_CREATED);
	check(user_email(u) == NULL && json_is_null(json_object_get(u, "email")) &&
	      json_is_null(json_object_get(u, "username")) &&
	      json_is_array(json_object_get(u, "roles")) &&
	      json_is_object(json_object_get(u, "name")));
	json_decref(u);

	/* Each identifier is unique, compared in canonical form. */
	check(create(NULL, "{s:s}", "email", "ALICE@example.com") == USER_CONFLICT);
	check(create(NULL, "{s:s}", "phone_number", "+14155550100") == USER_CONFLICT);
	check(create(NULL, "{s:s, s:s}", "email", "other@example.com", "username", "alice") ==
	      USER_CONFLICT);
	/* A conflict on the second identifier leaves no claim on the first behind. */
	check(strcmp(found(ID_EMAIL, "other@example.com"), "") == 0);
	check(create(NULL, "{s:s, s:s}", "email", "fresh@example.com", "phone_number",
		     "+14155550100") == USER_CONFLICT);
	check(strcmp(found(ID_EMAIL, "fresh@example.com"), "") == 0);
	check(create(NULL, "{s:s}", "email", "fresh@example.com") == USER_CREATED);

	/* Invalid specs: a message, nothing stored. */
	check(create(NULL, "{s:s}", "username", "lonely") == USER_INVALID && err[0] != '\0');
	check(strcmp(found(ID_USERNAME, "lonely"), "") == 0);
	check(create(NULL, "{}") == USER_INVALID);
	check(create(NULL, "{s:n, s:n}", "email", "phone_number") == USER_INVALID);
	check(create(NULL, "{s:s}", "email", "no-at-sign") == USER_INVALID &&
	      strstr(err, "email") != NULL);
	check(create(NULL, "{s:i}", "email", 5) == USER_INVALID);
	check(create(NULL, "{s:s}", "phone_number", "4155550100") == USER_INVALID &&
	      strstr(err, "phone_number") != NULL);
	check(create(NULL, "{s:s, s:s}", "email", "u1@example.com", "username", "has space") ==
	      USER_INVALID);
	check(create(NULL, "{s:s, s:s}", "email", "u2@example.com", "name", "Alice") ==
	      USER_INVALID);
	check(create(NULL, "{s:s, s:[]}", "email", "u3@example.com", "custom_data") ==
	      USER_INVALID);
	check(create(NULL, "{s:s, s:i}", "email", "u4@example.com", "external_account_id", 4) ==
	      USER_INVALID);
	check(create(NULL, "{s:s, s:[s,i]}", "email", "u5@example.com", "roles", "a", 1) ==
	      USER_INVALID);
	check(create(NULL, "{s:s, s:s}", "email", "u6@example.com", "roles", "a") == USER_INVALID);
	for (int i = 1; i <= 6; i++) {
		char addr[32];
		snprintf(addr, sizeof(addr), "u%d@example.com", i);
		check_msg(strcmp(found(ID_EMAIL, addr), "") == 0, "%s was indexed", addr);
	}
}

static void logging_in(const char *alice)
{
	char id[64];
	json_t *client = json_pack("{s:s}", "signup", "open");

	check(user_signup_allows(client, ID_EMAIL) && user_signup_allows(client, ID_PHONE));
	check(!user_signup_allows(client, ID_USERNAME) && !user_signup_allows(client, ID_USER_ID));
	json_object_set_new(client, "signup", json_string("closed"));
	check(!user_signup_allows(client, ID_EMAIL) && !user_signup_allows(client, ID_PHONE));
	json_object_del(client, "signup");
	check(!user_signup_allows(client, ID_EMAIL)); /* no policy: closed */
	json_decref(client);

	/* A known user logs in under either policy. */
	check(for_login("closed", ID_EMAIL, "alice@example.com", id) == ERR_NONE &&
	      strcmp(id, alice) == 0);
	check(for_login("open", ID_USERNAME, "alice", id) == ERR_NONE && strcmp(id, alice) == 0);
	/* Closed signup: an unknown identifier is not found, and nothing is created. */
	check(for_login("closed", ID_EMAIL, "new@example.com", id) == ERR_USER_NOT_FOUND);
	check(strcmp(found(ID_EMAIL, "new@example.com"), "") == 0);
	/* Open signup creates email and phone users, never for a username or a user id. */
	check(for_login("open", ID_EMAIL, "new@example.com", id) == ERR_NONE && id[0] != '\0');
	check(strcmp(found(ID_EMAIL, "new@example.com"), id) == 0);
	check(for_login("open", ID_PHONE, "+33142685300", id) == ERR_NONE && id[0] != '\0');
	check(strcmp(found(ID_PHONE, "+33142685300"), id) == 0);
	/* The same identifier again finds the user made the first time. */
	{
		char again[64];
		check(for_login("closed", ID_PHONE, "+33142685300", again) == ERR_NONE &&
		      strcmp(again, id) == 0);
	}
	check(for_login("open", ID_USERNAME, "newname", id) == ERR_USER_NOT_FOUND);
	check(for_login("open", ID_USER_ID, "0123456789abcdef0123456789abcdef", id) ==
	      ERR_USER_NOT_FOUND);
}

static void recording(const char *alice)
{
	json_t *u;

	check(record_login(alice, NULL) == 0);
	u = by_id(alice);
	check(json_is_string(json_object_get(u, "last_auth")) && !verified(u, "email") &&
	      !verified(u, "phone_number"));
	json_decref(u);
	check(record_login(alice, "email") == 0);
	u = by_id(alice);
	check(verified(u, "email") && !verified(u, "phone_number"));
	check(json_is_string(json_object_get(json_object_get(u, "email"), "verified_at")));
	json_decref(u);
	check(record_login(alice, "phone_number") == 0);
	u = by_id(alice);
	check(verified(u, "email") && verified(u, "phone_number"));
	json_decref(u);
}

static void updating(const char *alice)
{
	char bob[64];
	json_t *u = NULL;
	long long changed;
	int was_active = -1;

	check(create(&u, "{s:s}", "email", "bob@example.com") == USER_CREATED);
	snprintf(bob, sizeof(bob), "%s", json_string_value(json_object_get(u, "user_id")));
	json_decref(u);
	u = NULL;

	/* The same email in another case is unchanged: it keeps its verification. */
	check(update(alice, &u, &was_active, "{s:s}", "email", "ALICE@example.com") ==
	      USER_CREATED);
	check(was_active == 1 && verified(u, "email"));
	json_decref(u);
	u = NULL;
	/* A new email is reindexed and unverified; the old one is free again. */
	check(update(alice, &u, NULL, "{s:s}", "email", "Alice2@Example.com") == USER_CREATED);
	check(strcmp(user_email(u) ?: "", "alice2@example.com") == 0 && !verified(u, "email") &&
	      verified(u, "phone_number"));
	json_decref(u);
	u = NULL;
	check(strcmp(found(ID_EMAIL, "alice2@example.com"), alice) == 0);
	check(strcmp(found(ID_EMAIL, "alice@example.com"), "") == 0);
	/* Another user's identifier is refused, and the refusal changes nothing. */
	check(update(alice, NULL, NULL, "{s:s}", "email", "bob@example.com") == USER_CONFLICT);
	check(update(bob, NULL, NULL, "{s:s, s:s}", "email", "bob2@example.com", "username",
		     "alice") == USER_CONFLICT);
	check(strcmp(found(ID_EMAIL, "bob@example.com"), bob) == 0);
	check(strcmp(found(ID_EMAIL, "bob2@example.com"), "") == 0);
	check(strcmp(found(ID_USERNAME, "alice"), alice) == 0);
	/* Invalid values and statuses. */
	check(update(alice, NULL, NULL, "{s:s}", "phone_number", "+0") == USER_INVALID);
	check(update(alice, NULL, NULL, "{s:s}", "status", "Gone") == USER_INVALID);
	check(update(alice, NULL, NULL, "{s:i}", "status", 1) == USER_INVALID);
	check(update(alice, NULL, NULL, "{s:s}", "name", "x") == USER_INVALID);
	/* null removes an identifier and its index; a username can be taken over then. */
	check(update(alice, &u, NULL, "{s:n}", "username") == USER_CREATED);
	check(json_is_null(json_object_get(u, "username")));
	json_decref(u);
	u = NULL;
	check(strcmp(found(ID_USERNAME, "alice"), "") == 0);
	check(update(bob, NULL, NULL, "{s:s}", "username", "alice") == USER_CREATED);
	check(strcmp(found(ID_USERNAME, "alice"), bob) == 0);
	/* Dropping one of email and phone is fine; dropping both is refused, and undone. */
	check(update(alice, NULL, NULL, "{s:n}", "email") == USER_CREATED);
	check(strcmp(found(ID_EMAIL, "alice2@example.com"), "") == 0);
	check(update(alice, NULL, NULL, "{s:n}", "phone_number") == USER_INVALID &&
	      strstr(err, "email") != NULL);
	check(update(bob, NULL, NULL, "{s:n, s:n}", "email", "phone_number") == USER_INVALID);
	check(strcmp(found(ID_PHONE, "+14155550100"), alice) == 0);
	check(strcmp(found(ID_EMAIL, "bob@example.com"), bob) == 0);
	u = by_id(alice);
	check(strcmp(user_phone(u) ?: "", "+14155550100") == 0);
	json_decref(u);
	/* Swapping: bob gives up his email and takes a phone in one update. */
	check(update(bob, NULL, NULL, "{s:n, s:s}", "email", "phone_number", "+4915112345678") ==
	      USER_CREATED);
	check(strcmp(found(ID_PHONE, "+4915112345678"), bob) == 0);
	check(strcmp(found(ID_EMAIL, "bob@example.com"), "") == 0);
	/* Status: was_active tells the caller what it was; the change is timed. */
	u = by_id(alice);
	changed = json_integer_value(json_object_get(u, "status_changed_at"));
	json_decref(u);
	u = NULL;
	check(update(alice, &u, &was_active, "{s:s, s:[s], s:{s:s}}", "status", "Disabled", "roles",
		     "viewer", "custom_data", "k", "v") == USER_CREATED);
	check(was_active == 1 && !user_is_active(u));
	check(json_integer_value(json_object_get(u, "status_changed_at")) >= changed);
	check(strcmp(json_string_value(json_array_get(json_object_get(u, "roles"), 0)) ?: "",
		     "viewer") == 0);
	json_decref(u);
	u = by_id(alice);
	check(!user_is_active(u) &&
	      strcmp(json_string_value(json_object_get(u, "status")) ?: "", "Disabled") == 0);
	json_decref(u);
	check(update(alice, NULL, &was_active, "{s:s}", "status", "Active") == USER_CREATED &&
	      was_active == 0);
	/* Unknown user. */
	check(update("0123456789abcdef0123456789abcdef", NULL, NULL, "{s:s}", "status", "Active") ==
	      STORE_NOTFOUND);
}

static void deleting(void)
{
	json_t *u = NULL;
	char id[64];

	check(create(&u, "{s:s, s:s, s:s}", "email", "gone@example.com", "phone_number",
		     "+15005550006", "username", "gone") == USER_CREATED);
	snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(u, "user_id")));
	json_decref(u);
	check(store_run(c.store, delete_txn, id) == STORE_FOUND);
	check(strcmp(found(ID_USER_ID, id), "") == 0);
	check(strcmp(found(ID_EMAIL, "gone@example.com"), "") == 0);
	check(strcmp(found(ID_PHONE, "+15005550006"), "") == 0);
	check(strcmp(found(ID_USERNAME, "gone"), "") == 0);
	check(store_run(c.store, delete_txn, id) == STORE_NOTFOUND);
	/* Its identifiers are free for a new user. */
	check(create(NULL, "{s:s, s:s, s:s}", "email", "gone@example.com", "phone_number",
		     "+15005550006", "username", "gone") == USER_CREATED);
}

static void paging(void)
{
	json_t *all = user_list(&c), *page, *ids = json_array(), *v;
	const char *cursor = "";
	char last[64] = "";
	size_t i, pages = 0, total = json_array_size(all);
	int sorted = 1, counts = 1, flags = 1;

	check(all != NULL && total >= 7);
	for (;;) {
		page = user_page(&c, cursor[0] ? cursor : NULL, 3);
		if (!check(page != NULL))
			break;
		pages++;
		counts &= (size_t)json_integer_value(json_object_get(page, "total_count")) == total;
		v = json_object_get(page, "page_info");
		flags &= json_is_true(json_object_get(v, "has_previous_page")) == (cursor[0] != 0);
		json_array_foreach(json_object_get(page, "result"), i, v)
		{
			const char *id = json_string_value(json_object_get(v, "user_id"));
			sorted &= strcmp(id, last) > 0;
			snprintf(last, sizeof(last), "%s", id);
			json_array_append_new(ids, json_string(id));
		}
		counts &= json_array_size(json_object_get(page, "result")) <= 3;
		v = json_object_get(page, "page_info");
		if (!json_is_true(json_object_get(v, "has_next_page"))) {
			json_decref(page);
			break;
		}
		/* The cursor is the page's last user. */
		flags &=
		    strcmp(json_string_value(json_object_get(v, "end_cursor")) ?: "", last) == 0;
		cursor = last;
		json_decref(page);
		if (pages > total)
			break;
	}
	check(sorted && counts && flags);
	check(json_array_size(ids) == total && pages == (total + 2) / 3);
	/* A cursor past the last user: an empty last page. */
	page = user_page(&c, "ffffffffffffffffffffffffffffffffff", 3);
	check(page != NULL && json_array_size(json_object_get(page, "result")) == 0 &&
	      json_is_false(json_object_get(json_object_get(page, "page_info"), "has_next_page")) &&
	      json_is_null(json_object_get(json_object_get(page, "page_info"), "end_cursor")));
	json_decref(page);
	/* A cursor that names no user starts after where it would sort. */
	page = user_page(&c, "", 100);
	check(page != NULL && json_array_size(json_object_get(page, "result")) == total);
	json_decref(page);
	json_decref(ids);
	json_decref(all);
}

int main(void)
{
	char alice[64];

	pure_helpers();
	if (fixture_open("/dev/shm", "user", 8) < 0)
		return check_done();
	creating(alice);
	logging_in(alice);
	recording(alice);
	updating(alice);
	deleting();
	paging();
	fixture_close();
	return check_done();
}
