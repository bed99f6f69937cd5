/* Logging for the broker: one line per event with time, level, component and ids. */
#ifndef WORMHOLE_BROKER_LOG_H
#define WORMHOLE_BROKER_LOG_H

#include <stdbool.h>
#include <stdio.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Where a component's lines go and which levels pass. A NULL sink is silent. Owned by the
 * broker (or a test) and passed down: no global logger. */
struct log_sink {
	enum log_level level;
	FILE *out;
	bool journal; /* out is the systemd journal: lines start with a syslog priority, <3>..<7> */
};

/* True when stderr is connected to the journal ($JOURNAL_STREAM names its device and inode):
 * lines then carry their priority, so that `journalctl -p warning` sees the right ones. */
bool log_stderr_is_journal(void);

#if defined(__GNUC__)
#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LOG_PRINTF(a, b)
#endif

/* Writes "<time> <LEVEL> <component>: <message>\n" if level passes ("<P><LEVEL> ..." for the
 * journal, which has its own timestamps). Never fails visibly. */
void log_write(const struct log_sink *sink, enum log_level level, const char *component,
	       const char *format, ...) LOG_PRINTF(4, 5);
static inline int log_enabled(const struct log_sink *sink, enum log_level level)
{
	return sink && sink->out && level <= sink->level;
}
const char *log_level_name(enum log_level level);
/* Parses "error", "warn", "info", "debug"; returns -1 for anything else. */
int log_level_parse(const char *name);

#endif
