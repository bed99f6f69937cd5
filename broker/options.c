/* The broker's settings: one table for the command line, --help, the config file,
 * --check-config, the man page's option list, and the control tool's view of them. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <ini.h>
#include <math.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h" /* dialin_from_matches */
#include "options.h"
#include "services.h"
#include "tls.h"

#include "wh_paths.h"

#define MIB (1024.0 * 1024.0)
#define GIB (1024.0 * MIB)

_Static_assert(BROKER_PEERS_MAX == 32, "--peer's help and wormhole-broker.conf(5) say at most 32 peers");

/* Rows in enum option_id order (checked at start-up by options_load). */
const struct option_info option_table[OPTION_COUNT_ALL] = {
	{ OPT_CONFIG, "config", 'c', OPTION_PATH, 0, 0, false, false,
	  /* the man page's words; --help prints the path this build reads */
	  "SYSCONFDIR/wormhole/broker.conf, where SYSCONFDIR is configure's --sysconfdir: /etc for "
	  "packages, /usr/local/etc for a plain ./configure; --help prints this build's", NULL,
	  APPLY_RESTART, SCOPE_COMMAND_LINE,
	  "the config file; a missing default file means built-in defaults, a missing named file is an error" },
	{ OPT_CHECK_CONFIG, "check-config", 0, OPTION_FLAG, 0, 0, false, false, NULL, NULL,
	  APPLY_RESTART, SCOPE_COMMAND_LINE,
	  "check the config file and the command line, print every error, and exit (0: all good)" },
	{ OPT_HELP, "help", 'h', OPTION_FLAG, 0, 0, false, false, NULL, NULL, APPLY_RESTART,
	  SCOPE_COMMAND_LINE, "this text" },
	{ OPT_VERSION, "version", 'V', OPTION_FLAG, 0, 0, false, false, NULL, NULL, APPLY_RESTART,
	  SCOPE_COMMAND_LINE, "print the version and exit" },
	{ OPT_LISTEN, "listen", 'l', OPTION_ADDRESS, 0, 65535, false, true, "127.0.0.1:7420", NULL,
	  APPLY_RESTART, SCOPE_BROKER,
	  "accept peer brokers at HOST:PORT ('none': no listener; port 0 picks one)" },
	{ OPT_PORT_FILE, "port-file", 0, OPTION_PATH, 0, 0, false, false, "none", NULL, APPLY_RESTART,
	  SCOPE_BROKER, "write the listening port here once bound (for scripts and tests)" },
	{ OPT_SOCKET, "socket", 's', OPTION_PATH, 0, 0, false, true, "/run/wormhole/broker.sock", NULL,
	  APPLY_RESTART, SCOPE_BROKER, "apps attach at this Unix socket ('none': no apps)" },
	{ OPT_SOCKET_MODE, "socket-mode", 0, OPTION_MODE, 0, 0777, false, false, "0660", NULL,
	  APPLY_RESTART, SCOPE_BROKER, "permission bits of the app socket, octal: who may attach" },
	{ OPT_SOCKET_OWNER, "socket-owner", 0, OPTION_OWNER, 0, 0, false, false, "the broker's",
	  NULL, APPLY_RESTART, SCOPE_BROKER, "owner and group of the app socket, USER[:GROUP] or :GROUP" },
	{ OPT_RING_SIZE, "ring-size", 0, OPTION_BYTES, 4096, 64 * MIB, true, false, "1048576",
	  "bytes", APPLY_NEW_STREAMS, SCOPE_BROKER,
	  "shared-memory ring per app stream direction; also caps its receive window" },
	{ OPT_APP_MAX_STREAMS, "app-max-streams", 0, OPTION_COUNT, 1, 1 << 20, false, false, "16384",
	  "streams", APPLY_NEW_STREAMS, SCOPE_BROKER, "streams one app may hold" },
	{ OPT_APP_MAX_RING_MEMORY, "app-max-ring-memory", 0, OPTION_BYTES, 8192, 1e15, false, false,
	  "app-max-streams segments", "bytes", APPLY_NEW_STREAMS, SCOPE_BROKER,
	  "segment memory one app's streams may hold" },
	{ OPT_APP_ACCEPT_BACKLOG, "app-accept-backlog", 0, OPTION_COUNT, 1, 1 << 20, false, false,
	  "256", "streams", APPLY_NEW_STREAMS, SCOPE_BROKER,
	  "streams handed to a listening app and not accepted yet; more get ERROR 503" },
	{ OPT_APP_MAX_LISTENERS, "app-max-listeners", 0, OPTION_COUNT, 1, 1 << 20, false, false,
	  "64", "services", APPLY_LIVE, SCOPE_BROKER, "service names one app may listen on" },
	{ OPT_DEFAULT_SERVICE, "default-service", 0, OPTION_STRING, 1, 255, false, false, "echo",
	  NULL, APPLY_NEW_STREAMS, SCOPE_BROKER, "the service for streams whose HANDSHAKE names none" },
	{ OPT_BUDGET, "budget", 0, OPTION_BYTES, 1024, 1e15, false, false, "8 GiB", "bytes",
	  APPLY_NEW_STREAMS, SCOPE_BROKER,
	  "bytes the broker may hold for streams and peers: receive windows, built-in services' send "
	  "buffers, control queues" },
	{ OPT_MAX_FDS, "max-fds", 0, OPTION_COUNT, 128, 1 << 24, false, false, "as high as allowed",
	  "descriptors", APPLY_RESTART, SCOPE_BROKER,
	  "the descriptor limit; the last 64 are kept for apps attaching" },
	{ OPT_DRAIN_TIMEOUT, "drain-timeout", 0, OPTION_SECONDS, 0, 86400, false, false, "10",
	  "seconds", APPLY_LIVE, SCOPE_BROKER,
	  "on SIGTERM, how long open streams may take to finish before they are ended" },
	{ OPT_LOG_LEVEL, "log-level", 'L', OPTION_LEVEL, 0, 0, false, false, "warn", NULL, APPLY_LIVE,
	  SCOPE_BROKER, "error, warn, info or debug; one line per event on stderr" },
	{ OPT_TLS_CERT, "tls-cert", 0, OPTION_PATH, 0, 0, false, true, "none", NULL,
	  APPLY_NEW_CONNECTIONS, SCOPE_BROKER,
	  "this broker's certificate chain (PEM) for TLS with peers; re-read on reload" },
	{ OPT_TLS_KEY, "tls-key", 0, OPTION_PATH, 0, 0, false, true, "none", NULL,
	  APPLY_NEW_CONNECTIONS, SCOPE_BROKER, "the private key of tls-cert (PEM); re-read on reload" },
	{ OPT_TLS_CA, "tls-ca", 0, OPTION_PATH, 0, 0, false, true, "none", NULL,
	  APPLY_NEW_CONNECTIONS, SCOPE_BROKER,
	  "the CA peers' certificates must chain to: a PEM file or a hashed directory; with tls-cert "
	  "and tls-key, every peer link is TLS 1.3 with both sides authenticated" },
	{ OPT_LISTEN_PLAINTEXT, "listen-plaintext", 0, OPTION_BOOL, 0, 0, false, false, "no", NULL,
	  APPLY_RESTART, SCOPE_BROKER,
	  "accept peers without TLS; needed for a listener off loopback without TLS (warned at start)" },
	{ OPT_HANDSHAKE_TIMEOUT, "handshake-timeout", 0, OPTION_SECONDS, 0.1, 3600, false, false,
	  "10", "seconds", APPLY_NEW_CONNECTIONS, SCOPE_BROKER,
	  "a peer connection whose TLS handshake is not done by then is closed, and an accepted one "
	  "that has not sent a whole frame by then (slowloris)" },
	{ OPT_MAX_PEER_CONNECTIONS, "max-peer-connections", 0, OPTION_COUNT, 1, 1 << 20, false, false,
	  "1024", "connections", APPLY_LIVE, SCOPE_BROKER,
	  "peer connections accepted and open at once; more are closed at accept" },
	{ OPT_MAX_CONNECTIONS_PER_ADDRESS, "max-connections-per-address", 0, OPTION_COUNT, 1, 1 << 20,
	  false, false, "64", "connections", APPLY_LIVE, SCOPE_BROKER,
	  "accepted peer connections open at once from one source address" },
	{ OPT_MAX_UNAUTHENTICATED, "max-unauthenticated", 0, OPTION_COUNT, 1, 1 << 20, false, false,
	  "256", "connections", APPLY_LIVE, SCOPE_BROKER,
	  "accepted TLS connections not authenticated yet, open at once; a newer one takes the slot "
	  "of the oldest (of the lowest priority), and they never crowd out authenticated peers" },
	{ OPT_HANDSHAKE_RATE, "handshake-rate", 0, OPTION_COUNT, 0, 1e6, false, false, "100",
	  "handshakes/s", APPLY_LIVE, SCOPE_BROKER,
	  "TLS handshakes started for connections not authenticated yet, a burst of two seconds' "
	  "worth; one that authenticates gives its turn back; the others wait, peers that "
	  "authenticated from their address lately first (they may borrow a turn); 0: no bound" },
	{ OPT_PEER_IDLE_TIMEOUT, "peer-idle-timeout", 0, OPTION_SECONDS, 0, 1e9, false, false, "600",
	  "seconds", APPLY_NEW_CONNECTIONS, SCOPE_BROKER,
	  "an accepted peer connection that carries no stream this long is closed (ERROR 505); 0: never" },
	{ OPT_CONNECTION_BUDGET, "connection-budget", 0, OPTION_COUNT, 1, 100, false, false, "25",
	  "percent", APPLY_NEW_CONNECTIONS, SCOPE_BROKER,
	  "the share of the budget one peer connection may hold" },
	{ OPT_PEER_BUDGET, "peer-budget", 0, OPTION_COUNT, 1, 100, false, false, "50", "percent",
	  APPLY_NEW_CONNECTIONS, SCOPE_BROKER,
	  "the share of the budget all accepted connections of one peer may hold together (one "
	  "certificate identity over TLS, one source address over plaintext)" },
	{ OPT_APP_PEER_BUDGET, "app-peer-budget", 0, OPTION_COUNT, 1, 100, false, false, "25", "percent",
	  APPLY_LIVE, SCOPE_BROKER,
	  "the part of a peer's share (peer-budget) the streams one local app opens to that peer may "
	  "hold, so that one app cannot take what the others need; 100: as much as the peer's share" },
	{ OPT_LOCAL_RESERVE, "local-reserve", 0, OPTION_COUNT, 0, 90, false, false, "10", "percent",
	  APPLY_LIVE, SCOPE_BROKER,
	  "the share of the budget kept for streams local apps open: streams peers open never take it" },
	{ OPT_ATTACH_USERS, "attach-users", 0, OPTION_STRING, 1, 1023, false, false, "any", NULL,
	  APPLY_LIVE, SCOPE_BROKER,
	  "users (names or uids, comma-separated) whose apps may attach, beyond the socket's mode; "
	  "'any': every user the mode lets in. root and the broker's own user always may" },
	{ OPT_ATTACH_GROUPS, "attach-groups", 0, OPTION_STRING, 1, 1023, false, false, "any", NULL,
	  APPLY_LIVE, SCOPE_BROKER,
	  "groups (names or gids, comma-separated) whose members' apps may attach (primary or "
	  "supplementary group); with attach-users, either admits" },
	{ OPT_CONTROL_SOCKET, "control-socket", 0, OPTION_PATH, 0, 0, false, true,
	  "beside the app socket: broker.sock -> control.sock, NAME.sock -> NAME.control.sock", NULL,
	  APPLY_RESTART, SCOPE_BROKER,
	  "wormhole-ctl talks to the broker at this Unix socket ('none': no control socket; "
	  "without an app socket the default is none)" },
	{ OPT_CONTROL_SOCKET_MODE, "control-socket-mode", 0, OPTION_MODE, 0, 0777, false, false,
	  "0600", NULL, APPLY_RESTART, SCOPE_BROKER,
	  "permission bits of the control socket, octal: who may inspect and steer the broker" },
	{ OPT_CONTROL_SOCKET_OWNER, "control-socket-owner", 0, OPTION_OWNER, 0, 0, false, false,
	  "the broker's", NULL, APPLY_RESTART, SCOPE_BROKER,
	  "owner and group of the control socket, USER[:GROUP] or :GROUP (e.g. :wormhole with "
	  "control-socket-mode 0660)" },
	{ OPT_METRICS_LISTEN, "metrics-listen", 0, OPTION_ADDRESS, 0, 65535, false, true, "none", NULL,
	  APPLY_RESTART, SCOPE_BROKER,
	  "serve GET /metrics (what wormhole-ctl metrics prints) at HOST:PORT for a Prometheus "
	  "scraper; keep it on loopback: the metrics name peers, addresses and apps" },
	{ OPT_PEER, "peer", 'p', OPTION_PEER, 0, 0, false, false, "none", NULL, APPLY_LIVE,
	  SCOPE_COMMAND_LINE,
	  "keep a pool of connections to peer NAME at HOST:PORT (repeatable; the file has [peer NAME]; "
	  "at most 32 peers in all)" },
	{ OPT_ADDRESS, "address", 0, OPTION_ADDRESS, 1, 65535, false, false, NULL, NULL,
	  APPLY_NEW_CONNECTIONS, SCOPE_PEER, "[peer NAME] only: where the peer listens, HOST:PORT; "
	  "without it the peer dials us (a broker behind NAT): opens to it go over the connections "
	  "it made, told apart by their certificate identity (tls-name) over TLS, by from over "
	  "plaintext, and fail at once while it has none" },
	{ OPT_PEER_FROM, "from", 0, OPTION_STRING, 1, 63, false, false, NULL, NULL,
	  APPLY_NEW_CONNECTIONS, SCOPE_PEER,
	  "[peer NAME] without an address only: the IP address its connections come from. Over "
	  "plaintext it is how they are told apart (required there; two such peers may not share "
	  "one); over TLS the certificate decides and from, if given, must match as well" },
	{ OPT_POOL_MIN, "pool-min", 0, OPTION_COUNT, 0, 1024, false, false, "1", "connections",
	  APPLY_NEW_CONNECTIONS, SCOPE_PEER, "connections kept open to a peer (MinSize)" },
	{ OPT_POOL_MAX, "pool-max", 0, OPTION_COUNT, 1, 1024, false, false, "4", "connections",
	  APPLY_NEW_CONNECTIONS, SCOPE_PEER, "most connections to a peer (MaxSize)" },
	{ OPT_IDLE_TIME, "idle-time", 0, OPTION_SECONDS, 0, 1e9, false, false, "300", "seconds",
	  APPLY_NEW_CONNECTIONS, SCOPE_PEER,
	  "a pooled connection above pool-min with no stream this long is closed (MaxIdleTime)" },
	{ OPT_HEALTH_CHECK, "health-check", 0, OPTION_SECONDS, 0, 86400, false, false, "30",
	  "seconds", APPLY_NEW_CONNECTIONS, SCOPE_PEER,
	  "a PING round trip on every pooled connection this often, 0: never (HealthCheckInterval)" },
	{ OPT_CONNECT_TIMEOUT, "connect-timeout", 0, OPTION_SECONDS, 0.001, 3600, false, false,
	  "10", "seconds", APPLY_NEW_CONNECTIONS, SCOPE_PEER,
	  "one dial, and one open waiting for a connection (ConnectTimeout)" },
	{ OPT_BUSY_STREAMS, "busy-streams", 0, OPTION_COUNT, 1, 1 << 30, false, false, "128",
	  "streams", APPLY_NEW_CONNECTIONS, SCOPE_PEER,
	  "a connection with this many streams is busy: the pool dials another" },
	{ OPT_BACKOFF_INITIAL, "backoff-initial", 0, OPTION_SECONDS, 0.001, 3600, false, false, "0.1",
	  "seconds", APPLY_NEW_CONNECTIONS, SCOPE_PEER, "first retry delay after a failed dial" },
	{ OPT_BACKOFF_MAX, "backoff-max", 0, OPTION_SECONDS, 0.001, 86400, false, false, "30",
	  "seconds", APPLY_NEW_CONNECTIONS, SCOPE_PEER, "the retry delay doubles up to this (+-25 % jitter)" },
	{ OPT_ACCEPT_BACKLOG, "accept-backlog", 0, OPTION_COUNT, 1, 1 << 20, false, false, "256",
	  "streams", APPLY_NEW_CONNECTIONS, SCOPE_PEER,
	  "streams waiting in a connection's accept queue (AcceptBacklog)" },
	{ OPT_KEEPALIVE, "keepalive", 0, OPTION_SECONDS, 0, 86400, false, false, "30", "seconds",
	  APPLY_NEW_CONNECTIONS, SCOPE_PEER, "PING interval, 0: off (KeepAliveInterval)" },
	{ OPT_KEEPALIVE_TIMEOUT, "keepalive-timeout", 0, OPTION_SECONDS, 0.001, 86400, false, false,
	  "10", "seconds", APPLY_NEW_CONNECTIONS, SCOPE_PEER,
	  "no PONG this long ends the connection, unless the peer sent 64 KiB or more meanwhile "
	  "(its PONG is behind them): then the wait starts again (KeepAliveTimeout)" },
	{ OPT_MAX_FRAME_SIZE, "max-frame-size", 0, OPTION_BYTES, 1024, 16 * MIB, false, false,
	  "32768", "bytes", APPLY_NEW_CONNECTIONS, SCOPE_PEER,
	  "DATA is split at this size and larger frames are refused; a reference peer takes 32768 (MaxFrameSize)" },
	{ OPT_FLOW_CONTROL, "flow-control", 0, OPTION_BOOL, 0, 0, false, false, "yes", NULL,
	  APPLY_NEW_CONNECTIONS, SCOPE_PEER, "enforce and grant stream windows (EnableFlowControl)" },
	{ OPT_WINDOW, "window", 0, OPTION_BYTES, 1024, 1 << 30, false, false, "262144", "bytes",
	  APPLY_NEW_CONNECTIONS, SCOPE_PEER,
	  "initial stream window; not negotiated, so it must match the peer's (WindowSize)" },
	{ OPT_MAX_WINDOW, "max-window", 0, OPTION_BYTES, 1024, 1 << 30, false, false, "16777216",
	  "bytes", APPLY_NEW_CONNECTIONS, SCOPE_PEER, "receive-window growth limit (MaxWindowSize)" },
	{ OPT_READ_BUFFER_SIZE, "read-buffer-size", 0, OPTION_BYTES, 0, 1 << 30, false, false,
	  "the window", "bytes", APPLY_NEW_CONNECTIONS, SCOPE_PEER,
	  "the seed's ReadBufferSize: accepted for compatibility; a stream's receive store is its window" },
	{ OPT_MAX_STREAMS, "max-streams", 0, OPTION_COUNT, 1, 1 << 30, false, false, "65536",
	  "streams", APPLY_NEW_CONNECTIONS, SCOPE_PEER, "live streams per connection" },
	{ OPT_SEND_BUFFER, "send-buffer", 0, OPTION_BYTES, 1024, 1 << 30, false, false, "262144",
	  "bytes", APPLY_NEW_CONNECTIONS, SCOPE_PEER,
	  "bytes a built-in service's stream may queue to send" },
	{ OPT_RELEASE_LINGER, "release-linger", 0, OPTION_SECONDS, 0, 1e9, false, false, "60",
	  "seconds", APPLY_NEW_CONNECTIONS, SCOPE_PEER,
	  "a stream its app closed waits this long for the peer's CLOSE, then ERROR 499; a stream "
	  "its app half-closed and holds ends (end of stream, ERROR 499 to the peer) once the peer "
	  "has sent nothing on it this long (a reference peer never sends its CLOSE after ours); "
	  "0: forever" },
	{ OPT_PLAINTEXT, "plaintext", 0, OPTION_BOOL, 0, 0, false, false, "no", NULL,
	  APPLY_NEW_CONNECTIONS, SCOPE_PEER,
	  "dial the peer without TLS (a reference peer without it); needed off loopback without TLS" },
	{ OPT_TLS_NAME, "tls-name", 0, OPTION_STRING, 1, 255, false, false, "the peer's name", NULL,
	  APPLY_NEW_CONNECTIONS, SCOPE_PEER,
	  "the name (SAN DNS) the peer's certificate must carry" },
	{ OPT_CONTROL_QUEUE, "control-queue", 0, OPTION_BYTES, 4096, 1 << 30, false, false, "4194304",
	  "bytes", APPLY_NEW_CONNECTIONS, SCOPE_PEER,
	  "control frames (PONGs, refusals, credit) queued for a peer that does not read them; "
	  "beyond it, or beyond the budget, the connection is closed" },
	{ OPT_RESET_RATE, "reset-rate", 0, OPTION_COUNT, 0, 1e7, false, false, "200", "streams/s",
	  APPLY_NEW_CONNECTIONS, SCOPE_PEER,
	  "streams a second a peer may start for nothing (rapid reset and its kin): opened and "
	  "ended by it before any DATA, reset by it less than a second after it opened them "
	  "whatever they carried, refused (no such service, no budget, not allowed), or sent "
	  "DATA or CLOSE for but never opened; a burst of five seconds' worth; beyond it the "
	  "connection is closed with a goodbye. The broker counts its own apps' streams the same "
	  "way and fails their opens (WH_ELIMIT) before a peer with the same rate would close the "
	  "connection; 0: no bound" },
	{ OPT_PING_RATE, "ping-rate", 0, OPTION_COUNT, 0, 1e7, false, false, "50", "PINGs/s",
	  APPLY_NEW_CONNECTIONS, SCOPE_PEER,
	  "PINGs a second a peer may send (a keep-alive needs one every few seconds), with a burst "
	  "of five seconds' worth; beyond it the connection is closed with a goodbye (ping "
	  "flood); 0: no bound" },
	{ OPT_NOOP_RATE, "noop-rate", 0, OPTION_COUNT, 0, 1e9, false, false, "10000", "frames/s",
	  APPLY_NEW_CONNECTIONS, SCOPE_PEER,
	  "frames a second a peer may send that do nothing (WINDOW_UPDATE or ERROR for a stream "
	  "that is not open, CLOSE for one that ended, DATA for one that is not open beyond what "
	  "the windows of streams the broker reset may still bring, empty DATA, WINDOW_UPDATEs of 0 "
	  "or beyond one per DATA frame the broker sent, ERROR on stream 0 other than going-away, "
	  "PONGs nobody asked for; a peer that races a close sends a few per stream), "
	  "with a burst of five seconds' worth; beyond it the connection is closed with a goodbye; "
	  "0: no bound" },
	{ OPT_STORE_RATE, "store-rate", 0, OPTION_BYTES, 0, 1e12, false, false, "8388608", "bytes/s",
	  APPLY_NEW_CONNECTIONS, SCOPE_PEER,
	  "bytes a second a peer may add to what the broker holds for it in its own stores (echo's "
	  "answers it does not read), with a burst of two seconds' worth; beyond it the broker "
	  "stops reading that connection until the rate allows (a peer that fills 1000 echo "
	  "windows cannot take the broker's time from the others); bytes that pass through cost "
	  "nothing; 0: no bound" },
	{ OPT_SERVICE_PEERS, "peers", 0, OPTION_STRING, 1, 1023, false, false,
	  "authenticated peers; over plaintext, those from loopback", NULL, APPLY_NEW_STREAMS,
	  SCOPE_SERVICE,
	  "[service NAME] only: the peer identities (certificate names, comma-separated) that may "
	  "open the service; '*': every peer, plaintext ones too; 'none': no peer" },
	{ OPT_SERVICE_LOCAL, "local", 0, OPTION_BOOL, 0, 0, false, false, "yes", NULL,
	  APPLY_NEW_STREAMS, SCOPE_SERVICE, "[service NAME] only: local apps may open the service" },
	{ OPT_SERVICE_OWNER, "owner", 0, OPTION_OWNER, 0, 0, false, false,
	  "any app that may attach; for the default service, no app", NULL, APPLY_NEW_STREAMS,
	  SCOPE_SERVICE,
	  "[service NAME] only: the user and/or group whose apps may listen on the service, "
	  "USER[:GROUP] or :GROUP" },
	{ OPT_SERVICE_TARGET, "target", 0, OPTION_STRING, 1, 1023, false, false, "none", NULL,
	  APPLY_NEW_STREAMS, SCOPE_SERVICE,
	  "[service NAME] only: HOST:PORT[, HOST:PORT...]: streams peers open for the service become "
	  "TCP connections to the first target that answers, tried in order (at most 8; "
	  "docs/FORWARDING.md); the service then takes precedence over apps listening on the name" },
	{ OPT_SERVICE_CONNECT_TIMEOUT, "connect-timeout", 0, OPTION_SECONDS, 0.001, 3600, false, false,
	  "5", "seconds", APPLY_NEW_STREAMS, SCOPE_SERVICE,
	  "[service NAME] only: how long one connect to a target may take before the next is tried; "
	  "when none answers, the opener gets ERROR 504 (timed out) or 502 (refused, unreachable)" },
	{ OPT_SERVICE_BALANCE, "balance", 0, OPTION_STRING, 1, 63, false, false, "first", NULL,
	  APPLY_NEW_STREAMS, SCOPE_SERVICE,
	  "[service NAME] only: which target a new stream tries first: first (the others are "
	  "fail-over), round-robin (each in turn), least-connections (the fewest connections and "
	  "connects under way); when it fails, the others follow in order" },
	{ OPT_SERVICE_HEALTH_CHECK, "health-check", 0, OPTION_SECONDS, 0, 86400, false, false, "0",
	  "seconds", APPLY_LIVE, SCOPE_SERVICE,
	  "[service NAME] only: connect to each target this often (a TCP connect, bounded by "
	  "connect-timeout); a target down by its checks takes no new streams, and with every "
	  "target down a stream is refused at once (ERROR 502); 0: no checks" },
	{ OPT_SERVICE_FALL, "fall", 0, OPTION_COUNT, 1, 1000, false, false, "3", "checks", APPLY_LIVE,
	  SCOPE_SERVICE, "[service NAME] only: failed health checks in a row that take a target down" },
	{ OPT_SERVICE_RISE, "rise", 0, OPTION_COUNT, 1, 1000, false, false, "2", "checks", APPLY_LIVE,
	  SCOPE_SERVICE, "[service NAME] only: passed health checks in a row that bring a target back up" },
	{ OPT_SERVICE_IDLE_TIMEOUT, "idle-timeout", 0, OPTION_SECONDS, 0, 1e9, false, false, "0",
	  "seconds", APPLY_NEW_STREAMS, SCOPE_SERVICE,
	  "[service NAME] only: a target connection with no byte either way this long is reset "
	  "(ERROR 504 to the opener, RST to the target); 0: never" },
	{ OPT_SERVICE_BANDWIDTH, "bandwidth", 0, OPTION_BYTES, 0, 1e12, false, false, "0", "bytes/s",
	  APPLY_LIVE, SCOPE_SERVICE,
	  "[service NAME] only: bytes a second each way that all its target connections together may "
	  "carry (a token bucket; the windows slow the far side down); 0: no limit" },
	{ OPT_SERVICE_PROXY_PROTOCOL, "proxy-protocol", 0, OPTION_STRING, 1, 15, false, false, "none",
	  NULL, APPLY_NEW_STREAMS, SCOPE_SERVICE,
	  "[service NAME] only: none, v1 or v2: each target connection starts with a PROXY protocol "
	  "header naming the TCP client of the far broker's forward (v1 text, v2 binary; v2 also "
	  "carries the peer broker's certificate identity in TLV 0xE0); a stream without a client "
	  "(an app's, a reference peer's) gets PROXY UNKNOWN (v1) or a LOCAL header (v2)" },
	{ OPT_FORWARD_LISTEN, "listen", 0, OPTION_ADDRESS, 0, 65535, false, false, NULL, NULL,
	  APPLY_LIVE, SCOPE_FORWARD,
	  "[forward NAME] only: accept TCP connections at HOST:PORT (port 0 picks one, logged); "
	  "each becomes one stream to the forward's service. On reload a new address is bound "
	  "first (one that cannot be bound refuses the reload) and the old one's connections drain" },
	{ OPT_FORWARD_PEER, "peer", 0, OPTION_STRING, 1, 63, false, false, NULL, NULL,
	  APPLY_NEW_CONNECTIONS, SCOPE_FORWARD, "[forward NAME] only: the [peer] whose service the connections reach" },
	{ OPT_FORWARD_SERVICE, "service", 0, OPTION_STRING, 1, 255, false, false, NULL, NULL,
	  APPLY_NEW_CONNECTIONS, SCOPE_FORWARD,
	  "[forward NAME] only: the service opened on the peer for each connection" },
	{ OPT_FORWARD_MAX_CONNECTIONS, "max-connections", 0, OPTION_COUNT, 1, 1 << 20, false, false,
	  "1024", "connections", APPLY_NEW_CONNECTIONS, SCOPE_FORWARD,
	  "[forward NAME] only: connections carried at once; more are accepted and closed at once "
	  "(counted, logged at most once a second)" },
	{ OPT_FORWARD_IDLE_TIMEOUT, "idle-timeout", 0, OPTION_SECONDS, 0, 1e9, false, false, "0",
	  "seconds", APPLY_NEW_CONNECTIONS, SCOPE_FORWARD,
	  "[forward NAME] only: a connection with no byte either way this long is reset (RST to "
	  "the client, ERROR 504 to the far side); 0: never" },
	{ OPT_FORWARD_CONNECTION_RATE, "connection-rate", 0, OPTION_COUNT, 0, 1e7, false, false, "0",
	  "connections/s", APPLY_NEW_CONNECTIONS, SCOPE_FORWARD,
	  "[forward NAME] only: new connections a second one client address may open, with a burst "
	  "of one second's worth; more are accepted and closed at once (counted, logged at most "
	  "once a second); 0: no bound" },
	{ OPT_FORWARD_BANDWIDTH, "bandwidth", 0, OPTION_BYTES, 0, 1e12, false, false, "0", "bytes/s",
	  APPLY_LIVE, SCOPE_FORWARD,
	  "[forward NAME] only: bytes a second each way that all its connections together may carry "
	  "(a token bucket); 0: no limit" },
	{ OPT_FORWARD_CLIENT_RESET_RATE, "client-reset-rate", 0, OPTION_COUNT, 0, 1e7, false, false, "50",
	  "streams/s", APPLY_NEW_CONNECTIONS, SCOPE_FORWARD,
	  "[forward NAME] only: streams a second one client address may end early through the "
	  "forward's peer (closed or reset before it sent a byte, or reset within a second: what "
	  "the peer's reset-rate counts), with a burst of five seconds' worth, over every forward "
	  "to that peer; beyond it that address's new connections are accepted and closed at once "
	  "(counted, logged at most once a second) while the others are served; 0: no bound" },
};

