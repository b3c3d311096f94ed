/*
 * The pool-wide cap on Unmute sessions (SPEC.md §4.6): scoreboard slots
 * per URL, least-loaded choice, release, and the count seen across
 * processes (the scoreboard is shared memory made before fork).
 */
#include <sys/wait.h>

#include <stdlib.h>
#include <unistd.h>

#include "scoreboard.h"
#include "tap.h"

static void
test_one_url(void)
{
	int i, got[4];

	for (i = 0; i < 4; i++)
		got[i] = sb_unmute_acquire(1, 4);
	ok(got[0] == 0 && got[1] == 0 && got[2] == 0 && got[3] == 0,
	    "4 sessions on the only URL");
	is_int(sb_total_unmute(0), 4, "4 counted");
	is_int(sb_unmute_acquire(1, 4), -1, "5th refused: -1");
	sb_unmute_release(0);
	is_int(sb_unmute_acquire(1, 4), 0, "a released slot is taken again");
	for (i = 0; i < 4; i++)
		sb_unmute_release(0);
	is_int(sb_total_unmute(0), 0, "all released");
}

static void
test_least_loaded(void)
{
	int i, a, b, c;

	/* Load URL 0 with 2 and URL 1 with 1: the next goes to URL 2. */
	a = sb_unmute_acquire(3, 3);
	b = sb_unmute_acquire(3, 3);
	c = sb_unmute_acquire(3, 3);
	ok(a != b && b != c && a != c, "three sessions spread over three URLs");
	sb_unmute_release(2);
	sb_unmute_release(1);
	is_int(sb_unmute_acquire(3, 3), 1, "least loaded (tie: lowest index) gets the next");
	is_int(sb_unmute_acquire(3, 3), 2, "then the empty one");
	for (i = 0; i < 6; i++)
		if (sb_unmute_acquire(3, 3) == -1)
			break;
	is_int(i, 6, "fills up to 3 per URL (9 in all)");
	is_int(sb_unmute_acquire(3, 3), -1, "all URLs full: -1");
	for (i = 0; i < 3; i++) {
		is_int(sb_total_unmute(i), 3, "URL at the cap");
		while (sb_total_unmute(i) > 0)
			sb_unmute_release(i);
	}
}

static void
test_fork(void)
{
	int	 up[2], down[2], st, i;
	pid_t	 pid;
	char	 c;

	/* up: child -> parent "taken"; down: parent -> child "looked". */
	if (pipe(up) == -1 || pipe(down) == -1)
		return;
	sb_unmute_acquire(1, 4);	/* the parent holds 1 */
	if ((pid = fork()) == 0) {
		sb_slot = 1;		/* a worker of its own row */
		for (i = 0; i < 3; i++)
			if (sb_unmute_acquire(1, 4) != 0)
				_exit(1);
		if (sb_unmute_acquire(1, 4) != -1)
			_exit(2);	/* the parent's session counts too */
		close(up[0]);
		close(down[1]);
		(void)write(up[1], "x", 1);
		/* Hold the sessions until the parent has looked. */
		if (read(down[0], &c, 1) != 1)
			_exit(3);
		_exit(0);
	}
	close(up[1]);
	close(down[0]);
	ok(read(up[0], &c, 1) == 1, "child took its sessions");
	is_int(sb_total_unmute(0), 4, "parent sees the child's 3 + its own 1");
	is_int(sb_unmute_acquire(1, 4), -1, "parent refused while the child holds 3");
	(void)write(down[1], "x", 1);
	close(up[0]);
	close(down[1]);
	waitpid(pid, &st, 0);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "child: 3 taken, 4th refused because of the parent's");
	/* A dead worker's counts go with its row. */
	sb_clear_row(1);
	is_int(sb_total_unmute(0), 1, "cleared row frees the child's sessions");
	is_int(sb_unmute_acquire(1, 4), 0, "and they can be taken again");
}

int
main(void)
{
	if (!ok(sb_create() == 0, "sb_create"))
		return done();
	sb_slot = 0;
	test_one_url();
	test_least_loaded();
	test_fork();
	return done();
}
