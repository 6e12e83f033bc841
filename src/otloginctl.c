/*
 * otloginctl: the administration command. Works on the same database environment as the
 * workers (safe while they run): creates it, adds, updates and lists clients, adds, lists and
 * imports users.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "b64url.h"
#include "client.h"
#include "conf.h"
#include "crypto.h"
#include "ctx.h"
#include "import.h"
#include "jwk.h"
#include "keyring.h"
#include "log.h"
#include "org.h"
#include "repd.h"
#include "sizing.h"
#include "store.h"
#include "user.h"

/*
 * The environment this process opened. Every exit closes it (atexit): a process that exits
 * holding it would make the next opener run recovery under the running workers.
 */
static struct store *open_store;

static void close_store(void)
{
	if (open_store != NULL)
		store_close(open_store);
	open_store = NULL;
}

static _Noreturn void usage(void)
{
	fprintf(stderr,
		"usage: otloginctl [-c otlogin.conf] command\n"
		"  init\n"
		"      create the database environment, the server key and a signing key\n"
		"  client add --name NAME [--redirect-uri URI]... [--resource URI]...\n"
		"             [--permission direct|admin]... [--signup open|closed]\n"
		"             [--existence reveal|hide] [--allow-http-redirect]\n"
		"             [--type confidential|public] [--pkce allow|require]\n"
		"             [--post-logout-redirect-uri URI]... [--login-methods M,M...]\n"
		"             [--display-name TEXT] [--logo FILE|URL] [--color #RRGGBB]\n"
		"      print {\"client_id\", \"client_secret\"} (the secret is shown only once;\n"
		"      a public client has none); login methods: email_otp, magic_link, sms_otp\n"
		"  client update CLIENT_ID [the options of add] [--no-allow-http-redirect]\n"
		"      change only what is given (a list option replaces the list; an empty\n"
		"      value clears --display-name, --logo, --color or a list); print the client\n"
		"  client list\n"
		"  user add (--email ADDR | --phone E164) [--phone E164] [--username NAME]\n"
		"           [--role ROLE]...\n"
		"  user list\n"
		"  user import [--format jsonl|csv] [--batch N] [--progress] FILE|-\n"
		"      create the users of a JSON Lines or CSV file (Transmit's user export);\n"
		"      skipped records on stderr, a JSON summary on stdout; run it again to\n"
		"      resume after a failure (what was imported is not created twice)\n"
		"  org add --name NAME [--id ORG_ID]\n"
		"  org list\n"
		"  org member add --org ORG_ID --user USER_ID [--role ROLE]...\n"
		"      make a user a member of an organization with these roles\n"
		"  key rotate [--alg RS256|ES256|EdDSA]\n"
		"      add a signing key: published now, signing after [keys] publish_ahead\n"
		"  key list\n"
		"      the published keys (public parts) and which one signs\n"
		"  db size\n"
		"      the tables' sizes, the cache and its hit rate, and the db_cache_mb that\n"
		"      holds the tables (how to apply it, when the cache is smaller)\n"
		"  replicate\n"
		"      run this site's replication process in the foreground (SIGTERM stops it)\n"
		"  replication status [--json]\n"
		"      this site's role, log position, master and peers\n"
		"  replication join HOST:PORT\n"
		"      print the [replication] section of a new site at HOST:PORT and what to\n"
		"      copy to it\n"
		"  replication remove HOST:PORT\n"
		"      on the master: the stopped site at HOST:PORT leaves the group\n");
	exit(2);
}

static void print_json(json_t *v)
{
	char *text = json_dumps(v, JSON_INDENT(2));
	if (text == NULL)
		fatal("out of memory");
	puts(text);
	crypto_free_str(text);
}

/* Collect "--opt value" pairs into spec: repeated options become arrays. */
struct ctl_opt {
	const char *flag;
	const char *member;
	int repeat; /* 1: repeatable, 0: once, -1: a flag setting true, -2: one setting false */
};