/* Settings given only in a section of the file: a peer's address, a service's rules. */
static bool file_only(const struct option_info *info)
{
	return info->id == OPT_ADDRESS || info->id == OPT_PEER_FROM || info->scope == SCOPE_SERVICE || info->scope == SCOPE_FORWARD;
}

/* 1 for yes, true, on, 1; 0 for no, false, off, 0; -1 for anything else. */
static int parse_bool(const char *value)
{
	static const char *const yes[] = { "yes", "true", "on", "1" }, *const no[] = { "no", "false", "off", "0" };
	for (int i = 0; i < 4; i++) {
		if (strcmp(value, yes[i]) == 0)
			return 1;
		if (strcmp(value, no[i]) == 0)
			return 0;
	}
	return -1;
}

const char *options_default_config_path(void)
{
	return WH_SYSCONFDIR "/wormhole/broker.conf";
}

/* ---- problems ---------------------------------------------------------------------------- */

/* Where a value was given: a file line or the command line. */
struct origin {
	const char *file; /* NULL: the command line */
	int line;
	const char *spelling; /* the command line's: "--ring-size" or "-l" */
};

static void add_error(struct options *o, const struct origin *at, const struct option_info *info,
		      const char *value, const char *format, ...) __attribute__((format(printf, 5, 6)));

