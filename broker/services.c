/* The broker's built-in services, served to streams that peers open: echo and discard. */
#include "config.h"

#include <string.h>

#include "services.h"

#define SERVICE_CHUNK 65536

/* Moves what fits from the receive side to the send side; closes after EOF. Bytes are never
 * held outside the stream's own buffers, so a slow peer only stops the window. */
static void echo_handler(struct mux_stream *stream, enum mux_stream_event event, void *user)
{
	uint8_t buffer[SERVICE_CHUNK];
	(void)user;
	if (event == MUX_STREAM_ERROR) {
		mux_stream_release(stream);
		return;
	}
	for (;;) {
		size_t room = mux_stream_write_room(stream);
		if (room == 0)
			return; /* WRITABLE will call again */
		long n = mux_stream_read(stream, buffer, room < sizeof buffer ? room : sizeof buffer);
		if (n == WH_EWOULDBLOCK)
			return;
		if (n <= 0) { /* EOF, or an error: we are done either way */
			mux_stream_release(stream);
			return;
		}
		mux_stream_write(stream, buffer, (size_t)n);
	}
}

static void discard_handler(struct mux_stream *stream, enum mux_stream_event event, void *user)
{
	uint8_t buffer[SERVICE_CHUNK];
	(void)user;
	(void)event;
	for (;;) {
		long n = mux_stream_read(stream, buffer, sizeof buffer);
		if (n == WH_EWOULDBLOCK)
			return;
		if (n <= 0) {
			mux_stream_release(stream);
			return;
		}
	}
}

bool services_exists(const char *name)
{
	return strcmp(name, "echo") == 0 || strcmp(name, "discard") == 0;
}

int services_attach(struct mux_stream *stream, const char *service)
{
	if (strcmp(service, "echo") == 0)
		mux_stream_set_handler(stream, echo_handler, NULL);
	else if (strcmp(service, "discard") == 0)
		mux_stream_set_handler(stream, discard_handler, NULL);
	else
		return WH_ENO_SERVICE;
	return WH_OK;
}
