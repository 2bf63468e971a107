/*
 * The server's log lines: one line per write(2) on stderr, so that lines of
 * the supervisor, the key process and the workers never interleave.
 *   text:     2026-12-01T08:04:53.123Z flowvault[1234] worker 1: warning: ...
 *   journald: <4>flowvault[1234] worker 1: warning: ...   (journald stamps it)
 *   json:     {"time":"...","pid":1234,"process":"worker 1","level":"warning","message":"..."}
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../serve_internal.h"

static int log_format;
static int under_journald;
static char log_role[32] = "supervisor";

static const char *const level_names[] = { "error", "warning", "info", "debug" };
/* syslog priorities, for journald's "<N>" prefix */
static const int level_priorities[] = { 3, 4, 6, 7 };

static void serve_sink(void *arg, int level, const char *message)
{
	char line[4096], stamp[80];
	struct timespec ts;
	struct tm tm;
	int n;

	(void)arg;
	level = level < 0 ? 0 : level > 3 ? 3 : level;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm); /* UTC: no time zone file to read */
	snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	         (long)(ts.tv_nsec / 1000000) % 1000);
	if (log_format == SERVE_LOG_JSON) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "time", json_object_new_string(stamp));
		json_object_object_add(o, "pid", json_object_new_int(getpid()));
		json_object_object_add(o, "process", json_object_new_string(log_role));
		json_object_object_add(o, "level", json_object_new_string(level_names[level]));
		json_object_object_add(o, "message", json_object_new_string(message));
		n = snprintf(line, sizeof(line), "%s\n",
		             json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
	} else if (under_journald) {
		n = snprintf(line, sizeof(line), "<%d>flowvault[%d] %s: %s: %s\n",
		             level_priorities[level], (int)getpid(), log_role, level_names[level],
		             message);
	} else {
		n = snprintf(line, sizeof(line), "%s flowvault[%d] %s: %s: %s\n", stamp,
		             (int)getpid(), log_role, level_names[level], message);
	}
	if (n <= 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = (int)sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	if (write(2, line, (size_t)n) < 0)
		return; /* nowhere left to say it */
}

void fv__serve_log_setup(int format)
{
	if (!fv__log_sink_is_default())
		return; /* the application chose where lines go */
	log_format = format;
	under_journald = secure_getenv("JOURNAL_STREAM") != NULL;
	fv_log_set(serve_sink, NULL, fv__log_level());
}

void fv__serve_log_role(const char *role)
{
	snprintf(log_role, sizeof(log_role), "%s", role);
}
