#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "privs.h"

int
privs_ids(const struct conf *c, uid_t *uid, gid_t *gid)
{
	struct passwd	*pw;
	struct group	*gr;

	if (c->user == NULL || geteuid() != 0)
		return 0;
	if ((pw = getpwnam(c->user)) == NULL) {
		log_err("user: no user '%s'", c->user);
		return -1;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	if (c->group != NULL) {
		if ((gr = getgrnam(c->group)) == NULL) {
			log_err("group: no group '%s'", c->group);
			return -1;
		}
		*gid = gr->gr_gid;
	}
	return 1;
}

int
privs_give_log(const struct conf *c)
{
	uid_t	uid;
	gid_t	gid;
	int	rc;

	if ((rc = privs_ids(c, &uid, &gid)) <= 0)
		return rc;
	if (log_chown(uid, gid) == -1) {
		log_err("log: cannot give the file to %s: %s", c->user,
		    strerror(errno));
		return -1;
	}
	return 0;
}

int
privs_drop(const struct conf *c)
{
	uid_t	uid;
	gid_t	gid;
	int	rc;

	if ((rc = privs_ids(c, &uid, &gid)) <= 0)
		return rc;
	if (setgroups(1, &gid) == -1 || setgid(gid) == -1 || setuid(uid) == -1) {
		log_err("dropping privileges to %s: %s", c->user, strerror(errno));
		return -1;
	}
	return 0;
}
