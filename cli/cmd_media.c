/*
 * flowvault flow media-decrypt: verify and decrypt one PhotoPicker /
 * DocumentPicker file. The clear file is written to a temporary file next to
 * --out (mode 0600) and linked into place only once every check passed, so a
 * failed verification leaves nothing behind and an existing file is never
 * replaced.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"

/* A media object is a few hundred bytes. */
#define MEDIA_OBJECT_MAX (64 * 1024)
#define MEDIA_HOSTS_MAX 18

struct out_file {
	int fd;
	char tmp[PATH_MAX];
	const char *path;
	int write_errno;
};

static int write_clear(void *arg, const void *clear, size_t len)
{
	struct out_file *o = arg;
	const char *p = clear;

	while (len > 0) {
		ssize_t n = write(o->fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			o->write_errno = n < 0 ? errno : EIO;
			return FV_ERR_GENERIC;
		}
		p += n;
		len -= (size_t)n;
	}
	return FV_OK;
}

/* A file that fails verification exits 6, like an undecryptable request. */
static int media_fail(const struct cli *cli)
{
	const fv_error *err = fv_error_last();

	if (err->status == FV_ERR_DECRYPT)
		return cli_failf(cli, EXIT_UNDECRYPTABLE, "%s", err->message);
	return cli_fail(cli);
}

static char *read_small_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;

	if (!f)
		return NULL;
	buf = malloc(MEDIA_OBJECT_MAX + 1);
	if (buf) {
		*len = fread(buf, 1, MEDIA_OBJECT_MAX + 1, f);
		if (*len > MEDIA_OBJECT_MAX || ferror(f)) {
			free(buf);
			buf = NULL;
			errno = EFBIG;
		} else {
			buf[*len] = '\0';
		}
	}
	(void)fclose(f);
	return buf;
}

/* FV_OK, a library status, or FV_ERR_GENERIC with *read_errno set. */
static int feed_file(fv_media *media, const char *path, struct out_file *o, int *read_errno)
{
	unsigned char buf[65536];
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = FV_OK;
	ssize_t n;

	*read_errno = 0;
	if (fd < 0) {
		*read_errno = errno;
		return FV_ERR_GENERIC;
	}
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*read_errno = errno;
			rc = FV_ERR_GENERIC;
			break;
		}
		if ((rc = fv_media_update(media, buf, (size_t)n, write_clear, o)) != FV_OK)
			break;
	}
	close(fd);
	return rc;
}

