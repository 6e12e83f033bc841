/*
 * account: changes to a user that reach into its sessions. A user who may not log in keeps no
 * session, and a deleted one leaves none behind: this module sits above user (the record) and
 * session (the logins), so that neither needs the other.
 */
#ifndef OTLOGIN_ACCOUNT_H
#define OTLOGIN_ACCOUNT_H

#include <jansson.h>
#include <stddef.h>

#include "ctx.h"

/*
 * Change the members patch (borrowed) holds (see user_update_txn). A user who is no longer
 * Active keeps no session, and becomes Active again only once none is left: every one is
 * ended (in bounded transactions). Returns USER_CREATED (meaning updated) with *user,
 * USER_CONFLICT, USER_INVALID (message in err), STORE_NOTFOUND, or a negative store_rc (the
 * update may have been stored: the same update again finishes it).
 */
int account_update(struct ctx *c, const char *user_id, json_t *patch, json_t **user, char *err,
		   size_t errlen);

/*
 * Delete a user, its indexes and every one of its sessions (in bounded transactions).
 * STORE_FOUND, STORE_NOTFOUND or < 0.
 */
int account_delete(struct ctx *c, const char *user_id);

#endif
