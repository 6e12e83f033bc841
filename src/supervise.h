/*
 * supervise: keep N FastCGI workers on one listening socket, for web servers that do not
 * manage the application's processes (nginx with spawn-fcgi: "otlogin.fcgi -w 4").
 *
 * lighttpd and mod_fcgid start and restart their workers themselves; spawn-fcgi starts them
 * once, so a worker that died (killed, or given up on the database) would never be replaced.
 */
#ifndef OTLOGIN_SUPERVISE_H
#define OTLOGIN_SUPERVISE_H

/*
 * Fork n workers and keep n running until SIGTERM or SIGINT, which is passed on to them; the
 * supervisor then waits for them and exits. Returns only in a worker, with the signal
 * dispositions and mask the caller had. A worker ends when the supervisor dies (Linux).
 * A worker that exits within a second of its start is restarted a second later, not at once.
 */
void supervise(unsigned n);

/* In a worker supervise started: 1 when it replaces one that ended (for the metrics), else 0. */
int supervise_restarted(void);

#endif
