# The unit test compiles the plugin's sources directly, so it can reach the
# internal helpers (PDU codec, KDF, CBC, padding) as well as the ops table.
set(aescbc_dir ${PROJECT_SOURCE_DIR}/plugins/cipher-aescbc-hmac)
target_sources(test_aescbc_hmac PRIVATE
  ${aescbc_dir}/aescbc_hmac.c ${aescbc_dir}/cbc.c ${aescbc_dir}/kdf.c ${aescbc_dir}/pdu.c
  ${CHAT_PLUGIN_UTIL_SOURCE})
target_include_directories(test_aescbc_hmac PRIVATE ${aescbc_dir}
                           ${PROJECT_SOURCE_DIR}/plugins/common)
target_link_libraries(test_aescbc_hmac PRIVATE PkgConfig::NETTLE PkgConfig::ZLIB PkgConfig::JANSSON)