/* "--ring-size 1000: not a power of two (...)" or "FILE:LINE: ring-size: ..." */
static void add_error(struct options *o, const struct origin *at, const struct option_info *info,
		      const char *value, const char *format, ...)
{
	if (o->error_count == (int)(sizeof o->errors / sizeof o->errors[0]))
		return;
	char *line = o->errors[o->error_count++];
	size_t len = sizeof o->errors[0];
	int n;
	if (at && at->file)
		n = snprintf(line, len, "%s:%d: %s%s", at->file, at->line, info ? info->name : "", info ? ": " : "");
	else if (info && value)
		n = snprintf(line, len, "%s %s: ", at && at->spelling ? at->spelling : "", value);
	else
		n = snprintf(line, len, "%s%s", at && at->spelling ? at->spelling : "",
			     at && at->spelling ? ": " : "");
	if (n < 0 || (size_t)n >= len)
		return;
	va_list args;
	va_start(args, format);
	vsnprintf(line + n, len - (size_t)n, format, args);
	va_end(args);
}

static void add_warning(struct options *o, const char *format, ...) __attribute__((format(printf, 2, 3)));

static void add_warning(struct options *o, const char *format, ...)
{
	if (o->warning_count == (int)(sizeof o->warnings / sizeof o->warnings[0]))
		return;
	va_list args;
	va_start(args, format);
	vsnprintf(o->warnings[o->warning_count++], sizeof o->warnings[0], format, args);
	va_end(args);
}

/* ---- values ------------------------------------------------------------------------------ */

static bool parse_double(const char *text, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(text, &end);
	if (errno || end == text || *end || !isfinite(v))
		return false;
	*out = v;
	return true;
}

/* A whole number, with K/M/G (powers of 1024) for bytes. */
static bool parse_whole(const char *text, bool bytes, double *out)
{
	char *end;
	errno = 0;
	if (text[0] == '-' || text[0] == '+' || !text[0])
		return false;
	unsigned long long v = strtoull(text, &end, 10);
	if (errno || end == text)
		return false;
	double scale = 1;
	if (bytes && *end) {
		char suffix = *end++;
		scale = suffix == 'K' || suffix == 'k' ? 1024.0 : suffix == 'M' ? MIB : suffix == 'G' ? GIB : 0;
		if (scale == 0)
			return false;
		if (*end == 'i' && end[1] == 'B')
			end += 2;
		else if (*end == 'B')
			end++;
	}
	if (*end)
		return false;
	*out = (double)v * scale;
	return true;
}

/* "HOST:PORT" or "[V6]:PORT"; the port numeric and within [min, max]. */
static const char *parse_address(const char *text, double min, double max, char *host, size_t host_len,
				 char *port, size_t port_len)
{
	const char *colon = strrchr(text, ':');
	if (!colon || colon == text || !colon[1])
		return "wants HOST:PORT";
	size_t n = (size_t)(colon - text);
	if (text[0] == '[') {
		if (colon[-1] != ']' || n < 3)
			return "wants [ADDRESS]:PORT for IPv6";
		text++;
		n -= 2;
	}
	if (n >= host_len)
		return "host name too long";
	char *end;
	errno = 0;
	unsigned long p = strtoul(colon + 1, &end, 10);
	if (*end || errno || colon[1] == '-' || colon[1] == '+')
		return "the port is not a number";
	if (p < min || p > max)
		return min > 0 ? "the port is not within 1..65535" : "the port is not within 0..65535";
	memcpy(host, text, n);
	host[n] = '\0';
	snprintf(port, port_len, "%lu", p);
	return NULL;
}

/* "USER", "USER:GROUP" or ":GROUP", by name or number. */
static const char *parse_owner(const char *text, long *uid, long *gid)
{
	char user[256] = "", group[256] = "";
	const char *colon = strchr(text, ':');
	size_t n = colon ? (size_t)(colon - text) : strlen(text);
	if (n >= sizeof user || (colon && strlen(colon + 1) >= sizeof group))
		return "name too long";
	memcpy(user, text, n);
	if (colon)
		snprintf(group, sizeof group, "%s", colon + 1);
	if (!user[0] && !group[0])
		return "wants USER[:GROUP] or :GROUP";
	*uid = *gid = -1;
	char *end;
	if (user[0]) {
		long v = strtol(user, &end, 10);
		const struct passwd *pw = *end ? getpwnam(user) : NULL;
		if (*end && !pw)
			return "no such user";
		*uid = pw ? (long)pw->pw_uid : v;
	}
	if (group[0]) {
		long v = strtol(group, &end, 10);
		const struct group *gr = *end ? getgrnam(group) : NULL;
		if (*end && !gr)
			return "no such group";
		*gid = gr ? (long)gr->gr_gid : v;
	}
	return *uid < -1 || *gid < -1 ? "a negative id" : NULL;
}

/* "any", or a comma-separated list of user (or group) names or numbers. */
static const char *parse_id_list(const char *text, bool groups, struct attach_rules *rules)
{
	uint32_t *ids = groups ? rules->groups : rules->users;
	unsigned *count = groups ? &rules->group_count : &rules->user_count;
	bool *set = groups ? &rules->groups_set : &rules->users_set;
	*count = 0;
	*set = false;
	if (strcmp(text, "any") == 0)
		return NULL;
	*set = true;
	const char *p = text;
	while (*p) {
		size_t n = strcspn(p, ",");
		char name[256];
		while (n && *p == ' ') {
			p++;
			n--;
		}
		if (n == 0 || n >= sizeof name)
			return n ? "name too long" : "an empty name in the list";
		memcpy(name, p, n);
		name[n] = '\0';
		while (n && name[n - 1] == ' ')
			name[--n] = '\0';
		if (*count >= ATTACH_IDS_MAX)
			return "more than 32 names";
		char *end;
		errno = 0;
		unsigned long v = strtoul(name, &end, 10);
		if (*end || errno || name[0] == '-') {
			const struct passwd *pw = groups ? NULL : getpwnam(name);
			const struct group *gr = groups ? getgrnam(name) : NULL;
			if (!pw && !gr)
				return groups ? "no such group" : "no such user";
			v = pw ? pw->pw_uid : gr->gr_gid;
		} else if (v > UINT32_MAX - 1) {
			return "id out of range";
		}
		ids[(*count)++] = (uint32_t)v;
		p += strcspn(p, ",");
		if (*p == ',')
			p++;
	}
	return *count ? NULL : "an empty list (use 'any')";
}

static void format_id_list(const struct attach_rules *rules, bool groups, char *out, size_t len)
{
	const uint32_t *ids = groups ? rules->groups : rules->users;
	unsigned count = groups ? rules->group_count : rules->user_count;
	if (!(groups ? rules->groups_set : rules->users_set)) {
		snprintf(out, len, "any");
		return;
	}
	size_t at = 0;
	out[0] = '\0';
	for (unsigned i = 0; i < count && at < len; i++) {
		int n = snprintf(out + at, len - at, "%s%u", i ? "," : "", ids[i]);
		if (n < 0)
			break;
		at += (size_t)n;
	}
}

