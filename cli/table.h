/* Text tables sized to their content (cli/table.c). */
#ifndef FLOWVAULT_CLI_TABLE_H
#define FLOWVAULT_CLI_TABLE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

typedef struct cli_table cli_table;

/* A table of `columns` columns; the first row added is the header. */
cli_table *cli_table_new(size_t columns);
/* A row: `columns` cells (NULL shows as "-"); copied. */
void cli_table_row(cli_table *t, const char *const *cells);
/* A line under the last row, indented to the second column. */
void cli_table_note(cli_table *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Print every row: columns padded to their widest cell; on a terminal the
 * last column is cut with an ellipsis and notes wrap to its width. */
void cli_table_print(cli_table *t, FILE *out);
void cli_table_free(cli_table *t);

#endif
