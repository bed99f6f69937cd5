/* Fuzz target: the mux's input path, in process, in either role, against any peer bytes.
 *
 * The input is a script. Its first byte picks the configuration (role, accept queue or
 * built-in services, small or default limits, flow control); then each step is an opcode and
 * its argument bytes: feed peer bytes, let the socket take part of the output, advance the
 * clock, or act as the local owner (open, write, read, half-close, reset, release, accept).
 *
 * The oracle decodes everything the mux writes and aborts on any breach of the protocol it
 * promises (docs/PROTOCOL.md): only well-formed frames; DATA within MaxFrameSize and within
 * the credit the peer granted (initial window plus the WINDOW_UPDATEs it sent); nothing for
 * a stream of ours before its HANDSHAKE; no DATA after our CLOSE; nothing on a stream after
 * our ERROR on it; nothing at all after our goodbye (ERROR on stream 0). ASan and UBSan see
 * every access; LeakSanitizer every stream left behind.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "mux.h"
#include "services.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TRACKED_IDS 256u /* per-stream oracle state for ids below this */
#define LOCAL_STREAMS 16u

struct oracle {
	struct frame_decoder out;    /* what the mux wrote */
	struct frame_decoder in;     /* what the peer sent, to count the credit it granted */
	uint32_t window, max_frame;
	bool flow_control, client;
	bool goodbye;                /* our ERROR on stream 0 went out */
	uint32_t in_data_stream;     /* DATA being decoded in the output (0: none) */
	struct {
		bool handshake, close, error;
		uint64_t data_out, credit;
	} ids[TRACKED_IDS];
};

struct script {
	const uint8_t *at, *end;
};

static uint8_t next(struct script *s)
{
	return s->at < s->end ? *s->at++ : 0;
}

/* A broken promise: say which, then crash so that the fuzzer keeps the input. */
#define check(ok) check_at((ok), #ok, __LINE__)
static void check_at(bool ok, const char *what, int line)
{
	if (!ok) {
		fprintf(stderr, "fuzz_mux: oracle line %d: %s\n", line, what);
		abort();
	}
}

static void oracle_input(struct oracle *o, const uint8_t *bytes, size_t length)
{
	while (length) {
		struct frame_event ev;
		size_t used = frame_decoder_feed(&o->in, bytes, length, &ev);
		bytes += used;
		length -= used;
		if (used == 0 && ev.kind == FRAME_EVENT_MALFORMED && ev.fatal)
			return;
		uint32_t increment;
		if (ev.kind == FRAME_EVENT_CONTROL && ev.header.type == FRAME_WINDOW_UPDATE &&
		    ev.header.stream_id < TRACKED_IDS &&
		    frame_parse_window_update(&ev.header, ev.payload, &increment) == WH_OK)
			o->ids[ev.header.stream_id].credit += increment;
	}
}

static void oracle_output(struct oracle *o, const uint8_t *bytes, size_t length)
{
	while (length) {
		struct frame_event ev;
		size_t used = frame_decoder_feed(&o->out, bytes, length, &ev);
		bytes += used;
		length -= used;
		check(ev.kind != FRAME_EVENT_MALFORMED);
		if (ev.kind == FRAME_EVENT_NONE || ev.kind == FRAME_EVENT_DATA_CHUNK)
			continue;
		if (getenv("FUZZ_MUX_TRACE")) /* replaying one input: what the mux wrote */
			fprintf(stderr, "fuzz_mux: out %s stream %u length %u\n",
				frame_type_name(ev.header.type), ev.header.stream_id, ev.header.length);
		check(!o->goodbye); /* nothing after the goodbye */
		uint32_t id = ev.header.stream_id;
		bool ours = id && frame_stream_id_is_local(id, o->client);
		if (id >= TRACKED_IDS)
			continue;
		switch (ev.header.type) {
		case FRAME_HANDSHAKE:
			check(ours && !o->ids[id].handshake);
			o->ids[id].handshake = true;
			break;
		case FRAME_DATA:
			check(ev.header.length <= o->max_frame);
			check(!ours || o->ids[id].handshake);
			check(!o->ids[id].close && !o->ids[id].error);
			o->ids[id].data_out += ev.header.length;
			check(!o->flow_control || o->ids[id].data_out <= o->window + o->ids[id].credit);
			break;
		case FRAME_CLOSE:
			check(!ours || o->ids[id].handshake);
			check(!o->ids[id].close && !o->ids[id].error);
			o->ids[id].close = true;
			break;
		case FRAME_WINDOW_UPDATE:
			check(!o->ids[id].error);
			break;
		case FRAME_ERROR:
			if (id == 0) {
				uint32_t code = ev.payload_length >= 4 ? (uint32_t)ev.payload[2] << 8 | ev.payload[3] : 0;
				if (code == FRAME_ERR_GOING_AWAY)
					o->goodbye = true;
				break;
			}
			/* An ERROR for an id of ours that we have not opened answers the peer's misuse
			 * of it (its HANDSHAKE with our parity): no stream of ours ended. */
			if (!ours || o->ids[id].handshake)
				o->ids[id].error = true;
			break;
		default:
			break;
		}
	}
}

