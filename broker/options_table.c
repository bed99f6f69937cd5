/* The option table (options.h): every setting's row, and what is made from the rows alone:
 * --help, the man page's option list, and a value as the config file spells it. Apart from
 * the parsing (options.c and the options_*.c beside it) because a reader looking up a
 * setting's rule, default or help wants the table, not the parser. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "options_internal.h"

#include "wh_paths.h"

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
bool file_only(const struct option_info *info)
{
	return info->id == OPT_ADDRESS || info->id == OPT_PEER_FROM || info->scope == SCOPE_SERVICE || info->scope == SCOPE_FORWARD;
}

const char *options_default_config_path(void)
{
	return WH_SYSCONFDIR "/wormhole/broker.conf";
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

void format_id_list(const struct attach_rules *rules, bool groups, char *out, size_t len)
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

/* "host:port", "[v6]:port", or none for no host. */
static void format_listen(char *out, size_t len, const char *host, const char *port)
{
	if (host[0])
		snprintf(out, len, "%s%s%s:%s", strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", port);
	else
		snprintf(out, len, "none");
}

/* A peer's row (its pool and mux, or [broker]'s defaults of them when peer is NULL); false
 * for a broker-wide row. */
static bool format_pool_value(const struct pool_config *p, const struct broker_peer *peer, enum option_id id,
			      char *out, size_t len)
{
	const struct mux_config *m = &p->mux;
	switch (id) {
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
	case OPT_CONTROL_QUEUE: snprintf(out, len, "%u", m->control_queue_limit); break;
	case OPT_RESET_RATE: snprintf(out, len, "%.15g", m->reset_rate); break;
	case OPT_PING_RATE: snprintf(out, len, "%.15g", m->ping_rate); break;
	case OPT_NOOP_RATE: snprintf(out, len, "%.15g", m->noop_rate); break;
	case OPT_STORE_RATE: snprintf(out, len, "%.15g", m->store_rate); break;
	case OPT_PLAINTEXT: snprintf(out, len, "%s", p->plaintext ? "yes" : "no"); break;
	case OPT_TLS_NAME:
		snprintf(out, len, "%s", p->tls_name[0] ? p->tls_name : peer ? peer->name : "the peer's name");
		break;
	default: return false;
	}
	return true;
}

void options_format_value(const struct broker_config *c, const struct broker_peer *peer,
			  enum option_id id, char *out, size_t len)
{
	if (format_pool_value(peer ? &peer->pool : &c->pool, peer, id, out, len))
		return;
	switch (id) {
	case OPT_LISTEN: format_listen(out, len, c->listen_host, c->listen_port); break;
	case OPT_METRICS_LISTEN: format_listen(out, len, c->control.metrics_host, c->control.metrics_port); break;
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
	default: snprintf(out, len, "-"); break;
	}
}
