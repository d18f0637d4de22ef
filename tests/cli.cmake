# cltrain end to end (tests/check_cli.sh CASE), as a user runs it. MPI cases go through mpiexec.
if(TARGET cltrain)
  string(REPLACE ";" " " _mpiexec "${CLTRAIN_MPIEXEC}")
  foreach(case train_subset log_rates help bad_input determinism checkpoint_damage resume_auto
                nonfinite
                profile tune_cache tune_bad_input
                mpi_equivalence mpi_cross_platform mpi_three_platforms mpi_balance mpi_sync_modes
                mpi_comm_options safetensors npy_data
                mpi_train mpi_resume_world
                mpi_kill mpi_divergence)
    add_test(NAME cli_${case}
             COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/check_cli.sh ${case} $<TARGET_FILE:cltrain>)
    set_tests_properties(cli_${case} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 900
                         ENVIRONMENT "${CLTRAIN_TEST_ENV};CLTRAIN_MPIEXEC=${_mpiexec}")
    if(case MATCHES "^mpi_")
      set_tests_properties(cli_${case} PROPERTIES LABELS "mpi;slow" RUN_SERIAL ON)
    else()
      set_tests_properties(cli_${case} PROPERTIES LABELS "cli")
    endif()
  endforeach()
endif()
