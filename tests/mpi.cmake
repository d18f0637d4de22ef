# MPI runs (included by tests/CMakeLists.txt): the all-reduce suite under mpiexec with 1 to 5
# ranks (oversubscribed on small machines), and a short run of the all-reduce benchmark whose
# #wrong check fails the test on any wrong element. Exit code 77 (no OpenCL device) = skipped.
if(TARGET test_mpi_allreduce)
  foreach(n 1 2 3 4 5)
    add_test(NAME mpi_allreduce_np${n}
             COMMAND ${CLTRAIN_MPIEXEC} -n ${n} $<TARGET_FILE:test_mpi_allreduce>)
    set_tests_properties(mpi_allreduce_np${n} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300
                         PROCESSORS ${n} LABELS mpi
                         ENVIRONMENT "${CLTRAIN_TEST_ENV};POCL_MAX_PTHREAD_COUNT=1")
  endforeach()
endif()

if(TARGET cltrain-bench-allreduce)
  add_test(NAME tool_bench_allreduce_np2
           COMMAND ${CLTRAIN_MPIEXEC} -n 2 $<TARGET_FILE:cltrain-bench-allreduce>
                   --max-bytes 4194304 --iters 3 --warmup 1)
  set_tests_properties(tool_bench_allreduce_np2 PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300
                       PROCESSORS 2 LABELS "mpi;tool"
                       ENVIRONMENT "${CLTRAIN_TEST_ENV};POCL_MAX_PTHREAD_COUNT=1")
  # the wire formats, every size exact (the benchmark exits 1 on any wrong element)
  foreach(wire fp16 bf16)
    add_test(NAME tool_bench_allreduce_np3_${wire}
             COMMAND ${CLTRAIN_MPIEXEC} -n 3 $<TARGET_FILE:cltrain-bench-allreduce>
                     --max-bytes 2097152 --factor 8 --iters 2 --warmup 1 --wire ${wire})
    set_tests_properties(tool_bench_allreduce_np3_${wire} PROPERTIES SKIP_RETURN_CODE 77
                         TIMEOUT 300 PROCESSORS 2 LABELS "mpi;tool"
                         ENVIRONMENT "${CLTRAIN_TEST_ENV};POCL_MAX_PTHREAD_COUNT=1")
  endforeach()
endif()
