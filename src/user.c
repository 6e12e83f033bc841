#include "user.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "clock.h"
#include "crypto.h"
#include "err.h"
#include "mail.h"

static const char *const idtype_names[] = {"email", "phone_number", "user_id", "username"};

enum user_idtype user_idtype_parse(const char *s)
{
	for (int i = 0; s != NULL && i < 4; i++)
		if (strcmp(s, idtype_names[i]) == 0)
			return (enum user_idtype)i;
	return ID_INVALID;
}

const char *user_idtype_name(enum user_idtype type)
{
	return type < ID_INVALID ? idtype_names[type] : "invalid";
}

int user_phone_valid(const char *s)
{
	size_t n = 0;
	if (s == NULL || s[0] != '+' || s[1] < '1' || s[1] > '9')
		return 0;
	for (s++; *s; s++, n++)
		if (!isdigit((unsigned char)*s))
			return 0;
	return n >= 7 && n <= 15;
}

static int plain_id_valid(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return 0;
	for (; *s; s++)
		if ((unsigned char)*s < 0x21 || *s == 0x7f)
			return 0;
	return 1;
}

char *user_normalize(enum user_idtype type, const char *value)
{
	char *out;

	if (value == NULL)
		return NULL;
	switch (type) {
	case ID_EMAIL:
		if (!mail_address_valid(value))
			return NULL;
		out = strdup(value);
		for (char *p = out; out && *p; p++)
			*p = (char)tolower((unsigned char)*p);
		return out;
	case ID_PHONE:
		return user_phone_valid(value) ? strdup(value) : NULL;
	case ID_USER_ID:
	case ID_USERNAME:
		return plain_id_valid(value, 128) ? strdup(value) : NULL;
	default:
		return NULL;
	}
}

static void rfc3339_now(char out[32])
{
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *idx_prefix(enum user_idtype type)
{
	switch (type) {
	case ID_EMAIL:
		return "email:";
	case ID_PHONE:
		return "phone:";
	case ID_USERNAME:
		return "username:";
	default:
		return NULL;
	}
}

static int idx_key(enum user_idtype type, const char *canonical, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "%s%s", idx_prefix(type), canonical);
	return n < 0 || (size_t)n >= outlen ? -1 : n;
}

int user_find_txn(struct store_txn *t, enum user_idtype type, const char *canonical, json_t **user)
{
	char key[300];
	const char *id = canonical;
	json_t *ref = NULL;
	int rc, n;

	if (type != ID_USER_ID) {
		n = idx_key(type, canonical, key, sizeof(key));
		if (n < 0)
			return STORE_NOTFOUND;
		rc = store_get(t, TBL_USER_IDX, key, (size_t)n, &ref, 0);
		if (rc != STORE_FOUND)
			return rc;
		id = json_string_value(json_object_get(ref, "user_id"));
		if (id == NULL) {
			json_decref(ref);
			return STORE_ERR;
		}
	}
	rc = store_get(t, TBL_USERS, id, strlen(id), user, 0);
	json_decref(ref);
	return rc;
}

/* Claim the index entry for an identifier. USER_CONFLICT when taken by someone else. */
static int claim_index(struct store_txn *t, enum user_idtype type, const char *canonical,
		       const char *user_id)
{
	char key[300];
	json_t *ref;
	int n = idx_key(type, canonical, key, sizeof(key)), rc;

	if (n < 0)
		return USER_INVALID;
	rc = store_get(t, TBL_USER_IDX, key, (size_t)n, &ref, 1);
	if (rc < 0)
		return rc;
	if (rc == STORE_FOUND) {
		json_decref(ref);
		return USER_CONFLICT;
	}
	ref = json_pack("{s:s}", "user_id", user_id);
	rc = store_put(t, TBL_USER_IDX, key, (size_t)n, ref);
	json_decref(ref);
	return rc;
}

