# CPack: Debian package (see docs/packaging.md).
