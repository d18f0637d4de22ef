# Jobs across stand-in nodes (tests/check_cluster.sh CASE; included by tests/CMakeLists.txt):
# network namespaces joined by a bridge, real TCP between them, one Open MPI daemon per node,
# made by tools/netns-cluster/. Label cluster (also slow: build/ only, not the sanitizer build).
# Each case skips (77) where namespaces cannot be made (not root, no `ip`, a container that
# refuses) and tears its namespaces down on the way out; its namespaces carry its pid in their
# names, so cases never share them. RUN_SERIAL all the same: the kill case's time bound and the
# ranks of several nodes on a small machine want the cores to themselves. cluster_sweep runs
# after them (a fixture's cleanup runs even when a case failed or timed out) and removes the
# namespaces of a case that was killed before its trap could. The slurm_* cases also need Slurm
# (tools/install-deps.sh --cluster, which the test command runs) and skip (77) without it.
if(TARGET cltrain AND TARGET test_mpi_allreduce AND TARGET cltrain-bench-allreduce)
  set(_cluster_cmd ${CMAKE_CURRENT_SOURCE_DIR}/check_cluster.sh)
  set(_cluster_args $<TARGET_FILE:cltrain> $<TARGET_FILE:test_mpi_allreduce>
      $<TARGET_FILE:cltrain-bench-allreduce>)
  foreach(case allreduce train devices kill slurm_srun slurm_mpirun slurm_requeue relaunch readme)
    add_test(NAME cluster_${case} COMMAND ${_cluster_cmd} ${case} ${_cluster_args})
    set_tests_properties(cluster_${case} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600
                         LABELS "cluster;slow" RUN_SERIAL ON FIXTURES_REQUIRED cluster_netns
                         ENVIRONMENT "${CLTRAIN_TEST_ENV}")
  endforeach()
  add_test(NAME cluster_sweep COMMAND ${_cluster_cmd} sweep ${_cluster_args})
  set_tests_properties(cluster_sweep PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 60
                       LABELS "cluster;slow" FIXTURES_CLEANUP cluster_netns)
endif()
