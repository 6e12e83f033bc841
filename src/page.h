/*
 * page: the texts of the hosted login pages and their translation. A text set is a file
 * <templates_dir>/<locale>/texts of "key = value" lines (see etc/templates/en/texts, which
 * lists every key); an administrator translates it by copying the directory. Values may name
 * {placeholders}, replaced by page_add with HTML-escaped values. Built-in English texts stand
 * in for a missing file or key, so the pages work before anything is installed.
 */
#ifndef OTLOGIN_PAGE_H
#define OTLOGIN_PAGE_H

#include <jansson.h>

#include "sbuf.h"

#define PAGE_LOCALE_MAX 16

struct page_texts {
	json_t *texts; /* key -> text (new reference) */
	char locale[PAGE_LOCALE_MAX];
};

/*
 * Parse a text set's content into into (an object; later keys replace earlier ones). Lines
 * are "key = value", "#" comments and blank lines. Returns the number of entries read, or -1
 * on a malformed line (entries before it are kept).
 */
int page_parse_texts(const char *data, json_t *into);

/* 1 when name can be a locale directory (letters, digits, '-' and '_', 2 to 15 of them). */
int page_locale_valid(const char *name);

/*
 * The locale to use: the first of the space-separated ui_locales (NULL: none) installed under
 * dir, matched exactly (case-insensitive) or by its language alone ("de-CH" finds "de"); else
 * "en". Written to out.
 */
void page_pick_locale(const char *dir, const char *ui_locales, char out[PAGE_LOCALE_MAX]);

/* Load locale's texts from dir over the built-in English. 0, or -1 (built-ins are kept). */
int page_texts_load(struct page_texts *t, const char *dir, const char *locale);
void page_texts_free(struct page_texts *t);

/* The text of key (borrowed; "" when unknown). */
const char *page_text(const struct page_texts *t, const char *key);

/*
 * Append text to b, HTML-escaped, with each {name} replaced by vars' string member name,
 * HTML-escaped too ({name} without a value is left out).
 */
void page_add(struct sbuf *b, const char *text, json_t *vars);

#endif
