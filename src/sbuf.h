/*
 * sbuf: a growable NUL-terminated string buffer. An allocation failure sticks (oom) and is
 * checked once, when the text is complete, instead of after every append. The buffers hold
 * message bodies with passcodes and links: growing copies and wipes the old block, and
 * sbuf_free wipes, so no copy of the text is left behind in freed memory.
 */
#ifndef OTLOGIN_SBUF_H
#define OTLOGIN_SBUF_H

#include <stddef.h>

/* Start with {0}. p is NULL until something is added, else always NUL-terminated. */
struct sbuf {
	char *p;
	size_t len, cap;
	int oom; /* an allocation failed (or sbuf_printf overflowed): the text is incomplete */
};

/* Append n bytes of s. */
void sbuf_add(struct sbuf *b, const char *s, size_t n);

/* Append the string s. */
void sbuf_puts(struct sbuf *b, const char *s);

/* Append a formatted line of at most 1023 characters; a longer one sets oom (a bug, not input). */
void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * The text as a new string ("" when nothing was added; caller frees), or NULL after oom. The
 * buffer is left empty either way.
 */
char *sbuf_take(struct sbuf *b);

/* Wipe and free the text; the buffer is left empty. */
void sbuf_free(struct sbuf *b);

#endif
