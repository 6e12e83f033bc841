/*
 * err: the outcomes a flow reports to its caller, the same for every way of answering
 * (resp.c maps each to an HTTP status, a public message and an error_code per dialect).
 * Flows return ERR_NONE or one of these; a negative value is a store_rc (store.h).
 */
#ifndef OTLOGIN_ERR_H
#define OTLOGIN_ERR_H

enum err {
	ERR_NONE = 0,	       /* success */
	ERR_INVALID_INPUT,     /* the request is malformed or names something not allowed */
	ERR_INVALID_TOKEN,     /* no valid bearer token */
	ERR_FORBIDDEN,	       /* the client lacks the permission */
	ERR_NOT_FOUND,	       /* unknown path or object */
	ERR_METHOD,	       /* the path does not take this method */
	ERR_TOO_LARGE,	       /* the body is over the limit */
	ERR_MEDIA_TYPE,	       /* the body is not of the required type */
	ERR_CONFLICT,	       /* the object exists already */
	ERR_RATE_LIMITED,      /* over a rate limit: retry after some seconds */
	ERR_INTERNAL,	       /* a bug or an inconsistent record */
	ERR_DELIVERY,	       /* the mail relay or SMS backend refused or failed */
	ERR_UNAVAILABLE,       /* the store failed: try again */
	ERR_BAD_CREDENTIALS,   /* wrong passcode or code */
	ERR_CODE_EXPIRED,      /* the right passcode, too late */
	ERR_LOCKED,	       /* the account is throttled: retry after some seconds */
	ERR_USER_NOT_FOUND,    /* no such user (and signup is closed) */
	ERR_USER_NOT_ACTIVE,   /* the user is disabled */
	ERR_EMAIL_MISSING,     /* the user has no email address */
	ERR_PHONE_MISSING,     /* the user has no phone number */
	ERR_SESSION_NOT_FOUND, /* session_id names no live session of this user and client */
	ERR_ORG_NOT_MEMBER,    /* org_id names an organization the user is not in */
	ERR_COUNT
};

#endif
