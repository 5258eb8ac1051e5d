# The RC4 keystream and DH code are compiled in directly so the RFC vectors
# exercise exactly what the plugin runs.
target_sources(test_rc4dh PRIVATE
  ${PROJECT_SOURCE_DIR}/plugins/cipher-rc4dh/rc4dh_stream.c
  ${PROJECT_SOURCE_DIR}/plugins/cipher-rc4dh/rc4dh_dh.c)
target_include_directories(test_rc4dh PRIVATE ${PROJECT_SOURCE_DIR}/plugins/cipher-rc4dh)
target_link_libraries(test_rc4dh PRIVATE PkgConfig::NETTLE PkgConfig::GMP)
