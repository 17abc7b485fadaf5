/* The sandbox's one process, as Kubernetes' pause image has: it holds the pod's namespaces
 * open and does nothing else. Exits on SIGTERM or SIGINT (as PID 1 of its PID namespace it
 * would otherwise ignore them) and reaps zombies. Built `cc -static` at test time. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signal) {
    (void)signal;
    _exit(0);
}

static void reap(int signal) {
    (void)signal;
    while (waitpid(-1, 0, WNOHANG) > 0) {}
}

int main(void) {
    struct sigaction action = {0};
    action.sa_handler = stop;
    sigaction(SIGTERM, &action, 0);
    sigaction(SIGINT, &action, 0);
    action.sa_handler = reap;
    action.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &action, 0);
    for (;;) pause();
}