static json_t *parse_options(int argc, char **argv, const struct ctl_opt *opts)
{
	json_t *spec = json_object();

	for (int i = 0; i < argc; i++) {
		const struct ctl_opt *o = opts;
		while (o->flag && strcmp(o->flag, argv[i]) != 0)
			o++;
		if (o->flag != NULL && o->repeat < 0) {
			/* A flag without a value: member true (or false). */
			json_object_set_new(spec, o->member, json_boolean(o->repeat == -1));
			continue;
		}
		if (o->flag == NULL || i + 1 >= argc) {
			fprintf(stderr, "otloginctl: unknown option or missing value: %s\n",
				argv[i]);
			usage();
		}
		i++;
		if (o->repeat) {
			json_t *a = json_object_get(spec, o->member);
			if (a == NULL)
				json_object_set_new(spec, o->member, a = json_array());
			json_array_append_new(a, json_string(argv[i]));
		} else if (json_object_get(spec, o->member) != NULL) {
			fprintf(stderr, "otloginctl: %s given twice\n", o->flag);
			exit(2);
		} else {
			json_object_set_new(spec, o->member, json_string(argv[i]));
		}
		if (json_object_get(spec, o->member) == NULL)
			fatal("%s: not valid UTF-8", o->flag);
	}
	return spec;
}