/* Validate and canonicalise one optional identifier member of spec into *out (new or NULL). */
static int spec_identifier(json_t *spec, const char *field, enum user_idtype type, char **out,
			   char *err, size_t errlen)
{
	json_t *v = json_object_get(spec, field);
	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	*out = user_normalize(type, json_string_value(v));
	if (*out == NULL) {
		snprintf(err, errlen, "%s is not valid", field);
		return -1;
	}
	return 0;
}

static json_t *verified_object(const char *kind, const char *value)
{
	char flag[32];
	if (value == NULL)
		return json_null();
	snprintf(flag, sizeof(flag), "%s_verified", kind);
	return json_pack("{s:s, s:b, s:n}", "value", value, flag, 0, "verified_at");
}

static int optional_types_ok(json_t *spec, char *err, size_t errlen)
{
	json_t *name = json_object_get(spec, "name"), *roles = json_object_get(spec, "roles");
	json_t *custom = json_object_get(spec, "custom_data");
	json_t *ext = json_object_get(spec, "external_account_id"), *v;
	size_t i;

	if (name && !json_is_object(name)) {
		snprintf(err, errlen, "name must be an object");
		return 0;
	}
	if (custom && !json_is_object(custom)) {
		snprintf(err, errlen, "custom_data must be an object");
		return 0;
	}
	if (ext && !json_is_string(ext)) {
		snprintf(err, errlen, "external_account_id must be a string");
		return 0;
	}
	if (roles && !json_is_array(roles)) {
		snprintf(err, errlen, "roles must be an array of strings");
		return 0;
	}
	json_array_foreach(roles, i, v) if (!json_is_string(v))
	{
		snprintf(err, errlen, "roles must be an array of strings");
		return 0;
	}
	return 1;
}

/* A new reference to spec's member name, or def (a new reference, dropped when unused). */
static json_t *member_or(json_t *spec, const char *name, json_t *def)
{
	json_t *v = json_object_get(spec, name);
	if (v == NULL || json_is_null(v))
		return def;
	json_decref(def);
	return json_incref(v);
}

static const char *const statuses[] = {"Active", "Disabled", "Pending", NULL};

/* The status name v (a JSON string) names, or NULL when it is none of statuses. */
static const char *status_name(json_t *v)
{
	const char *const *s = statuses;
	while (*s && (!json_is_string(v) || strcmp(*s, json_string_value(v)) != 0))
		s++;
	return *s;
}

/*
 * What a migrated user keeps from the system it comes from (user_create_imported_txn), read
 * and checked before anything is written. 0, or USER_INVALID with err.
 */
struct kept {
	const char *user_id, *status;
	int email_verified, phone_verified;
	json_int_t created_at;
};

static int kept_parse(json_t *spec, struct kept *k, char *err, size_t errlen)
{
	json_t *id = json_object_get(spec, "user_id"), *st = json_object_get(spec, "status");
	json_t *ev = json_object_get(spec, "email_verified");
	json_t *pv = json_object_get(spec, "phone_number_verified");
	json_t *ca = json_object_get(spec, "created_at");

	if (id != NULL && !json_is_null(id) &&
	    (!json_is_string(id) || !plain_id_valid(json_string_value(id), 128))) {
		snprintf(err, errlen, "user_id is not valid");
		return USER_INVALID;
	}
	k->user_id = json_string_value(id);
	k->status = st == NULL || json_is_null(st) ? "Active" : status_name(st);
	if (k->status == NULL) {
		snprintf(err, errlen, "status must be Active, Disabled or Pending");
		return USER_INVALID;
	}
	if ((ev != NULL && !json_is_boolean(ev) && !json_is_null(ev)) ||
	    (pv != NULL && !json_is_boolean(pv) && !json_is_null(pv))) {
		snprintf(err, errlen, "email_verified and phone_number_verified must be booleans");
		return USER_INVALID;
	}
	k->email_verified = json_is_true(ev);
	k->phone_verified = json_is_true(pv);
	if (ca != NULL && !json_is_null(ca) &&
	    (!json_is_integer(ca) || json_integer_value(ca) < 0)) {
		snprintf(err, errlen, "created_at must be epoch milliseconds");
		return USER_INVALID;
	}
	k->created_at = json_is_integer(ca) ? json_integer_value(ca) : -1;
	return 0;
}

