/*
 * store.h in memory, for fuzz_records: every module's real code runs against records the
 * fuzzer makes, with only Berkeley DB replaced. Linked ahead of libotlogin.a, it defines every
 * symbol of store_bdb.o and store_rep.o, so that neither is ever pulled in.
 *
 * Records are kept as the JSON text store_bdb keeps, and read back the way store_bdb's
 * store_get does (json_loadb with no flags: any JSON array or object; anything else is
 * STORE_ERR). Besides the records written under their keys, each table may have a default
 * text (store_mem_set_default): a store_get of a key that was never written or deleted finds
 * it, so the fuzzer's record is what every lookup in that table finds, whatever key the module
 * derives (keys are HMAC tags the fuzzer cannot know). A full scan (store_each without a start)
 * sees it as one more record, under the key "~fuzz". Transactions always commit what they
 * wrote (no rollback: the fuzzer looks for crashes, leaks and undefined behaviour in the
 * decoders, not for atomicity).
 */
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_mem.h"

#define DEFAULT_KEY "~fuzz"

struct entry {
	enum store_table tbl;
	char *key;
	size_t klen;
	char *data; /* NULL: deleted */
	struct entry *next;
};

#define MAX_RULES 4

struct store {
	struct entry *head, *baseline;
	char *def[TBL_COUNT];
	store_purge_fn rules[TBL_COUNT][MAX_RULES];
	int nrules[TBL_COUNT];
};

struct store_txn {
	struct store *s;
};

static struct entry *find(struct entry *e, enum store_table tbl, const void *key, size_t klen)
{
	for (; e != NULL; e = e->next)
		if (e->tbl == tbl && e->klen == klen && memcmp(e->key, key, klen) == 0)
			return e;
	return NULL;
}

static struct entry *add(struct entry **head, enum store_table tbl, const void *key, size_t klen,
			 const char *data)
{
	struct entry *e = calloc(1, sizeof(*e));

	if (e == NULL || (e->key = malloc(klen ? klen : 1)) == NULL)
		abort();
	memcpy(e->key, key, klen);
	e->klen = klen;
	e->tbl = tbl;
	if (data != NULL && (e->data = strdup(data)) == NULL)
		abort();
	e->next = *head;
	*head = e;
	return e;
}

static void free_list(struct entry *e)
{
	while (e != NULL) {
		struct entry *next = e->next;
		free(e->key);
		free(e->data);
		free(e);
		e = next;
	}
}

static struct entry *copy_list(const struct entry *e)
{
	struct entry *head = NULL;

	for (; e != NULL; e = e->next)
		add(&head, e->tbl, e->key, e->klen, e->data);
	return head;
}

void store_mem_set_default(struct store *s, enum store_table tbl, const char *text)
{
	free(s->def[tbl]);
	s->def[tbl] = NULL;
	if (text != NULL && (s->def[tbl] = strdup(text)) == NULL)
		abort();
}

void store_mem_put_text(struct store *s, enum store_table tbl, const char *key, const char *text)
{
	struct entry *e = find(s->head, tbl, key, strlen(key));

	if (e == NULL)
		e = add(&s->head, tbl, key, strlen(key), NULL);
	free(e->data);
	if ((e->data = strdup(text)) == NULL)
		abort();
}

void store_mem_mark_baseline(struct store *s)
{
	free_list(s->baseline);
	s->baseline = copy_list(s->head);
}

void store_mem_reset(struct store *s)
{
	free_list(s->head);
	s->head = copy_list(s->baseline);
	for (int i = 0; i < TBL_COUNT; i++)
		store_mem_set_default(s, (enum store_table)i, NULL);
}

struct store *store_open(const char *dir, unsigned cache_mb, int create)
{
	return calloc(1, sizeof(struct store));
}

void store_close(struct store *s)
{
	if (s == NULL)
		return;
	free_list(s->head);
	free_list(s->baseline);
	for (int i = 0; i < TBL_COUNT; i++)
		free(s->def[i]);
	free(s);
}

int store_reopen(struct store *s)
{
	return 0;
}

void store_watchdog(unsigned seconds)
{
}

int store_failchk(struct store *s)
{
	return 0;
}

int store_begin(struct store *s, struct store_txn **t)
{
	if ((*t = malloc(sizeof(**t))) == NULL)
		return STORE_ERR;
	(*t)->s = s;
	return 0;
}

int store_commit(struct store_txn *t)
{
	free(t);
	return 0;
}

