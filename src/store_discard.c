/*
 * store_discard: moving a replication site's copy of the database aside (store_discard_copy),
 * so that the site copies the master's anew, as a new site does; safe against interruption
 * (a marker names the target before anything moves, and the next start finishes the move)
 * and against repetition (older discarded copies go but the newest).
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "store_bdb_int.h"

/* How long store_discard_copy lets the site's workers leave by themselves before asking. */
#define DISCARD_ASK_AFTER_S 3
/* In the environment's directory while a discard has not finished: where its files go. */
#define DISCARD_MARKER "otlogin.discard"

/*
 * The files of an environment's directory that store_discard_copy moves aside: the tables,
 * the log (log.N) and replication's files (__db.rep*: its generation numbers, the group's
 * membership, an internal init's state). Regular files only, by name: nothing else of the
 * directory (the registry, whose lock keeps openers out meanwhile; the regions, which a
 * recovery makes anew; otlogin's own files; earlier discarded copies).
 */
static int bdb_data_file(const char *dir, const char *name)
{
	char path[PATH_MAX];
	struct stat st;
	int ours = strncmp(name, "__db.rep", 8) == 0 || bdb_numbered(name, "log.");

	for (int t = 0; !ours && t < TBL_COUNT; t++)
		ours = strcmp(name, store_table_file(t)) == 0;
	return ours && snprintf(path, sizeof(path), "%s/%s", dir, name) < (int)sizeof(path) &&
	       lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* fsync the directory dir: the renames in it are on disk. 0, or -1 (logged). */
static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

	rc = fd < 0 ? -1 : fsync(fd);
	if (rc < 0)
		log_err("%s: %s", dir, strerror(errno));
	if (fd >= 0)
		close(fd);
	return rc < 0 ? -1 : 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	return remove(path) < 0 ? -1 : 0;
}

/*
 * Before a new discarded copy: the older ones go but the newest, so that a cause that comes
 * back does not fill the disk (at most two copies: that one and the new one).
 */
static void prune_discarded(const char *dir)
{
	char newest[NAME_MAX + 1] = "", path[PATH_MAX];
	struct timespec newest_at = {0, 0};
	struct dirent *e;
	struct stat st;
	DIR *d;

	for (int pass = 0; pass < 2; pass++) {
		if ((d = opendir(dir)) == NULL)
			return;
		while ((e = readdir(d)) != NULL) {
			if (strncmp(e->d_name, "discarded-", 10) != 0 ||
			    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >=
				(int)sizeof(path) ||
			    lstat(path, &st) < 0 || !S_ISDIR(st.st_mode))
				continue;
			/* The newest: the last one whose files were moved in. */
			if (pass == 0 && (st.st_mtim.tv_sec > newest_at.tv_sec ||
					  (st.st_mtim.tv_sec == newest_at.tv_sec &&
					   st.st_mtim.tv_nsec >= newest_at.tv_nsec))) {
				newest_at = st.st_mtim;
				snprintf(newest, sizeof(newest), "%s", e->d_name);
			} else if (pass == 1 && strcmp(e->d_name, newest) != 0) {
				log_warn("removing the older discarded copy %s", path);
				nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
			}
		}
		closedir(d);
	}
}

/*
 * The directory of this discard in kept: the one a discard that did not finish named in
 * dir/DISCARD_MARKER, or a new dir/discarded-TIME-XXXXXX, named there (written whole and
 * synced before anything moves, so that a crash in between resumes it). 0, or -1 (logged).
 */
