# The cloud-bench program, defined once for bench/cloud and tests/cloud.
if(NOT TARGET cloud-bench)
  add_executable(cloud-bench ${PROJECT_SOURCE_DIR}/bench/cloud/cloud_bench.c)
  target_link_libraries(cloud-bench PRIVATE flowvault PkgConfig::LIBCURL
                        PkgConfig::LIBCRYPTO Threads::Threads)
  target_include_directories(cloud-bench PRIVATE ${PROJECT_SOURCE_DIR}/include)
  set_target_properties(cloud-bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                        ${PROJECT_BINARY_DIR}/bench)
endif()