/* A verified channel of a migrated user: verified as of the import. */
static void mark_verified(json_t *u, const char *member, const char *flag, const char *when)
{
	json_t *ch = json_object_get(u, member);
	if (json_is_object(ch)) {
		json_object_set_new(ch, flag, json_true());
		json_object_set_new(ch, "verified_at", json_string(when));
	}
}

/* user_create_txn, and with imported != 0 user_create_imported_txn. */
static int create_user(struct store_txn *t, json_t *spec, int imported, json_t **user, char *err,
		       size_t errlen)
{
	char *email = NULL, *phone = NULL, *username = NULL, id[129], when[32];
	unsigned char raw[16];
	long long now = clock_now_ms();
	struct kept k = {NULL, "Active", 0, 0, -1};
	json_t *u = NULL, *taken = NULL;
	int rc = USER_INVALID;

	if (spec_identifier(spec, "email", ID_EMAIL, &email, err, errlen) < 0 ||
	    spec_identifier(spec, "phone_number", ID_PHONE, &phone, err, errlen) < 0 ||
	    spec_identifier(spec, "username", ID_USERNAME, &username, err, errlen) < 0 ||
	    !optional_types_ok(spec, err, errlen) ||
	    (imported && kept_parse(spec, &k, err, errlen)))
		goto out;
	if (email == NULL && phone == NULL) {
		snprintf(err, errlen, "a user needs an email or a phone_number");
		goto out;
	}
	if (k.user_id != NULL) {
		snprintf(id, sizeof(id), "%s", k.user_id);
		/* A kept id must be free: checked before any index entry is claimed. */
		rc = store_get(t, TBL_USERS, id, strlen(id), &taken, 1);
		if (rc != STORE_NOTFOUND) {
			json_decref(taken);
			rc = rc < 0 ? rc : USER_CONFLICT;
			goto out;
		}
	} else {
		crypto_random(raw, sizeof(raw));
		crypto_hex(raw, sizeof(raw), id);
	}
	if ((email && (rc = claim_index(t, ID_EMAIL, email, id)) != 0) ||
	    (phone && (rc = claim_index(t, ID_PHONE, phone, id)) != 0) ||
	    (username && (rc = claim_index(t, ID_USERNAME, username, id)) != 0))
		goto out;
	u = json_pack("{s:s, s:o, s:o, s:o, s:s, s:I, s:I, s:I, s:n, s:o, s:o, s:o, s:o, s:[]}",
		      "user_id", id, "email", verified_object("email", email), "phone_number",
		      verified_object("phone_number", phone), "username",
		      username ? json_string(username) : json_null(), "status", k.status,
		      "status_changed_at", (json_int_t)now, "created_at",
		      (json_int_t)(k.created_at >= 0 ? k.created_at : now), "updated_at",
		      (json_int_t)now, "last_auth", "name", member_or(spec, "name", json_object()),
		      "custom_data", member_or(spec, "custom_data", json_object()),
		      "external_account_id", member_or(spec, "external_account_id", json_null()),
		      "roles", member_or(spec, "roles", json_array()), "org_ids");
	if (u == NULL) {
		rc = STORE_ERR;
		goto out;
	}
	rfc3339_now(when);
	if (k.email_verified)
		mark_verified(u, "email", "email_verified", when);
	if (k.phone_verified)
		mark_verified(u, "phone_number", "phone_number_verified", when);
	rc = store_put(t, TBL_USERS, id, strlen(id), u);
	if (rc == 0) {
		*user = u;
		u = NULL;
		rc = USER_CREATED;
	}
out:
	json_decref(u);
	free(email);
	free(phone);
	free(username);
	return rc;
}

