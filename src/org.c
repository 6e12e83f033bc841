#include "org.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "crypto.h"

#define ORG_PREFIX "org:"

static int org_key(char *out, size_t outlen, const char *org_id)
{
	int n = snprintf(out, outlen, ORG_PREFIX "%s", org_id);
	return n < 0 || (size_t)n >= outlen ? -1 : n;
}

static int valid_org_id(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > 128)
		return 0;
	for (; *id; id++)
		if (!((*id >= 'a' && *id <= 'z') || (*id >= 'A' && *id <= 'Z') ||
		      (*id >= '0' && *id <= '9') || *id == '-' || *id == '_' || *id == '.'))
			return 0;
	return 1;
}

struct create_arg {
	const char *id;
	json_t *rec;
};

static int create_txn(struct store_txn *t, void *argp)
{
	struct create_arg *a = argp;
	char key[160];
	json_t *old;
	int n = org_key(key, sizeof(key), a->id), rc;

	if (n < 0)
		return STORE_ERR;
	rc = store_get(t, TBL_USER_IDX, key, (size_t)n, &old, 1);
	if (rc < 0)
		return rc;
	if (rc == STORE_FOUND) {
		json_decref(old);
		return 1;
	}
	rc = store_put(t, TBL_USER_IDX, key, (size_t)n, a->rec);
	return rc < 0 ? rc : 0;
}

int org_create(struct ctx *c, const char *org_id, const char *name, json_t **out, char *err,
	       size_t errlen)
{
	unsigned char raw[12];
	char id[25];
	struct create_arg a;
	int rc;

	if (name == NULL || name[0] == '\0' || strlen(name) > 200) {
		snprintf(err, errlen, "an organization needs a name of at most 200 characters");
		return -1;
	}
	if (org_id == NULL) {
		crypto_random(raw, sizeof(raw));
		crypto_hex(raw, sizeof(raw), id);
		org_id = id;
	} else if (!valid_org_id(org_id)) {
		snprintf(err, errlen, "an organization id is 1 to 128 of [A-Za-z0-9._-]");
		return -1;
	}
	a.id = org_id;
	a.rec = json_pack("{s:s, s:s, s:I}", "org_id", org_id, "name", name, "created_at",
			  (json_int_t)time(NULL));
	rc = a.rec ? store_run(c->store, create_txn, &a) : STORE_ERR;
	if (rc == 0)
		*out = json_pack("{s:s, s:s}", "org_id", org_id, "name", name);
	else if (rc == 1)
		snprintf(err, errlen, "the organization id %s is taken", org_id);
	else
		snprintf(err, errlen, "the database refused the organization");
	json_decref(a.rec);
	return rc < 0 ? -1 : rc;
}

static int list_cb(const void *k, size_t klen, json_t *val, void *arg)
{
	if (klen < strlen(ORG_PREFIX) || memcmp(k, ORG_PREFIX, strlen(ORG_PREFIX)) != 0)
		return 1;
	return json_array_append(arg, val) < 0 ? STORE_ERR : 0;
}

static int list_txn(struct store_txn *t, void *arg)
{
	json_array_clear(arg);
	return store_each(t, TBL_USER_IDX, ORG_PREFIX, strlen(ORG_PREFIX), list_cb, arg);
}

json_t *org_list(struct ctx *c)
{
	json_t *list = json_array();
	if (list != NULL && store_run(c->store, list_txn, list) < 0) {
		json_decref(list);
		return NULL;
	}
	return list;
}

struct member_arg {
	const char *org_id, *user_id;
	json_t *roles;
};

static int member_txn(struct store_txn *t, void *argp)
{
	struct member_arg *a = argp;
	char key[160];
	json_t *org, *user, *ids, *org_roles, *v;
	size_t i;
	int n = org_key(key, sizeof(key), a->org_id), rc, listed = 0;

	if (n < 0)
		return 1;
	rc = store_get(t, TBL_USER_IDX, key, (size_t)n, &org, 0);
	if (rc <= 0)
		return rc < 0 ? rc : 1;
	json_decref(org);
	rc = store_get(t, TBL_USERS, a->user_id, strlen(a->user_id), &user, 1);
	if (rc <= 0)
		return rc < 0 ? rc : 2;
	ids = json_object_get(user, "org_ids");
	if (!json_is_array(ids))
		json_object_set_new(user, "org_ids", ids = json_array());
	json_array_foreach(ids, i, v) listed |= strcmp(json_string_value(v) ?: "", a->org_id) == 0;
	if (!listed)
		json_array_append_new(ids, json_string(a->org_id));
	org_roles = json_object_get(user, "org_roles");
	if (!json_is_object(org_roles))
		json_object_set_new(user, "org_roles", org_roles = json_object());
	json_object_set(org_roles, a->org_id, a->roles);
	json_object_set_new(user, "updated_at", json_integer(clock_now_ms()));
	rc = store_put(t, TBL_USERS, a->user_id, strlen(a->user_id), user);
	json_decref(user);
	return rc < 0 ? rc : 0;
}

int org_add_member(struct ctx *c, const char *org_id, const char *user_id, json_t *roles, char *err,
		   size_t errlen)
{
	struct member_arg a = {org_id, user_id, roles};
	int rc = store_run(c->store, member_txn, &a);

	if (rc == 1)
		snprintf(err, errlen, "no organization %s", org_id);
	else if (rc == 2)
		snprintf(err, errlen, "no user %s", user_id);
	else if (rc < 0)
		snprintf(err, errlen, "the database refused the membership");
	return rc == 0 ? 0 : -1;
}

int org_member_roles(json_t *user, const char *org_id, json_t **roles)
{
	json_t *ids = json_object_get(user, "org_ids"), *v, *r;
	size_t i;

	json_array_foreach(ids, i, v)
	{
		if (json_is_string(v) && strcmp(json_string_value(v), org_id) == 0) {
			r = json_object_get(json_object_get(user, "org_roles"), org_id);
			*roles = json_is_array(r) ? json_incref(r) : json_array();
			return 1;
		}
	}
	return 0;
}
