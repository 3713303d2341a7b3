/* The sandbox ("pause") process of every pod on the test node (scripts/cluster): it holds the
 * pod's namespaces open and reaps zombies, as registry.k8s.io/pause does, and exits on SIGINT or
 * SIGTERM. Written here because the test machine has no container registry to pull the upstream
 * image from; scripts/setup.d/55-kube-node.sh compiles it static so the image needs no libc. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) { (void)sig; _exit(0); }

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction term = {.sa_handler = on_term};
    struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP};
    if (sigaction(SIGINT, &term, NULL) < 0 || sigaction(SIGTERM, &term, NULL) < 0 ||
        sigaction(SIGCHLD, &child, NULL) < 0)
        return 1;
    for (;;)
        pause();
}
