/* TLS 1.3 with mutual X.509 authentication for broker-to-broker connections (OpenSSL 3).
 * The wire protocol inside is unchanged: a TLS connection carries the same frames. */
#ifndef WORMHOLE_BROKER_TLS_H
#define WORMHOLE_BROKER_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

/* The broker's TLS files (settings only). TLS is on when all three are set. */
struct tls_settings {
	char cert[4096]; /* our certificate chain, PEM */
	char key[4096];  /* its private key, PEM */
	char ca[4096];   /* CA certificates peers must chain to: a PEM file or a hashed directory */
};

bool tls_settings_enabled(const struct tls_settings *settings);

/*
 * A context for both roles: TLS 1.3 only, the peer's certificate required and verified
 * against the CA, kernel TLS asked for where the kernel has it. The files are read now (a
 * reload makes a new context; connections keep the one they started with). NULL with the
 * reason in error (naming the file) when a file is missing, unreadable, or the key does not
 * match the certificate. An expired certificate of our own loads, with *warning set.
 */
SSL_CTX *tls_context_new(const struct tls_settings *settings, char *error, size_t error_len,
			 char *warning, size_t warning_len);
/* Takes a reference (contexts are counted: a reload frees the old one while conns hold it). */
SSL_CTX *tls_context_ref(SSL_CTX *ctx);
void tls_context_free(SSL_CTX *ctx);

/*
 * One connection's TLS over fd. A client checks that the server's certificate names
 * expect_name (a SAN DNS name) and sends it as SNI; a server takes the client's identity from
 * its certificate after the handshake. NULL on out of memory.
 *
 * Records go out through a buffer of TLS_OUTPUT_BUFFER bytes and leave in large write(2)s,
 * not one system call per 16 KiB record; tls_flush moves what it holds to the socket.
 */
#define TLS_OUTPUT_BUFFER (256u * 1024u)
struct tls_session;
struct tls_session *tls_session_new(SSL_CTX *ctx, int fd, bool client, const char *expect_name);
void tls_session_free(struct tls_session *tls);

enum tls_step { TLS_DONE, TLS_WANT_READ, TLS_WANT_WRITE, TLS_FAILED };
/* Moves the handshake on; on TLS_FAILED the reason is in error (the certificate check's
 * verdict when that was it, e.g. "certificate has expired"). */
enum tls_step tls_handshake(struct tls_session *tls, char *error, size_t error_len);

/* The peer's identity from its verified certificate: the first SAN DNS name, else the first
 * SAN URI; "" if it has neither. */
void tls_peer_identity(struct tls_session *tls, char *out, size_t len);
/* "TLSv1.3 TLS_AES_128_GCM_SHA256" and whether the kernel does the record layer. */
void tls_describe(struct tls_session *tls, char *out, size_t len);

/*
 * Record I/O with the semantics of readv/writev on a non-blocking socket: the bytes moved,
 * or -1 with errno EAGAIN (nothing now: *want_write says the socket must become writable
 * first), EPROTO (a TLS error: its text in error), or 0 from tls_readv at the peer's
 * close_notify. tls_readv fills the iovecs in order and stops early only when no decrypted
 * byte is left, so a short read means drained, as with a socket.
 */
ssize_t tls_readv(struct tls_session *tls, const struct iovec *iov, int count, bool *want_write,
		  char *error, size_t error_len);
/* Encrypts one buffer into records. A call that returned EAGAIN must be repeated with the
 * same length (the bytes may move: the mode allows it) before anything else is written. */
ssize_t tls_write(struct tls_session *tls, const void *data, size_t length, char *error,
		  size_t error_len);
/* Moves buffered records to the socket: 0 when none are left, 1 when some wait for the
 * socket to become writable, -1 with errno on a socket error. */
int tls_flush(struct tls_session *tls);
/* Records wait in the output buffer for the socket. */
bool tls_output_pending(struct tls_session *tls);
/* Decrypted or read-ahead bytes wait in the session (no socket event will announce them). */
bool tls_has_pending(struct tls_session *tls);
/* One attempt to send close_notify. */
void tls_shutdown(struct tls_session *tls);

#endif