int user_create_txn(struct store_txn *t, json_t *spec, json_t **user, char *err, size_t errlen)
{
	return create_user(t, spec, 0, user, err, errlen);
}

int user_create_imported_txn(struct store_txn *t, json_t *spec, json_t **user, char *err,
			     size_t errlen)
{
	return create_user(t, spec, 1, user, err, errlen);
}

int user_record_login_txn(struct store_txn *t, json_t *user, const char *channel)
{
	const char *id = json_string_value(json_object_get(user, "user_id"));
	json_t *ch = channel ? json_object_get(user, channel) : NULL;
	char when[32], flag[40];

	rfc3339_now(when);
	if (json_is_object(ch)) {
		snprintf(flag, sizeof(flag), "%s_verified", channel);
		if (!json_is_true(json_object_get(ch, flag))) {
			json_object_set_new(ch, flag, json_true());
			json_object_set_new(ch, "verified_at", json_string(when));
		}
	}
	json_object_set_new(user, "last_auth", json_string(when));
	json_object_set_new(user, "updated_at", json_integer(clock_now_ms()));
	return store_put(t, TBL_USERS, id, strlen(id), user);
}

int user_signup_allows(json_t *client, enum user_idtype type)
{
	const char *signup = json_string_value(json_object_get(client, "signup"));
	return (type == ID_EMAIL || type == ID_PHONE) && signup != NULL &&
	       strcmp(signup, "open") == 0;
}

int user_for_login_txn(struct store_txn *t, json_t *client, enum user_idtype type,
		       const char *canonical, json_t **user)
{
	char err[128];
	json_t *spec;
	int rc = user_find_txn(t, type, canonical, user);

	if (rc != STORE_NOTFOUND)
		return rc < 0 ? rc : ERR_NONE;
	if (!user_signup_allows(client, type))
		return ERR_USER_NOT_FOUND;
	spec = json_pack("{s:s}", type == ID_EMAIL ? "email" : "phone_number", canonical);
	rc = user_create_txn(t, spec, user, err, sizeof(err));
	json_decref(spec);
	if (rc < 0)
		return rc;
	return rc == USER_CREATED ? ERR_NONE : ERR_INTERNAL;
}

int user_is_active(json_t *user)
{
	const char *s = json_string_value(json_object_get(user, "status"));
	return s != NULL && strcmp(s, "Active") == 0;
}

const char *user_email(json_t *user)
{
	return json_string_value(json_object_get(json_object_get(user, "email"), "value"));
}

const char *user_phone(json_t *user)
{
	return json_string_value(json_object_get(json_object_get(user, "phone_number"), "value"));
}

struct create_arg {
	json_t *spec, *user;
	char *err;
	size_t errlen;
};

static int create_txn(struct store_txn *t, void *argp)
{
	struct create_arg *a = argp;
	int rc = user_create_txn(t, a->spec, &a->user, a->err, a->errlen);
	/* Only a creation commits; a conflict or bad input must leave no index entry behind. */
	return rc == USER_CREATED || rc < 0 ? rc : STORE_REFUSE(rc);
}

int user_create(struct ctx *c, json_t *spec, json_t **user, char *err, size_t errlen)
{
	struct create_arg a = {spec, NULL, err, errlen};
	int rc = store_run(c->store, create_txn, &a);
	if (store_refused(rc) >= 0)
		return store_refused(rc);
	if (rc == USER_CREATED)
		*user = a.user;
	return rc;
}

static int list_cb(const void *k, size_t klen, json_t *val, void *arg)
{
	return json_array_append(arg, val) < 0 ? STORE_ERR : 0;
}

static int list_txn(struct store_txn *t, void *arg)
{
	json_array_clear(arg);
	return store_each(t, TBL_USERS, NULL, 0, list_cb, arg);
}

