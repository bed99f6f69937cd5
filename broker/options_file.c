/* The config file (wormhole-broker.conf(5)): read whole and bounded (only a regular file
 * of at most OPTIONS_CONFIG_FILE_MAX bytes, or /dev/null), handed to inih a line at a time
 * (lines counted, an over-long line refused whole), each key sent to its section's parser.
 * [broker] is read here; the other sections' parsers are in options_sections.c. Apart from
 * the command line because this is what guards the broker against a file that is not a
 * config file. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "options.h"
#include "options_internal.h"

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

/* A section starts: said if it was given before (inih reports keys only, so a section with no
 * key is never seen here). */
static void section_starts(struct loading *l, const char *section)
{
	struct origin header = { l->file, l->section_line, NULL };
	snprintf(l->section, sizeof l->section, "%s", section);
	for (int i = 0; i < l->section_count; i++)
		if (strcmp(l->sections_seen[i], section) == 0) {
			add_error(l->o, &header, NULL, NULL, "[%s]: the section is given twice (first at line %d)",
				  section, l->sections_seen_lines[i]);
			break;
		}
	if (l->section_count < 64) {
		snprintf(l->sections_seen[l->section_count], sizeof l->sections_seen[0], "%s", section);
		l->sections_seen_lines[l->section_count++] = l->section_line;
	}
}

/* A key of [broker]: a row the command line has too, the broker's own or every peer's default. */
static void set_broker_key(struct loading *l, const struct option_info *info, const char *name,
			   const char *value, const struct origin *at)
{
	struct options *o = l->o;
	if (!info || info->scope == SCOPE_COMMAND_LINE || file_only(info)) {
		add_error(o, at, NULL, NULL, "%s: %s", name,
			  info ? "not a setting of [broker]" : "no such setting");
		return;
	}
	if (set_value(o, info, value, at, NULL))
		snprintf(o->sources[info->id].where, sizeof o->sources[0].where, "%s:%d", l->file, l->line);
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct loading *l = user;
	struct options *o = l->o;
	struct origin at = { l->file, l->line, NULL };
	struct origin header = { l->file, l->section_line, NULL };
	if (strcmp(section, l->section) != 0)
		section_starts(l, section);
	enum option_scope scope = strncmp(section, "service ", 8) == 0   ? SCOPE_SERVICE
				  : strncmp(section, "forward ", 8) == 0 ? SCOPE_FORWARD
				  : strncmp(section, "peer ", 5) == 0    ? SCOPE_PEER
									 : SCOPE_BROKER;
	const struct option_info *info = find_key(name, scope);
	if (strcmp(section, "broker") == 0) {
		set_broker_key(l, info, name, value, &at);
		return 1;
	}
	if (strncmp(section, "peer ", 5) == 0) {
		set_peer_key(l, section, info, name, value, &at);
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

void load_file(struct loading *l, const char *path, bool must_exist)
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

