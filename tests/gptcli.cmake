# The language model end to end (tests/check_gpt.sh CASE), as a user runs cltrain --model gpt and
# cltrain-generate: bad input, training and text, PyTorch on both sides, data-parallel runs.
# Tiny models on a small generated text: the set takes about three minutes on two cores. MPI
# cases go through mpiexec, labelled "mpi;slow" and run alone.
if(TARGET cltrain AND TARGET cltrain-generate)
  string(REPLACE ";" " " _mpiexec "${CLTRAIN_MPIEXEC}")
  foreach(case gpt_bad_input gpt_train gpt_pytorch
                gpt_mpi_equivalence gpt_mpi_three_platforms gpt_resume gpt_clip)
    add_test(NAME ${case}
             COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/check_gpt.sh ${case} $<TARGET_FILE:cltrain>)
    set_tests_properties(${case} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600
                         ENVIRONMENT "${CLTRAIN_TEST_ENV};CLTRAIN_MPIEXEC=${_mpiexec}")
    if(case MATCHES "^gpt_(mpi_|resume|clip)")
      set_tests_properties(${case} PROPERTIES LABELS "mpi;slow" RUN_SERIAL ON)
    else()
      set_tests_properties(${case} PROPERTIES LABELS "cli")
    endif()
  endforeach()
endif()
