# The unit test compiles the plugin's source directly, so it can reach the
# internal state and the test-only payload hook as well as the ops table.
set(noise_xx_dir ${PROJECT_SOURCE_DIR}/plugins/cipher-noise-xx)
target_sources(test_noise_xx PRIVATE ${noise_xx_dir}/noise_xx.c ${CHAT_PLUGIN_UTIL_SOURCE})
target_include_directories(test_noise_xx PRIVATE ${noise_xx_dir}
                           ${PROJECT_SOURCE_DIR}/plugins/common)
target_link_libraries(test_noise_xx PRIVATE PkgConfig::HOGWEED PkgConfig::NETTLE PkgConfig::JANSSON)
