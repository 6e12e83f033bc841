/*
 * org: organizations on a real store: creation with a given or a random id, taken ids and
 * bad input refused; the list holds organizations only (their records share the user index
 * table); membership on the user, added once, its roles replaced; org_member_roles.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "org.h"
#include "user.h"

static char err[256];

static int create(const char *id, const char *name, char *made)
{
	json_t *out = NULL;
	int rc;

	err[0] = '\0';
	rc = org_create(&c, id, name, &out, err, sizeof(err));
	if (rc == 0) {
		check(json_object_size(out) == 2 &&
		      strcmp(json_string_value(json_object_get(out, "name")) ?: "", name) == 0);
		if (made != NULL)
			snprintf(made, 160, "%s",
				 json_string_value(json_object_get(out, "org_id")));
		json_decref(out);
	}
	return rc;
}

/* A new user with email (and a phone and username, whose index keys sort after "org:"). */
static json_t *user(const char *id)
{
	json_t *u = NULL;
	return user_get(&c, ID_USER_ID, id, &u) == STORE_FOUND ? u : NULL;
}

/* The roles of id in org (as a compact JSON text, static), or "-" for no membership. */
static const char *roles_of(const char *id, const char *org)
{
	static char out[256];
	json_t *u = user(id), *roles = NULL;
	char *text;

	snprintf(out, sizeof(out), "-");
	if (u != NULL && org_member_roles(u, org, &roles)) {
		text = json_dumps(roles, JSON_COMPACT | JSON_ENCODE_ANY);
		snprintf(out, sizeof(out), "%s", text ? text : "?");
		free(text);
		json_decref(roles);
	}
	json_decref(u);
	return out;
}

int main(void)
{
	char made[160], name[202], longid[130], alice[64], bob[64];
	json_t *list, *v, *u, *roles;
	size_t i;
	int only_orgs = 1, have_acme = 0, have_made = 0;

	if (fixture_open("/dev/shm", "org", 8) < 0)
		return check_done();
	fixture_user("alice@example.com", "+14155550100", "zed", alice);
	fixture_user("bob@example.com", "+14155550101", "zoe", bob);

	/* Given and random ids. */
	check(create("acme", "Acme Inc.", made) == 0 && strcmp(made, "acme") == 0);
	check(create("A-b_c.9", "Dotted", NULL) == 0);
	check(create(NULL, "Random", made) == 0);
	check(strlen(made) == 24 && strspn(made, "0123456789abcdef") == 24);
	/* A taken id: 1, and the first one stays. */
	check(create("acme", "Other", NULL) == 1 && strstr(err, "acme") != NULL);
	/* Bad ids and names. */
	check(create("a b", "x", NULL) == -1 && err[0] != '\0');
	check(create("a/b", "x", NULL) == -1 && create("", "x", NULL) == -1);
	check(create("caf\xc3\xa9", "x", NULL) == -1);
	memset(longid, 'i', 128);
	longid[128] = '\0';
	check(create(longid, "x", NULL) == 0);
	longid[128] = 'i';
	longid[129] = '\0';
	check(create(longid, "x", NULL) == -1);
	check(create("noname", "", NULL) == -1 && create("noname", NULL, NULL) == -1);
	memset(name, 'n', 201);
	name[201] = '\0';
	check(create("longname", name, NULL) == -1);
	name[200] = '\0';
	check(create("longname", name, NULL) == 0);

	/* The list: the organizations made, nothing else of their table. */
	list = org_list(&c);
	check(list != NULL && json_array_size(list) == 5);
	json_array_foreach(list, i, v)
	{
		const char *id = json_string_value(json_object_get(v, "org_id"));
		only_orgs &= id != NULL && json_is_string(json_object_get(v, "name"));
		if (id && strcmp(id, "acme") == 0)
			have_acme =
			    strcmp(json_string_value(json_object_get(v, "name")), "Acme Inc.") == 0;
		if (id && strcmp(id, made) == 0)
			have_made = 1;
	}
	check(only_orgs && have_acme && have_made);
	json_decref(list);

	/* Membership: unknown organization or user refused, with a message. */
	roles = json_pack("[s]", "admin");
	check(org_add_member(&c, "nope", alice, roles, err, sizeof(err)) == -1 &&
	      strstr(err, "nope") != NULL);
	check(org_add_member(&c, "acme", "0123456789abcdef0123456789abcdef", roles, err,
			     sizeof(err)) == -1 &&
	      strstr(err, "0123456789abcdef") != NULL);
	check(strcmp(roles_of(alice, "acme"), "-") == 0);
	check(org_add_member(&c, "acme", alice, roles, err, sizeof(err)) == 0);
	json_decref(roles);
	check(strcmp(roles_of(alice, "acme"), "[\"admin\"]") == 0);
	check(strcmp(roles_of(alice, "A-b_c.9"), "-") == 0);
	check(strcmp(roles_of(bob, "acme"), "-") == 0);
	/* Adding again replaces the roles, and lists the organization once. */
	roles = json_pack("[s, s]", "viewer", "billing");
	check(org_add_member(&c, "acme", alice, roles, err, sizeof(err)) == 0);
	check(org_add_member(&c, "A-b_c.9", alice, roles, err, sizeof(err)) == 0);
	json_decref(roles);
	check(strcmp(roles_of(alice, "acme"), "[\"viewer\",\"billing\"]") == 0);
	u = user(alice);
	v = json_object_get(u, "org_ids");
	check(json_array_size(v) == 2 &&
	      strcmp(json_string_value(json_array_get(v, 0)) ?: "", "acme") == 0 &&
	      strcmp(json_string_value(json_array_get(v, 1)) ?: "", "A-b_c.9") == 0);
	/* The membership left the rest of the user alone. */
	check(strcmp(user_email(u) ?: "", "alice@example.com") == 0 && user_is_active(u));
	json_decref(u);
	roles = json_array();
	check(org_add_member(&c, "acme", bob, roles, err, sizeof(err)) == 0);
	json_decref(roles);
	check(strcmp(roles_of(bob, "acme"), "[]") == 0);

	/* org_member_roles on records: listed without roles is a member with none. */
	u = json_pack("{s:[s]}", "org_ids", "x");
	check(org_member_roles(u, "x", &roles) == 1 && json_array_size(roles) == 0);
	json_decref(roles);
	check(org_member_roles(u, "y", &roles) == 0);
	json_decref(u);
	u = json_pack("{s:{s:[s]}}", "org_roles", "x", "r"); /* roles without membership */
	check(org_member_roles(u, "x", &roles) == 0);
	json_decref(u);
	u = json_pack("{s:[i, s]}", "org_ids", 1, "x");
	check(org_member_roles(u, "x", &roles) == 1);
	json_decref(roles);
	json_decref(u);

	fixture_close();
	return check_done();
}