/* Print "otloginctl: message" and exit 1: a command that failed on what it was given. */
static _Noreturn __attribute__((format(printf, 1, 2))) void fail(const char *fmt, ...)
{
	va_list ap;

	fputs("otloginctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* The data: URI prefix of a logo file, from its name's extension; NULL for other files. */
static const char *logo_prefix(const char *path)
{
	static const struct {
		const char *ext, *prefix;
	} types[] = {
	    {".png", "data:image/png;base64,"},
	    {".svg", "data:image/svg+xml;base64,"},
	    {".jpg", "data:image/jpeg;base64,"},
	    {".jpeg", "data:image/jpeg;base64,"},
	};
	size_t len = strlen(path);

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		size_t elen = strlen(types[i].ext);
		if (len > elen && strcasecmp(path + len - elen, types[i].ext) == 0)
			return types[i].prefix;
	}
	return NULL;
}

/*
 * --logo FILE: the data: URI of the file's contents, a new string, with the MIME type its
 * extension names (client_create checks the contents are that). Exits on an unreadable, too
 * big or unknown kind of file. The page then needs no second server for the image.
 */
static char *logo_data_uri(const char *path)
{
	const char *prefix = logo_prefix(path);
	/* The largest file whose base64 still fits CLIENT_LOGO_DATA_MAX with the prefix. */
	size_t max = prefix ? (CLIENT_LOGO_DATA_MAX - strlen(prefix)) / 4 * 3 : 0, n;
	unsigned char *buf = NULL;
	char *b64 = NULL, *uri = NULL;
	FILE *f;

	if (prefix == NULL)
		fail("--logo %s: a logo file ends in .png, .svg, .jpg or .jpeg (or give an "
		     "https:// URL)",
		     path);
	f = fopen(path, "rb");
	if (f == NULL)
		fail("--logo %s: cannot read it: %m", path);
	buf = malloc(max + 1);
	if (buf == NULL)
		fatal("out of memory");
	n = fread(buf, 1, max + 1, f);
	if (ferror(f))
		fail("--logo %s: cannot read it: %m", path);
	fclose(f);
	if (n > max)
		fail("--logo %s: too big; a logo file has at most %zu bytes", path, max);
	if (n == 0)
		fail("--logo %s: the file is empty", path);
	b64 = b64_encode(buf, n);
	if (b64 == NULL || asprintf(&uri, "%s%s", prefix, b64) < 0)
		fatal("out of memory");
	free(b64);
	free(buf);
	return uri;
}

/*
 * Turn the options' strings into the members client_create and client_update take:
 * --login-methods a,b into an array, --logo FILE into a data: URI. For update (clearing), an
 * empty value removes an optional member (null) and a list option given only empty values
 * makes the list empty.
 */
static void client_spec_fixup(json_t *spec, int clearing)
{
	static const char *const lists[] = {"redirect_uris", "post_logout_redirect_uris",
					    "resources", "permissions", NULL};
	static const char *const optional[] = {"display_name", "logo", "color", NULL};
	const char *methods = json_string_value(json_object_get(spec, "login_methods"));
	const char *logo = json_string_value(json_object_get(spec, "logo"));

	if (methods != NULL) {
		json_t *a = json_array();
		char *copy = strdup(methods), *save = NULL;
		if (a == NULL || copy == NULL)
			fatal("out of memory");
		/* "email_otp, sms_otp" too: spaces around a name are dropped, none inside it. */
		for (char *m = strtok_r(copy, ",", &save); m != NULL;
		     m = strtok_r(NULL, ",", &save)) {
			size_t n;
			m += strspn(m, " ");
			for (n = strlen(m); n > 0 && m[n - 1] == ' '; n--)
				m[n - 1] = '\0';
			json_array_append_new(a, json_string(m));
		}
		free(copy);
		json_object_set_new(spec, "login_methods", a);
	}
	if (logo != NULL && logo[0] != '\0' && strncmp(logo, "https://", 8) != 0 &&
	    strncmp(logo, "http://", 7) != 0 && strncmp(logo, "data:", 5) != 0) {
		char *uri = logo_data_uri(logo);
		json_object_set_new(spec, "logo", json_string(uri));
		free(uri);
	}
	if (!clearing)
		return;
	for (size_t i = 0; optional[i] != NULL; i++) {
		const char *v = json_string_value(json_object_get(spec, optional[i]));
		if (v != NULL && v[0] == '\0')
			json_object_set_new(spec, optional[i], json_null());
	}
	for (size_t i = 0; lists[i] != NULL; i++) {
		json_t *a = json_object_get(spec, lists[i]), *v;
		size_t j;
		int all_empty = a != NULL;
		json_array_foreach(a, j, v) all_empty &= json_string_value(v)[0] == '\0';
		if (all_empty)
			json_array_clear(a);
	}
}

static int cmd_client(struct ctx *c, int argc, char **argv)
{
	static const struct ctl_opt opts[] = {
	    {"--name", "name", 0},
	    {"--redirect-uri", "redirect_uris", 1},
	    {"--resource", "resources", 1},
	    {"--permission", "permissions", 1},
	    {"--signup", "signup", 0},
	    {"--existence", "existence", 0},
	    {"--allow-http-redirect", "allow_http_redirect", -1},
	    {"--type", "type", 0},
	    {"--pkce", "pkce", 0},
	    {"--post-logout-redirect-uri", "post_logout_redirect_uris", 1},
	    {"--login-methods", "login_methods", 0},
	    {"--display-name", "display_name", 0},
	    {"--logo", "logo", 0},
	    {"--color", "color", 0},
	    {NULL, NULL, 0},
	};
	/* update takes every option of add, and can also take the http flag back. */
	static const struct ctl_opt update_opts[] = {
	    {"--name", "name", 0},
	    {"--redirect-uri", "redirect_uris", 1},
	    {"--resource", "resources", 1},
	    {"--permission", "permissions", 1},
	    {"--signup", "signup", 0},
	    {"--existence", "existence", 0},
	    {"--allow-http-redirect", "allow_http_redirect", -1},
	    {"--no-allow-http-redirect", "allow_http_redirect", -2},
	    {"--type", "type", 0},
	    {"--pkce", "pkce", 0},
	    {"--post-logout-redirect-uri", "post_logout_redirect_uris", 1},
	    {"--login-methods", "login_methods", 0},
	    {"--display-name", "display_name", 0},
	    {"--logo", "logo", 0},
	    {"--color", "color", 0},
	    {NULL, NULL, 0},
	};
	char err[256];
	json_t *spec, *out;
	int rc;

	if (argc >= 1 && strcmp(argv[0], "list") == 0) {
		out = client_list(c);
		if (out == NULL)
			fatal("cannot read the clients");
		print_json(out);
		json_decref(out);
		return 0;
	}
	if (argc >= 2 && strcmp(argv[0], "update") == 0 && argv[1][0] != '-') {
		spec = parse_options(argc - 2, argv + 2, update_opts);
		if (json_object_size(spec) == 0) {
			fprintf(stderr, "otloginctl: client update: nothing to change\n");
			usage();
		}
		client_spec_fixup(spec, 1);
		rc = client_update(c, argv[1], spec, err, sizeof(err));
		json_decref(spec);
		if (rc != 0) {
			fprintf(stderr, "otloginctl: %s\n", err);
			return 1;
		}
		if (client_get(c, argv[1], &out) != STORE_FOUND)
			fatal("cannot read the client back");
		json_object_del(out, "secret");
		print_json(out);
		json_decref(out);
		return 0;
	}
	if (argc < 1 || strcmp(argv[0], "add") != 0)
		usage();
	spec = parse_options(argc - 1, argv + 1, opts);
	client_spec_fixup(spec, 0);
	if (client_create(c, spec, &out, err, sizeof(err)) < 0) {
		fprintf(stderr, "otloginctl: %s\n", err);
		json_decref(spec);
		return 1;
	}
	print_json(out);
	json_decref(out);
	json_decref(spec);
	return 0;
}

/* A usage error that usage() would not explain: say what, exit 2. */
static _Noreturn void usage_error(const char *msg)
{
	fprintf(stderr, "otloginctl: %s\n", msg);
	exit(2);
}

/*
 * user import [--format jsonl|csv] [--batch N] [--progress] FILE|-: import.h's import, the
 * summary on stdout (also after a failure: what the committed transactions did). Exit 0 when
 * the input was read to its end, 1 when the import stopped, 2 on bad usage.
 */
static int cmd_user_import(struct ctx *c, int argc, char **argv)
{
	struct import_opts o = {.format = IMPORT_JSONL, .batch = IMPORT_BATCH, .report = stderr};
	struct import_stats st;
	const char *path = NULL;
	char err[256], *end;
	int have_format = 0, rc;
	json_t *summary;
	FILE *in;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--format") == 0 && i + 1 < argc) {
			i++;
			have_format = 1;
			if (strcmp(argv[i], "jsonl") == 0)
				o.format = IMPORT_JSONL;
			else if (strcmp(argv[i], "csv") == 0)
				o.format = IMPORT_CSV;
			else
				usage_error("--format must be jsonl or csv");
		} else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
			errno = 0;
			o.batch = strtoul(argv[++i], &end, 10);
			if (errno || *end || o.batch < 1 || o.batch > 100000)
				usage_error("--batch must be a number of records from 1 to 100000");
		} else if (strcmp(argv[i], "--progress") == 0) {
			o.progress = stderr;
		} else if (path == NULL && (argv[i][0] != '-' || strcmp(argv[i], "-") == 0)) {
			path = argv[i];
		} else {
			fprintf(stderr, "otloginctl: user import: unexpected %s\n", argv[i]);
			usage();
		}
	}
	if (path == NULL)
		usage();
	if (!have_format && (strcmp(path, "-") == 0 || import_format_of(path, &o.format) < 0))
		usage_error("user import: give --format jsonl or csv (the file name does not end "
			    "in .jsonl, .ndjson, .json or .csv)");
	in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	if (in == NULL)
		fail("user import: cannot read %s: %m", path);
	rc = import_users(c->store, in, &o, &st, err, sizeof(err));
	if (in != stdin)
		fclose(in);
	summary = import_summary(&st);
	if (summary == NULL)
		fatal("out of memory");
	print_json(summary);
	json_decref(summary);
	if (rc < 0) {
		fprintf(stderr, "otloginctl: user import: %s\n", err);
		return 1;
	}
	return 0;
}

