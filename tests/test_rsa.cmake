# The unit test compiles the plugin's source directly, so it can reach the
# internal helpers (key codec, KEM, key schedule) as well as the ops table.
set(rsa_dir ${PROJECT_SOURCE_DIR}/plugins/cipher-rsa)
target_sources(test_rsa PRIVATE ${rsa_dir}/rsa.c ${CHAT_PLUGIN_UTIL_SOURCE})
target_include_directories(test_rsa PRIVATE ${rsa_dir} ${PROJECT_SOURCE_DIR}/plugins/common)
target_link_libraries(test_rsa PRIVATE PkgConfig::HOGWEED PkgConfig::NETTLE PkgConfig::GMP)
