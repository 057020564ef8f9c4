/* A non-Go neighbour for the Kubernetes test: a static C HTTP server that
 * answers every request on the given port with "not go\n". gosight must leave it
 * alone (nothing traced, its bytes unchanged). */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 8091;
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 64)) {
        perror("notgo: listen");
        return 1;
    }
    printf("notgo listening on %d\n", port);
    fflush(stdout);
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) continue;
        char buf[4096];
        size_t have = 0;
        ssize_t n;
        /* Read the request head (to the blank line), then answer and close. */
        while (have < sizeof buf - 1 && (n = read(c, buf + have, sizeof buf - 1 - have)) > 0) {
            have += (size_t)n;
            buf[have] = 0;
            if (strstr(buf, "\r\n\r\n")) break;
        }
        const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nnot go\n";
        if (write(c, r, strlen(r)) < 0) perror("notgo: write");
        close(c);
    }
}
