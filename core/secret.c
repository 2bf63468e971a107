/*
 * Secret references: "env:NAME", "file:PATH" or "prompt". Secrets are never
 * stored in the configuration, never printed, and wiped after use.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "internal.h"

#define SECRET_MAX 4096
#define REFERENCE_FORMS "env:NAME, file:PATH or prompt"

static int valid_env_name(const char *name)
{
	if (!*name || !(isalpha((unsigned char)*name) || *name == '_'))
		return 0;
	for (; *name; name++)
		if (!(isalnum((unsigned char)*name) || *name == '_'))
			return 0;
	return 1;
}

int fv_secret_check_reference(const char *reference)
{
	if (!reference)
		return FV_ERR_USAGE;
	if (strncmp(reference, "env:", 4) == 0)
		return valid_env_name(reference + 4) ? FV_OK : FV_ERR_CONFIG;
	if (strncmp(reference, "file:", 5) == 0)
		return reference[5] ? FV_OK : FV_ERR_CONFIG;
	if (strcmp(reference, "prompt") == 0)
		return FV_OK;
	return FV_ERR_CONFIG;
}

int fv__secret_check_field(const char *value, const char *where)
{
	if (fv_secret_check_reference(value) == FV_OK)
		return FV_OK;
	/* Never echo the value: it may be the secret itself. */
	if (value && strncmp(value, "env:", 4) == 0)
		return fv__error_set(FV_ERR_CONFIG,
			"%s: 'env:' must be followed by an environment variable name (letters, digits, _)",
			where);
	if (value && strncmp(value, "file:", 5) == 0)
		return fv__error_set(FV_ERR_CONFIG, "%s: 'file:' must be followed by a path", where);
	return fv__error_set(FV_ERR_CONFIG,
		"%s: secrets cannot be written in the configuration; give a reference: "
		REFERENCE_FORMS, where);
}

/* Secrets are handed out on the secure heap: never in a core dump, wiped
 * when freed (fv_secret_free). */
static char *secret_dup(const char *s, size_t len)
{
	char *copy = fv__secure_alloc(len + 1);

	if (copy) {
		memcpy(copy, s, len);
		copy[len] = '\0';
	}
	return copy;
}

/*
 * env: secrets leave the environment once read (a child process or
 * /proc/PID/environ would show them), and their bytes are overwritten where
 * they were: unsetenv only drops the pointer, and /proc/PID/environ shows
 * the original block. A second resolution of the same name (a re-login, a
 * second command in one process) is served from this list, on the secure
 * heap.
 */
struct env_secret {
	struct env_secret *next;
	char *name;
	char *value;                     /* secure heap */
	size_t len;
};

static pthread_mutex_t env_lock = PTHREAD_MUTEX_INITIALIZER;
static struct env_secret *env_taken;

static const struct env_secret *env_take(const char *name)
{
	struct env_secret *e;
	const char *value;
	size_t name_len = strlen(name);
	char **env;

	for (e = env_taken; e; e = e->next)
		if (strcmp(e->name, name) == 0)
			break;
	/* Set (again) since it was taken: the new value wins. */
	if (!(value = secure_getenv(name)))
		return e;
	if (e) {
		fv__secure_free(e->value, e->len + 1);
	} else {
		if (!(e = calloc(1, sizeof(*e))) || !(e->name = strdup(name))) {
			free(e);
			return NULL;
		}
		e->next = env_taken;
		env_taken = e;
	}
	e->len = strlen(value);
	if (!(e->value = secret_dup(value, e->len))) {
		e->len = 0;
		return NULL;
	}
	/* Every NAME=... entry (execve allows duplicates), then the pointers. */
	for (env = environ; env && *env; env++)
		if (strncmp(*env, name, name_len) == 0 && (*env)[name_len] == '=')
			OPENSSL_cleanse(*env + name_len + 1, strlen(*env + name_len + 1));
	unsetenv(name);
	return e;
}

static void take_refs(json_object *v)
{
	size_t i, n;

	switch (json_object_get_type(v)) {
	case json_type_string: {
		const char *ref = json_object_get_string(v);

		if (strncmp(ref, "env:", 4) == 0 && valid_env_name(ref + 4))
			env_take(ref + 4);
		break;
	}
	case json_type_array:
		n = json_object_array_length(v);
		for (i = 0; i < n; i++)
			take_refs(json_object_array_get_idx(v, i));
		break;
	case json_type_object: {
		json_object_object_foreach(v, key, member) {
			(void)key;
			take_refs(member);
		}
		break;
	}
	default:
		break;
	}
}

void fv__secret_env_take_all(json_object *root)
{
	pthread_mutex_lock(&env_lock);
	take_refs(root);
	pthread_mutex_unlock(&env_lock);
}

void fv__secret_env_forget_all(void)
{
	struct env_secret *e, *next;

	pthread_mutex_lock(&env_lock);
	for (e = env_taken; e; e = next) {
		next = e->next;
		fv__secure_free(e->value, e->len + 1);
		free(e->name);
		free(e);
	}
	env_taken = NULL;
	pthread_mutex_unlock(&env_lock);
}