static int cmd_user(struct ctx *c, int argc, char **argv)
{
	static const struct ctl_opt opts[] = {
	    {"--email", "email", 0},
	    {"--phone", "phone_number", 0},
	    {"--username", "username", 0},
	    {"--role", "roles", 1},
	    {NULL, NULL, 0},
	};
	char err[256] = "";
	json_t *spec, *user = NULL;
	int rc;

	if (argc >= 1 && strcmp(argv[0], "list") == 0) {
		json_t *list = user_list(c);
		if (list == NULL)
			fatal("cannot read the users");
		print_json(list);
		json_decref(list);
		return 0;
	}
	if (argc >= 1 && strcmp(argv[0], "import") == 0)
		return cmd_user_import(c, argc - 1, argv + 1);
	if (argc < 1 || strcmp(argv[0], "add") != 0)
		usage();
	spec = parse_options(argc - 1, argv + 1, opts);
	rc = user_create(c, spec, &user, err, sizeof(err));
	json_decref(spec);
	if (rc == USER_CREATED) {
		print_json(user);
		json_decref(user);
		return 0;
	}
	if (rc == USER_CONFLICT)
		fprintf(stderr, "otloginctl: a user with that email, phone or username exists\n");
	else if (rc == USER_INVALID)
		fprintf(stderr, "otloginctl: %s\n", err);
	else
		fprintf(stderr, "otloginctl: the database refused the user\n");
	return 1;
}

