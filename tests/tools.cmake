# The command-line tools, run as a user runs them (tests/check_*.sh, each skipped with 77 where
# the device it needs is absent).
add_test(NAME tool_devices
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/check_devices_tool.sh $<TARGET_FILE:cltrain-devices>)
set_tests_properties(tool_devices PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600
                     ENVIRONMENT "${CLTRAIN_TEST_ENV}")

# --version of every tool (and cltrain-devices --json's "versions"): needs no device and no
# mpirun, so it never skips
add_test(NAME tool_version COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/check_version.sh ${CMAKE_BINARY_DIR})
set_tests_properties(tool_version PROPERTIES TIMEOUT 120 LABELS tool ENVIRONMENT "${CLTRAIN_TEST_ENV}")

# tools/cltrain-relaunch's loop with stand-in commands and probes (no MPI, root or device):
# restarts bounded, exit 1/2 not run again, dead nodes left out of {hostfile}/{np}, a node lost
# mid-run ends the job's process group, bad options
add_test(NAME tool_relaunch COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/check_relaunch.sh)
set_tests_properties(tool_relaunch PROPERTIES TIMEOUT 120 LABELS tool)
