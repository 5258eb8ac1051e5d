# test_store runs twice: on SQLite (test_store) and, through the module
# store-postgresql, on a throwaway PostgreSQL server (test_store_postgresql,
# tests/store_postgresql.sh).  It links libpq itself only to set up what the
# PostgreSQL tests need (a schema per test, a version from the future).
find_package(Threads REQUIRED)
target_link_libraries(test_store PRIVATE Threads::Threads)
if(LIBPQ_FOUND)
  target_link_libraries(test_store PRIVATE PkgConfig::LIBPQ)
  target_compile_definitions(test_store PRIVATE CHAT_TEST_HAVE_LIBPQ=1)
  add_dependencies(test_store store-postgresql)
  add_test(NAME test_store_postgresql
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/store_postgresql.sh $<TARGET_FILE:test_store>)
  set_tests_properties(test_store_postgresql PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120
    ENVIRONMENT "CHAT_MODULE_DIR=${CHAT_MODULE_BUILD_DIR}")
endif()
# (chat-relay links no libpq, the module one symbol: tests/relay_links.sh)