static int cmd_org(struct ctx *c, int argc, char **argv)
{
	static const struct ctl_opt add_opts[] = {
	    {"--name", "name", 0}, {"--id", "org_id", 0}, {NULL, NULL, 0}};
	static const struct ctl_opt member_opts[] = {{"--org", "org_id", 0},
						     {"--user", "user_id", 0},
						     {"--role", "roles", 1},
						     {NULL, NULL, 0}};
	char err[256] = "";
	json_t *spec, *out = NULL;
	int rc;

	if (argc >= 1 && strcmp(argv[0], "list") == 0) {
		out = org_list(c);
		if (out == NULL)
			fatal("cannot read the organizations");
		print_json(out);
		json_decref(out);
		return 0;
	}
	if (argc >= 1 && strcmp(argv[0], "add") == 0) {
		spec = parse_options(argc - 1, argv + 1, add_opts);
		rc = org_create(c, json_string_value(json_object_get(spec, "org_id")),
				json_string_value(json_object_get(spec, "name")), &out, err,
				sizeof(err));
	} else if (argc >= 2 && strcmp(argv[0], "member") == 0 && strcmp(argv[1], "add") == 0) {
		spec = parse_options(argc - 2, argv + 2, member_opts);
		if (!json_object_get(spec, "org_id") || !json_object_get(spec, "user_id"))
			usage();
		if (json_object_get(spec, "roles") == NULL)
			json_object_set_new(spec, "roles", json_array());
		rc = org_add_member(c, json_string_value(json_object_get(spec, "org_id")),
				    json_string_value(json_object_get(spec, "user_id")),
				    json_object_get(spec, "roles"), err, sizeof(err));
	} else {
		usage();
	}
	json_decref(spec);
	if (rc != 0) {
		fprintf(stderr, "otloginctl: %s\n", err);
		return 1;
	}
	if (out != NULL) {
		print_json(out);
		json_decref(out);
	}
	return 0;
}

