/*
 * audit: the audit trail, a stream of its own ([audit] log = syslog | FILE | off), one JSON
 * object per line, for the security events an admin must be able to reconstruct: who signed in
 * or failed to, which codes and links went out, throttles, sessions, logouts and every change
 * made through the users API or otloginctl. The README ("Audit trail") lists the events and
 * fields; they are an interface people grep and ship, so names never change meaning.
 *
 *   {"ts":"2026-12-06T06:01:31.123Z","event":"login","outcome":"success","reason":null,
 *    "request_id":"5f0c...","client_id":"abc","user_id":"u_...","ip":"192.0.2.1",
 *    "method":"email_otp"}
 *
 * Every line has ts (RFC 3339, UTC, milliseconds), event, outcome ("success" or "failure"),
 * reason (null on success), request_id, client_id, user_id and ip (null when unknown), in that
 * order, then the event's own fields. Never pass a secret (code, token, session id, client
 * secret) or a full address: destination is masked here (log_mask_addr).
 *
 * Inside a store transaction (between audit_txn_begin and audit_txn_end, which store_run calls)
 * events wait for its end: one run again after a lock conflict is audited once, and what an
 * aborted one did is not audited at all. Throttles (audit_throttled) are the exception a
 * refusal keeps, as for metrics: a refused transaction is aborted by design.
 *
 * Before audit_open (unit tests of other modules) or with "off", events go nowhere.
 */
#ifndef OTLOGIN_AUDIT_H
#define OTLOGIN_AUDIT_H

#include <stddef.h>

/* The syslog ident of the audit stream (the log's is the program name). */
#define AUDIT_IDENT "otlogin-audit"

/*
 * Send the events from now on to target: "syslog" (facility from log_facility_parse; lines
 * sent to /dev/log under the ident AUDIT_IDENT, whatever the log's own ident), "off", or the
 * path of a file (log.h's struct logfile: O_APPEND, 0640, reopened after a rotation).
 * Returns 0, or -1 with a message in err (size errlen) and the events going nowhere.
 */
int audit_open(const char *target, int facility, char *err, size_t errlen);
/* The syslog daemon's socket (NULL: _PATH_LOG, /dev/log): for the unit test's own listener. */
void audit_syslog_socket(const char *path);

/* Stop sending events (and drop pending ones). */
void audit_close(void);

/*
 * The request the following events belong to: its id and the peer's address (copied; NULL
 * when none). A flow that knows the end user's own address passes "ip" to override it.
 */
void audit_set_request(const char *request_id, const char *ip);
/* The client_id the request acts for (copied; NULL when none). */
void audit_set_client(const char *client_id);

/*
 * Record one event: outcome 1 = "success", 0 = "failure"; reason NULL on success. Then pairs
 * of field name and string value, ended by a NULL name; a NULL value is left out. A name among
 * the common fields (client_id, user_id, ip, request_id) replaces the request's value;
 * "destination" is masked.
 */
void audit_event(const char *event, int success, const char *reason, ...) __attribute__((sentinel));

/*
 * A throttle refused (kind: ratelimit's rule name or "lockout"), for retry_after seconds: kept
 * even when the transaction it happened in is refused (aborted).
 */
void audit_throttled(const char *kind, unsigned retry_after, const char *user_id);

/* An account's wrong passcodes put it under a delay of seconds (from now). */
void audit_lockout(unsigned seconds);

/*
 * A login ended with rc (an err, or a negative store_rc) by method ("email_otp", "sms_otp",
 * "magic_link", "session", ...): outcome and reason from rc. client_id (NULL: the request's),
 * user_id, identifier (the address or number tried: masked), ip (NULL: the request's peer):
 * NULL when unknown.
 */
void audit_login(const char *method, int rc, const char *client_id, const char *user_id,
		 const char *identifier, const char *ip);

/* The browser's sign-out (RP-initiated logout) ended `ended` sessions of user_id (NULL: ?). */
void audit_logout_browser(const char *user_id, int ended);

/*
 * otloginctl ran the command argv[0 .. argc-1] (after its options) with exit status rc: an
 * "admin" event unless it only read ("list"). Only the command's words and an update's
 * client_id are kept, never its other arguments (addresses, secrets).
 */
void audit_admin(int argc, char **argv, int rc);

/* The reason an outcome rc (an err or a negative store_rc) is audited under. */
const char *audit_reason(int rc);

/* store_run: a transaction attempt begins... */
void audit_txn_begin(void);
/* ...and ends: committed writes what it recorded; refused writes only its throttles. */
void audit_txn_end(int committed, int refused);

#endif
