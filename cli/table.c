/*
 * Text tables for people: columns as wide as their widest cell (as `ls -l`
 * and `systemctl list-units` do), and notes under a row. On a terminal the
 * last column and the notes are fitted to its width: a long last cell is cut
 * with an ellipsis, a note wraps. Into a pipe nothing is cut, so `grep`
 * sees whole fingerprints and messages.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "table.h"

struct cli_row {
	char **cells;     /* columns entries, NULL for a note */
	char *note;       /* a line printed under the previous row */
};

struct cli_table {
	size_t columns;
	struct cli_row *rows;
	size_t count, capacity;
	int failed;       /* out of memory: print nothing rather than half */
};

cli_table *cli_table_new(size_t columns)
{
	cli_table *t = calloc(1, sizeof(*t));

	if (t)
		t->columns = columns;
	return t;
}

static struct cli_row *row_new(cli_table *t)
{
	if (t->count == t->capacity) {
		size_t cap = t->capacity ? t->capacity * 2 : 16;
		struct cli_row *grown = realloc(t->rows, cap * sizeof(*grown));

		if (!grown) {
			t->failed = 1;
			return NULL;
		}
		t->rows = grown;
		t->capacity = cap;
	}
	memset(&t->rows[t->count], 0, sizeof(t->rows[0]));
	return &t->rows[t->count++];
}

void cli_table_row(cli_table *t, const char *const *cells)
{
	struct cli_row *row;
	size_t i;

	if (!t || t->failed || !(row = row_new(t)))
		return;
	if (!(row->cells = calloc(t->columns, sizeof(char *)))) {
		t->failed = 1;
		return;
	}
	for (i = 0; i < t->columns; i++)
		if (!(row->cells[i] = strdup(cells[i] ? cells[i] : "-")))
			t->failed = 1;
}

void cli_table_note(cli_table *t, const char *fmt, ...)
{
	struct cli_row *row;
	va_list ap;
	int n;

	if (!t || t->failed || !(row = row_new(t)))
		return;
	va_start(ap, fmt);
	n = vasprintf(&row->note, fmt, ap);
	va_end(ap);
	if (n < 0) {
		row->note = NULL;
		t->failed = 1;
	}
}

/* Columns of the terminal on stdout, or 0 when stdout is not one. */
static size_t terminal_width(void)
{
	struct winsize ws;

	if (!isatty(STDOUT_FILENO))
		return 0;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

/* Display width of UTF-8 text: one column per character (no wide ones here). */
static size_t text_width(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

/* Bytes of `s` that fill at most `width` columns. */
static size_t bytes_for_width(const char *s, size_t width)
{
	size_t i = 0, cols = 0;

	while (s[i] && cols < width) {
		i++;
		while (((unsigned char)s[i] & 0xc0) == 0x80)
			i++;
		cols++;
	}
	return i;
}

static void print_cut(FILE *out, const char *s, size_t room)
{
	if (room == 0 || text_width(s) <= room) {
		fputs(s, out);
		return;
	}
	fprintf(out, "%.*s\xe2\x80\xa6", (int)bytes_for_width(s, room - 1), s); /* U+2026 */
}

/* A note under a row, indented, wrapped at spaces to `room` columns. */
static void print_note(FILE *out, const char *note, size_t indent, size_t room)
{
	const char *p = note;

	if (room < 20) {
		fprintf(out, "%*s%s\n", (int)indent, "", note);
		return;
	}
	while (*p) {
		size_t take = bytes_for_width(p, room), cut = take;

		if (p[take]) {
			while (cut > 0 && p[cut] != ' ')
				cut--;
			if (cut == 0)
				cut = take; /* one long word: break inside it */
		}
		fprintf(out, "%*s%.*s\n", (int)indent, "", (int)cut, p);
		p += cut;
		while (*p == ' ')
			p++;
	}
}

void cli_table_print(cli_table *t, FILE *out)
{
	size_t *width, i, c, term, indent, used = 0;

	if (!t || t->failed || !t->count)
		return;
	if (!(width = calloc(t->columns, sizeof(*width))))
		return;
	for (i = 0; i < t->count; i++)
		for (c = 0; t->rows[i].cells && c < t->columns; c++)
			if (text_width(t->rows[i].cells[c]) > width[c])
				width[c] = text_width(t->rows[i].cells[c]);
	for (c = 0; c + 1 < t->columns; c++)
		used += width[c] + 2;
	term = terminal_width();
	indent = t->columns > 1 ? width[0] + 2 : 2;
	for (i = 0; i < t->count; i++) {
		const struct cli_row *row = &t->rows[i];

		if (!row->cells) {
			print_note(out, row->note, indent, term > indent ? term - indent : 0);
			continue;
		}
		for (c = 0; c + 1 < t->columns; c++)
			fprintf(out, "%s%*s", row->cells[c],
			        (int)(width[c] + 2 - text_width(row->cells[c])), "");
		print_cut(out, row->cells[t->columns - 1],
		          term > used + 8 ? term - used : 0);
		fputc('\n', out);
	}
	free(width);
}

void cli_table_free(cli_table *t)
{
	size_t i, c;

	if (!t)
		return;
	for (i = 0; i < t->count; i++) {
		for (c = 0; t->rows[i].cells && c < t->columns; c++)
			free(t->rows[i].cells[c]);
		free(t->rows[i].cells);
		free(t->rows[i].note);
	}
	free(t->rows);
	free(t);
}