static bool peer_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n >= sizeof ((struct broker_peer *)0)->name)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '-' || ch == '_' || ch == '.'))
			return false;
	}
	return true;
}

/* The range of a row, for messages: "(4096..67108864)". */
static void range_text(const struct option_info *info, char *out, size_t len)
{
	snprintf(out, len, "(%.15g..%.15g)", info->min, info->max);
}

/*
 * Parses `value` for row `info` and stores it: in the broker-wide settings, or in `pool` for a
 * per-peer row (NULL: the broker-wide defaults of every peer). Errors are added with `at`.
 * Returns true if the value was taken.
 */
static bool set_value(struct options *o, const struct option_info *info, const char *value,
		      const struct origin *at, struct pool_config *pool)
{
	struct broker_config *c = &o->config;
	struct pool_config *p = pool ? pool : &c->pool;
	struct mux_config *m = &p->mux;
	double number = 0;
	char range[64];
	range_text(info, range, sizeof range);
	switch (info->type) {
	case OPTION_COUNT:
	case OPTION_BYTES:
		if (!parse_whole(value, info->type == OPTION_BYTES, &number)) {
			add_error(o, at, info, value, "not a whole number%s",
				  info->type == OPTION_BYTES ? " of bytes (K, M, G: powers of 1024)" : "");
			return false;
		}
		goto check_range;
	case OPTION_SECONDS:
		if (!parse_double(value, &number)) {
			add_error(o, at, info, value, "not a number of seconds");
			return false;
		}
	check_range:
		if (number < info->min || number > info->max) {
			add_error(o, at, info, value, "%s %s", number < info->min ? "below the minimum" : "above the maximum",
				  range);
			return false;
		}
		if (info->power_of_two && ((uint64_t)number & ((uint64_t)number - 1))) {
			add_error(o, at, info, value, "not a power of two %s", range);
			return false;
		}
		break;
	default:
		break;
	}
	switch (info->id) {
	case OPT_METRICS_LISTEN: {
		struct control_config *k = &c->control;
		if (strcmp(value, "none") == 0) {
			k->metrics_host[0] = k->metrics_port[0] = '\0';
			break;
		}
		const char *why = parse_address(value, 0, 65535, k->metrics_host, sizeof k->metrics_host,
						k->metrics_port, sizeof k->metrics_port);
		if (why) {
			add_error(o, at, info, value, "%s", why);
			return false;
		}
		break;
	}
	case OPT_LISTEN:
		if (strcmp(value, "none") == 0) {
			c->listen_host[0] = c->listen_port[0] = '\0';
			break;
		} else {
			const char *why = parse_address(value, 0, 65535, c->listen_host, sizeof c->listen_host,
							c->listen_port, sizeof c->listen_port);
			if (why) {
				add_error(o, at, info, value, "%s", why);
				return false;
			}
		}
		break;
	case OPT_PORT_FILE:
	case OPT_CONTROL_SOCKET:
	case OPT_SOCKET: {
		char *dest = info->id == OPT_SOCKET ? c->apps.socket_path
			   : info->id == OPT_CONTROL_SOCKET ? c->control.socket_path : c->port_file;
		size_t cap = info->id == OPT_SOCKET ? sizeof c->apps.socket_path
			   : info->id == OPT_CONTROL_SOCKET ? sizeof c->control.socket_path : sizeof c->port_file;
		if (info->id == OPT_CONTROL_SOCKET)
			c->control.socket_path_set = true;
		if (info->id != OPT_PORT_FILE && strcmp(value, "none") == 0) {
			dest[0] = '\0';
			break;
		}
		if (!value[0] || strlen(value) >= cap) {
			add_error(o, at, info, value, value[0] ? "path too long (at most %zu bytes)" : "empty path%.0zu",
				  cap - 1);
			return false;
		}
		snprintf(dest, cap, "%s", value);
		break;
	}
	case OPT_CONTROL_SOCKET_MODE:
	case OPT_SOCKET_MODE: {
		char *end;
		unsigned long mode = strtoul(value, &end, 8);
		if (*end || end == value || mode > 0777) {
			add_error(o, at, info, value, "not permission bits in octal (0..0777)");
			return false;
		}
		*(info->id == OPT_SOCKET_MODE ? &c->apps.socket_mode : &c->control.socket_mode) = (unsigned)mode;
		break;
	}
	case OPT_CONTROL_SOCKET_OWNER:
	case OPT_SOCKET_OWNER: {
		bool app = info->id == OPT_SOCKET_OWNER;
		const char *why = parse_owner(value, app ? &c->apps.socket_uid : &c->control.socket_uid,
					      app ? &c->apps.socket_gid : &c->control.socket_gid);
		if (why) {
			add_error(o, at, info, value, "%s", why);
			return false;
		}
		break;
	}
	case OPT_RING_SIZE: c->apps.ring_capacity = (uint32_t)number; break;
	case OPT_APP_MAX_STREAMS: c->apps.max_streams = (uint32_t)number; break;
	case OPT_APP_MAX_RING_MEMORY: c->apps.max_ring_memory = (uint64_t)number; break;
	case OPT_APP_ACCEPT_BACKLOG: c->apps.accept_backlog = (uint32_t)number; break;
	case OPT_APP_MAX_LISTENERS: c->apps.max_listeners = (uint32_t)number; break;
	case OPT_DEFAULT_SERVICE:
		if (!value[0] || strlen(value) > 255) {
			add_error(o, at, info, value, "a service name is 1 to 255 bytes");
			return false;
		}
		snprintf(c->default_service, sizeof c->default_service, "%s", value);
		break;
	case OPT_BUDGET: c->memory_budget = (uint64_t)number; break;
	case OPT_MAX_FDS: c->max_fds = (uint64_t)number; break;
	case OPT_DRAIN_TIMEOUT: c->drain_timeout = number; break;
	case OPT_LOG_LEVEL: {
		int level = log_level_parse(value);
		if (level < 0) {
			add_error(o, at, info, value, "not a level (error, warn, info, debug)");
			return false;
		}
		c->log_level = (enum log_level)level;
		break;
	}
	case OPT_POOL_MIN: p->min_size = (unsigned)number; break;
	case OPT_POOL_MAX: p->max_size = (unsigned)number; break;
	case OPT_IDLE_TIME: p->max_idle_time = number; break;
	case OPT_HEALTH_CHECK: p->health_check_interval = number; break;
	case OPT_CONNECT_TIMEOUT: p->connect_timeout = number; break;
	case OPT_BUSY_STREAMS: p->busy_streams = (unsigned)number; break;
	case OPT_BACKOFF_INITIAL: p->backoff_initial = number; break;
	case OPT_BACKOFF_MAX: p->backoff_max = number; break;
	case OPT_ACCEPT_BACKLOG: m->accept_backlog = (uint32_t)number; break;
	case OPT_KEEPALIVE: m->keepalive_interval = number; break;
	case OPT_KEEPALIVE_TIMEOUT: m->keepalive_timeout = number; break;
	case OPT_MAX_FRAME_SIZE: m->max_frame_size = (uint32_t)number; break;
	case OPT_WINDOW: m->window_size = (uint32_t)number; break;
	case OPT_MAX_WINDOW: m->max_window_size = (uint32_t)number; break;
	case OPT_MAX_STREAMS: m->max_streams = (uint32_t)number; break;
	case OPT_SEND_BUFFER: m->send_buffer = (uint32_t)number; break;
	case OPT_RELEASE_LINGER: m->release_linger = number; break;
	case OPT_CONTROL_QUEUE: m->control_queue_limit = (uint32_t)number; break;
	case OPT_RESET_RATE: m->reset_rate = number; break;
	case OPT_PING_RATE: m->ping_rate = number; break;
	case OPT_NOOP_RATE: m->noop_rate = number; break;
	case OPT_STORE_RATE: m->store_rate = number; break;
	case OPT_READ_BUFFER_SIZE:
		if (!pool || pool == &c->pool) /* say it once */
			add_warning(o, "read-buffer-size %s: ignored: a stream's receive store is its window "
				    "(window, max-window)", value);
		break;
	case OPT_FLOW_CONTROL:
	case OPT_PLAINTEXT:
	case OPT_LISTEN_PLAINTEXT: {
		int v = parse_bool(value);
		if (v < 0) {
			add_error(o, at, info, value, "not yes or no");
			return false;
		}
		if (info->id == OPT_FLOW_CONTROL)
			m->enable_flow_control = v;
		else if (info->id == OPT_PLAINTEXT)
			p->plaintext = v;
		else
			c->listen_plaintext = v;
		break;
	}
	case OPT_TLS_CERT:
	case OPT_TLS_KEY:
	case OPT_TLS_CA: {
		char *dest = info->id == OPT_TLS_CERT ? c->tls.cert : info->id == OPT_TLS_KEY ? c->tls.key : c->tls.ca;
		if (strcmp(value, "none") == 0) {
			dest[0] = '\0';
			break;
		}
		if (!value[0] || strlen(value) >= sizeof c->tls.cert) {
			add_error(o, at, info, value, value[0] ? "path too long (at most %zu bytes)" : "empty path%.0zu",
				  sizeof c->tls.cert - 1);
			return false;
		}
		snprintf(dest, sizeof c->tls.cert, "%s", value);
		break;
	}
	case OPT_HANDSHAKE_TIMEOUT: c->handshake_timeout = number; break;
	case OPT_MAX_PEER_CONNECTIONS: c->max_peer_connections = (unsigned)number; break;
	case OPT_MAX_CONNECTIONS_PER_ADDRESS: c->max_connections_per_address = (unsigned)number; break;
	case OPT_MAX_UNAUTHENTICATED: c->max_unauthenticated = (unsigned)number; break;
	case OPT_HANDSHAKE_RATE: c->handshake_rate = number; break;
	case OPT_PEER_IDLE_TIMEOUT: c->peer_idle_timeout = number; break;
	case OPT_CONNECTION_BUDGET: c->connection_budget_percent = (unsigned)number; break;
	case OPT_PEER_BUDGET: c->peer_budget_percent = (unsigned)number; break;
	case OPT_APP_PEER_BUDGET: c->app_peer_budget_percent = (unsigned)number; break;
	case OPT_LOCAL_RESERVE: c->local_reserve_percent = (unsigned)number; break;
	case OPT_ATTACH_USERS:
	case OPT_ATTACH_GROUPS: {
		const char *why = parse_id_list(value, info->id == OPT_ATTACH_GROUPS, &c->apps.attach);
		if (why) {
			add_error(o, at, info, value, "%s", why);
			return false;
		}
		break;
	}
	case OPT_TLS_NAME:
		if (!value[0] || strlen(value) >= sizeof p->tls_name) {
			add_error(o, at, info, value, "a name is 1 to %zu bytes", sizeof p->tls_name - 1);
			return false;
		}
		snprintf(p->tls_name, sizeof p->tls_name, "%s", value);
		break;
	default:
		add_error(o, at, info, value, "cannot be set here");
		return false;
	}
	return true;
}

/* ---- peers ------------------------------------------------------------------------------- */

/* Settings of one [peer NAME] section, kept as text until the broker-wide defaults are final
 * (the command line comes after the file). */
struct peer_setting {
	int peer;
	const struct option_info *info;
	char value[256];
	int line;
};

struct loading {
	struct options *o;
	const char *file;
	int line, section_line;
	char section[128];
	char sections_seen[64][128];
	int sections_seen_lines[64];
	int section_count;
	struct peer_setting settings[512];
	int setting_count;
	bool peer_from_file[BROKER_PEERS_MAX];
	int peer_lines[BROKER_PEERS_MAX];
	bool cli_set[OPTION_COUNT_ALL]; /* per-peer rows given on the command line */
	int peer_overflow_line; /* the section of the last peer refused as one too many */
	int forward_lines[FORWARD_MAX];  /* where each [forward NAME] starts */
	int exposed_lines[FORWARD_EXPOSED_MAX]; /* where each service's target keys start */
	bool exposed_target_given[FORWARD_EXPOSED_MAX]; /* a target key, good or bad (said then) */
};

static int find_peer(const struct broker_config *c, const char *name)
{
	for (int i = 0; i < c->peer_count; i++)
		if (strcmp(c->peers[i].name, name) == 0)
			return i;
	return -1;
}

static int add_peer(struct loading *l, const char *name, const struct origin *at, const char *value)
{
	struct broker_config *c = &l->o->config;
	int i = find_peer(c, name);
	if (i >= 0)
		return i;
	if (c->peer_count == BROKER_PEERS_MAX) {
		/* once per peer too many: each line of its section comes here */
		if (!at->file || l->peer_overflow_line != l->section_line)
			add_error(l->o, at, &option_table[OPT_PEER], value, "more than %d peers", BROKER_PEERS_MAX);
		if (at->file)
			l->peer_overflow_line = l->section_line;
		return -1;
	}
	i = c->peer_count++;
	memset(&c->peers[i], 0, sizeof c->peers[i]);
	snprintf(c->peers[i].name, sizeof c->peers[i].name, "%s", name);
	return i;
}

/* ---- the file ---------------------------------------------------------------------------- */

/* The file as read, handed to inih a line at a time. */
struct config_text {
	const char *at, *end;
	struct loading *l;
};

