/*
 * Secret references: "env:NAME", "file:PATH" or "prompt". Secrets are never
 * stored in the configuration, never printed, and wiped after use.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
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

static char *secret_dup(const char *s, size_t len)
{
	char *copy = malloc(len + 1);

	if (copy) {
		memcpy(copy, s, len);
		copy[len] = '\0';
	}
	return copy;
}

static int resolve_env(char **out, size_t *out_len, const char *name,
                       const char *purpose)
{
	const char *value = getenv(name);

	if (!value)
		return fv__error_set(FV_ERR_SECRET,
			"%s: environment variable %s is not set; export it or use another reference ("
			REFERENCE_FORMS ")", purpose, name);
	if (!*value) /* an export gone wrong, not a secret */
		return fv__error_set(FV_ERR_SECRET,
			"%s: environment variable %s is set but empty; export the secret in it",
			purpose, name);
	*out_len = strlen(value);
	*out = secret_dup(value, *out_len);
	return *out ? FV_OK : fv__error_nomem();
}

static int resolve_file(char **out, size_t *out_len, const char *path,
                        const char *purpose)
{
	char buf[SECRET_MAX + 1];
	struct stat st;
	ssize_t n;
	size_t len = 0;
	int fd, rc = FV_OK;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ELOOP)
		fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fv__error_set(FV_ERR_SECRET, "%s: cannot open secret file '%s': %s",
		                     purpose, path, strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return fv__error_set(FV_ERR_SECRET, "%s: secret file '%s' is not a regular file",
		                     purpose, path);
	}
	if (st.st_mode & S_IROTH) {
		close(fd);
		return fv__error_set(FV_ERR_PERMISSION,
			"%s: secret file '%s' is readable by others; fix with chmod o-rwx '%s'",
			purpose, path, path);
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
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}

static int resolve_prompt(char **out, size_t *out_len, const char *purpose)
{
	char buf[SECRET_MAX + 2];
	struct termios saved, quiet;
	FILE *tty;
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
	quiet = saved;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	quiet.c_lflag |= ICANON;
	fprintf(tty, "%s: ", purpose);
	tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
	if (!fgets(buf, sizeof(buf), tty)) {
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
	OPENSSL_cleanse(buf, sizeof(buf));
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
	/* len may be short if the caller lost track: wipe through the NUL too. */
	OPENSSL_cleanse(secret, len > strlen(secret) ? len : strlen(secret));
	free(secret);
}
