# Installation of the non-code files, and the Debian package (see
# docs/packaging.md). Included last by the top-level CMakeLists.txt, after
# every target and install() rule exists, so `cmake --install` and
# `cpack -G DEB` install exactly the same set of files:
#
#   bin/flowvault                         lib/libflowvault.so*
#   lib/flowvault/plugins/*.so            include/flowvault/*.h
#   lib/pkgconfig/flowvault-provider.pc   share/man/man{1,5,7}/*.gz
#   (lib/ is CMAKE_INSTALL_LIBDIR, "lib" unless configured otherwise)
#   share/bash-completion/completions/flowvault
#   share/zsh/vendor-completions/_flowvault
#   share/fish/vendor_completions.d/flowvault.fish
#   share/doc/flowvault/flowvault.example.json
#   share/doc/flowvault/flowvault.schema.json, README.md
#   share/doc/flowvault/examples/plugin-skeleton/
#   lib/systemd/system/flowvault-serve.{service,socket}
#   lib/sysusers.d/flowvault.conf

# ---- Man pages: docs/*.1, *.5, *.7, compressed as Debian expects ----

file(GLOB FLOWVAULT_MAN_SOURCES CONFIGURE_DEPENDS
     ${PROJECT_SOURCE_DIR}/docs/*.1
     ${PROJECT_SOURCE_DIR}/docs/*.5
     ${PROJECT_SOURCE_DIR}/docs/*.7)
set(FLOWVAULT_MAN_OUTPUTS)
foreach(page ${FLOWVAULT_MAN_SOURCES})
  get_filename_component(page_name ${page} NAME)
  string(REGEX REPLACE "^.*\\.([0-9])$" "\\1" section ${page_name})
  set(compressed ${PROJECT_BINARY_DIR}/man/man${section}/${page_name}.gz)
  # -n: no name or time stamp inside, so the package is reproducible.
  add_custom_command(OUTPUT ${compressed}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/man/man${section}
    COMMAND gzip -9 -n -c ${page} > ${compressed}
    DEPENDS ${page}
    COMMENT "Compressing man page ${page_name}"
    VERBATIM)
  list(APPEND FLOWVAULT_MAN_OUTPUTS ${compressed})
  install(FILES ${compressed} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
endforeach()
add_custom_target(flowvault-man ALL DEPENDS ${FLOWVAULT_MAN_OUTPUTS})

# ---- Shell completion: bash, zsh, fish (the places Debian's shells read) ----

install(FILES ${PROJECT_SOURCE_DIR}/completion/flowvault.bash
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
        RENAME flowvault)
install(FILES ${PROJECT_SOURCE_DIR}/completion/_flowvault
        DESTINATION ${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions)
install(FILES ${PROJECT_SOURCE_DIR}/completion/flowvault.fish
        DESTINATION ${CMAKE_INSTALL_DATADIR}/fish/vendor_completions.d)

# ---- Documents flowvault names in its messages (flowvault help, doctor) ----

install(FILES ${PROJECT_SOURCE_DIR}/config/flowvault.schema.json
              ${PROJECT_SOURCE_DIR}/README.md
        DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/flowvault)

# ---- Plugin SDK example: the skeleton plugin, to copy ----

install(FILES ${PROJECT_SOURCE_DIR}/examples/plugin-skeleton/skeleton.c
              ${PROJECT_SOURCE_DIR}/examples/plugin-skeleton/Makefile
              ${PROJECT_SOURCE_DIR}/examples/plugin-skeleton/CMakeLists.txt
              ${PROJECT_SOURCE_DIR}/examples/plugin-skeleton/README.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples/plugin-skeleton)

# ---- systemd: flowvault-serve.service, .socket, the workers' user ----

set(FLOWVAULT_BINDIR ${CMAKE_INSTALL_FULL_BINDIR})
if(CPACK_PACKAGING_INSTALL_PREFIX OR CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(FLOWVAULT_BINDIR /usr/${CMAKE_INSTALL_BINDIR})
endif()
set(FLOWVAULT_SYSTEMD_UNITDIR lib/systemd/system CACHE STRING
    "Where systemd units go, relative to the prefix")
configure_file(${PROJECT_SOURCE_DIR}/dist/systemd/flowvault-serve.service.in
               ${PROJECT_BINARY_DIR}/systemd/flowvault-serve.service @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/systemd/flowvault-serve.service
              ${PROJECT_SOURCE_DIR}/dist/systemd/flowvault-serve.socket
        DESTINATION ${FLOWVAULT_SYSTEMD_UNITDIR})
install(FILES ${PROJECT_SOURCE_DIR}/dist/systemd/flowvault.sysusers
        DESTINATION lib/sysusers.d RENAME flowvault.conf)

# ---- Debian package: cpack -G DEB ----

set(FLOWVAULT_PACKAGE_MAINTAINER "flowvault maintainers <flowvault@localhost>"
    CACHE STRING "Maintainer field of the Debian package")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME flowvault)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT ${FLOWVAULT_PACKAGE_MAINTAINER})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "WhatsApp Flows private key kept in its store (PEM, PKCS#11 HSM, TPM 2.0)")
set(CPACK_PACKAGE_DESCRIPTION
    "flowvault keeps the RSA-2048 private key of a WhatsApp Flows endpoint in a
PEM file, a PKCS#11 token or a TPM 2.0, behind key-provider plugins, and
never lets it out: it registers the public key through the Graph API,
checks its signature status, and decrypts Flows requests inside the store.
This package has the flowvault tool, libflowvault, the bundled plugins, the
plugin SDK (headers, flowvault-provider.pc, an example plugin), man pages and
bash completion.")
# A Debian package lives under /usr, whatever prefix the build was made for.
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)   # flowvault_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends: computed by dpkg-shlibdeps from what the binaries link.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# libflowvault.so.0 is shipped here: tell dpkg-shlibdeps where it is, and
# publish a shlibs file (and the ldconfig trigger) for packages linking it.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${PROJECT_BINARY_DIR}/lib)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "softhsm2, tpm2-tools, bash-completion")
# postinst creates the flowvault user (serve.user's default).
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${PROJECT_SOURCE_DIR}/dist/debian/postinst)
# A source package is not made by CPack here; keep build trees out anyway.
set(CPACK_SOURCE_IGNORE_FILES "/build[^/]*/" "/\\.git/")

include(CPack)

# `cpack` and the install target do not rebuild: packaging a tree never
# relinks the binaries that its tests may be running at the same moment.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY TRUE)