json_t *user_list(struct ctx *c)
{
	json_t *list = json_array();
	if (list != NULL && store_run(c->store, list_txn, list) < 0) {
		json_decref(list);
		return NULL;
	}
	return list;
}

struct get_arg {
	enum user_idtype type;
	const char *canonical;
	json_t *user;
};

static int get_txn(struct store_txn *t, void *argp)
{
	struct get_arg *a = argp;
	return user_find_txn(t, a->type, a->canonical, &a->user);
}

int user_get(struct ctx *c, enum user_idtype type, const char *canonical, json_t **user)
{
	struct get_arg a = {type, canonical, NULL};
	int rc = store_run(c->store, get_txn, &a);
	if (rc == STORE_FOUND)
		*user = a.user;
	return rc;
}

/* The current value of an identifier member ("email" object, or "username" string). */
static const char *current_identifier(json_t *user, const char *member)
{
	json_t *v = json_object_get(user, member);
	return json_is_object(v) ? json_string_value(json_object_get(v, "value"))
				 : json_string_value(v);
}

/* Remove the index entry of an identifier member ("email", ...) of user, when it has one. */
static int drop_index(struct store_txn *t, json_t *user, const char *member, enum user_idtype type)
{
	const char *value = current_identifier(user, member);
	char key[300];
	int n, rc;

	if (value == NULL)
		return 0;
	n = idx_key(type, value, key, sizeof(key));
	if (n < 0)
		return 0;
	rc = store_del(t, TBL_USER_IDX, key, (size_t)n);
	return rc < 0 ? rc : 0;
}

/* Apply one identifier member of patch: validate, reindex, and set it on the user. */
static int patch_identifier(struct store_txn *t, json_t *user, json_t *patch, const char *member,
			    enum user_idtype type, char *err, size_t errlen)
{
	const char *id = json_string_value(json_object_get(user, "user_id"));
	json_t *v = json_object_get(patch, member);
	char *canonical = NULL;
	int rc;

	if (v == NULL)
		return 0;
	if (!json_is_null(v) && spec_identifier(patch, member, type, &canonical, err, errlen) < 0)
		return USER_INVALID;
	if (canonical != NULL && current_identifier(user, member) != NULL &&
	    strcmp(canonical, current_identifier(user, member)) == 0) {
		free(canonical); /* unchanged: keeps its verification */
		return 0;
	}
	if ((rc = drop_index(t, user, member, type)) < 0)
		goto out;
	if (canonical != NULL && (rc = claim_index(t, type, canonical, id)) != 0)
		goto out;
	if (type == ID_USERNAME)
		json_object_set_new(user, member, canonical ? json_string(canonical) : json_null());
	else
		json_object_set_new(user, member, verified_object(member, canonical));
	rc = 0;
out:
	free(canonical);
	return rc;
}

/* The members of patch that are not identifiers. USER_INVALID (err) or 0. */
static int patch_plain(json_t *user, json_t *patch, char *err, size_t errlen)
{
	json_t *status = json_object_get(patch, "status");
	static const char *const plain[] = {"name", "custom_data", "external_account_id", "roles"};

	if (!optional_types_ok(patch, err, errlen))
		return USER_INVALID;
	if (status != NULL) {
		const char *name = status_name(status);
		if (name == NULL) {
			snprintf(err, errlen, "status must be Active, Disabled or Pending");
			return USER_INVALID;
		}
		if (strcmp(name, json_string_value(json_object_get(user, "status")) ?: "") != 0) {
			json_object_set_new(user, "status", json_string(name));
			json_object_set_new(user, "status_changed_at",
					    json_integer(clock_now_ms()));
		}
	}
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		if (json_object_get(patch, plain[i]) != NULL)
			json_object_set(user, plain[i], json_object_get(patch, plain[i]));
	return 0;
}

