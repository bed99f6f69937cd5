/* Logging for the broker: one line per event with time, level, component and ids. */
#include "config.h"

#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "text_escape.h"

static const char *const level_names[] = { "error", "warn", "info", "debug" };

const char *log_level_name(enum log_level level)
{
	return (unsigned)level < 4 ? level_names[level] : "?";
}

int log_level_parse(const char *name)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

void log_write(const struct log_sink *sink, enum log_level level, const char *component,
	       const char *format, ...)
{
	if (!log_enabled(sink, level))
		return;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct tm tm;
	gmtime_r(&now.tv_sec, &tm);
	char line[4096];
	static const int priorities[] = { 3, 4, 6, 7 }; /* syslog: err, warning, info, debug */
	int n = sink->journal
			? snprintf(line, sizeof line, "<%d>%s %s: ", priorities[level], level_names[level], component)
			: snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ",
				   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
				   tm.tm_sec, now.tv_nsec / 1000000, level_names[level], component);
	char message[1024];
	va_list args;
	va_start(args, format);
	int length = vsnprintf(message, sizeof message, format, args);
	va_end(args);
	/* Names, paths and messages from apps, peers and files are in the message: escaped here,
	 * whole, so that none can start a line of its own or drive the terminal that shows it,
	 * and no call site has to remember. */
	if (n > 0 && (size_t)n < sizeof line - 2 && length >= 0)
		text_escape(line + n, sizeof line - 2 - (size_t)n, message,
			    (size_t)length < sizeof message ? (size_t)length : sizeof message - 1);
	/* One fputs per line keeps lines whole when several processes share a file. */
	size_t len = strnlen(line, sizeof line - 2);
	line[len] = '\n';
	line[len + 1] = '\0';
	fputs(line, sink->out);
	fflush(sink->out);
}

bool log_stderr_is_journal(void)
{
	const char *stream = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	if (!stream || sscanf(stream, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}