static int cmd_key(struct ctx *c, int argc, char **argv)
{
	static const struct ctl_opt opts[] = {{"--alg", "alg", 0}, {NULL, NULL, 0}};
	json_t *spec, *keys;
	const char *alg;
	int rc = 0;

	if (argc >= 1 && strcmp(argv[0], "list") == 0) {
		keys = json_array();
		for (size_t i = 0; i < c->keys->npublished; i++) {
			json_t *k = jwk_public_json(c->keys->published[i]);
			json_object_set_new(
			    k, "signing", json_boolean(c->keys->published[i] == c->keys->signing));
			json_array_append_new(keys, k);
		}
		print_json(keys);
		json_decref(keys);
		return 0;
	}
	if (argc < 1 || strcmp(argv[0], "rotate") != 0)
		usage();
	spec = parse_options(argc - 1, argv + 1, opts);
	alg = json_string_value(json_object_get(spec, "alg"));
	if (alg == NULL)
		alg = c->conf->key_algorithm;
	if (strcmp(alg, JWK_RS256) != 0 && strcmp(alg, JWK_ES256) != 0 &&
	    strcmp(alg, JWK_EDDSA) != 0) {
		fprintf(stderr, "otloginctl: --alg must be RS256, ES256 or EdDSA\n");
		rc = 2;
	} else if (keyring_add_signing_key(c->store, alg,
					   time(NULL) + (time_t)c->conf->key_publish_ahead) < 0) {
		fprintf(stderr, "otloginctl: could not add the key\n");
		rc = 1;
	} else {
		fprintf(stderr,
			"otloginctl: new %s key published; it signs in %u s, the old one stays "
			"published %u s after that\n",
			alg, c->conf->key_publish_ahead, c->conf->key_overlap);
	}
	json_decref(spec);
	return rc;
}

/* "otloginctl replication status": what the site is now, for people or (--json) scripts. */
static int replication_status(struct ctx *c, int json)
{
	struct store_rep_status st;
	json_t *out, *peers;

	store_rep_status(c->conf->db_dir, &st);
	peers = json_array();
	for (unsigned i = 0; i < st.npeers; i++)
		json_array_append_new(peers, json_pack("{s:s, s:b}", "address", st.peers[i].address,
						       "connected", st.peers[i].connected));
	out = json_pack("{s:s, s:s, s:s, s:{s:i, s:i}, s:o, s:i, s:o, s:s}", "role", st.role,
			"local", c->conf->rep_local, "master", st.master, "log", "file",
			st.log_file, "offset", st.log_offset, "lag_ms",
			st.lag_ms < 0 ? json_null() : json_integer(st.lag_ms), "sites", st.nsites,
			"peers", peers, "repd", st.repd_running ? "running" : "down");
	if (out == NULL)
		fatal("out of memory");
	if (json) {
		print_json(out);
	} else {
		printf("role: %s\nlocal: %s\nmaster: %s\nlog: %u/%u\n", st.role, c->conf->rep_local,
		       st.master[0] ? st.master : "(none known)", st.log_file, st.log_offset);
		if (st.lag_ms < 0)
			printf("lag: not known yet\n");
		else
			printf("lag: %lld.%03lld s\n", st.lag_ms / 1000, st.lag_ms % 1000);
		printf("sites: %u\nreplication process: %s\n", st.nsites,
		       st.repd_running ? "running" : "down");
		for (unsigned i = 0; i < st.npeers; i++)
			printf("peer: %s %s\n", st.peers[i].address,
			       st.peers[i].connected ? "connected" : "not connected");
	}
	json_decref(out);
	return 0;
}

/* "otloginctl replication join HOST:PORT": the new site's settings and what it needs. */
static int replication_join(struct ctx *c, const char *address)
{
	const struct conf *conf = c->conf;

	if (strchr(address, ':') == NULL) {
		fprintf(stderr, "otloginctl: join: HOST:PORT expected\n");
		return 2;
	}
	printf("# The new site's otlogin.conf (with its own [server] and [mail] sections):\n"
	       "[replication]\nenabled = yes\nlocal = %s\npeers = %s, %s\ncreator = no\n"
	       "priority = %u\nack_timeout_ms = %u\nheartbeat_send_ms = %u\n"
	       "heartbeat_monitor_ms = %u\nretry_ms = %u\n\n",
	       address, conf->rep_local, conf->rep_peers, conf->rep_priority,
	       conf->rep_ack_timeout_ms, conf->rep_heartbeat_send_ms,
	       conf->rep_heartbeat_monitor_ms, conf->rep_retry_ms);
	printf("# Then, on the new site:\n"
	       "# 1. copy this site's %s/server.key into its db_dir (mode 0600, owned by the\n"
	       "#    service's user): every site must hold the same key, and a site with another\n"
	       "#    one refuses to start;\n"
	       "# 2. start its replication process (otloginctl replicate): it copies the database\n"
	       "#    from the master; do not run otloginctl init there;\n"
	       "# 3. start its workers; add %s to the peers of the other sites.\n",
	       conf->db_dir, address);
	return 0;
}