static int discard_dir(const char *dir, char *kept, size_t size)
{
	char marker[PATH_MAX], tmp[PATH_MAX + 8], stamp[32];
	time_t now = time(NULL);
	struct stat st;
	struct tm tm;
	FILE *f;

	snprintf(marker, sizeof(marker), "%s/%s", dir, DISCARD_MARKER);
	if ((f = fopen(marker, "re")) != NULL) {
		int got = fgets(kept, (int)size, f) != NULL;
		fclose(f);
		kept[strcspn(kept, "\n")] = '\0';
		if (got && stat(kept, &st) == 0 && S_ISDIR(st.st_mode))
			return 0;
	}
	prune_discarded(dir);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", gmtime_r(&now, &tm));
	snprintf(tmp, sizeof(tmp), "%s.new", marker);
	if (snprintf(kept, size, "%s/discarded-%s-XXXXXX", dir, stamp) >= (int)size ||
	    mkdtemp(kept) == NULL || (f = fopen(tmp, "we")) == NULL) {
		log_err("%s: cannot make a directory for the discarded copy: %s", dir,
			strerror(errno));
		return -1;
	}
	if (fprintf(f, "%s\n", kept) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
		log_err("%s: %s", tmp, strerror(errno));
		fclose(f);
		return -1;
	}
	fclose(f);
	if (rename(tmp, marker) < 0) {
		log_err("%s: %s", marker, strerror(errno));
		return -1;
	}
	return sync_dir(dir);
}

/*
 * Move dir's Berkeley DB files (bdb_data_file) into to, again until a look finds none left
 * (a directory read while its entries move may skip one). 0, or -1 (logged).
 */
static int move_data_files(const char *dir, const char *to)
{
	for (int pass = 0; pass < 8; pass++) {
		int moved = 0, failed = 0;
		struct dirent *e;
		DIR *d = opendir(dir);

		if (d == NULL) {
			log_err("%s: %s", dir, strerror(errno));
			return -1;
		}
		while ((e = readdir(d)) != NULL) {
			char from[PATH_MAX], into[PATH_MAX];
			if (!bdb_data_file(dir, e->d_name))
				continue;
			if (snprintf(from, sizeof(from), "%s/%s", dir, e->d_name) >=
				(int)sizeof(from) ||
			    snprintf(into, sizeof(into), "%s/%s", to, e->d_name) >=
				(int)sizeof(into) ||
			    rename(from, into) < 0) {
				log_err("moving %s/%s aside: %s", dir, e->d_name, strerror(errno));
				failed++;
			} else {
				moved++;
			}
		}
		closedir(d);
		if (failed)
			return -1;
		if (moved == 0)
			return 0;
	}
	return -1;
}

int store_discard_pending(const char *dir)
{
	char marker[PATH_MAX];

	snprintf(marker, sizeof(marker), "%s/%s", dir, DISCARD_MARKER);
	return access(marker, F_OK) == 0;
}

int store_discard_copy(const char *dir, unsigned wait_s, char *kept, size_t size)
{
	char marker[PATH_MAX];
	int fd = bdb_registry_lock(dir), rc = -1;

	if (fd < 0)
		return -1;
	/*
	 * Openers wait for the registry's lock: only those already in it are waited for. The
	 * site's workers leave once they see the replication process gone; one that started too
	 * late to see it is asked to, as its web server would stop it (SIGTERM: it ends between
	 * requests, and the web server starts another).
	 */
	for (unsigned waited = 0; bdb_registry_in_use(fd); waited++) {
		if (waited >= wait_s * 10) {
			log_err("%s: processes stayed in the environment; its files are kept", dir);
			goto out;
		}
		if (waited == DISCARD_ASK_AFTER_S * 10)
			log_warn("%s: asking the %d processes still in the environment to leave",
				 dir, bdb_registry_signal(fd, SIGTERM));
		usleep(100 * 1000);
	}
	if (discard_dir(dir, kept, size) < 0)
		goto out;
	bdb_remove_regions(dir);
	if (move_data_files(dir, kept) < 0 || sync_dir(dir) < 0)
		goto out; /* the marker stays: the next start finishes the move */
	snprintf(marker, sizeof(marker), "%s/%s", dir, DISCARD_MARKER);
	/* Nobody is registered: an empty registry, as a new environment has. */
	if (unlink(marker) < 0 || ftruncate(fd, 0) < 0) {
		log_err("%s: %s", dir, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	/* Also releases the lock; this process has no other descriptor of the file open. */
	close(fd);
	return rc;
}
