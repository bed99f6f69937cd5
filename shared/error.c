/* Messages and names for the error table in <wormhole/errors.h>. */
#include "config.h"

#include <stddef.h>

#include <wormhole/errors.h>

struct error_entry {
	int code;
	const char *name;
	const char *message;
};

static const struct error_entry error_entries[] = {
	{ WH_OK, "WH_OK", "success" },
#define ERROR_ENTRY(name, value, message) { (value), "WH_" #name, (message) },
	WH_ERROR_TABLE(ERROR_ENTRY)
#undef ERROR_ENTRY
};

static const struct error_entry *error_find(int code)
{
	for (size_t i = 0; i < sizeof error_entries / sizeof error_entries[0]; i++)
		if (error_entries[i].code == code)
			return &error_entries[i];
	return NULL;
}

const char *wh_strerror(int error)
{
	const struct error_entry *entry = error_find(error);
	return entry ? entry->message : "unknown error";
}

const char *wh_error_name(int error)
{
	const struct error_entry *entry = error_find(error);
	return entry ? entry->name : NULL;
}
