# Benchmarks built beside the tests but not run by ctest (timings never decide a test):
#   bench_attention   the two attention implementations, interleaved (tests/bench_attention.c)
add_executable(bench_attention ${CMAKE_CURRENT_SOURCE_DIR}/bench_attention.c)
target_link_libraries(bench_attention PRIVATE cltrain_core)
cltrain_warnings(bench_attention)
