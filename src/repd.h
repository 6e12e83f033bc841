/*
 * repd: the replication process of a site (otloginctl replicate): one per site of a
 * replication group, started before the site's workers. It holds the site's Replication
 * Manager listener and elections, checks that the site's server key is the group's, runs
 * failchk, and on the master checkpoints and purges; it publishes the site's state, which the
 * workers read before every request (store_rep_unavailable). On a client whose copy of the
 * database cannot take the master's log, it moves the copy aside and copies the master's.
 */
#ifndef OTLOGIN_REPD_H
#define OTLOGIN_REPD_H

#include "conf.h"

/* repd_run's answer when the process must start again: exec it anew, do not exit. */
#define REPD_RESTART 75

/*
 * Run until SIGTERM or SIGINT. Returns the process's exit status: 0 after a signal, 1 when it
 * cannot run (logged): no [replication] enabled, another process is the site's replication
 * process, its address cannot be listened on, or the server key differs from the group's;
 * or REPD_RESTART when the environment was recovered under it (its Replication Manager
 * threads cannot be stopped in place: the caller execs the program again, nothing closed),
 * or when the site's copy of the database must be discarded (the new image does it first).
 */
int repd_run(const struct conf *conf);

#endif
