/* The wire frame codec: pure functions over caller-owned buffers (no I/O, no allocation). */
#ifndef WORMHOLE_SHARED_FRAME_H
#define WORMHOLE_SHARED_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wormhole/errors.h>

/*
 * Wire format (docs/PROTOCOL.md is the full specification):
 *   [version u8 = 1][type u8][stream id u32 BE][length u32 BE][length payload bytes]
 *
 * Error convention of this module: functions that produce bytes return the number of bytes
 * written (> 0) or a negative WH_E* code; predicates return bool; the decoder reports
 * problems as FRAME_EVENT_MALFORMED events. Nothing here logs: the caller decides and logs.
 */

#define FRAME_VERSION 1u
#define FRAME_HEADER_SIZE 10u
/* Absolute ceiling on a frame's payload (the reference's MaxFramePayloadSize). */
#define FRAME_MAX_PAYLOAD (16u * 1024u * 1024u)
/* Default per-codec ceiling and the size we split DATA at (the reference's default). */
#define FRAME_DEFAULT_PAYLOAD (32u * 1024u)
/* Longest non-DATA payload we buffer whole: HANDSHAKE, CLOSE and ERROR (message truncated). */
#define FRAME_CONTROL_MAX 4096u
/* Payload of WINDOW_UPDATE, PING and PONG: one u32. */
#define FRAME_U32_PAYLOAD 4u
/* Malformed frames in a row after which the peer is judged not to speak the protocol. */
#define FRAME_MALFORMED_RUN_LIMIT 8u

enum frame_type {
	FRAME_DATA = 0x01,
	FRAME_WINDOW_UPDATE = 0x02,
	FRAME_PING = 0x03,
	FRAME_PONG = 0x04,
	FRAME_CLOSE = 0x05,
	FRAME_HANDSHAKE = 0x06,
	FRAME_ERROR = 0x07,
};

/*
 * Codes carried in an ERROR frame's payload (u32 BE, then a UTF-8 message). 503 is the one
 * the reference sends; the others are ours (docs/PROTOCOL.md, "Error codes").
 */
enum frame_error_code {
	FRAME_ERR_PROTOCOL = 400,         /* a malformed frame on this stream */
	FRAME_ERR_FORBIDDEN = 403,        /* the receiver's access rules refuse the service to us */
	FRAME_ERR_NO_SERVICE = 404,       /* HANDSHAKE named a service nobody listens on */
	FRAME_ERR_STREAM_EXISTS = 409,    /* HANDSHAKE for a stream id that is live */
	FRAME_ERR_FLOW_CONTROL = 413,     /* DATA beyond the granted window */
	FRAME_ERR_LIMIT = 429,            /* a stream or memory limit of the receiver */
	FRAME_ERR_CANCELLED = 499,        /* the local endpoint aborted the stream */
	FRAME_ERR_INTERNAL = 500,         /* a failure inside the sender */
	FRAME_ERR_ENDPOINT_GONE = 502,    /* the app behind this end died or detached */
	FRAME_ERR_ACCEPT_QUEUE_FULL = 503,
	FRAME_ERR_TIMEOUT = 504,
	FRAME_ERR_GOING_AWAY = 505,       /* stream 0: the sender is closing the connection */
};

struct frame_header {
	uint8_t version;
	uint8_t type;
	uint32_t stream_id;
	uint32_t length;
};

/* ---- header ------------------------------------------------------------------------ */

/* Writes the 10 header bytes; the header is not validated. */
void frame_header_pack(uint8_t out[FRAME_HEADER_SIZE], const struct frame_header *header);
/* Reads 10 header bytes; no validation (see frame_header_check). */
void frame_header_unpack(const uint8_t in[FRAME_HEADER_SIZE], struct frame_header *header);
/*
 * Checks a received header against the protocol rules and a per-codec payload ceiling
 * (max_payload, at most FRAME_MAX_PAYLOAD). Returns WH_OK or the first rule broken:
 * WH_EPAYLOAD_TOO_LARGE, WH_EINVALID_VERSION, WH_EINVALID_FRAME_TYPE, WH_EINVALID_STREAM_ID,
 * WH_EFRAME_TOO_SHORT.
 */
int frame_header_check(const struct frame_header *header, uint32_t max_payload);

bool frame_type_is_valid(unsigned type);
/* "DATA", "WINDOW_UPDATE", ...; "UNKNOWN" for other values. */
const char *frame_type_name(unsigned type);
/* True for frames that belong to the connection, not a stream (stream id 0). */
bool frame_is_connection_level(const struct frame_header *header);
/* True if stream_id is one the given role opens: odd for the dialling (client) role. */
bool frame_stream_id_is_local(uint32_t stream_id, bool client_role);