/* A [peer NAME] header makes the peer even when no key follows: `[peer home]` alone is a peer
 * that dials in, with every setting as [broker] says (inih reports keys, not sections). */
static void note_peer_section(struct loading *l, const char *text, size_t length)
{
	char name[128];
	const char *close = memchr(text, ']', length);
	if (!close || length < 6 || strncmp(text, "[peer ", 6) != 0)
		return;
	const char *start = text + 6;
	while (start < close && *start == ' ')
		start++;
	size_t n = (size_t)(close - start);
	while (n > 0 && start[n - 1] == ' ')
		n--;
	if (n >= sizeof name)
		return;
	memcpy(name, start, n);
	name[n] = '\0';
	if (!peer_name_valid(name) || strcmp(name, "local") == 0)
		return; /* said by on_key if a key follows */
	struct origin at = { l->file, l->line, NULL };
	int i = add_peer(l, name, &at, text);
	if (i >= 0 && !l->peer_from_file[i]) {
		l->peer_from_file[i] = true;
		l->peer_lines[i] = l->line;
	}
}

/* inih's line reader, from memory: counts lines (inih tells its handler none) and where
 * sections start, and never hands inih part of a line (it would parse the rest as a line of
 * its own: the tail of a long comment became a setting). A comment longer than inih's buffer
 * is dropped whole; a longer line with a setting or a section, or one with a NUL byte, is an
 * error at its line and is not parsed. */
static char *next_line(char *str, int num, void *stream)
{
	struct config_text *t = stream;
	struct loading *l = t->l;
	if (t->at >= t->end || num < 3)
		return NULL;
	const char *newline = memchr(t->at, '\n', (size_t)(t->end - t->at));
	const char *line = t->at;
	size_t length = newline ? (size_t)(newline - line) : (size_t)(t->end - line); /* without '\n' */
	t->at = newline ? newline + 1 : t->end;
	l->line++;
	const char *first = line + strspn(line, " \t");
	bool comment = first < line + length && (*first == ';' || *first == '#');
	struct origin at = { l->file, l->line, NULL };
	if (memchr(line, '\0', length)) {
		add_error(l->o, &at, NULL, NULL, "a NUL byte: not a line of text");
		length = 0;
	} else if (length > (size_t)num - 2) { /* inih's buffer holds the line, '\n' and '\0' */
		if (!comment) /* a comment is dropped whole: nothing in it matters */
			add_error(l->o, &at, NULL, NULL, "the line is longer than %d bytes (comments may be "
				  "longer)", num - 2);
		length = 0;
	}
	if (length > 0 && *first == '[') {
		l->section_line = l->line;
		note_peer_section(l, first, (size_t)(line + length - first));
	}
	memcpy(str, line, length);
	str[length] = '\n';
	str[length + 1] = '\0';
	return str;
}

/* The [service NAME] section's targets (made on its first target key), or NULL (logged). */
static struct exposed_service *exposed_get(struct loading *l, const char *service, const struct origin *at)
{
	struct broker_config *c = &l->o->config;
	for (unsigned i = 0; i < c->exposed_count; i++)
		if (strcmp(c->exposed[i].service, service) == 0)
			return &c->exposed[i];
	if (c->exposed_count >= FORWARD_EXPOSED_MAX) {
		add_error(l->o, at, NULL, NULL, "[service %s]: at most %d services have targets", service,
			  FORWARD_EXPOSED_MAX);
		return NULL;
	}
	l->exposed_lines[c->exposed_count] = at->line;
	struct exposed_service *e = &c->exposed[c->exposed_count++];
	memset(e, 0, sizeof *e);
	snprintf(e->service, sizeof e->service, "%s", service);
	e->connect_timeout = FORWARD_CONNECT_TIMEOUT_DEFAULT;
	e->fall = FORWARD_FALL_DEFAULT;
	e->rise = FORWARD_RISE_DEFAULT;
	return e;
}

/* target = HOST:PORT[, HOST:PORT...] */
static void set_targets(struct loading *l, struct exposed_service *e, const struct option_info *info,
			const char *value, const struct origin *at)
{
	char list[1024];
	snprintf(list, sizeof list, "%s", value);
	e->target_count = 0;
	l->exposed_target_given[e - l->o->config.exposed] = true;
	for (char *save = NULL, *item = strtok_r(list, ", \t", &save); item;
	     item = strtok_r(NULL, ", \t", &save)) {
		if (e->target_count >= FORWARD_TARGETS_MAX) {
			add_error(l->o, at, info, value, "at most %d targets", FORWARD_TARGETS_MAX);
			return;
		}
		struct target_address *t = &e->targets[e->target_count];
		const char *why = parse_address(item, 1, 65535, t->host, sizeof t->host, t->port, sizeof t->port);
		if (why) {
			add_error(l->o, at, info, value, "%s: %s", item, why);
			return;
		}
		e->target_count++;
	}
	if (e->target_count == 0)
		add_error(l->o, at, info, value, "wants HOST:PORT[, HOST:PORT...]");
}

/* A [service NAME] key about its targets: target, connect-timeout, balance, health-check, fall,
 * rise, idle-timeout, bandwidth, proxy-protocol. */
static void set_exposed_key(struct loading *l, const char *service, const struct option_info *info,
			    const char *value, const struct origin *at)
{
	struct options *o = l->o;
	struct exposed_service *e = exposed_get(l, service, at);
	double seconds;
	if (!e)
		return;
	if (info->id == OPT_SERVICE_TARGET)
		set_targets(l, e, info, value, at);
	else if (info->id == OPT_SERVICE_BALANCE) {
		if (strcmp(value, "first") == 0)
			e->balance = BALANCE_FIRST;
		else if (strcmp(value, "round-robin") == 0)
			e->balance = BALANCE_ROUND_ROBIN;
		else if (strcmp(value, "least-connections") == 0)
			e->balance = BALANCE_LEAST_CONNECTIONS;
		else
			add_error(o, at, info, value, "first, round-robin or least-connections");
	} else if (info->id == OPT_SERVICE_FALL || info->id == OPT_SERVICE_RISE) {
		double n;
		if (!parse_whole(value, false, &n) || n < info->min || n > info->max)
			add_error(o, at, info, value, "not a whole number within 1..1000");
		else
			*(info->id == OPT_SERVICE_FALL ? &e->fall : &e->rise) = (unsigned)n;
	} else if (info->id == OPT_SERVICE_PROXY_PROTOCOL) {
		if (strcmp(value, "none") == 0)
			e->proxy_protocol = 0;
		else if (strcmp(value, "v1") == 0)
			e->proxy_protocol = 1;
		else if (strcmp(value, "v2") == 0)
			e->proxy_protocol = 2;
		else
			add_error(o, at, info, value, "none, v1 or v2");
	} else if (info->id == OPT_SERVICE_BANDWIDTH) {
		double n;
		if (!parse_whole(value, true, &n) || n > info->max)
			add_error(o, at, info, value, "not a whole number of bytes a second (K, M, G: "
				  "powers of 1024)");
		else
			e->bandwidth = n;
	} else if (info->id == OPT_SERVICE_HEALTH_CHECK || info->id == OPT_SERVICE_IDLE_TIMEOUT) {
		if (!parse_double(value, &seconds) || seconds < info->min || seconds > info->max)
			add_error(o, at, info, value, "not a number of seconds (%.15g..%.15g)",
				  info->min, info->max);
		else
			*(info->id == OPT_SERVICE_HEALTH_CHECK ? &e->health_interval
							      : &e->idle_timeout) = seconds;
	}
	else if (!parse_double(value, &seconds) || seconds < info->min || seconds > info->max)
		add_error(o, at, info, value, "not a number of seconds (0.001..3600)");
	else
		e->connect_timeout = seconds;
}

/* One key of a [service NAME] section: the rule for NAME (made on its first key). */
static void set_service_key(struct loading *l, const char *service, const struct option_info *info,
			    const char *name, const char *value, const struct origin *at)
{
	struct options *o = l->o;
	while (*service == ' ')
		service++;
	struct service_rules *rules = &o->config.apps.services;
	if (!service[0] || strlen(service) > 255) {
		add_error(o, at, NULL, NULL, "[service %s]: a service name is 1 to 255 bytes", service);
		return;
	}
	if (!info || info->scope != SCOPE_SERVICE) {
		add_error(o, at, NULL, NULL, "%s: %s", name,
			  info ? "not a setting of a service (peers, local, owner, target, connect-timeout, "
				 "balance, health-check, fall, rise, idle-timeout, bandwidth, proxy-protocol)"
			       : "no such setting");
		return;
	}
	struct service_rule *rule = (struct service_rule *)service_rules_find(rules, service);
	if (!rule) {
		if (rules->count >= SERVICE_RULES_MAX) {
			add_error(o, at, NULL, NULL, "[service %s]: at most %d services have rules", service,
				  SERVICE_RULES_MAX);
			return;
		}
		rule = &rules->rules[rules->count++];
		*rule = (struct service_rule){ .local = true, .owner_uid = -1, .owner_gid = -1 };
		snprintf(rule->name, sizeof rule->name, "%s", service);
	}
	/* where peers, local and owner were set (the config view); a target's keys have
	 * exposed_lines of their own */
	if (info->id >= OPT_SERVICE_PEERS && info->id <= OPT_SERVICE_OWNER)
		o->service_line[rule - rules->rules][info->id - OPT_SERVICE_PEERS] = at->line;
	switch (info->id) {
	case OPT_SERVICE_PEERS: {
		rule->peers_set = true;
		rule->any_peer = false;
		rule->peer_count = 0;
		if (strcmp(value, "none") == 0)
			return;
		if (strcmp(value, "*") == 0) {
			rule->any_peer = true;
			return;
		}
		char list[1024];
		snprintf(list, sizeof list, "%s", value);
		for (char *save = NULL, *item = strtok_r(list, ", ", &save); item;
		     item = strtok_r(NULL, ", ", &save)) {
			if (rule->peer_count >= SERVICE_RULE_PEERS_MAX || strlen(item) >= sizeof rule->peers[0]) {
				add_error(o, at, info, value, "at most %d names of up to %zu bytes",
					  SERVICE_RULE_PEERS_MAX, sizeof rule->peers[0] - 1);
				return;
			}
			snprintf(rule->peers[rule->peer_count++], sizeof rule->peers[0], "%s", item);
		}
		if (rule->peer_count == 0)
			add_error(o, at, info, value, "names, '*' or 'none'");
		return;
	}
	case OPT_SERVICE_LOCAL: {
		int v = parse_bool(value);
		if (v < 0)
			add_error(o, at, info, value, "not yes or no");
		else
			rule->local = v;
		return;
	}
	case OPT_SERVICE_OWNER: {
		const char *why = parse_owner(value, &rule->owner_uid, &rule->owner_gid);
		if (why)
			add_error(o, at, info, value, "%s", why);
		return;
	}
	case OPT_SERVICE_TARGET:
		service_rule_set_target(rule, value);
		set_exposed_key(l, service, info, value, at);
		return;
	case OPT_SERVICE_BANDWIDTH:
	case OPT_SERVICE_PROXY_PROTOCOL:
	case OPT_SERVICE_IDLE_TIMEOUT:
	case OPT_SERVICE_BALANCE:
	case OPT_SERVICE_HEALTH_CHECK:
	case OPT_SERVICE_FALL:
	case OPT_SERVICE_RISE:
	case OPT_SERVICE_CONNECT_TIMEOUT:
		set_exposed_key(l, service, info, value, at);
		return;
	default:
		return;
	}
}

/* A [forward NAME] key's value into f: NULL, or why it is refused. */
static const char *forward_value(struct forward_config *f, const struct option_info *info,
				 const char *value)
{
	double number;
	const char *why = NULL;
	switch (info->id) {
	case OPT_FORWARD_LISTEN:
		why = parse_address(value, 0, 65535, f->listen_host, sizeof f->listen_host, f->listen_port,
				    sizeof f->listen_port);
		break;
	case OPT_FORWARD_PEER:
		if (!peer_name_valid(value))
			why = "a peer name is 1 to 63 letters, digits, '-', '_' or '.'";
		else
			snprintf(f->peer, sizeof f->peer, "%s", value);
		break;
	case OPT_FORWARD_SERVICE:
		if (!value[0] || strlen(value) > 255)
			why = "a service name is 1 to 255 bytes";
		else
			snprintf(f->service, sizeof f->service, "%s", value);
		break;
	case OPT_FORWARD_MAX_CONNECTIONS:
		if (!parse_whole(value, false, &number) || number < info->min || number > info->max)
			why = "not a whole number within 1..1048576";
		else
			f->max_connections = (unsigned)number;
		break;
	case OPT_FORWARD_IDLE_TIMEOUT:
		if (!parse_double(value, &number) || number < info->min || number > info->max)
			why = "not a number of seconds (0..1e9)";
		else
			f->idle_timeout = number;
		break;
	case OPT_FORWARD_BANDWIDTH:
		if (!parse_whole(value, true, &number) || number > info->max)
			why = "not a whole number of bytes a second (K, M, G: powers of 1024)";
		else
			f->bandwidth = number;
		break;
	case OPT_FORWARD_CONNECTION_RATE:
		if (!parse_whole(value, false, &number) || number < info->min || number > info->max)
			why = "not a whole number of connections a second (0..10000000)";
		else
			f->connection_rate = number;
		break;
	case OPT_FORWARD_CLIENT_RESET_RATE:
		if (!parse_whole(value, false, &number) || number < info->min || number > info->max)
			why = "not a whole number of streams a second (0..10000000)";
		else
			f->client_reset_rate = number;
		break;
	default:
		break;
	}
	return why;
}