void store_abort(struct store_txn *t)
{
	free(t);
}

static int parse(const char *text, json_t **out)
{
	json_t *val = json_loadb(text, strlen(text), 0, NULL);

	if (val == NULL)
		return STORE_ERR;
	*out = val;
	return STORE_FOUND;
}

int store_get(struct store_txn *t, enum store_table tbl, const void *key, size_t klen, json_t **out,
	      int for_update)
{
	struct entry *e = find(t->s->head, tbl, key, klen);

	if (e != NULL)
		return e->data != NULL ? parse(e->data, out) : STORE_NOTFOUND;
	return t->s->def[tbl] != NULL ? parse(t->s->def[tbl], out) : STORE_NOTFOUND;
}

int store_put(struct store_txn *t, enum store_table tbl, const void *key, size_t klen, json_t *val)
{
	char *text = json_dumps(val, JSON_COMPACT);
	struct entry *e;

	if (text == NULL)
		return STORE_ERR;
	if ((e = find(t->s->head, tbl, key, klen)) == NULL)
		e = add(&t->s->head, tbl, key, klen, NULL);
	free(e->data);
	e->data = text;
	return 0;
}

int store_del(struct store_txn *t, enum store_table tbl, const void *key, size_t klen)
{
	struct entry *e = find(t->s->head, tbl, key, klen);

	if (e != NULL) {
		int was = e->data != NULL;
		free(e->data);
		e->data = NULL;
		return was ? STORE_FOUND : STORE_NOTFOUND;
	}
	if (t->s->def[tbl] == NULL)
		return STORE_NOTFOUND;
	add(&t->s->head, tbl, key, klen, NULL);
	return STORE_FOUND;
}

static int key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	return c != 0 ? c : (alen > blen) - (alen < blen);
}

static int by_key(const void *a, const void *b)
{
	const struct entry *x = *(struct entry *const *)a, *y = *(struct entry *const *)b;

	return key_cmp(x->key, x->klen, y->key, y->klen);
}

int store_each(struct store_txn *t, enum store_table tbl, const void *start, size_t startlen,
	       int (*fn)(const void *key, size_t klen, json_t *val, void *arg), void *arg)
{
	struct entry **list = NULL, *e, def = {tbl, DEFAULT_KEY, strlen(DEFAULT_KEY), NULL, NULL};
	size_t n = 0, cap = 0;
	int out = 0;

	def.data = t->s->def[tbl];
	for (e = t->s->head; e != NULL; e = e->next) {
		if (e->tbl != tbl || e->data == NULL ||
		    (start != NULL && key_cmp(e->key, e->klen, start, startlen) < 0))
			continue;
		if (n == cap && (list = realloc(list, (cap = 2 * cap + 8) * sizeof(*list))) == NULL)
			abort();
		list[n++] = e;
	}
	if (start == NULL && def.data != NULL && find(t->s->head, tbl, def.key, def.klen) == NULL) {
		if (n == cap && (list = realloc(list, (cap = 2 * cap + 8) * sizeof(*list))) == NULL)
			abort();
		list[n++] = &def;
	}
	if (n > 0)
		qsort(list, n, sizeof(*list), by_key);
	for (size_t i = 0; i < n && out == 0; i++) {
		json_t *val = NULL;
		/* A record that is not JSON fails the scan, as in store_bdb. */
		if (parse(list[i]->data, &val) != STORE_FOUND) {
			out = STORE_ERR;
			break;
		}
		out = fn(list[i]->key, list[i]->klen, val, arg);
		json_decref(val);
	}
	free(list);
	return out < 0 ? out : 0;
}

static int count_one(const void *key, size_t klen, json_t *val, void *arg)
{
	(void)key;
	(void)klen;
	(void)val;
	(*(size_t *)arg)++;
	return 0;
}

int store_count(struct store_txn *t, enum store_table tbl, size_t *n)
{
	*n = 0;
	return store_each(t, tbl, NULL, 0, count_one, n);
}

int store_run(struct store *s, int (*fn)(struct store_txn *t, void *arg), void *arg)
{
	struct store_txn *t;
	int rc;

	if ((rc = store_begin(s, &t)) != 0)
		return rc;
	rc = fn(t, arg);
	if (rc >= 0)
		store_commit(t);
	else
		store_abort(t);
	return rc;
}

void store_maintain(struct store *s)
{
}

