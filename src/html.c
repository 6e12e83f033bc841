#include "html.h"

void html_add(struct sbuf *b, const char *s, enum html_breaks breaks)
{
	for (; *s; s++) {
		switch (*s) {
		case '&':
			sbuf_puts(b, "&amp;");
			break;
		case '<':
			sbuf_puts(b, "&lt;");
			break;
		case '>':
			sbuf_puts(b, "&gt;");
			break;
		case '"':
			sbuf_puts(b, "&quot;");
			break;
		case '\'':
			sbuf_puts(b, "&#39;");
			break;
		case '\r':
			if (s[1] == '\n')
				s++;
			/* fall through */
		case '\n':
			sbuf_puts(b, breaks == HTML_BREAK_BR ? "<br>\n" : " ");
			break;
		default:
			sbuf_add(b, s, 1);
		}
	}
}

char *html_escape(const char *s)
{
	struct sbuf b = {0};

	html_add(&b, s, HTML_BREAK_SPACE);
	return sbuf_take(&b);
}