/*
 * "otloginctl replication remove HOST:PORT", on the master: the stopped site leaves the
 * group, which no longer counts it towards its size and quorum.
 */
static int replication_remove(struct ctx *c, const char *address)
{
	char err[256];

	if (store_rep_remove(c->store, address, err, sizeof(err)) < 0) {
		fprintf(stderr, "otloginctl: replication remove: %s\n", err);
		return 1;
	}
	fprintf(stderr,
		"otloginctl: %s left the group; take it out of the peers of every site's "
		"[replication]\n",
		address);
	return 0;
}

static int is_replication_remove(int argc, char **argv)
{
	return argc == 3 && strcmp(argv[0], "replication") == 0 && strcmp(argv[1], "remove") == 0;
}

static int cmd_replication(struct ctx *c, int argc, char **argv)
{
	if (argc >= 1 && strcmp(argv[0], "status") == 0 &&
	    (argc == 1 || (argc == 2 && strcmp(argv[1], "--json") == 0)))
		return replication_status(c, argc == 2);
	if (argc == 2 && strcmp(argv[0], "join") == 0)
		return replication_join(c, argv[1]);
	if (argc == 2 && strcmp(argv[0], "remove") == 0) /* with the store: see main */
		return replication_remove(c, argv[1]);
	usage();
}

/*
 * A replicated site serves once its replication process says it is a master with a quorum:
 * wait for that a little (it may just have started), then go on and let the command fail.
 */
static void wait_for_master(struct store *s)
{
	const char *why = NULL;

	for (int i = 0; i < 150 && (why = store_rep_unavailable(s)) != NULL; i++)
		usleep(100 * 1000);
	if (why != NULL)
		fprintf(stderr,
			"otloginctl: this site cannot write now (%s): run this on the "
			"master, with its replication process running\n",
			why);
}

/*
 * Before the replication process execs itself anew: only the descriptors below first
 * outlive the exec. The new image listens on the replication address again, and Berkeley
 * DB's listener from this one (not close-on-exec) would still hold it.
 */