static int run_media_decrypt(struct cli *cli, int argc, char **argv)
{
	static const struct option options[] = {
		{ "media", required_argument, NULL, 'm' },
		{ "in", required_argument, NULL, 'i' },
		{ "out", required_argument, NULL, 'o' },
		{ "fetch", no_argument, NULL, 'f' },
		{ "ca-file", required_argument, NULL, 'c' },
		{ "allow-host", required_argument, NULL, 'a' },
		{ NULL, 0, NULL, 0 },
	};
	/* The WhatsApp CDN, plus what --allow-host adds. */
	const char *hosts[MEDIA_HOSTS_MAX] = { "mmg.whatsapp.net", ".whatsapp.net" };
	size_t host_count = 2;
	const char *media_path = NULL, *in_path = NULL, *ca_file = NULL;
	struct out_file o = { -1, "", NULL, 0 };
	fv_media_fetch_options fetch = { 0 };
	unsigned char digest[32];
	char hex[65], dir_buf[PATH_MAX], *object;
	fv_media *media = NULL;
	uint64_t size = 0;
	size_t len = 0, i;
	int c, do_fetch = 0, rc, status;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "i:o:", options, NULL)) != -1) {
		switch (c) {
		case 'm': media_path = optarg; break;
		case 'i': in_path = optarg; break;
		case 'o': o.path = optarg; break;
		case 'f': do_fetch = 1; break;
		case 'c': ca_file = optarg; break;
		case 'a':
			if (host_count == MEDIA_HOSTS_MAX)
				return cli_usage(cli, "at most %d --allow-host options",
				                 MEDIA_HOSTS_MAX - 2);
			hosts[host_count++] = optarg;
			break;
		default:
			if (optopt)
				return cli_usage(cli, "option '%s' needs a value", argv[optind - 1]);
			return cli_usage(cli, "unknown option '%s' for flow media-decrypt",
			                 argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage(cli, "unexpected argument '%s'", argv[optind]);
	if (!media_path || !o.path)
		return cli_usage(cli, "flow media-decrypt needs --media FILE and --out FILE");
	if (!!in_path == do_fetch)
		return cli_usage(cli, "give either --in CDN_FILE or --fetch");
	if (!(object = read_small_file(media_path, &len)))
		return cli_failf(cli, EXIT_USAGE, "cannot read the media object '%s': %s",
		                 media_path, strerror(errno));
	status = fv_media_open(&media, object, len);
	explicit_bzero(object, len); /* it held the file's keys */
	free(object);
	if (status != FV_OK)
		return media_fail(cli);
	if (access(o.path, F_OK) == 0) {
		fv_media_free(media);
		return cli_failf(cli, EXIT_FAILURE_OTHER,
			"'%s' already exists; refusing to overwrite it (choose another --out)", o.path);
	}
	snprintf(dir_buf, sizeof(dir_buf), "%s", o.path);
	snprintf(o.tmp, sizeof(o.tmp), "%s/.flowvault-media.XXXXXX", dirname(dir_buf));
	o.fd = mkostemp(o.tmp, O_CLOEXEC);
	if (o.fd < 0 || fchmod(o.fd, 0600) != 0) {
		rc = cli_failf(cli, EXIT_FAILURE_OTHER, "cannot create a file next to '%s': %s",
		               o.path, strerror(errno));
		goto out;
	}
	if (do_fetch) {
		fetch.ca_file = ca_file;
		fetch.allowed_hosts = hosts;
		fetch.allowed_count = host_count;
		status = fv_media_fetch(media, &fetch, write_clear, &o);
	} else {
		int read_errno;

		status = feed_file(media, in_path, &o, &read_errno);
		if (read_errno) {
			rc = cli_failf(cli, EXIT_USAGE, "cannot read '%s': %s", in_path,
			               strerror(read_errno));
			goto out;
		}
	}
	if (status == FV_OK)
		status = fv_media_final(media, write_clear, &o, digest, &size);
	if (status != FV_OK) {
		rc = o.write_errno ? cli_failf(cli, EXIT_FAILURE_OTHER, "cannot write '%s': %s",
		                               o.path, strerror(o.write_errno))
		                   : media_fail(cli);
		goto out;
	}
	if (fsync(o.fd) != 0 || close(o.fd) != 0) {
		o.fd = -1;
		rc = cli_failf(cli, EXIT_FAILURE_OTHER, "cannot write '%s': %s", o.path,
		               strerror(errno));
		goto out;
	}
	o.fd = -1;
	/* link() refuses an existing name: never replaces a file that appeared. */
	if (link(o.tmp, o.path) != 0) {
		rc = cli_failf(cli, EXIT_FAILURE_OTHER, "cannot create '%s': %s", o.path,
		               strerror(errno));
		goto out;
	}
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	if (cli->json) {
		json_object *doc = json_object_new_object();
		const char *name = fv_media_file_name(media);

		json_object_object_add(doc, "media_id", json_object_new_string(fv_media_id(media)));
		json_object_object_add(doc, "file_name", name ? json_object_new_string(name) : NULL);
		json_object_object_add(doc, "size", json_object_new_int64((int64_t)size));
		json_object_object_add(doc, "sha256", json_object_new_string(hex));
		cli_print_json(doc);
	} else if (!cli->quiet) {
		printf("%s: %llu bytes, sha256 %s, written to %s\n", fv_media_id(media),
		       (unsigned long long)size, hex, o.path);
	}
	rc = EXIT_OK;
out:
	if (o.fd >= 0)
		close(o.fd);
	if (o.tmp[0])
		unlink(o.tmp);
	fv_media_free(media);
	return rc;
}

int cli_flow_media_decrypt(struct cli *cli, int argc, char **argv)
{
	return run_media_decrypt(cli, argc, argv);
}
