/* TLS 1.3 with mutual X.509 authentication for broker-to-broker connections (OpenSSL 3). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls.h"

bool tls_settings_enabled(const struct tls_settings *settings)
{
	return settings->cert[0] && settings->key[0] && settings->ca[0];
}

/* The first queued OpenSSL error as text ("" if none), and the queue emptied: a stale error
 * must not be blamed on the next connection. */
static void last_error(char *out, size_t len)
{
	unsigned long e = ERR_get_error();
	if (e)
		ERR_error_string_n(e, out, len);
	else
		snprintf(out, len, "%s", errno ? strerror(errno) : "unknown TLS error");
	ERR_clear_error();
}

static void fail(char *error, size_t len, const char *what, const char *path)
{
	char reason[256];
	last_error(reason, sizeof reason);
	snprintf(error, len, "%s %s: %s", what, path, reason);
}

SSL_CTX *tls_context_new(const struct tls_settings *settings, char *error, size_t error_len,
			 char *warning, size_t warning_len)
{
	warning[0] = '\0';
	ERR_clear_error();
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	if (!ctx) {
		fail(error, error_len, "TLS", "context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS | SSL_OP_NO_RENEGOTIATION);
	/* The mux's output may move between a write that could not finish and its retry (it
	 * is gathered again), and records are written whole. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* Read ahead: one read(2) takes many records (without it, two per record: header, then
	 * body). What it holds beyond the caller's buffers is looked for with SSL_has_pending. */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);
	/* AES-128-GCM first: a quarter faster than AES-256 here, and the margin the brokers' link
	 * needs; all three TLS 1.3 suites stay allowed. */
	SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	/* No session tickets: brokers keep long connections, and a ticket would outlive a
	 * certificate rotated by a reload. */
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

	if (SSL_CTX_use_certificate_chain_file(ctx, settings->cert) != 1) {
		fail(error, error_len, "tls-cert", settings->cert);
		goto failed;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, settings->key, SSL_FILETYPE_PEM) != 1) {
		fail(error, error_len, "tls-key", settings->key);
		goto failed;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(error, error_len, "tls-key %s does not match tls-cert %s", settings->key,
			 settings->cert);
		ERR_clear_error();
		goto failed;
	}
	struct stat st;
	if (stat(settings->ca, &st) != 0) {
		snprintf(error, error_len, "tls-ca %s: %s", settings->ca, strerror(errno));
		goto failed;
	}
	int loaded = S_ISDIR(st.st_mode) ? SSL_CTX_load_verify_dir(ctx, settings->ca)
					 : SSL_CTX_load_verify_file(ctx, settings->ca);
	if (loaded != 1) {
		fail(error, error_len, "tls-ca", settings->ca);
		goto failed;
	}
	X509 *ours = SSL_CTX_get0_certificate(ctx);
	if (ours && X509_cmp_current_time(X509_get0_notAfter(ours)) < 0)
		snprintf(warning, warning_len, "tls-cert %s has expired: peers will refuse it",
			 settings->cert);
	else if (ours && X509_cmp_current_time(X509_get0_notBefore(ours)) > 0)
		snprintf(warning, warning_len, "tls-cert %s is not valid yet: peers will refuse it",
			 settings->cert);
	return ctx;
failed:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *tls_context_ref(SSL_CTX *ctx)
{
	if (ctx)
		SSL_CTX_up_ref(ctx);
	return ctx;
}

void tls_context_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}

struct tls_session {
	SSL *ssl;
	BIO *network; /* our end of the pair SSL writes records into */
	int fd;
};

