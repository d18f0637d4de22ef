# Installing and packaging (included by tests/CMakeLists.txt), label "package", no device needed.
# Both install the build folder (which writes its install_manifest.txt): one at a time.
# `cmake --install` into a temporary prefix, the tree checked and run from /
# (tests/check_install.sh); about 2 s.
add_test(NAME install_tree
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/check_install.sh ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR}
                 ${CMAKE_COMMAND} $<BOOL:${CLTRAIN_SANITIZE}>)
set_tests_properties(install_tree PROPERTIES TIMEOUT 120 LABELS package RESOURCE_LOCK cltrain_install
                     ENVIRONMENT "${CLTRAIN_TEST_ENV}")

# The Debian package (tests/check_package.sh): cpack -G DEB into a temporary folder, its fields,
# file list and dependencies read back with dpkg-deb. About 5 s; skipped (77) without cpack or
# dpkg-deb.
add_test(NAME package_deb
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/check_package.sh ${CMAKE_BINARY_DIR} ${CMAKE_CPACK_COMMAND})
set_tests_properties(package_deb PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120 LABELS package
                     RESOURCE_LOCK cltrain_install ENVIRONMENT "${CLTRAIN_TEST_ENV}")
