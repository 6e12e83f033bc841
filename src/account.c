#include "account.h"

#include "err.h"
#include "session.h"
#include "store.h"
#include "user.h"

struct update_arg {
	const char *id;
	json_t *patch, *user;
	char *err;
	size_t errlen;
	int sessions_left; /* sessions beyond the transaction's batch may remain */
};

/* update_txn's refusal when a user would become Active while sessions of it remain. */
#define UPDATE_SESSIONS_LEFT 100

static int update_txn(struct store_txn *t, void *argp)
{
	struct update_arg *a = argp;
	json_t *user = NULL;
	int rc, was_active = 0;

	json_decref(a->user);
	a->user = NULL;
	a->sessions_left = 0;
	rc = user_update_txn(t, a->id, a->patch, &user, &was_active, a->err, a->errlen);
	if (rc != USER_CREATED)
		return rc <= 0 ? rc : STORE_REFUSE(rc);
	/*
	 * A user who may not log in keeps no session: the first batch ends here, the rest after
	 * the commit (none of them works meanwhile: refresh and sign-in need an active user).
	 * Re-enabling must not revive old tokens, so a user becomes Active again only in a
	 * transaction that finds no session left (say, a disable was interrupted before it ended
	 * them all).
	 */
	if (!user_is_active(user) || !was_active) {
		if ((rc = session_end_all_txn(t, a->id, NULL)) < 0)
			goto out;
		if (rc == 1 && user_is_active(user)) {
			rc = STORE_REFUSE(UPDATE_SESSIONS_LEFT);
			goto out;
		}
		a->sessions_left = rc;
	}
	a->user = user;
	return USER_CREATED;
out:
	json_decref(user);
	return rc;
}

int account_update(struct ctx *c, const char *user_id, json_t *patch, json_t **user, char *err,
		   size_t errlen)
{
	struct update_arg a = {user_id, patch, NULL, err, errlen, 0};
	int rc, rounds = 0;

	/* Re-enabling with sessions left: end them while the user is still disabled, then flip. */
	while (store_refused(rc = store_run(c->store, update_txn, &a)) == UPDATE_SESSIONS_LEFT)
		if (++rounds > 3 || session_end_all(c, user_id, NULL) != ERR_NONE)
			return STORE_ERR;
	if (store_refused(rc) >= 0)
		return store_refused(rc);
	if (rc != USER_CREATED)
		return rc;
	/* Committed; when ending the rest fails, a retry of the same update ends them. */
	if (a.sessions_left && session_end_all(c, user_id, NULL) != ERR_NONE) {
		json_decref(a.user);
		return STORE_ERR;
	}
	*user = a.user;
	return rc;
}

static int delete_txn(struct store_txn *t, void *arg)
{
	const char *id = arg;
	int rc = user_delete_txn(t, id);

	if (rc != STORE_FOUND)
		return rc;
	rc = session_end_all_txn(t, id, NULL);
	/* STORE_FOUND, or one more when sessions beyond this transaction's batch remain. */
	return rc < 0 ? rc : STORE_FOUND + rc;
}

int account_delete(struct ctx *c, const char *user_id)
{
	int rc;

	/*
	 * The sessions end first, in bounded transactions, while the user still exists: should
	 * that fail, the user is still there to delete again. The last transaction removes the
	 * user with what sessions started meanwhile (rarely more than one batch: the rest after).
	 */
	if (session_end_all(c, user_id, NULL) != ERR_NONE)
		return STORE_ERR;
	rc = store_run(c->store, delete_txn, (void *)user_id);
	if (rc == STORE_FOUND + 1)
		rc = session_end_all(c, user_id, NULL) == ERR_NONE ? STORE_FOUND : STORE_ERR;
	return rc;
}
