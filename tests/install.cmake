# Installing (included by tests/CMakeLists.txt): `cmake --install` into a temporary prefix, the
# tree checked and run from / (tests/check_install.sh). Seconds; no device needed.
add_test(NAME install_tree
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/check_install.sh ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR}
                 ${CMAKE_COMMAND})
set_tests_properties(install_tree PROPERTIES TIMEOUT 120 LABELS package
                     ENVIRONMENT "${CLTRAIN_TEST_ENV}")
