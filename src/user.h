/*
 * user: end users, stored in the shape of the API's User object, with unique indexes on email,
 * phone number and username. The *_txn functions run inside a caller's transaction so that a
 * login can find or create its user atomically with consuming the code.
 */
#ifndef OTLOGIN_USER_H
#define OTLOGIN_USER_H

#include <jansson.h>

#include "ctx.h"
#include "store.h"

enum user_idtype { ID_EMAIL, ID_PHONE, ID_USER_ID, ID_USERNAME, ID_INVALID };

/* Parse "email", "phone_number", "user_id", "username". ID_INVALID otherwise. */
enum user_idtype user_idtype_parse(const char *s);

/*
 * The canonical form of an identifier (email lowercased, phone checked as E.164, others as
 * given) as a new string, or NULL when it is not valid for its type.
 */
char *user_normalize(enum user_idtype type, const char *value);

/* 1 when s is an E.164 number: '+', then 7 to 15 digits, the first not 0. */
int user_phone_valid(const char *s);

/* Outcomes of user_create_txn beyond the store_rc values. */
#define USER_CREATED 1
#define USER_CONFLICT 2
#define USER_INVALID 3

/*
 * Create a user from spec (borrowed: email, phone_number, username, name, custom_data,
 * external_account_id, roles; at least one of email and phone_number). Returns USER_CREATED
 * with *user (new reference), USER_CONFLICT when an identifier is taken, USER_INVALID (message
 * in err), or a negative store_rc.
 */
int user_create_txn(struct store_txn *t, json_t *spec, json_t **user, char *err, size_t errlen);

/*
 * user_create_txn for a user migrated from another system (import.c): the same checks and
 * indexes, and spec may also hold what the old system recorded, checked before anything is
 * written: "user_id" (kept, so that tokens' sub does not change; USER_CONFLICT when taken),
 * "status" (Active, Disabled, Pending), "email_verified" and "phone_number_verified"
 * (booleans: the channel is verified as of now), "created_at" (epoch milliseconds).
 */
int user_create_imported_txn(struct store_txn *t, json_t *spec, json_t **user, char *err,
			     size_t errlen);

/* Find by identifier (canonical form). STORE_FOUND with *user (new reference), or < 1. */
int user_find_txn(struct store_txn *t, enum user_idtype type, const char *canonical, json_t **user);

/*
 * Record a successful login through channel ("email" or "phone_number": marks it verified;
 * NULL: none),
 * and set last_auth. Writes the user back. Returns 0 or a negative store_rc.
 */
int user_record_login_txn(struct store_txn *t, json_t *user, const char *channel);

/*
 * 1 when the client's signup policy lets an unknown identifier of this type log in (and be
 * created at its first successful authentication): policy "open" and an email or phone.
 */
int user_signup_allows(json_t *client, enum user_idtype type);

/*
 * The user an authentication logs in, inside t: found, or created when the client's signup
 * policy allows. Returns ERR_NONE with *user (new reference), ERR_USER_NOT_FOUND,
 * ERR_INTERNAL, or a negative store_rc.
 */
int user_for_login_txn(struct store_txn *t, json_t *client, enum user_idtype type,
		       const char *canonical, json_t **user);

/* 1 when the user's status is Active. */
int user_is_active(json_t *user);

/* The user's email or phone value (borrowed), or NULL. */
const char *user_email(json_t *user);
const char *user_phone(json_t *user);

/* Outside a transaction: create (same results as user_create_txn) and list all. */
int user_create(struct ctx *c, json_t *spec, json_t **user, char *err, size_t errlen);
json_t *user_list(struct ctx *c);

/* Find outside a transaction: STORE_FOUND with *user (new reference), or < 1. */
int user_get(struct ctx *c, enum user_idtype type, const char *canonical, json_t **user);

/*
 * Inside t, change only the members patch (borrowed) holds: email, phone_number, username
 * (reindexed; null removes), name, custom_data, external_account_id, roles, status (Active,
 * Disabled, Pending). Returns USER_CREATED (meaning updated and stored) with *user (new
 * reference) and *was_active, USER_CONFLICT, USER_INVALID (message in err), STORE_NOTFOUND,
 * or a negative store_rc. The sessions of a user who may no longer log in are the caller's
 * (account.h).
 */
int user_update_txn(struct store_txn *t, const char *user_id, json_t *patch, json_t **user,
		    int *was_active, char *err, size_t errlen);

/* Inside t, delete a user and its indexes (not its sessions). STORE_FOUND, STORE_NOTFOUND or < 0.
 */
int user_delete_txn(struct store_txn *t, const char *user_id);

/*
 * A page of users after the user id cursor (NULL: from the start), at most page_size, as
 * {"total_count", "page_info": {"has_next_page", "has_previous_page", "end_cursor"},
 * "result"}. New reference or NULL on a store error.
 */
json_t *user_page(struct ctx *c, const char *cursor, size_t page_size);

/* The name of an identifier type as the API spells it. */
const char *user_idtype_name(enum user_idtype type);

#endif
