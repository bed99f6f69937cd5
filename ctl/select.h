/* wormhole-ctl's --filter, --sort and --limit: the rows of a received table chosen and ordered
 * before it is shown, the same for text and JSON. */
#ifndef WORMHOLE_CTL_SELECT_H
#define WORMHOLE_CTL_SELECT_H

#include <stdbool.h>

#include "render.h"

#define SELECT_FILTERS_MAX 8

struct selection {
	const char *sort;      /* FIELD (ascending) or -FIELD (descending); NULL: as sent */
	long limit;            /* rows at most; 0: all */
	const char *filter[SELECT_FILTERS_MAX]; /* FIELD=VALUE, all must hold */
	unsigned filters;
};

static inline bool selection_any(const struct selection *s)
{
	return s->sort || s->limit || s->filters;
}

/* Replaces t's rows by those chosen, in order. 0, or -1 with the reason in why (a field the
 * table has not: a usage error, or out of memory). */
int select_rows(struct ctl_table *t, const struct selection *s, char *why, size_t why_length);

#endif