/* ---- encoders: return bytes written (header + payload) or a negative WH_E* code --------
 * WH_EBUFFER_TOO_SMALL when cap is short, WH_EINVALID_STREAM_ID when the stream id breaks
 * the type's rule, WH_EPAYLOAD_TOO_LARGE past FRAME_MAX_PAYLOAD (or FRAME_CONTROL_MAX for
 * HANDSHAKE and ERROR), WH_EINVAL for a NULL payload with a non-zero length. */

int frame_encode(uint8_t *out, size_t cap, enum frame_type type, uint32_t stream_id,
		 const void *payload, size_t length);
/* The header of a DATA frame only, for a payload the caller sends from elsewhere (writev). */
int frame_encode_data_header(uint8_t *out, size_t cap, uint32_t stream_id, size_t length);
int frame_encode_data(uint8_t *out, size_t cap, uint32_t stream_id, const void *payload,
		      size_t length);
/* WH_EINVAL for a zero increment: it grants nothing and would only cost a frame. */
int frame_encode_window_update(uint8_t *out, size_t cap, uint32_t stream_id, uint32_t increment);
int frame_encode_ping(uint8_t *out, size_t cap, uint32_t ping_id);
int frame_encode_pong(uint8_t *out, size_t cap, uint32_t ping_id);
int frame_encode_close(uint8_t *out, size_t cap, uint32_t stream_id);
/* payload may be NULL with length 0 (what the reference sends); ours carries a service name. */
int frame_encode_handshake(uint8_t *out, size_t cap, uint32_t stream_id, const void *payload,
			   size_t length);
/* stream_id 0 is a connection-level error. The message is bytes, not NUL-terminated. */
int frame_encode_error(uint8_t *out, size_t cap, uint32_t stream_id, uint32_t code,
		       const char *message, size_t message_length);

/* ---- the HANDSHAKE payload (docs/PROTOCOL.md, section 3) ------------------------------
 *   NAME [0x00 EXTENSIONS]
 * NAME: the service, 0-255 bytes without NUL (empty: the receiver's default service).
 * EXTENSIONS (ours; a reference peer ignores the whole payload): 1-255 bytes of
 * [type u8][length u8][value], each type at most once; types this codec does not know are
 * skipped. FRAME_HS_CLIENT: the TCP client of a forward, [family u8 = 4 | 6][source address
 * 4 | 16][source port u16 BE][destination address][destination port u16 BE]. */

#define FRAME_SERVICE_NAME_MAX 255u
#define FRAME_HS_EXTENSIONS_MAX 255u
#define FRAME_HANDSHAKE_PAYLOAD_MAX (FRAME_SERVICE_NAME_MAX + 1u + FRAME_HS_EXTENSIONS_MAX)
#define FRAME_HS_CLIENT 0x01u

/* Who connected to a forward (source) at which of its addresses (destination). Addresses in
 * network byte order (4 or 16 bytes used), ports in host order. */
struct frame_client_address {
	uint8_t family; /* 4 or 6 */
	uint8_t src_addr[16], dst_addr[16];
	uint16_t src_port, dst_port;
};

struct frame_handshake {
	const uint8_t *service; /* into the payload; not NUL-terminated */
	size_t service_length;
	bool has_client;
	struct frame_client_address client;
};

/* The payload for a service name (NULL: empty) and a client (NULL: none; then the payload is
 * the name alone, as before extensions). Bytes written (>= 0), WH_EBUFFER_TOO_SMALL, or
 * WH_EINVAL (a name over 255 bytes or with NUL, a client of another family). */
int frame_handshake_payload_encode(uint8_t *out, size_t cap, const char *service,
				   const struct frame_client_address *client);
/* WH_OK; WH_EPAYLOAD_TOO_LARGE for a name over 255 bytes or extensions over 255;
 * WH_EPROTOCOL for malformed extensions (a NUL with nothing after it, one that runs past the
 * end, a client block of the wrong length or family, a type twice). */
int frame_handshake_payload_parse(const uint8_t *payload, size_t length, struct frame_handshake *out);

/* ---- parse helpers: WH_OK or WH_EINVALID_FRAME_TYPE (wrong type), WH_EFRAME_TOO_SHORT,
 * WH_EPAYLOAD_TOO_LARGE (a u32 payload that is not exactly 4 bytes) -------------------- */

int frame_parse_window_update(const struct frame_header *header, const uint8_t *payload,
			      uint32_t *increment);
