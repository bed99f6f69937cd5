/* Wormhole error codes: one table shared by the wire codec, the broker and the client library. */
#ifndef WORMHOLE_ERRORS_H
#define WORMHOLE_ERRORS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Part of the API, named here so that apps know what they see: WH_EXPORT marks the library's
 * public functions (the library is built with hidden visibility; apps need not use it), and
 * WH_ERROR_TABLE below lists every code once, as X(NAME, value, message): apps may expand it
 * to build their own tables (names for their logs, a switch over every code). */
#if defined(__GNUC__)
#define WH_EXPORT __attribute__((visibility("default")))
#else
#define WH_EXPORT
#endif

/*
 * Every fallible function of Wormhole reports failure as one of these negative values
 * (0 means success; functions that count return a non-negative count instead).
 * The values are ABI: never renumber an entry, only append. Columns: name, value, message.
 * The first group mirrors the reference implementation's error variables one for one.
 */
#define WH_ERROR_TABLE(X)                                                                    \
	X(EINVAL, -1, "invalid argument")                                                       \
	X(ENOMEM, -2, "out of memory")                                                          \
	X(ESYSTEM, -3, "system call failed (see errno)")                                        \
	X(EBUFFER_TOO_SMALL, -4, "output buffer too small")                                     \
	X(EWOULDBLOCK, -5, "operation would block")                                             \
	X(EINVALID_VERSION, -10, "invalid frame version")                                       \
	X(EINVALID_FRAME_TYPE, -11, "invalid frame type")                                       \
	X(EPAYLOAD_TOO_LARGE, -12, "payload too large")                                         \
	X(EFRAME_TOO_SHORT, -13, "frame too short")                                             \
	X(EINVALID_STREAM_ID, -14, "invalid stream ID")                                         \
	X(EUNEXPECTED_EOF, -15, "unexpected EOF")                                               \
	X(ECHECKSUM_MISMATCH, -16, "checksum mismatch")                                         \
	X(ECONNECTION_CLOSED, -17, "connection closed")                                         \
	X(ESTREAM_CLOSED, -18, "stream closed")                                                 \
	X(ESTREAM_NOT_FOUND, -19, "stream not found")                                           \
	X(ESTREAM_ALREADY_EXISTS, -20, "stream already exists")                                 \
	X(ETIMEOUT, -21, "operation timeout")                                                   \
	X(EMUX_CLOSED, -22, "mux closed")                                                       \
	X(EPROTOCOL, -30, "protocol violation by the other side")                              \
	X(EFLOW_CONTROL, -31, "data beyond the flow-control window")                            \
	X(EACCEPT_QUEUE_FULL, -32, "accept queue full")                                         \
	X(EREMOTE, -33, "stream ended by an error from the remote end")                         \
	X(EKEEPALIVE_TIMEOUT, -34, "no answer to keep-alive ping within the timeout")           \
	X(ENO_SERVICE, -35, "no listener for that service")                                     \
	X(ERING_CORRUPT, -36, "shared-memory ring positions are inconsistent")                  \
	X(EBROKER_GONE, -37, "the broker is gone")                                              \
	X(ELIMIT, -38, "a configured limit was reached")                                        \
	X(EAPP_GONE, -39, "the app at the other end of the stream went away")                   \
	X(EUNKNOWN_PEER, -40, "no such peer is configured in the broker")                       \
	X(EDESCRIPTORS, -41, "out of file descriptors")                                         \
	X(ESERVICE_TAKEN, -42, "another app listens on that service")                         \
	X(ETLS, -43, "TLS failed (handshake, certificate or record)")                           \
	X(EACCESS, -44, "not permitted by the broker's access rules")                          \
	X(EPEER_UNREACHABLE, -45, "the peer broker cannot be reached")                          \
	X(ENO_BROKER, -46, "no broker at the socket path")                                      \
	X(ESOCKET_DENIED, -47, "permission denied on the broker's socket")                      \
	X(ENOT_BROKER, -48, "what answers at the socket path is not a wormhole broker")

enum wh_error {
	WH_OK = 0,
#define WH_ERROR_ENUM_ENTRY(name, value, message) WH_##name = (value),
	WH_ERROR_TABLE(WH_ERROR_ENUM_ENTRY)
#undef WH_ERROR_ENUM_ENTRY
};

/* Human-readable message for an error code; never NULL ("unknown error" for others).
 * The returned string is static. Thread-safe. */
WH_EXPORT const char *wh_strerror(int error);

/* The code's symbolic name, e.g. "WH_ETIMEOUT"; "WH_OK" for 0, NULL for an unknown code.
 * The returned string is static. Thread-safe. */
WH_EXPORT const char *wh_error_name(int error);

#ifdef __cplusplus
}
#endif

#endif /* WORMHOLE_ERRORS_H */
