# The language model's reference data: the checked-in debug state is what its generator writes
# (skipped, 77, without PyTorch).
add_test(NAME gpt_debug_state COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/check_gpt_debug_state.sh)
set_tests_properties(gpt_debug_state PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300 LABELS tool)
