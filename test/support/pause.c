/* The lab's pause program: the process that holds a pod sandbox's namespaces.
 *
 * It is PID 1 of the pod, so it must reap the zombies of processes that get
 * reparented to it (exec'd commands whose parent died), and it must exit on
 * SIGINT/SIGTERM itself: PID 1 of a namespace has no default signal actions.
 *
 * Built by test/lab.py with `gcc -static -Os -s`, so the image needs no libc.
 */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig)
{
	(void)sig;
	_exit(0);
}

static void reap(int sig)
{
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

int main(void)
{
	struct sigaction sa = {0};

	sa.sa_handler = stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = reap;
	sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
	sigaction(SIGCHLD, &sa, NULL);
	for (;;)
		pause();
	return 0;
}