int store_purge_rule(struct store *s, enum store_table tbl, store_purge_fn fn)
{
	if (tbl != TBL_CODES && tbl != TBL_REFRESH && tbl != TBL_SESSIONS && tbl != TBL_COUNTERS)
		return -1;
	if (s->nrules[tbl] == MAX_RULES)
		return -1;
	s->rules[tbl][s->nrules[tbl]++] = fn;
	return 0;
}

/* Whether val (under key) is dead at cutoff: store_bdb's "exp" rule, then the table's rules. */
static int judge(struct store_txn *t, enum store_table tbl, const void *key, size_t klen,
		 json_t *val, time_t cutoff)
{
	json_t *exp = json_object_get(val, "exp");
	int dead = 0;

	if (json_is_integer(exp))
		return json_integer_value(exp) <= (json_int_t)cutoff;
	for (int i = 0; i < t->s->nrules[tbl] && dead == 0; i++)
		dead = t->s->rules[tbl][i](t, key, klen, val, cutoff);
	return dead;
}

int store_dead(struct store_txn *t, enum store_table tbl, const void *key, size_t klen,
	       time_t cutoff)
{
	json_t *val = NULL, *exp;
	int rc = store_get(t, tbl, key, klen, &val, 0);

	if (rc <= 0)
		return rc < 0 ? rc : 1;
	exp = json_object_get(val, "exp");
	rc = json_is_integer(exp) && json_integer_value(exp) <= (json_int_t)cutoff;
	json_decref(val);
	return rc;
}

static int collect_key(const void *key, size_t klen, json_t *val, void *arg)
{
	return json_array_append_new(arg, json_stringn(key, klen)) < 0 ? STORE_ERR : 0;
}

/* store_bdb's purge over the records in memory: every record its rules find dead goes. */
int store_purge(struct store *s, time_t now)
{
	static const enum store_table tables[] = {TBL_CODES, TBL_REFRESH, TBL_SESSIONS,
						  TBL_COUNTERS};
	struct store_txn t = {s};
	time_t cutoff = now - STORE_PURGE_GRACE_S;
	int deleted = 0;

	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		json_t *keys = json_array(), *k;
		size_t j;
		int rc = keys ? store_each(&t, tables[i], NULL, 0, collect_key, keys) : STORE_ERR;

		json_array_foreach(keys, j, k)
		{
			json_t *val = NULL;
			int dead;

			if (rc < 0)
				break;
			if (store_get(&t, tables[i], json_string_value(k), json_string_length(k),
				      &val, 1) != STORE_FOUND)
				continue;
			dead = judge(&t, tables[i], json_string_value(k), json_string_length(k),
				     val, cutoff);
			json_decref(val);
			if (dead < 0)
				rc = dead;
			else if (dead && store_del(&t, tables[i], json_string_value(k),
						   json_string_length(k)) == STORE_FOUND)
				deleted++;
		}
		json_decref(keys);
		if (rc < 0)
			return rc;
	}
	return deleted;
}

int store_ping(struct store *s)
{
	return 1;
}

int store_failed(const struct store *s)
{
	return 0;
}

unsigned store_reopens(const struct store *s)
{
	return 0;
}

/* store_rep.o's symbols: the store in memory is never a site of a replication group. */
int store_replication(const struct store_rep_conf *rc, enum store_rep_role role)
{
	(void)rc;
	(void)role;
	return -1;
}

int store_replicated(void)
{
	return 0;
}

const char *store_rep_unavailable(struct store *s)
{
	(void)s;
	return NULL;
}

int store_rep_status(const char *dir, struct store_rep_status *st)
{
	(void)dir;
	memset(st, 0, sizeof(*st));
	return 0;
}

int store_rep_remove(struct store *s, const char *address, char *err, size_t errlen)
{
	(void)s;
	(void)address;
	snprintf(err, errlen, "replication is not enabled");
	return -1;
}

int store_rep_publish(struct store *s, int ready, int acked, long long probe_at_ms)
{
	(void)s;
	(void)ready;
	(void)acked;
	(void)probe_at_ms;
	return STORE_ERR;
}

void store_rep_unpublish(struct store *s)
{
	(void)s;
}

int store_rep_master(struct store *s)
{
	(void)s;
	return 0;
}

int store_rep_watch(struct store *s, void (*orphaned)(void))
{
	(void)s;
	(void)orphaned;
	return 0;
}

int store_must_restart(const struct store *s)
{
	(void)s;
	return 0;
}

int store_rep_refused(void)
{
	return 0;
}