int frame_parse_ping(const struct frame_header *header, const uint8_t *payload, uint32_t *ping_id);
int frame_parse_pong(const struct frame_header *header, const uint8_t *payload, uint32_t *ping_id);
/* message points into payload and is not NUL-terminated. */
int frame_parse_error(const struct frame_header *header, const uint8_t *payload,
		      uint32_t payload_length, uint32_t *code, const char **message,
		      size_t *message_length);

/* ---- wire error codes <-> WH_E* codes ------------------------------------------------ */

/* The ERROR frame code to send for a local failure (FRAME_ERR_INTERNAL if none fits). */
uint32_t frame_error_code_for(int wh_error);
/* The WH_E* code an app sees for a received ERROR code (WH_EREMOTE if none fits). */
int frame_error_from_code(uint32_t code);

/* ---- incremental decoder ------------------------------------------------------------- */

enum frame_event_kind {
	FRAME_EVENT_NONE = 0,    /* nothing to report: feed the rest, or more bytes */
	FRAME_EVENT_CONTROL,     /* a whole non-DATA frame, header and payload */
	FRAME_EVENT_DATA_HEADER, /* a DATA header; its payload follows */
	FRAME_EVENT_DATA_CHUNK,  /* a piece of the current DATA payload (in the fed buffer) */
	FRAME_EVENT_MALFORMED,   /* a frame broke a rule: see error and fatal */
};

struct frame_event {
	enum frame_event_kind kind;
	struct frame_header header;   /* every kind but NONE */
	const uint8_t *payload;       /* CONTROL: decoder-owned copy; DATA_CHUNK: into the input */
	uint32_t payload_length;      /* bytes at payload */
	uint32_t payload_offset;      /* DATA_CHUNK: where this piece starts in the frame */
	bool end;                     /* DATA_HEADER/DATA_CHUNK: the frame's payload is complete */
	bool truncated;               /* CONTROL: ERROR message cut at FRAME_CONTROL_MAX bytes */
	int error;                    /* MALFORMED: the WH_E* code */
	bool fatal;                   /* MALFORMED: the byte stream cannot be followed any more */
};

enum frame_decoder_state {
	FRAME_DECODER_HEAD,
	FRAME_DECODER_DATA,
	FRAME_DECODER_CONTROL,
	FRAME_DECODER_SKIP,
	FRAME_DECODER_FAILED,
};

/* Caller-owned; no allocation. Fields are private to frame.c. */
struct frame_decoder {
	uint32_t max_payload;
	enum frame_decoder_state state;
	uint8_t head_have;
	uint8_t head[FRAME_HEADER_SIZE];
	struct frame_header header;   /* the frame being decoded */
	uint32_t remaining;           /* its payload bytes still to come */
	uint32_t control_have;        /* control payload bytes kept so far */
	unsigned malformed_run;
	int fatal_error;
	uint8_t control[FRAME_CONTROL_MAX];
};

/* max_payload: the per-codec ceiling (the reference's WithMaxPayloadSize); 0 means
 * FRAME_DEFAULT_PAYLOAD. Returns WH_OK, or WH_EINVAL above FRAME_MAX_PAYLOAD. */
int frame_decoder_init(struct frame_decoder *decoder, uint32_t max_payload);

/*
 * Consumes bytes from in[0..length) and reports at most one event. Returns how many bytes it
 * consumed; call again with the rest (a loop until length is used up) handling each event.
 * Any split of the input, down to one byte per call, yields the same events.
 * After a MALFORMED event that is not fatal, the offending frame's payload is skipped.
 * After a fatal one, every call consumes nothing and reports the same fatal error.
 */
size_t frame_decoder_feed(struct frame_decoder *decoder, const uint8_t *in, size_t length,
			  struct frame_event *event);

/* DATA payload bytes still to come for the current frame (0 outside a DATA payload), so
 * the caller may read them from the socket straight into their destination... */
uint32_t frame_decoder_data_remaining(const struct frame_decoder *decoder);
/* ...and then tell the decoder it did. WH_EINVAL if n exceeds the remaining bytes. */
int frame_decoder_data_consumed(struct frame_decoder *decoder, uint32_t n);
/* Discard the rest of the current DATA payload (unknown stream, window exceeded, ...). */
void frame_decoder_skip_payload(struct frame_decoder *decoder);
/* At end of input: WH_OK on a frame boundary, WH_EUNEXPECTED_EOF inside a frame, or the
 * fatal error the decoder stopped on. */
int frame_decoder_finish(const struct frame_decoder *decoder);

#endif /* WORMHOLE_SHARED_FRAME_H */
