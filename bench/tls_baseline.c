/* The TLS baseline: two plain OpenSSL processes over loopback TCP. */
#include "config.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls_baseline.h"

static SSL_CTX *context(const struct tls_files *files)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_use_certificate_chain_file(ctx, files->cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, files->key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_load_verify_file(ctx, files->ca) != 1) {
		ERR_print_errors_fp(stderr);
		exit(1);
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_num_tickets(ctx, 0);
	/* The settings the broker's context has (broker/tls.c): the same cipher order (AES-128-GCM
	 * first), read-ahead with the same read buffer, the same write mode. A baseline that
	 * negotiated AES-256 or read each record in two calls would be slower than it need be. */
	SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);
	return ctx;
}

static void serve_connection(SSL_CTX *ctx, int fd, char mode)
{
	static char buffer[BENCH_BULK_IO];
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (SSL_accept(ssl) != 1)
		_exit(1);
	for (;;) {
		size_t got;
		if (SSL_read_ex(ssl, buffer, sizeof buffer, &got) != 1)
			break; /* close_notify, or the client went */
		size_t written;
		if (mode == 'e' && SSL_write_ex(ssl, buffer, got, &written) != 1)
			break;
	}
	SSL_shutdown(ssl);
	_exit(0);
}

pid_t tls_raw_server(char mode, const struct tls_files *files, struct endpoint *ep)
{
	int listener = listen_endpoint(ep);
	pid_t pid = fork();
	if (pid != 0) {
		close(listener);
		return pid;
	}
	signal(SIGCHLD, SIG_IGN);
	SSL_CTX *ctx = context(files);
	for (;;) {
		int fd = accept(listener, NULL, NULL);
		if (fd < 0)
			_exit(0);
		if (fork() == 0)
			serve_connection(ctx, fd, mode);
		close(fd);
	}
}

static SSL *dial(SSL_CTX *ctx, const struct endpoint *ep)
{
	int fd = raw_connect(ep, false);
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (SSL_connect(ssl) != 1) {
		ERR_print_errors_fp(stderr);
		exit(1);
	}
	return ssl;
}

static void hang_up(SSL *ssl)
{
	int fd = SSL_get_fd(ssl);
	SSL_free(ssl);
	close(fd);
}

double tls_raw_bulk(const struct endpoint *ep, const struct tls_files *files, size_t total)
{
	static char chunk[BENCH_BULK_IO];
	SSL_CTX *ctx = context(files);
	SSL *ssl = dial(ctx, ep); /* the handshake is not timed: the brokers' link is up before */
	double start = now_s();
	for (size_t sent = 0; sent < total;) {
		size_t n = total - sent < sizeof chunk ? total - sent : sizeof chunk, written;
		if (SSL_write_ex(ssl, chunk, n, &written) != 1) {
			fprintf(stderr, "bench: TLS write failed\n");
			exit(1);
		}
		sent += written;
	}
	SSL_shutdown(ssl); /* close_notify: the server has read everything when it answers */
	size_t got;
	while (SSL_read_ex(ssl, chunk, sizeof chunk, &got) == 1)
		;
	double seconds = now_s() - start;
	hang_up(ssl);
	SSL_CTX_free(ctx);
	return (double)total / seconds;
}

void tls_raw_pingpong(const struct endpoint *ep, const struct tls_files *files, double *samples,
		      size_t n)
{
	char message[64] = { 0 }, reply[64];
	SSL_CTX *ctx = context(files);
	SSL *ssl = dial(ctx, ep);
	for (size_t i = 0; i < n; i++) {
		double start = now_s();
		size_t done, got = 0;
		if (SSL_write_ex(ssl, message, sizeof message, &done) != 1)
			exit(1);
		while (got < sizeof reply) {
			if (SSL_read_ex(ssl, reply + got, sizeof reply - got, &done) != 1)
				exit(1);
			got += done;
		}
		samples[i] = now_s() - start;
	}
	hang_up(ssl);
	SSL_CTX_free(ctx);
}
