#include "sbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"

void sbuf_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	/* The doubling below must not overflow. */
	if (n > SIZE_MAX / 2 - b->len) {
		b->oom = 1;
		return;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *grown;
		while (cap < b->len + n + 1)
			cap *= 2;
		/* Copy instead of realloc, so that the old block is wiped before it is freed. */
		grown = malloc(cap);
		if (grown == NULL) {
			b->oom = 1;
			return;
		}
		if (b->p != NULL) {
			memcpy(grown, b->p, b->len);
			crypto_wipe(b->p, b->cap);
			free(b->p);
		}
		b->p = grown;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void sbuf_puts(struct sbuf *b, const char *s)
{
	sbuf_add(b, s, strlen(s));
}

void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	/* Only short, fixed-shape lines are formatted; anything longer is a bug, not input. */
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		b->oom = 1;
		return;
	}
	sbuf_add(b, tmp, (size_t)n);
}

char *sbuf_take(struct sbuf *b)
{
	char *s;

	sbuf_add(b, "", 0); /* allocates when nothing was added */
	if (b->oom) {
		sbuf_free(b);
		return NULL;
	}
	s = b->p;
	b->p = NULL;
	b->len = b->cap = 0;
	return s;
}

void sbuf_free(struct sbuf *b)
{
	if (b->p != NULL)
		crypto_wipe(b->p, b->cap);
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
	b->oom = 0;
}
