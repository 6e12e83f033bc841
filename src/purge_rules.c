#include "purge_rules.h"

#include "link.h"
#include "lockout.h"
#include "log.h"
#include "session.h"

int purge_rules_register(struct store *s)
{
	if (link_purge_rules(s) < 0 || session_purge_rules(s) < 0 || lockout_purge_rules(s) < 0) {
		log_err("cannot register the purge rules");
		return -1;
	}
	return 0;
}
