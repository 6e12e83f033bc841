/*
 * html: the one HTML escaper of the program, for the login mails' HTML part and the magic
 * link's landing page. & < > " and ' become entities, so an escaped value is safe both as
 * element text and inside a quoted attribute value.
 */
#ifndef OTLOGIN_HTML_H
#define OTLOGIN_HTML_H

#include "sbuf.h"

/* What a line break (CRLF, lone CR or LF) of the value becomes. */
enum html_breaks {
	HTML_BREAK_SPACE, /* a space: titles, attribute values, single-line text */
	HTML_BREAK_BR	  /* "<br>\n": paragraphs of user text */
};

/* Append s HTML-escaped to b. */
void html_add(struct sbuf *b, const char *s, enum html_breaks breaks);

/* A new HTML-escaped copy of s, line breaks as spaces (caller frees). NULL on OOM. */
char *html_escape(const char *s);

#endif
