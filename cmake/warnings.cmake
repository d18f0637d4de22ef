# Warnings for the project's own targets (not for generated or third-party code).
function(cltrain_warnings target)
  if(CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wshadow -Wstrict-prototypes
                           -Wno-unused-parameter -Wno-deprecated-declarations)
  endif()
endfunction()