static void close_on_exec_from(int first)
{
	struct dirent *e;
	DIR *d;

	if (close_range((unsigned)first, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
		return;
	/* Kernels before 5.11 do not know the flag: each open descriptor, one by one. */
	if ((d = opendir("/proc/self/fd")) == NULL)
		fatal("cannot start again: /proc/self/fd: %s", strerror(errno));
	while ((e = readdir(d)) != NULL) {
		int fd = atoi(e->d_name);
		if (e->d_name[0] != '.' && fd >= first && fd != dirfd(d))
			fcntl(fd, F_SETFD, FD_CLOEXEC);
	}
	closedir(d);
}

int main(int argc, char **argv)
{
	const char *conf_file = NULL;
	struct conf conf;
	struct keyring keys;
	struct ctx c = {.conf = &conf, .keys = &keys};
	char err[512];
	int opt, rc, init, replication;
	char **full_argv = argv;

	while ((opt = getopt(argc, argv, "+c:h")) != -1) {
		if (opt == 'c')
			conf_file = optarg;
		else
			usage();
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage();
	/* Database, key and mail files are private to the service. */
	umask(077);
	log_init("otloginctl", LOG_LEVEL_INFO);
	if (crypto_init() < 0)
		fatal("libgcrypt could not be initialised");
	conf_defaults(&conf);
	if (conf_load(&conf, conf_path(conf_file), err, sizeof(err)) < 0)
		fatal("configuration: %s", err);
	c.mail = ctx_mail_conf(&conf);
	/* Every change is audited: none is made when it could not be. */
	if (audit_open(conf.audit_log, conf.audit_facility, err, sizeof(err)) < 0)
		fatal("%s", err);
	init = strcmp(argv[0], "init") == 0;
	replication = strcmp(argv[0], "replication") == 0;
	if (!init && !replication && strcmp(argv[0], "client") != 0 &&
	    strcmp(argv[0], "user") != 0 && strcmp(argv[0], "key") != 0 &&
	    strcmp(argv[0], "org") != 0 && strcmp(argv[0], "replicate") != 0 &&
	    strcmp(argv[0], "db") != 0)
		usage();
	/* init makes db_dir 0700 itself; keyring_load checks the key in every case. */
	if (!init && keyring_check_private(conf.db_dir) < 0)
		fatal("refusing to run with secrets others can read");
	if (strcmp(argv[0], "replicate") == 0) {
		rc = repd_run(&conf);
		if (rc == REPD_RESTART) {
			close_on_exec_from(3);
			execv("/proc/self/exe", full_argv);
			fatal("cannot start again: %s", strerror(errno));
		}
		conf_free(&conf);
		return rc;
	}
	/* Read from what the replication process publishes: no environment to open. */
	if (replication && !is_replication_remove(argc, argv)) {
		if (!conf.rep_enabled)
			fatal("replication is not enabled in the configuration ([replication] "
			      "enabled)");
		rc = cmd_replication(&c, argc - 1, argv + 1);
		conf_free(&conf);
		return rc;
	}
	if (ctx_replication(&conf, STORE_REP_SUBORDINATE) < 0)
		fatal("configuration: [replication]");
	c.store = store_open(conf.db_dir, conf.db_cache_mb, init);
	if (c.store == NULL)
		fatal("cannot open the database environment %s%s", conf.db_dir,
		      init ? "" : " (run otloginctl init first)");
	open_store = c.store;
	atexit(close_store);
	/* The replication process checks the key against the group's before the site serves. */
	if (init && keyring_create_server_key(conf.db_dir) < 0)
		fatal("cannot create the server key");
	if (store_replicated())
		wait_for_master(c.store);
	if (init && keyring_create(c.store, conf.db_dir, conf.key_algorithm) < 0)
		fatal("cannot create the keys");
	if (keyring_load(&keys, c.store, conf.db_dir, conf.key_overlap) < 0)
		fatal("cannot load the keys");
	if (init) {
		fprintf(stderr, "otloginctl: environment ready in %s\n", conf.db_dir);
		rc = 0;
	} else if (strcmp(argv[0], "client") == 0) {
		rc = cmd_client(&c, argc - 1, argv + 1);
	} else if (strcmp(argv[0], "key") == 0) {
		rc = cmd_key(&c, argc - 1, argv + 1);
	} else if (strcmp(argv[0], "org") == 0) {
		rc = cmd_org(&c, argc - 1, argv + 1);
	} else if (replication) {
		rc = cmd_replication(&c, argc - 1, argv + 1);
	} else if (strcmp(argv[0], "db") == 0) {
		json_t *report = argc == 2 && strcmp(argv[1], "size") == 0
				     ? sizing_report(c.store, conf.db_dir, conf.db_cache_mb)
				     : (usage(), NULL);
		if (report == NULL)
			fatal("cannot read the database's size");
		print_json(report);
		json_decref(report);
		rc = 0;
	} else {
		rc = cmd_user(&c, argc - 1, argv + 1);
	}
	audit_admin(argc, argv, rc);
	keyring_free(&keys);
	close_store();
	conf_free(&conf);
	return rc;
}