/* One key of a [forward NAME] section (the forward is made on its first key). */
static void set_forward_key(struct loading *l, const char *forward, const struct option_info *info,
			    const char *name, const char *value, const struct origin *at,
			    const struct origin *header)
{
	struct options *o = l->o;
	struct broker_config *c = &o->config;
	while (*forward == ' ')
		forward++;
	if (!peer_name_valid(forward)) {
		add_error(o, at, NULL, NULL, "[forward %s]: a forward's name is 1 to 63 letters, digits, "
			  "'-', '_' or '.'", forward);
		return;
	}
	if (!info || info->scope != SCOPE_FORWARD) {
		add_error(o, at, NULL, NULL, "%s: %s", name, info ? "not a setting of a forward (listen, "
			  "peer, service, max-connections, idle-timeout, connection-rate, client-reset-rate, "
			  "bandwidth)"
			: "no such setting");
		return;
	}
	unsigned i = 0;
	while (i < c->forward_count && strcmp(c->forwards[i].name, forward) != 0)
		i++;
	if (i == c->forward_count) {
		if (c->forward_count >= FORWARD_MAX) {
			add_error(o, header, NULL, NULL, "[forward %s]: at most %d forwards", forward, FORWARD_MAX);
			return;
		}
		c->forward_count++;
		memset(&c->forwards[i], 0, sizeof c->forwards[i]);
		snprintf(c->forwards[i].name, sizeof c->forwards[i].name, "%s", forward);
		c->forwards[i].max_connections = FORWARD_MAX_CONNECTIONS_DEFAULT;
		c->forwards[i].client_reset_rate = FORWARD_CLIENT_RESET_RATE_DEFAULT;
		l->forward_lines[i] = header->line;
	}
	const char *why = forward_value(&c->forwards[i], info, value);
	if (why)
		add_error(o, at, info, value, "%s", why);
}

/* The row a key of a section names: the section's own (listen in [forward] is not the
 * broker's listen), else the first of that name. */
static const struct option_info *find_key(const char *name, enum option_scope scope)
{
	const struct option_info *found = NULL;
	for (int i = 0; i < OPTION_COUNT_ALL; i++) {
		if (strcmp(option_table[i].name, name) != 0)
			continue;
		if (option_table[i].scope == scope)
			return &option_table[i];
		if (!found)
			found = &option_table[i];
	}
	return found;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct loading *l = user;
	struct options *o = l->o;
	struct origin at = { l->file, l->line, NULL };
	struct origin header = { l->file, l->section_line, NULL };
	if (strcmp(section, l->section) != 0) { /* a section starts */
		snprintf(l->section, sizeof l->section, "%s", section);
		for (int i = 0; i < l->section_count; i++)
			if (strcmp(l->sections_seen[i], section) == 0) {
				add_error(o, &header, NULL, NULL, "[%s]: the section is given twice (first at line %d)",
					  section, l->sections_seen_lines[i]);
				break;
			}
		if (l->section_count < 64) {
			snprintf(l->sections_seen[l->section_count], sizeof l->sections_seen[0], "%s", section);
			l->sections_seen_lines[l->section_count++] = l->section_line;
		}
	}
	enum option_scope scope = strncmp(section, "service ", 8) == 0   ? SCOPE_SERVICE
				  : strncmp(section, "forward ", 8) == 0 ? SCOPE_FORWARD
				  : strncmp(section, "peer ", 5) == 0    ? SCOPE_PEER
									 : SCOPE_BROKER;
	const struct option_info *info = find_key(name, scope);
	if (strcmp(section, "broker") == 0) {
		if (!info || info->scope == SCOPE_COMMAND_LINE || file_only(info)) {
			add_error(o, &at, NULL, NULL, "%s: %s", name,
				  info ? "not a setting of [broker]" : "no such setting");
			return 1;
		}
		if (set_value(o, info, value, &at, NULL))
			snprintf(o->sources[info->id].where, sizeof o->sources[0].where, "%s:%d", l->file, l->line);
		return 1;
	}
	if (strncmp(section, "peer ", 5) == 0) {
		const char *peer = section + 5;
		while (*peer == ' ')
			peer++;
		if (!peer_name_valid(peer) || strcmp(peer, "local") == 0) {
			add_error(o, &at, NULL, NULL, "[%s]: %s", section,
				  strcmp(peer, "local") == 0 ? "\"local\" means apps on this broker: not a peer name"
							     : "a peer name is 1 to 63 letters, digits, '-', '_' or '.'");
			return 1;
		}
		if (!info || info->scope != SCOPE_PEER) {
			add_error(o, &at, NULL, NULL, "%s: %s", name,
				  info ? "not a setting of a peer" : "no such setting");
			return 1;
		}
		int i = add_peer(l, peer, &at, section);
		if (i < 0)
			return 1;
		if (!l->peer_from_file[i]) {
			l->peer_from_file[i] = true;
			l->peer_lines[i] = l->section_line;
		}
		if (info->id == OPT_ADDRESS) {
			struct broker_peer *p = &o->config.peers[i];
			const char *why = parse_address(value, 1, 65535, p->host, sizeof p->host, p->port,
							sizeof p->port);
			if (why)
				add_error(o, &at, info, value, "%s", why);
			o->peer_line[i][OPT_ADDRESS] = l->line;
			return 1;
		}
		if (info->id == OPT_PEER_FROM) {
			struct broker_peer *p = &o->config.peers[i];
			unsigned char bytes[16];
			int family = strchr(value, ':') ? AF_INET6 : AF_INET;
			if (inet_pton(family, value, bytes) != 1)
				add_error(o, &at, info, value, "wants an IP address (no name, no port)");
			else
				inet_ntop(family, bytes, p->from, sizeof p->from);
			o->peer_line[i][OPT_PEER_FROM] = l->line;
			return 1;
		}
		if (l->setting_count < (int)(sizeof l->settings / sizeof l->settings[0])) {
			struct peer_setting *s = &l->settings[l->setting_count++];
			s->peer = i;
			s->info = info;
			s->line = l->line;
			snprintf(s->value, sizeof s->value, "%s", value);
		}
		return 1;
	}
	if (strncmp(section, "service ", 8) == 0) {
		set_service_key(l, section + 8, info, name, value, &at);
		return 1;
	}
	if (strncmp(section, "forward ", 8) == 0) {
		set_forward_key(l, section + 8, info, name, value, &at, &header);
		return 1;
	}
	add_error(o, &at, NULL, NULL, "[%s]: no such section (there are [broker], [peer NAME], "
		  "[service NAME] and [forward NAME])", section);
	return 1;
}

/* True for /dev/null: the conventional empty file (`--config /dev/null`: no settings). */
static bool is_dev_null(const struct stat *st)
{
	struct stat null;
	return S_ISCHR(st->st_mode) && stat("/dev/null", &null) == 0 && S_ISCHR(null.st_mode) &&
	       st->st_rdev == null.st_rdev;
}

/* Why the open file is not a config file, or NULL; *empty for /dev/null. */
static const char *not_config(int fd, bool *empty)
{
	struct stat st;
	*empty = false;
	if (fstat(fd, &st) < 0)
		return strerror(errno);
	if (is_dev_null(&st))
		*empty = true;
	else if (S_ISDIR(st.st_mode))
		return "a directory, not a config file";
	else if (S_ISFIFO(st.st_mode))
		return "a FIFO, not a config file (a regular file is)";
	else if (!S_ISREG(st.st_mode))
		return "not a regular file (a device or a socket is not a config file)";
	else if (st.st_size > OPTIONS_CONFIG_FILE_MAX)
		return "larger than 1 MiB: not a config file";
	return NULL;
}

/* The whole file in a buffer (NUL-terminated, *length bytes), or NULL with why. Only a
 * regular file of at most OPTIONS_CONFIG_FILE_MAX bytes is a config file: opened without
 * blocking (a FIFO would wait for a writer), never read past the bound (/dev/zero has no
 * end), so that neither start nor a reload can hang or spin on it. */
static char *read_config(const char *path, size_t *length, const char **why, bool *missing)
{
	*missing = false;
	*length = 0;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		*missing = errno == ENOENT;
		*why = strerror(errno);
		return NULL;
	}
	bool empty;
	*why = not_config(fd, &empty);
	char *text = *why ? NULL : malloc(OPTIONS_CONFIG_FILE_MAX + 2);
	if (!text && !*why)
		*why = strerror(ENOMEM);
	while (text && !empty && !*why) {
		ssize_t n = read(fd, text + *length, OPTIONS_CONFIG_FILE_MAX + 1 - *length);
		if (n < 0 && errno != EINTR)
			*why = strerror(errno);
		else if (n == 0)
			break;
		else if (n > 0 && (*length += (size_t)n) > OPTIONS_CONFIG_FILE_MAX)
			*why = "larger than 1 MiB: not a config file"; /* it grew while we read */
	}
	close(fd);
	if (*why) {
		free(text);
		return NULL;
	}
	text[*length] = '\0';
	return text;
}

static void load_file(struct loading *l, const char *path, bool must_exist)
{
	size_t length;
	const char *why;
	bool missing;
	char *text = read_config(path, &length, &why, &missing);
	if (!text) {
		if (must_exist || !missing) {
			struct origin at = { NULL, 0, "--config" };
			add_error(l->o, &at, &option_table[OPT_CONFIG], path, "%s", why);
		}
		return;
	}
	snprintf(l->o->config_path, sizeof l->o->config_path, "%s", path);
	l->file = l->o->config_path;
	l->line = 0;
	struct config_text stream = { text, text + length, l };
	int rc = ini_parse_stream(next_line, &stream, on_key, l);
	free(text);
	if (rc > 0) {
		struct origin at = { l->file, rc, NULL };
		add_error(l->o, &at, NULL, NULL, "not a line of an INI file (`[section]`, `key = value` or a comment)");
	} else if (rc < 0) {
		struct origin at = { l->file, 0, NULL };
		add_error(l->o, &at, NULL, NULL, "cannot be read");
	}
}

/* ---- the command line -------------------------------------------------------------------- */

static void build_getopt(struct option *longs, char *shorts)
{
	int n = 0, s = 0;
	for (int i = 0; i < OPTION_COUNT_ALL; i++) {
		const struct option_info *info = &option_table[i];
		if (file_only(info))
			continue; /* [peer NAME] or [service NAME] only */
		longs[n++] = (struct option){ info->name,
					      info->type == OPTION_FLAG ? no_argument : required_argument,
					      NULL, 1000 + i };
		if (info->short_name) {
			shorts[s++] = info->short_name;
			if (info->type != OPTION_FLAG)
				shorts[s++] = ':';
		}
	}
	longs[n] = (struct option){ NULL, 0, NULL, 0 };
	shorts[s] = '\0';
}

static const struct option_info *info_of_short(int ch)
{
	for (int i = 0; i < OPTION_COUNT_ALL; i++)
		if (option_table[i].short_name == ch)
			return &option_table[i];
	return NULL;
}