static int resolve_env(char **out, size_t *out_len, const char *name,
                       const char *purpose)
{
	const struct env_secret *e;
	int rc;

	pthread_mutex_lock(&env_lock);
	e = env_take(name);
	if (!e || !e->value) {
		rc = secure_getenv(name) ? fv__error_nomem()
		                         : fv__error_set(FV_ERR_SECRET,
			"%s: environment variable %s is not set; export it or use another reference ("
			REFERENCE_FORMS ")", purpose, name);
	} else {
		/* Usually an export gone wrong; but an empty PIN is real (an NSS
		 * database without a password), so say it and go on. */
		if (!e->len)
			fv__log(FV_LOG_WARNING, "%s: environment variable %s is set but empty; "
			        "using an empty secret", purpose, name);
		*out_len = e->len;
		*out = secret_dup(e->value, e->len);
		rc = *out ? FV_OK : fv__error_nomem();
	}
	pthread_mutex_unlock(&env_lock);
	return rc;
}

static int resolve_file(char **out, size_t *out_len, const char *path,
                        const char *purpose)
{
	struct stat st;
	char *buf;
	ssize_t n;
	size_t len = 0;
	int fd, rc = FV_OK;

	/* The checks of a file we trust (owner, modes, directories as given and
	 * as resolved, regular file opened without blocking: a FIFO is refused,
	 * not waited on). A link is followed when it and its target pass them:
	 * Kubernetes mounts secrets through links. */
	if ((rc = fv__file_open_checked(path, "secret file", &fd)) != FV_OK) {
		fv__error_prefix("%s", purpose);
		/* Unsafe ownership or modes: a permission problem; missing or not
		 * a regular file: a wrong reference. */
		if (rc == FV_ERR_NOT_FOUND || (stat(path, &st) == 0 && !S_ISREG(st.st_mode)))
			rc = FV_ERR_SECRET;
		return fv__error_restatus(rc);
	}
	if (fstat(fd, &st) != 0 || (st.st_mode & S_IROTH)) {
		close(fd);
		return fv__error_set(FV_ERR_PERMISSION,
			"%s: secret file '%s' is readable by others; fix with chmod o-rwx '%s'",
			purpose, path, path);
	}
	if (!(buf = fv__secure_alloc(SECRET_MAX + 1))) {
		close(fd);
		return fv__error_nomem();
	}
	while (len < SECRET_MAX) {
		n = read(fd, buf + len, SECRET_MAX - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	/* The first line, without its line ending. */
	len = strcspn(buf, "\r\n");
	*out = secret_dup(buf, len);
	*out_len = len;
	if (!*out)
		rc = fv__error_nomem();
	fv__secure_free(buf, SECRET_MAX + 1);
	return rc;
}

static int resolve_prompt(char **out, size_t *out_len, const char *purpose)
{
	struct termios saved, quiet;
	FILE *tty;
	char *buf;
	int rc = FV_OK, restored;
	size_t len;

	tty = fopen("/dev/tty", "r+e");
	if (!tty)
		return fv__error_set(FV_ERR_SECRET,
			"%s: 'prompt' needs a terminal and there is none; use env:NAME or file:PATH instead",
			purpose);
	setvbuf(tty, NULL, _IONBF, 0);
	if (tcgetattr(fileno(tty), &saved) != 0) {
		(void)fclose(tty);
		return fv__error_set(FV_ERR_SECRET,
			"%s: 'prompt' needs a terminal and there is none; use env:NAME or file:PATH instead",
			purpose);
	}
	if (!(buf = fv__secure_alloc(SECRET_MAX + 2))) {
		(void)fclose(tty);
		return fv__error_nomem();
	}
	quiet = saved;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	quiet.c_lflag |= ICANON;
	fprintf(tty, "%s: ", purpose);
	tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
	if (!fgets(buf, SECRET_MAX + 2, tty)) {
		rc = fv__error_set(FV_ERR_SECRET, "%s: nothing was entered", purpose);
		buf[0] = '\0';
	}
	restored = tcsetattr(fileno(tty), TCSAFLUSH, &saved);
	(void)restored;
	fputc('\n', tty);
	(void)fclose(tty);
	if (rc == FV_OK) {
		len = strcspn(buf, "\r\n");
		*out = secret_dup(buf, len);
		*out_len = len;
		if (!*out)
			rc = fv__error_nomem();
	}
	fv__secure_free(buf, SECRET_MAX + 2);
	return rc;
}

int fv_secret_resolve(char **out, size_t *out_len, const char *reference,
                      const char *purpose)
{
	size_t len = 0;

	if (!out || !reference)
		return fv__error_set(FV_ERR_USAGE, "fv_secret_resolve: missing argument");
	*out = NULL;
	if (!purpose)
		purpose = "secret";
	if (fv_secret_check_reference(reference) != FV_OK)
		return fv__secret_check_field(reference, purpose);
	fv__process_harden();
	if (strncmp(reference, "env:", 4) == 0)
		return resolve_env(out, out_len ? out_len : &len, reference + 4, purpose);
	if (strncmp(reference, "file:", 5) == 0)
		return resolve_file(out, out_len ? out_len : &len, reference + 5, purpose);
	return resolve_prompt(out, out_len ? out_len : &len, purpose);
}

void fv_secret_free(char *secret, size_t len)
{
	if (!secret)
		return;
	/* len may be short if the caller lost track: wipe through the NUL too.
	 * Secure-heap blocks are wiped whole; others (an older caller's own
	 * allocation) are wiped for this length and freed. */
	fv__secure_free(secret, len > strlen(secret) ? len : strlen(secret));
}