struct tls_session *tls_session_new(SSL_CTX *ctx, int fd, bool client, const char *expect_name)
{
	struct tls_session *tls = calloc(1, sizeof *tls);
	if (!tls)
		return NULL;
	tls->fd = fd;
	tls->ssl = SSL_new(ctx);
	BIO *socket_bio = BIO_new_socket(fd, BIO_NOCLOSE), *internal = NULL;
	if (!tls->ssl || !socket_bio ||
	    BIO_new_bio_pair(&internal, TLS_OUTPUT_BUFFER, &tls->network, TLS_OUTPUT_BUFFER) != 1) {
		BIO_free(socket_bio);
		goto failed;
	}
	/* reads straight from the socket; writes into the pair, drained by tls_flush */
	SSL_set_bio(tls->ssl, socket_bio, internal);
	if (client) {
		SSL_set_connect_state(tls->ssl);
		/* the server's certificate must name the peer we meant to reach */
		if (SSL_set1_host(tls->ssl, expect_name) != 1 ||
		    SSL_set_tlsext_host_name(tls->ssl, expect_name) != 1)
			goto failed;
		SSL_set_hostflags(tls->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	} else {
		SSL_set_accept_state(tls->ssl);
	}
	return tls;
failed:
	ERR_clear_error();
	tls_session_free(tls);
	return NULL;
}

void tls_session_free(struct tls_session *tls)
{
	if (!tls)
		return;
	SSL_free(tls->ssl); /* and the socket BIO and the pair's internal end */
	BIO_free(tls->network);
	free(tls);
}

int tls_flush(struct tls_session *tls)
{
	for (;;) {
		char *records;
		int held = BIO_nread0(tls->network, &records);
		if (held <= 0)
			return 0;
		ssize_t n = write(tls->fd, records, (size_t)held);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 1;
		if (n < 0)
			return -1;
		BIO_nread(tls->network, &records, (int)n);
	}
}

/* After OpenSSL produced output: flushed, or -1 with errno (EAGAIN: the rest waits). */
static int flush_after(struct tls_session *tls, char *error, size_t error_len)
{
	int r = tls_flush(tls);
	if (r < 0) {
		snprintf(error, error_len, "%s", strerror(errno));
		return -1;
	}
	return 0;
}

enum tls_step tls_handshake(struct tls_session *tls, char *error, size_t error_len)
{
	ERR_clear_error();
	errno = 0;
	int r = SSL_do_handshake(tls->ssl);
	int pending = tls_flush(tls);
	if (pending < 0) {
		snprintf(error, error_len, "%s", strerror(errno));
		return TLS_FAILED;
	}
	if (r == 1)
		return pending ? TLS_WANT_WRITE : TLS_DONE;
	switch (SSL_get_error(tls->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		return pending ? TLS_WANT_WRITE : TLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TLS_WANT_WRITE;
	default:
		break;
	}
	long verdict = SSL_get_verify_result(tls->ssl);
	if (verdict != X509_V_OK) {
		snprintf(error, error_len, "the peer's certificate: %s",
			 X509_verify_cert_error_string(verdict));
		ERR_clear_error();
	} else if (ERR_peek_error() == 0 && errno == 0) {
		snprintf(error, error_len, "the peer closed the connection during the handshake");
	} else {
		last_error(error, error_len);
	}
	return TLS_FAILED;
}

void tls_peer_identity(struct tls_session *tls, char *out, size_t len)
{
	out[0] = '\0';
	X509 *cert = SSL_get0_peer_certificate(tls->ssl);
	if (!cert)
		return;
	GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	if (!names)
		return;
	const char *uri = NULL;
	int uri_len = 0;
	for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *name = sk_GENERAL_NAME_value(names, i);
		const ASN1_IA5STRING *text = NULL;
		if (name->type == GEN_DNS)
			text = name->d.dNSName;
		else if (name->type == GEN_URI && !uri)
			text = name->d.uniformResourceIdentifier;
		if (!text)
			continue;
		const char *bytes = (const char *)ASN1_STRING_get0_data(text);
		int length = ASN1_STRING_length(text);
		/* a name with a NUL inside is a forgery attempt: skip it */
		if (memchr(bytes, '\0', (size_t)length))
			continue;
		if (name->type == GEN_DNS) {
			snprintf(out, len, "%.*s", length, bytes);
			GENERAL_NAMES_free(names);
			return;
		}
		uri = bytes;
		uri_len = length;
	}
	if (uri)
		snprintf(out, len, "%.*s", uri_len, uri);
	GENERAL_NAMES_free(names);
}

void tls_describe(struct tls_session *tls, char *out, size_t len)
{
	bool ktls = BIO_get_ktls_recv(SSL_get_rbio(tls->ssl));
	snprintf(out, len, "%s %s%s", SSL_get_version(tls->ssl), SSL_get_cipher_name(tls->ssl),
		 ktls ? " (kernel TLS receive)" : "");
}

/* Classifies a failed SSL_read_ex/SSL_write_ex: -1 with errno set, or 0 at close_notify. */
static ssize_t io_failure(SSL *ssl, int ret, bool *want_write, bool reading, char *error,
			  size_t error_len)
{
	switch (SSL_get_error(ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		*want_write = true;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		if (reading)
			return 0;
		snprintf(error, error_len, "the peer closed TLS");
		errno = EPIPE;
		return -1;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0) {
			/* the socket itself: EOF without close_notify reads as end of stream, an
			 * errno as itself (the caller logs it) */
			if (reading && errno == 0)
				return 0;
			snprintf(error, error_len, "%s", strerror(errno ? errno : EPIPE));
			if (!errno)
				errno = EPIPE;
			ERR_clear_error();
			return -1;
		}
		/* fall through */
	default:
		last_error(error, error_len);
		errno = EPROTO;
		return -1;
	}
}

ssize_t tls_readv(struct tls_session *tls, const struct iovec *iov, int count, bool *want_write,
		  char *error, size_t error_len)
{
	size_t total = 0;
	*want_write = false;
	ssize_t result = 0;
	bool stopped = false;
	for (int i = 0; i < count && !stopped; i++) {
		size_t done = 0;
		while (done < iov[i].iov_len) {
			size_t got = 0;
			ERR_clear_error();
			errno = 0;
			int r = SSL_read_ex(tls->ssl, (char *)iov[i].iov_base + done, iov[i].iov_len - done, &got);
			if (r == 1) {
				done += got;
				continue;
			}
			result = io_failure(tls->ssl, r, want_write, true, error, error_len);
			stopped = true;
			break;
		}
		total += done;
	}
	/* reading can make records to send (alerts, key updates): they go now */
	if (tls_flush(tls) > 0)
		*want_write = true;
	/* bytes already read come first; a failure repeats on the next call */
	if (total || !stopped)
		return (ssize_t)total;
	return result;
}

ssize_t tls_write(struct tls_session *tls, const void *data, size_t length, char *error,
		  size_t error_len)
{
	for (;;) {
		size_t written = 0;
		bool want_write = false;
		ERR_clear_error();
		errno = 0;
		int r = SSL_write_ex(tls->ssl, data, length, &written);
		if (r == 1) {
			/* the records are ours now; the socket takes what it can (the rest on the
			 * next flush) */
			if (flush_after(tls, error, error_len) < 0)
				return -1;
			return (ssize_t)written;
		}
		ssize_t failure = io_failure(tls->ssl, r, &want_write, false, error, error_len);
		if (!want_write)
			return failure;
		/* the buffer is full: move records to the socket, then try again */
		int flushed = tls_flush(tls);
		if (flushed < 0) {
			snprintf(error, error_len, "%s", strerror(errno));
			return -1;
		}
		if (flushed > 0) {
			errno = EAGAIN;
			return -1;
		}
	}
}

bool tls_output_pending(struct tls_session *tls)
{
	return BIO_ctrl_pending(tls->network) > 0;
}

bool tls_has_pending(struct tls_session *tls)
{
	return SSL_has_pending(tls->ssl);
}

void tls_shutdown(struct tls_session *tls)
{
	ERR_clear_error();
	if (SSL_is_init_finished(tls->ssl)) {
		(void)SSL_shutdown(tls->ssl);
		(void)tls_flush(tls);
	}
	ERR_clear_error();
}