/* Reads --config, --check-config, --help, --version first: the file comes before the rest. */
static void scan_command_line(struct options *o, int argc, char **argv, bool apply, struct loading *l)
{
	struct option longs[OPTION_COUNT_ALL + 1];
	char shorts[2 * OPTION_COUNT_ALL + 2];
	build_getopt(longs, shorts);
	/* getopt_long reorders what it is given: work on a copy */
	char **args = calloc((size_t)argc + 1, sizeof *args);
	if (!args) {
		add_error(o, NULL, NULL, NULL, "out of memory");
		return;
	}
	memcpy(args, argv, sizeof args[0] * (size_t)argc);
	optind = 1;
	opterr = 0;
	int ch;
	int cli_peers = 0;
	char cli_peer_names[BROKER_PEERS_MAX][64];
	while ((ch = getopt_long(argc, args, shorts, longs, NULL)) != -1) {
		const struct option_info *info = ch >= 1000 ? &option_table[ch - 1000] : info_of_short(ch);
		char spelling[80];
		if (ch == '?' || ch == ':' || !info) {
			if (!apply)
				continue;
			const char *arg = args[optind - 1];
			struct origin at = { NULL, 0, arg };
			add_error(o, &at, NULL, NULL, ch == ':' || (optopt && info_of_short(optopt))
							 ? "wants a value"
							 : "no such option (--help lists them)");
			continue;
		}
		snprintf(spelling, sizeof spelling, "--%s", info->name);
		struct origin at = { NULL, 0, spelling };
		const char *value = optarg;
		switch (info->id) {
		case OPT_CONFIG:
			if (!apply) {
				snprintf(o->config_path, sizeof o->config_path, "%s", value);
				o->config_path_given = true;
			}
			continue;
		case OPT_CHECK_CONFIG: o->check_only = true; continue;
		case OPT_HELP: o->help = true; continue;
		case OPT_VERSION: o->version = true; continue;
		default:
			break;
		}
		if (!apply)
			continue;
		if (info->id == OPT_PEER) {
			const char *eq = strchr(value, '=');
			char name[64] = "";
			if (!eq || eq == value || (size_t)(eq - value) >= sizeof name) {
				add_error(o, &at, info, value, "wants NAME=HOST:PORT");
				continue;
			}
			memcpy(name, value, (size_t)(eq - value));
			if (!peer_name_valid(name) || strcmp(name, "local") == 0) {
				add_error(o, &at, info, value, "%s", strcmp(name, "local") == 0
									 ? "\"local\" means apps on this broker: not a peer name"
									 : "a peer name is 1 to 63 letters, digits, '-', '_' or '.'");
				continue;
			}
			bool twice = false;
			for (int i = 0; i < cli_peers; i++)
				twice = twice || strcmp(cli_peer_names[i], name) == 0;
			if (twice) {
				add_error(o, &at, info, value, "peer %s is given twice", name);
				continue;
			}
			char host[256], port[16];
			const char *why = parse_address(eq + 1, 1, 65535, host, sizeof host, port, sizeof port);
			if (why) {
				add_error(o, &at, info, value, "%s", why);
				continue;
			}
			int i = add_peer(l, name, &at, value);
			if (i < 0)
				continue;
			if (cli_peers < BROKER_PEERS_MAX)
				snprintf(cli_peer_names[cli_peers++], sizeof cli_peer_names[0], "%s", name);
			snprintf(o->config.peers[i].host, sizeof o->config.peers[i].host, "%s", host);
			snprintf(o->config.peers[i].port, sizeof o->config.peers[i].port, "%s", port);
			o->peer_line[i][OPT_ADDRESS] = OPTIONS_FROM_COMMAND_LINE;
			continue;
		}
		if (set_value(o, info, value, &at, NULL)) {
			snprintf(o->sources[info->id].where, sizeof o->sources[0].where, "command line");
			if (info->scope == SCOPE_PEER)
				l->cli_set[info->id] = true;
		}
	}
	if (apply && optind < argc) {
		struct origin at = { NULL, 0, args[optind] };
		add_error(o, &at, NULL, NULL, "unexpected argument");
	}
	free(args);
}

/* ---- checks of the whole ----------------------------------------------------------------- */

static void check_pool(struct options *o, const struct pool_config *p, const char *who)
{
	if (p->min_size > p->max_size)
		add_error(o, NULL, NULL, NULL, "%spool-min %u is above pool-max %u", who, p->min_size, p->max_size);
	if (p->mux.max_window_size < p->mux.window_size)
		add_error(o, NULL, NULL, NULL, "%smax-window %u is below window %u", who,
			  p->mux.max_window_size, p->mux.window_size);
	if (p->backoff_max < p->backoff_initial)
		add_error(o, NULL, NULL, NULL, "%sbackoff-max %.15g is below backoff-initial %.15g", who,
			  p->backoff_max, p->backoff_initial);
}

/* TLS files go together and must load; off loopback, plaintext must be asked for. */
static void check_tls(struct options *o, struct loading *l)
{
	struct broker_config *c = &o->config;
	const struct tls_settings *t = &c->tls;
	bool tls = tls_settings_enabled(t);
	if (!tls && (t->cert[0] || t->key[0] || t->ca[0])) {
		char missing[48] = "";
		const char *names[] = { "tls-cert", "tls-key", "tls-ca" };
		const char *values[] = { t->cert, t->key, t->ca };
		for (int i = 0; i < 3; i++)
			if (!values[i][0])
				snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s",
					 missing[0] ? " and " : "", names[i]);
		add_error(o, NULL, NULL, NULL, "tls-cert, tls-key and tls-ca go together: %s missing", missing);
		return;
	}
	if (tls) {
		char error[512], warning[512];
		SSL_CTX *ctx = tls_context_new(t, error, sizeof error, warning, sizeof warning);
		if (!ctx)
			add_error(o, NULL, NULL, NULL, "%s", error);
		else if (warning[0])
			add_warning(o, "%s", warning);
		tls_context_free(ctx);
	}
	if (c->listen_host[0] && !host_is_loopback(c->listen_host) && !tls && !c->listen_plaintext)
		add_error(o, NULL, NULL, NULL, "listen %s:%s is not loopback: give the broker a certificate "
			  "(tls-cert, tls-key, tls-ca) or accept peers in plaintext (listen-plaintext = yes)",
			  c->listen_host, c->listen_port);
	for (int i = 0; i < c->peer_count; i++) {
		const struct broker_peer *p = &c->peers[i];
		if (p->host[0] && !host_is_loopback(p->host) && !tls && !p->pool.plaintext) {
			struct origin at = { l->file, l->peer_lines[i], NULL };
			add_error(o, l->peer_from_file[i] ? &at : NULL, NULL, NULL, "peer %s at %s:%s is not "
				  "loopback: give the broker a certificate (tls-cert, tls-key, tls-ca) or dial it "
				  "in plaintext (plaintext = yes)", p->name, p->host, p->port);
		}
	}
}

/* A peer without an address dials us: the broker must listen, and each accepted connection
 * must be told to belong to one such peer at most (over plaintext only `from` can say). */
static void check_dial_in(struct options *o, struct loading *l)
{
	const struct broker_config *c = &o->config;
	bool tls = tls_settings_enabled(&c->tls) && !c->listen_plaintext;
	for (int i = 0; i < c->peer_count; i++) {
		const struct broker_peer *p = &c->peers[i];
		struct origin at = { l->file, l->peer_lines[i], NULL };
		const struct origin *where = l->peer_from_file[i] ? &at : NULL;
		if (p->host[0]) {
			if (p->from[0])
				add_error(o, where, NULL, NULL, "[peer %s]: from is for a peer that dials in "
					  "(without an address); this one is dialled at %s:%s", p->name, p->host, p->port);
			continue;
		}
		const char *why = !c->listen_host[0] ? "the broker does not listen (listen = HOST:PORT)"
				: !tls && !p->from[0] ? "over plaintext its connections are told by from = "
							"ADDRESS (or give the broker a certificate)"
				: NULL;
		if (why) {
			add_error(o, where, NULL, NULL, "[peer %s]: no address, so it dials in, but %s", p->name, why);
			continue;
		}
		for (int j = 0; j < i; j++) {
			const struct broker_peer *q = &c->peers[j];
			const char *pe = p->pool.tls_name[0] ? p->pool.tls_name : p->name;
			const char *qe = q->pool.tls_name[0] ? q->pool.tls_name : q->name;
			bool same_from = !p->from[0] || !q->from[0] || dialin_from_matches(p->from, q->from);
			if (!q->host[0] && same_from && (!tls || strcmp(pe, qe) == 0))
				add_error(o, where, NULL, NULL, "[peer %s]: a connection from %s could be peer %s's "
					  "as well (both dial in%s): give each its own %s", p->name,
					  p->from[0] ? p->from : q->from[0] ? q->from : "one address", q->name,
					  tls ? " and expect one certificate identity" : "",
					  tls ? "tls-name" : "from = ADDRESS");
		}
	}
}

/* Each forward has its three keys, a configured peer, and a listen address of its own. */
static void check_forwards(struct options *o, struct loading *l)
{
	struct broker_config *c = &o->config;
	for (unsigned i = 0; i < c->forward_count; i++) {
		const struct forward_config *f = &c->forwards[i];
		struct origin at = { l->file, l->forward_lines[i], NULL };
		const char *missing = !f->listen_host[0] && !f->listen_port[0] ? "listen = HOST:PORT"
				    : !f->peer[0]                            ? "peer = NAME"
				    : !f->service[0]                         ? "service = NAME"
									     : NULL;
		if (missing) {
			add_error(o, &at, NULL, NULL, "[forward %s]: no %s", f->name, missing);
			continue;
		}
		if (strcmp(f->peer, "local") != 0 && find_peer(c, f->peer) < 0)
			add_error(o, &at, NULL, NULL, "[forward %s]: peer %s is not configured (a [peer %s] "
				  "section or --peer)", f->name, f->peer, f->peer);
		for (unsigned j = 0; j < i; j++)
			if (strcmp(c->forwards[j].listen_host, f->listen_host) == 0 &&
			    strcmp(c->forwards[j].listen_port, f->listen_port) == 0 &&
			    strcmp(f->listen_port, "0") != 0)
				add_error(o, &at, NULL, NULL, "[forward %s]: listen %s:%s is forward %s's too",
					  f->name, f->listen_host, f->listen_port, c->forwards[j].name);
	}
	for (unsigned i = 0; i < c->exposed_count; i++)
		if (!l->exposed_target_given[i]) {
			struct origin at = { l->file, l->exposed_lines[i], NULL };
			add_error(o, &at, NULL, NULL, "[service %s]: connect-timeout, balance, health checks, idle-timeout, bandwidth or "
				  "proxy-protocol without a target",
				  c->exposed[i].service);
		}
}

static void check_whole(struct options *o, struct loading *l)
{
	struct broker_config *c = &o->config;
	check_pool(o, &c->pool, "");
	for (int i = 0; i < c->peer_count; i++) {
		struct broker_peer *p = &c->peers[i];
		char who[96];
		snprintf(who, sizeof who, "peer %s: ", p->name);
		if (memcmp(&p->pool, &c->pool, sizeof p->pool) != 0)
			check_pool(o, &p->pool, who);
	}
	check_tls(o, l);
	check_dial_in(o, l);
	check_forwards(o, l);
	if (!c->listen_host[0] && !c->apps.socket_path[0] && c->peer_count == 0)
		add_error(o, NULL, NULL, NULL, "nothing to do: no listener (listen), no app socket (socket) "
			  "and no peers");
	if (c->apps.socket_path[0] && c->port_file[0] && strcmp(c->apps.socket_path, c->port_file) == 0)
		add_error(o, NULL, NULL, NULL, "the port file and the app socket are the same path");
	/* the control socket's default sits beside the app socket and is named after it:
	 * broker.sock -> control.sock, NAME.sock -> NAME.control.sock; so each broker's pair of
	 * sockets stays together, and brokers whose app sockets share a directory (several on one
	 * host, test brokers) never meet */
	if (!c->control.socket_path_set && c->apps.socket_path[0]) {
		const char *path = c->apps.socket_path;
		const char *slash = strrchr(path, '/');
		const char *base = slash ? slash + 1 : path;
		int dir_length = (int)(base - path);
		int stem_length = (int)strlen(base);
		if (stem_length > 5 && strcmp(base + stem_length - 5, ".sock") == 0)
			stem_length -= 5;
		bool named_broker = stem_length == 6 && strncmp(base, "broker", 6) == 0;
		int n = named_broker
			? snprintf(c->control.socket_path, sizeof c->control.socket_path, "%.*scontrol.sock",
				   dir_length, path)
			: snprintf(c->control.socket_path, sizeof c->control.socket_path, "%.*s%.*s.control.sock",
				   dir_length, path, stem_length, base);
		if (n < 0 || (size_t)n >= sizeof c->control.socket_path)
			add_error(o, NULL, NULL, NULL, "control-socket: the default beside the app socket would "
				  "be too long a path: set control-socket");
	}
	if (c->control.socket_path[0] &&
	    (strcmp(c->control.socket_path, c->apps.socket_path) == 0 ||
	     strcmp(c->control.socket_path, c->port_file) == 0))
		add_error(o, NULL, NULL, NULL, "the control socket must have a path of its own (not the app "
			  "socket's or the port file's)");
}

bool options_load(struct options *o, int argc, char **argv)
{
	memset(o, 0, sizeof *o);
	broker_config_default(&o->config);
	for (int i = 0; i < OPTION_COUNT_ALL; i++) {
		if (option_table[i].id != (enum option_id)i)
			abort(); /* the table is out of order: a build defect */
		snprintf(o->sources[i].where, sizeof o->sources[0].where, "built-in");
	}
	static struct loading l; /* large: not on the stack */
	memset(&l, 0, sizeof l);
	l.o = o;
	scan_command_line(o, argc, argv, false, &l);
	if (o->help || o->version)
		return true;
	char path[sizeof o->config_path];
	snprintf(path, sizeof path, "%s", o->config_path_given ? o->config_path : options_default_config_path());
	o->config_path[0] = '\0'; /* set again once the file is read */
	load_file(&l, path, o->config_path_given);
	scan_command_line(o, argc, argv, true, &l);
	/* every peer starts from the broker-wide defaults, then its own section, unless the
	 * command line said otherwise for all peers */
	for (int i = 0; i < o->config.peer_count; i++)
		o->config.peers[i].pool = o->config.pool;
	for (int k = 0; k < l.setting_count; k++) {
		struct peer_setting *s = &l.settings[k];
		if (l.cli_set[s->info->id])
			continue;
		struct origin at = { l.file, s->line, NULL };
		if (set_value(o, s->info, s->value, &at, &o->config.peers[s->peer].pool))
			o->peer_line[s->peer][s->info->id] = s->line;
	}
	check_whole(o, &l);
	return o->error_count == 0;
}

