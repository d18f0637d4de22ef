# The documentation against the product (included by tests/CMakeLists.txt), label docs.
# docs/options.md is every tool's --help (tools/options-doc.sh): it fails when a tool's help
# changed and the reference did not. No device needed; about 1 s.
add_test(NAME docs_options
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/check_options_doc.sh ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR})
set_tests_properties(docs_options PROPERTIES TIMEOUT 60 LABELS docs ENVIRONMENT "${CLTRAIN_TEST_ENV}")

# The README's runnable blocks on this machine (tests/check_readme.sh local): the language
# model on one device and a passage from it, PoCL beside Intel's runtime under mpirun with
# the plot, a run killed at its first checkpoint and resumed; each at a reduced size. About
# 40 s. The cluster block runs as cluster_readme (tests/cluster.cmake). Label slow: mpirun
# end to end, in build/ only.
add_test(NAME readme_recipes
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/check_readme.sh ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR} local)
set_tests_properties(readme_recipes PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600 LABELS "docs;slow"
                     RUN_SERIAL ON ENVIRONMENT "${CLTRAIN_TEST_ENV}")