int user_update_txn(struct store_txn *t, const char *user_id, json_t *patch, json_t **user,
		    int *was_active, char *err, size_t errlen)
{
	json_t *u;
	int rc = store_get(t, TBL_USERS, user_id, strlen(user_id), &u, 1);

	if (rc <= 0)
		return rc;
	*was_active = user_is_active(u);
	if ((rc = patch_identifier(t, u, patch, "email", ID_EMAIL, err, errlen)) ||
	    (rc = patch_identifier(t, u, patch, "phone_number", ID_PHONE, err, errlen)) ||
	    (rc = patch_identifier(t, u, patch, "username", ID_USERNAME, err, errlen)) ||
	    (rc = patch_plain(u, patch, err, errlen)))
		goto out;
	if (user_email(u) == NULL && user_phone(u) == NULL) {
		snprintf(err, errlen, "a user needs an email or a phone_number");
		rc = USER_INVALID;
		goto out;
	}
	json_object_set_new(u, "updated_at", json_integer(clock_now_ms()));
	if ((rc = store_put(t, TBL_USERS, user_id, strlen(user_id), u)) < 0)
		goto out;
	*user = u;
	return USER_CREATED;
out:
	json_decref(u);
	return rc;
}

int user_delete_txn(struct store_txn *t, const char *user_id)
{
	json_t *user;
	int rc = store_get(t, TBL_USERS, user_id, strlen(user_id), &user, 1);

	if (rc <= 0)
		return rc;
	if ((rc = drop_index(t, user, "email", ID_EMAIL)) >= 0 &&
	    (rc = drop_index(t, user, "phone_number", ID_PHONE)) >= 0 &&
	    (rc = drop_index(t, user, "username", ID_USERNAME)) >= 0)
		rc = store_del(t, TBL_USERS, user_id, strlen(user_id));
	json_decref(user);
	return rc < 0 ? rc : STORE_FOUND;
}

struct page_arg {
	const char *cursor;
	size_t size, total;
	json_t *result;
	int more;
};

/* 1 when key k sorts after the cursor (Berkeley DB's default byte order). */
static int key_after(const void *k, size_t klen, const char *cursor)
{
	size_t clen = strlen(cursor), n = klen < clen ? klen : clen;
	int cmp = memcmp(k, cursor, n);
	return cmp > 0 || (cmp == 0 && klen > clen);
}

/* The page's records from the cursor on, and one more to tell whether a next page exists. */
static int page_cb(const void *k, size_t klen, json_t *val, void *argp)
{
	struct page_arg *p = argp;

	if (p->cursor != NULL && !key_after(k, klen, p->cursor))
		return 0;
	if (json_array_size(p->result) < p->size)
		return json_array_append(p->result, val) < 0 ? STORE_ERR : 0;
	p->more = 1;
	return 1;
}

static int page_txn(struct store_txn *t, void *argp)
{
	struct page_arg *p = argp;
	int rc;

	p->more = 0;
	json_array_clear(p->result);
	/* The total is counted apart: a page reads only its own records, whatever the total. */
	rc = store_count(t, TBL_USERS, &p->total);
	if (rc < 0)
		return rc;
	return store_each(t, TBL_USERS, p->cursor, p->cursor ? strlen(p->cursor) : 0, page_cb, p);
}

json_t *user_page(struct ctx *c, const char *cursor, size_t page_size)
{
	struct page_arg p = {cursor, page_size, 0, json_array(), 0};
	json_t *last;

	if (store_run(c->store, page_txn, &p) < 0) {
		json_decref(p.result);
		return NULL;
	}
	last = json_array_get(p.result, json_array_size(p.result) - 1);
	return json_pack("{s:I, s:{s:b, s:b, s:O?}, s:o}", "total_count", (json_int_t)p.total,
			 "page_info", "has_next_page", p.more, "has_previous_page", cursor != NULL,
			 "end_cursor", json_object_get(last, "user_id"), "result", p.result);
}