/* Lets the "socket" take up to `budget` bytes of the mux's output. */
static void drain(struct mux *mux, struct oracle *o, size_t budget)
{
	while (budget) {
		struct iovec iov[16];
		int n = mux_output_gather(mux, iov, 16);
		if (n <= 0)
			return;
		size_t taken = 0;
		for (int i = 0; i < n && taken < budget; i++) {
			size_t take = iov[i].iov_len < budget - taken ? iov[i].iov_len : budget - taken;
			oracle_output(o, iov[i].iov_base, take);
			taken += take;
		}
		if (taken == 0)
			return;
		mux_output_advance(mux, taken);
		budget -= taken;
	}
}

struct owner {
	struct mux_stream *streams[LOCAL_STREAMS];
};

static void forget(struct owner *owner, struct mux_stream *s)
{
	for (unsigned i = 0; i < LOCAL_STREAMS; i++)
		if (owner->streams[i] == s)
			owner->streams[i] = NULL;
}

static int on_incoming(struct mux *mux, struct mux_stream *stream, const char *service, void *user)
{
	(void)mux;
	(void)user;
	return services_attach(stream, service[0] ? service : "echo");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct script script = { data, data + size };
	uint8_t setup = next(&script);
	struct mux_config config;
	mux_config_default(&config);
	config.keepalive_interval = (setup & 8) ? 1.0 : 0;
	config.keepalive_timeout = 0.5;
	config.enable_flow_control = !(setup & 16);
	if (setup & 4) { /* small limits: every limit path is reachable with short inputs */
		config.window_size = 1024;
		config.max_window_size = 4096;
		config.max_frame_size = 512;
		config.max_streams = 8;
		config.accept_backlog = 2;
		config.send_buffer = 2048;
		config.memory_budget = 8192;
		config.release_linger = 2;
	}
	bool client = setup & 1;
	struct mux_callbacks callbacks = { .on_incoming = (setup & 2) ? on_incoming : NULL };
	struct mux *mux = mux_new(client, &config, NULL, &callbacks, NULL);
	if (!mux)
		return 0;
	static struct oracle o;
	memset(&o, 0, sizeof o);
	frame_decoder_init(&o.out, FRAME_MAX_PAYLOAD);
	frame_decoder_init(&o.in, config.max_frame_size);
	o.window = config.window_size;
	o.max_frame = config.max_frame_size;
	o.flow_control = config.enable_flow_control;
	o.client = client;
	struct owner owner = { { NULL } };
	double now = 1000.0;
	uint8_t buffer[4096];
	while (script.at < script.end) {
		uint8_t op = next(&script);
		unsigned arg = next(&script);
		struct mux_stream **slot = &owner.streams[arg % LOCAL_STREAMS];
		switch (op % 12) {
		case 0: case 1: case 2: { /* peer bytes: the most common step */
			size_t n = arg + 1;
			if (n > (size_t)(script.end - script.at))
				n = (size_t)(script.end - script.at);
			oracle_input(&o, script.at, n);
			mux_input(mux, script.at, n, now);
			script.at += n;
			break;
		}
		case 3:
			drain(mux, &o, (size_t)arg * 64 + 1);
			break;
		case 4:
			now += (double)arg / 16.0;
			mux_timer(mux, now);
			break;
		case 5:
			if (!*slot) {
				const char *services[] = { "", "echo", "discard", "nobody" };
				mux_open_stream(mux, services[arg % 4], slot);
			}
			break;
		case 6:
			if (*slot) {
				memset(buffer, (int)arg, sizeof buffer);
				mux_stream_write(*slot, buffer, (size_t)arg * 16);
			}
			break;
		case 7:
			if (*slot)
				mux_stream_read(*slot, buffer, (size_t)arg * 16 + 1);
			break;
		case 8:
			if (*slot)
				mux_stream_close_write(*slot);
			break;
		case 9:
			if (*slot)
				mux_stream_reset(*slot, WH_ESTREAM_CLOSED, "fuzz");
			break;
		case 10:
			if (*slot) {
				struct mux_stream *s = *slot;
				forget(&owner, s);
				mux_stream_release(s);
			}
			break;
		case 11:
			if (!*slot)
				*slot = mux_accept(mux);
			else if (arg & 1)
				mux_close(mux, WH_EMUX_CLOSED);
			break;
		}
	}
	drain(mux, &o, SIZE_MAX);
	mux_free(mux);
	return 0;
}