const struct option_info *options_find(const char *name)
{
	while (*name == '-')
		name++;
	for (int i = 0; i < OPTION_COUNT_ALL; i++)
		if (strcmp(option_table[i].name, name) == 0 ||
		    (name[0] && !name[1] && option_table[i].short_name == name[0]))
			return &option_table[i];
	return NULL;
}

/* ---- help and the man page --------------------------------------------------------------- */

static const char *value_name(const struct option_info *info)
{
	switch (info->type) {
	case OPTION_FLAG: return "";
	case OPTION_PATH: return "PATH";
	case OPTION_COUNT: return "N";
	case OPTION_BYTES: return "BYTES";
	case OPTION_SECONDS: return "SECONDS";
	case OPTION_MODE: return "MODE";
	case OPTION_BOOL: return "yes|no";
	case OPTION_LEVEL: return "LEVEL";
	case OPTION_ADDRESS: return "HOST:PORT";
	case OPTION_OWNER: return "USER[:GROUP]";
	case OPTION_PEER: return "NAME=HOST:PORT";
	default: return "VALUE";
	}
}

/* Writes text from column `indent`, wrapped before column 100. */
static void wrap(FILE *out, const char *text, int column, int indent)
{
	while (*text) {
		size_t n = strlen(text);
		size_t room = (size_t)(100 - column);
		if (n > room) {
			n = room;
			while (n > 0 && text[n] != ' ')
				n--;
			if (n == 0)
				n = strcspn(text, " ");
		}
		fprintf(out, "%.*s", (int)n, text);
		text += n;
		while (*text == ' ')
			text++;
		if (*text) {
			fprintf(out, "\n%*s", indent, "");
			column = indent;
		}
	}
}

void options_usage(FILE *out)
{
	fprintf(out, "usage: wormhole-broker [options]\n"
		     "Options may also be set in the config file (key = value, without the dashes):\n"
		     "[broker] for the broker and the defaults of every peer, [peer NAME] for one peer.\n\n");
	for (int i = 0; i < OPTION_COUNT_ALL; i++) {
		const struct option_info *info = &option_table[i];
		if (file_only(info))
			continue;
		char left[64];
		snprintf(left, sizeof left, "%s%c%s--%s %s", info->short_name ? "-" : "   ",
			 info->short_name ? info->short_name : ' ', info->short_name ? ", " : "", info->name,
			 value_name(info));
		const char *given = info->id == OPT_CONFIG ? options_default_config_path() : info->default_text;
		/* as long as the help is: a fixed buffer cut the longest ones mid-sentence */
		size_t length = strlen(info->help) + (given ? strlen(given) + 12 : 0) + 1;
		char *text = malloc(length);
		if (!text)
			return;
		snprintf(text, length, "%s%s%s%s", info->help, given ? " (default " : "", given ? given : "",
			 given ? ")" : "");
		fprintf(out, "  %-34s ", left);
		wrap(out, text, 37, 37);
		fprintf(out, "\n");
		free(text);
	}
}

/* Writes text with every '-' escaped, as roff wants for option names. */
static void roff_escaped(FILE *out, const char *text)
{
	for (; *text; text++)
		fprintf(out, *text == '-' ? "\\-" : "%c", *text);
}

void options_man(FILE *out)
{
	static const char *const apply[] = { "at once", "for new streams", "for new connections",
					     "at restart" };
	for (int i = 0; i < OPTION_COUNT_ALL; i++) {
		const struct option_info *info = &option_table[i];
		const char *v = value_name(info);
		fprintf(out, ".TP\n");
		if (file_only(info)) {
			fprintf(out, ".BI \"%s = \" %s\n", info->name,
				info->id == OPT_ADDRESS ? "HOST:PORT" : info->id == OPT_PEER_FROM ? "ADDRESS" : value_name(info));
		} else if (info->short_name) {
			fprintf(out, ".BR \\-%c \", \" \\-\\-", info->short_name);
			roff_escaped(out, info->name);
			if (v[0])
				fprintf(out, " \" \\fI%s\\fR\"", v);
			fprintf(out, "\n");
		} else {
			fprintf(out, v[0] ? ".BI \\-\\-" : ".B \\-\\-");
			roff_escaped(out, info->name);
			if (v[0])
				fprintf(out, " \" %s\"", v);
			fprintf(out, "\n");
		}
		fprintf(out, "%c%s", info->help[0] >= 'a' && info->help[0] <= 'z' ? info->help[0] - 'a' + 'A'
										   : info->help[0],
			info->help + 1);
		if (info->default_text)
			fprintf(out, " (default %s)", info->default_text);
		fprintf(out, ".");
		if (info->scope == SCOPE_PEER && !file_only(info))
			fprintf(out, " Per peer: in a [peer NAME] section it sets that peer's.");
		if (info->scope != SCOPE_COMMAND_LINE)
			fprintf(out, " A change applies %s.", apply[info->apply]);
		fprintf(out, "\n");
	}
}

void options_format_value(const struct broker_config *c, const struct broker_peer *peer,
			  enum option_id id, char *out, size_t len)
{
	const struct pool_config *p = peer ? &peer->pool : &c->pool;
	const struct mux_config *m = &p->mux;
	switch (id) {
	case OPT_LISTEN:
		if (c->listen_host[0])
			snprintf(out, len, "%s%s%s:%s", strchr(c->listen_host, ':') ? "[" : "", c->listen_host,
				 strchr(c->listen_host, ':') ? "]" : "", c->listen_port);
		else
			snprintf(out, len, "none");
		break;
	case OPT_METRICS_LISTEN: {
		const struct control_config *k = &c->control;
		if (k->metrics_host[0])
			snprintf(out, len, "%s%s%s:%s", strchr(k->metrics_host, ':') ? "[" : "", k->metrics_host,
				 strchr(k->metrics_host, ':') ? "]" : "", k->metrics_port);
		else
			snprintf(out, len, "none");
		break;
	}
	case OPT_PORT_FILE: snprintf(out, len, "%s", c->port_file[0] ? c->port_file : "none"); break;
	case OPT_SOCKET: snprintf(out, len, "%s", c->apps.socket_path[0] ? c->apps.socket_path : "none"); break;
	case OPT_SOCKET_MODE: snprintf(out, len, "0%03o", c->apps.socket_mode); break;
	case OPT_SOCKET_OWNER: snprintf(out, len, "%ld:%ld", c->apps.socket_uid, c->apps.socket_gid); break;
	case OPT_CONTROL_SOCKET:
		snprintf(out, len, "%s", c->control.socket_path[0] ? c->control.socket_path : "none");
		break;
	case OPT_CONTROL_SOCKET_MODE: snprintf(out, len, "0%03o", c->control.socket_mode); break;
	case OPT_CONTROL_SOCKET_OWNER:
		snprintf(out, len, "%ld:%ld", c->control.socket_uid, c->control.socket_gid);
		break;
	case OPT_RING_SIZE: snprintf(out, len, "%u", c->apps.ring_capacity); break;
	case OPT_APP_MAX_STREAMS: snprintf(out, len, "%u", c->apps.max_streams); break;
	case OPT_APP_MAX_RING_MEMORY: snprintf(out, len, "%llu", (unsigned long long)c->apps.max_ring_memory); break;
	case OPT_APP_ACCEPT_BACKLOG: snprintf(out, len, "%u", c->apps.accept_backlog); break;
	case OPT_APP_MAX_LISTENERS: snprintf(out, len, "%u", c->apps.max_listeners); break;
	case OPT_DEFAULT_SERVICE: snprintf(out, len, "%s", c->default_service); break;
	case OPT_BUDGET: snprintf(out, len, "%llu", (unsigned long long)c->memory_budget); break;
	case OPT_MAX_FDS: snprintf(out, len, "%llu", (unsigned long long)c->max_fds); break;
	case OPT_DRAIN_TIMEOUT: snprintf(out, len, "%.15g", c->drain_timeout); break;
	case OPT_LOG_LEVEL: snprintf(out, len, "%s", log_level_name(c->log_level)); break;
	case OPT_ADDRESS:
		if (peer && !peer->host[0])
			snprintf(out, len, "none (it dials in)");
		else
			snprintf(out, len, "%s:%s", peer ? peer->host : "", peer ? peer->port : "");
		break;
	case OPT_PEER_FROM: snprintf(out, len, "%s", peer && peer->from[0] ? peer->from : "none"); break;
	case OPT_POOL_MIN: snprintf(out, len, "%u", p->min_size); break;
	case OPT_POOL_MAX: snprintf(out, len, "%u", p->max_size); break;
	case OPT_IDLE_TIME: snprintf(out, len, "%.15g", p->max_idle_time); break;
	case OPT_HEALTH_CHECK: snprintf(out, len, "%.15g", p->health_check_interval); break;
	case OPT_CONNECT_TIMEOUT: snprintf(out, len, "%.15g", p->connect_timeout); break;
	case OPT_BUSY_STREAMS: snprintf(out, len, "%u", p->busy_streams); break;
	case OPT_BACKOFF_INITIAL: snprintf(out, len, "%.15g", p->backoff_initial); break;
	case OPT_BACKOFF_MAX: snprintf(out, len, "%.15g", p->backoff_max); break;
	case OPT_ACCEPT_BACKLOG: snprintf(out, len, "%u", m->accept_backlog); break;
	case OPT_KEEPALIVE: snprintf(out, len, "%.15g", m->keepalive_interval); break;
	case OPT_KEEPALIVE_TIMEOUT: snprintf(out, len, "%.15g", m->keepalive_timeout); break;
	case OPT_MAX_FRAME_SIZE: snprintf(out, len, "%u", m->max_frame_size); break;
	case OPT_FLOW_CONTROL: snprintf(out, len, "%s", m->enable_flow_control ? "yes" : "no"); break;
	case OPT_WINDOW: snprintf(out, len, "%u", m->window_size); break;
	case OPT_MAX_WINDOW: snprintf(out, len, "%u", m->max_window_size); break;
	case OPT_MAX_STREAMS: snprintf(out, len, "%u", m->max_streams); break;
	case OPT_SEND_BUFFER: snprintf(out, len, "%u", m->send_buffer); break;
	case OPT_RELEASE_LINGER: snprintf(out, len, "%.15g", m->release_linger); break;
	case OPT_TLS_CERT: snprintf(out, len, "%s", c->tls.cert[0] ? c->tls.cert : "none"); break;
	case OPT_TLS_KEY: snprintf(out, len, "%s", c->tls.key[0] ? c->tls.key : "none"); break;
	case OPT_TLS_CA: snprintf(out, len, "%s", c->tls.ca[0] ? c->tls.ca : "none"); break;
	case OPT_LISTEN_PLAINTEXT: snprintf(out, len, "%s", c->listen_plaintext ? "yes" : "no"); break;
	case OPT_HANDSHAKE_TIMEOUT: snprintf(out, len, "%.15g", c->handshake_timeout); break;
	case OPT_MAX_PEER_CONNECTIONS: snprintf(out, len, "%u", c->max_peer_connections); break;
	case OPT_MAX_CONNECTIONS_PER_ADDRESS: snprintf(out, len, "%u", c->max_connections_per_address); break;
	case OPT_MAX_UNAUTHENTICATED: snprintf(out, len, "%u", c->max_unauthenticated); break;
	case OPT_HANDSHAKE_RATE: snprintf(out, len, "%.15g", c->handshake_rate); break;
	case OPT_PEER_IDLE_TIMEOUT: snprintf(out, len, "%.15g", c->peer_idle_timeout); break;
	case OPT_CONNECTION_BUDGET: snprintf(out, len, "%u", c->connection_budget_percent); break;
	case OPT_PEER_BUDGET: snprintf(out, len, "%u", c->peer_budget_percent); break;
	case OPT_APP_PEER_BUDGET: snprintf(out, len, "%u", c->app_peer_budget_percent); break;
	case OPT_LOCAL_RESERVE: snprintf(out, len, "%u", c->local_reserve_percent); break;
	case OPT_ATTACH_USERS:
	case OPT_ATTACH_GROUPS:
		format_id_list(&c->apps.attach, id == OPT_ATTACH_GROUPS, out, len);
		break;
	case OPT_CONTROL_QUEUE: snprintf(out, len, "%u", m->control_queue_limit); break;
	case OPT_RESET_RATE: snprintf(out, len, "%.15g", m->reset_rate); break;
	case OPT_PING_RATE: snprintf(out, len, "%.15g", m->ping_rate); break;
	case OPT_NOOP_RATE: snprintf(out, len, "%.15g", m->noop_rate); break;
	case OPT_STORE_RATE: snprintf(out, len, "%.15g", m->store_rate); break;
	case OPT_PLAINTEXT: snprintf(out, len, "%s", p->plaintext ? "yes" : "no"); break;
	case OPT_TLS_NAME:
		snprintf(out, len, "%s", p->tls_name[0] ? p->tls_name : peer ? peer->name : "the peer's name");
		break;
	default: snprintf(out, len, "-"); break;
	}
}
