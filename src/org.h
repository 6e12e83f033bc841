/*
 * org: B2B organizations. An organization is a record in the user index table
 * ("org:<org_id>"); membership lives on the user (org_ids, and per-organization roles in
 * org_roles) so that a login reads it with the user it already loads.
 */
#ifndef OTLOGIN_ORG_H
#define OTLOGIN_ORG_H

#include <jansson.h>

#include "ctx.h"
#include "store.h"

/*
 * Create an organization named name, with org_id (NULL: a random one). On 0 *out is a new
 * {"org_id", "name"}. Returns 0, 1 when the id is taken, -1 on bad input (err) or store errors.
 */
int org_create(struct ctx *c, const char *org_id, const char *name, json_t **out, char *err,
	       size_t errlen);

/* All organizations as a new array, or NULL on a store error. */
json_t *org_list(struct ctx *c);

/*
 * Make user_id a member of org_id with roles (borrowed array of strings; replaces earlier
 * roles). Returns 0, -1 with a message in err (unknown organization or user, store error).
 */
int org_add_member(struct ctx *c, const char *org_id, const char *user_id, json_t *roles, char *err,
		   size_t errlen);

/* 1 with *roles (new reference) when user (borrowed) is a member of org_id, else 0. */
int org_member_roles(json_t *user, const char *org_id, json_t **roles);

#endif
